"""Depth image -> organized cloud: exact small cases and a real TUM RGB-D frame."""
import numpy as np
import pytest

from pointmoe_core.io import cloud_from_depth, cloud_from_msg, msg_from_cloud

TUM = dict(fx=525.0, fy=525.0, cx=319.5, cy=239.5, depth_scale=5000.0)


def test_back_projection_is_exact_on_a_tiny_image():
    depth = np.array([[1000, 0, 2000], [500, 3000, 1000]], np.uint16)
    color = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    cloud = cloud_from_depth(depth, fx=2.0, fy=4.0, cx=1.0, cy=0.5, color=color, depth_trunc=2.5)
    assert len(cloud) == 6
    expected = np.array([
        [(0 - 1) * 1.0 / 2, (0 - 0.5) * 1.0 / 4, 1.0],
        [np.nan] * 3,                                  # depth 0
        [(2 - 1) * 2.0 / 2, (0 - 0.5) * 2.0 / 4, 2.0],
        [(0 - 1) * 0.5 / 2, (1 - 0.5) * 0.5 / 4, 0.5],
        [np.nan] * 3,                                  # 3 m > depth_trunc
        [(2 - 1) * 1.0 / 2, (1 - 0.5) * 1.0 / 4, 1.0],
    ], np.float32)
    np.testing.assert_allclose(cloud.xyz, expected, rtol=1e-6)
    np.testing.assert_array_equal(cloud.rgb, color[..., :3].reshape(-1, 3))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="depth must be an"):
        cloud_from_depth(np.zeros((2, 3, 1)), 1, 1, 0, 0)
    with pytest.raises(ValueError, match="color must be"):
        cloud_from_depth(np.ones((2, 3)), 1, 1, 0, 0, color=np.zeros((3, 2, 3), np.uint8))


@pytest.fixture(scope="module")
def tum_frame(shared_data):
    o3d = pytest.importorskip("open3d", reason="reads the TUM PNGs")
    depth = np.asarray(o3d.io.read_image(str(shared_data / "rgbd/TUM_depth.png")))
    color = np.asarray(o3d.io.read_image(str(shared_data / "rgbd/TUM_color.png")))
    return depth, color


def test_tum_frame_gives_a_plausible_organized_cloud(tum_frame):
    depth, color = tum_frame
    assert depth.dtype == np.uint16 and depth.shape == (480, 640)
    cloud = cloud_from_depth(depth, **TUM, color=color)
    assert len(cloud) == 480 * 640
    valid = np.isfinite(cloud.xyz).all(axis=1)
    np.testing.assert_array_equal(valid, depth.reshape(-1) > 0)
    z = cloud.xyz[valid, 2]
    assert 0.3 < z.min() and z.max() < 10.0  # within a Kinect's range
    assert np.mean(z < 5.0) > 0.95  # an office: nearly every measured point within 5 m
    assert valid.mean() > 0.5  # a real indoor frame is mostly measured
    truncated = cloud_from_depth(depth, **TUM, depth_trunc=5.0)
    assert 0.3 < np.nanmin(truncated.xyz[:, 2]) < np.nanmax(truncated.xyz[:, 2]) <= 5.0

    msg = msg_from_cloud(cloud, ("camera", 0.0), msg_class="rosbags", organized_shape=depth.shape)
    assert (msg.height, msg.width, msg.is_dense) == (480, 640, False)
    assert msg.row_step == 640 * msg.point_step
    back = cloud_from_msg(msg, drop_invalid=False)
    np.testing.assert_array_equal(back.xyz, cloud.xyz)
    np.testing.assert_array_equal(back.rgb, color.reshape(-1, 3))


def test_tum_frame_matches_open3d(tum_frame):
    import open3d as o3d

    depth, _ = tum_frame
    intrinsic = o3d.camera.PinholeCameraIntrinsic(640, 480, TUM["fx"], TUM["fy"], TUM["cx"], TUM["cy"])
    reference = o3d.geometry.PointCloud.create_from_depth_image(
        o3d.geometry.Image(depth), intrinsic, depth_scale=TUM["depth_scale"], depth_trunc=4.0)
    ours = cloud_from_depth(depth, **TUM, depth_trunc=4.0)
    cloud = cloud_from_msg(msg_from_cloud(ours, msg_class="rosbags"))
    # both walk the image row by row, so the valid points line up one to one
    np.testing.assert_allclose(cloud.xyz, np.asarray(reference.points), rtol=1e-5, atol=1e-6)
