"""Grouped GEMMs: many matrix products of different row counts as one kernel (``torch._grouped_mm``).

Where a loop would run one GEMM per group (the MoE experts, :mod:`.moe`; the kernel offsets of the
pure-torch sparse convolution, :mod:`..seg.sparse_conv`), the rows are laid out group after group
and multiplied in one call, with the group ends staying on the device: no host sync and one launch
instead of dozens, which on a GPU is most of the cost of small products. torch has a fused kernel
for bfloat16 on Hopper and datacenter Blackwell GPUs; elsewhere (a CPU, an A100, an RTX card, a
Jetson) it copies the group ends to the host and runs one GEMM per group, as our loops do, so
those stay.
"""
from __future__ import annotations

import functools

import torch

# the fused kernel reads 16-byte rows: widths a multiple of 8 bfloat16 values
GROUPED_WIDTH = 8
# the major compute capabilities torch runs its fused grouped GEMM on (Hopper, datacenter Blackwell)
FUSED_CAPABILITY_MAJORS = (9, 10)


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype matrix products of ``tensor`` run in: autocast's where autocast is on for its device."""
    kind = tensor.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else tensor.dtype


def fused(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether our layers take a grouped GEMM in ``dtype`` on ``device`` now: where it is one fused
    kernel (bfloat16 on a GPU of ``FUSED_CAPABILITY_MAJORS``), in inference. With autograd on,
    training keeps the loops until a GPU run has checked the fused kernel's backward in our layers
    (its CPU form is tested against them)."""
    device = torch.device(device)
    return (hasattr(torch, "_grouped_mm") and device.type == "cuda" and dtype == torch.bfloat16
            and not torch.is_grad_enabled() and capability_major(device) in FUSED_CAPABILITY_MAJORS)


@functools.cache
def capability_major(device: torch.device) -> int:
    """The major compute capability of the CUDA ``device``."""
    return torch.cuda.get_device_capability(device)[0]


def grouped_mm(rows: torch.Tensor, weights: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """``rows[ends[g-1]:ends[g]] @ weights[g].T`` for every group g, stacked: rows (P, in), weights
    (G, out, in) as ``nn.Linear`` stores them, ends (G,) int32 -> (P, out). Widths must be
    multiples of ``GROUPED_WIDTH`` for the fused kernel."""
    # (G, in, out) as a transposed view of the contiguous (G, out, in) stack: the column-major
    # operand the kernel wants; gradients reach the weights through the view
    return torch._grouped_mm(rows, weights.to(rows.dtype).contiguous().transpose(1, 2), offs=ends)
