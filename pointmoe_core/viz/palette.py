"""Stable colours for class ids and expert ids, shared by nodes, bags, renders and reports."""
from __future__ import annotations

import numpy as np

# 20 well-separated colours (Tableau 20 ordering, dark/light pairs split apart) before cycling
_BASE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213],
    [196, 156, 148], [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229],
], dtype=np.uint8)
IGNORED_COLOR = np.array([0, 0, 0], np.uint8)


def palette(count: int) -> np.ndarray:
    """(count, 3) uint8 colours; beyond 20 the base colours repeat with shifted brightness."""
    index = np.arange(count)
    shade = 1.0 - 0.25 * ((index // len(_BASE)) % 3)
    return (_BASE[index % len(_BASE)] * shade[:, None]).astype(np.uint8)


def colorize(ids: np.ndarray, count: int) -> np.ndarray:
    """Per-point colours for integer ids in [0, count); negative ids (ignored, dropped) are black."""
    ids = np.asarray(ids)
    colors = np.empty(ids.shape + (3,), np.uint8)
    valid = ids >= 0
    colors[valid] = palette(count)[ids[valid]]
    colors[~valid] = IGNORED_COLOR
    return colors
