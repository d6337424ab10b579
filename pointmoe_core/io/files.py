"""Point cloud files: PCD/PLY through Open3D's tensor API, SemanticKITTI scans and labels.

PCD/PLY keep every `PointCloud` attribute: Open3D's tensor point clouds store custom per-point
attributes (intensity, label, ring, score) next to positions, colors and normals.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from .pointcloud2 import ATTRIBUTES, PointCloud, cast_integers

# PointCloud attribute -> Open3D tensor attribute, where the names differ.
_OPEN3D_NAMES = {"xyz": "positions", "rgb": "colors"}
# The only integer types Open3D's PLY writer accepts.
_PLY_INTEGERS = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int32))


def read_cloud(path: str | Path) -> PointCloud:
    """Read a .pcd or .ply file; attributes the file lacks are None, unknown ones are ignored."""
    import open3d as o3d  # heavy import, only for file I/O

    points = o3d.t.io.read_point_cloud(str(path)).point
    if "positions" not in points:
        raise ValueError(f"{path}: no points could be read")
    values = {}
    for name in ("xyz", *ATTRIBUTES):
        key = _OPEN3D_NAMES.get(name, name)
        if key in points:
            value = points[key].numpy()
            values[name] = value if value.shape[1] == 3 else value[:, 0]  # scalars are stored (N, 1)
    if "rgb" in values and values["rgb"].dtype != np.uint8:  # float colours in [0, 1]
        values["rgb"] = np.round(np.clip(values["rgb"], 0.0, 1.0) * 255).astype(np.uint8)
    return PointCloud(**values)


def write_cloud(path: str | Path, cloud: PointCloud) -> None:
    """Write a .pcd or .ply file (binary) with every attribute the cloud carries.

    PLY stores integers only as uint8, uint16 or int32: other integer attributes become int32.
    """
    import open3d as o3d

    ply = Path(path).suffix.lower() == ".ply"
    out = o3d.t.geometry.PointCloud()
    for name in ("xyz", *cloud.attributes()):
        value = getattr(cloud, name)
        if ply and value.dtype.kind in "iu" and value.dtype not in _PLY_INTEGERS:
            value = cast_integers(value, np.int32, f"the widest integer PLY stores ({name})")
        out.point[_OPEN3D_NAMES.get(name, name)] = o3d.core.Tensor(value.reshape(len(cloud), -1))
    if not o3d.t.io.write_point_cloud(str(path), out):
        raise OSError(f"Open3D could not write {path}")


def read_kitti_bin(path: str | Path) -> PointCloud:
    """A SemanticKITTI / KITTI velodyne scan: float32 (N, 4) x, y, z, remission."""
    scan = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    return PointCloud(xyz=scan[:, :3], intensity=scan[:, 3])


def load_learning_map(yaml_path: str | Path) -> dict[int, int]:
    """The raw id -> training id `learning_map` of a semantic-kitti.yaml."""
    with open(yaml_path) as f:
        config = yaml.safe_load(f)
    return {int(raw): int(train) for raw, train in config["learning_map"].items()}


def read_kitti_label(
    path: str | Path, learning_map: dict[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """SemanticKITTI .label -> (semantic, instance) int64 arrays.

    Each uint32 holds the semantic id in its low 16 bits and the instance id in its high 16 bits.
    With `learning_map`, semantic ids are mapped to training ids; an id missing from it raises.
    """
    raw = np.fromfile(path, dtype=np.uint32)
    semantic = (raw & 0xFFFF).astype(np.int64)
    instance = (raw >> 16).astype(np.int64)
    if learning_map is not None:
        lookup = np.full(0x10000, -1, dtype=np.int64)
        lookup[list(learning_map)] = list(learning_map.values())
        semantic = lookup[semantic]
        if (semantic < 0).any():
            unmapped = np.unique((raw & 0xFFFF)[semantic < 0])
            raise ValueError(f"{path}: semantic ids {unmapped.tolist()} are not in learning_map")
    return semantic, instance
