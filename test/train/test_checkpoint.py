import json
import random

import numpy as np
import pytest
import torch

from pointmoe_core.common import checkpoint as ckpt


def payload(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}, "step": int(value), "config": {"name": "x", "sizes": [1, 2]}}


def test_save_writes_hash_sidecar_and_latest_pointer(tmp_path):
    first = ckpt.save_checkpoint(tmp_path, payload(1.0), step=1, epoch=0)
    second = ckpt.save_checkpoint(tmp_path, payload(2.0), step=2, epoch=1)
    pointer = json.loads((tmp_path / "latest").read_text())
    assert pointer == {"checkpoint": "step_00000002.pt", "sha256": second.sha256, "step": 2, "epoch": 1}
    assert (tmp_path / "step_00000001.pt.sha256").read_text().split()[0] == first.sha256 == ckpt.sha256_file(first.path)
    assert ckpt.load_checkpoint(tmp_path)["model"]["w"].tolist() == [2.0] * 3  # a directory loads its latest
    assert ckpt.load_checkpoint(first.path)["config"] == {"name": "x", "sizes": [1, 2]}


def test_corruption_is_detected_by_the_recorded_hash(tmp_path):
    info = ckpt.save_checkpoint(tmp_path, payload(1.0), step=1, epoch=0)
    data = bytearray(info.path.read_bytes())
    data[-10] ^= 0xFF
    info.path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load_checkpoint(info.path)


def test_a_crash_while_writing_leaves_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, payload(1.0), step=1, epoch=0)

    def dying_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # what a kill during torch.save looks like to Python

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, payload(1.0), step=1, epoch=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000001.pt", "step_00000001.pt.sha256"]
    assert ckpt.load_checkpoint(tmp_path)["step"] == 1


def test_the_temporary_file_of_a_killed_write_is_removed_by_the_next_save(tmp_path):
    ckpt.save_checkpoint(tmp_path, {"w": torch.zeros(2)}, step=1, epoch=0)
    left = tmp_path / ".step_00000002.pt.k1ll3d.tmp"  # what kill -9 during torch.save leaves
    left.write_bytes(b"")
    ckpt.save_checkpoint(tmp_path, {"w": torch.ones(2)}, step=2, epoch=0)
    assert not left.exists() and not list(tmp_path.glob(".*.tmp"))
    assert ckpt.load_checkpoint(tmp_path)["w"].tolist() == [1.0, 1.0]


def test_non_finite_tensors_are_named(tmp_path):
    ckpt.check_finite({"fine": torch.ones(3), "steps": torch.tensor([1, 2])}, "ok.pt")  # integers never are
    with pytest.raises(ValueError, match=r"bad.pt has non-finite \(NaN/Inf\) weights in 2 tensors: a, c"):
        ckpt.check_finite({"a": torch.tensor([float("nan")]), "b": torch.ones(1), "c": torch.tensor([float("inf")])},
                          "bad.pt")


def test_prune_keeps_the_newest(tmp_path):
    for step in range(1, 5):
        ckpt.save_checkpoint(tmp_path, payload(step), step=step, epoch=0)
    ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["step_00000003.pt", "step_00000004.pt"]
    assert not (tmp_path / "step_00000001.pt.sha256").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="latest"):
        ckpt.load_checkpoint(tmp_path)


def test_rng_state_survives_a_save_and_load(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    ckpt.save_checkpoint(tmp_path, {"rng": ckpt.capture_rng_state()}, step=0, epoch=0)
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    ckpt.restore_rng_state(ckpt.load_checkpoint(tmp_path)["rng"])
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected
