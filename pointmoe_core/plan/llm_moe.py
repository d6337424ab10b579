"""Dense→MoE conversion of a LLaMA-style LLM: what 3D-MoE calls "MoE conversion" (stage II).

Ma et al., "3D-MoE: A Mixture-of-Experts Multi-modal LLM for 3D Vision and Pose Diffusion via
Rectified Flow" (arXiv 2501.16698) turn the pretrained dense LLM into a Mixture-of-Experts by
**copying each feed-forward network into E experts** behind a softmax top-k router (×2 and ×4
experts are compared), then fine-tune with LoRA (:mod:`.lora`). Copying, rather than splitting
one FFN into smaller pieces, keeps the source LLM's knowledge: right after conversion every expert
is the original MLP and the top-k weights sum to one, so the converted model computes exactly
what the dense one did, whatever the router says.

``convert_llama_to_moe(model, num_experts, top_k)`` replaces ``layer.mlp`` of every decoder layer
of any ``LlamaForCausalLM`` (or a model with the same layout) by an :class:`MoEMLP`. After each
forward every MoE layer holds its load-balance loss (``moe_aux_loss(model)`` sums them; the
trainer adds it, scaled, to the task loss) and has counted its routing decisions by token
modality: ``set_modality_mask(model, is_3d)`` says which positions are 3D (scene) tokens and
``routing_report(model)`` gives each layer's expert load for 3D and text tokens, warning when
one expert takes more than 90% of the tokens (routing collapse).
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ..common.moe import dispatch_to_experts, load_balance_loss

logger = logging.getLogger(__name__)

MODALITIES = ("text", "3d")  # row order of the routing counters
COLLAPSE_SHARE = 0.9  # one expert first choice for more than this share of the tokens = collapse


class MoEMLP(nn.Module):
    """E copies of a decoder layer's MLP behind a softmax top-k router; ``(..., H) -> (..., H)``.

    After each forward: ``aux_loss`` (Switch/Mixtral load-balance loss ``E * sum_e f_e * P_e``,
    1 for perfectly uniform routing, E for full collapse; computed when read, so inference, which
    never reads it, does not pay for it) and ``last_topk_idx`` (tokens, k). ``routed_tokens`` and
    ``first_choice_tokens`` (2 modalities x E, not saved in the state dict) accumulate top-k
    assignments and first choices until :func:`reset_routing_stats`.
    """

    def __init__(self, mlp: nn.Module, hidden_size: int, num_experts: int, top_k: int, router_init_std: float) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, {num_experts}], got {top_k}")
        self.num_experts = num_experts
        self.top_k = top_k
        like = next(mlp.parameters())
        self.router = nn.Linear(hidden_size, num_experts, bias=False, device=like.device, dtype=like.dtype)
        # Small random weights, not zeros: the experts are identical, so any router is exact at
        # conversion, but ties (zeros) would send every token to expert 0 and only it would train.
        nn.init.normal_(self.router.weight, std=router_init_std)
        self.experts = nn.ModuleList(copy.deepcopy(mlp) for _ in range(num_experts))
        self.register_buffer("routed_tokens", torch.zeros(2, num_experts, dtype=torch.long), persistent=False)
        self.register_buffer("first_choice_tokens", torch.zeros(2, num_experts, dtype=torch.long), persistent=False)
        self.modality_mask: torch.Tensor | None = None  # (batch, seq) bool, True = 3D token
        self.token_mask: torch.Tensor | None = None  # (batch, seq) bool, False = padding (None: all real)
        self.last_topk_idx: torch.Tensor | None = None
        self._last_routing: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # probs, top-k, real
        self.kept_operands: dict | None = None  # common.grouped_mm.keep_operands

    @property
    def aux_loss(self) -> torch.Tensor:
        """The load-balance loss of the last forward (0 before any)."""
        if self._last_routing is None:
            return torch.zeros(())
        probs, topk_idx, real = self._last_routing
        return load_balance_loss(probs, topk_idx, self.num_experts, alpha=1.0, token_mask=real)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, top_k={self.top_k}"

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router probabilities (N, E) and the top-k (weights, expert ids), each (N, k).

        The softmax runs in at least float32 so that half-precision training routes stably. The
        k weights are renormalised to sum to one (exactness at conversion, for every k) by a
        *detached* sum: the value is the renormalised weight, but the gradient reaches each chosen
        expert's probability as in Switch Transformer; a plain renormalisation is the constant 1
        at k = 1 and would leave the router to learn from the load-balance loss alone.
        """
        probs = self.router(x).softmax(-1, dtype=torch.promote_types(x.dtype, torch.float32))
        topk_prob, topk_idx = probs.topk(self.top_k, dim=-1)
        topk_weight = topk_prob / topk_prob.sum(-1, keepdim=True).detach()
        return probs, topk_weight.to(x.dtype), topk_idx

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states.reshape(-1, hidden_states.shape[-1])
        probs, topk_weight, topk_idx = self.route(x)

        out, _ = dispatch_to_experts(x, self.experts, topk_weight, topk_idx, "auto", self.kept_operands)

        is_3d = self._flat_mask("modality", self.modality_mask, hidden_states.shape[:-1], False, x.device)
        real = self._flat_mask("token", self.token_mask, hidden_states.shape[:-1], True, x.device)
        # padding is routed like any token but neither balanced nor counted
        self._last_routing = (probs, topk_idx, real)
        self.last_topk_idx = topk_idx.detach()
        self._count(topk_idx.detach(), is_3d, real)
        return out.reshape(hidden_states.shape)

    @staticmethod
    def _flat_mask(name: str, mask: torch.Tensor | None, token_shape: torch.Size, default: bool,
                   device: torch.device) -> torch.Tensor:
        """``mask`` (set by ``set_modality_mask``) flattened like the tokens; ``default`` everywhere when unset."""
        if mask is None:
            return torch.full((token_shape.numel(),), default, dtype=torch.bool, device=device)
        if mask.shape != token_shape:
            raise ValueError(f"{name} mask has shape {tuple(mask.shape)} but the tokens are {tuple(token_shape)}; "
                             "call set_modality_mask(model, None) before running other inputs")
        return mask.reshape(-1).to(device)

    def _count(self, topk_idx: torch.Tensor, is_3d: torch.Tensor, real: torch.Tensor) -> None:
        # one count over (modality, expert) pairs, padding counted as 0: neither a loop over experts
        # nor a bincount or boolean index, which on a GPU would wait for the host in every layer
        pairs = is_3d.long().unsqueeze(1) * self.num_experts + topk_idx
        counted = real.long()
        self.routed_tokens.view(-1).index_add_(0, pairs.flatten(), counted.unsqueeze(1).expand_as(pairs).flatten())
        self.first_choice_tokens.view(-1).index_add_(0, pairs[:, 0], counted)


