"""Every `pointmoe` subcommand has --help and --json; bag and demo work end to end."""
import json
from pathlib import Path

import numpy as np
import pytest

from pointmoe_core import cli


@pytest.mark.parametrize("command", sorted(cli.SUBCOMMANDS))
def test_every_subcommand_has_help_and_json(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--json" in capsys.readouterr().out


def _last_json_line(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bag_write_then_info(tmp_path, capsys):
    source = tmp_path / "cloud.npz"
    np.savez(source, xyz=np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
    bag = tmp_path / "clouds_bag"
    assert cli.main(["bag", "write", str(bag), str(source), "synthetic", "--topic", "/lidar", "--json"]) == 0
    assert _last_json_line(capsys)["points"] == [500, 30_000]
    assert cli.main(["bag", "info", str(bag), "--json"]) == 0
    info = _last_json_line(capsys)
    assert info["topics"] == {"/lidar": {"type": "sensor_msgs/msg/PointCloud2", "count": 2}}
    assert info["duration_s"] == pytest.approx(0.1)


def test_train_reports_unknown_task(capsys):
    assert cli.train_main(["no-such-task", "--json", "--ros-args", "-p", "x:=1"]) == 2  # a usage error
    assert "unknown task 'no-such-task'" in _last_json_line(capsys)["error"]


def test_demo_on_generated_scene(tmp_path, capsys):
    assert cli.main(["demo", "--sensor-only", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out"),
                     "--json"]) == 0
    summary = _last_json_line(capsys)
    [row] = summary["clouds"]
    assert row["name"] == "generated tabletop" and row["bit_exact"]
    assert (tmp_path / "out" / "demo_bag" / "metadata.yaml").is_file()
    assert (tmp_path / "out" / "scene_points.png").stat().st_size > 10_000


def test_demo_on_real_scans(shared_data, tmp_path, capsys):
    assert cli.main(["demo", "--sensor-only", "--data", str(shared_data), "--out", str(tmp_path), "--json"]) == 0
    rows = {row["name"]: row for row in _last_json_line(capsys)["clouds"]}
    assert rows["SemanticKITTI 00/000000"]["points"] == 124_668
    assert rows["TUM RGB-D frame"]["organized"] and rows["TUM RGB-D frame"]["valid"] < 640 * 480
    assert all(row["bit_exact"] for row in rows.values())


def test_bag_segment_round_trips_real_scans(shared_data, tmp_path, capsys):
    import open3d as o3d

    from pointmoe_core.io import BagWriter, cloud_from_depth, cloud_from_msg, msg_from_cloud, read_bag, read_kitti_bin

    scan = read_kitti_bin(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")[::10]
    depth = np.asarray(o3d.io.read_image(str(shared_data / "rgbd/TUM_depth.png")))[::4, ::4]
    color = np.asarray(o3d.io.read_image(str(shared_data / "rgbd/TUM_color.png")))[::4, ::4]
    frame = cloud_from_depth(depth, fx=525 / 4, fy=525 / 4, cx=319.5 / 4, cy=239.5 / 4, depth_scale=5000.0,
                             color=color)
    with BagWriter(tmp_path / "in") as bag:
        bag.write("/points", msg_from_cloud(scan, header=("velodyne", 1.0), msg_class="rosbags"), 1_000_000_000)
        bag.write("/points", msg_from_cloud(frame, header=("camera", 2.0), msg_class="rosbags",
                                            organized_shape=depth.shape), 2_000_000_000)
    assert cli.main(["bag", "segment", str(tmp_path / "in"), str(tmp_path / "out"), "--json"]) == 0
    assert _last_json_line(capsys)["clouds"] == 2

    out = {}
    for topic, t_ns, msg in read_bag(tmp_path / "out"):
        out.setdefault(topic, []).append((t_ns, msg))
    segmented = out["/perception_node/output/segmented"]
    infos = out["/perception_node/output/info"]
    assert [t for t, _ in segmented] == [t for t, _ in infos] == [1_000_000_000, 2_000_000_000]
    for (_, seg_msg), (_, info), valid_points in zip(segmented, infos,
                                                   (len(scan), int(np.isfinite(frame.xyz).all(1).sum()))):
        labels = cloud_from_msg(seg_msg).label
        assert len(labels) == valid_points and info.points_in - info.points_dropped == valid_points
        assert np.bincount(labels, minlength=len(info.class_names)).tolist() == info.class_point_counts.tolist()


def test_bag_segment_with_the_shipped_checkpoint_uses_its_own_config(tmp_path, capsys):
    """The README's `bag segment ... --checkpoint checkpoints/seg_default.safetensors`, no --config."""
    from pointmoe_core.io import read_bag

    shipped = Path(__file__).resolve().parents[1] / "checkpoints/seg_default.safetensors"
    assert cli.main(["bag", "write", str(tmp_path / "in"), "synthetic", "--topic", "/points"]) == 0
    assert cli.main(["bag", "segment", str(tmp_path / "in"), str(tmp_path / "out"), "--topic", "/points",
                     "--checkpoint", str(shipped), "--json"]) == 0
    assert _last_json_line(capsys)["clouds"] == 1
    info = next(msg for topic, _, msg in read_bag(tmp_path / "out") if topic == "/perception_node/output/info")
    assert "block" in info.class_names and not info.warnings and info.points_dropped == 0
