"""perception_node's core: PointCloud2 in, segmented/expert clouds and a SegmentationInfo summary out."""
import numpy as np
import pytest

from pointmoe_core.io import PointCloud, cloud_from_msg, msg_from_cloud, read_kitti_bin
from pointmoe_core.seg.perception import InputMapping, info_fields, scale_intensity, segment_message

EXPERT_LAYER = "dec.dec0.block0.attn.proj"


@pytest.fixture(scope="module")
def segmenter():
    from pointmoe_core.seg.segmenter import Segmenter

    return Segmenter.from_config("tiny")


def test_lidar_scan_gets_one_label_per_valid_point(segmenter, shared_data):
    scan = read_kitti_bin(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")[::8]
    scan.xyz[:5] = np.nan  # a few invalid returns, as a driver with is_dense=False sends
    msg = msg_from_cloud(scan, msg_class="rosbags")
    result = segment_message(msg, segmenter, expert_layer=EXPERT_LAYER)
    summary = result.summary
    assert summary.points_in == len(scan) and summary.points_dropped == 5
    assert len(result.segmented) == len(scan) - 5
    np.testing.assert_array_equal(result.segmented.xyz, scan.xyz[5:])
    assert summary.class_point_counts.sum() == len(result.segmented)
    assert (result.segmented.label >= 0).all() and (result.segmented.label < len(summary.class_names)).all()
    assert np.isfinite(result.segmented.score).all()
    assert len(result.experts) == len(result.segmented)
    assert result.experts.label.max() < segmenter.config.backbone.num_experts

    decoded = cloud_from_msg(msg_from_cloud(result.segmented, msg_class="rosbags"))
    np.testing.assert_array_equal(decoded.label, result.segmented.label)  # RViz-ready round trip


def test_malformed_message_gives_a_reason_not_an_exception(segmenter):
    msg = msg_from_cloud(PointCloud(xyz=np.zeros((10, 3), np.float32)), msg_class="rosbags")
    msg.data = msg.data[:-4]
    result = segment_message(msg, segmenter)
    assert result.segmented is None and result.summary.points_dropped == 10
    assert "data length" in result.summary.warnings[0]


def test_unknown_expert_layer_is_reported(segmenter):
    from pointmoe_core.data.scenes import tabletop_scene

    msg = msg_from_cloud(tabletop_scene(2_000), msg_class="rosbags")
    result = segment_message(msg, segmenter, mapping=InputMapping(use_rgb=False), expert_layer="no.such.layer")
    assert result.experts is None and any("no MoE layer" in w for w in result.summary.warnings)
    fields = info_fields(result.summary)
    assert fields["class_colors_rgb"].shape == (3 * len(fields["class_names"]),)
    assert fields["sparse_conv_backend"] in ("spconv", "torch") and fields["attention_backend"] == "sdpa"
    assert fields["moe_dispatch"] == "loop"  # grouped GEMMs only on CUDA in bfloat16


def test_intensity_scaling():
    np.testing.assert_allclose(scale_intensity(np.array([0.0, 255.0]), "auto"), [0.0, 1.0])
    np.testing.assert_allclose(scale_intensity(np.array([0.0, 0.5]), "auto"), [0.0, 0.5])
    np.testing.assert_allclose(scale_intensity(np.array([0.0, 100.0]), 100.0), [0.0, 1.0])
