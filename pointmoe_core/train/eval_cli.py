"""``pointmoe eval seg --checkpoint CKPT [--datasets SPEC ...]``: per-dataset segmentation scores
(:mod:`.evaluate`); ``pointmoe eval planner --checkpoint DIR --demos DIR`` scores the 3D-MoE
planner's question answering instead (:mod:`pointmoe_core.plan.eval_planner`).
"""
from __future__ import annotations

import argparse
from typing import Any

from .datasets import parse_entries
from .distributed import cleanup_distributed, init_distributed
from .evaluate import eval_datasets, evaluate, format_results, load_trained, mean_miou


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=("seg", "planner"), help="what to evaluate")
    parser.add_argument("--checkpoint", required=True, help="training checkpoint file or checkpoint directory "
                        "(planner: a 3D-MoE planner folder or training stage folder)")
    parser.add_argument("--datasets", nargs="+", metavar="SPEC",
                        help="KIND[:key=value,...], e.g. synthetic:domain=tabletop,split=val "
                             "(default: the run's val and zero-shot datasets)")
    parser.add_argument("--max-scenes", type=int, help="score at most this many scenes per dataset")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--num-workers", type=int, default=0, help="data loading processes")
    planner = parser.add_argument_group("planner")
    planner.add_argument("--demos", help="demo folder of `pointmoe sim demos` (default: the training run's)")
    planner.add_argument("--split", choices=("heldout", "train", "all"), default="heldout",
                         help="which episodes' questions (held out by the training run's heldout_every)")
    planner.add_argument("--heldout-every", type=int, help="override the training run's held-out split")
    planner.add_argument("--max-questions", type=int,
                         help="answer at most this many questions, spread evenly over the frames")
    planner.add_argument("--seed", type=int, default=0, help="question and object-point draws")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.task == "planner":
        from pointmoe_core.plan import eval_planner

        return eval_planner.run(args)
    context = init_distributed(args.device)
    try:
        trained = load_trained(args.checkpoint, context.device)
        if args.datasets:
            entries = parse_entries(args.datasets)
        else:
            entries = parse_entries(trained.train_config.get("val_datasets")) + parse_entries(
                trained.train_config.get("zero_shot_datasets"))
        if not entries:
            return {"ok": False, "error": "no datasets: pass --datasets (the checkpoint names none)"}
        results = evaluate(trained.model, eval_datasets(entries, trained.train_config), context,
                           max_scenes=args.max_scenes, num_workers=args.num_workers)
    finally:
        cleanup_distributed()
    if context.is_main:
        print(format_results(results))
    return {"ok": True, "checkpoint": str(trained.path), "step": trained.step, "datasets": results,
            "miou_seen": mean_miou(results, zero_shot=False), "miou_zero_shot": mean_miou(results, zero_shot=True)}
