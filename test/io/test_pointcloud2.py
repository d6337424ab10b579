"""PointCloud2 codec: random layouts against an independent encoder, real scans, rclpy messages."""
import array
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointmoe_core.io import (
    ATTRIBUTES,
    CloudFormatError,
    PointCloud,
    cloud_from_msg,
    convert_cloud_msg,
    jazzy_typestore,
    msg_from_cloud,
    read_kitti_bin,
)

NUMPY_TYPE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)


# ------------------------------------------------------------------------------------------
# An independent encoder: any layout a driver might publish, as a duck-typed message
# ------------------------------------------------------------------------------------------


def encode(columns, *, height, width, order, gaps, point_pad, row_pad, as_array):
    """columns: list of (name, datatype, count, values (N, count)); gaps: bytes before each field.

    Fields sharing a name prefix "@" are placed back to back (e.g. x, y, z as one float32 block).
    """
    offsets, offset = [], 0
    for (name, datatype, count, _), gap in zip(columns, gaps):
        offset += 0 if name.startswith("@") else gap
        offsets.append(offset)
        offset += np.dtype(NUMPY_TYPE[datatype]).itemsize * count
    point_step = offset + point_pad
    names = [name.lstrip("@") for name, *_ in columns]
    # rgb bits are written as uint32 whatever the declared type, so no float conversion touches them
    formats = [
        (order + ("u4" if name in ("rgb", "rgba") else NUMPY_TYPE[datatype]), (count,))
        for name, datatype, count, _ in columns
    ]
    records = np.zeros(height * width, np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step}))
    for name, (_, _, _, values) in zip(names, columns):
        records[name] = values
    row_step = width * point_step + row_pad
    rows = np.zeros((height, row_step), np.uint8)
    rows[:, : width * point_step] = records.view(np.uint8).reshape(height, width * point_step)
    data = array.array("B", rows.tobytes()) if as_array else rows.reshape(-1)
    fields = [SimpleNamespace(name=n, offset=o, datatype=c[1], count=c[2])
              for n, o, c in zip(names, offsets, columns)]
    return SimpleNamespace(height=height, width=width, fields=fields, is_bigendian=order == ">",
                           point_step=point_step, row_step=row_step, data=data, is_dense=False)


