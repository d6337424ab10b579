"""``pointmoe convert --to ours|pointcept IN OUT``: rewrite a segmentation checkpoint between our
key names and file format and the official Pointcept / point_moe ones (:mod:`.convert`).
"""
from __future__ import annotations

import argparse
from typing import Any

from .convert import check_state_dict, read_checkpoint, save_checkpoint, save_pointcept_checkpoint, to_pointcept_keys
from .model import PointMoESegmentor, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``pointmoe convert --to ours|pointcept IN OUT [--config NAME|YAML] [--allow-pickle]``."""
    parser.add_argument("--to", required=True, choices=("ours", "pointcept"),
                        help="target key names: ours (pointmoe-seg file) or pointcept (official)")
    parser.add_argument("input", help="checkpoint to read (.pth or .safetensors)")
    parser.add_argument("output", help="file to write (.safetensors by suffix, else torch .pth)")
    parser.add_argument("--config", help="preset (tiny, base, L) or YAML: stored with --to ours and "
                                         "used to check every key and shape")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="unpickle arbitrary Python objects in the input (trusted files only)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    checkpoint = read_checkpoint(args.input, args.allow_pickle)
    config = load_config(args.config) if args.config else checkpoint.config
    if config is not None:
        check_state_dict(PointMoESegmentor(config), checkpoint.state_dict)
    if args.to == "ours":
        save_checkpoint(args.output, checkpoint.state_dict, config, checkpoint.epoch)
        names = list(checkpoint.state_dict)
    else:
        names = list(to_pointcept_keys(checkpoint.state_dict))
        save_pointcept_checkpoint(args.output, checkpoint.state_dict, checkpoint.epoch)
    print(f"{args.input} ({checkpoint.source}) -> {args.output} ({args.to}): {len(names)} tensors"
          + (f", checked against config {config.name!r}" if config is not None else ", keys not checked (no config)"))
    return {"ok": True, "input": str(args.input), "output": str(args.output), "to": args.to,
            "source": checkpoint.source, "tensors": len(names), "config": None if config is None else config.name,
            "checked": config is not None}
