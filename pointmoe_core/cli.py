"""The ``pointmoe`` command line: one entry point, one subcommand per capability.

Each subcommand lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> dict``. The dict is the machine-readable summary: ``--json`` prints it as the
last line of output, and ``"ok": False`` in it makes the command exit with status 1.
Modules are imported only when their subcommand runs, so ``pointmoe --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pointmoe_core.demo", "run the end-to-end demo on embedded defaults"),
    "bag": ("pointmoe_core.io.bag_cli", "inspect rosbag2 files and write clouds into them"),
    "train": ("pointmoe_core.train_cli", "train a model (also `ros2 run pointmoe_core train`)"),
    "eval": ("pointmoe_core.train.eval_cli", "evaluate a segmentation checkpoint: per-dataset and per-class IoU"),
    "analyze": ("pointmoe_core.train.analyze", "routing analysis: expert usage, JSD between datasets, pathways"),
    "sim": ("pointmoe_core.sim.cli", "tabletop simulator: oracle demos and planner evaluation on LoHoRavens tasks"),
    "convert": ("pointmoe_core.seg.convert", "convert checkpoints between Pointcept/point_moe and our key names"),
    "parity": ("pointmoe_core.seg.parity", "check our backbone against an official Point-MoE fixture"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pointmoe", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true",
                         help="print a machine-readable JSON summary as the last line")
        sub.set_defaults(module_name=module_name)
        _module(module_name).add_arguments(sub)
    return parser


def _module(name: str):
    return importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # --json is taken anywhere on the line, so nested actions (`bag write ... --json`) get it too
    as_json = "--json" in argv
    args = build_parser().parse_args([arg for arg in argv if arg != "--json"])
    summary = _module(args.module_name).run(args)
    if as_json:
        print(json.dumps(summary, default=str), flush=True)
    return 0 if summary.get("ok", True) else 1


def train_main(argv: list[str] | None = None) -> int:
    """``ros2 run pointmoe_core train ...`` is ``pointmoe train ...``."""
    argv = sys.argv[1:] if argv is None else argv
    return main(["train", *_strip_ros_args(argv)])


def _strip_ros_args(argv: list[str]) -> list[str]:
    """Drop the ``--ros-args ... [--]`` block that ``ros2 run``/launch may append."""
    if "--ros-args" not in argv:
        return argv
    start = argv.index("--ros-args")
    end = argv.index("--", start) + 1 if "--" in argv[start:] else len(argv)
    return argv[:start] + argv[end:]


if __name__ == "__main__":
    sys.exit(main())
