"""Depth image -> organized `PointCloud` with a pinhole camera model.

The cloud keeps one point per pixel in row-major order (NaN where there is no depth), so
`msg_from_cloud(cloud, organized_shape=depth.shape)` gives an organized PointCloud2 (is_dense=False).
"""
from __future__ import annotations

import numpy as np

from .pointcloud2 import PointCloud


def cloud_from_depth(
    depth: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    depth_scale: float = 1000.0,
    color: np.ndarray | None = None,
    depth_trunc: float | None = None,
) -> PointCloud:
    """Back-project an (H, W) depth image into an organized cloud of H*W points in the camera frame.

    depth: raw depth; metres = depth / depth_scale (1000 for millimetre uint16, 5000 for TUM,
        1.0 for float metres). Pixels with depth 0 or non-finite, or farther than depth_trunc
        metres, become NaN points.
    color: optional (H, W, 3) or (H, W, 4) uint8 image aligned with depth; alpha is dropped.
    """
    if depth.ndim != 2:
        raise ValueError(f"depth must be an (H, W) image, got shape {depth.shape}")
    height, width = depth.shape
    z = depth.astype(np.float32) / np.float32(depth_scale)
    invalid = ~np.isfinite(z) | (z <= 0)
    if depth_trunc is not None:
        invalid |= z > depth_trunc
    z[invalid] = np.nan

    # Pixel-centre coordinates broadcast over rows (v) and columns (u).
    u = np.arange(width, dtype=np.float32)[None, :]
    v = np.arange(height, dtype=np.float32)[:, None]
    xyz = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1).reshape(-1, 3)

    rgb = None
    if color is not None:
        if color.shape[:2] != depth.shape or color.ndim != 3 or color.shape[2] not in (3, 4):
            raise ValueError(f"color must be (H, W, 3|4) matching depth {depth.shape}, got {color.shape}")
        rgb = np.ascontiguousarray(color[..., :3]).reshape(-1, 3)
    return PointCloud(xyz=xyz, rgb=rgb)
