import numpy as np

from pointmoe_core.data.scenes import tabletop_scene
from pointmoe_core.viz.render import height_colors, render_cloud_png


def test_render_draws_the_cloud(tmp_path):
    import open3d as o3d

    path = render_cloud_png(tabletop_scene(5_000), tmp_path / "scene.png", width=320, height=240)
    image = np.asarray(o3d.io.read_image(str(path)))
    assert image.shape[:2] == (240, 320)
    background = image[0, 0].astype(int)
    drawn = np.abs(image.astype(int) - background).sum(axis=2) > 30
    assert 0.02 < drawn.mean() < 0.9  # the scene covers part of the frame, not all of it


def test_height_colors_span_the_ramp():
    xyz = np.zeros((3, 3), np.float32)
    xyz[:, 2] = [0.0, 0.5, 1.0]
    colors = height_colors(xyz)
    assert colors.dtype == np.uint8 and not np.array_equal(colors[0], colors[2])
