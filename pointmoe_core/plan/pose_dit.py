"""Pose-DiT: the diffusion-transformer action head of 3D-MoE.

Ma et al., "3D-MoE: A Mixture-of-Experts Multi-modal LLM for 3D Vision and Pose Diffusion via
Rectified Flow" (arXiv 2501.16698). No code is public; this follows the paper's description:

* input: a noisy plan of T steps x 2 poses (pick, place), each pose = xyz normalised to the
  workspace + continuous 6D rotation, shape (B, T, 2, 9), with a step mask for padding;
* spatial-temporal blocks ("ST-DiT"): spatial attention over the two poses of a step, then
  temporal attention across steps; ``attention="joint"`` (one attention over all 2T tokens) and
  ``"temporal"`` (steps only, pick and place never attend to each other) are the ablations;
* timestep conditioning by a sinusoidal embedding and adaLN-Zero (Peebles & Xie, DiT);
* cross-attention to condition tokens (scene + instruction now, LLM hidden states later) with a
  key padding mask. Tokens that stand for an object may carry its centre (``cond_xyz``, in the
  poses' normalised frame): each head then adds ``-w(t) * |pose xyz - centre|^2`` to its logits,
  with ``w(t) >= 0`` regressed from the timestep. This is our addition, after LEO's
  pairwise-distance attention: late in denoising, when the noisy pose is already near its
  object, snapping to that object is one learned scalar per head instead of a pointer the
  network must discover through feature matching;
* a stop logit per step (trained with BCE to fire on the plan's last step), so the planner
  decides how many steps the task needs. Temporal attention is causal by default: a step never
  sees later steps, so sampling a long horizon and cutting it at the stop flag gives exactly the
  plan that training saw, whatever was sampled after the cut.

Defaults are the paper's v2 numbers: 3 blocks, width 256, 4 heads. ``pose_dit_loss`` and
``sample_poses`` at the bottom tie the network to a noise scheduler (``rectified_flow`` or
``ddpm``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..common.config import YamlConfig
from ..common.pose_sequence import POSE_DIM
from .rectified_flow import NoiseScheduler, masked_mse

# the self-attention layers of one block, in order, per variant
ATTENTION_VARIANTS: dict[str, tuple[str, ...]] = {
    "st": ("spatial", "temporal"),
    "joint": ("joint",),
    "temporal": ("temporal",),
}
POSES_PER_STEP = 2  # pick, place


@dataclass
class PoseDiTConfig(YamlConfig):
    hidden_size: int = 256
    depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    attention: str = "st"  # "st" | "joint" | "temporal"
    causal: bool = True  # a step attends only to itself and earlier steps
    cond_dim: int = 256  # width of the condition tokens (scene encoder or LLM hidden size)
    pose_dim: int = POSE_DIM
    frequency_embedding_size: int = 256  # sinusoid channels before the timestep MLP
    # add an embedding of each positioned condition token's centre (``cond_xyz``) to it, so that
    # what cross-attention reads says where the object is: an LLM state carries its object's place
    # only faintly (the few huge activations of SmolLM2's states dominate their normalisation),
    # unlike the MiniLM planner's object tokens, which embed their location themselves
    position_embed: bool = False

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_VARIANTS:
            raise ValueError(f"attention must be one of {sorted(ATTENTION_VARIANTS)}, got {self.attention!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")


@dataclass
class PoseDiTOutput:
    prediction: torch.Tensor  # (B, T, 2, 9): velocity for rectified flow, noise for DDPM
    stop_logits: torch.Tensor  # (B, T): "the plan ends after this step"


# ---------------------------------------------------------------------------------------------
# Embeddings and attention
# ---------------------------------------------------------------------------------------------
def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(...,) -> (..., dim): cos and sin of x at frequencies from 1 down to 1/max_period (GLIDE, DiT)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = x[..., None].float() * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Flow time t in [0, 1] -> vector c, by sinusoids and a 2-layer MLP (DiT's ``t_embedder``)."""

    # DiT's frequencies are tuned to integer steps 0..999; on t in [0, 1] most channels would be
    # flat, so t is stretched to that range first.
    TIME_SCALE = 1000.0

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t * self.TIME_SCALE, self.frequency_embedding_size))


