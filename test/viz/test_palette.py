import numpy as np

from pointmoe_core.viz.palette import IGNORED_COLOR, colorize, palette


def test_palette_colours_are_distinct_for_many_classes():
    colors = palette(60)
    assert colors.shape == (60, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 60


def test_colorize_maps_ids_and_blacks_out_ignored():
    colors = colorize(np.array([0, 2, -1, 2]), count=3)
    np.testing.assert_array_equal(colors[1], colors[3])
    np.testing.assert_array_equal(colors[2], IGNORED_COLOR)
    np.testing.assert_array_equal(colors[0], palette(3)[0])