def moe_layers(model: nn.Module) -> list[MoEMLP]:
    """The MoE layers of ``model`` in depth order (works through peft wrappers too)."""
    return [module for module in model.modules() if isinstance(module, MoEMLP)]


def convert_llama_to_moe(
    model: nn.Module, num_experts: int, top_k: int, router_init_std: float | None = None
) -> nn.Module:
    """Replace every decoder layer's ``mlp`` by an :class:`MoEMLP` of ``num_experts`` copies, in place.

    Convert before :func:`.lora.apply_lora`, so that each expert gets its own adapters.
    ``router_init_std`` defaults to the model's ``initializer_range`` (0.02 for LLaMA).
    """
    if moe_layers(model):
        raise ValueError("model is already a Mixture-of-Experts")
    config = model.config
    std = getattr(config, "initializer_range", 0.02) if router_init_std is None else router_init_std
    for layer in model.get_decoder().layers:
        layer.mlp = MoEMLP(layer.mlp, config.hidden_size, num_experts, top_k, std)
    return model


def moe_aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum over MoE layers of the load-balance loss of the last forward (0 for a dense model)."""
    losses = [layer.aux_loss for layer in moe_layers(model)]
    return torch.stack(losses).sum() if losses else torch.zeros(())


def set_modality_mask(model: nn.Module, is_3d: torch.Tensor | None, real: torch.Tensor | None = None) -> None:
    """Mark which positions of the next inputs are 3D tokens, shape (batch, seq); ``None`` = all
    text. ``real`` (same shape, True = real token) leaves padding out of the routing statistics
    and the load-balance loss; ``None`` = every position is real."""
    for layer in moe_layers(model):
        layer.modality_mask = None if is_3d is None else is_3d.bool()
        layer.token_mask = None if is_3d is None or real is None else real.bool()


def reset_routing_stats(model: nn.Module) -> None:
    for layer in moe_layers(model):
        layer.routed_tokens.zero_()
        layer.first_choice_tokens.zero_()


def _shares(counts: torch.Tensor) -> list[float]:
    total = int(counts.sum())
    return [int(c) / total if total else 0.0 for c in counts]


def routing_report(model: nn.Module, reset: bool = False) -> dict:
    """Expert load per layer and modality since the last reset, as plain (JSON-ready) data.

    ``layers[i][modality]``: ``tokens`` (count), ``load`` (share of the top-k assignments per
    expert, sums to 1) and ``first_choice`` (share of tokens whose top expert it is). Each layer
    also gets ``top_share``, the largest first-choice share over all tokens, and ``collapsed``;
    a collapsed layer logs a warning.
    """
    moes = moe_layers(model)
    layers = []
    for index, layer in enumerate(moes):
        entry: dict = {}
        for row, modality in enumerate(MODALITIES):
            entry[modality] = {
                "tokens": int(layer.first_choice_tokens[row].sum()),
                "load": _shares(layer.routed_tokens[row]),
                "first_choice": _shares(layer.first_choice_tokens[row]),
            }
        overall = _shares(layer.first_choice_tokens.sum(0))
        top_share = max(overall)
        entry["top_share"] = top_share
        entry["collapsed"] = top_share > COLLAPSE_SHARE
        if entry["collapsed"]:
            logger.warning(
                "MoE layer %d: expert %d is the first choice of %.1f%% of the tokens (routing collapse)",
                index, overall.index(top_share), 100 * top_share,
            )
        layers.append(entry)
    if reset:
        reset_routing_stats(model)
    return {
        "num_experts": moes[0].num_experts if moes else 0,
        "top_k": moes[0].top_k if moes else 0,
        "layers": layers,
    }
