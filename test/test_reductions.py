"""common.reductions against the NumPy reductions they replace."""
import numpy as np
import pytest

from pointmoe_core.common.reductions import (
    column_bounds,
    rows_all,
    rows_any,
    squared_distances,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(1, 3), (7, 1), (1000, 3), (50, 4)])
def test_column_bounds_equal_numpy(dtype, shape):
    x = (np.random.default_rng(0).normal(size=shape) * 1e3).astype(dtype)
    low, high = column_bounds(x)
    np.testing.assert_array_equal(low, x.min(0))
    np.testing.assert_array_equal(high, x.max(0))
    assert low.dtype == x.dtype


def test_column_bounds_of_a_column_with_nan_is_nan_as_in_numpy():
    x = np.array([[1.0, 2.0], [np.nan, 3.0]], np.float32)
    for ours, theirs in zip(column_bounds(x), (x.min(0), x.max(0))):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("shape", [(0, 3), (1, 3), (999, 3), (20, 1), (20, 5)])
def test_rows_all_and_any_equal_numpy(shape):
    values = np.random.default_rng(1).normal(size=shape)
    values[values > 1.5] = np.nan
    mask = np.isfinite(values)
    np.testing.assert_array_equal(rows_all(mask), mask.all(1))
    np.testing.assert_array_equal(rows_any(~mask), (~mask).any(1))


def test_squared_distances_equal_numpy():
    rng = np.random.default_rng(2)
    x, point = rng.normal(size=(500, 3)) * 50, rng.normal(size=3)
    np.testing.assert_allclose(squared_distances(x, point), ((x - point) ** 2).sum(1), rtol=1e-12)
    assert squared_distances(np.zeros((0, 3)), point).shape == (0,)
