"""Perception pipeline: a cloud source and perception_node (Point-MoE segmentation), optionally RViz.

    ros2 launch pointmoe_ros perception.launch.py source:=/path/scan.pcd
    ros2 launch pointmoe_ros perception.launch.py source:=none input:=/velodyne_points rviz:=true
    ros2 launch pointmoe_ros perception.launch.py checkpoint:=pointmoe_l.pth model_config:=L

Every parameter of both nodes is a launch argument (``ros2 launch ... --show-args``); left empty it
keeps ``config/perception.yaml``'s value, which segments with the shipped checkpoint
``checkpoints/seg_default.safetensors`` and the config it carries. Relative paths are looked up in
the working directory, then in this package's share. ``rviz:=true`` without RViz installed logs a
warning and starts the rest.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import UnlessCondition
from launch.substitutions import EqualsSubstitution, LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from pointmoe_ros.launch_support import CLOUD_PUBLISHER, PERCEPTION_NODE, declare, overrides, rviz


def generate_launch_description():
    share = get_package_share_directory("pointmoe_ros")
    config = os.path.join(share, "config", "perception.yaml")

    def nodes(context):
        given = context.launch_configurations
        return [
            Node(
                package="pointmoe_ros", executable="cloud_publisher", name="cloud_publisher",
                parameters=[config, overrides(given, CLOUD_PUBLISHER)],
                condition=UnlessCondition(EqualsSubstitution(LaunchConfiguration("source"), "none")),
                output="screen",
            ),
            Node(
                package="pointmoe_ros", executable="perception_node", name="perception_node",
                parameters=[config, {**overrides(given, PERCEPTION_NODE), "autostart": True}],
                remappings=[("~/input/points", given["input"])], output="screen",
            ),
            *rviz(context, os.path.join(share, "config", "pointmoe.rviz")),
        ]

    return LaunchDescription([
        DeclareLaunchArgument("source", default_value="",
                              description="cloud file or 'synthetic' for cloud_publisher; 'none' to use a real sensor "
                                          "(empty: as in the parameters file)"),
        *declare(CLOUD_PUBLISHER, skip=("source",)),
        DeclareLaunchArgument("input", default_value="/cloud_publisher/points",
                              description="PointCloud2 topic to segment"),
        *declare(PERCEPTION_NODE),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz, where it is installed"),
        OpaqueFunction(function=nodes),
    ])
