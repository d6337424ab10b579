"""planner_node with the 3D-MoE planner, over real Fast DDS (loopback): plans and its next step in words."""
import subprocess
import time

import pytest

pytestmark = pytest.mark.ros


def _node(ros_install, executable: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(ros_install / "lib/pointmoe_ros" / executable), "--ros-args", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_planner_node_plans_and_answers_with_a_3d_moe_planner(ros_install, rclpy_context, tmp_path):
    rclpy = rclpy_context
    from std_msgs.msg import String

    from pointmoe_core.plan.moe_planner import MoEPlanner
    from pointmoe_core.plan.train_planner import PlannerTrainConfig
    from pointmoe_ros.msg import PoseSequence

    planner = MoEPlanner(PlannerTrainConfig.load("config/train/planner_tiny.yaml").planner)
    planner.adapt()
    planner.save(tmp_path / "planner")
    sim = _node(ros_install, "sim_bridge_node", "-p", "rate_hz:=2.0")
    wrong = _node(ros_install, "planner_node", "-p", f"checkpoint:={tmp_path}", "-r", "__node:=wrong_kind")
    graphs_on_cpu = _node(ros_install, "planner_node", "-p", "planner:=3d_moe", "-p", f"checkpoint:={tmp_path}",
                          "-p", "device:=cpu", "-p", "cuda_graphs:=true", "-r", "__node:=graphs_on_cpu")
    node_process = _node(ros_install, "planner_node", "-p", "planner:=3d_moe", "-p", f"checkpoint:={tmp_path}",
                         "-p", "device:=cpu", "-r", "~/input/points:=/sim_bridge_node/output/points",
                         "-r", "~/input/instruction:=/sim_bridge_node/output/instruction")
    node = rclpy.create_node("planner_node_3d_moe_test")
    try:
        plans, answers = [], []
        node.create_subscription(PoseSequence, "/planner_node/output/pose_sequence", plans.append, 5)
        node.create_subscription(String, "/planner_node/output/answer", answers.append, 5)
        deadline = time.monotonic() + 60
        while not (plans and answers) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert plans and answers, "no plan and answer from planner_node"
        assert plans[0].planner == "3d-moe" and plans[0].instruction.startswith("pick up")
        assert isinstance(answers[0].data, str)
    finally:
        node.destroy_node()
        logs, still_up = [], []
        for process in (node_process, wrong, graphs_on_cpu, sim):
            still_up.append(process.poll() is None)
            process.terminate()
            logs.append(process.communicate(timeout=20)[0])
    assert "3d_moe planner from" in logs[0] and "ready on cpu" in logs[0], logs[0]
    assert "is a 3d_moe planner, not pose_dit" in logs[1], logs[1]
    # a setting the machine cannot honour: one clear line, and the node stays up, unconfigured
    assert "CUDA graphs need the planner on a CUDA device, not on cpu" in logs[2] and still_up[2], logs[2]
