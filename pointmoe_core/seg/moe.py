"""Sparse Mixture-of-Experts layer: what Point-MoE puts in place of the attention output
projection W_o of every PTv3 block ("MoE at W_o").

A linear router scores every token against E experts; each token is sent to its top-k experts,
gated MLPs ``down(act(gate(x)) * up(x))`` without biases, and their outputs are mixed with the
renormalised router probabilities. Module and buffer names follow the official
``point_moe/moe_layer.py`` (``gate.weight``, ``gate.score_accumulator``,
``experts.{i}.{gate,up,down}_proj.weight``, ``expert_token_counter``) so released checkpoints
load with ``strict=True``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..common.moe import (
    ACTIVATIONS,
    dispatch_to_experts,
    grouped_dispatch_supported,
    load_balance_loss,
    tokens_per_expert,
)

# The official renormalisation adds this to the denominator; kept for bit-level parity.
RENORM_EPS = 1e-20


class Router(nn.Module):
    """Linear gate without bias: ``logits = x @ weight.T`` over all experts."""

    def __init__(self, dim: int, num_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_experts, dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        # Part of the official state dict (never updated there); kept so checkpoints load.
        self.register_buffer("score_accumulator", torch.zeros(num_experts, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class GatedExpert(nn.Module):
    """One expert: the gated MLP ``down(act(gate(x)) * up(x))``, no biases."""

    def __init__(self, dim: int, hidden: int, act: str = "relu") -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
        self.act = act
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(ACTIVATIONS[self.act](self.gate_proj(x)) * self.up_proj(x))


@dataclass(frozen=True)
class RoutingStats:
    """What the router did in the last forward (detached)."""

    topk_idx: torch.Tensor  # (N, k) int64, column 0 = most probable expert
    topk_weight: torch.Tensor  # (N, k) mixing weights
    expert_ends: torch.Tensor  # (E,) int32, the N*k assignments sorted by expert: where each expert's end
    probs: torch.Tensor  # (N, E) router probabilities

    @property
    def tokens_per_expert(self) -> torch.Tensor:
        """(E,) int64, counts over the N*k assignments."""
        return tokens_per_expert(self.expert_ends)

    @property
    def entropy(self) -> torch.Tensor:
        """() mean over tokens of -sum_e p_e log p_e (0 when N == 0); computed when read, as
        training logs it and inference does not."""
        if not len(self.probs):
            return self.probs.new_zeros(())
        return torch.special.entr(self.probs).sum(-1).mean()


class SparseMoE(nn.Module):
    """Token-choice top-k MoE over gated-MLP experts; input and output are ``(N, dim)``.

    After each forward: ``last_stats`` (:class:`RoutingStats`), ``last_topk_idx`` (for colouring
    clouds by expert) and ``aux_loss`` (the load-balance loss in training mode, else 0; the
    trainer adds it to the task loss). Training also accumulates ``expert_token_counter``.
    Inference pays for none of these beyond keeping the router's tensors: each is computed
    when read.
    """

    def __init__(
        self,
        dim: int,
        num_experts: int = 8,
        top_k: int = 2,
        hidden_ratio: float = 2,
        act: str = "relu",
        aux_loss_alpha: float = 0.0,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, {num_experts}], got {top_k}")
        self.dim = dim
        self.num_experts = num_experts
        self.top_k = top_k
        self.aux_loss_alpha = aux_loss_alpha
        hidden = int(dim * hidden_ratio)
        self.gate = Router(dim, num_experts)
        self.experts = nn.ModuleList(GatedExpert(dim, hidden, act) for _ in range(num_experts))
        self.register_buffer("expert_token_counter", torch.zeros(num_experts, dtype=torch.long))
        self.last_stats: RoutingStats | None = None
        self._balanced: tuple[torch.Tensor, torch.Tensor] | None = None  # training: probs, top-k ids
        self.dispatch = "auto"  # or "loop" / "grouped": common.moe.dispatch_to_experts
        self.kept_operands: dict | None = None  # common.grouped_mm.keep_operands

    @property
    def aux_loss(self) -> torch.Tensor:
        """The load-balance loss of the last forward in training mode, else 0."""
        if self._balanced is None:
            return torch.zeros(()) if self.last_stats is None else self.last_stats.probs.new_zeros(())
        return load_balance_loss(*self._balanced, self.num_experts, self.aux_loss_alpha)

    @property
    def last_topk_idx(self) -> torch.Tensor | None:
        return None if self.last_stats is None else self.last_stats.topk_idx

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_experts={self.num_experts}, top_k={self.top_k}, "
                f"aux_loss_alpha={self.aux_loss_alpha}")

    def kernel(self, device: torch.device | str, dtype: torch.dtype) -> str:
        """How a forward of ``dtype`` tokens on ``device`` runs the experts: "grouped_mm" or "loop"."""
        grouped = self.dispatch == "grouped" or (
            self.dispatch == "auto" and grouped_dispatch_supported(self.experts, device, dtype))
        return "grouped_mm" if grouped else "loop"

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router probabilities (N, E) and the top-k (weights, expert ids), each (N, k).

        Softmax runs in at least float32 so that half-precision training routes stably.
        """
        probs = self.gate(x).softmax(-1, dtype=torch.promote_types(x.dtype, torch.float32))
        topk_weight, topk_idx = probs.topk(self.top_k, dim=-1)
        # Like the official layer, a single expert keeps its raw probability as its weight.
        if self.top_k > 1:
            topk_weight = topk_weight / (topk_weight.sum(-1, keepdim=True) + RENORM_EPS)
        return probs, topk_weight.to(x.dtype), topk_idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs, topk_weight, topk_idx = self.route(x)
        out, expert_ends = dispatch_to_experts(x, self.experts, topk_weight, topk_idx, self.dispatch,
                                               self.kept_operands)
        self._balanced = None
        if self.training:
            self._balanced = (probs, topk_idx)
            self.expert_token_counter += tokens_per_expert(expert_ends)
        if torch.is_grad_enabled():
            probs, topk_weight = probs.detach(), topk_weight.detach()
        self.last_stats = RoutingStats(topk_idx, topk_weight, expert_ends, probs)
        return out
