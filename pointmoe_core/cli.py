"""The ``pointmoe`` command line: one entry point, one subcommand per capability.

Each subcommand lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> dict``. The dict is the machine-readable summary: ``--json`` prints it as the
last line of output, and ``"ok": False`` in it makes the command exit with status 1.

Errors are one line on stderr, ``error: ...``: exit status 2 for a usage error (argparse's, or a
``UsageError`` a subcommand raises for a bad value), 1 for anything that fails while running;
``--debug`` shows the traceback instead, and with ``--json`` the last line is ``{"ok": false,
"error": ...}``.
"""
from __future__ import annotations

import importlib
import json
import sys
import traceback

from .common.cli_args import ArgumentParser, UsageError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pointmoe_core.demo", "run the end-to-end demo on embedded defaults"),
    "bag": ("pointmoe_core.io.bag_cli", "inspect rosbag2 files and write clouds into them"),
    "train": ("pointmoe_core.train_cli", "train a model (also `ros2 run pointmoe_core train`)"),
    "eval": ("pointmoe_core.train.eval_cli", "evaluate a segmentation checkpoint: per-dataset and per-class IoU"),
    "analyze": ("pointmoe_core.train.analyze_cli", "routing analysis: expert usage, JSD between datasets, pathways"),
    "sim": ("pointmoe_core.sim.cli", "tabletop simulator: oracle demos and planner evaluation on LoHoRavens tasks"),
    "convert": ("pointmoe_core.seg.convert_cli", "convert checkpoints between Pointcept/point_moe and our key names"),
    "parity": ("pointmoe_core.seg.parity_cli", "check our backbone against an official Point-MoE fixture"),
}


# taken anywhere on the line, so nested actions (`bag write ... --json`) get them too
GLOBAL_FLAGS = ("--json", "--debug")


def build_parser(argv: list[str] | None = None) -> ArgumentParser:
    """The parser; given the command line, it imports only the module of the subcommand named there."""
    chosen = next((arg for arg in argv if not arg.startswith("-")), None) if argv is not None else None
    parser = ArgumentParser(prog="pointmoe", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true",
                         help="print a machine-readable JSON summary as the last line")
        sub.add_argument("--debug", action="store_true", help="on an error, show its traceback")
        sub.set_defaults(module_name=module_name)
        if argv is None or name == chosen:
            _module(module_name).add_arguments(sub)
    return parser


def _module(name: str):
    return importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json, debug = "--json" in argv, "--debug" in argv
    argv = [arg for arg in argv if arg not in GLOBAL_FLAGS]
    args = build_parser(argv).parse_args(argv)
    try:
        summary = _module(args.module_name).run(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, as_json)
    except Exception as error:  # noqa: BLE001 - every failure becomes one line and an exit status
        if debug:
            traceback.print_exc()
        usage = isinstance(error, UsageError)
        message = " ".join(str(error).split()) or "(no message)"
        return _fail(message if usage else f"{type(error).__name__}: {message}", 2 if usage else 1, as_json)
    if as_json:
        print(json.dumps(summary, default=str), flush=True)
    if summary.get("ok", True):
        return 0
    # a subcommand that failed without raising still says why, in the same one line
    print(f"error: {summary.get('error', f'pointmoe {args.command} failed')}", file=sys.stderr, flush=True)
    return 1


def _fail(message: str, status: int, as_json: bool) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps({"ok": False, "error": message}), flush=True)
    return status


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
