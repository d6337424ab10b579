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
where something stands on them, cluster apart.

With ``rgb`` given, colour corrects the classes where they cut across objects: the task colours
are the objects' identity, and the chromaticity (rgb / (r + g + b)) of one object hardly varies
under the renderer's shading (on LoHoRavens 0.002 at the 99th percentile, against 0.085 between
its closest colours, pink and purple). On 40 held-out LoHoRavens frames without it, 12 of 210
blocks were split in two (the shaded sides "bowl", the top "block"), 5 shared an instance with
an object of another colour, 20 of 108 zones were split, and 139 of 362 instances were mostly
table (the band around a zone outline that the classes call "zone"). So each cluster
comes apart where neighbours differ in chromaticity (``chroma_tolerance``) or more than shading
does in brightness (``shade_ratio``), and parts coloured like the background (the table) are
dropped; a standing part sheds the table-height points beyond it (a block on its zone's outline);
flat parts of one colour that fit in one object's span (``max_object_extent``) are one outline;
touching parts of one chromaticity that fit in one block (``max_block_extent``) are one block; a
block takes back its sides from a bowl of its colour (the points under its top face); and the
box-overlap merge and the fragment absorption join parts of one chromaticity. On those frames
no block is split or shares an instance with another colour, one zone is split, and 319
instances stand for the 318 objects. The
per-point ids feed ``scene_encoder.objects_from_cloud`` like body ids do.

Where a plan acts, ``footprint`` gives an object's centre and yaw from its top points, and
``object_points`` first re-collects a flat object's outline by its colour, sharper than the
segmentation's class boundary there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
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
    chroma_tolerance: float = 0.03  # chromaticity distance between neighbouring points of one object
    max_block_extent: float = 0.065  # metres: a 4 cm block's side and a voxel's blur either side, and more
    shade_ratio: float = 0.6  # the darker of neighbouring points of one object is at least this bright


def instances_from_segmentation(
    xyz: np.ndarray,
    labels: np.ndarray,
    background: Sequence[int] = (),
    config: InstanceClusteringConfig | None = None,
    rgb: np.ndarray | None = None,
) -> np.ndarray:
    """Per-point instance ids (N,) for a cloud (N, 3) with predicted class ids (N,) and, for the
    colour corrections above, colours (N, 3) (uint8, or floats in 0-1).

    Points of negative or ``background`` classes (table, robot), DBSCAN noise, isolated specks
    and instances beyond ``max_objects`` get -1. Instances are numbered 0, 1, ... from the largest
    down, so the ids do not depend on the order of the class ids.
    """
    import open3d as o3d  # here, not at the top: a planner given instance ids plans without it (1.2 s to import)

    config = config or InstanceClusteringConfig()
    xyz, labels = np.asarray(xyz, dtype=np.float64), np.asarray(labels)
    table = np.isin(labels, list(background))
    chroma = surface = None
    if rgb is not None:
        rgb = _rgb_255(rgb)
        chroma = chromaticity(rgb)
        surface = np.median(rgb[table], axis=0) if table.any() else None
    found: list[np.ndarray] = []  # point indices of each instance
    foreground = (labels >= 0) & ~table
    for label in np.unique(labels[foreground]):
        members = np.flatnonzero(labels == label)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[members]))
        cluster = np.asarray(cloud.cluster_dbscan(eps=config.eps, min_points=config.min_points))
        parts = [members[cluster == c] for c in range(cluster.max(initial=-1) + 1)]
        if rgb is not None:
            parts = [piece for part in parts for colored in _split_by_color(xyz, rgb, chroma, part, config)
                     for piece in _peel_outline(xyz, colored, config)
                     if not _looks_like(rgb[piece], surface, config.color_tolerance)]
        found += parts
    if rgb is not None:
        found = _join_block_parts(xyz, chroma, _join_outline_parts(xyz, rgb, found, config), config)
        found = _claim_columns(xyz, chroma, found, config)
    found = _absorb_fragments(xyz, _merge_overlapping(xyz, found, config.merge_iou, chroma, config.chroma_tolerance),
                              config, chroma)
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
            if (_span(xyz[np.concatenate([group, members]), :2]) <= config.max_object_extent
                    and np.linalg.norm(rgb[group].mean(0) - color) <= config.color_tolerance):
                joined[index] = np.concatenate([group, members])
                break
        else:
            joined.append(members)
    return groups + joined


def _rgb_255(rgb: np.ndarray) -> np.ndarray:
    """Colours as floats in 0-255 like ``color_tolerance``: uint8 as they are, 0-1 floats (the
    planners') scaled."""
    rgb = np.asarray(rgb)
    scale = 255.0 if rgb.dtype != np.uint8 and rgb.size and rgb.max() <= 1.0 else 1.0
    return rgb.astype(np.float64) * scale


