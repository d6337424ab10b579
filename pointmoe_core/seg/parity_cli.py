"""``pointmoe parity --fixture DIR``: our backbone against a fixture of the official Point-MoE
backbone (:mod:`.parity`); exit status 1 above ``--tol``.
"""
from __future__ import annotations

import argparse
from typing import Any

from .parity import format_report, run_parity
from .segmenter import AUTOCAST_DTYPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``pointmoe parity --fixture DIR [--json]``: exit status 1 above ``--tol``."""
    parser.add_argument("--fixture", required=True,
                        help="directory with *_official.pth, *_meta.json and *_io.npz")
    parser.add_argument("--conv-backend", default="auto", choices=("auto", "torch", "spconv"))
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(AUTOCAST_DTYPES),
                        help="autocast dtype of the forward (float32 weights)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    result = run_parity(args.fixture, conv_backend=args.conv_backend, tol=args.tol, device=args.device,
                        dtype=args.dtype)
    print("\n".join(format_report(result)))
    return {"ok": result["passed"], **result}
