"""3D-MoE's scene tokenizer: object tokens -> spatial transformer -> linear projection into the LLM.

3D-MoE (Ma et al., arXiv 2501.16698) takes LEO's object-centric 3D encoder (Huang et al., "An
Embodied Generalist Agent in 3D World", ``configs/vision3d/ose3d_pointnetpp.yaml``): a PointNet++
token per object (``scene_encoder.SceneEncoder``), then a *spatial transformer* over the objects,
then a linear *projector* into the LLM's embedding width, so each object becomes one "3D token"
of the prompt.

LEO's spatial transformer (after ViL3DRef's ``TransformerSpatialEncoderLayer``) is a transformer
encoder whose self-attention is biased by the objects' pairwise geometry, "pairwise-distance
attention": the attention logit between objects i and j gets a learned per-head function of the
distance between their centres, so "what is near what" is visible to every head without having
to be decoded from the token contents. Here that function is a per-head linear map of a Gaussian
radial-basis expansion of the distance; it starts at zero, so a fresh layer attends by content
only and learns how much distance should matter. The objects' location features (bounding-box
centre + size) are embedded and added before every layer (LEO's ``obj_loc_encoding: same_all``).
Defaults are LEO's: width 256, 3 layers, 8 heads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..common.config import YamlConfig
from .scene_encoder import LOCATION_DIM, ConditionEncoderConfig, SceneEncoder


@dataclass
class SpatialTransformerConfig(YamlConfig):
    hidden_size: int = 256
    num_layers: int = 3
    num_heads: int = 8
    ffn_size: int = 1024
    dropout: float = 0.1
    distance_basis: int = 16  # Gaussian bumps spread over [0, max_distance]
    max_distance: float = 1.2  # metres: the diagonal of Ravens' 0.5 x 1 m workspace, rounded up


def pairwise_distances(centres: torch.Tensor) -> torch.Tensor:
    """(B, M, 3) -> (B, M, M) Euclidean distances between object centres."""
    return (centres[:, :, None] - centres[:, None]).norm(dim=-1)


class DistanceBasis(nn.Module):
    """Distances (B, M, M) -> Gaussian radial-basis features (B, M, M, K), fixed, not learned."""

    def __init__(self, num_basis: int, max_distance: float) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, max_distance, num_basis), persistent=False)
        self.width = max_distance / (num_basis - 1)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((distances[..., None] - self.centres) / self.width).square())


class DistanceBiasedAttention(nn.Module):
    """Multi-head self-attention whose logits get ``bias_h(d_ij)`` (a learned function of distance)."""

    def __init__(self, hidden_size: int, num_heads: int, num_basis: int, dropout: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.distance_bias = nn.Linear(num_basis, num_heads, bias=False)
        nn.init.zeros_(self.distance_bias.weight)
        self.dropout = nn.Dropout(dropout)

    def weights(self, x: torch.Tensor, basis: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (B, heads, M, M); padded keys (``mask`` False) get none."""
        q, k, _ = self._heads(x)
        return self._probabilities(q, k, basis, mask)

    def forward(self, x: torch.Tensor, basis: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, m, d = x.shape
        q, k, v = self._heads(x)
        mixed = self.dropout(self._probabilities(q, k, basis, mask)) @ v  # (B, heads, M, head_dim)
        return self.out(mixed.transpose(1, 2).reshape(b, m, d))

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, m, _ = x.shape
        q, k, v = self.qkv(x).view(b, m, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _probabilities(self, q: torch.Tensor, k: torch.Tensor, basis: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        logits = logits + self.distance_bias(basis).permute(0, 3, 1, 2)
        # the most negative finite value rather than -inf: a scene without objects then gives
        # uniform (finite) weights over its padding instead of NaN, and its outputs are dropped
        logits = logits.masked_fill(~mask[:, None, None, :], torch.finfo(logits.dtype).min)
        return logits.softmax(dim=-1)


class SpatialTransformerLayer(nn.Module):
    """Pre-norm encoder layer: distance-biased self-attention, then a GELU feed-forward."""

    def __init__(self, config: SpatialTransformerConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.attention_norm = nn.LayerNorm(d)
        self.attention = DistanceBiasedAttention(d, config.num_heads, config.distance_basis, config.dropout)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, config.ffn_size), nn.GELU(), nn.Dropout(config.dropout),
                                 nn.Linear(config.ffn_size, d))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, basis: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), basis, mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class SpatialTransformer(nn.Module):
    """Object tokens (B, M, D), locations (B, M, 6: centre + size, metres), mask (B, M) -> (B, M, D).

    Padded objects (``mask`` False) are never attended to and come out as zeros, so real
    objects' outputs do not depend on what the padding holds or how much of it there is.
    """

    def __init__(self, config: SpatialTransformerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SpatialTransformerConfig()
        self.basis = DistanceBasis(config.distance_basis, config.max_distance)
        self.location_embed = nn.Linear(LOCATION_DIM, config.hidden_size)
        self.layers = nn.ModuleList(SpatialTransformerLayer(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.hidden_size)

    def forward(self, tokens: torch.Tensor, locations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        basis = self.basis(pairwise_distances(locations[..., :3]))
        location = self.location_embed(locations)
        x = tokens
        for layer in self.layers:
            x = layer(x + location, basis, mask)
        return self.norm(x) * mask[..., None]


class SceneProjector(nn.Linear):
    """3D-MoE's projector: a linear map of object tokens into the LLM's embedding width. Stage 1
    trains it alone, with the LLM frozen, to align 3D tokens with words."""

    def __init__(self, hidden_size: int, llm_width: int) -> None:
        super().__init__(hidden_size, llm_width)


@dataclass
class SceneTokenizerConfig(YamlConfig):
    encoder: ConditionEncoderConfig = field(default_factory=ConditionEncoderConfig)
    spatial: SpatialTransformerConfig = field(default_factory=SpatialTransformerConfig)
    llm_width: int = 576  # SmolLM2-135M; LLaMA-3.2-1B is 2048

    def __post_init__(self) -> None:
        if self.encoder.hidden_size != self.spatial.hidden_size:
            raise ValueError(f"encoder.hidden_size {self.encoder.hidden_size} must equal "
                             f"spatial.hidden_size {self.spatial.hidden_size}: the encoder feeds the transformer")


class SceneTokenizer(nn.Module):
    """Objects -> 3D tokens for the LLM: PointNet++ + location (``SceneEncoder``), spatial
    transformer, projector. points (B, M, P, 3 + C), locations (B, M, 6), mask (B, M) ->
    (B, M, llm_width); padded objects give zero tokens."""

    def __init__(self, config: SceneTokenizerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SceneTokenizerConfig()
        self.encoder = SceneEncoder(config.encoder)
        self.spatial = SpatialTransformer(config.spatial)
        self.projector = SceneProjector(config.spatial.hidden_size, config.llm_width)

    def forward(self, points: torch.Tensor, locations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.spatial(self.encoder(points, locations, mask), locations, mask)
        return self.projector(tokens) * mask[..., None]
