"""Perception pipeline: a cloud source and perception_node (Point-MoE segmentation), optionally RViz.

    ros2 launch pointmoe_ros perception.launch.py source:=/path/scan.pcd checkpoint:=model.safetensors
    ros2 launch pointmoe_ros perception.launch.py input:=/velodyne_points source:=none rviz:=true
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, LaunchConfigurationNotEquals
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("pointmoe_ros")
    config = os.path.join(share, "config", "perception.yaml")
    rviz_config = os.path.join(share, "config", "pointmoe.rviz")
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument("source", default_value="synthetic",
                              description="cloud file or 'synthetic' for cloud_publisher; 'none' to use a real sensor"),
        DeclareLaunchArgument("rate_hz", default_value="1.0"),
        DeclareLaunchArgument("input", default_value="/cloud_publisher/points",
                              description="PointCloud2 topic to segment"),
        DeclareLaunchArgument("checkpoint", default_value=""),
        DeclareLaunchArgument("device", default_value="auto"),
        DeclareLaunchArgument("rviz", default_value="false"),
        Node(
            package="pointmoe_ros", executable="cloud_publisher", name="cloud_publisher",
            parameters=[config, {"source": arg("source"), "rate_hz": arg("rate_hz")}],
            condition=LaunchConfigurationNotEquals("source", "none"), output="screen",
        ),
        Node(
            package="pointmoe_ros", executable="perception_node", name="perception_node",
            parameters=[config, {"checkpoint": arg("checkpoint"), "device": arg("device"), "autostart": True}],
            remappings=[("~/input/points", arg("input"))], output="screen",
        ),
        Node(
            package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
            condition=IfCondition(arg("rviz")),
        ),
    ])
