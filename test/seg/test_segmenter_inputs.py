"""What `Segmenter.predict` does with inputs a sensor or a user can send: far outliers, corrupt values,
UTM-sized coordinates, a bare string as the vocabulary; and checkpoints that load with their own
config, carry a hash sidecar and refuse non-finite weights."""
import numpy as np
import pytest

from pointmoe_core.common.checkpoint import CheckpointError
from pointmoe_core.seg.convert import CheckpointKeyError, read_checkpoint, save_checkpoint
from pointmoe_core.seg.segmenter import Segmenter


@pytest.fixture(scope="module")
def segmenter(offline_tiny_config) -> Segmenter:
    return Segmenter.from_config(offline_tiny_config)


def test_far_and_corrupt_points_are_dropped_and_counted(segmenter, make_room):
    room = make_room(2000, 1)
    clean = segmenter.predict(room["coord"], room["color"], room["normal"])
    coord = room["coord"].copy()
    coord[0] = [1e17, 0, 0]  # a corrupt value
    coord[1] = [1e5, 0, 0]  # a stray return 100 km out
    result = segmenter.predict(coord, room["color"], room["normal"], max_range=50.0)
    assert list(result.valid[:2]) == [False, False] and result.valid[2:].all()
    assert list(result.labels[:2]) == [-1, -1]
    assert any("dropped 1 of 2000 points beyond 1e+08 m" in w for w in result.warnings), result.warnings
    assert any("dropped 1 of 2000 points farther than max_range=50 m" in w for w in result.warnings)
    assert (result.labels[2:] == clean.labels[2:]).mean() > 0.95  # the rest of the cloud is unharmed


def test_a_cloud_spanning_more_than_the_serialization_orders_is_refused(segmenter, make_room):
    room = make_room(500, 2)
    coord = room["coord"].copy()
    for far in (1e5, 9e7):  # no max_range: the span itself is the limit, however far below 1e8 m
        coord[0] = [far, 0, 0]
        with pytest.raises(ValueError, match="beyond the 65536 per axis the serialization orders: limit it with "
                                             "max_range"):
            segmenter.predict(coord, room["color"], room["normal"])


def test_utm_sized_coordinates_are_re_centred_in_float64(segmenter, make_room):
    room = make_room(2000, 3)
    clean = segmenter.predict(room["coord"], room["color"], room["normal"])
    utm = room["coord"].astype(np.float64) + [612_345.0, 5_800_000.0, 1_000_000.0]
    result = segmenter.predict(utm, room["color"], room["normal"])
    assert any("re-centred in float64" in w for w in result.warnings), result.warnings
    assert (result.labels == clean.labels).mean() > 0.99
    lossy = segmenter.predict(utm.astype(np.float32), room["color"], room["normal"])  # what float32 first gives
    assert result.num_voxels == clean.num_voxels > lossy.num_voxels


def test_a_bare_string_is_not_a_vocabulary(segmenter, make_room):
    with pytest.raises(TypeError, match="not the string 'table'"):
        segmenter.predict(make_room(100, 0)["coord"], class_names="table")


def test_checkpoints_load_with_their_own_config_and_are_hash_checked(segmenter, tmp_path):
    path = segmenter.save(tmp_path / "model.safetensors")
    assert (tmp_path / "model.safetensors.sha256").read_text().split()[1] == "model.safetensors"
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary name, renamed
    assert Segmenter.from_checkpoint(path).config == segmenter.config  # no config given: the file's
    with pytest.raises(CheckpointKeyError, match="carries its own config 'tiny': give no config to use it"):
        Segmenter.from_checkpoint(path, config="base")
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        Segmenter.from_checkpoint(path)


def test_non_finite_weights_are_refused_by_name(segmenter, tmp_path):
    state = {name: value.clone() for name, value in segmenter.model.state_dict().items()}
    state["head.proj.weight"][0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pth", state, segmenter.config)
    assert read_checkpoint(path).state_dict["head.proj.weight"].isnan().any()  # the file itself reads
    with pytest.raises(ValueError, match=r"non-finite \(NaN/Inf\) weights in 1 tensors: head.proj.weight"):
        Segmenter.from_checkpoint(path)
