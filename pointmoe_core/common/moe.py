"""Top-k Mixture-of-Experts arithmetic shared by Point-MoE (:mod:`pointmoe_core.seg.moe`) and the
3D-MoE planner's LLM (:mod:`pointmoe_core.plan.llm_moe`): the switch-style load-balance loss and
the dispatch of tokens to their experts. The routers and experts themselves differ (official
Point-MoE module names there, copies of the LLM's FFN here) and stay with their features.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .device import device_constants
from .grouped_mm import GROUPED_WIDTH, compute_dtype, fused, grouped_mm, grouped_operand, kept_operand

# the gated MLPs' activations, by the names configs use
ACTIVATIONS = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu}
DISPATCH_METHODS = ("auto", "loop", "grouped")


def load_balance_loss(probs: torch.Tensor, topk_idx: torch.Tensor, num_experts: int, alpha: float,
                      token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Switch-style auxiliary loss ``alpha * E * sum_i mean_prob_i * frac_i``.

    ``frac_i`` is the share of the N*k slot assignments routed to expert i; it carries no
    gradient, so the router learns through ``mean_prob``. Perfectly uniform routing gives alpha.
    ``token_mask`` (N,) bool leaves tokens out (padding). Counted by ``index_add_`` and masked by
    multiplication, not ``bincount`` and boolean indexing, so on a GPU nothing waits for the host.
    """
    if alpha == 0 or probs.shape[0] == 0:
        return probs.new_zeros(())
    weight = probs.new_ones(probs.shape[0]) if token_mask is None else token_mask.to(probs.dtype)
    tokens = weight.sum().clamp_min(1)
    slots = weight.unsqueeze(1).expand_as(topk_idx).flatten()
    frac = probs.new_zeros(num_experts).index_add_(0, topk_idx.flatten(), slots) / (tokens * topk_idx.shape[1])
    mean_prob = (probs * weight.unsqueeze(1)).sum(0) / tokens
    return alpha * num_experts * (mean_prob * frac.detach()).sum()


def grouped_dispatch_supported(experts: Sequence[nn.Module], device: torch.device | str,
                               dtype: torch.dtype) -> bool:
    """Whether ``dispatch_to_experts(..., method="auto")`` runs the experts as grouped GEMMs: where
    that is one fused kernel (:func:`.grouped_mm.fused`: CUDA, bfloat16), for experts that are plain
    gated MLPs (``gate_proj``, ``up_proj``, ``down_proj`` linear layers without biases and one
    activation: Point-MoE's, and the LLM's copies of its MLP until LoRA wraps their layers) with
    widths a multiple of 8 (16-byte rows in bfloat16).
    """
    return fused(device, dtype) and all(_plain_gated_mlp(expert) for expert in experts)


def _activation(expert: nn.Module):
    """A gated-MLP expert's activation: ours name it (``act``), transformers' carry it (``act_fn``)."""
    return getattr(expert, "act_fn", None) or ACTIVATIONS.get(getattr(expert, "act", None))


def _projection(expert: nn.Module, name: str) -> nn.Linear | None:
    """The ``nn.Linear`` that ``expert.<name>`` computes: the layer itself, or the base layer of a
    LoRA-wrapped one whose adapters are merged into its weight (peft's ``merge``: its forward is
    then the base layer alone); None for anything else."""
    layer = getattr(expert, name, None)
    if getattr(layer, "merged", False) and not getattr(layer, "disable_adapters", False):
        layer = getattr(layer, "base_layer", None)
    return layer if type(layer) is nn.Linear else None


def _plain_gated_mlp(expert: nn.Module) -> bool:
    layers = [_projection(expert, name) for name in ("gate_proj", "up_proj", "down_proj")]
    return (_activation(expert) is not None
            and all(layer is not None and layer.bias is None for layer in layers)
            and all(size % GROUPED_WIDTH == 0 for size in layers[0].weight.shape))


