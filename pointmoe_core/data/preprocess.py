"""Array functions that turn a raw cloud into backbone input (Pointcept's ``datasets/transform.py``),
shared by the training pipeline (:mod:`.transforms`) and the Segmenter at inference.

As plain array functions:

* ``center_shift``: Pointcept's ``CenterShift`` (bounding-box centre to the origin in x, y).
* ``normalize_color``: the point_moe fork's ``NormalizeColor``, ``color / 127.5 - 1``.
* ``grid_sample``: Pointcept's ``GridSample`` voxelisation. ``VoxelGrid.fragment(i)`` is its
  test mode (fragment i keeps the i-th point of every voxel, so the fragments together cover
  every point), ``VoxelGrid.sample(rng)`` its train mode (one random point per voxel).
* ``estimate_normals``: open3d normals for clouds that come without them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..common.reductions import column_bounds


def center_shift(coord: np.ndarray, apply_z: bool = True) -> np.ndarray:
    """Move the bounding-box centre to x = y = 0 and, with ``apply_z``, the lowest point to z = 0."""
    low, high = column_bounds(coord)
    shift = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2] if apply_z else 0.0])
    return (coord - shift).astype(coord.dtype)


def normalize_color(color: np.ndarray) -> np.ndarray:
    """RGB in [0, 255] -> [-1, 1] (the point_moe fork's NormalizeColor)."""
    return (np.asarray(color, np.float32) / 127.5 - 1.0).astype(np.float32)


@dataclass(frozen=True)
class VoxelGrid:
    """Points grouped by voxel.

    ``grid_coord`` (N, 3) int64 = floor(coord / grid_size) - min (Pointcept's convention);
    ``voxel`` (N,) the voxel of each point; ``order`` sorts points by voxel, so voxel v holds
    ``order[start[v] : start[v] + count[v]]``. NumPy arrays or torch tensors, all of one kind.
    """

    grid_coord: np.ndarray
    voxel: np.ndarray
    order: np.ndarray
    start: np.ndarray
    count: np.ndarray

    @property
    def num_voxels(self) -> int:
        return len(self.count)

    @property
    def num_fragments(self) -> int:
        """Test-mode fragments needed to cover every point (the largest voxel's point count)."""
        return int(self.count.max()) if len(self.count) else 0

    def fragment(self, i: int) -> np.ndarray:
        """Test mode: one point row per voxel, the ``i % count``-th point of each voxel."""
        return self.order[self.start + i % self.count]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Train mode: one uniformly random point row per voxel."""
        return self.order[self.start + (rng.random(len(self.count)) * self.count).astype(np.int64)]


def grid_sample(coord: np.ndarray | torch.Tensor, grid_size: float) -> VoxelGrid:
    """Voxelise ``coord`` (N, 3) at ``grid_size``: a grid of NumPy arrays for an array, of tensors on
    its device for a tensor (the Segmenter's, so a GPU voxelises its own clouds).

    Voxels are keyed by the raveled grid coordinate (Pointcept's ``ravel_hash_vec``): unlike its
    default FNV-1a hash it cannot collide, and voxel ids come out in raveled (x, y, z) order. torch
    does the work either way: its stable sort takes half NumPy's time on a CPU (the same order).
    """
    # a float64 copy either way (np.array: a read-only array, as np.load gives, would make torch warn)
    points = coord.double() if isinstance(coord, torch.Tensor) else torch.from_numpy(np.array(coord, np.float64))
    grid_coord = torch.floor(points / grid_size).long()
    low, high = grid_coord.amin(0), grid_coord.amax(0)
    grid_coord -= low
    extent = (high - low + 1).tolist()
    if float(np.prod(extent, dtype=np.float64)) >= 2.0**62:
        raise ValueError(f"a grid of {extent} voxels cannot be keyed in int64: use a larger grid_size")
    key = (grid_coord[:, 0] * extent[1] + grid_coord[:, 1]) * extent[2] + grid_coord[:, 2]
    sorted_key, order = torch.sort(key, stable=True)
    new_voxel = torch.ones_like(sorted_key, dtype=torch.bool)
    new_voxel[1:] = sorted_key[1:] != sorted_key[:-1]
    start = torch.nonzero(new_voxel).squeeze(1)
    count = torch.diff(start, append=start.new_full((1,), len(key)))
    voxel = torch.empty_like(key)
    voxel[order] = torch.cumsum(new_voxel, 0) - 1
    grid = VoxelGrid(grid_coord, voxel, order, start, count)
    if isinstance(coord, torch.Tensor):
        return grid
    return VoxelGrid(*(field.numpy() for field in (grid.grid_coord, grid.voxel, grid.order, grid.start, grid.count)))


def estimate_normals(coord: np.ndarray, radius: float, max_nn: int = 30,
                     viewpoint: np.ndarray | None = None) -> np.ndarray:
    """Unit normals (N, 3) float32 from open3d's PCA over a hybrid radius / kNN neighbourhood.

    PCA leaves the sign open: normals are flipped to face ``viewpoint`` (default the origin,
    i.e. the sensor of a cloud in its sensor frame).
    """
    try:
        import open3d as o3d  # imported on demand: only clouds without normals need it
    except ImportError as error:
        raise ImportError("estimating normals needs open3d; install it or pass the cloud's normals") from error

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(coord, np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    normal = np.asarray(cloud.normals)
    if len(normal) != len(coord):  # open3d leaves normals empty for degenerate input
        normal = np.zeros((len(coord), 3))
    viewpoint = np.zeros(3) if viewpoint is None else np.asarray(viewpoint, np.float64)
    facing_away = np.einsum("ni,ni->n", normal, viewpoint - coord) < 0
    normal[facing_away] *= -1
    return normal.astype(np.float32)
