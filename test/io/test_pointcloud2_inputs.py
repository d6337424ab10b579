"""Odd but valid layouts and far-off coordinates in the PointCloud2 codec."""
import numpy as np
import pytest

from pointmoe_core.io import CloudFormatError, PointCloud, cloud_from_msg, msg_from_cloud
from pointmoe_core.io.pointcloud2 import present_attributes, recentre_origin


def _with_field(msg, name: str, datatype: int, count: int = 1):
    field = type(msg.fields[0])(name=name, offset=msg.point_step if count == 0 else 0, datatype=datatype, count=count)
    msg.fields = [*msg.fields, field]
    return msg


def test_a_count_0_field_holds_nothing_and_is_ignored():
    cloud = PointCloud(xyz=np.arange(12, dtype=np.float32).reshape(4, 3))
    msg = _with_field(msg_from_cloud(cloud, msg_class="rosbags"), "padding", 7, count=0)
    np.testing.assert_array_equal(cloud_from_msg(msg).xyz, cloud.xyz)


def test_float_label_and_ring_are_format_errors_only_when_read():
    cloud = PointCloud(xyz=np.zeros((4, 3), np.float32), rgb=np.zeros((4, 3), np.uint8))
    msg = _with_field(msg_from_cloud(cloud, msg_class="rosbags"), "label", 7)  # float32, over x
    with pytest.raises(CloudFormatError, match="field 'label' is float32: label must be an integer field"):
        cloud_from_msg(msg, fields=("label",))
    assert present_attributes(msg, ("rgb", "intensity", "normals")) == ("rgb",)
    assert cloud_from_msg(msg, fields=present_attributes(msg, ("rgb",))).rgb.shape == (4, 3)


def test_far_off_float64_clouds_keep_their_precision():
    utm = np.random.default_rng(0).uniform(-5, 5, (1000, 3)) + [612_345.678, 5_800_000.123, 1_000_000.0]
    offset = np.round(np.median(utm, 0))
    msg = msg_from_cloud(PointCloud(xyz=utm - offset, origin=offset), msg_class="rosbags")
    assert {f.name: f.datatype for f in msg.fields}["x"] == 8  # float64 columns of origin + xyz
    decoded = cloud_from_msg(msg, recentre=True)
    np.testing.assert_array_equal(decoded.origin, offset)
    assert np.all(np.abs(decoded.xyz) < 10)
    np.testing.assert_allclose(decoded.frame_xyz(), utm, atol=1e-5)  # float32 relative to a float64 origin
    assert np.abs(cloud_from_msg(msg).xyz.astype(np.float64) - utm).max() > 0.01  # float32 alone loses cm
    np.testing.assert_array_equal(decoded[:10].origin, offset)  # a selection keeps its origin


def test_recentre_origin_ignores_corrupt_rows_and_near_clouds():
    assert recentre_origin(np.array([[1.0, 2.0, 3.0], [1e38, 0, 0]])) is None
    np.testing.assert_array_equal(recentre_origin(np.array([[6e5 + 0.4, 0, 0], [6e5 + 0.6, 0, 0], [np.nan, 0, 0]])),
                                  [600_000.0, 0.0, 0.0])
