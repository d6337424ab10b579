"""Offscreen PNG renders of point clouds with open3d (Filament on EGL/Vulkan, no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pointmoe_core.io.pointcloud2 import PointCloud


def height_colors(xyz: np.ndarray) -> np.ndarray:
    """Colour by height (turbo-like ramp) for clouds that carry no colour of their own."""
    z = xyz[:, 2]
    span = np.ptp(z) if len(z) else 0.0
    t = (z - z.min()) / span if span > 0 else np.zeros_like(z)
    ramp = np.array([[48, 18, 59], [40, 135, 248], [60, 232, 120], [245, 200, 45], [200, 30, 20]], float)
    position = t * (len(ramp) - 1)
    lower = np.clip(np.floor(position).astype(int), 0, len(ramp) - 2)
    frac = (position - lower)[:, None]
    return (ramp[lower] * (1 - frac) + ramp[lower + 1] * frac).astype(np.uint8)


def render_cloud_png(cloud: PointCloud, path: str | Path, colors: np.ndarray | None = None,
                     width: int = 960, height: int = 720, point_size: float = 2.0,
                     view_direction: tuple[float, float, float] = (-1.0, -0.8, 0.9),
                     up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> Path:
    """Render ``cloud`` to ``path``; colours default to the cloud's rgb, else to height.

    The camera looks at the cloud's centre from ``view_direction``, far enough to fit its
    bounding sphere, so any scale from a tabletop to a LiDAR sweep frames itself. The defaults
    suit z-up frames; a camera optical frame (z forward, y down) wants ``up=(0, -1, 0)`` and a
    view direction near ``(0, -0.3, -1)``.
    """
    import open3d as o3d
    import open3d.visualization.rendering as rendering

    if colors is None:
        colors = cloud.rgb if cloud.rgb is not None else height_colors(cloud.xyz)
    geometry = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.xyz.astype(np.float64)))
    geometry.colors = o3d.utility.Vector3dVector(np.asarray(colors, np.float64) / 255.0)

    renderer = rendering.OffscreenRenderer(width, height)
    try:
        material = rendering.MaterialRecord()
        material.shader = "defaultUnlit"
        material.point_size = point_size
        renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
        renderer.scene.add_geometry("cloud", geometry, material)
        # frame the robust extent (2nd-98th percentile) so a few far returns don't shrink the view
        low, high = np.percentile(cloud.xyz, [2, 98], axis=0) if len(cloud) else (np.zeros(3), np.ones(3))
        center = (low + high) / 2
        radius = max(float(np.linalg.norm(high - low)) / 2, 1e-3)
        direction = np.asarray(view_direction, float) / np.linalg.norm(view_direction)
        eye = center + direction * radius * 2.2
        renderer.setup_camera(45.0, center, eye, list(up))
        image = renderer.render_to_image()
    finally:
        del renderer
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    o3d.io.write_image(str(path), image)
    return path
