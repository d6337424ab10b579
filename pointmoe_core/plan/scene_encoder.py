"""Condition encoder for Pose-DiT: scene object tokens + instruction tokens.

3D-MoE (after LEO) describes a scene as one token per object: each object's points, centred and
scaled into the unit ball, go through PointNet++, and the object's location (bounding-box centre
and size) is added back as an embedding, since normalising the points removed it. Objects come
from the cloud's instance ids, at most 60 of them. At this stage the instruction is embedded by
the offline MiniLM encoder (``instruction``: one token per word piece by default); later the
3D-MoE LLM's hidden states replace both, which is why everything downstream only sees
``condition tokens (B, L, D) + mask`` (True = real token).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..common.config import YamlConfig
from ..common.pose_sequence import bound_tensors, normalize_xyz
from ..common.workspace import WORKSPACE_BOUNDS
from .instruction import INSTRUCTION_MODES
from .pointnet2 import PointNet2Config, PointNet2Encoder

LOCATION_DIM = 6  # bounding-box centre + size


@dataclass
class SceneObjects:
    """The objects of one scene, ready for the encoder.

    ``points`` (M, P, 3 + C): per object, P of its points, centred on the mean of all its points
    and scaled into the unit ball, then C feature channels (colour in [-1, 1]);
    ``locations`` (M, 6): bounding-box centre and size in metres;
    ``instance_ids`` (M,): which instance each object is;
    ``colors`` (M, C): the mean of each object's C feature channels over all its points, or None
    (then ``object_colors`` averages the sampled points).
    """

    points: torch.Tensor
    locations: torch.Tensor
    instance_ids: torch.Tensor
    colors: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.points.shape[0]


def objects_from_cloud(
    xyz: torch.Tensor | np.ndarray,
    colors: torch.Tensor | np.ndarray,
    instance_ids: torch.Tensor | np.ndarray,
    points_per_object: int = 1024,
    max_objects: int = 60,
    generator: torch.Generator | None = None,
) -> SceneObjects:
    """Split a cloud (N, 3) with colours (N, 3) (uint8, or floats in [0, 1]) into objects.

    Negative instance ids (background, table) are skipped. Objects beyond ``max_objects`` are
    dropped smallest first: tiny fragments carry the least for the planner. The objects come
    ordered by place (the y of their box centre), whatever their ids. Each object is
    resampled to ``points_per_object`` points; repeating points of a small object leaves FPS,
    ball query and max-pooling unchanged.
    """
    xyz, instance_ids = torch.as_tensor(xyz).float(), torch.as_tensor(instance_ids)
    colors = torch.as_tensor(colors)
    colors = colors.float() / 255 if colors.dtype == torch.uint8 else colors.float()
    ids, counts = instance_ids[instance_ids >= 0].unique(return_counts=True)
    if len(ids) > max_objects:
        ids = ids[counts.argsort(descending=True, stable=True)[:max_objects]].sort().values
    if not len(ids):
        return SceneObjects(xyz.new_zeros(0, points_per_object, 3 + colors.shape[1]),
                            xyz.new_zeros(0, LOCATION_DIM), ids, colors.new_zeros(0, colors.shape[1]))
    # each object's points, in cloud order, as one slice of the cloud sorted by id
    by_id = torch.argsort(instance_ids, stable=True)
    sorted_ids = instance_ids[by_id]
    starts, ends = torch.searchsorted(sorted_ids, ids), torch.searchsorted(sorted_ids, ids, right=True)
    members = [by_id[start:end] for start, end in zip(starts.tolist(), ends.tolist())]
    picks = []
    for member in members:
        if len(member) >= points_per_object:
            pick = torch.randperm(len(member), generator=generator)[:points_per_object]
        else:  # every point once, then random repeats
            extra = torch.randint(len(member), (points_per_object - len(member),), generator=generator)
            pick = torch.cat([torch.arange(len(member)), extra])
        picks.append(member[pick])
    sizes, members = ends - starts, torch.cat(members)
    whole, whole_colors, size_list = xyz[members], colors[members], sizes.tolist()
    low, high = (torch.segment_reduce(whole, reduce, lengths=sizes) for reduce in ("min", "max"))
    # centre and scale from all points, so they do not depend on which points were sampled; means
    # object by object, as a segmented sum adds in another order
    mean = torch.stack([part.mean(0) for part in whole.split(size_list)])
    distance = (whole - mean.repeat_interleave(sizes, 0, output_size=len(whole))).norm(dim=-1)
    radius = torch.segment_reduce(distance, "max", lengths=sizes).clamp_min(1e-6)  # a one-point object stays at 0
    picked = torch.stack(picks)
    points = torch.cat([(xyz[picked] - mean[:, None]) / radius[:, None, None], 2 * colors[picked] - 1], dim=-1)
    means = 2 * torch.stack([part.mean(0) for part in whole_colors.split(size_list)]) - 1
    # objects in order of place (the box centre's y, across the workspace), not of id: the LLM
    # reads them in order, and the simulator's ids are its spawn order, which gives the target
    # away (tasks spawn it first of its kind), while the demo's clusters come largest first
    boxes = torch.cat([(low + high) / 2, high - low], dim=1)
    order = torch.argsort(boxes[:, 1], stable=True)
    return SceneObjects(points[order], boxes[order], ids[order], means[order])


def pad_scenes(scenes: Sequence[SceneObjects]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch scenes with different object counts: points (B, M, P, C), locations (B, M, 6), mask (B, M)."""
    m = max(len(s) for s in scenes)
    p, c = scenes[0].points.shape[1:]
    points = scenes[0].points.new_zeros(len(scenes), m, p, c)
    locations = scenes[0].locations.new_zeros(len(scenes), m, LOCATION_DIM)
    mask = torch.zeros(len(scenes), m, dtype=torch.bool)
    for i, s in enumerate(scenes):
        points[i, : len(s)], locations[i, : len(s)], mask[i, : len(s)] = s.points, s.locations, True
    return points, locations, mask