def chromaticity(rgb: np.ndarray) -> np.ndarray:
    """rgb / (r + g + b) per point (N, 3), for colours in any scale: the colour without its shading."""
    rgb = np.asarray(rgb, dtype=np.float64)
    total = rgb.sum(axis=1, keepdims=True)
    return np.divide(rgb, total, out=np.full_like(rgb, 1 / 3), where=total > 0)


def _split_by_color(xyz: np.ndarray, rgb: np.ndarray, chroma: np.ndarray, members: np.ndarray,
                    config: InstanceClusteringConfig) -> list[np.ndarray]:
    """The connected parts of an instance when only neighbours (within ``eps``) of nearly one
    chromaticity and brightness (within ``shade_ratio``: a lit top and its shaded side) connect:
    touching objects of different colours, and the table taken for an object, come apart. The
    voxels that blend two colours at a border fall out as specks, which the fragment absorption
    gives back."""
    pairs = cKDTree(xyz[members]).query_pairs(config.eps, output_type="ndarray")
    a, b = members[pairs[:, 0]], members[pairs[:, 1]]
    brightness_a, brightness_b = rgb[a].sum(axis=1) + 1.0, rgb[b].sum(axis=1) + 1.0
    ratio = np.minimum(brightness_a, brightness_b) / np.maximum(brightness_a, brightness_b)
    pairs = pairs[(np.linalg.norm(chroma[a] - chroma[b], axis=1) <= config.chroma_tolerance)
                  & (ratio >= config.shade_ratio)]
    count, part = _components(len(members), pairs)
    return [members[part == index] for index in range(count)]


def _components(count: int, pairs: np.ndarray) -> tuple[int, np.ndarray]:
    """How many connected components ``count`` points joined by ``pairs`` (M, 2) form, and each
    point's component (0, 1, ...)."""
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    return connected_components(graph, directed=False)


def _peel_outline(xyz: np.ndarray, members: np.ndarray, config: InstanceClusteringConfig) -> list[np.ndarray]:
    """An instance that stands up from the table, split into its standing part and the points at
    table height outside it (more than ``eps`` from the box around its standing points): a block
    on the outline of its colour's zone comes apart from the outline; a bowl keeps its floor."""
    low = xyz[members, 2] < config.flat_height
    if low.all() or not low.any():
        return [members]
    standing = xyz[members[~low], :2]
    turn = _box_frame(square_yaw(standing))
    box, turned = standing @ turn, xyz[members[low], :2] @ turn
    outside = np.any((turned < box.min(0) - config.eps) | (turned > box.max(0) + config.eps), axis=1)
    beyond = members[low][outside]
    return [np.setdiff1d(members, beyond), beyond] if len(beyond) else [members]


def _looks_like(rgb: np.ndarray, surface: np.ndarray | None, tolerance: float) -> bool:
    """Whether points of colours ``rgb`` (0-255) are, by their mean colour, the ``surface`` (the
    background's median colour): the table taken for an object."""
    return surface is not None and bool(np.linalg.norm(rgb.mean(0) - surface) <= tolerance)