class Attention(nn.Module):
    """Multi-head attention; with ``context`` it is cross-attention.

    ``mask`` broadcasts to (B, heads, queries, keys), True where a query may attend to a key.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` (float, broadcast like ``mask``) is added to the logits where ``mask`` allows."""
        context = x if context is None else context
        q = self.q(x).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        k, v = self.kv(context).unflatten(-1, (2, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        if mask is not None:
            # Softmax over nothing is NaN. A query with no key to attend to is a padded step (its
            # output is never used), so let it attend to everything instead.
            mask = mask | ~mask.any(-1, keepdim=True)
        if bias is not None:
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).flatten(2))


@dataclass
class AttentionMasks:
    """Boolean masks (True = may attend) for every attention layout, built once per forward."""

    temporal: torch.Tensor  # (B * 2, 1, T, T), rows ordered (batch, pose)
    joint: torch.Tensor  # (B, 1, 2T, 2T), tokens ordered (step, pose)
    cross: torch.Tensor  # (B, 1, 1, L)

    @classmethod
    def build(cls, step_mask: torch.Tensor, cond_mask: torch.Tensor, causal: bool) -> "AttentionMasks":
        t, device = step_mask.shape[1], step_mask.device
        steps = torch.arange(t, device=device)
        allowed = steps[None, :] <= steps[:, None] if causal else torch.ones(t, t, dtype=torch.bool, device=device)
        temporal = step_mask[:, None, None, :] & allowed
        step_of_token = torch.arange(t * POSES_PER_STEP, device=device) // POSES_PER_STEP
        joint = step_mask[:, None, None, step_of_token] & allowed[step_of_token][:, step_of_token]
        return cls(temporal.repeat_interleave(POSES_PER_STEP, dim=0), joint, cond_mask[:, None, None, :])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters: adaLN supplies scale and shift."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------
