"""Top-k Mixture-of-Experts arithmetic shared by Point-MoE (:mod:`pointmoe_core.seg.moe`) and the
3D-MoE planner's LLM (:mod:`pointmoe_core.plan.llm_moe`): the switch-style load-balance loss and
the dispatch of tokens to their experts. The routers and experts themselves differ (official
Point-MoE module names there, copies of the LLM's FFN here) and stay with their features.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def load_balance_loss(probs: torch.Tensor, topk_idx: torch.Tensor, num_experts: int, alpha: float) -> torch.Tensor:
    """Switch-style auxiliary loss ``alpha * E * sum_i mean_prob_i * frac_i``.

    ``frac_i`` is the share of the N*k slot assignments routed to expert i; it carries no
    gradient, so the router learns through ``mean_prob``. Perfectly uniform routing gives alpha.
    """
    if alpha == 0 or probs.shape[0] == 0:
        return probs.new_zeros(())
    frac = torch.bincount(topk_idx.flatten(), minlength=num_experts).to(probs.dtype) / topk_idx.numel()
    return alpha * num_experts * (probs.mean(0) * frac).sum()


def dispatch_to_experts(x: torch.Tensor, experts: Sequence[nn.Module], topk_weight: torch.Tensor,
                        topk_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of each token's top-k expert outputs weighted by its routing weights: x (N, C),
    topk_weight and topk_idx (N, k) -> (out (N, C), tokens per expert (E,)).

    The N*k (token, slot) assignments are grouped by expert so each expert runs once on a
    contiguous slice of its tokens. torch has no public grouped GEMM, hence one call per expert;
    ascending expert order summed into zeros matches the official Point-MoE eval path.
    """
    flat_expert = topk_idx.flatten()
    order = flat_expert.argsort(stable=True)
    token_of_slot = order // topk_idx.shape[1]
    weight_of_slot = topk_weight.flatten()[order].unsqueeze(1)
    tokens_per_expert = torch.bincount(flat_expert, minlength=len(experts))
    out = torch.zeros_like(x)
    start = 0
    for expert, end in zip(experts, tokens_per_expert.cumsum(0).tolist()):
        if end > start:
            tokens = token_of_slot[start:end]
            out.index_add_(0, tokens, expert(x.index_select(0, tokens)) * weight_of_slot[start:end])
        start = end
    return out, tokens_per_expert
