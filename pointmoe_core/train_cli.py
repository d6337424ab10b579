"""``pointmoe train TASK --config FILE [key=value ...]`` (also ``ros2 run pointmoe_core train``).

Each trainable model registers a task here when its trainer lands; the command reports
which tasks this install knows instead of guessing.

Everything after TASK is parsed here, options and ``key=value`` overrides in any order
(``seg --config f.yaml epochs=2 --resume``): argparse cannot take positionals on both sides of
an option inside a subcommand, so the subcommand parser hands the rest over whole.

``key=value`` overrides are checked against the task's config dataclass before anything loads:
an unknown key or a value of the wrong type (``max_steps=abc``) is a usage error naming both.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Any

from .common.cli_args import ArgumentParser, UsageError

# task name -> "module:function" taking the parsed args and returning a summary dict, and
# "module:class" of its config (what `key=value` overrides set)
TASKS: dict[str, str] = {
    "seg": "pointmoe_core.train.seg_trainer:train_from_args",
    "pose-dit": "pointmoe_core.plan.train_pose_dit:train_from_args",
    "planner": "pointmoe_core.plan.train_planner:train_from_args",
}
CONFIGS: dict[str, str] = {
    "seg": "pointmoe_core.train.seg_trainer:SegTrainConfig",
    "pose-dit": "pointmoe_core.plan.train_pose_dit:PoseDiTTrainConfig",
    "planner": "pointmoe_core.plan.train_planner:PlannerTrainConfig",
}


def _load(target: str) -> Any:
    module_name, name = target.split(":")
    return getattr(importlib.import_module(module_name), name)


def task_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="pointmoe train TASK", description="options of every training task")
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--batch-from-single-dataset", action="store_true",
                        help="every batch from one dataset (the non-mixed baseline)")
    parser.add_argument("--demos", help="pose-dit, planner: folder of oracle demos from `pointmoe sim demos`")
    parser.add_argument("--stage", type=int, choices=(1, 2, 3),
                        help="planner: 1 scene-caption alignment, 2 MoE + LoRA instruction tuning, 3 Pose-DiT")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value")
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help=f"what to train: one of {sorted(TASKS) or 'none yet'}")
    parser.add_argument("options", nargs=argparse.REMAINDER, metavar="...",
                        help="[--config FILE] [--resume] [--batch-from-single-dataset] [--demos DIR] [--stage N] "
                             "[key=value ...]; "
                             "`pointmoe train TASK --help` describes them")


def run(args: argparse.Namespace) -> dict:
    if args.task is None:
        raise UsageError(f"pointmoe train: name a task: {', '.join(sorted(TASKS))}")
    if args.task not in TASKS:
        raise UsageError(f"pointmoe train: unknown task {args.task!r}; trainable tasks: {', '.join(sorted(TASKS))}")
    options = task_parser().parse_intermixed_args(args.options)
    options.task = args.task
    try:  # before anything loads: a typo fails at once
        _load(CONFIGS[args.task]).check_overrides(options.overrides)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return _load(TASKS[args.task])(options)
