"""Camera models and the fused, labelled point cloud."""
from __future__ import annotations

import numpy as np
import pytest

from pointmoe_core.sim.cameras import DEFAULT_CAMERAS, CameraConfig
from pointmoe_core.sim.objects import SEMANTIC_CLASSES
from pointmoe_core.sim.observe import CROP_BOUNDS, fuse_views, voxel_keep
from pointmoe_core.sim.pictures import project
from pointmoe_core.sim.poses import quat_matrix

IMAGES = (120, 160)


@pytest.fixture
def scene(make_env):
    """A primitive-task scene: blocks, bowls, zones, table and the suction cup."""
    env = make_env("pick-and-place-primitive", image_size=IMAGES)
    obs = env.reset(3)
    return env, obs


def test_cameras_follow_ravens_and_scale():
    assert [c.name for c in DEFAULT_CAMERAS] == ["front", "left", "right", "top"]
    front = DEFAULT_CAMERAS[0]
    assert front.image_size == (480, 640) and front.intrinsics[:3] == (450.0, 0.0, 320.0)
    assert DEFAULT_CAMERAS[3].position == (0.5, 0.0, 0.55)
    # the front camera looks down towards the workspace centre
    axis = quat_matrix(front.rotation)[:, 2]
    assert axis[0] < 0 and axis[2] < 0
    small = front.resized(120, 160)
    assert small.matrix[0, 0] == pytest.approx(112.5) and small.matrix[1, 2] == pytest.approx(60.0)
    assert CameraConfig.from_ravens(small.as_ravens(), name="front") == small
    with pytest.raises(ValueError, match="fx == fy"):
        CameraConfig("bad", (0, 0, 1), (0, 0, 0, 1), intrinsics=(400.0, 0, 320, 0, 450.0, 240, 0, 0, 1))


def test_observation_has_color_depth_and_segmentation_per_camera(scene):
    env, obs = scene
    assert set(obs) == {"color", "depth", "segm"}
    for color, depth, segm in zip(obs["color"], obs["depth"], obs["segm"]):
        assert color.shape == (*IMAGES, 3) and color.dtype == np.uint8
        assert depth.shape == IMAGES and depth.dtype == np.float32 and np.all(depth > 0)
        assert segm.shape == IMAGES and set(np.unique(segm)) <= set(env.objects) | {-1}


def test_block_centres_project_onto_their_own_pixels(scene):
    env, obs = scene
    blocks = [body for body, obj in env.objects.items() if obj.kind == "block"]
    for camera, segm in zip(env.cameras, obs["segm"]):
        for body in blocks:
            top = env.object_pose(body)[0] + [0, 0, 0.02]
            u, v = np.round(project(top[None], camera)[0]).astype(int)
            if 0 <= v < segm.shape[0] and 0 <= u < segm.shape[1]:
                assert segm[v, u] == body


def test_cloud_labels_agree_with_object_ids(scene):
    env, obs = scene
    fused = fuse_views(obs, env.cameras, env.class_ids)
    cloud, object_id = fused.cloud, fused.object_id
    assert fused.class_names == SEMANTIC_CLASSES and len(cloud) == len(object_id) > 1000
    assert np.all(object_id >= 0)  # with segmentation, every kept point belongs to a body
    expected = np.array([env.class_ids[body] for body in object_id])
    np.testing.assert_array_equal(cloud.label, expected)
    names = {SEMANTIC_CLASSES[label] for label in np.unique(cloud.label)}
    assert "table" in names and any(n.endswith("block") for n in names) and any(n.endswith("bowl") for n in names)
    assert np.all((cloud.xyz >= CROP_BOUNDS[:, 0] - 1e-6) & (cloud.xyz <= CROP_BOUNDS[:, 1] + 1e-6))


def test_block_points_lie_on_their_block(scene):
    """Back-projection and camera poses agree: every view puts a block's points on the block."""
    env, obs = scene
    fused = fuse_views(obs, env.cameras, env.class_ids)
    for body, obj in env.objects.items():
        if obj.kind != "block":
            continue
        points = fused.cloud.xyz[fused.object_id == body]
        assert len(points) > 20
        position, orientation = env.object_pose(body)
        local = (points - position) @ quat_matrix(orientation)
        assert np.all(np.abs(local) <= np.array(obj.dims) / 2 + 0.001)
        assert local[:, 2].max() > obj.dims[2] / 2 - 0.001  # the top face is seen


def test_voxel_thinning_and_missing_segmentation(scene):
    env, obs = scene
    full = fuse_views(obs, env.cameras, env.class_ids)
    thinned = fuse_views(obs, env.cameras, env.class_ids, voxel_size=0.01)
    assert 0 < len(thinned) < len(full)
    keys = np.floor(thinned.cloud.xyz / 0.01).astype(int)
    assert len(np.unique(keys, axis=0)) == len(keys)
    np.testing.assert_array_equal(voxel_keep(np.zeros((5, 3)), 0.1), [0])
    # a Ravens/LoHoRavens observation has no segmentation: points stay, labels are unknown
    plain = fuse_views({"color": obs["color"], "depth": obs["depth"]}, env.cameras)
    assert len(plain) >= len(full) and np.all(plain.cloud.label == -1) and np.all(plain.object_id == -1)
