"""PointNet++ object encoder in plain torch: 3D-MoE's (and LEO's) per-object point encoder.

Qi et al., "PointNet++" (NeurIPS 2017), single-scale grouping. Each set abstraction (SA) level
picks centres by farthest point sampling, gathers the neighbours of every centre inside a ball,
runs a shared MLP on (neighbour xyz relative to the centre, neighbour features) and max-pools;
the last level groups all points into one global vector. FPS, ball query and grouping are
written with tensor ops (no CUDA extension), after the reference design of
``yanx27/Pointnet_Pointnet2_pytorch``. Defaults are LEO's object encoder
(``configs/vision3d/ose3d_pointnetpp.yaml``): SA centres 32, 16, then global; radii 0.2, 0.4;
32 neighbours; MLPs (64, 64, 128), (128, 128, 256), (256, 512, 768); input features = colour.
Objects are expected centred and scaled into the unit ball, which is what the radii assume.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..common.config import YamlConfig


def gather_points(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """points (B, N, C), index (B, ...) -> (B, ..., C)."""
    flat = index.reshape(index.shape[0], -1)
    out = points.gather(1, flat[..., None].expand(-1, -1, points.shape[-1]))
    return out.reshape(*index.shape, points.shape[-1])


def farthest_point_sample(xyz: torch.Tensor, num_samples: int) -> torch.Tensor:
    """(B, N, 3) -> (B, S) indices: each pick is the point farthest from those already picked.

    Starts from point 0 rather than a random point (the reference starts randomly) so an
    object's token is a deterministic function of its points.
    """
    b, n, _ = xyz.shape
    picked = torch.zeros(b, num_samples, dtype=torch.long, device=xyz.device)
    distance = torch.full((b, n), float("inf"), dtype=xyz.dtype, device=xyz.device)
    farthest = torch.zeros(b, dtype=torch.long, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(num_samples):
        picked[:, i] = farthest
        centre = xyz[rows, farthest][:, None]
        distance = torch.minimum(distance, (xyz - centre).square().sum(-1))
        farthest = distance.argmax(-1)
    return picked


def ball_query(xyz: torch.Tensor, centres: torch.Tensor, radius: float, num_neighbors: int) -> torch.Tensor:
    """Indices (B, S, K) of up to K points of ``xyz`` (B, N, 3) within ``radius`` of each centre.

    Neighbours are taken in index order; a ball with fewer than K points repeats its first
    neighbour, so max-pooling is unaffected. Every centre must be one of the points (FPS
    guarantees it), so no ball is empty.
    """
    n = xyz.shape[1]
    squared = (centres[:, :, None] - xyz[:, None]).square().sum(-1)  # (B, S, N)
    index = torch.arange(n, device=xyz.device).expand_as(squared).clone()
    index.masked_fill_(squared > radius**2, n)
    index = index.sort(dim=-1).values[..., :num_neighbors]
    if index.shape[-1] < num_neighbors:  # fewer points than K in the whole cloud
        index = torch.cat([index, index.new_full((*index.shape[:2], num_neighbors - n), n)], dim=-1)
    first = index[..., :1].expand_as(index)
    return torch.where(index == n, first, index)


def shared_mlp(widths: list[int]) -> nn.Sequential:
    """1x1 convolutions + BatchNorm + ReLU applied to every (centre, neighbour) pair."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SetAbstraction(nn.Module):
    """One SA level: sample centres, group neighbours, shared MLP, max-pool.

    ``num_centres=None`` is the global level: one group with all points around the origin.
    """

    def __init__(self, num_centres: int | None, radius: float | None, num_neighbors: int | None,
                 in_channels: int, mlp: tuple[int, ...]) -> None:
        super().__init__()
        self.num_centres, self.radius, self.num_neighbors = num_centres, radius, num_neighbors
        self.mlp = shared_mlp([in_channels + 3, *mlp])  # + 3: neighbour xyz relative to its centre

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """xyz (B, N, 3), features (B, N, C) or None -> centres (B, S, 3), features (B, S, C')."""
        if self.num_centres is None:
            centres = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped_xyz = xyz[:, None]
            grouped = None if features is None else features[:, None]
        else:
            centres = gather_points(xyz, farthest_point_sample(xyz, self.num_centres))
            index = ball_query(xyz, centres, self.radius, self.num_neighbors)
            grouped_xyz = gather_points(xyz, index) - centres[:, :, None]
            grouped = None if features is None else gather_points(features, index)
        if grouped is not None:
            grouped_xyz = torch.cat([grouped_xyz, grouped], dim=-1)
        out = self.mlp(grouped_xyz.permute(0, 3, 1, 2))  # (B, C', S, K)
        return centres, out.amax(dim=-1).transpose(1, 2)


@dataclass
class PointNet2Config(YamlConfig):
    in_channels: int = 3  # per-point features besides xyz (colour)
    sa_centres: tuple[int, ...] = (32, 16)
    sa_radii: tuple[float, ...] = (0.2, 0.4)
    sa_neighbors: tuple[int, ...] = (32, 32)
    sa_mlps: tuple[tuple[int, ...], ...] = ((64, 64, 128), (128, 128, 256))
    global_mlp: tuple[int, ...] = (256, 512)
    out_dim: int = 768

    def __post_init__(self) -> None:
        self.sa_mlps = tuple(tuple(m) for m in self.sa_mlps)
        n = len(self.sa_centres)
        if not len(self.sa_radii) == len(self.sa_neighbors) == len(self.sa_mlps) == n:
            raise ValueError("sa_centres, sa_radii, sa_neighbors and sa_mlps need one entry per level")


class PointNet2Encoder(nn.Module):
    """Points of one object (B, N, 3) + features (B, N, C) -> one vector (B, out_dim)."""

    def __init__(self, config: PointNet2Config | None = None) -> None:
        super().__init__()
        self.config = c = config or PointNet2Config()
        levels, width = [], c.in_channels
        for centres, radius, neighbors, mlp in zip(c.sa_centres, c.sa_radii, c.sa_neighbors, c.sa_mlps):
            levels.append(SetAbstraction(centres, radius, neighbors, width, mlp))
            width = mlp[-1]
        levels.append(SetAbstraction(None, None, None, width, (*c.global_mlp, c.out_dim)))
        self.levels = nn.ModuleList(levels)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        for level in self.levels:
            xyz, features = level(xyz, features)
        return features[:, 0]
