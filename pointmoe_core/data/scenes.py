"""Generated scenes for demos and tests when no real scan is at hand.

``tabletop_scene`` samples surfaces the way a depth camera sees them (points on the visible
faces only), so clouds look like sensor data rather than filled volumes.
"""
from __future__ import annotations

import numpy as np

from pointmoe_core.io.pointcloud2 import PointCloud

TABLETOP_CLASSES = ("floor", "table", "block", "bowl")
_CLASS_COLORS = np.array([[120, 120, 120], [150, 110, 70], [200, 40, 40], [40, 90, 200]], np.uint8)


def _box_surface(rng: np.random.Generator, n: int, center, size) -> np.ndarray:
    """Points uniformly on the top and four side faces of an axis-aligned box."""
    size = np.asarray(size, np.float64)
    face_areas = np.array([size[0] * size[1]] + [size[0] * size[2]] * 2 + [size[1] * size[2]] * 2)
    face = rng.choice(5, size=n, p=face_areas / face_areas.sum())
    uvw = rng.uniform(-0.5, 0.5, size=(n, 3))
    uvw[face == 0, 2] = 0.5
    uvw[face == 1, 1], uvw[face == 2, 1] = 0.5, -0.5
    uvw[face == 3, 0], uvw[face == 4, 0] = 0.5, -0.5
    return np.asarray(center) + uvw * size


def _bowl_surface(rng: np.random.Generator, n: int, center, radius: float) -> np.ndarray:
    """Points on a hemispherical bowl opening upwards, its lowest point at ``center``."""
    azimuth = rng.uniform(0, 2 * np.pi, n)
    polar = np.arccos(rng.uniform(0, 1, n))  # uniform area on the hemisphere
    offsets = radius * np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth),
                                 1.0 - np.cos(polar)], axis=1)
    return np.asarray(center) + offsets


def tabletop_scene(num_points: int = 30_000, seed: int = 0) -> PointCloud:
    """A table on a floor with a few blocks and a bowl; labels index ``TABLETOP_CLASSES``."""
    rng = np.random.default_rng(seed)
    shares = np.array([0.35, 0.35, 0.2, 0.1])
    counts = np.floor(shares * num_points).astype(int)
    counts[0] += num_points - counts.sum()

    floor = np.column_stack([rng.uniform(-1.5, 1.5, (counts[0], 2)), np.zeros(counts[0])])
    table = _box_surface(rng, counts[1], center=(0.5, 0.0, 0.35), size=(0.8, 1.2, 0.7))
    block_centers = rng.uniform((0.2, -0.45, 0.72), (0.8, 0.45, 0.72), size=(4, 3))
    block_sizes = rng.uniform(0.04, 0.08, size=(4, 1)).repeat(3, axis=1)
    block_ids = rng.integers(0, 4, counts[2])
    blocks = np.concatenate([_box_surface(rng, int((block_ids == i).sum()), block_centers[i], block_sizes[i])
                             for i in range(4)])
    bowl = _bowl_surface(rng, counts[3], center=(0.5, 0.3, 0.70), radius=0.08)

    xyz = np.concatenate([floor, table, blocks, bowl]).astype(np.float32)
    label = np.repeat(np.arange(4, dtype=np.int32), counts)
    noise = rng.integers(-12, 13, size=(num_points, 3))
    rgb = np.clip(_CLASS_COLORS[label].astype(int) + noise, 0, 255).astype(np.uint8)
    return PointCloud(xyz=xyz, rgb=rgb, label=label)
