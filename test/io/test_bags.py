"""rosbag2 write/read round trips through rosbags."""
import numpy as np
import pytest
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from pointmoe_core.io import (
    BagWriter,
    PointCloud,
    cloud_from_msg,
    convert_cloud_msg,
    jazzy_typestore,
    msg_from_cloud,
    read_bag,
    write_bag,
)


def clouds(count):
    rng = np.random.default_rng(0)
    return [PointCloud(xyz=rng.standard_normal((n, 3)), label=rng.integers(0, 20, n).astype(np.uint32))
            for n in range(50, 50 + count)]


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_clouds_and_strings_round_trip(tmp_path, storage):
    String = jazzy_typestore().types["std_msgs/msg/String"]
    originals = clouds(3)
    records = [("/points", 1_000 * (i + 1), msg_from_cloud(c, ("lidar", i), msg_class="rosbags"))
               for i, c in enumerate(originals)]
    records.append(("/instruction", 1_500, String(data="stack the red block")))
    write_bag(tmp_path / "bag", records, storage=storage)

    read = list(read_bag(tmp_path / "bag"))  # in time order, not in write order
    assert [(topic, t) for topic, t, _ in read] == [
        ("/points", 1_000), ("/instruction", 1_500), ("/points", 2_000), ("/points", 3_000)]
    points = list(read_bag(tmp_path / "bag", topics=["/points"]))
    assert len(points) == 3
    for (_, t, msg), original in zip(points, originals):
        assert msg.header.frame_id == "lidar" and msg.header.stamp.sec == t // 1_000 - 1
        back = cloud_from_msg(msg)
        np.testing.assert_array_equal(back.xyz, original.xyz)
        np.testing.assert_array_equal(back.label, original.label)
    assert [m.data for _, _, m in read_bag(tmp_path / "bag", topics=iter(["/instruction"]))] == [
        "stack the red block"]


def test_bag_folder_must_be_new(tmp_path):
    (tmp_path / "bag").mkdir()
    with pytest.raises(Exception, match="exists"):
        write_bag(tmp_path / "bag", [])


def test_one_type_per_topic(tmp_path):
    String = jazzy_typestore().types["std_msgs/msg/String"]
    with BagWriter(tmp_path / "bag") as bag:
        bag.write("/points", msg_from_cloud(clouds(1)[0], msg_class="rosbags"), 1)
        with pytest.raises(TypeError, match="carries sensor_msgs/msg/PointCloud2"):
            bag.write("/points", String(data="no"), 2)
    assert len(list(read_bag(tmp_path / "bag"))) == 1


def test_custom_message_types_are_read_back_from_the_bag(tmp_path):
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg("string name\nuint32 id\nfloat64[] scores", "pointmoe_test/msg/Tag"))
    Tag = store.types["pointmoe_test/msg/Tag"]
    with BagWriter(tmp_path / "bag", typestore=store) as bag:
        bag.write("/tags", Tag(name="bowl", id=7, scores=np.array([0.5, 0.25])), 42)
    [(topic, t, tag)] = read_bag(tmp_path / "bag")  # the default Jazzy store lacks Tag
    assert (topic, t, tag.name, tag.id) == ("/tags", 42, "bowl", 7)
    np.testing.assert_array_equal(tag.scores, [0.5, 0.25])


def test_rclpy_clouds_are_converted_for_bags(tmp_path):
    sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="needs the ROS 2 Jazzy wheels (sensor_msgs)")
    cloud = clouds(1)[0]
    ros_msg = msg_from_cloud(cloud, msg_class=sensor_msgs.PointCloud2)
    with BagWriter(tmp_path / "bag") as bag:
        with pytest.raises(TypeError, match="convert_cloud_msg"):
            bag.write("/points", ros_msg, 1)
        bag.write("/points", convert_cloud_msg(ros_msg, "rosbags"), 1)
    [(_, _, msg)] = read_bag(tmp_path / "bag")
    assert convert_cloud_msg(msg, "ros") == ros_msg
    np.testing.assert_array_equal(cloud_from_msg(msg).xyz, cloud.xyz)
