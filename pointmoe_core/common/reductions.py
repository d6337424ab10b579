"""Reductions of (N, C) arrays with a handful of columns, the shape of every point cloud.

NumPy reduces such an array along either axis through a strided inner loop over the C columns:
the per-column minimum of a 120,000 x 3 float32 cloud takes 3 ms and ``isfinite(x).all(1)``
1.7 ms on one core, where the same work on contiguous columns takes 0.14 and 0.23 ms. At 120k
points the perception callback ran about a dozen of them, ~25 ms of host time per cloud, more
than a GPU forward is meant to take. These go column by column and return what NumPy would
(``argmax_over_rows``, for tensors on any device, what torch would).
"""
from __future__ import annotations

import numpy as np
import torch


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


def argmax_over_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x.argmax(0), x.amax(0))`` of a (C, N) tensor with a few rows, e.g. class probabilities
    stored class by class; the first maximum wins, as in ``argmax``. On a CPU row by row: torch's
    own reduction over dim 0 takes 6 ms on one core for 8 x 90,000, this 1. Elsewhere (a GPU)
    torch's, one kernel where rows would be a launch each (a class table has hundreds)."""
    if x.device.type != "cpu":
        best, index = x.max(0)
        return index, best
    best, index = x[0].clone(), torch.zeros(x.shape[1], dtype=torch.long, device=x.device)
    for row in range(1, len(x)):
        index.masked_fill_(x[row] > best, row)
        torch.maximum(best, x[row], out=best)
    return index, best
