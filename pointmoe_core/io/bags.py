"""rosbag2 recording and playback without ROS, through the pure-Python `rosbags` package.

Messages are rosbags messages (`jazzy_typestore().types[...]`); turn rclpy PointCloud2 messages
into them with `convert_cloud_msg(msg, "rosbags")`.
"""
from __future__ import annotations

import functools
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Iterator

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore


def new_bag_path(out: Path, name: str) -> Path:
    """``out/name`` for a new rosbag2, removing the last run's: rosbag2 writers refuse an existing folder."""
    out.mkdir(parents=True, exist_ok=True)
    bag_path = out / name
    if bag_path.exists():
        shutil.rmtree(bag_path)
    return bag_path


@functools.cache
def jazzy_typestore() -> Typestore:
    """The ROS 2 Jazzy message types (shared: a typestore is slow to build)."""
    return get_typestore(Stores.ROS2_JAZZY)


class BagWriter:
    """Write rosbags messages to a new rosbag2 folder; one connection per topic, added on first use.

    >>> with BagWriter("out_bag") as bag:
    ...     bag.write("/points", msg, t_ns)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        storage: StoragePlugin = StoragePlugin.SQLITE3,
        typestore: Typestore | None = None,
    ) -> None:
        self.typestore = typestore or jazzy_typestore()
        # rosbags refuses an existing folder and needs the bag format version spelled out.
        self._writer = Writer(Path(path), version=9, storage_plugin=storage)
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, t_ns: int) -> None:
        """Serialize `msg` (a rosbags message) to CDR and record it on `topic` at time `t_ns`."""
        msgtype = getattr(msg, "__msgtype__", None)
        if msgtype is None:
            raise TypeError(
                f"{type(msg).__name__} is not a rosbags message; for an rclpy PointCloud2 use "
                "convert_cloud_msg(msg, 'rosbags')"
            )
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise TypeError(f"topic {topic!r} carries {connection.msgtype}, not {msgtype}")
        self._writer.write(connection, int(t_ns), self.typestore.serialize_cdr(msg, msgtype))


def write_bag(
    path: str | Path,
    records: Iterable[tuple[str, int, Any]],
    *,
    storage: StoragePlugin = StoragePlugin.SQLITE3,
) -> None:
    """Write (topic, t_ns, rosbags message) records to a new rosbag2 folder."""
    with BagWriter(path, storage=storage) as bag:
        for topic, t_ns, msg in records:
            bag.write(topic, msg, t_ns)


def read_bag(
    path: str | Path,
    topics: Iterable[str] | None = None,
    *,
    typestore: Typestore | None = None,
) -> Iterator[tuple[str, int, Any]]:
    """Yield (topic, t_ns, rosbags message) from a rosbag2 folder in time order.

    Message types missing from the typestore (e.g. this package's own messages) are registered
    from the definitions the bag stores, on a copy of the Jazzy typestore.
    """
    typestore = typestore or jazzy_typestore()
    wanted = None if topics is None else set(topics)
    with Reader(Path(path)) as reader:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        unknown = {c.msgtype: c.msgdef for c in connections if c.msgtype not in typestore.types}
        if unknown:
            typestore = get_typestore(Stores.ROS2_JAZZY)
            for msgtype, msgdef in unknown.items():
                is_idl = msgdef.format == MessageDefinitionFormat.IDL
                typestore.register(
                    get_types_from_idl(msgdef.data) if is_idl else get_types_from_msg(msgdef.data, msgtype)
                )
        for connection, t_ns, raw in reader.messages(connections=connections):
            yield connection.topic, t_ns, typestore.deserialize_cdr(raw, connection.msgtype)