def _same_chroma(chroma: np.ndarray, a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    return bool(np.linalg.norm(chroma[a].mean(0) - chroma[b].mean(0)) <= tolerance)


def _join_block_parts(xyz: np.ndarray, chroma: np.ndarray, found: list[np.ndarray],
                      config: InstanceClusteringConfig) -> list[np.ndarray]:
    """Join touching instances of one chromaticity whose union still fits in one block (a block's
    top and its sides taken for another class), largest first. A block in a bowl or on a zone of
    its colour stays apart: together they are larger than a block."""
    outlines = [m for m in found if xyz[m, 2].max() < config.flat_height]
    found = sorted((m for m in found if xyz[m, 2].max() >= config.flat_height), key=len, reverse=True)

    def summary(members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return xyz[members].min(0), xyz[members].max(0), chroma[members].mean(0)

    summaries = [summary(m) for m in found]

    def joinable(i: int, j: int) -> bool:
        (low_i, high_i, chroma_i), (low_j, high_j, chroma_j) = summaries[i], summaries[j]
        across = np.maximum(high_i, high_j)[:2] - np.minimum(low_i, low_j)[:2]
        gap = np.maximum(low_i - high_j, low_j - high_i)
        # cheap tests first: a turned box is at least 1/sqrt(2) of the upright one across
        return (np.max(across) <= config.max_block_extent * np.sqrt(2) and np.all(gap <= config.eps)
                and np.linalg.norm(chroma_i - chroma_j) <= config.chroma_tolerance
                and _span(xyz[np.concatenate([found[i], found[j]]), :2]) <= config.max_block_extent
                and cKDTree(xyz[found[j]]).query(xyz[found[i]], distance_upper_bound=config.eps)[0].min()
                <= config.eps)

    joined = True
    while joined:
        joined = False
        for i, j in ((i, j) for i in range(len(found)) for j in range(i + 1, len(found))):
            if joinable(i, j):
                found[i] = np.concatenate([found[i], found.pop(j)])
                summaries.pop(j)
                summaries[i] = summary(found[i])
                joined = True
                break
    return found + outlines


def _span(xy: np.ndarray) -> float:
    """The longer side of the smallest box around points xy (N, 2): a turned square's side, not
    its diagonal."""
    return float(np.max(np.ptp(xy @ _box_frame(square_yaw(xy)), axis=0)))


def _claim_columns(xyz: np.ndarray, chroma: np.ndarray, found: list[np.ndarray],
                   config: InstanceClusteringConfig, top_layer: float = 0.01) -> list[np.ndarray]:
    """Give a block the points of a larger instance of its colour that lie under its top face (in
    the box around the face, a voxel's blur wider): a block in a bowl of its colour, whose sides
    the classes gave to the bowl. Nothing of the bowl is visible under the block."""
    found = list(found)
    for index, members in enumerate(found):
        z = xyz[members, 2]
        if z.max() < config.flat_height or _span(xyz[members, :2]) > config.max_block_extent:
            continue
        face = xyz[members[z >= z.max() - top_layer], :2]
        turn = _box_frame(square_yaw(face))
        low, high = (face @ turn).min(0) - config.eps / 2, (face @ turn).max(0) + config.eps / 2
        for other_index, other in enumerate(found):
            if len(other) <= len(members) or not _same_chroma(chroma, members, other, config.chroma_tolerance):
                continue
            turned = xyz[other, :2] @ turn
            under = np.all((turned >= low) & (turned <= high), axis=1) & (xyz[other, 2] < z.max())
            if under.any() and not under.all():
                found[index] = members = np.concatenate([members, other[under]])
                found[other_index] = other[~under]
    return found


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two axis-aligned boxes given as (2, 3) arrays of min and max corners."""
    inter = np.prod(np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0, None))
    union = np.prod(a[1] - a[0]) + np.prod(b[1] - b[0]) - inter
    return float(inter / union) if union > 0 else 0.0


def _merge_overlapping(xyz: np.ndarray, found: list[np.ndarray], min_iou: float,
                       chroma: np.ndarray | None = None, chroma_tolerance: float = 0.0) -> list[np.ndarray]:
    """Join instances whose boxes overlap by at least ``min_iou`` (transitively) and, with
    ``chroma`` given, whose chromaticities agree."""
    if min_iou <= 0:
        return found
    found = list(found)
    merged = True
    while merged:
        merged = False
        boxes = [np.stack([xyz[m].min(0), xyz[m].max(0)]) for m in found]
        for i in range(len(found)):
            partner = next((j for j in range(i + 1, len(found)) if _box_iou(boxes[i], boxes[j]) >= min_iou
                            and (chroma is None or _same_chroma(chroma, found[i], found[j], chroma_tolerance))),
                           None)
            if partner is not None:
                found[i] = np.concatenate([found[i], found.pop(partner)])
                merged = True
                break
    return found


def _absorb_fragments(xyz: np.ndarray, found: list[np.ndarray], config: InstanceClusteringConfig,
                      chroma: np.ndarray | None = None) -> list[np.ndarray]:
    """Merge each instance below ``fragment_points`` into the instance it has most points within
    ``eps`` of (with ``chroma`` given, of those it touches of its chromaticity if any), smallest
    first; drop the isolated ones below ``min_object_points``."""
    found = sorted(found, key=len)
    kept: list[np.ndarray] = []
    for index, members in enumerate(found):
        others = found[index + 1:]
        if len(members) < config.fragment_points and others:
            owner = np.concatenate([np.full(len(m), k) for k, m in enumerate(others)])
            tree = cKDTree(xyz[np.concatenate(others)])
            near = [owner[hit] for hit in tree.query_ball_point(xyz[members], config.eps) if hit]
            counts = np.bincount(np.concatenate(near), minlength=len(others)) if near else np.zeros(len(others))
            if chroma is not None and counts.any():
                alike = np.array([_same_chroma(chroma, members, m, config.chroma_tolerance) for m in others])
                if (counts[alike] > 0).any():
                    counts = np.where(alike, counts, 0)
                elif len(members) >= config.min_object_points:  # not a border speck: an object of its own colour
                    counts[:] = 0
                if len(members) >= config.min_object_points and xyz[members, 2].max() < config.flat_height:
                    # a piece of an outline on the table joins outlines, not the block standing on it
                    counts = np.where([xyz[m, 2].max() < config.flat_height for m in others], counts, 0)
            if counts.any():
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


def _box_frame(yaw: float) -> np.ndarray:
    """xy (N, 2) @ this: the points in the frame of a box turned by ``yaw``."""
    return np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])


def footprint(xyz: np.ndarray, top_layer: float = 0.01, outline_disagreement: float = 0.003,
              flat_height: float = InstanceClusteringConfig.flat_height) -> tuple[np.ndarray, float]:
    """Centre (x, y) and yaw (``square_yaw``) of an object's top points (xyz (N, 3) metres; those
    within ``top_layer`` of its highest) seen from above: the centre of the smallest box around
    them, or, for a square outline lower than ``flat_height`` (a zone) whose box centre is more than
    ``outline_disagreement`` from it, of the square its strips lie on (``outline_centre``).
    Where to put a block needs the target's centre to about a centimetre and its yaw to 15 degrees
    (Ravens' tolerances): the axis-aligned box of a turned zone outline, part of it taken for
    table, was off by two, and a block's sides, seen aslant, blur its outline where its top face
    does not."""
    xyz = np.asarray(xyz, dtype=np.float64)
    xy = xyz[xyz[:, 2] >= xyz[:, 2].max() - top_layer, :2]
    yaw = square_yaw(xy)
    frame = _box_frame(yaw)
    turned = xy @ frame
    centre = (turned.min(0) + turned.max(0)) / 2
    if np.ptp(xyz[:, 2]) < flat_height and _hollow(turned, centre):  # an outline on the table, not a bowl's rim
        fitted = outline_centre(turned, centre)
        # a whole outline's box is the finer centre (0.2 mm median on LoHoRavens zones against the
        # square's 0.6 mm); the two part only where some of the outline is missing or stray
        if np.linalg.norm(fitted - centre) > outline_disagreement:
            centre = fitted
    return centre @ frame.T, yaw


def _hollow(turned: np.ndarray, centre: np.ndarray, inner: float = 0.5, most: float = 0.05) -> bool:
    """True when (almost) no point lies in the inner ``inner`` of the box: an outline, not a face."""
    half = np.ptp(turned, axis=0) / 2
    return bool(np.mean(np.all(np.abs(turned - centre) < inner * half, axis=1)) < most)


def outline_centre(turned: np.ndarray, start: np.ndarray, reach: float = 0.025, tolerance: float = 0.01,
                   step: float = 0.002, fine_step: float = 0.0005) -> np.ndarray:
    """The centre of the square outline (axis-aligned in ``turned``'s frame, any size) that the
    points lie on best: least summed squared distance to its perimeter (the middle of each strip),
    each point's capped at ``tolerance``, searched within ``reach`` of ``start`` on a grid of
    ``step`` then ``fine_step``.

    The box around an outline is right only when the whole outline is seen: LoHoRavens zones were
    put 1.1-1.2 cm off where a third of an outline was hidden or a stray point of its colour lay
    2 cm beyond it, and Ravens scores a stacked block to 1 cm. A square fits the strips that are
    seen (two parallel strips fix its size) and leaves a stray point at the cap.
    """
    largest = float(np.ptp(turned, axis=0).max()) / 2

    def best(centres: np.ndarray, halves: np.ndarray) -> tuple[np.ndarray, float]:
        # a point's distance to a square's perimeter is | its Chebyshev radius - the half size |
        # (the Euclidean one is longer only off the corners, beyond the outline)
        radius = np.abs(turned[None, :, :] - centres[:, None, :]).max(-1)  # (C, N)
        cost = (np.minimum(np.abs(radius[None] - halves[:, None, None]), tolerance) ** 2).sum(-1)  # (H, C)
        h, c = np.unravel_index(cost.argmin(), cost.shape)
        return centres[c], float(halves[h])

    def around(centre: np.ndarray, span: float, grid: float) -> np.ndarray:
        ticks = np.arange(-span, span + grid / 2, grid)
        return centre + np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)

    centre, half = best(around(start, reach, step), np.arange(max(largest - reach, step), largest + step / 2, step))
    halves = np.arange(max(half - step, fine_step), half + step + fine_step / 2, fine_step)
    return best(around(centre, step, fine_step), halves)[0]


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
    rgb = _rgb_255(rgb)
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
    # DBSCAN with one point per core is connected components: the same parts as open3d's
    # cluster_dbscan(eps=2 * eps, min_points=1) for all 2,138 objects of 101 held-out frames
    pairs = cKDTree(xyz[candidates]).query_pairs(2 * config.eps, output_type="ndarray")
    _, cluster = _components(len(candidates), pairs)
    return candidates[np.isin(cluster, cluster[np.isin(candidates, marked)])]