def object_colors(scenes: Sequence[SceneObjects]) -> torch.Tensor:
    """(B, M, C) each object's mean colour in [-1, 1], zero on padding objects (as ``pad_scenes``
    pads). The mean over all of an object's points, not over the sampled ones: on LoHoRavens frames
    the sampled mean moved the object pointer's choice in 13 % of re-samplings, the full one in 2 %."""
    m = max(len(s) for s in scenes)
    c = scenes[0].points.shape[2] - 3
    out = scenes[0].points.new_zeros(len(scenes), m, c)
    for i, s in enumerate(scenes):
        out[i, : len(s)] = s.points[..., 3:].mean(1) if s.colors is None else s.colors
    return out


def normalize_locations(locations: torch.Tensor,
                        bounds: Sequence[Sequence[float]] = WORKSPACE_BOUNDS) -> torch.Tensor:
    """(..., 6) box centres and sizes in metres -> centres in [-1, 1] over ``bounds`` (the poses'
    frame) and sizes as fractions of the half-extent."""
    low, high = bound_tensors(locations, bounds)
    centre = normalize_xyz(locations[..., :3], bounds)
    return torch.cat([centre, 2 * locations[..., 3:] / (high - low)], dim=-1)


@dataclass
class ConditionEncoderConfig(YamlConfig):
    hidden_size: int = 256  # width D of the condition tokens
    text_dim: int = 384  # all-MiniLM-L6-v2
    instruction: str = "tokens"  # "tokens" (one per word piece) | "sentence" (one pooled vector)
    max_objects: int = 60
    points_per_object: int = 1024
    pointnet: PointNet2Config = field(default_factory=PointNet2Config)
    # self-attention layers over objects and words together, standing in for the LLM that later
    # fuses them; without them Pose-DiT must bind "red" to the red object through cross-attention
    # alone, since condition tokens never see each other
    fusion_layers: int = 2
    fusion_heads: int = 4
    # give Pose-DiT each object token's centre for its distance-biased cross-attention
    object_positions: bool = True
    # object centres are scaled like the poses (to [-1, 1] over these bounds) so that "the pose
    # is at that object" is the same number on both sides of the cross-attention
    location_bounds: tuple[tuple[float, float], ...] = WORKSPACE_BOUNDS

    def __post_init__(self) -> None:
        if self.instruction not in INSTRUCTION_MODES:
            raise ValueError(f"instruction must be one of {INSTRUCTION_MODES}, got {self.instruction!r}")
        self.location_bounds = tuple(tuple(b) for b in self.location_bounds)