def random_values(rng, datatype, shape):
    dtype = np.dtype(NUMPY_TYPE[datatype])
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@st.composite
def random_messages(draw):
    """A random message and the arrays `cloud_from_msg(..., drop_invalid=False)` must return."""
    height, width = draw(st.integers(1, 4)), draw(st.integers(0, 6))
    n = height * width
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    columns, expected = [], {}

    def add(name, datatype, count=1, values=None):
        values = random_values(rng, datatype, (n, count)) if values is None else values
        columns.append((name, datatype, count, values))
        return values[:, 0]  # readers take a multi-count field's first element

    if draw(st.booleans()):  # x, y, z as consecutive float32
        xyz = [add(axis, FLOAT32) for axis in ("x", "@y", "@z")]
    else:
        xyz = [add(axis, draw(st.sampled_from(list(NUMPY_TYPE))), draw(st.integers(1, 2))) for axis in "xyz"]
    invalid = rng.random(n) < 0.3
    for axis, values in zip("xyz", xyz):
        if values.dtype.kind == "f":
            values[invalid & (rng.random(n) < 0.5)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    expected["xyz"] = np.stack(xyz, axis=1).astype(np.float32)

    if draw(st.booleans()):
        source = draw(st.sampled_from(["intensity", "remission", "i"]))
        expected["intensity"] = add(source, draw(st.sampled_from(list(NUMPY_TYPE))),
                                    draw(st.integers(1, 2))).astype(np.float32)
    if draw(st.booleans()):
        # any 32 bits, declared FLOAT32 or UINT32 (the encoder writes them untouched)
        packed = add(draw(st.sampled_from(["rgb", "rgba"])), draw(st.sampled_from([FLOAT32, UINT32])),
                     values=rng.integers(0, 2**32, size=(n, 1), dtype=np.uint32))
        expected["rgb"] = np.stack([(packed >> s) & 0xFF for s in (16, 8, 0)], axis=1).astype(np.uint8)
    if draw(st.booleans()):
        normals = [add(name, draw(st.sampled_from([FLOAT32, FLOAT64])))
                   for name in ("normal_x", "normal_y", "normal_z")]
        expected["normals"] = np.stack(normals, axis=1).astype(np.float32)
    if draw(st.booleans()):
        expected["score"] = add("score", draw(st.sampled_from([FLOAT32, FLOAT64]))).astype(np.float32)
    for name in ("label", "ring"):
        if draw(st.booleans()):
            expected[name] = add(name, draw(st.sampled_from([INT8, UINT8, INT16, UINT16, INT32, UINT32])))
    if draw(st.booleans()):
        add("descriptor", draw(st.sampled_from(list(NUMPY_TYPE))), draw(st.integers(1, 5)))

    # Shuffle whole blocks: "@"-prefixed fields stay glued to the field before them.
    blocks = []
    for column in columns:
        if column[0].startswith("@"):
            blocks[-1].append(column)
        else:
            blocks.append([column])
    order = draw(st.permutations(range(len(blocks))))
    columns = [column for i in order for column in blocks[i]]
    msg = encode(
        columns, height=height, width=width,
        order=draw(st.sampled_from("<>")),
        gaps=draw(st.lists(st.integers(0, 3), min_size=len(columns), max_size=len(columns))),
        point_pad=draw(st.integers(0, 9)), row_pad=draw(st.integers(0, 17)),
        as_array=draw(st.booleans()),
    )
    return msg, expected


@settings(max_examples=300, deadline=None)
@given(random_messages())
def test_random_layouts_decode_to_what_was_encoded(case):
    msg, expected = case
    cloud = cloud_from_msg(msg, drop_invalid=False)
    assert len(cloud) == msg.height * msg.width
    np.testing.assert_array_equal(cloud.xyz, expected["xyz"])
    assert cloud.xyz.flags.c_contiguous and cloud.xyz.dtype == np.float32
    for name in ATTRIBUTES:
        if name in expected:
            np.testing.assert_array_equal(getattr(cloud, name), expected[name], err_msg=name)
            assert getattr(cloud, name).dtype == expected[name].dtype.newbyteorder("=")
        else:
            assert getattr(cloud, name) is None, name

    kept_cloud, kept = cloud_from_msg(msg, return_indices=True)
    np.testing.assert_array_equal(kept, np.flatnonzero(np.isfinite(expected["xyz"]).all(axis=1)))
    np.testing.assert_array_equal(kept_cloud.xyz, expected["xyz"][kept])
    for name in expected:
        np.testing.assert_array_equal(getattr(kept_cloud, name), expected[name][kept], err_msg=name)


def random_cloud(rng, n, attributes):
    values = {
        "xyz": rng.standard_normal((n, 3)).astype(np.float32),
        "rgb": rng.integers(0, 256, (n, 3), dtype=np.uint8),
        "intensity": rng.random(n, dtype=np.float32),
        "normals": rng.standard_normal((n, 3)).astype(np.float32),
        "score": rng.random(n, dtype=np.float32),
        "label": rng.integers(-5, 300, n).astype(np.int32),
        "ring": rng.integers(0, 64, n).astype(np.uint16),
    }
    return PointCloud(**{k: v for k, v in values.items() if k == "xyz" or k in attributes})


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 50), st.sets(st.sampled_from(ATTRIBUTES)), st.integers(0, 2**32 - 1))
def test_msg_from_cloud_round_trip(n, attributes, seed):
    cloud = random_cloud(np.random.default_rng(seed), n, attributes)
    msg = msg_from_cloud(cloud, msg_class="rosbags")
    assert (msg.height, msg.width, msg.row_step) == (1, n, n * msg.point_step)
    assert msg.point_step % 4 == 0  # aligned fields
    back = cloud_from_msg(msg)
    for name in ("xyz", *ATTRIBUTES):
        if getattr(cloud, name) is None:
            assert getattr(back, name) is None
        else:
            np.testing.assert_array_equal(getattr(back, name), getattr(cloud, name), err_msg=name)


def test_rviz_field_types():
    cloud = random_cloud(np.random.default_rng(0), 4, ("rgb", "label", "score"))
    msg = msg_from_cloud(cloud, msg_class="rosbags", fields=("rgb", "label", "score"))
    types = {f.name: f.datatype for f in msg.fields}
    assert types == {"x": FLOAT32, "y": FLOAT32, "z": FLOAT32,
                     "rgb": FLOAT32, "label": INT32, "score": FLOAT32}
    # RViz reads rgb as the float32 whose bits are 0x00RRGGBB
    rgb_offset = next(f.offset for f in msg.fields if f.name == "rgb")
    points = np.asarray(msg.data).reshape(4, msg.point_step)
    bits = points[:, rgb_offset:rgb_offset + 4].copy().view("<u4")[:, 0]
    r, g, b = cloud.rgb.astype(np.uint32).T
    np.testing.assert_array_equal(bits, (r << 16) | (g << 8) | b)


