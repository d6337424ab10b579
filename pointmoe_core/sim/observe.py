"""Observation -> one labelled point cloud in the world frame.

Each camera's depth image is back-projected with its intrinsics (Ravens' ``get_pointcloud``) and
moved to the world with its pose (``transform_pointcloud``); the views are concatenated, cropped
to the workspace and optionally thinned on a voxel grid. With a segmentation image, each point
keeps the PyBullet body it belongs to and that body's semantic class: free labelled data for the
"tabletop" segmentation domain, and the planner's scene input.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pointmoe_core.io.pointcloud2 import PointCloud

from .cameras import PIXEL_OFFSET, CameraConfig
from .objects import SEMANTIC_CLASSES
from .poses import WORKSPACE_BOUNDS

# workspace, with room below for the table surface and above for stacks and the robot
CROP_BOUNDS = WORKSPACE_BOUNDS + np.array([[0.0, 0.0], [0.0, 0.0], [-0.01, 0.1]])


@dataclass
class SceneCloud:
    """A fused cloud: ``cloud.label`` is the semantic class id (index into ``class_names``), -1
    where unknown; ``object_id`` is the PyBullet body id per point, -1 where unknown."""

    cloud: PointCloud
    object_id: np.ndarray
    class_names: tuple[str, ...] = SEMANTIC_CLASSES

    def __len__(self) -> int:
        return len(self.cloud)


def _rotate(vectors: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``vectors @ rotation.T`` as broadcast multiply-adds: a (N, 3) @ (3, 3) matmul is ~7x slower."""
    return vectors[:, :1] * rotation[:, 0] + vectors[:, 1:2] * rotation[:, 1] + vectors[:, 2:] * rotation[:, 2]


@functools.lru_cache(maxsize=32)
def _world_rays(camera: CameraConfig) -> np.ndarray:
    """(H*W, 3) world-frame direction of each pixel's ray, scaled to unit optical depth."""
    height, width = camera.image_size
    fx, _, cx, _, fy, cy, *_ = camera.intrinsics
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = u + PIXEL_OFFSET[0], v + PIXEL_OFFSET[1]
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1).reshape(-1, 3)
    rays = _rotate(rays, camera.camera_to_world[:3, :3].astype(np.float32))
    rays.setflags(write=False)  # shared by every call through the cache
    return rays


def backproject(depth: np.ndarray, camera: CameraConfig, pixels: np.ndarray | None = None) -> np.ndarray:
    """World points of a depth image (metres along the optical axis): (H*W, 3) row-major, or
    only those of the flat pixel indices ``pixels``."""
    flat_depth = depth.reshape(-1, 1).astype(np.float32)
    rays = _world_rays(camera)
    if pixels is not None:
        flat_depth, rays = flat_depth[pixels], rays[pixels]
    return np.asarray(camera.position, np.float32) + flat_depth * rays


def voxel_keep(xyz: np.ndarray, voxel_size: float) -> np.ndarray:
    """Indices of one point per occupied voxel (the first one seen), in increasing order."""
    keys = np.floor(xyz / voxel_size).astype(np.int64)
    keys -= keys.min(axis=0)
    span = keys.max(axis=0) + 1
    flat = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]
    return np.sort(np.unique(flat, return_index=True)[1])


def fuse_views(obs: Mapping, cameras: Sequence[CameraConfig], class_ids: Mapping[int, int] | None = None,
               crop: np.ndarray | None = CROP_BOUNDS, voxel_size: float | None = None) -> SceneCloud:
    """Fuse ``obs['color']`` / ``obs['depth']`` (and ``obs['segm']`` when present) of ``cameras``.

    class_ids: body id -> semantic class id; bodies not in it (or no ``segm``) get label -1.
    crop: (3, 2) world box to keep (None keeps everything the cameras saw); pixels that saw
    nothing (depth at the far plane, or no body in ``segm``) are always dropped.
    voxel_size: keep one point per voxel of that edge (metres), e.g. 0.003125, Ravens' pixel.
    """
    segms = obs.get("segm")
    xyz_parts, rgb_parts, body_parts = [], [], []
    for index, camera in enumerate(cameras):
        depth = np.asarray(obs["depth"][index]).reshape(-1)
        seen = np.isfinite(depth) & (depth < camera.zrange[1] * 0.999)
        body = None if segms is None else np.asarray(segms[index], dtype=np.int32).reshape(-1)
        if body is not None:
            seen &= body >= 0
        pixels = np.flatnonzero(seen)
        points = backproject(depth, camera, pixels)
        if crop is not None:
            inside = np.ones(len(points), bool)
            for axis in range(3):
                inside &= (points[:, axis] >= crop[axis, 0]) & (points[:, axis] <= crop[axis, 1])
            pixels, points = pixels[inside], points[inside]
        xyz_parts.append(points)
        rgb_parts.append(np.asarray(obs["color"][index], dtype=np.uint8).reshape(-1, 3)[pixels])
        body_parts.append(np.full(len(pixels), -1, np.int32) if body is None else body[pixels])
    xyz, rgb, body = np.concatenate(xyz_parts), np.concatenate(rgb_parts), np.concatenate(body_parts)
    if voxel_size and len(xyz):
        kept = voxel_keep(xyz, voxel_size)
        xyz, rgb, body = xyz[kept], rgb[kept], body[kept]
    label = np.full(len(body), -1, np.int32)
    if class_ids:
        bodies = np.fromiter(class_ids, dtype=np.int64)
        lookup = np.full(int(max(bodies.max(), body.max(initial=0))) + 1, -1, np.int32)
        lookup[bodies] = np.fromiter(class_ids.values(), dtype=np.int32)
        known = body >= 0
        label[known] = lookup[body[known]]
    return SceneCloud(PointCloud(xyz=xyz, rgb=rgb, label=label), body)
