import numpy as np

from pointmoe_core.data.scenes import TABLETOP_CLASSES, tabletop_scene


def test_tabletop_scene_is_labelled_and_reproducible():
    scene = tabletop_scene(5_000, seed=7)
    assert len(scene) == 5_000 and scene.xyz.dtype == np.float32
    assert set(np.unique(scene.label)) == set(range(len(TABLETOP_CLASSES)))
    np.testing.assert_array_equal(scene.xyz, tabletop_scene(5_000, seed=7).xyz)


def test_objects_sit_on_the_table():
    scene = tabletop_scene(20_000, seed=1)
    table_top = scene.xyz[scene.label == TABLETOP_CLASSES.index("table"), 2].max()
    for name in ("block", "bowl"):
        heights = scene.xyz[scene.label == TABLETOP_CLASSES.index(name), 2]
        assert heights.min() >= table_top - 0.05 and heights.max() < table_top + 0.2
    assert np.all(scene.xyz[scene.label == 0, 2] == 0)  # floor