def test_rgb_reads_packed_float32_and_uint32_alike():
    xyz = np.zeros((1, 3), np.float32)
    packed = np.array([0x00FF8001], np.uint32)
    for datatype in (FLOAT32, UINT32):
        columns = [(axis, FLOAT32, 1, xyz[:, i:i + 1]) for i, axis in enumerate("xyz")]
        msg = encode(columns + [("rgb", datatype, 1, packed[:, None])], height=1, width=1, order="<",
                     gaps=[0] * 4, point_pad=0, row_pad=0, as_array=False)
        np.testing.assert_array_equal(cloud_from_msg(msg).rgb, [[255, 128, 1]])


def test_labels_of_64_bits_are_narrowed_or_refused():
    xyz = np.zeros((2, 3), np.float32)
    msg = msg_from_cloud(PointCloud(xyz=xyz, label=np.array([0, 7], np.int64)), msg_class="rosbags")
    assert [f.datatype for f in msg.fields if f.name == "label"] == [INT32]
    np.testing.assert_array_equal(cloud_from_msg(msg).label, [0, 7])
    with pytest.raises(ValueError, match="no 64-bit label"):
        msg_from_cloud(PointCloud(xyz=xyz, label=np.array([0, 2**40])), msg_class="rosbags")


def test_headers():
    cloud = PointCloud(xyz=np.zeros((1, 3)))
    default = msg_from_cloud(cloud, msg_class="rosbags").header
    assert (default.frame_id, default.stamp.sec, default.stamp.nanosec) == ("map", 0, 0)
    tupled = msg_from_cloud(cloud, ("lidar", 12.25), msg_class="rosbags").header
    assert (tupled.frame_id, tupled.stamp.sec, tupled.stamp.nanosec) == ("lidar", 12, 250_000_000)
    copied = msg_from_cloud(cloud, tupled, msg_class="rosbags").header
    assert (copied.frame_id, copied.stamp.sec, copied.stamp.nanosec) == ("lidar", 12, 250_000_000)


def test_fields_selects_attributes():
    cloud = random_cloud(np.random.default_rng(1), 5, ATTRIBUTES)
    msg = msg_from_cloud(cloud, msg_class="rosbags")
    only_xyz = cloud_from_msg(msg, fields=())
    assert only_xyz.attributes() == ()
    assert cloud_from_msg(msg, fields=["ring"]).attributes() == ("ring",)
    with pytest.raises(ValueError, match="unknown attribute"):
        cloud_from_msg(msg, fields=["colour"])
    with pytest.raises(CloudFormatError, match="'rgb' was requested"):
        cloud_from_msg(msg_from_cloud(cloud, fields=(), msg_class="rosbags"), fields=["rgb"])
    with pytest.raises(ValueError, match="cannot write"):
        msg_from_cloud(PointCloud(xyz=cloud.xyz), fields=["rgb"], msg_class="rosbags")


def test_point_cloud_validates_shapes_and_types():
    assert len(PointCloud(xyz=np.zeros((4, 3)))) == 4
    assert PointCloud(xyz=np.zeros((4, 3))).xyz.dtype == np.float32
    with pytest.raises(ValueError, match="xyz must have shape"):
        PointCloud(xyz=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="intensity must have shape"):
        PointCloud(xyz=np.zeros((4, 3)), intensity=np.zeros(3))
    with pytest.raises(TypeError, match="rgb must be uint8"):
        PointCloud(xyz=np.zeros((4, 3)), rgb=np.zeros((4, 3)))
    with pytest.raises(TypeError, match="label must be an integer"):
        PointCloud(xyz=np.zeros((4, 3)), label=np.zeros(4))


# ------------------------------------------------------------------------------------------
# Every CloudFormatError
# ------------------------------------------------------------------------------------------


def valid_msg(**changes):
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    msg = encode([(axis, FLOAT32, 1, xyz[:, i:i + 1]) for i, axis in enumerate("xyz")], height=2, width=2,
                 order="<", gaps=[0, 0, 0], point_pad=4, row_pad=0, as_array=False)
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def test_valid_msg_decodes():
    np.testing.assert_array_equal(cloud_from_msg(valid_msg()).xyz, np.arange(12).reshape(4, 3))


def test_error_missing_xyz():
    msg = valid_msg()
    msg.fields = msg.fields[:2]
    with pytest.raises(CloudFormatError, match=r"missing coordinate field\(s\) \['z'\]"):
        cloud_from_msg(msg)


def test_error_field_beyond_point_step():
    msg = valid_msg()
    msg.fields[2].offset = 14
    with pytest.raises(CloudFormatError, match="field 'z' .* extends beyond point_step 16"):
        cloud_from_msg(msg)


def test_error_count_beyond_point_step():
    msg = valid_msg()
    msg.fields[2].count = 3
    with pytest.raises(CloudFormatError, match="field 'z' .*3 x 4 bytes.* beyond point_step"):
        cloud_from_msg(msg)


