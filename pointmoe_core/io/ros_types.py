"""This package's own messages (``msg/*.msg``) for rosbags, so bags can carry them without ROS."""
from __future__ import annotations

import functools
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "pointmoe_ros"


def message_dir() -> Path:
    """msg/ of the source tree (also reached through colcon's --symlink-install), else the install share."""
    source = Path(__file__).resolve().parents[2] / "msg"
    if source.is_dir():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "msg"
    except (ImportError, LookupError) as error:
        raise FileNotFoundError(f"cannot find the {PACKAGE} message definitions (msg/*.msg): {error}") from None


@functools.cache
def pointmoe_typestore() -> Typestore:
    """The Jazzy types plus ``pointmoe_ros/msg/*``."""
    typestore = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(message_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    typestore.register(types)
    return typestore
