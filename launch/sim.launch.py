"""Simulation pipeline: sim_bridge_node, perception_node, planner_node and optionally RViz.

The planner reads the simulator's cloud directly, since it needs per-point instance ids (the
cloud's ``label``), which the segmented cloud does not carry; perception runs beside it on the
same cloud for viewing. Plans go straight back to the simulator, which executes each one.

    ros2 launch pointmoe_ros sim.launch.py checkpoint:=runs/pose_dit rviz:=true
    ros2 launch pointmoe_ros sim.launch.py planner:=3d_moe checkpoint:=checkpoints/planner_3d_moe
    ros2 launch pointmoe_ros sim.launch.py task:=put-block-into-matching-bowl use_oracle:=true
    ros2 launch pointmoe_ros sim.launch.py env_factory:=my_pkg.envs:make_lohoravens auto_reset_s:=2.0
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("pointmoe_ros")
    sim_config = os.path.join(share, "config", "sim.yaml")
    perception_config = os.path.join(share, "config", "perception.yaml")
    # the sim's cloud and the plan; perception's clouds are listed but off: they overlay the sim's
    rviz_config = os.path.join(share, "config", "pointmoe_sim.rviz")
    arg = LaunchConfiguration
    sim_points = "/sim_bridge_node/output/points"
    return LaunchDescription([
        DeclareLaunchArgument("task", default_value="pick-and-place-primitive"),
        DeclareLaunchArgument("seed", default_value="0"),
        DeclareLaunchArgument("use_oracle", default_value="false",
                              description="publish the oracle's plan on /sim_bridge_node/output/oracle_plan"),
        DeclareLaunchArgument("env_factory", default_value="",
                              description="'package.module:callable' returning a Ravens-style env to run instead of ours"),
        DeclareLaunchArgument("auto_reset_s", default_value="0.0",
                              description="seconds after an episode is done before the next starts; 0 = on request"),
        DeclareLaunchArgument("planner", default_value="pose_dit", description="pose_dit or 3d_moe, as the checkpoint is"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Pose-DiT checkpoint or 3D-MoE planner folder for the planner"),
        DeclareLaunchArgument("perception_checkpoint", default_value=""),
        DeclareLaunchArgument("device", default_value="auto"),
        DeclareLaunchArgument("rviz", default_value="false"),
        Node(
            package="pointmoe_ros", executable="sim_bridge_node", name="sim_bridge_node",
            parameters=[sim_config, {"task": arg("task"), "seed": ParameterValue(arg("seed"), value_type=int),
                                     "use_oracle": ParameterValue(arg("use_oracle"), value_type=bool),
                                     "env_factory": arg("env_factory"),
                                     "auto_reset_s": ParameterValue(arg("auto_reset_s"), value_type=float)}],
            output="screen",
        ),
        Node(
            package="pointmoe_ros", executable="perception_node", name="perception_node",
            parameters=[perception_config, {"checkpoint": arg("perception_checkpoint"), "device": arg("device"),
                                            "autostart": True}],
            remappings=[("~/input/points", sim_points)], output="screen",
        ),
        Node(
            package="pointmoe_ros", executable="planner_node", name="planner_node",
            parameters=[sim_config, {"planner": arg("planner"), "checkpoint": arg("checkpoint"), "device": arg("device")}],
            remappings=[("~/input/points", sim_points),
                        ("~/input/instruction", "/sim_bridge_node/output/instruction"),
                        ("~/output/pose_sequence", "/sim_bridge_node/input/pose_sequence")],
            output="screen",
        ),
        Node(
            package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
            condition=IfCondition(arg("rviz")),
        ),
    ])
