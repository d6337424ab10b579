"""launch/sim.launch.py, as installed: statically where `launch_ros` is absent, fully where it imports;
and the RViz configs the launch files open, against the topics our nodes publish."""
import ast
import importlib.util
import os
import re
from pathlib import Path

NODE_SOURCES = Path(__file__).resolve().parents[2] / "pointmoe_ros"
# create_publisher(MsgType, "topic", qos) and create_lifecycle_publisher(...), as our nodes write them
PUBLISHER = re.compile(r'create_(?:lifecycle_)?publisher\(\s*(\w+),\s*"([^"]+)",\s*(\w+)')


def _node_calls(source: str) -> list[ast.Call]:
    return [call for call in ast.walk(ast.parse(source))
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node"]


def _published_topics(launch_source: str) -> dict[str, tuple[str, str]]:
    """Topic -> (message type, QoS name) of every publisher of the pointmoe_ros nodes a launch file
    starts, read from the nodes' sources, with the node's name and the launch file's constant
    remappings applied."""
    topics = {}
    for call in _node_calls(launch_source):
        kwargs = {kw.arg: kw.value for kw in call.keywords}
        if kwargs["package"].value != "pointmoe_ros":
            continue
        name = kwargs["name"].value
        remappings = {pair.elts[0].value: pair.elts[1].value for pair in getattr(kwargs.get("remappings"), "elts", ())
                      if all(isinstance(part, ast.Constant) for part in pair.elts)}
        source = (NODE_SOURCES / f"{kwargs['executable'].value}.py").read_text()
        for msg_type, topic, qos in PUBLISHER.findall(source):
            topic = remappings.get(topic, topic)
            topics[f"/{name}/{topic[2:]}" if topic.startswith("~/") else topic] = (msg_type.removesuffix("Msg"), qos)
    return topics


def test_rviz_configs_show_topics_our_launched_nodes_publish(ros_install):
    """Every rviz file a launch file opens is installed, and each display of it shows a topic that a
    node started by one of our launch files publishes, with the display's message type, and
    subscribes best-effort where the publisher is best-effort (a reliable subscriber gets nothing)."""
    import yaml

    share = ros_install / "share" / "pointmoe_ros"
    launch_sources = [path.read_text() for path in sorted((share / "launch").glob("*.launch.py"))]
    assert len(launch_sources) >= 2
    rviz_files = {name for source in launch_sources for name in re.findall(r'"([\w.-]+\.rviz)"', source)}
    assert {"pointmoe.rviz", "pointmoe_sim.rviz"} <= rviz_files
    published = {topic: kind for source in launch_sources for topic, kind in _published_topics(source).items()}
    for rviz_file in sorted(rviz_files):
        assert (share / "config" / rviz_file).is_file(), f"{rviz_file} is not installed"
        displays = yaml.safe_load((share / "config" / rviz_file).read_text())["Visualization Manager"]["Displays"]
        shown = [display for display in displays if "Topic" in display]
        assert len(shown) >= 4, rviz_file
        for display in shown:
            topic, where = display["Topic"]["Value"], f"{rviz_file}: {display['Name']!r}"
            assert topic in published, f"{where} shows {topic}, which none of our nodes publishes"
            msg_type, qos = published[topic]
            assert display["Class"] == f"rviz_default_plugins/{msg_type}", f"{where}: {topic} carries {msg_type}"
            if qos == "qos_profile_sensor_data":
                assert display["Topic"]["Reliability Policy"] == "Best Effort", f"{where}: {topic} is best effort"
    sim_rviz = yaml.safe_load((share / "config" / "pointmoe_sim.rviz").read_text())
    sim_topics = {display["Topic"]["Value"] for display in sim_rviz["Visualization Manager"]["Displays"]
                  if "Topic" in display}
    sim_launch = next(source for source in launch_sources if '"pointmoe_sim.rviz"' in source)
    assert sim_topics <= set(_published_topics(sim_launch))  # the sim view needs nothing from elsewhere
    assert {"/sim_bridge_node/output/points", "/perception_node/output/segmented", "/perception_node/output/experts",
            "/planner_node/output/markers", "/planner_node/output/poses"} <= sim_topics


def test_sim_launch_names_installed_executables_and_files(ros_install):
    share = ros_install / "share" / "pointmoe_ros"
    launch_file = share / "launch" / "sim.launch.py"
    source = launch_file.read_text()
    nodes = _node_calls(source)
    executables = set()
    for call in nodes:
        kwargs = {kw.arg: kw.value.value for kw in call.keywords if isinstance(kw.value, ast.Constant)}
        if kwargs["package"] == "pointmoe_ros":  # rviz2 comes from the user's ROS install
            executables.add(kwargs["executable"])
            assert os.access(ros_install / "lib" / kwargs["package"] / kwargs["executable"], os.X_OK)
    assert executables == {"sim_bridge_node", "perception_node", "planner_node"}
    for name in ("sim.yaml", "perception.yaml", "pointmoe_sim.rviz"):
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
