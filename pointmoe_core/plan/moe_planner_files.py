"""The 3D-MoE planner folder: what ``MoEPlanner.save`` writes and ``MoEPlanner.from_checkpoint`` reads.

A folder holds ``planner.json`` (format tag, version, config, whether the LLM was converted and
adapted), ``scene_tokenizer.safetensors``, ``pose_dit.safetensors``, ``pointer.safetensors`` and,
after stage 2, ``adapters/`` (:func:`.lora.save_adapters`: adapters + routers). The frozen base LLM
is never copied: loading gets it again from its source. An exported folder has a ``.sha256``
sidecar beside each weights file, and reading checks every sidecar it finds and refuses weights
that are not finite, all before the LLM loads (a minute on a small CPU), so nothing fails late.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..common.checkpoint import check_finite, verify_checkpoint, write_hash_sidecar
from .lora import CONFIG_NAME as ADAPTERS_CONFIG
from .lora import WEIGHTS_NAME as ADAPTERS_WEIGHTS

CHECKPOINT_FORMAT = "pointmoe-3d-moe"
CHECKPOINT_VERSION = 1
CONFIG_FILE = "planner.json"
SCENE_FILE = "scene_tokenizer.safetensors"
POSE_DIT_FILE = "pose_dit.safetensors"
POINTER_FILE = "pointer.safetensors"
ADAPTERS_DIR = "adapters"
EXPORT_DIR = "planner"  # where a training stage's output folder keeps its planner


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.detach().cpu().contiguous() for name, value in state.items()}


def checkpoint_folder(path: str | Path) -> Path:
    """``path`` itself when it holds a saved 3D-MoE planner, else its ``planner/`` subfolder."""
    path = Path(path)
    for folder in (path, path / EXPORT_DIR):
        if (folder / CONFIG_FILE).is_file():
            meta = _read_meta(folder / CONFIG_FILE)
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"{folder / CONFIG_FILE} is not a 3D-MoE planner (format {meta.get('format')!r})")
            return folder
        if (folder / SCENE_FILE).is_file():  # its weights are there: only the metadata is missing
            raise FileNotFoundError(f"the 3D-MoE planner in {folder} lacks {CONFIG_FILE}")
    raise FileNotFoundError(f"no 3D-MoE planner in {path}: expected {CONFIG_FILE} there or in {EXPORT_DIR}/")


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or not {"version", "adapted", "config"} <= set(meta):
        raise ValueError(f"{path} lacks the 3D-MoE planner's version, adapted and config entries")
    return meta


def is_moe_planner(path: str | Path) -> bool:
    """Whether ``path`` holds a 3D-MoE planner folder, a broken one included: its metadata or weights are
    there, so loading it says what is wrong with it rather than that it is no Pose-DiT checkpoint."""
    path = Path(path)
    return any((folder / name).is_file() for folder in (path, path / EXPORT_DIR) for name in (CONFIG_FILE, SCENE_FILE))


def write_folder(path: str | Path, states: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> Path:
    """Write the weights files ``states`` (file name -> state dict) and ``planner.json`` holding
    ``meta`` (format tag and version added) into the folder ``path``; the adapters are the caller's."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, state in states.items():
        save_file(_contiguous(state), path / name)
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **meta}
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def add_hash_sidecars(path: Path) -> None:
    """A ``sha256sum``-style sidecar beside each weights file of the folder (what an export ships)."""
    for weights in sorted(path.rglob("*.safetensors")):
        write_hash_sidecar(weights)


def read_folder(path: str | Path, load_pose_dit: bool = True) -> tuple[Path, dict[str, Any], dict[str, dict]]:
    """``(folder, meta, weights files)`` of the planner in ``path`` (a saved folder or a training
    stage's output folder), everything checked: files present, sidecars, finite weights, version.
    ``load_pose_dit=False`` leaves out Pose-DiT and the object pointer."""
    path = checkpoint_folder(path)
    meta = _read_meta(path / CONFIG_FILE)
    needed = [SCENE_FILE] + ([POSE_DIT_FILE, POINTER_FILE] if load_pose_dit else [])
    needed += [f"{ADAPTERS_DIR}/{ADAPTERS_WEIGHTS}", f"{ADAPTERS_DIR}/{ADAPTERS_CONFIG}"] if meta["adapted"] else []
    missing = [name for name in needed if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"the 3D-MoE planner in {path} lacks {', '.join(missing)}")
    for weights in path.rglob("*.safetensors"):
        verify_checkpoint(weights)  # only files with a sidecar (exported ones) are checked
    states = {name: load_file(path / name) for name in needed if name.endswith(".safetensors")}
    for name, state in states.items():
        check_finite(state, path / name)
    if meta["version"] > CHECKPOINT_VERSION:
        raise ValueError(f"{path} has 3D-MoE planner version {meta['version']}; this install reads up to "
                         f"{CHECKPOINT_VERSION}")
    return path, meta, states
