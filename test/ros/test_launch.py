"""Both launch files: every node parameter is a launch argument, the parameter files name the shipped
checkpoints, and, where the real ROS 2 `launch` and `launch_ros` can be imported, the launches run:
perception.launch.py with the README's `checkpoint:=` (and `rviz:=true` without RViz) segments, and
both exit on SIGINT without leaving a node behind; sim.launch.py with defaults plans (slow).

`launch` and `launch_ros` are not on PyPI: set POINTMOE_LAUNCH_PYTHONPATH to the folders that hold
them and what they import (README, "Using it from ROS 2"); without it the full checks skip and the
static ones still run.
"""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pointmoe_core.common.paths import resolve_path
from pointmoe_ros import launch_support
from pointmoe_ros.launch_support import (
    CLOUD_PUBLISHER,
    INTEGER,
    LIST,
    NUMBER,
    NUMBER_OR_AUTO,
    PERCEPTION_NODE,
    PLANNER_NODE,
    SIM_BRIDGE_NODE,
    TEXT,
    overrides,
    typed,
)

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[2]
LAUNCH_PYTHONPATH = os.environ.get("POINTMOE_LAUNCH_PYTHONPATH")
needs_launch = pytest.mark.skipif(not LAUNCH_PYTHONPATH, reason="set POINTMOE_LAUNCH_PYTHONPATH to ros2/launch and "
                                                                "ros2/launch_ros (not on PyPI) to run the launch files")
NODES = {"perception_node": PERCEPTION_NODE, "cloud_publisher": CLOUD_PUBLISHER, "planner_node": PLANNER_NODE,
         "sim_bridge_node": SIM_BRIDGE_NODE}
# what `ros2 launch FILE name:=value ...` runs (ros2launch's launch_a_launch_file, without ros2cli)
RUNNER = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
arguments = [tuple(argument.split(":=", 1)) for argument in sys.argv[2:]]
service = LaunchService(argv=sys.argv[2:])
service.include_launch_description(IncludeLaunchDescription(PythonLaunchDescriptionSource(sys.argv[1]),
                                                            launch_arguments=arguments))
sys.exit(service.run())
"""


def test_every_node_parameter_is_a_launch_argument():
    for node, parameters in NODES.items():
        source = (REPO / "pointmoe_ros" / f"{node}.py").read_text()
        declared = set(re.findall(r'declare_parameter\(\s*"(\w+)"', source)) - {"autostart"}  # launch sets it
        assert declared == set(parameters), node


def test_parameter_files_name_the_shipped_checkpoints(ros_install, tmp_path, monkeypatch):
    share = ros_install / "share" / "pointmoe_ros"
    perception = yaml.safe_load((share / "config/perception.yaml").read_text())["perception_node"]["ros__parameters"]
    planner = yaml.safe_load((share / "config/sim.yaml").read_text())["planner_node"]["ros__parameters"]
    assert perception["model_config"] == ""  # the checkpoint's own config
    monkeypatch.chdir(tmp_path)  # launched from anywhere: the share has them
    from pointmoe_core.plan.moe_planner_files import is_moe_planner
    from pointmoe_core.seg.convert import read_checkpoint

    assert read_checkpoint(resolve_path(perception["checkpoint"], share)).config.name == "tiny-tabletop"
    assert planner["planner"] == "3d_moe" and is_moe_planner(resolve_path(planner["checkpoint"], share))
    for config in ("perception.yaml", "sim.yaml"):
        for node, section in yaml.safe_load((share / "config" / config).read_text()).items():
            values = {name: value for name, value in section["ros__parameters"].items() if name != "autostart"}
            assert set(values) <= set(NODES[node]), (config, node)
            for name, value in values.items():  # each file value is one the launch argument could give
                text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True)
                assert typed(text.strip().removesuffix("...").strip(), NODES[node][name]) == value, (node, name)


def test_launch_arguments_are_typed_as_the_parameters():
    assert typed("50000", INTEGER) == 50000 and typed("cpu", TEXT) == "cpu" and typed("123", TEXT) == "123"
    assert typed("1", NUMBER) == 1.0 and isinstance(typed("1", NUMBER), float)  # rclpy refuses an int for a double
    assert typed("auto", NUMBER_OR_AUTO) == "auto" and typed("80", NUMBER_OR_AUTO) == 80
    assert typed("[table, mug]", LIST) == ["table", "mug"]
    for value, kind in (("abc", INTEGER), ("yes please", launch_support.FLAG), ("near", NUMBER_OR_AUTO), ("a", LIST)):
        with pytest.raises(ValueError, match="is not a valid"):
            typed(value, kind)
    given = {"perception_checkpoint": "model.pth", "perception_max_points": "", "max_points": "7"}
    assert overrides(given, PERCEPTION_NODE, "perception_") == {"checkpoint": "model.pth"}  # empty: the file's
    with pytest.raises(ValueError, match="launch argument perception_max_points"):
        overrides({"perception_max_points": "many"}, PERCEPTION_NODE, "perception_")


def test_launch_files_use_no_deprecated_conditions():
    for launch_file in (REPO / "launch").glob("*.launch.py"):
        source = launch_file.read_text()
        assert "LaunchConfigurationEquals" not in source and "LaunchConfigurationNotEquals" not in source
        assert '"rviz2"' not in source  # RViz only through launch_support.rviz, which checks it is installed


def _launch(ros_install, launch_file: str, log: Path, *arguments: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([LAUNCH_PYTHONPATH, os.environ.get("PYTHONPATH", "")]),
           "PYTHONWARNINGS": "default::DeprecationWarning"}  # what launch deprecates must show
    with open(log, "w") as out:
        return subprocess.Popen(
            ["python", "-c", RUNNER, str(ros_install / "share/pointmoe_ros/launch" / launch_file), *arguments],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent, start_new_session=True)


def _receive(rclpy, node, received: list, process: subprocess.Popen, log: Path, seconds: float) -> None:
    """Spin ``node`` until ``received`` holds a message, the launch exits or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not received and time.monotonic() < deadline and process.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.2)
    assert received, log.read_text()


