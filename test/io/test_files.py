"""PCD/PLY round trips and real SemanticKITTI / Open3D files."""
import numpy as np
import pytest

from pointmoe_core.io import (
    ATTRIBUTES,
    PointCloud,
    load_learning_map,
    read_cloud,
    read_kitti_bin,
    read_kitti_label,
    write_cloud,
)

pytest.importorskip("open3d", reason="PCD/PLY go through Open3D")
KITTI = "semantickitti/sequences/00"


def full_cloud(n=257):
    rng = np.random.default_rng(0)
    return PointCloud(
        xyz=rng.standard_normal((n, 3)).astype(np.float32),
        rgb=rng.integers(0, 256, (n, 3), dtype=np.uint8),
        intensity=rng.random(n, dtype=np.float32),
        normals=rng.standard_normal((n, 3)).astype(np.float32),
        score=rng.random(n, dtype=np.float32),
        label=rng.integers(0, 200, n).astype(np.int64),
        ring=rng.integers(0, 64, n).astype(np.uint16),
    )


@pytest.mark.parametrize("suffix", [".pcd", ".ply"])
def test_every_attribute_survives_a_file(tmp_path, suffix):
    cloud = full_cloud()
    write_cloud(tmp_path / f"cloud{suffix}", cloud)
    back = read_cloud(tmp_path / f"cloud{suffix}")
    assert back.attributes() == ATTRIBUTES
    for name in ("xyz", *ATTRIBUTES):
        np.testing.assert_array_equal(getattr(back, name), getattr(cloud, name), err_msg=name)
    # PLY has no 64-bit integers: labels come back as int32
    assert back.label.dtype == (np.int32 if suffix == ".ply" else np.int64)


def test_xyz_only_file_reads_without_attributes(tmp_path):
    cloud = PointCloud(xyz=np.arange(12, dtype=np.float32).reshape(4, 3))
    write_cloud(tmp_path / "xyz.pcd", cloud)
    back = read_cloud(tmp_path / "xyz.pcd")
    assert back.attributes() == ()
    np.testing.assert_array_equal(back.xyz, cloud.xyz)


def test_float_colours_are_read_as_uint8(tmp_path):
    import open3d as o3d

    other_tool = o3d.t.geometry.PointCloud()  # a PLY with float red/green/blue in [0, 1]
    other_tool.point.positions = o3d.core.Tensor(np.zeros((2, 3), np.float32))
    other_tool.point.colors = o3d.core.Tensor(np.array([[0, 0.5, 1], [1, 1, 0.2]], np.float32))
    o3d.t.io.write_point_cloud(str(tmp_path / "float.ply"), other_tool)
    np.testing.assert_array_equal(read_cloud(tmp_path / "float.ply").rgb, [[0, 128, 255], [255, 255, 51]])


def test_ply_refuses_labels_beyond_int32(tmp_path):
    cloud = PointCloud(xyz=np.zeros((1, 3)), label=np.array([2**40]))
    with pytest.raises(ValueError, match="out of range for int32"):
        write_cloud(tmp_path / "big.ply", cloud)


def test_real_fragment_pcd(shared_data):
    cloud = read_cloud(shared_data / "rgbd/fragment.pcd")
    assert len(cloud) == 113_662
    assert cloud.attributes() == ("rgb", "normals")  # curvature is not a PointCloud attribute
    np.testing.assert_allclose(np.linalg.norm(cloud.normals, axis=1), 1.0, atol=1e-3)
    assert cloud.rgb.std() > 10  # real colours, not a constant


def test_real_kitti_scan(shared_data):
    path = shared_data / KITTI / "velodyne/000000.bin"
    cloud = read_kitti_bin(path)
    assert len(cloud) * 16 == path.stat().st_size
    raw = np.fromfile(path, np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(cloud.xyz, raw[:, :3])
    np.testing.assert_array_equal(cloud.intensity, raw[:, 3])
    assert 0.0 <= cloud.intensity.min() and cloud.intensity.max() <= 1.0
    assert np.abs(cloud.xyz[:, :2]).max() < 120  # an HDL-64E sees ~120 m at most


def test_learning_map_from_the_official_yaml(shared_data):
    learning_map = load_learning_map(shared_data / "semantickitti/semantic-kitti.yaml")
    assert learning_map[0] == 0 and learning_map[10] == 1 and learning_map[252] == 1  # moving-car -> car
    assert set(learning_map.values()) == set(range(20))


def test_real_kitti_labels(shared_data):
    learning_map = load_learning_map(shared_data / "semantickitti/semantic-kitti.yaml")
    path = shared_data / KITTI / "labels/000000.label"
    raw = np.fromfile(path, np.uint32)
    semantic, instance = read_kitti_label(path)
    assert len(semantic) == len(read_kitti_bin(shared_data / KITTI / "velodyne/000000.bin"))
    np.testing.assert_array_equal(semantic, raw & 0xFFFF)
    np.testing.assert_array_equal(instance, raw >> 16)
    assert set(np.unique(semantic)) <= set(learning_map)
    mapped, _ = read_kitti_label(path, learning_map)
    assert mapped.min() >= 0 and mapped.max() <= 19 and len(np.unique(mapped)) > 5
    car = semantic == 10
    assert car.any() and (mapped[car] == 1).all()


def test_kitti_label_bits_and_unmapped_ids(tmp_path):
    semantic, instance = np.array([10, 252, 40]), np.array([3, 0, 65535])
    path = tmp_path / "000000.label"
    ((instance << 16) | semantic).astype(np.uint32).tofile(path)
    got_semantic, got_instance = read_kitti_label(path)
    np.testing.assert_array_equal(got_semantic, semantic)
    np.testing.assert_array_equal(got_instance, instance)
    np.testing.assert_array_equal(read_kitti_label(path, {10: 1, 252: 1, 40: 9})[0], [1, 1, 9])
    with pytest.raises(ValueError, match=r"semantic ids \[40\] are not in learning_map"):
        read_kitti_label(path, {10: 1, 252: 1})
