"""What every ``pointmoe`` subcommand shares for its arguments: one-line usage errors and value checks.

A module of its own, not part of :mod:`.cli`, so that subcommand modules can import it while
``cli`` imports them, and so that ``python -m pointmoe_core.cli`` sees the same ``UsageError``.
"""
from __future__ import annotations

import argparse
import re
import sys


class UsageError(ValueError):
    """A bad argument value found after parsing (``pointmoe`` exits 2, as for argparse's own)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ``error: PROG: MESSAGE`` on stderr, then exit 2."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    value = int(text)  # argparse turns the ValueError into "invalid positive_int value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)")


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, refused when this machine has no such GPU."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: auto, cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        import torch  # only a CUDA device needs the check

        index = int(text.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: torch sees no CUDA GPU on this machine (use cpu or auto)")
        if index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return text


def image_size(text: str) -> tuple[int, int]:
    """``HEIGHTxWIDTH`` of camera images, e.g. ``480x640``."""
    height, _, width = text.lower().partition("x")
    try:
        return int(height), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size is HEIGHTxWIDTH, e.g. 480x640, got {text!r}") from None