def test_error_data_length():
    msg = valid_msg()
    msg.data = msg.data[:-1]
    with pytest.raises(CloudFormatError, match="data length 63 does not match height \\* row_step"):
        cloud_from_msg(msg)


def test_error_row_step_too_small():
    with pytest.raises(CloudFormatError, match="row_step 16 is smaller than width \\* point_step"):
        cloud_from_msg(valid_msg(row_step=16))


def test_error_unknown_datatype():
    msg = valid_msg()
    msg.fields[1].datatype = 9
    with pytest.raises(CloudFormatError, match="field 'y' has unknown datatype 9"):
        cloud_from_msg(msg)


def test_error_rgb_not_four_bytes():
    msg = valid_msg()
    msg.fields.append(SimpleNamespace(name="rgb", offset=12, datatype=UINT8, count=1))
    with pytest.raises(CloudFormatError, match="'rgb' must have a 4-byte datatype"):
        cloud_from_msg(msg)


def test_errors_are_value_errors():
    assert issubclass(CloudFormatError, ValueError)


# ------------------------------------------------------------------------------------------
# Organized clouds, real scans, CDR and rclpy messages
# ------------------------------------------------------------------------------------------


def test_organized_cloud_keeps_its_grid():
    xyz = np.arange(18, dtype=np.float32).reshape(6, 3)
    xyz[4] = np.nan
    msg = msg_from_cloud(PointCloud(xyz=xyz), msg_class="rosbags", organized_shape=(2, 3))
    assert (msg.height, msg.width, msg.is_dense) == (2, 3, False)
    np.testing.assert_array_equal(cloud_from_msg(msg, drop_invalid=False).xyz, xyz)
    cloud, kept = cloud_from_msg(msg, return_indices=True)
    np.testing.assert_array_equal(kept, [0, 1, 2, 3, 5])
    with pytest.raises(ValueError, match="does not hold 6 points"):
        msg_from_cloud(PointCloud(xyz=xyz), msg_class="rosbags", organized_shape=(4, 2))


def test_semantickitti_scan_through_cdr_is_bit_exact(shared_data):
    scan = read_kitti_bin(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")
    assert len(scan) > 100_000
    msg = msg_from_cloud(scan, ("velodyne", 1.5), msg_class="rosbags")
    store = jazzy_typestore()
    raw = store.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2")
    back = cloud_from_msg(store.deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2"), drop_invalid=False)
    np.testing.assert_array_equal(back.xyz.view(np.uint32), scan.xyz.view(np.uint32))
    np.testing.assert_array_equal(back.intensity.view(np.uint32), scan.intensity.view(np.uint32))


def test_rclpy_messages():
    sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="needs the ROS 2 Jazzy wheels (sensor_msgs)")
    cloud = random_cloud(np.random.default_rng(2), 100, ATTRIBUTES)
    msg = msg_from_cloud(cloud, ("camera", 3.0), msg_class=sensor_msgs.PointCloud2)
    assert isinstance(msg, sensor_msgs.PointCloud2) and isinstance(msg.data, array.array)
    assert type(msg_from_cloud(cloud, msg_class="ros")) is sensor_msgs.PointCloud2
    back = cloud_from_msg(msg)
    for name in ("xyz", *ATTRIBUTES):
        np.testing.assert_array_equal(getattr(back, name), getattr(cloud, name), err_msg=name)

    as_rosbags = convert_cloud_msg(msg, "rosbags")
    assert as_rosbags.__msgtype__ == "sensor_msgs/msg/PointCloud2"
    assert bytes(as_rosbags.data) == bytes(msg.data) and as_rosbags.header.frame_id == "camera"
    as_rclpy = convert_cloud_msg(as_rosbags, "ros")
    assert as_rclpy == msg  # rclpy messages compare field by field

    # A message as an rclpy driver fills it by hand: big-endian, x y z at offsets 8, 4, 0.
    fields = [sensor_msgs.PointField(name=n, offset=o, datatype=FLOAT32, count=1)
              for n, o in (("x", 8), ("y", 4), ("z", 0))]
    data = array.array("B", np.array([[3, 2, 1]], ">f4").tobytes())
    by_hand = sensor_msgs.PointCloud2(height=1, width=1, fields=fields, is_bigendian=True, point_step=12,
                                      row_step=12, data=data, is_dense=True)
    np.testing.assert_array_equal(cloud_from_msg(by_hand).xyz, [[1, 2, 3]])


def test_codec_never_imports_rclpy():
    code = ("import sys, numpy as np\n"
            "from pointmoe_core.io import PointCloud, msg_from_cloud, cloud_from_msg\n"
            "cloud_from_msg(msg_from_cloud(PointCloud(xyz=np.zeros((2, 3)))))\n"
            "assert 'rclpy' not in sys.modules, 'rclpy was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
