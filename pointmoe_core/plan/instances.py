"""Object instances from a semantic segmentation, for clouds without instance ids.

3D-MoE and LEO read a scene as a set of objects (LEO keeps at most 60); in the simulator the
objects come from the cloud's body ids, but a real cloud only has the Point-MoE segmentation's
per-point classes. Two red blocks share a class, so each class's points are split into instances
by Euclidean clustering: DBSCAN (open3d's ``PointCloud.cluster_dbscan``), whose ``eps`` must
exceed the point spacing and stay below the gap between neighbouring objects. Touching objects of
one class (a stack of red blocks) become one instance.

A segmentation is noisy where objects are hard to tell apart, and per-class clustering turns
that noise into objects that do not exist: a bowl whose floor is predicted "zone" becomes a bowl
and a zone, the shaded side of a block a sliver of "bowl". The planner has only seen whole
objects and points at such slivers. So two clean-ups follow the clustering: instances whose 3D
boxes overlap mostly (IoU >= ``merge_iou``) are one object seen as two classes, and an instance
of fewer than ``fragment_points`` points that touches another is merged into the one it touches
most; an isolated cluster of fewer than ``min_object_points`` points is noise and stays
unassigned. A block in a bowl or on a zone overlaps little and keeps its own instance. A zone is
a thin square outline (LoHoRavens' ``zone.urdf``), whose strips, a voxel or two wide and broken
where something stands on them, cluster apart: with ``rgb`` given, flat instances (under
``flat_height`` tall) of one class and colour that fit together in one object's span
(``max_object_extent``) are one object. The per-point ids feed ``scene_encoder.objects_from_cloud``
like body ids do.

Where a plan acts, ``footprint`` gives an object's centre and yaw from its top points, and
``object_points`` first re-collects a flat object's outline by its colour, sharper than the
segmentation's class boundary there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from ..common.config import YamlConfig
from ..data.demo_frames import BACKGROUND_CLASSES


@dataclass
class InstanceClusteringConfig(YamlConfig):
    eps: float = 0.01  # metres: two voxels of the demos' 5 mm grid; Ravens lays objects >= 5 mm apart
    min_points: int = 5  # a core point needs this many neighbours within eps
    max_objects: int = 60  # LEO's cap; the largest instances are kept
    # at the demos' 5 mm voxels a 4 cm block shows ~170-260 points, a bowl ~1,000
    merge_iou: float = 0.3  # instances whose 3D boxes overlap this much are one object (0: never)
    fragment_points: int = 120  # smaller instances merge into the instance they touch most (0: never)
    min_object_points: int = 20  # smaller instances that touch nothing stay unassigned
    flat_height: float = 0.01  # metres: instances lower than this may be parts of one outline
    max_object_extent: float = 0.16  # metres: the largest object across (a 15 cm zone), so parts of one fit in it
    color_tolerance: float = 40.0  # RGB distance (0-255) between the mean colours of parts of one outline


def instances_from_segmentation(
    xyz: np.ndarray,
    labels: np.ndarray,
    background: Sequence[int] = (),
    config: InstanceClusteringConfig | None = None,
    rgb: np.ndarray | None = None,
) -> np.ndarray:
    """Per-point instance ids (N,) for a cloud (N, 3) with predicted class ids (N,) and, for
    joining the strips of outlines, colours (N, 3).

    Points of negative or ``background`` classes (table, robot), DBSCAN noise, isolated specks
    and instances beyond ``max_objects`` get -1. Instances are numbered 0, 1, ... from the largest
    down, so the ids do not depend on the order of the class ids.
    """
    config = config or InstanceClusteringConfig()
    xyz, labels = np.asarray(xyz, dtype=np.float64), np.asarray(labels)
    found: list[np.ndarray] = []  # point indices of each instance
    foreground = (labels >= 0) & ~np.isin(labels, list(background))
    for label in np.unique(labels[foreground]):
        members = np.flatnonzero(labels == label)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[members]))
        cluster = np.asarray(cloud.cluster_dbscan(eps=config.eps, min_points=config.min_points))
        parts = [members[cluster == c] for c in range(cluster.max(initial=-1) + 1)]
        found += parts if rgb is None else _join_outline_parts(xyz, np.asarray(rgb, np.float64), parts, config)
    found = _absorb_fragments(xyz, _merge_overlapping(xyz, found, config.merge_iou), config)
    # largest first; the stable sort breaks ties by class id, then cluster order
    found = sorted(found, key=len, reverse=True)[:config.max_objects]
    instance_ids = np.full(len(labels), -1, dtype=np.int64)
    for index, members in enumerate(found):
        instance_ids[members] = index
    return instance_ids


def segmented_instances(segmenter, xyz: np.ndarray, rgb: np.ndarray, vocabulary: Sequence[str],
                        background: Sequence[str] = BACKGROUND_CLASSES,
                        config: InstanceClusteringConfig | None = None) -> np.ndarray:
    """Per-point instance ids of a colour cloud as a planner sees them without ground truth: the
    segmenter's classes over ``vocabulary`` (background names left out), clustered as above.
    Training on these teaches the planner the objects it will meet, merged stacks and all."""
    result = segmenter.predict(xyz, color=rgb, class_names=list(vocabulary))
    labels = np.where(result.valid, result.labels, -1)
    background_ids = [i for i, name in enumerate(vocabulary) if name in background]
    return instances_from_segmentation(xyz, labels, background_ids, config, rgb=rgb)


def _join_outline_parts(xyz: np.ndarray, rgb: np.ndarray, parts: list[np.ndarray],
                        config: InstanceClusteringConfig) -> list[np.ndarray]:
    """Greedily join flat instances of one class whose colours agree and whose union still fits in
    one object's span; the largest part starts each group."""
    flat = [m for m in parts if np.ptp(xyz[m, 2]) < config.flat_height]
    groups = [m for m in parts if np.ptp(xyz[m, 2]) >= config.flat_height]
    joined: list[np.ndarray] = []
    for members in sorted(flat, key=len, reverse=True):
        color = rgb[members].mean(0)
        for index, group in enumerate(joined):
            union = xyz[np.concatenate([group, members]), :2]
            if (np.max(np.ptp(union, axis=0)) <= config.max_object_extent
                    and np.linalg.norm(rgb[group].mean(0) - color) <= config.color_tolerance):
                joined[index] = np.concatenate([group, members])
                break
        else:
            joined.append(members)
    return groups + joined


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two axis-aligned boxes given as (2, 3) arrays of min and max corners."""
    inter = np.prod(np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0, None))
    union = np.prod(a[1] - a[0]) + np.prod(b[1] - b[0]) - inter
    return float(inter / union) if union > 0 else 0.0


def _merge_overlapping(xyz: np.ndarray, found: list[np.ndarray], min_iou: float) -> list[np.ndarray]:
    """Join instances whose boxes overlap by at least ``min_iou`` (transitively)."""
    if min_iou <= 0:
        return found
    found = list(found)
    merged = True
    while merged:
        merged = False
        boxes = [np.stack([xyz[m].min(0), xyz[m].max(0)]) for m in found]
        for i in range(len(found)):
            partner = next((j for j in range(i + 1, len(found)) if _box_iou(boxes[i], boxes[j]) >= min_iou), None)
            if partner is not None:
                found[i] = np.concatenate([found[i], found.pop(partner)])
                merged = True
                break
    return found


def _absorb_fragments(xyz: np.ndarray, found: list[np.ndarray],
                      config: InstanceClusteringConfig) -> list[np.ndarray]:
    """Merge each instance below ``fragment_points`` into the instance it has most points within
    ``eps`` of, smallest first; drop the isolated ones below ``min_object_points``."""
    found = sorted(found, key=len)
    kept: list[np.ndarray] = []
    for index, members in enumerate(found):
        others = found[index + 1:]
        if len(members) < config.fragment_points and others:
            owner = np.concatenate([np.full(len(m), k) for k, m in enumerate(others)])
            tree = cKDTree(xyz[np.concatenate(others)])
            near = [owner[hit] for hit in tree.query_ball_point(xyz[members], config.eps) if hit]
            if near:
                counts = np.bincount(np.concatenate(near), minlength=len(others))
                target = index + 1 + int(counts.argmax())
                found[target] = np.concatenate([found[target], members])
                continue
        if len(members) >= config.min_object_points:
            kept.append(members)
    return kept


def square_yaw(xy: np.ndarray) -> float:
    """The yaw in [0, pi/2) of the smallest-area box around points xy (N, 2), to a degree: a
    block's or a zone's orientation, up to the square's 90 degree symmetry."""
    angles = np.deg2rad(np.arange(90))
    u = xy @ np.stack([np.cos(angles), np.sin(angles)])
    v = xy @ np.stack([-np.sin(angles), np.cos(angles)])
    return float(angles[(np.ptp(u, 0) * np.ptp(v, 0)).argmin()])


