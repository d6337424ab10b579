"""Training checkpoints: atomic writes, a recorded content hash, a ``latest`` pointer, RNG capture.

A checkpoint directory holds ``step_00001234.pt`` files, each with a sha256sum-style sidecar
``step_00001234.pt.sha256``, and ``latest`` (JSON: file name, sha256, step, epoch) naming the
newest. Every file is written to a temporary name in the same directory, flushed to disk and
then ``os.replace``-d over its final name, so a crash (or a kill mid-write) leaves either the
old file or the new one, never a torn one; the temporary file a kill -9 leaves behind is removed
by the next ``save_checkpoint`` into that directory. ``load_checkpoint`` re-hashes the file against
its sidecar before unpickling. ``write_hash_sidecar``, ``verify_checkpoint`` and ``check_finite``
serve every other weights file (segmentation checkpoints, planner folders) the same way.

The payload is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` reads it. What the trainer stores in it is documented in
:mod:`pointmoe_core.train.seg_trainer`; RNG states come from ``capture_rng_state``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"
HASH_SUFFIX = ".sha256"
TMP_SUFFIX = ".tmp"
SHOWN_TENSORS = 5


class CheckpointError(RuntimeError):
    """A checkpoint is missing, or its bytes do not match the recorded hash."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    sha256: str
    step: int
    epoch: int


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(directory: str | Path, payload: dict[str, Any], step: int, epoch: int) -> CheckpointInfo:
    """Write ``payload`` as ``step_{step:08d}.pt``, its hash sidecar, and point ``latest`` at it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # one trainer writes a run's checkpoints: a temporary file here is what a killed write left
    for stale in directory.glob(f".*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
    path = directory / f"step_{step:08d}.pt"
    atomic_write(path, lambda f: torch.save(payload, f))
    digest = write_hash_sidecar(path)
    pointer = {"checkpoint": path.name, "sha256": digest, "step": step, "epoch": epoch}
    atomic_write(directory / LATEST, lambda f: f.write((json.dumps(pointer) + "\n").encode()))
    return CheckpointInfo(path, digest, step, epoch)


def write_hash_sidecar(path: str | Path) -> str:
    """Write ``path``'s sha256sum-style sidecar ``<name>.sha256``; returns the digest."""
    path = Path(path)
    digest = sha256_file(path)
    atomic_write(path.with_name(path.name + HASH_SUFFIX), lambda f: f.write(f"{digest}  {path.name}\n".encode()))
    return digest


def check_finite(state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise ValueError naming the tensors of ``state`` that hold NaN or Inf (weights that predict nothing)."""
    bad = [name for name, value in state.items()
           if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        shown = ", ".join(bad[:SHOWN_TENSORS]) + (f", ... ({len(bad) - SHOWN_TENSORS} more)"
                                                  if len(bad) > SHOWN_TENSORS else "")
        raise ValueError(f"{source} has non-finite (NaN/Inf) weights in {len(bad)} tensors: {shown}")


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint ``latest`` names in ``directory``, or None when there is none."""
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    return pointer.parent / json.loads(pointer.read_text())["checkpoint"]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the one a checkpoint directory's ``latest`` names."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"no '{LATEST}' pointer in checkpoint directory {path}")
        path = found
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def verify_checkpoint(path: str | Path) -> str:
    """The file's sha256, checked against its sidecar when it has one."""
    path = Path(path)
    digest = sha256_file(path)
    sidecar = path.with_name(path.name + HASH_SUFFIX)
    if sidecar.is_file():
        recorded = sidecar.read_text().split()[0]
        if recorded != digest:
            raise CheckpointError(f"{path} is corrupt: sha256 {digest} but {sidecar.name} records {recorded}")
    return digest


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True) -> dict[str, Any]:
    """The payload of a checkpoint file or directory (its ``latest``), hash-checked unless ``verify`` is False."""
    path = resolve_checkpoint(path)
    if verify:
        verify_checkpoint(path)
    return torch.load(path, map_location=map_location, weights_only=True)


def prune_checkpoints(directory: str | Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest step checkpoints (never the one ``latest`` names)."""
    if keep_last <= 0:
        return
    directory = Path(directory)
    current = latest_checkpoint(directory)
    for path in sorted(directory.glob("step_*.pt"))[:-keep_last]:
        if path != current:
            path.unlink()
            path.with_name(path.name + HASH_SUFFIX).unlink(missing_ok=True)


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch and (when present) every CUDA device's generator state."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "cached_gaussian": cached_gaussian},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants the nested tuples ``getstate`` gave, which serialisation may turn into lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_rotating(directory: str | Path, payload: dict[str, Any], step: int, epoch: int, keep_last: int) -> Path:
    """A training run's checkpoint: ``save_checkpoint``, then the oldest pruned to ``keep_last``."""
    path = save_checkpoint(directory, payload, step, epoch).path
    prune_checkpoints(directory, keep_last)
    return path


def resume_payload(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The payload of the checkpoint ``latest`` names, for ``--resume``: FileNotFoundError when the
    run has none."""
    if latest_checkpoint(directory) is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {directory}")
    return load_checkpoint(directory, map_location=map_location)
