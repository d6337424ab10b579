"""segment_message with what a sensor or a hostile sender can publish: every failure is a reason in the
summary, never an exception; range limits by sensor kind; oversized clouds refused before decoding."""
import numpy as np
import pytest

from pointmoe_core.io import PointCloud, msg_from_cloud
from pointmoe_core.seg.perception import CAMERA_MAX_RANGE_M, LIDAR_MAX_RANGE_M, InputMapping, segment_message


@pytest.fixture(scope="module")
def segmenter():
    from pointmoe_core.seg.segmenter import Segmenter

    return Segmenter.from_config("tiny")


def _room(points: int = 800) -> PointCloud:
    rng = np.random.default_rng(0)
    return PointCloud(xyz=rng.uniform(0, 3, (points, 3)).astype(np.float32),
                      rgb=rng.integers(0, 256, (points, 3), dtype=np.uint8))


def test_the_range_limit_follows_the_sensor_kind(segmenter):
    camera, lidar = _room(), _room()
    lidar.intensity = np.ones(len(lidar), np.float32)
    assert (InputMapping().range_for(camera) == CAMERA_MAX_RANGE_M
            and InputMapping().range_for(lidar) == LIDAR_MAX_RANGE_M)
    assert InputMapping(max_range=80).range_for(lidar) == 80.0
    camera.xyz[0] = [CAMERA_MAX_RANGE_M + 10, 0, 0]  # beyond a camera's range, within a LiDAR's
    lidar.xyz[0] = camera.xyz[0]
    seen = segment_message(msg_from_cloud(camera, msg_class="rosbags"), segmenter).summary
    kept = segment_message(msg_from_cloud(lidar, msg_class="rosbags"), segmenter).summary
    assert seen.points_dropped == 1 and any("max_range=50 m" in w for w in seen.warnings)
    assert kept.points_dropped == 0


def test_an_oversized_cloud_is_refused_before_decoding(segmenter):
    msg = msg_from_cloud(_room(), msg_class="rosbags")
    msg.data = msg.data[:10]  # would be a format error, were it decoded
    summary = segment_message(msg, segmenter, InputMapping(max_cloud_points=100)).summary
    assert summary.warnings == ["cloud of 800 points > max_cloud_points=100: not segmented"]
    assert summary.points_in == summary.points_dropped == 800


def test_a_failure_inside_segmentation_is_a_reason(segmenter):
    cloud = _room()
    cloud.xyz[0] = [9e7, 0, 0]  # wider than the serialization orders, with the range limit off
    result = segment_message(msg_from_cloud(cloud, msg_class="rosbags"), segmenter, InputMapping(max_range=1e9))
    assert result.segmented is None and result.summary.points_dropped == len(cloud)
    assert result.summary.warnings[0].startswith("cannot segment this cloud: ValueError: the cloud spans")


@pytest.mark.parametrize("field, value", [("max_range", -1.0), ("max_range", "near"), ("intensity_scale", 0),
                                          ("max_cloud_points", 0)])
def test_bad_mappings_are_refused(field, value):
    with pytest.raises(ValueError):
        InputMapping(**{field: value})
