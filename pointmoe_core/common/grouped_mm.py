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
from typing import Callable, Hashable, Sequence

import torch
from torch import nn

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


def grouped_operand(weights: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Weights (G, out, in), as ``nn.Linear`` stores them, as the kernel's second operand: (G, in,
    out) column-major in ``dtype``, a transposed view of a contiguous stack (gradients reach the
    weights through it)."""
    return weights.to(dtype).contiguous().transpose(1, 2)


def grouped_mm(rows: torch.Tensor, operand: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """``rows[ends[g-1]:ends[g]] @ operand[g]`` for every group g, stacked: rows (P, in), operand
    (G, in, out) from :func:`grouped_operand`, ends (G,) int32 -> (P, out). Widths must be
    multiples of ``GROUPED_WIDTH`` for the fused kernel."""
    return torch._grouped_mm(rows, operand, offs=ends)


def kept_operand(kept: dict | None, key: Hashable, sources: Sequence[torch.Tensor],
                 make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``make()``, an operand built from the weights ``sources``; where a layer keeps its operands
    (``kept``, a dict of its own: :func:`keep_operands`) and autograd is off, the one built by an
    earlier call while every source is the same tensor at the same version. Building one per forward
    is a stack, a cast and a copy per layer: kernels that on a GPU cost launches, not arithmetic."""
    if kept is None or torch.is_grad_enabled():
        return make()
    stamp = tuple((source.data_ptr(), source._version) for source in sources)
    entry = kept.get(key)
    if entry is None or entry[0] != stamp:
        # the sources' storage is held with the operand: while it lives, a tensor that replaces a
        # source cannot be given its address and pass for it
        entry = kept[key] = (stamp, [source.detach() for source in sources], make())
    return entry[2]


def keep_operands(model: nn.Module) -> None:
    """Let every layer of ``model`` that builds grouped-GEMM operands (those with a
    ``kept_operands`` attribute) keep them between inference forwards: for a model whose weights
    stay as they are, such as an inference copy. An operand is rebuilt when its weights are
    replaced or updated in place, but not after a write through ``.data``, which bypasses the
    version counter (peft's merge writes so: keep operands after merging adapters)."""
    for module in model.modules():
        if hasattr(module, "kept_operands"):
            module.kept_operands = {}
