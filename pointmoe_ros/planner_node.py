"""planner_node: cloud + instruction -> pick-place plan, published for robots and RViz.

Subscribes ``~/input/points`` (PointCloud2 with rgb, and per-point instance ids in ``label``,
negative for background: what ``sim_bridge_node`` publishes) and ``~/input/instruction``
(std_msgs/String). For the newest cloud, once an instruction is known, it publishes
``~/output/pose_sequence`` (pointmoe_ros/PoseSequence), ``~/output/poses`` (PoseArray: pick 1,
place 1, pick 2, ...) and ``~/output/markers`` (pick -> place arrows and step numbers).

``planner`` is "pose_dit" (``checkpoint``: a Pose-DiT file or checkpoint directory) or "3d_moe"
(``checkpoint``: a 3D-MoE planner folder, or a ``pointmoe train planner`` stage folder); the
3D-MoE planner also publishes its next step in words on ``~/output/answer`` (std_msgs/String).
Without a checkpoint the node logs an error and plans nothing: it never makes poses up. The oracle is
not available here, as it reads the simulator's true object poses: run ``sim_bridge_node`` with
``use_oracle:=true`` and it publishes the oracle's plan itself.

    ros2 run pointmoe_ros planner_node --ros-args -p checkpoint:=runs/pose_dit \\
        -r ~/input/points:=/sim_bridge_node/output/points \\
        -r ~/input/instruction:=/sim_bridge_node/output/instruction
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import rclpy
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from pointmoe_core.io import CloudFormatError, cloud_from_msg
from pointmoe_ros.msg import PoseSequence as PoseSequenceMsg
from pointmoe_ros.plan_msgs import plan_markers, pose_array, sequence_to_msg
from pointmoe_ros.spin import spin_until_shutdown

if TYPE_CHECKING:
    from pointmoe_core.plan.moe_planner import MoEPlanner
    from pointmoe_core.plan.planner import PoseDiTPlanner

# planning is slower than the sensor: only the newest cloud is worth planning on
NEWEST_CLOUD_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                              reliability=QoSReliabilityPolicy.BEST_EFFORT)
# transient-local, to get sim_bridge_node's latched instruction even when started after it; a
# volatile publisher does not match it (`ros2 topic pub --qos-durability transient_local ...`)
INSTRUCTION_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                             durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
RESULT_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE)
PLANNERS = ("pose_dit", "3d_moe")


class PlannerNode(Node):
    def __init__(self) -> None:
        super().__init__("planner_node")
        planner = self.declare_parameter("planner", "pose_dit").value
        checkpoint = self.declare_parameter("checkpoint", "").value
        device = self.declare_parameter("device", "auto").value
        self.sampling_steps = int(self.declare_parameter("sampling_steps", 0).value)  # 0: the checkpoint's
        snap_radius = float(self.declare_parameter("snap_radius", -1.0).value)  # metres; negative: the checkpoint's
        self.planner = self.load_planner(planner, checkpoint, device)
        if self.planner is not None and snap_radius >= 0:
            self.planner.config.snap_radius = snap_radius
        self.instruction = ""
        self.pending: PointCloud2 | None = None
        self.create_subscription(PointCloud2, "~/input/points", self.receive, NEWEST_CLOUD_QOS)
        self.create_subscription(String, "~/input/instruction", self.receive_instruction, INSTRUCTION_QOS)
        self.sequence_pub = self.create_publisher(PoseSequenceMsg, "~/output/pose_sequence", RESULT_QOS)
        self.poses_pub = self.create_publisher(PoseArray, "~/output/poses", RESULT_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, "~/output/markers", RESULT_QOS)
        self.answer_pub = self.create_publisher(String, "~/output/answer", RESULT_QOS)
        self.timer = self.create_timer(0.01, self.plan_pending)

    def load_planner(self, planner: str, checkpoint: str, device: str) -> PoseDiTPlanner | MoEPlanner | None:
        """The Pose-DiT or 3D-MoE planner, or None (after one error) when it cannot be had."""
        if planner == "oracle":
            self.get_logger().error("the oracle needs the simulator's object poses: run sim_bridge_node with "
                                    "use_oracle:=true, it publishes ~/output/oracle_plan; not planning")
            return None
        if planner not in PLANNERS:
            self.get_logger().error(f"unknown planner {planner!r} (one of {PLANNERS}); not planning")
            return None
        if not checkpoint:
            self.get_logger().error("no checkpoint given: set the `checkpoint` parameter to a Pose-DiT "
                                    "checkpoint or 3D-MoE planner folder; not planning")
            return None
        import torch

        from pointmoe_core.plan.moe_planner import is_moe_planner, load_planner  # torch only when planning

        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        kind = "3d_moe" if is_moe_planner(checkpoint) else "pose_dit"
        if kind != planner:
            self.get_logger().error(f"{checkpoint!r} is a {kind} planner, not {planner}: set `planner` to match; "
                                    "not planning")
            return None
        try:
            loaded = load_planner(checkpoint, map_location=device)
        except (ImportError, OSError, ValueError, KeyError, RuntimeError) as error:
            self.get_logger().error(f"cannot load the {planner} planner {checkpoint!r}: {error}; not planning")
            return None
        self.get_logger().info(f"{planner} planner from {checkpoint!r} ready on {device}")
        return loaded

    def receive_instruction(self, msg: String) -> None:
        if msg.data != self.instruction:
            self.get_logger().info(f"instruction: {msg.data!r}")
        self.instruction = msg.data

    def receive(self, msg: PointCloud2) -> None:
        self.pending = msg

    def plan_pending(self) -> None:
        msg, self.pending = self.pending, None
        if msg is None or self.planner is None or not self.instruction:
            return
        try:
            cloud = cloud_from_msg(msg, fields=("rgb", "label"))
        except CloudFormatError as error:
            self.get_logger().warning(f"cannot plan on this cloud: {error}", throttle_duration_sec=5.0)
            return
        steps = self.sampling_steps or None
        if hasattr(self.planner, "plan_with_answer"):  # the 3D-MoE planner also says the next step
            sequence, answer = self.planner.plan_with_answer(cloud.xyz, cloud.rgb, cloud.label, self.instruction,
                                                             num_steps=steps)
            self.answer_pub.publish(String(data=answer))
        else:
            sequence = self.planner.plan(cloud.xyz, cloud.rgb, cloud.label, self.instruction, num_steps=steps)
        header = msg.header
        self.sequence_pub.publish(sequence_to_msg(sequence, header))
        self.poses_pub.publish(pose_array(sequence, header))
        self.markers_pub.publish(plan_markers(sequence, header))


def main(args=None) -> int:
    rclpy.init(args=args)
    return spin_until_shutdown(PlannerNode())
