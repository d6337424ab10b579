"""cloud_publisher: publish a cloud file (or a generated scene) as sensor_msgs/PointCloud2.

A stand-in sensor for trying the perception pipeline without a camera:

    ros2 run pointmoe_ros cloud_publisher --ros-args -p source:=scan.pcd -p rate_hz:=2.0
"""
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from pointmoe_core.data.sources import load_cloud
from pointmoe_core.io import msg_from_cloud
from pointmoe_ros.spin import run


class CloudPublisher(Node):
    def __init__(self) -> None:
        super().__init__("cloud_publisher")
        source = self.declare_parameter("source", "synthetic").value
        frame_id = self.declare_parameter("frame_id", "map").value
        rate_hz = float(self.declare_parameter("rate_hz", 1.0).value)
        self.count = int(self.declare_parameter("count", 0).value)
        cloud = load_cloud(source)
        self.message = msg_from_cloud(cloud, msg_class=PointCloud2)
        self.message.header.frame_id = frame_id
        self.publisher = self.create_publisher(PointCloud2, "~/points", qos_profile_sensor_data)
        self.sent = 0
        self.timer = self.create_timer(1.0 / rate_hz, self.publish_once)
        self.get_logger().info(f"publishing {len(cloud)} points from {source!r} on "
                               f"{self.publisher.topic_name} at {rate_hz} Hz")

    def publish_once(self) -> None:
        self.message.header.stamp = self.get_clock().now().to_msg()
        self.publisher.publish(self.message)
        self.sent += 1

    def done(self) -> bool:
        return 0 < self.count <= self.sent


def main(args=None) -> int:
    return run(CloudPublisher, args, CloudPublisher.done)