def dispatch_to_experts(x: torch.Tensor, experts: Sequence[nn.Module], topk_weight: torch.Tensor,
                        topk_idx: torch.Tensor, method: str = "auto",
                        kept: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of each token's top-k expert outputs weighted by its routing weights: x (N, C),
    topk_weight and topk_idx (N, k) -> (out (N, C), expert ends (E,) int32: the N*k slot
    assignments sorted by expert, expert e's end at ends[e]; :func:`tokens_per_expert` counts them).

    The assignments are sorted by expert once, so each expert's tokens form one contiguous slice.
    ``method="loop"`` runs each expert on its slice (one GEMM each, the slice bounds read on the
    host); ``"grouped"`` runs all experts as three grouped GEMMs over the sorted tokens, with the
    slice bounds staying on the device (no host sync); ``"auto"`` takes grouped where
    :func:`grouped_dispatch_supported` says so; ``kept`` holds the grouped GEMMs' stacked weights
    between calls (:func:`.grouped_mm.kept_operand`).
    Ascending expert order summed into zeros matches the official Point-MoE eval path.
    """
    if method not in DISPATCH_METHODS:
        raise ValueError(f"unknown MoE dispatch {method!r}; choose one of {DISPATCH_METHODS}")
    flat_expert = topk_idx.flatten()
    order = flat_expert.argsort(stable=True)
    token_of_slot = order // topk_idx.shape[1]
    weight_of_slot = torch.take(topk_weight, order).unsqueeze(1)
    # slice ends from the sorted ids: unlike bincount on CUDA, no host sync for the largest id
    ends = torch.searchsorted(flat_expert[order], _expert_ends_sought(len(experts), x.device), out_int32=True)
    dtype = compute_dtype(x)
    if method == "grouped" or (method == "auto" and grouped_dispatch_supported(experts, x.device, dtype)):
        expert_out = _grouped_gated_mlp(x.index_select(0, token_of_slot).to(dtype), experts, ends, kept)
        weighted = (expert_out * weight_of_slot.to(dtype)).to(x.dtype)
        return torch.zeros_like(x).index_add_(0, token_of_slot, weighted), ends
    out = torch.zeros_like(x)
    start = 0
    for expert, end in zip(experts, ends.tolist()):
        if end > start:
            tokens = token_of_slot[start:end]
            out.index_add_(0, tokens, expert(x.index_select(0, tokens)) * weight_of_slot[start:end])
        start = end
    return out, ends


@device_constants
def _expert_ends_sought(num_experts: int, device: torch.device) -> torch.Tensor:
    """1..E: the sorted expert ids' searchsorted boundaries."""
    return torch.arange(1, num_experts + 1, device=device)


def tokens_per_expert(ends: torch.Tensor) -> torch.Tensor:
    """(E,) int64 slot assignments per expert from :func:`dispatch_to_experts`' expert ends."""
    ends = ends.long()
    return torch.diff(ends, prepend=ends.new_zeros(1))


def _grouped_gated_mlp(x_sorted: torch.Tensor, experts: Sequence[nn.Module], ends: torch.Tensor,
                       kept: dict | None) -> torch.Tensor:
    """``down(act(gate(x)) * up(x))`` of every expert on its slice of ``x_sorted`` (ends: int32, (E,))."""

    def stacked(name: str) -> torch.Tensor:  # (E, in, out); gradients reach each expert's own weight
        weights = [_projection(expert, name).weight for expert in experts]
        return kept_operand(kept, (name, x_sorted.dtype), weights,
                            lambda: grouped_operand(torch.stack(weights), x_sorted.dtype))

    # copies of one MLP, or experts built from one config: one activation for all
    hidden = _activation(experts[0])(grouped_mm(x_sorted, stacked("gate_proj"), ends))
    hidden = hidden * grouped_mm(x_sorted, stacked("up_proj"), ends)
    return grouped_mm(hidden, stacked("down_proj"), ends)
