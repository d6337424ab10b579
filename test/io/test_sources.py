import numpy as np
import pytest

from pointmoe_core.data.sources import load_cloud


def test_npz_source_keeps_known_arrays(tmp_path):
    xyz = np.arange(30, dtype=np.float32).reshape(10, 3)
    np.savez(tmp_path / "c.npz", xyz=xyz, label=np.arange(10), unrelated=np.zeros(2))
    cloud = load_cloud(tmp_path / "c.npz")
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.label, np.arange(10))


def test_kitti_source(shared_data):
    cloud = load_cloud(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")
    assert len(cloud) == 124_668 and cloud.intensity is not None


def test_bad_sources_say_why(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_cloud(tmp_path / "missing.pcd")
    (tmp_path / "cloud.xyz").write_text("0 0 0\n")
    with pytest.raises(ValueError, match="unsupported cloud file"):
        load_cloud(tmp_path / "cloud.xyz")
