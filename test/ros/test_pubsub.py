"""A 120k-point cloud crosses real Fast DDS (loopback only) between two processes."""
import os
import subprocess
import time

import numpy as np
import pytest

from pointmoe_core.data.scenes import tabletop_scene
from pointmoe_core.io import cloud_from_msg

pytestmark = pytest.mark.ros


def test_cloud_publisher_to_subscriber(ros_install, rclpy_context, tmp_path):
    rclpy = rclpy_context
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    cloud = tabletop_scene(120_000, seed=3)
    source = tmp_path / "scene.npz"
    np.savez(source, xyz=cloud.xyz, rgb=cloud.rgb, label=cloud.label)

    received = []
    node = rclpy.create_node("pubsub_test_listener")
    node.create_subscription(PointCloud2, "/cloud_publisher/points", received.append, qos_profile_sensor_data)
    publisher = subprocess.Popen(
        [str(ros_install / "lib" / "pointmoe_ros" / "cloud_publisher"), "--ros-args",
         "-p", f"source:={source}", "-p", "rate_hz:=5.0"],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30  # loopback discovery can take several seconds
        while not received and time.monotonic() < deadline and publisher.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.2)
    finally:
        publisher.terminate()
        log = publisher.communicate(timeout=10)[0]
        node.destroy_node()
    assert received, f"no cloud arrived within 30 s; publisher said:\n{log}"
    decoded = cloud_from_msg(received[0])
    assert received[0].width * received[0].height == 120_000
    np.testing.assert_array_equal(decoded.xyz, cloud.xyz)
    np.testing.assert_array_equal(decoded.rgb, cloud.rgb)
    np.testing.assert_array_equal(decoded.label, cloud.label)
