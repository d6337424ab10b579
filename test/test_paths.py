"""Relative path parameters: the working directory first, then the package's share."""
import pytest

from pointmoe_core.common.paths import resolve_path


def test_working_directory_first_then_share(tmp_path, monkeypatch):
    share, work = tmp_path / "share", tmp_path / "work"
    (share / "checkpoints").mkdir(parents=True)
    (work / "checkpoints").mkdir(parents=True)
    (share / "checkpoints/model.safetensors").write_bytes(b"shipped")
    monkeypatch.chdir(work)
    assert resolve_path("checkpoints/model.safetensors", share) == share / "checkpoints/model.safetensors"
    (work / "checkpoints/model.safetensors").write_bytes(b"mine")
    assert resolve_path("checkpoints/model.safetensors", share).read_bytes() == b"mine"  # the user's own wins
    assert resolve_path(share / "checkpoints/model.safetensors", None).read_bytes() == b"shipped"  # absolute


def test_a_missing_path_names_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError,
                       match=f"absent.pth not found: tried {tmp_path}/absent.pth, /share/absent.pth"):
        resolve_path("absent.pth", "/share")
    with pytest.raises(FileNotFoundError, match="/nowhere/absent.pth does not exist"):
        resolve_path("/nowhere/absent.pth", "/share")
