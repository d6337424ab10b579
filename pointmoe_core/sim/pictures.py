"""Pictures of episodes: camera frames with pick -> place arrows, and contact sheets.

Drawing is plain numpy on (H, W, 3) uint8 images; PNGs are written with Pillow when it is
installed, else with open3d (a project dependency).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pointmoe_core.viz.palette import palette

from .cameras import PIXEL_OFFSET, CameraConfig
from .poses import PoseStep

PICK_RADIUS = 5
ARROW_WIDTH = 3
HEAD_LENGTH = 14


def project(points: np.ndarray, camera: CameraConfig) -> np.ndarray:
    """(N, 2) pixel coordinates (u, v) of world points in ``camera``'s image (integers at pixel centres)."""
    to_camera = np.linalg.inv(camera.camera_to_world)
    local = np.asarray(points, np.float64).reshape(-1, 3) @ to_camera[:3, :3].T + to_camera[:3, 3]
    pixels = local @ camera.matrix.T
    return pixels[:, :2] / pixels[:, 2:3] - PIXEL_OFFSET


def draw_disc(image: np.ndarray, centre: np.ndarray, radius: float, color: np.ndarray) -> None:
    v, u = np.ogrid[: image.shape[0], : image.shape[1]]
    image[(u - centre[0]) ** 2 + (v - centre[1]) ** 2 <= radius**2] = color


def draw_segment(image: np.ndarray, start: np.ndarray, end: np.ndarray, width: float, color: np.ndarray) -> None:
    """A thick line: every pixel within width/2 of the segment."""
    v, u = np.ogrid[: image.shape[0], : image.shape[1]]
    direction = end - start
    length_sq = max(float(direction @ direction), 1e-9)
    t = np.clip(((u - start[0]) * direction[0] + (v - start[1]) * direction[1]) / length_sq, 0, 1)
    distance_sq = (u - start[0] - t * direction[0]) ** 2 + (v - start[1] - t * direction[1]) ** 2
    image[distance_sq <= (width / 2) ** 2] = color


def draw_arrow(image: np.ndarray, start: np.ndarray, end: np.ndarray, color: np.ndarray) -> None:
    draw_segment(image, start, end, ARROW_WIDTH, color)
    direction = (end - start) / max(float(np.linalg.norm(end - start)), 1e-9)
    for turn in (np.pi * 5 / 6, -np.pi * 5 / 6):
        rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        draw_segment(image, end, end + HEAD_LENGTH * rotation @ direction, ARROW_WIDTH, color)


def annotate_steps(image: np.ndarray, camera: CameraConfig, steps: Sequence[PoseStep]) -> np.ndarray:
    """A copy of ``image`` with each step drawn as a disc at the pick and an arrow to the place,
    coloured in step order."""
    image = np.array(image, dtype=np.uint8, copy=True)
    colors = palette(max(len(steps), 1))
    for step, color in zip(steps, colors):
        pick, place = project(np.stack([step.pick_xyz, step.place_xyz]), camera)
        draw_arrow(image, pick, place, color)
        draw_disc(image, pick, PICK_RADIUS, color)
    return image


def contact_sheet(images: Sequence[np.ndarray], columns: int = 4, gap: int = 4) -> np.ndarray:
    """Images of one size tiled row by row on a white background."""
    height, width = images[0].shape[:2]
    rows = -(-len(images) // columns)
    columns = min(columns, len(images))
    sheet = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        sheet[row * (height + gap): row * (height + gap) + height,
              column * (width + gap): column * (width + gap) + width] = image
    return sheet


def save_png(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:
        import open3d

        open3d.io.write_image(str(path), open3d.geometry.Image(np.ascontiguousarray(image)))
    else:
        Image.fromarray(image).save(path)
    return path
