"""ROS 2 shells around pointmoe_core: nodes, QoS, parameters and message conversion only.

The colcon build installs the generated messages as the subpackage ``pointmoe_ros.msg``
into the same folder as these files. ``extend_path`` keeps ``pointmoe_ros.msg`` importable
when this source folder shadows the installed one (Python started from the repo root, or a
``pip install -e .`` next to a colcon install).
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
