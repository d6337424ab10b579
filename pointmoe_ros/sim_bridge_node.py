"""sim_bridge_node: our PyBullet tabletop (``pointmoe_core.sim``) on ROS topics.

Publishes the fused scene cloud on ``~/output/points`` at ``rate_hz`` and the task's instruction
on ``~/output/instruction`` (transient-local: a late planner still gets it); executes each
``pointmoe_ros/PoseSequence`` received on ``~/input/pose_sequence`` step by step and reports
``{"reward", "done", "success", "step"}`` as JSON on ``~/output/status``. A refused plan (a pose
outside the workspace, a non-unit quaternion) is logged and nothing is sent to the simulator.

The cloud's ``label`` field holds the per-point *instance* id (PyBullet body id, -1 on the table
and background), which is what a planner needs; PointCloud2 as ``pointmoe_core.io`` writes it
has no separate instance field. With ``use_oracle`` the node also plans with the simulator's
oracle (it reads the true object poses, so only this node can run it) and publishes that plan
on ``~/output/oracle_plan`` after every reset and every executed plan.

    ros2 run pointmoe_ros sim_bridge_node --ros-args -p task:=put-block-into-matching-bowl
"""
from __future__ import annotations

import json

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String

from pointmoe_core.io import PointCloud, msg_from_cloud
from pointmoe_core.plan.pose_sequence import PickPlace, PoseSequence
from pointmoe_core.plan.train_pose_dit import object_instances
from pointmoe_core.sim import TASKS, ActionRefused, EnvConfig, Oracle, RavensBridge, TabletopEnv
from pointmoe_ros.msg import PoseSequence as PoseSequenceMsg
from pointmoe_ros.plan_msgs import sequence_from_msg, sequence_to_msg
from pointmoe_ros.spin import spin_until_shutdown

# one message per episode state that a node joining later must still see
LATCHED_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
PLAN_QOS = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)


class SimBridgeNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_bridge_node")
        task_name = self.declare_parameter("task", "pick-and-place-primitive").value
        seed = int(self.declare_parameter("seed", 0).value)
        rate_hz = float(self.declare_parameter("rate_hz", 2.0).value)
        height, width = self.declare_parameter("image_size", [120, 160]).value
        self.frame_id = self.declare_parameter("frame_id", "map").value
        self.use_oracle = bool(self.declare_parameter("use_oracle", False).value)
        if task_name not in TASKS:
            raise ValueError(f"unknown task {task_name!r}; one of {sorted(TASKS)}")
        env = TabletopEnv(TASKS[task_name](), EnvConfig(image_size=(int(height), int(width))))
        env.seed(seed)
        self.bridge = RavensBridge(env)
        self.points_pub = self.create_publisher(PointCloud2, "~/output/points", qos_profile_sensor_data)
        self.instruction_pub = self.create_publisher(String, "~/output/instruction", LATCHED_QOS)
        self.status_pub = self.create_publisher(String, "~/output/status", LATCHED_QOS)
        self.oracle_pub = self.create_publisher(PoseSequenceMsg, "~/output/oracle_plan", LATCHED_QOS)
        self.create_subscription(PoseSequenceMsg, "~/input/pose_sequence", self.execute, PLAN_QOS)
        self.steps_done = 0
        self.bridge.reset()
        self.scene_changed()
        self.timer = self.create_timer(1.0 / rate_hz, self.publish_cloud)
        self.get_logger().info(f"{task_name} (seed {seed}): {self.bridge.instruction!r}")

    def header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)

    def scene_changed(self) -> None:
        """Rebuild what is published about the scene: the cloud, and the oracle's plan."""
        scene = self.bridge.cloud()
        instances = object_instances(scene.cloud.label, scene.object_id, scene.class_names)
        self.cloud_msg = msg_from_cloud(PointCloud(scene.cloud.xyz, rgb=scene.cloud.rgb, label=instances),
                                        msg_class=PointCloud2)
        self.instruction_pub.publish(String(data=self.bridge.instruction))
        if self.use_oracle:
            steps = [PickPlace(*step) for step in Oracle(self.bridge.env).plan()]
            plan = PoseSequence(steps, self.bridge.instruction, planner="oracle")
            self.oracle_pub.publish(sequence_to_msg(plan, self.header()))

    def publish_cloud(self) -> None:
        self.cloud_msg.header = self.header()
        self.points_pub.publish(self.cloud_msg)

    def execute(self, msg: PoseSequenceMsg) -> None:
        sequence = sequence_from_msg(msg)
        try:
            result = self.bridge.execute(sequence)
        except ActionRefused as refusal:
            self.get_logger().error(f"refused a {len(sequence)}-step plan from {msg.planner!r}: {refusal}")
            return
        self.steps_done += result.steps_sent
        status = {"reward": sum(result.rewards), "done": result.done,
                  "success": bool(result.info.get("success", False)), "step": self.steps_done}
        self.status_pub.publish(String(data=json.dumps(status)))
        self.get_logger().info(f"executed {result.steps_sent} step(s) from {msg.planner!r}: {status}")
        self.scene_changed()

    def destroy_node(self) -> None:
        self.bridge.env.close()
        super().destroy_node()


def main(args=None) -> int:
    rclpy.init(args=args)
    return spin_until_shutdown(SimBridgeNode())
