"""Simulation pipeline: sim_bridge_node, perception_node, planner_node and optionally RViz.

The planner reads the simulator's cloud directly, since it needs per-point instance ids (the
cloud's ``label``), which the segmented cloud does not carry; perception runs beside it on the
same cloud for viewing. Plans go straight back to the simulator, which executes each one.

    ros2 launch pointmoe_ros sim.launch.py                    # the shipped 3D-MoE planner and segmenter
    ros2 launch pointmoe_ros sim.launch.py planner:=pose_dit checkpoint:=runs/pose_dit rviz:=true
    ros2 launch pointmoe_ros sim.launch.py task:=put-block-into-matching-bowl use_oracle:=true
    ros2 launch pointmoe_ros sim.launch.py env_factory:=my_pkg.envs:make_lohoravens auto_reset_s:=2.0

Every node parameter is a launch argument (perception_node's with a ``perception_`` prefix, e.g.
``perception_checkpoint``, ``perception_model_config``); left empty it keeps ``config/sim.yaml``'s
or ``config/perception.yaml``'s value: the shipped ``checkpoints/planner_3d_moe`` and
``checkpoints/seg_default.safetensors``. Relative paths are looked up in the working directory,
then in this package's share. ``rviz:=true`` without RViz installed logs a warning and starts the rest.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from launch import LaunchDescription
from pointmoe_ros.launch_support import PERCEPTION_NODE, PLANNER_NODE, SIM_BRIDGE_NODE, declare, overrides, rviz

PERCEPTION = "perception_"  # prefix of perception_node's launch arguments


def generate_launch_description():
    share = get_package_share_directory("pointmoe_ros")
    sim_config = os.path.join(share, "config", "sim.yaml")
    perception_config = os.path.join(share, "config", "perception.yaml")
    sim_points = "/sim_bridge_node/output/points"

    def nodes(context):
        given = context.launch_configurations
        perception_given = {**given, PERCEPTION + "device": given["device"]}  # one `device` for both models
        return [
            Node(
                package="pointmoe_ros", executable="sim_bridge_node", name="sim_bridge_node",
                parameters=[sim_config, overrides(given, SIM_BRIDGE_NODE)], output="screen",
            ),
            Node(
                package="pointmoe_ros", executable="perception_node", name="perception_node",
                parameters=[perception_config, {**overrides(perception_given, PERCEPTION_NODE, PERCEPTION),
                                                "autostart": True}],
                remappings=[("~/input/points", sim_points)], output="screen",
            ),
            Node(
                package="pointmoe_ros", executable="planner_node", name="planner_node",
                parameters=[sim_config, {**overrides(given, PLANNER_NODE), "autostart": True}],
                remappings=[("~/input/points", sim_points),
                            ("~/input/instruction", "/sim_bridge_node/output/instruction"),
                            ("~/output/pose_sequence", "/sim_bridge_node/input/pose_sequence")],
                output="screen",
            ),
            # the sim's cloud and the plan; perception's clouds are listed but off: they overlay the sim's
            *rviz(context, os.path.join(share, "config", "pointmoe_sim.rviz")),
        ]

    return LaunchDescription([
        *declare(SIM_BRIDGE_NODE),
        *declare(PLANNER_NODE),
        *declare(PERCEPTION_NODE, PERCEPTION, skip=(PERCEPTION + "device",)),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz, where it is installed"),
        OpaqueFunction(function=nodes),
    ])
