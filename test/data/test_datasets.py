"""Loaders on the real samples in ../shared/data (skipped when absent) and on small fakes of their layouts."""
import json
import pickle

import numpy as np
import pytest
import yaml

from pointmoe_core.data.datasets import build_dataset
from pointmoe_core.data.folder import PointCloudFolder
from pointmoe_core.data.nuscenes import NuScenesDataset
from pointmoe_core.data.pointcept import NYU40_TO_SCANNET20, S3DISDataset, ScanNetDataset, convert_mmdet3d_scene
from pointmoe_core.data.sample import IGNORE_INDEX, OUTDOOR, make_sample
from pointmoe_core.data.semantic_kitti import SEMANTIC_KITTI_LEARNING_MAP, SemanticKITTIDataset
from pointmoe_core.data.taxonomy import NUSCENES_CLASSES, S3DIS_CLASSES, SCANNET20_CLASSES, SEMANTIC_KITTI_CLASSES
from pointmoe_core.io import PointCloud, load_learning_map, write_cloud


# ---- SemanticKITTI (real scans) ------------------------------------------------------------
def test_semantic_kitti_scan_labels_follow_the_yaml_learning_map(shared_data):
    root = shared_data / "semantickitti"
    dataset = SemanticKITTIDataset(root, split=[0], learning_map=root / "semantic-kitti.yaml")
    assert len(dataset) == 3
    sample = dataset[0]
    scan = np.fromfile(root / "sequences/00/velodyne/000000.bin", np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(sample["coord"], scan[:, :3])
    np.testing.assert_array_equal(sample["strength"][:, 0], scan[:, 3])
    assert sample["name"] == "00_000000" and sample["dataset"] == "SemanticKITTI"

    config = yaml.safe_load((root / "semantic-kitti.yaml").read_text())
    raw = np.fromfile(root / "sequences/00/labels/000000.label", np.uint32) & 0xFFFF
    expected = np.array([config["learning_map"][int(r)] for r in raw]) - 1  # unlabeled 0 -> -1
    np.testing.assert_array_equal(sample["segment"], expected)
    share = np.bincount(sample["segment"] + 1, minlength=20)[1:] / len(raw)
    for name in ("road", "sidewalk", "building", "vegetation"):  # a street scene
        assert share[SEMANTIC_KITTI_CLASSES.index(name)] > 0.1, name


def test_semantic_kitti_builtin_map_and_names_match_the_official_yaml(shared_data):
    yaml_path = shared_data / "semantickitti" / "semantic-kitti.yaml"
    assert load_learning_map(yaml_path) == SEMANTIC_KITTI_LEARNING_MAP
    config = yaml.safe_load(yaml_path.read_text())
    yaml_names = [config["labels"][config["learning_map_inv"][i]].replace("-", " ") for i in range(1, 20)]
    assert yaml_names == list(SEMANTIC_KITTI_CLASSES)


# ---- Pointcept folders from the mmdetection3d fixtures (real points) ------------------------
def test_scannet_fixture_converts_to_a_pointcept_folder_with_scannet20_labels(shared_data, tmp_path):
    src = shared_data / "indoor_fixtures" / "scannet"
    convert_mmdet3d_scene(src, "scene0000_00", tmp_path / "val" / "scene0000_00", NYU40_TO_SCANNET20, "segment20")
    dataset = ScanNetDataset(tmp_path, split="val")
    sample = dataset[0]
    points = np.fromfile(src / "points" / "scene0000_00.bin", np.float32).reshape(-1, 6)
    nyu40 = np.fromfile(src / "semantic_mask" / "scene0000_00.bin", np.int64)
    np.testing.assert_array_equal(sample["coord"], points[:, :3])
    np.testing.assert_array_equal(sample["color"], points[:, 3:])
    assert sample["segment"].dtype == np.int64 and sample["instance"].shape == (100,)
    names = {nyu: SCANNET20_CLASSES[label] if label >= 0 else None for nyu, label in zip(nyu40, sample["segment"])}
    # NYU40 1 wall, 2 floor, 3 cabinet, 39 otherfurniture are benchmark classes; 0, 22 ceiling, 40 otherprop are not
    assert (names[1], names[2], names[3]) == ("wall", "floor", "cabinet")
    assert names[0] is None and names[22] is None and names[40] is None
    assert sample["name"] == "scene0000_00" and "normal" not in sample


def test_s3dis_fixture_converts_and_keeps_its_13_class_ids(shared_data, tmp_path):
    src = shared_data / "indoor_fixtures" / "s3dis"
    convert_mmdet3d_scene(src, "Area_1_office_2", tmp_path / "Area_1" / "office_2")
    dataset = S3DISDataset(tmp_path, split="Area_1")
    sample = dataset[0]
    expected = np.fromfile(src / "semantic_mask" / "Area_1_office_2.bin", np.int64)
    np.testing.assert_array_equal(sample["segment"], expected)
    assert sample["segment"].max() < len(S3DIS_CLASSES) and sample["name"] == "Area_1-office_2"
    assert len(S3DISDataset(tmp_path)) == 1  # Area_1 is one of the default training areas
    with pytest.raises(FileNotFoundError, match="S3DIS"):
        S3DISDataset(tmp_path, split="Area_5")


# ---- nuScenes (fake layout: no sample of it is shipped) --------------------------------------
def write_fake_nuscenes(root, raw_labels: np.ndarray, info_suffix: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    points = np.c_[rng.normal(0, 10, (len(raw_labels), 3)), rng.integers(0, 256, len(raw_labels)),
                   rng.integers(0, 32, len(raw_labels))].astype(np.float32)
    (root / "raw/samples/LIDAR_TOP").mkdir(parents=True)
    (root / "raw/lidarseg/v1.0-mini").mkdir(parents=True)
    points.tofile(root / "raw/samples/LIDAR_TOP/sweep0.pcd.bin")
    raw_labels.astype(np.uint8).tofile(root / "raw/lidarseg/v1.0-mini/tok0_lidarseg.bin")
    records = [{"lidar_path": "samples/LIDAR_TOP/sweep0.pcd.bin", "lidar_token": "tok0",
                "gt_segment_path": "lidarseg/v1.0-mini/tok0_lidarseg.bin"}]
    (root / "info").mkdir()
    if info_suffix == ".pkl":
        with open(root / "info/nuscenes_infos_10sweeps_val.pkl", "wb") as f:
            pickle.dump(records, f)
    else:
        (root / "info/val.json").write_text(json.dumps(records))
    return points


@pytest.mark.parametrize("info_suffix", [".pkl", ".json"])
def test_nuscenes_maps_32_raw_classes_to_16_and_scales_intensity(tmp_path, info_suffix):
    raw = np.arange(32).repeat(3)
    points = write_fake_nuscenes(tmp_path, raw, info_suffix)
    info = None if info_suffix == ".pkl" else tmp_path / "info/val.json"
    sample = NuScenesDataset(tmp_path, split="val", info_path=info)[0]
    np.testing.assert_allclose(sample["strength"][:, 0], points[:, 3] / 255)
    label = dict(zip(raw.tolist(), sample["segment"].tolist()))
    assert NUSCENES_CLASSES[label[17]] == "car" and NUSCENES_CLASSES[label[2]] == "pedestrian"
    assert NUSCENES_CLASSES[label[24]] == "driveable surface" and NUSCENES_CLASSES[label[30]] == "vegetation"
    assert label[0] == label[31] == label[29] == IGNORE_INDEX  # noise, ego vehicle, static.other
    assert sorted(set(label.values()) - {IGNORE_INDEX}) == list(range(16))
    assert sample["name"] == "tok0"


# ---- users' own folders --------------------------------------------------------------------
def test_folder_reads_ply_and_npz_and_ignores_unknown_labels(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    write_cloud(tmp_path / "a.ply", PointCloud(xyz=xyz, rgb=rgb, label=np.arange(50, dtype=np.int32) % 4))
    np.savez(tmp_path / "b.npz", coord=xyz, strength=np.ones(50, np.float32))
    (tmp_path / "notes.txt").write_text("not a cloud")
    dataset = PointCloudFolder(tmp_path, class_names=("floor", "table", "block"), input_spec=OUTDOOR)
    assert len(dataset) == 2 and dataset.input_spec == OUTDOOR
    ply, npz = dataset[0], dataset[1]
    np.testing.assert_allclose(ply["coord"], xyz)
    np.testing.assert_array_equal(ply["color"], rgb.astype(np.float32))
    np.testing.assert_array_equal(ply["segment"], np.where(np.arange(50) % 4 < 3, np.arange(50) % 4, IGNORE_INDEX))
    assert (npz["segment"] == IGNORE_INDEX).all() and npz["strength"].shape == (50, 1) and npz["name"] == "b"


# ---- the sample contract and the registry --------------------------------------------------
def test_make_sample_checks_shapes_and_fills_ignore_labels():
    sample = make_sample(np.zeros((4, 3), np.float64), dataset="d", name="s", strength=np.ones(4))
    assert sample["coord"].dtype == np.float32 and sample["strength"].shape == (4, 1)
    assert sample["segment"].tolist() == [IGNORE_INDEX] * 4
    with pytest.raises(ValueError, match="segment"):
        make_sample(np.zeros((4, 3)), dataset="d", name="s", segment=np.zeros(3, np.int64))


def test_build_dataset_by_name():
    dataset = build_dataset("synthetic", domain="tabletop", num_scenes=3)
    assert dataset.name == "synthetic_tabletop" and len(dataset) == 3
    with pytest.raises(ValueError, match="unknown dataset type"):
        build_dataset("KITTI-360")