class SceneEncoder(nn.Module):
    """Per-object tokens: PointNet++ feature + location embedding, width D."""

    def __init__(self, config: ConditionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.pointnet = PointNet2Encoder(config.pointnet)
        self.feature_proj = nn.Linear(config.pointnet.out_dim, d)
        # the linear term lets a pose read an object's centre straight off its token; the MLP adds
        # what is not linear in it (e.g. "is this object near the workspace edge")
        self.location_linear = nn.Linear(LOCATION_DIM, d)
        self.location_embed = nn.Sequential(nn.Linear(LOCATION_DIM, d), nn.GELU(), nn.Linear(d, d))

    def normalize_locations(self, locations: torch.Tensor) -> torch.Tensor:
        return normalize_locations(locations, self.config.location_bounds)

    def _pointnet(self, objects: torch.Tensor) -> torch.Tensor:
        """(N, P, 3 + C) object points -> (N, F) PointNet++ features."""
        return self.pointnet(objects[..., :3], objects[..., 3:] if objects.shape[-1] > 3 else None)

    def forward(self, points: torch.Tensor, locations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """points (B, M, P, 3 + C), locations (B, M, 6), mask (B, M) -> tokens (B, M, D)."""
        if self.training:
            # only real objects go through PointNet++, so padding never enters BatchNorm statistics
            tokens = points.new_zeros(*mask.shape, self.config.hidden_size)
            if mask.any():
                tokens[mask] = self.feature_proj(self._pointnet(points[mask]))
        else:
            # each object alone, so padding changes no real token; nothing is read on the host (CUDA graphs)
            features = self._pointnet(points.flatten(0, 1))
            tokens = torch.where(mask[..., None], self.feature_proj(features).unflatten(0, mask.shape), 0.0)
        locations = self.normalize_locations(locations)
        return tokens + self.location_linear(locations) + self.location_embed(locations)


def fusion_encoder(width: int, num_heads: int, num_layers: int) -> nn.TransformerEncoder:
    """Bidirectional self-attention layers (pre-norm, GELU, no dropout) over condition tokens,
    where objects and words meet."""
    layer = nn.TransformerEncoderLayer(width, num_heads, 2 * width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)


class ConditionEncoder(nn.Module):
    """Scene object tokens and instruction tokens -> ``(tokens (B, L, D), mask (B, L))``."""

    def __init__(self, config: ConditionEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ConditionEncoderConfig()
        self.scene = SceneEncoder(config)
        self.text_proj = nn.Linear(config.text_dim, config.hidden_size)
        # tells the planner which tokens are objects and which are words
        self.type_embed = nn.Parameter(torch.zeros(2, config.hidden_size))
        nn.init.normal_(self.type_embed, std=0.02)
        self.fusion = (fusion_encoder(config.hidden_size, config.fusion_heads, config.fusion_layers)
                       if config.fusion_layers else None)

    def forward(
        self,
        object_points: torch.Tensor,
        object_locations: torch.Tensor,
        object_mask: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scene = self.scene(object_points, object_locations, object_mask) + self.type_embed[0]
        text = self.text_proj(text_tokens) + self.type_embed[1]
        tokens, mask = torch.cat([scene, text], dim=1), torch.cat([object_mask, text_mask], dim=1)
        if self.fusion is not None:
            tokens = self.fusion(tokens, src_key_padding_mask=~mask)
        return tokens, mask

    def token_positions(self, object_locations: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor | None:
        """(B, M + L, 3): each object token's centre in the poses' normalised frame, NaN for words;
        None when ``object_positions`` is off.

        Pose-DiT's cross-attention uses them to bias each pose towards nearby objects.
        """
        if not self.config.object_positions:
            return None
        centres = self.scene.normalize_locations(object_locations)[..., :3]
        words = centres.new_full((*text_mask.shape, 3), float("nan"))
        return torch.cat([centres, words], dim=1)
