"""sim_bridge_node on a user's LoHoRavens checkout and planner_node with the shipped 3D-MoE planner,
over real Fast DDS (loopback): clouds out, a plan back, executed by LoHoRavens itself.

Needs a LoHoRavens checkout in $LOHORAVENS_ROOT (with `pip install -e .[lohoravens]`); skipped
otherwise. Slow: LoHoRavens resets take ~10 s and the planner loads its LLM first.
"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = os.environ.get("LOHORAVENS_ROOT", "")
PLANNER = Path(__file__).resolve().parents[2] / "checkpoints" / "planner_3d_moe"


@pytest.mark.skipif(not (Path(ROOT) / "cliport" / "environments" / "environment.py").is_file(),
                    reason="no LoHoRavens checkout in $LOHORAVENS_ROOT")
def test_lohoravens_bridge_publishes_clouds_and_executes_plans(ros_install, rclpy_context):
    rclpy = rclpy_context
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    def node(executable: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(ros_install / "lib/pointmoe_ros" / executable), "--ros-args", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    sim = node("sim_bridge_node", "-p", f"lohoravens_root:={ROOT}", "-p", "task:=pick-and-place-primitive",
               "-p", "lohoravens_mode:=test", "-p", "seed:=10004", "-p", "rate_hz:=1.0")
    planner = node("planner_node", "-p", "planner:=3d_moe", "-p", f"checkpoint:={PLANNER}", "-p", "device:=cpu",
                   "-p", "snap_radius:=0.05",
                   "-r", "~/input/points:=/sim_bridge_node/output/points",
                   "-r", "~/input/instruction:=/sim_bridge_node/output/instruction",
                   "-r", "~/output/pose_sequence:=/sim_bridge_node/input/pose_sequence")
    listener = rclpy.create_node("lohoravens_bridge_test")
    try:
        clouds, statuses = [], []
        listener.create_subscription(PointCloud2, "/sim_bridge_node/output/points", clouds.append,
                                     qos_profile_sensor_data)
        listener.create_subscription(String, "/sim_bridge_node/output/status",
                                     lambda msg: statuses.append(json.loads(msg.data)), 10)
        deadline = time.monotonic() + 240
        while not (clouds and any(s.get("step", 0) >= 1 for s in statuses)) and time.monotonic() < deadline:
            rclpy.spin_once(listener, timeout_sec=0.2)
        assert clouds and clouds[-1].width * clouds[-1].height > 10_000, "no LoHoRavens cloud on the topic"
        assert statuses and "error" not in statuses[0], statuses
        executed = [s for s in statuses if s.get("step", 0) >= 1]
        assert executed, f"no plan was executed within 240 s: {statuses}"
        print(f"LoHoRavens status after the first executed plan: {executed[0]}")
    finally:
        listener.destroy_node()
        logs = []
        for process in (planner, sim):
            process.terminate()
            logs.append(process.communicate(timeout=30)[0])
    assert "LoHoRavens pick-and-place-primitive (test, seed 10004)" in logs[1], logs[1][-2000:]
    assert "executed 1 step(s) from '3d-moe'" in logs[1], logs[1][-2000:]
