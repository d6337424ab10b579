"""``pointmoe train TASK --config FILE [key=value ...]`` (also ``ros2 run pointmoe_core train``).

Each trainable model registers a task here when its trainer lands; the command reports
which tasks this install knows instead of guessing.
"""
from __future__ import annotations

import argparse

# task name -> "module:function" taking the parsed args and returning a summary dict
TASKS: dict[str, str] = {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help=f"what to train: one of {sorted(TASKS) or 'none yet'}")
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value")


def run(args: argparse.Namespace) -> dict:
    if args.task not in TASKS:
        known = ", ".join(sorted(TASKS)) or "none in this version"
        print(f"pointmoe train: unknown task {args.task!r}; trainable tasks: {known}")
        return {"ok": False, "error": "unknown task", "task": args.task, "tasks": sorted(TASKS)}
    import importlib

    module_name, function_name = TASKS[args.task].split(":")
    return getattr(importlib.import_module(module_name), function_name)(args)
