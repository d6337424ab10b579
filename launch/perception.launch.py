"""Perception pipeline launch: a cloud source publishing sensor_msgs/PointCloud2.

    ros2 launch pointmoe_ros perception.launch.py source:=/path/scan.pcd rate_hz:=2.0
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("pointmoe_ros"), "config", "perception.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("source", default_value="synthetic",
                              description="a .pcd/.ply/.bin/.npz cloud file, or 'synthetic'"),
        DeclareLaunchArgument("rate_hz", default_value="1.0"),
        Node(
            package="pointmoe_ros",
            executable="cloud_publisher",
            name="cloud_publisher",
            parameters=[config, {"source": LaunchConfiguration("source"),
                                 "rate_hz": LaunchConfiguration("rate_hz")}],
            output="screen",
        ),
    ])
