"""Object instances from a semantic segmentation, for clouds without instance ids.

3D-MoE and LEO read a scene as a set of objects (LEO keeps at most 60); in the simulator the
objects come from the cloud's body ids, but a real cloud only has the Point-MoE segmentation's
per-point classes. Two red blocks share a class, so each class's points are split into instances
by Euclidean clustering: DBSCAN (open3d's ``PointCloud.cluster_dbscan``), whose ``eps`` must
exceed the point spacing and stay below the gap between neighbouring objects. Touching objects of
one class (a stack of red blocks) become one instance; points of too small clusters stay
unassigned. The per-point ids feed ``scene_encoder.objects_from_cloud`` like body ids do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import open3d as o3d

from .config import YamlConfig


@dataclass
class InstanceClusteringConfig(YamlConfig):
    eps: float = 0.01  # metres: two voxels of the demos' 5 mm grid; Ravens lays objects >= 5 mm apart
    min_points: int = 5  # a core point needs this many neighbours within eps
    max_objects: int = 60  # LEO's cap; the largest instances are kept


def instances_from_segmentation(
    xyz: np.ndarray,
    labels: np.ndarray,
    background: Sequence[int] = (),
    config: InstanceClusteringConfig | None = None,
) -> np.ndarray:
    """Per-point instance ids (N,) for a cloud (N, 3) with predicted class ids (N,).

    Points of negative or ``background`` classes (table, robot), DBSCAN noise and instances
    beyond ``max_objects`` get -1. Instances are numbered 0, 1, ... from the largest down, so the
    ids do not depend on the order of the class ids.
    """
    config = config or InstanceClusteringConfig()
    xyz, labels = np.asarray(xyz, dtype=np.float64), np.asarray(labels)
    found: list[np.ndarray] = []  # point indices of each instance
    foreground = (labels >= 0) & ~np.isin(labels, list(background))
    for label in np.unique(labels[foreground]):
        members = np.flatnonzero(labels == label)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[members]))
        cluster = np.asarray(cloud.cluster_dbscan(eps=config.eps, min_points=config.min_points))
        found += [members[cluster == c] for c in range(cluster.max(initial=-1) + 1)]
    # largest first; the stable sort breaks ties by class id, then cluster order
    found = sorted(found, key=len, reverse=True)[:config.max_objects]
    instance_ids = np.full(len(labels), -1, dtype=np.int64)
    for index, members in enumerate(found):
        instance_ids[members] = index
    return instance_ids
