"""sim_bridge_node: our PyBullet tabletop (``pointmoe_core.sim``), or any Ravens-style env, on ROS topics.

Publishes the fused scene cloud on ``~/output/points`` at ``rate_hz`` and the task's instruction
on ``~/output/instruction`` (transient-local: a late planner still gets it); executes each
``pointmoe_ros/PoseSequence`` received on ``~/input/pose_sequence`` step by step and reports
``{"episode", "step", "reward", "done", "success"}`` as JSON on ``~/output/status`` after every
reset and every executed plan (step and reward are the episode's totals so far; plus
``"unscorable"``, why, on a LoHoRavens layout its own scorer cannot credit). A refused plan
(a pose outside the workspace, a non-unit quaternion, or any plan once the episode is done) is
logged and nothing is sent to the simulator.

Episodes: a ``std_msgs/String`` on ``~/input/reset`` starts the next one; its text is empty (the
env's random stream goes on) or an integer seed. With ``auto_reset_s`` > 0 the next episode
starts by itself that many seconds after one is done.

``lohoravens_root`` (a LoHoRavens checkout) runs LoHoRavens' own task ``task`` in
``lohoravens_mode`` (train/val/test) through ``pointmoe_core.sim.lohoravens``, unmodified;
``image_size`` then does not apply. ``env_factory`` ("package.module:callable", called with no
arguments) runs any other env with the Ravens interface instead of ours
(``pointmoe_core.sim.lohoravens:make_env`` reads ``$LOHORAVENS_ROOT``, ``$LOHORAVENS_TASK`` and
``$LOHORAVENS_MODE``); ``task`` and ``image_size`` then do not apply, and ``seed`` goes to the
env's ``seed()``. Its cloud needs ``agent_cams`` and colour and
depth images in its observations; without them ``~/output/points`` stays silent and the log
says why. A factory that cannot be loaded or fails is not replaced by our simulator (that would
pass off our scene as the requested one): the node logs the reason, publishes it as
``{"error": ...}`` on ``~/output/status`` and runs nothing.

The cloud's ``label`` field holds the per-point *instance* id (PyBullet body id, -1 on the table
and background), which is what a planner needs; PointCloud2 as ``pointmoe_core.io`` writes it
has no separate instance field. With ``use_oracle`` (our simulator only) the node also plans
with the simulator's oracle (it reads the true object poses, so only this node can run it) and
publishes that plan on ``~/output/oracle_plan`` after every reset and every executed plan.

    ros2 run pointmoe_ros sim_bridge_node --ros-args -p task:=put-block-into-matching-bowl
"""
from __future__ import annotations

import json
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String

from pointmoe_core.common.pose_sequence import PickPlace, PoseSequence
from pointmoe_core.data.demo_frames import object_instances
from pointmoe_core.io import PointCloud, msg_from_cloud
from pointmoe_core.sim import TASKS, ActionRefused, EnvConfig, Oracle, RavensBridge, TabletopEnv
from pointmoe_core.sim.bridge import EpisodeRunner, NoCloud, env_from_factory
from pointmoe_core.sim.lohoravens import make_env
from pointmoe_ros.msg import PoseSequence as PoseSequenceMsg
from pointmoe_ros.plan_msgs import sequence_from_msg, sequence_to_msg
from pointmoe_ros.spin import spin_until_shutdown

# one message per episode state that a node joining later must still see
LATCHED_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
PLAN_QOS = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
AUTO_RESET_CHECK_S = 0.1  # how often a pending automatic reset is looked for


class SimBridgeNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_bridge_node")
        task_name = self.declare_parameter("task", "pick-and-place-primitive").value
        seed = int(self.declare_parameter("seed", 0).value)
        rate_hz = float(self.declare_parameter("rate_hz", 2.0).value)
        image_size = self.declare_parameter("image_size", [120, 160]).value
        self.frame_id = self.declare_parameter("frame_id", "map").value
        use_oracle = bool(self.declare_parameter("use_oracle", False).value)
        env_factory = self.declare_parameter("env_factory", "").value
        lohoravens_root = self.declare_parameter("lohoravens_root", "").value
        lohoravens_mode = self.declare_parameter("lohoravens_mode", "test").value
        auto_reset_s = float(self.declare_parameter("auto_reset_s", 0.0).value)
        self.status_pub = self.create_publisher(String, "~/output/status", LATCHED_QOS)
        self.points_pub = self.create_publisher(PointCloud2, "~/output/points", qos_profile_sensor_data)
        self.instruction_pub = self.create_publisher(String, "~/output/instruction", LATCHED_QOS)
        self.oracle_pub = self.create_publisher(PoseSequenceMsg, "~/output/oracle_plan", LATCHED_QOS)
        self.cloud_msg: PointCloud2 | None = None
        try:
            if lohoravens_root:
                env = make_env(task_name, lohoravens_mode, lohoravens_root)
            else:
                env = env_from_factory(env_factory) if env_factory else self.tabletop_env(task_name, image_size)
            self.bridge = RavensBridge(env)
            # only our env exposes the true scene the oracle plans from
            self.use_oracle = use_oracle and isinstance(env, TabletopEnv)
            self.runner = EpisodeRunner(self.bridge, auto_reset_s)
            # Ravens' and our env have seed(); a foreign one without it keeps its own randomness
            self.reset(seed if callable(getattr(env, "seed", None)) else None)
        except Exception as error:  # foreign code (a factory, its env's reset) may fail in any way
            reason = f"{type(error).__name__}: {error}"
            self.get_logger().error(f"no simulator runs: {reason}")
            self.status_pub.publish(String(data=json.dumps({"error": reason})))
            return
        if use_oracle and not self.use_oracle:
            self.get_logger().warning(f"use_oracle ignored: the oracle needs our TabletopEnv, "
                                      f"not the {type(env).__name__} of {env_factory!r}")
        self.create_subscription(PoseSequenceMsg, "~/input/pose_sequence", self.execute, PLAN_QOS)
        self.create_subscription(String, "~/input/reset", self.reset_requested, PLAN_QOS)
        self.timer = self.create_timer(1.0 / rate_hz, self.publish_cloud)
        if auto_reset_s > 0:
            self.auto_reset_timer = self.create_timer(AUTO_RESET_CHECK_S, self.auto_reset)
        source = (f"LoHoRavens {task_name} ({lohoravens_mode}, seed {seed})" if lohoravens_root
                  else env_factory or f"{task_name} (seed {seed})")
        self.get_logger().info(f"{source}: {self.bridge.instruction!r}")

    @staticmethod
    def tabletop_env(task_name: str, image_size: list[int]) -> TabletopEnv:
        if task_name not in TASKS:
            raise ValueError(f"unknown task {task_name!r}; one of {sorted(TASKS)}")
        height, width = image_size
        return TabletopEnv(TASKS[task_name](), EnvConfig(image_size=(int(height), int(width))))

    def header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)

    def scene_changed(self) -> None:
        """Publish what is known about the scene now: cloud, instruction, oracle plan, status."""
        try:
            scene = self.bridge.cloud()
        except NoCloud as reason:
            self.get_logger().error(f"no cloud on {self.points_pub.topic_name}: {reason}", once=True)
            self.cloud_msg = None
        else:
            instances = object_instances(scene.cloud.label, scene.object_id, scene.class_names)
            self.cloud_msg = msg_from_cloud(PointCloud(scene.cloud.xyz, rgb=scene.cloud.rgb, label=instances),
                                            msg_class=PointCloud2)
        self.instruction_pub.publish(String(data=self.bridge.instruction))
        if self.use_oracle and not self.runner.done:
            steps = [PickPlace(*step) for step in Oracle(self.bridge.env).plan()]
            plan = PoseSequence(steps, self.bridge.instruction, planner="oracle")
            self.oracle_pub.publish(sequence_to_msg(plan, self.header()))
        self.status_pub.publish(String(data=json.dumps(self.runner.status())))

    def publish_cloud(self) -> None:
        if self.cloud_msg is not None:
            self.cloud_msg.header = self.header()
            self.points_pub.publish(self.cloud_msg)

    def reset(self, seed: int | None = None) -> None:
        self.runner.reset(seed)
        self.get_logger().info(f"episode {self.runner.episode} started"
                               + ("" if seed is None else f" with seed {seed}"))
        self.scene_changed()

    def reset_requested(self, msg: String) -> None:
        text = msg.data.strip()
        try:
            seed = int(text) if text else None
        except ValueError:
            self.get_logger().error(f"reset refused: {text!r} is neither empty nor an integer seed")
            return
        try:
            self.reset(seed)
        except ValueError as error:  # a seed for an env without seed()
            self.get_logger().error(f"reset refused: {error}")

    def auto_reset(self) -> None:
        if self.runner.reset_due():
            self.reset()

    def execute(self, msg: PoseSequenceMsg) -> None:
        sequence = sequence_from_msg(msg)
        try:
            result = self.runner.execute(sequence)
        except ActionRefused as refusal:  # EpisodeDone included
            self.get_logger().error(f"refused a {len(sequence)}-step plan from {msg.planner!r}: {refusal}")
            return
        self.get_logger().info(f"executed {result.steps_sent} step(s) from {msg.planner!r}: "
                               f"{self.runner.status()}")
        self.scene_changed()

    def destroy_node(self) -> Any:
        env = getattr(getattr(self, "bridge", None), "env", None)
        if callable(getattr(env, "close", None)):
            self.bridge.env.close()
        return super().destroy_node()


def main(args=None) -> int:
    rclpy.init(args=args)
    return spin_until_shutdown(SimBridgeNode())