class PoseDiTBlock(nn.Module):
    """Self-attention layers of the chosen variant, cross-attention to the condition, MLP.

    Each of these residual branches is adaLN-Zero: its input is LayerNorm-ed, then scaled and
    shifted, and its output gated, by amounts regressed from the timestep embedding; the
    regression starts at zero, so every block starts as the identity.
    """

    def __init__(self, config: PoseDiTConfig) -> None:
        super().__init__()
        d, heads = config.hidden_size, config.num_heads
        self.layout = ATTENTION_VARIANTS[config.attention]
        self.self_attn = nn.ModuleList(Attention(d, heads) for _ in self.layout)
        self.cross_attn = Attention(d, heads)
        hidden = int(d * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        num_branches = len(self.layout) + 2
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 3 * num_branches * d))
        # per-head weight of the pose-to-object distance in cross-attention, as a function of t
        self.distance_weight = nn.Sequential(nn.SiLU(), nn.Linear(d, heads), nn.Softplus())

    def self_attention(self, kind: str, attn: Attention, masks: AttentionMasks, h: torch.Tensor) -> torch.Tensor:
        b, t, p, d = h.shape
        if kind == "spatial":  # the two poses of each step
            return attn(h.reshape(b * t, p, d)).reshape(b, t, p, d)
        if kind == "temporal":  # each pose role across steps
            across_steps = h.transpose(1, 2).reshape(b * p, t, d)
            return attn(across_steps, mask=masks.temporal).reshape(b, p, t, d).transpose(1, 2)
        return attn(h.reshape(b, t * p, d), mask=masks.joint).reshape(b, t, p, d)

    def cross_attention(self, cond: torch.Tensor, masks: AttentionMasks, distances: torch.Tensor | None,
                        c: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        b, t, p, d = h.shape
        bias = None
        if distances is not None:  # (B, 2T, L) squared distances, 0 where a token has no position
            bias = -self.distance_weight(c)[:, :, None, None] * distances[:, None]
        return self.cross_attn(h.reshape(b, t * p, d), cond, masks.cross, bias).reshape(b, t, p, d)

    def forward(self, x: torch.Tensor, c: torch.Tensor, cond: torch.Tensor, masks: AttentionMasks,
                distances: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, 2, D), c (B, D) timestep embedding, cond (B, L, D) condition tokens,
        distances (B, 2T, L) from each noisy pose to each positioned condition token, or None."""
        branches = [partial(self.self_attention, kind, attn, masks) for kind, attn in zip(self.layout, self.self_attn)]
        branches += [partial(self.cross_attention, cond, masks, distances, c), self.mlp]
        modulation = self.adaLN_modulation(c)[:, None, None].chunk(3 * len(branches), dim=-1)
        for i, branch in enumerate(branches):
            shift, scale, gate = modulation[3 * i : 3 * i + 3]
            x = x + gate * branch(modulate(layer_norm(x), shift, scale))
        return x


class PoseDiT(nn.Module):
    """(noisy plan, t, condition tokens) -> (prediction shaped like the plan, stop logits)."""

    def __init__(self, config: PoseDiTConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or PoseDiTConfig()
        d = c.hidden_size
        self.pose_embed = nn.Linear(c.pose_dim, d)
        self.role_embed = nn.Parameter(torch.zeros(POSES_PER_STEP, d))  # pick vs place
        self.time_embed = TimestepEmbedder(d, c.frequency_embedding_size)
        # LLM hidden states have large, uneven scales; normalising first keeps one recipe for all
        self.cond_embed = nn.Sequential(nn.LayerNorm(c.cond_dim), nn.Linear(c.cond_dim, d))
        if c.position_embed:
            self.cond_position = nn.Sequential(nn.Linear(3, d), nn.GELU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(PoseDiTBlock(c) for _ in range(c.depth))
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.pose_head = nn.Linear(d, c.pose_dim)
        self.stop_head = nn.Linear(POSES_PER_STEP * d, 1)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's scheme: Xavier linears, small timestep MLP, zero adaLN regressions and heads."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.role_embed, std=0.02)
        for layer in self.time_embed.mlp[0::2]:
            nn.init.normal_(layer.weight, std=0.02)
        zeroed = [block.adaLN_modulation[-1] for block in self.blocks]
        zeroed += [block.distance_weight[1] for block in self.blocks]  # every head starts at softplus(0)
        zeroed += [self.final_modulation[-1], self.pose_head, self.stop_head]
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        noisy_poses: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor | None = None,
        step_mask: torch.Tensor | None = None,
        cond_xyz: torch.Tensor | None = None,
    ) -> PoseDiTOutput:
        """noisy_poses (B, T, 2, 9); t (B,) in [0, 1], 1 = noise; cond (B, L, cond_dim);
        cond_mask (B, L) and step_mask (B, T), True = real (default: all real); cond_xyz (B, L, 3):
        normalised centre of each object token, NaN for tokens without one (default: none has)."""
        b, t_steps = noisy_poses.shape[:2]
        if step_mask is None:
            step_mask = torch.ones(b, t_steps, dtype=torch.bool, device=noisy_poses.device)
        if cond_mask is None:
            cond_mask = torch.ones(cond.shape[:2], dtype=torch.bool, device=cond.device)
        d = self.config.hidden_size
        step_position = sinusoidal_embedding(torch.arange(t_steps, device=noisy_poses.device), d)
        x = self.pose_embed(noisy_poses) + self.role_embed + step_position[:, None]
        c = self.time_embed(t)
        cond = self.cond_embed(cond)
        if cond_xyz is not None and self.config.position_embed:
            cond = cond + self.cond_position(cond_xyz.nan_to_num(0.0)) * cond_xyz[..., :1].isfinite()
        masks = AttentionMasks.build(step_mask, cond_mask, self.config.causal)
        distances = None
        if cond_xyz is not None:
            pose_xyz = noisy_poses[..., :3].flatten(1, 2)  # (B, 2T, 3), tokens ordered (step, pose)
            distances = (pose_xyz[:, :, None] - cond_xyz[:, None]).square().sum(-1).nan_to_num(0.0)
        for block in self.blocks:
            x = block(x, c, cond, masks, distances)
        shift, scale = self.final_modulation(c)[:, None, None].chunk(2, dim=-1)
        h = modulate(layer_norm(x), shift, scale)
        return PoseDiTOutput(self.pose_head(h), self.stop_head(h.flatten(2)).squeeze(-1))


# ---------------------------------------------------------------------------------------------
# Training objective and sampling
# ---------------------------------------------------------------------------------------------
def stop_targets(step_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool -> (B, T) float: 1 on each plan's last real step, else 0."""
    after = torch.cat([step_mask[:, 1:], torch.zeros_like(step_mask[:, :1])], dim=1)
    return (step_mask & ~after).float()


def pose_dit_loss(
    model: PoseDiT,
    scheduler: NoiseScheduler,
    poses: torch.Tensor,
    step_mask: torch.Tensor,
    cond: torch.Tensor,
    cond_mask: torch.Tensor,
    stop_weight: float = 1.0,
    generator: torch.Generator | None = None,
    cond_xyz: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Denoising loss on real steps + ``stop_weight`` x BCE of the stop flags.

    Returns ``{"loss", "pose_loss", "stop_loss"}``; plans are (B, T, 2, 9) padded to the longest.
    """
    t = scheduler.sample_time(poses.shape[0], poses.device, generator)
    noise = torch.randn(poses.shape, device=poses.device, dtype=poses.dtype, generator=generator)
    noisy, target = scheduler.noisy_input_and_target(poses, noise, t)
    out = model(noisy, t, cond, cond_mask, step_mask, cond_xyz)
    pose_loss = masked_mse(out.prediction, target, step_mask)
    stop_loss = F.binary_cross_entropy_with_logits(out.stop_logits[step_mask], stop_targets(step_mask)[step_mask])
    return {"loss": pose_loss + stop_weight * stop_loss, "pose_loss": pose_loss, "stop_loss": stop_loss}


@torch.no_grad()
def sample_poses(
    model: PoseDiT,
    scheduler: NoiseScheduler,
    cond: torch.Tensor,
    cond_mask: torch.Tensor,
    horizon: int,
    num_steps: int | None = None,
    generator: torch.Generator | None = None,
    cond_xyz: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample plans of ``horizon`` steps: poses (B, T, 2, 9) and stop probabilities (B, T)."""
    return denoise_poses(model, scheduler, starting_noise(model, cond, horizon, generator), cond, cond_mask,
                         cond_xyz, num_steps)


def starting_noise(model: PoseDiT, cond: torch.Tensor, horizon: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The noise (B, T, 2, 9) sampling starts from, for ``cond``'s batch, on its device."""
    shape = (cond.shape[0], horizon, POSES_PER_STEP, model.config.pose_dim)
    # drawn on the CPU so that one seed gives the same starting noise on every device
    return torch.randn(shape, dtype=cond.dtype, generator=generator).to(cond.device)


def denoise_poses(
    model: PoseDiT,
    scheduler: NoiseScheduler,
    noise: torch.Tensor,
    cond: torch.Tensor,
    cond_mask: torch.Tensor,
    cond_xyz: torch.Tensor | None = None,
    num_steps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sample_poses`` from the given starting ``noise``. The stop flags are read from the last
    denoising call, the one closest to the clean plan."""
    stop_logits = cond.new_zeros(noise.shape[:2])

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal stop_logits
        out = model(x, t, cond, cond_mask, cond_xyz=cond_xyz)
        stop_logits = out.stop_logits
        return out.prediction

    poses = scheduler.sample(denoise, noise, num_steps)
    return poses, torch.sigmoid(stop_logits)


def plan_lengths(stop_prob: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B, T) stop probabilities -> (B,) number of steps to keep: up to the first stop, else all."""
    fired = stop_prob > threshold
    first = fired.float().argmax(-1)  # argmax returns the first of equal maxima
    return torch.where(fired.any(-1), first + 1, fired.shape[1])