def footprint(xyz: np.ndarray, top_layer: float = 0.01) -> tuple[np.ndarray, float]:
    """Centre (x, y) and yaw (``square_yaw``) of the smallest box around an object's top points
    (xyz (N, 3) metres; those within ``top_layer`` of its highest) seen from above. Where to put a
    block needs the target's centre to about a centimetre and its yaw to 15 degrees (Ravens'
    tolerances): the axis-aligned box of a turned zone outline, part of it taken for table, was
    off by two, and a block's sides, seen aslant, blur its outline where its top face does not."""
    xyz = np.asarray(xyz, dtype=np.float64)
    xy = xyz[xyz[:, 2] >= xyz[:, 2].max() - top_layer, :2]
    yaw = square_yaw(xy)
    axes = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
    turned = xy @ axes.T
    return ((turned.min(0) + turned.max(0)) / 2) @ axes, yaw


def object_points(xyz: np.ndarray, rgb: np.ndarray, instance_ids: np.ndarray, instance: int,
                  config: InstanceClusteringConfig | None = None) -> np.ndarray:
    """The points (indices) of ``instance`` to take its ``footprint`` from: its own, except for a
    flat object (an outline on the table), which is re-collected by colour.

    The segmentation's class boundary is blurred where a voxel-wide outline meets the table: it
    takes table around the strips for the object and misses parts of them, which put LoHoRavens'
    zone centres centimetres off (Ravens places a stacked block to 1 cm). The colour is sharp: the
    instance's points that stand out from the surface (the median colour of the unassigned flat
    points) give the outline's colour, and the flat points of that colour that are unassigned or
    the instance's own, within one object's span and connected to those, are the outline. The
    instance itself is left as the planner learned it; only where to put things moves.
    """
    config = config or InstanceClusteringConfig()
    xyz, instance_ids = np.asarray(xyz, np.float64), np.asarray(instance_ids)
    members = np.flatnonzero(instance_ids == instance)
    z = xyz[members, 2]
    if not len(members) or np.ptp(z) >= config.flat_height:
        return members
    rgb = np.asarray(rgb)
    # 0-255 like ``color_tolerance``: uint8 colours as they are, float ones (the planners' 0-1) scaled
    rgb = rgb.astype(np.float64) * (1.0 if rgb.dtype == np.uint8 else 255.0)
    flat = xyz[:, 2] < z.min() + config.flat_height
    surface = flat & (instance_ids < 0)
    if not surface.any():
        return members
    marked = members[np.linalg.norm(rgb[members] - np.median(rgb[surface], axis=0), axis=1) > config.color_tolerance]
    if not len(marked):
        return members
    color = np.median(rgb[marked], axis=0)
    # the span an object holding the marked points can cover
    low = xyz[marked, :2].max(0) - config.max_object_extent
    high = xyz[marked, :2].min(0) + config.max_object_extent
    near = np.all((xyz[:, :2] >= low) & (xyz[:, :2] <= high), axis=1)
    candidates = np.flatnonzero(flat & near & ((instance_ids < 0) | (instance_ids == instance))
                                & (np.linalg.norm(rgb - color, axis=1) <= config.color_tolerance))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[candidates]))
    cluster = np.asarray(cloud.cluster_dbscan(eps=2 * config.eps, min_points=1))
    return candidates[np.isin(cluster, cluster[np.isin(candidates, marked)])]
