"""Reductions of (N, C) arrays with a handful of columns, the shape of every point cloud.

NumPy reduces such an array along either axis through a strided inner loop over the C columns:
the per-column minimum of a 120,000 x 3 float32 cloud takes 3 ms and ``isfinite(x).all(1)``
1.7 ms on one core, where the same work on contiguous columns takes 0.14 and 0.23 ms. At 120k
points the perception callback ran about a dozen of them, ~25 ms of host time per cloud, more
than a GPU forward is meant to take. These go column by column and return what NumPy would.
"""
from __future__ import annotations

import numpy as np


def column_bounds(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x.min(0), x.max(0))`` of an (N, C) array with N >= 1."""
    columns = np.ascontiguousarray(np.asarray(x).T)
    return columns.min(1), columns.max(1)


def rows_all(mask: np.ndarray) -> np.ndarray:
    """``mask.all(1)`` of an (N, C) boolean array."""
    out = np.ones(mask.shape[0], bool)
    for column in mask.T:
        out &= column
    return out


def rows_any(mask: np.ndarray) -> np.ndarray:
    """``mask.any(1)`` of an (N, C) boolean array."""
    out = np.zeros(mask.shape[0], bool)
    for column in mask.T:
        out |= column
    return out


def squared_distances(x: np.ndarray, point: np.ndarray) -> np.ndarray:
    """``((x - point) ** 2).sum(1)``: each row's squared distance to ``point``."""
    out = np.zeros(x.shape[0], np.result_type(x, point))
    for column, coordinate in zip(x.T, point):
        difference = column - coordinate
        out += difference * difference
    return out
