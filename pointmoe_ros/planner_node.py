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

A lifecycle node: configure loads the planner (the 3D-MoE one loads its LLM, a minute on a small
CPU, with the steps logged), activate subscribes; ``autostart`` (default true) does both at start. A
configure that fails logs why and leaves the node unconfigured. A relative ``checkpoint`` is looked
up in the working directory, then in the package's share, where ``checkpoints/planner_3d_moe``
ships. A cloud that cannot be planned on gives a throttled warning.

    ros2 run pointmoe_ros planner_node --ros-args -p checkpoint:=runs/pose_dit \\
        -r ~/input/points:=/sim_bridge_node/output/points \\
        -r ~/input/instruction:=/sim_bridge_node/output/instruction
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ament_index_python.packages import get_package_share_directory
from geometry_msgs.msg import PoseArray
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from pointmoe_core.common.paths import resolve_path
from pointmoe_core.io import CloudFormatError, cloud_from_msg
from pointmoe_ros.msg import PoseSequence as PoseSequenceMsg
from pointmoe_ros.plan_msgs import plan_markers, pose_array, sequence_to_msg
from pointmoe_ros.spin import autostart, run, torch_device

if TYPE_CHECKING:
    from pointmoe_core.plan.interface import Planner

# planning is slower than the sensor: only the newest cloud is worth planning on
NEWEST_CLOUD_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                              reliability=QoSReliabilityPolicy.BEST_EFFORT)
# transient-local, to get sim_bridge_node's latched instruction even when started after it; a
# volatile publisher does not match it (`ros2 topic pub --qos-durability transient_local ...`)
INSTRUCTION_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                             durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
RESULT_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE)
PLANNERS = ("pose_dit", "3d_moe")
LOGGED_INSTRUCTION_CHARS = 200  # an instruction is text from anyone: the log shows its start


class PlannerNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("planner_node")
        self.declare_parameter("planner", "pose_dit")
        self.declare_parameter("checkpoint", "")
        self.declare_parameter("device", "auto")
        self.declare_parameter("llm_dtype", "float32")  # a 3D-MoE planner's LLM: float32, bfloat16, int8 (CPU)
        self.declare_parameter("cuda_graphs", False)  # a 3D-MoE planner as CUDA graphs (GPU, llm_dtype bfloat16)
        self.declare_parameter("torch_threads", 0)  # 0: torch's default, one per core
        self.declare_parameter("sampling_steps", 0)  # 0: the checkpoint's
        self.declare_parameter("snap_radius", -1.0)  # metres; negative: the checkpoint's
        self.declare_parameter("autostart", True)  # as before it was a lifecycle node: it plans once started
        self.planner: Planner | None = None
        self.instruction = ""
        self.pending: PointCloud2 | None = None
        self.inputs = []

    # ---- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        parameter = self.parameter
        try:
            self.planner = self.load_planner(parameter("planner"), parameter("checkpoint"))
        except Exception as error:  # noqa: BLE001 - whatever it is, the node stays up, unconfigured
            self.get_logger().error(f"cannot load the {parameter('planner')} planner: {type(error).__name__}: "
                                    f"{error}; not planning")
            return TransitionCallbackReturn.FAILURE
        if self.planner is None:
            return TransitionCallbackReturn.FAILURE
        snap_radius = float(parameter("snap_radius"))
        if snap_radius >= 0:
            self.planner.config.snap_radius = snap_radius
        self.sampling_steps = int(parameter("sampling_steps"))
        self.sequence_pub = self.create_lifecycle_publisher(PoseSequenceMsg, "~/output/pose_sequence", RESULT_QOS)
        self.poses_pub = self.create_lifecycle_publisher(PoseArray, "~/output/poses", RESULT_QOS)
        self.markers_pub = self.create_lifecycle_publisher(MarkerArray, "~/output/markers", RESULT_QOS)
        self.answer_pub = self.create_lifecycle_publisher(String, "~/output/answer", RESULT_QOS)
        self.timer = self.create_timer(0.01, self.plan_pending)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.inputs = [
            self.create_subscription(PointCloud2, "~/input/points", self.receive, NEWEST_CLOUD_QOS),
            self.create_subscription(String, "~/input/instruction", self.receive_instruction, INSTRUCTION_QOS)]
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        for subscription in self.inputs:
            self.destroy_subscription(subscription)
        self.inputs, self.pending = [], None
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        for publisher in (self.sequence_pub, self.poses_pub, self.markers_pub, self.answer_pub):
            self.destroy_publisher(publisher)
        self.destroy_timer(self.timer)
        self.planner = None
        return TransitionCallbackReturn.SUCCESS

    def parameter(self, name: str):
        return self.get_parameter(name).value

    def load_planner(self, planner: str, checkpoint: str) -> Planner | None:
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
        from pointmoe_core.plan.interface import load_planner  # torch only when planning
        from pointmoe_core.plan.moe_planner_files import is_moe_planner

        path = resolve_path(checkpoint, get_package_share_directory("pointmoe_ros"))
        device = torch_device(self)
        kind = "3d_moe" if is_moe_planner(path) else "pose_dit"
        if kind != planner:
            self.get_logger().error(f"{checkpoint!r} is a {kind} planner, not {planner}: set `planner` to match; "
                                    "not planning")
            return None
        start = time.monotonic()
        self.get_logger().info(f"loading the {planner} planner from {path}"
                               + (" (its base LLM first: seconds from its cache, longer on a first start)"
                                  if kind == "3d_moe" else ""))
        loaded = load_planner(path, map_location=device, llm_dtype=self.parameter("llm_dtype"),
                              cuda_graphs=bool(self.parameter("cuda_graphs")))
        self.get_logger().info(f"{planner} planner from {checkpoint!r} ready on {device} "
                               f"after {time.monotonic() - start:.1f} s")
        return loaded

    def receive_instruction(self, msg: String) -> None:
        if msg.data != self.instruction:
            shown = msg.data[:LOGGED_INSTRUCTION_CHARS]
            more = len(msg.data) - len(shown)
            self.get_logger().info(f"instruction: {shown!r}" + (f" ({more} more characters)" if more else ""))
        self.instruction = msg.data

    def receive(self, msg: PointCloud2) -> None:
        self.pending = msg

    def plan_pending(self) -> None:
        msg, self.pending = self.pending, None
        if msg is None or self.planner is None or not self.instruction:
            return
        try:
            self.plan_and_publish(msg)
        except CloudFormatError as error:
            self.get_logger().warning(f"cannot plan on this cloud: {error}", throttle_duration_sec=5.0)
        except Exception as error:  # noqa: BLE001 - one message must never stop the node
            self.get_logger().error(f"planning failed: {type(error).__name__}: {error}", throttle_duration_sec=5.0)

    def plan_and_publish(self, msg: PointCloud2) -> None:
        cloud = cloud_from_msg(msg, fields=("rgb", "label"))
        steps = self.sampling_steps or None
        sequence, answer = self.planner.plan_with_answer(cloud.xyz, cloud.rgb, cloud.label, self.instruction,
                                                         num_steps=steps)
        if answer is not None:  # the 3D-MoE planner also says the next step in words
            self.answer_pub.publish(String(data=answer))
        header = msg.header
        self.sequence_pub.publish(sequence_to_msg(sequence, header))
        self.poses_pub.publish(pose_array(sequence, header))
        self.markers_pub.publish(plan_markers(sequence, header))


def main(args=None) -> int:
    def started() -> PlannerNode:
        node = PlannerNode()
        autostart(node)
        return node

    return run(started, args)
