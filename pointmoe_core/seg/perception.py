"""What ``perception_node`` and ``pointmoe bag segment`` do, as plain functions.

A PointCloud2 (rclpy or rosbags) goes in; out come the segmented cloud (x, y, z, ``label``,
``score`` and an RViz-ready ``rgb`` from the class palette), the same cloud coloured by the
expert that one MoE layer chose, and a summary with the fields of ``SegmentationInfo``. A
message that cannot be decoded or segmented gives no clouds and a summary whose warnings say why,
so a caller can log it, publish the summary and carry on.

Only the fields the model reads are decoded (a LiDAR's float ``ring`` cannot fail a cloud), far-off
clouds are re-centred in float64 (``cloud_from_msg(recentre=True)``; the outputs keep the input's
coordinates), and points beyond a range limit are dropped: by default ``LIDAR_MAX_RANGE_M`` for
clouds with an intensity field, ``CAMERA_MAX_RANGE_M`` for the others (depth and RGB-D cameras).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pointmoe_core.io import CloudFormatError, PointCloud, cloud_from_msg
from pointmoe_core.io.pointcloud2 import present_attributes, recentred_note
from pointmoe_core.viz.palette import colorize, palette

# metres from a cloud's median point: long-range LiDARs see about 250 m, depth cameras far less
LIDAR_MAX_RANGE_M = 250.0
CAMERA_MAX_RANGE_M = 50.0
# a cloud bigger than any sensor's frame is refused before decoding: its copies alone take gigabytes
MAX_CLOUD_POINTS = 2_000_000


@dataclass
class InputMapping:
    """Which message fields feed the model, and how LiDAR intensity is scaled to [0, 1]."""

    use_rgb: bool = True
    use_intensity: bool = True
    use_normals: bool = True
    # "auto": divide by 255 when any value exceeds 1 (8-bit drivers); or a fixed divisor
    intensity_scale: float | str = "auto"
    # metres from the cloud's median point beyond which points are dropped; "auto": by sensor kind
    max_range: float | str = "auto"
    max_cloud_points: int = MAX_CLOUD_POINTS

    def __post_init__(self) -> None:
        for name in ("intensity_scale", "max_range"):
            value = getattr(self, name)
            if value != "auto" and not float(value) > 0:
                raise ValueError(f"{name} must be 'auto' or a number > 0, got {value!r}")
        if self.max_cloud_points < 1:
            raise ValueError(f"max_cloud_points must be at least 1, got {self.max_cloud_points}")

    def range_for(self, cloud: PointCloud) -> float:
        if self.max_range != "auto":
            return float(self.max_range)
        return LIDAR_MAX_RANGE_M if cloud.intensity is not None else CAMERA_MAX_RANGE_M


@dataclass
class SegmentationSummary:
    """The content of a ``pointmoe_ros/SegmentationInfo`` message, without ROS types."""

    class_names: tuple[str, ...] = ()
    class_colors_rgb: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))
    class_point_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    inference_time: float = 0.0
    points_in: int = 0
    points_dropped: int = 0
    warnings: list[str] = field(default_factory=list)
    kernels: dict[str, str] = field(default_factory=dict)  # SegResult.kernels


@dataclass
class PerceptionResult:
    segmented: PointCloud | None
    experts: PointCloud | None
    summary: SegmentationSummary


def scale_intensity(intensity: np.ndarray, scale: float | str) -> np.ndarray:
    if scale == "auto":
        scale = 255.0 if intensity.size and float(np.max(intensity)) > 1.0 else 1.0
    return (intensity / float(scale)).astype(np.float32)


def segment_message(msg: Any, segmenter, mapping: InputMapping | None = None,
                    class_names: list[str] | None = None, expert_layer: str | None = None) -> PerceptionResult:
    """Segment one PointCloud2; never raises for a bad message (the summary's warnings say what failed).

    ``expert_layer`` names the MoE layer whose top-1 expert colours the expert cloud (a name from
    ``segmenter.model``'s routing, e.g. ``"dec.dec0.block0.attn.proj"``); None means no expert cloud.
    """
    mapping = mapping or InputMapping()
    points_in = int(getattr(msg, "width", 0)) * int(getattr(msg, "height", 0))

    def refused(reason: str) -> PerceptionResult:
        return PerceptionResult(None, None, SegmentationSummary(
            points_in=points_in, points_dropped=points_in, warnings=[reason]))

    if points_in > mapping.max_cloud_points:
        return refused(f"cloud of {points_in} points > max_cloud_points={mapping.max_cloud_points}: not segmented")
    wanted = [name for name, use in (("rgb", mapping.use_rgb), ("intensity", mapping.use_intensity),
                                     ("normals", mapping.use_normals)) if use]
    try:
        cloud = cloud_from_msg(msg, fields=present_attributes(msg, wanted), recentre=True)
    except CloudFormatError as error:
        return refused(f"invalid PointCloud2: {error}")
    try:
        return segment_cloud(cloud, segmenter, mapping, class_names, expert_layer, points_in=points_in)
    except Exception as error:  # noqa: BLE001 - one message must never take the node down
        return refused(f"cannot segment this cloud: {type(error).__name__}: {error}")


def segment_cloud(cloud: PointCloud, segmenter, mapping: InputMapping | None = None,
                  class_names: list[str] | None = None, expert_layer: str | None = None,
                  points_in: int | None = None) -> PerceptionResult:
    """Segment a decoded cloud; ``points_in`` counts rows before NaN dropping, if known."""
    mapping = mapping or InputMapping()
    points_in = len(cloud) if points_in is None else points_in
    start = time.perf_counter()
    result = segmenter.predict(
        cloud.xyz,
        color=cloud.rgb if mapping.use_rgb else None,
        normal=cloud.normals if mapping.use_normals else None,
        strength=(scale_intensity(cloud.intensity, mapping.intensity_scale)
                  if mapping.use_intensity and cloud.intensity is not None else None),
        class_names=class_names,
        return_experts=expert_layer is not None,
        max_range=mapping.range_for(cloud),
    )
    elapsed = time.perf_counter() - start
    warnings = ([] if cloud.origin is None else [recentred_note(cloud.origin)]) + result.warnings
    keep = result.valid
    if not keep.any():
        warnings.append("nothing to segment: no valid point in the cloud" if points_in else "empty cloud")
    labels, scores = result.labels[keep], result.scores[keep]
    count = len(result.class_names)
    segmented = PointCloud(xyz=cloud.xyz[keep], rgb=colorize(labels, count), label=labels.astype(np.int32),
                           score=scores.astype(np.float32), origin=cloud.origin)
    experts = None
    if expert_layer is not None and keep.any():  # no point ran through the network: no routing to show
        if result.experts and expert_layer in result.experts:
            expert_ids = result.experts[expert_layer][keep]
            experts = PointCloud(xyz=segmented.xyz, rgb=colorize(expert_ids, segmenter.config.backbone.num_experts),
                                 label=expert_ids.astype(np.int32), origin=cloud.origin)
        else:
            known = sorted(result.experts or ())
            warnings.append(f"no MoE layer named {expert_layer!r}; layers: {known}")
    summary = SegmentationSummary(
        class_names=tuple(result.class_names),
        class_colors_rgb=palette(count),
        class_point_counts=np.bincount(labels[labels >= 0], minlength=count).astype(np.uint32),
        inference_time=elapsed,
        points_in=points_in,
        points_dropped=points_in - int(keep.sum()),
        warnings=warnings,
        kernels=dict(result.kernels),
    )
    return PerceptionResult(segmented, experts, summary)


def info_fields(summary: SegmentationSummary) -> dict[str, Any]:
    """``SegmentationInfo`` fields but the header, as Python and numpy values."""
    return {
        "class_names": list(summary.class_names),
        "class_colors_rgb": np.ascontiguousarray(summary.class_colors_rgb, np.uint8).reshape(-1),
        "class_point_counts": np.asarray(summary.class_point_counts, np.uint32),
        "inference_time": float(summary.inference_time),
        "points_in": int(summary.points_in),
        "points_dropped": int(summary.points_dropped),
        "warnings": list(summary.warnings),
        "sparse_conv_backend": summary.kernels.get("sparse_conv", ""),
        "attention_backend": summary.kernels.get("attention", ""),
        "moe_dispatch": summary.kernels.get("moe_dispatch", ""),
    }
