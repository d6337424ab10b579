"""``pointmoe analyze routing --checkpoint CKPT [--datasets SPEC ...]``: what the experts learned
(:mod:`.analyze` says what is measured), printed, and written as ``routing.json`` and PNGs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from pointmoe_core.common.device import resolve_device

from .analyze import analyze, collect_routing, format_analysis, plot_jsd_png, render_expert_choice, short_layer_name
from .datasets import parse_entries
from .evaluate import eval_datasets, load_trained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("routing",), help="what to analyse")
    parser.add_argument("--checkpoint", required=True, help="training checkpoint file or checkpoint directory")
    parser.add_argument("--datasets", nargs="+", metavar="SPEC",
                        help="KIND[:key=value,...] (default: the run's val and zero-shot datasets)")
    parser.add_argument("--max-scenes", type=int, default=4, help="scenes per dataset")
    parser.add_argument("--top", type=int, default=100, help="how many token pathways to report")
    parser.add_argument("--output", help="folder for routing.json and the PNGs (default: RUN/routing)")
    parser.add_argument("--render-layers", nargs="*", metavar="LAYER",
                        help="MoE layers whose expert choice is rendered (default: first and last; "
                             "none with an empty list)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(resolve_device(args.device))
    trained = load_trained(args.checkpoint, device)
    layers = list(trained.model.backbone.moe_layers())
    if not layers:
        print("this model has no MoE layers (a dense backbone): there is no routing to analyse")
        return {"ok": False, "error": "no MoE layers", "checkpoint": str(trained.path)}
    entries = parse_entries(args.datasets) if args.datasets else parse_entries(
        trained.train_config.get("val_datasets")) + parse_entries(trained.train_config.get("zero_shot_datasets"))
    if not entries:
        return {"ok": False, "error": "no datasets: pass --datasets (the checkpoint names none)"}
    datasets = eval_datasets(entries, trained.train_config)
    routings = {d.name: collect_routing(trained.model, d, args.max_scenes, device) for d in datasets}
    result = analyze(routings, args.top)

    output = Path(args.output) if args.output else trained.path.parent.parent / "routing"
    images = {"jsd_per_layer": str(plot_jsd_png(result["layers"], output / "jsd_per_layer.png"))}
    render_layers = [layers[0], layers[-1]] if args.render_layers is None else args.render_layers
    unknown = sorted(set(render_layers) - set(layers))
    if unknown:
        raise ValueError(f"--render-layers {unknown} are not MoE layers; these are: {layers}")
    for name, routing in routings.items():
        for layer in render_layers:
            key = f"experts_{name}_{short_layer_name(layer)}"
            images[key] = str(render_expert_choice(routing.scene_coord, routing.scene_experts[layer],
                                                   len(routing.usage[layer]), output / f"{key}.png"))
    summary = {"ok": True, "checkpoint": str(trained.path), "step": trained.step, "output": str(output),
               **result, "images": images}
    output.mkdir(parents=True, exist_ok=True)
    (output / "routing.json").write_text(json.dumps(summary, indent=1))
    print(format_analysis(result))
    return summary
