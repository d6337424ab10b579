"""What our launch files share: every node parameter as a launch argument, and RViz where it is.

Each parameter of a node is a launch argument whose empty default keeps the parameters file's
value (``config/*.yaml``, where the defaults are documented), so one place holds every default and
``name:=value`` on the command line overrides just that one. Values are typed by the parameter's
kind: ``device:=cpu`` stays text, ``max_points:=50000`` becomes an integer, ``class_names:=[a, b]``
a list. Path parameters are resolved by the nodes (``pointmoe_core.common.paths``): the working directory
first, then the package's share, where the shipped checkpoints are installed.

``launch`` is imported inside the functions that need it, so the typing is a plain function.
"""
from __future__ import annotations

from typing import Any

import yaml

TEXT, INTEGER, NUMBER, FLAG, LIST, NUMBER_OR_AUTO = "text", "integer", "number", "flag", "list", "number_or_auto"

# parameter -> kind, as each node declares them (test/ros/test_launch.py checks them against the sources)
PERCEPTION_NODE = {
    "checkpoint": TEXT, "model_config": TEXT, "device": TEXT, "dtype": TEXT, "torch_threads": INTEGER,
    "keep_freed_memory": FLAG, "class_names": LIST,
    "max_points": INTEGER,
    "use_rgb": FLAG, "use_intensity": FLAG, "use_normals": FLAG, "intensity_scale": NUMBER_OR_AUTO,
    "max_range": NUMBER_OR_AUTO, "max_cloud_points": INTEGER, "expert_layer": TEXT, "output_frame": TEXT,
}
CLOUD_PUBLISHER = {"source": TEXT, "frame_id": TEXT, "rate_hz": NUMBER, "count": INTEGER}
PLANNER_NODE = {"planner": TEXT, "checkpoint": TEXT, "device": TEXT, "llm_dtype": TEXT, "cuda_graphs": FLAG,
                "torch_threads": INTEGER, "sampling_steps": INTEGER, "snap_radius": NUMBER}
SIM_BRIDGE_NODE = {"task": TEXT, "seed": INTEGER, "rate_hz": NUMBER, "image_size": LIST, "frame_id": TEXT,
                   "use_oracle": FLAG, "env_factory": TEXT, "lohoravens_root": TEXT, "lohoravens_mode": TEXT,
                   "auto_reset_s": NUMBER}
DESCRIPTION = "empty: as in the parameters file"


def typed(value: str, kind: str) -> Any:
    """A launch argument's text as the parameter's type; ValueError names what did not fit."""
    if kind == TEXT:
        return value
    parsed = yaml.safe_load(value)
    if kind == NUMBER_OR_AUTO:
        ok = parsed == "auto" or (isinstance(parsed, (int, float)) and not isinstance(parsed, bool))
    elif kind == FLAG:
        ok = isinstance(parsed, bool)
    elif kind == INTEGER:
        ok = isinstance(parsed, int) and not isinstance(parsed, bool)
    elif kind == NUMBER:
        ok = isinstance(parsed, (int, float)) and not isinstance(parsed, bool)
        parsed = float(parsed) if ok else parsed  # rclpy refuses an integer for a double parameter
    else:
        ok = isinstance(parsed, list)
    if not ok:
        raise ValueError(f"{value!r} is not a valid {kind.replace('_', ' ')}")
    return parsed


def overrides(given: dict[str, str], parameters: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """Parameter values from the launch arguments ``prefix + name`` that were given (non-empty)."""
    out = {}
    for name, kind in parameters.items():
        value = given.get(prefix + name, "")
        if value != "":
            try:
                out[name] = typed(value, kind)
            except ValueError as error:
                raise ValueError(f"launch argument {prefix + name}: {error}") from None
    return out


def declare(parameters: dict[str, str], prefix: str = "", skip: tuple[str, ...] = ()) -> list:
    """A launch argument, empty by default, for each parameter."""
    from launch.actions import DeclareLaunchArgument

    return [DeclareLaunchArgument(prefix + name, default_value="", description=f"{kind}; {DESCRIPTION}")
            for name, kind in parameters.items() if prefix + name not in skip]


def rviz(context, rviz_config: str) -> list:
    """RViz with ``rviz_config`` when ``rviz:=true`` and RViz is installed; a warning when it is not."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    from launch.actions import LogInfo
    from launch_ros.actions import Node

    if not typed(context.launch_configurations.get("rviz", "false"), FLAG):
        return []
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return [LogInfo(msg="WARNING: rviz:=true but RViz (package rviz2) is not installed: starting without it")]
    return [Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config])]
