"""launch/sim.launch.py, as installed: statically where `launch_ros` is absent, fully where it imports."""
import ast
import importlib.util
import os
from pathlib import Path

NODE_SOURCES = Path(__file__).resolve().parents[2] / "pointmoe_ros"


def test_sim_launch_names_installed_executables_and_files(ros_install):
    share = ros_install / "share" / "pointmoe_ros"
    launch_file = share / "launch" / "sim.launch.py"
    source = launch_file.read_text()
    nodes = [call for call in ast.walk(ast.parse(source))
             if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node"]
    executables = set()
    for call in nodes:
        kwargs = {kw.arg: kw.value.value for kw in call.keywords if isinstance(kw.value, ast.Constant)}
        if kwargs["package"] == "pointmoe_ros":  # rviz2 comes from the user's ROS install
            executables.add(kwargs["executable"])
            assert os.access(ros_install / "lib" / kwargs["package"] / kwargs["executable"], os.X_OK)
    assert executables == {"sim_bridge_node", "perception_node", "planner_node"}
    for name in ("sim.yaml", "perception.yaml", "pointmoe.rviz"):
        assert name in source and (share / "config" / name).is_file()
    try:
        import launch_ros  # noqa: F401
    except ImportError:
        return
    spec = importlib.util.spec_from_file_location("sim_launch", launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities


def test_sim_config_sets_only_declared_parameters(ros_install):
    """A misspelt key in sim.yaml would be silently ignored by the node: check it against the source."""
    import yaml

    config = yaml.safe_load((ros_install / "share/pointmoe_ros/config/sim.yaml").read_text())
    for node_name, section in config.items():
        node_source = (NODE_SOURCES / f"{node_name}.py").read_text()
        for key in section["ros__parameters"]:
            assert f'declare_parameter("{key}"' in node_source, f"{node_name} declares no parameter {key!r}"
