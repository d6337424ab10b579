"""perception_node over real Fast DDS (loopback): lifecycle, a real scan, a malformed cloud, params-file,
and an organized depth-camera cloud with NaNs."""
import subprocess
import time

import numpy as np
import pytest

from pointmoe_core.io import cloud_from_msg, msg_from_cloud, read_kitti_bin
from pointmoe_core.io.depth import cloud_from_depth

pytestmark = pytest.mark.ros
CONFIGURE, CLEANUP, ACTIVATE, DEACTIVATE = 1, 2, 3, 4
# the TUM frame's Freiburg camera as Open3D's default PrimeSense intrinsics give it (data README)
TUM_CAMERA = dict(fx=525.0, fy=525.0, cx=319.5, cy=239.5, depth_scale=5000.0)


def _wire_to_perception_node(node):
    """Collect the node's segmented clouds and info messages; return them and an input publisher."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    from pointmoe_ros.msg import SegmentationInfo

    segmented, infos = [], []
    node.create_subscription(PointCloud2, "/perception_node/output/segmented", segmented.append, 10)
    node.create_subscription(SegmentationInfo, "/perception_node/output/info", infos.append, 10)
    return segmented, infos, node.create_publisher(PointCloud2, "/perception_node/input/points",
                                                   qos_profile_sensor_data)


def _publish_until(rclpy, node, publisher, msg, condition, what: str, seconds: float = 90) -> None:
    """Publish ``msg`` every 3 s (sensor QoS is best effort) until ``condition()`` holds."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        publisher.publish(msg)
        end = time.monotonic() + 3.0
        while not condition() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    assert condition(), f"no answer for {what}"


def test_perception_node_lifecycle_and_clouds(ros_install, rclpy_context, services, shared_data, tmp_path):
    rclpy = rclpy_context
    from rcl_interfaces.srv import GetParameters
    from sensor_msgs.msg import PointCloud2

    params = tmp_path / "perception.yaml"
    params.write_text((ros_install / "share/pointmoe_ros/config/perception.yaml").read_text()
                      .replace("intensity_scale: auto", "intensity_scale: '1.0'"))
    node_process = subprocess.Popen(
        [str(ros_install / "lib/pointmoe_ros/perception_node"), "--ros-args", "--params-file", str(params)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = rclpy.create_node("perception_node_test")
    try:
        segmented, infos, publisher = _wire_to_perception_node(node)
        get_params = node.create_client(GetParameters, "/perception_node/get_parameters")

        answer = services(node).call(get_params, GetParameters.Request(names=["intensity_scale", "max_points"]))
        assert [v.string_value for v in answer.values[:1]] == ["1.0"]  # the params file is honoured
        assert answer.values[1].integer_value == 200_000
        for transition in (CONFIGURE, ACTIVATE):
            assert services(node).change_state("perception_node", transition)

        scan = read_kitti_bin(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")[::8]
        good = msg_from_cloud(scan, ("velodyne", 1.0), msg_class=PointCloud2)

        def publish_until(condition, msg, what):
            _publish_until(rclpy, node, publisher, msg, condition, what)

        publish_until(lambda: segmented and infos, good, "a segmented scan")
        labels = cloud_from_msg(segmented[-1]).label
        info = infos[-1]
        assert len(labels) == len(scan) and info.points_in == len(scan) and info.points_dropped == 0
        assert np.bincount(labels, minlength=len(info.class_names)).tolist() == list(info.class_point_counts)
        assert info.sparse_conv_backend in ("spconv", "torch") and info.attention_backend == "sdpa"  # CPU
        assert info.moe_dispatch == "loop"

        bad = msg_from_cloud(scan[:100], msg_class=PointCloud2)
        bad.row_step = 7  # smaller than width * point_step
        infos.clear()
        rejected = lambda: [w for i in infos for w in i.warnings if w.startswith("invalid PointCloud2")]  # noqa: E731
        publish_until(rejected, bad, "a warning about the malformed cloud")
        assert "row_step" in rejected()[0]
        segmented.clear()
        publish_until(lambda: segmented, good, "the next good scan after a bad one")

        for transition in (DEACTIVATE, CLEANUP):
            assert services(node).change_state("perception_node", transition)
    finally:
        node.destroy_node()
        node_process.terminate()
        log = node_process.communicate(timeout=20)[0]
    assert "cannot load" not in log, log


def test_perception_node_segments_an_organized_depth_camera_cloud(ros_install, rclpy_context, shared_data):
    """The real TUM RGB-D frame as a depth camera publishes it: 480 x 640, NaN where depth is missing."""
    rclpy = rclpy_context
    o3d = pytest.importorskip("open3d", reason="reads the TUM PNGs")
    from sensor_msgs.msg import PointCloud2

    depth = np.asarray(o3d.io.read_image(str(shared_data / "rgbd/TUM_depth.png")))
    color = np.asarray(o3d.io.read_image(str(shared_data / "rgbd/TUM_color.png")))
    camera_cloud = cloud_from_depth(depth, **TUM_CAMERA, color=color)
    frame = msg_from_cloud(camera_cloud, ("camera_rgb_optical_frame", 1.0), msg_class=PointCloud2,
                           organized_shape=depth.shape)
    assert (frame.height, frame.width, frame.is_dense) == (480, 640, False)
    finite = np.isfinite(camera_cloud.xyz).all(axis=1)
    assert 0 < finite.sum() < len(finite)  # the frame has holes, as real depth does

    node_process = subprocess.Popen(
        [str(ros_install / "lib/pointmoe_ros/perception_node"), "--ros-args", "-p", "autostart:=true",
         "-p", "device:=cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node = rclpy.create_node("perception_node_depth_test")
    try:
        segmented, infos, publisher = _wire_to_perception_node(node)
        _publish_until(rclpy, node, publisher, frame, lambda: segmented and infos, "the depth frame")
        out, info = cloud_from_msg(segmented[-1]), infos[-1]
    finally:
        node.destroy_node()
        node_process.terminate()
        log = node_process.communicate(timeout=20)[0]

    assert segmented[-1].header.frame_id == "camera_rgb_optical_frame", log
    assert len(out) == finite.sum() and np.all(out.label >= 0)  # one label per valid point
    np.testing.assert_array_equal(out.xyz, camera_cloud.xyz[finite])  # the same points, in order
    assert info.points_in == 480 * 640 and info.points_dropped == np.count_nonzero(~finite)
    assert np.bincount(out.label, minlength=len(info.class_names)).tolist() == list(info.class_point_counts)
    assert not [w for w in info.warnings if w.startswith("invalid")], info.warnings