def _interrupt_and_check(process: subprocess.Popen, log: Path, seconds: float = 20) -> str:
    """SIGINT to launch's process group, as Ctrl-C in a terminal (launch then leaves the nodes to the
    terminal's SIGINT): launch and every node it started must be gone within ``seconds``, all on that
    first signal, before launch would escalate to SIGTERM."""
    import psutil

    nodes = psutil.Process(process.pid).children(recursive=True)
    assert nodes, log.read_text()
    os.killpg(process.pid, signal.SIGINT)  # launch started its own session: the group is launch and its nodes
    process.wait(timeout=seconds)
    _, alive = psutil.wait_procs(nodes, timeout=5)
    for orphan in alive:  # ours: the test started them
        orphan.kill()
    text = log.read_text()
    assert not alive, f"left running: {[p.pid for p in alive]}\n{text}"
    assert "SIGKILL" not in text and "SIGTERM" not in text, text  # all left on the first SIGINT
    assert "Traceback" not in text, text
    assert not [line for line in text.splitlines() if "eprecat" in line and "launch" in line], text
    return text


@needs_launch
def test_perception_launch_with_the_shipped_checkpoint(ros_install, rclpy_context, tmp_path):
    rclpy = rclpy_context
    from pointmoe_ros.msg import SegmentationInfo

    log = tmp_path / "launch.log"
    process = _launch(ros_install, "perception.launch.py", log, "checkpoint:=checkpoints/seg_default.safetensors",
                      "rviz:=true", "max_points:=50000")
    node = rclpy.create_node("perception_launch_test")
    infos = []
    node.create_subscription(SegmentationInfo, "/perception_node/output/info", infos.append, 5)
    try:
        _receive(rclpy, node, infos, process, log, 180)
    finally:
        node.destroy_node()
        text = _interrupt_and_check(process, log)
    assert not infos[0].warnings and "block" in infos[0].class_names  # the shipped tabletop model, no warning
    assert "RViz (package rviz2) is not installed: starting without it" in text


@needs_launch
@pytest.mark.slow
def test_sim_launch_with_defaults_plans_with_the_shipped_planner(ros_install, rclpy_context, tmp_path):
    rclpy = rclpy_context
    from pointmoe_ros.msg import PoseSequence

    log = tmp_path / "launch.log"
    process = _launch(ros_install, "sim.launch.py", log)
    node = rclpy.create_node("sim_launch_test")
    plans = []
    node.create_subscription(PoseSequence, "/sim_bridge_node/input/pose_sequence", plans.append, 5)
    try:
        _receive(rclpy, node, plans, process, log, 420)  # the planner's LLM loads first: minutes on 2 busy cores
    finally:
        node.destroy_node()
        text = _interrupt_and_check(process, log)
    assert plans[0].planner == "3d-moe" and len(plans[0].steps) >= 1
    assert "planner_3d_moe" in text and "seg_default.safetensors" in text
