"""One loader for every cloud source a user can name on the command line or in a launch file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pointmoe_core.io.files import read_cloud, read_kitti_bin
from pointmoe_core.io.pointcloud2 import PointCloud

SYNTHETIC = "synthetic"


def load_cloud(source: str | Path, synthetic_points: int = 30_000) -> PointCloud:
    """Load ``source``: a .pcd/.ply file, a SemanticKITTI .bin, an .npz, or ``"synthetic"``.

    An .npz holds ``xyz`` and optionally ``rgb``, ``intensity``, ``normals``, ``label``, ``ring``.
    """
    if str(source) == SYNTHETIC:
        from pointmoe_core.data.scenes import tabletop_scene

        return tabletop_scene(synthetic_points)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"cloud source {str(path)!r} is not a file (or use '{SYNTHETIC}')")
    suffix = path.suffix.lower()
    if suffix in (".pcd", ".ply"):
        return read_cloud(path)
    if suffix == ".bin":
        return read_kitti_bin(path)
    if suffix == ".npz":
        with np.load(path) as arrays:
            known = ("xyz", "rgb", "intensity", "normals", "label", "ring")
            return PointCloud(**{key: arrays[key] for key in known if key in arrays.files})
    raise ValueError(f"unsupported cloud file {path.name!r}: expected .pcd, .ply, .bin or .npz")
