"""Checkpoints: our file format and the key map to and from Pointcept / point_moe (``pointmoe
convert``: :mod:`.convert_cli`).

Official state dicts come from Pointcept's ``DefaultSegmentorV2`` (``PT-v3m1`` backbone + Linear
``seg_head``) and point_moe's ``PPTMoE-v0m0`` (``PTMoE-v0m0`` backbone + PPT language head).
Backbone module names are identical to ours (checked against the official parity fixture); the
head differs only in where its tensors hang:

    ours                      official
    backbone.<...>            backbone.<...>
    head.proj.{weight,bias}   proj_head.{weight,bias}      (language-guided head)
    head.class_embedding      class_embedding
    head.logit_scale          logit_scale
    head.classifier.<...>     seg_head.<...>               (Pointcept's linear head)

Official files may also wrap the state dict as ``{"state_dict": ..., "epoch": ...}``
(Pointcept's CheckpointSaver), prefix every key with ``module.`` (DDP), or hold a bare backbone
(keys starting ``embedding.``/``enc.``/``dec.``, e.g. the parity fixture). Keys outside this map
(PDNorm's ``embedding_table``, RPE tables, ...) raise ``CheckpointKeyError`` listing them.

Our file: a torch file ``{"format": "pointmoe-seg", "version": 1, "config": <SegmentorConfig
dict>, "state_dict": ..., "epoch": ...}``, or a ``.safetensors`` file with the same config JSON in
its metadata. The config carries the class names and the text source, and loading uses it unless
a config is given explicitly (an official checkpoint needs one). Every file is written with a
sha256sum-style sidecar ``<name>.sha256``; reading checks a file against its sidecar when it has
one, and refuses weights that are not finite, naming them.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..common.checkpoint import atomic_write, check_finite, verify_checkpoint, write_hash_sidecar
from .model import PointMoESegmentor, SegmentorConfig, load_config

CHECKPOINT_FORMAT = "pointmoe-seg"
CHECKPOINT_VERSION = 1
BACKBONE_ROOTS = ("embedding.", "enc.", "dec.")
# (ours, official); a name ending in "." renames a prefix, otherwise one exact key
OURS_TO_OFFICIAL = (
    ("head.proj.", "proj_head."),
    ("head.classifier.", "seg_head."),
    ("head.class_embedding", "class_embedding"),
    ("head.logit_scale", "logit_scale"),
)
SHOWN_KEYS = 20


class CheckpointKeyError(KeyError):
    """State-dict keys that do not fit: ``unexpected``, ``missing`` and shape ``mismatched`` lists."""

    def __init__(self, what: str, unexpected: list[str] = (), missing: list[str] = (),
                 mismatched: list[str] = ()) -> None:
        self.unexpected, self.missing, self.mismatched = list(unexpected), list(missing), list(mismatched)
        parts = [what]
        for label, keys in (("unexpected", self.unexpected), ("missing", self.missing),
                            ("shape mismatch", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:SHOWN_KEYS]) + (f", ... ({len(keys) - SHOWN_KEYS} more)"
                                                        if len(keys) > SHOWN_KEYS else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        super().__init__("; ".join(parts))

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


# ---- key maps -------------------------------------------------------------------------------
def _rename(key: str, pairs: tuple[tuple[str, str], ...]) -> str | None:
    for source, target in pairs:
        if key == source or (source.endswith(".") and key.startswith(source)):
            return target + key[len(source):]
    return None


def to_our_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (or already ours) key names -> ours; drops ``module.``, nests a bare backbone."""
    official_to_ours = tuple((official, ours) for ours, official in OURS_TO_OFFICIAL)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        bare = key.removeprefix("module.")
        if bare.startswith(("backbone.", "head.")):
            new = bare
        elif bare.startswith(BACKBONE_ROOTS):
            new = "backbone." + bare
        else:
            new = _rename(bare, official_to_ours)
        if new is None:
            unknown.append(key)
        elif new in out:
            raise CheckpointKeyError(f"two checkpoint keys map to {new!r}", unexpected=[key])
        else:
            out[new] = value
    if unknown:
        raise CheckpointKeyError("checkpoint keys outside the Pointcept / point_moe key map", unexpected=unknown)
    return out


def to_pointcept_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (or official) key names -> the official ones (``PPTMoE-v0m0`` / ``DefaultSegmentorV2``)."""
    return {_rename(key, OURS_TO_OFFICIAL) or key: value for key, value in to_our_keys(state).items()}


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise ``CheckpointKeyError`` unless ``state`` has exactly the model's keys and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{key} {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
                  for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or mismatched:
        hint = ""
        if any(m.startswith("head.") for m in mismatched):
            hint = " (the head's class count follows config.class_names)"
        raise CheckpointKeyError(f"checkpoint does not fit the model{hint}", unexpected, missing, mismatched)


# ---- files ----------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A checkpoint read from disk, keys already in our names."""

    state_dict: dict[str, torch.Tensor]
    config: SegmentorConfig | None
    source: str  # "pointmoe" (our format) or "official"
    epoch: int | None = None


def _torch_load(path: Path, allow_pickle: bool) -> Any:
    if allow_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    # Pointcept stores numpy scalars (best_metric_value) beside the weights: allow just those,
    # under numpy 1's module name too (files written before numpy 2 renamed numpy.core).
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    numpy_scalars = [np.dtype, scalar, (scalar, "numpy.core.multiarray.scalar"),
                     *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)}]
    try:
        with torch.serialization.safe_globals(numpy_scalars):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path} holds Python objects beyond tensors and plain data ({error}); if you "
                         "trust the file, load it with allow_pickle=True (--allow-pickle)") from error


def read_checkpoint(path: str | Path, allow_pickle: bool = False) -> Checkpoint:
    """Read our format or an official checkpoint (torch file or ``.safetensors``), hash-checked
    against its sidecar when it has one."""
    path = Path(path)
    verify_checkpoint(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                state = {key: f.get_tensor(key) for key in f.keys()}
        except SafetensorError as error:
            raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
        if metadata.get("format") == CHECKPOINT_FORMAT:
            if metadata.get("version") != str(CHECKPOINT_VERSION):
                raise ValueError(f"{path}: unsupported {CHECKPOINT_FORMAT} version {metadata.get('version')}")
            config = json.loads(metadata.get("config", "null"))
            epoch = json.loads(metadata.get("epoch", "null"))
            return Checkpoint(state, config and SegmentorConfig.from_dict(config), "pointmoe", epoch)
        return Checkpoint(to_our_keys(state), None, "official")

    obj = _torch_load(path, allow_pickle)
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        if obj.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{path}: unsupported {CHECKPOINT_FORMAT} version {obj.get('version')}")
        config = obj.get("config")
        return Checkpoint(dict(obj["state_dict"]), config and SegmentorConfig.from_dict(config),
                          "pointmoe", obj.get("epoch"))
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is neither a {CHECKPOINT_FORMAT} checkpoint nor a state dict "
                         "(or a dict holding one under 'state_dict')")
    epoch = obj.get("epoch") if state is not obj else None
    return Checkpoint(to_our_keys(state), None, "official", epoch)


def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor],
                    config: SegmentorConfig | None, epoch: int | None = None) -> Path:
    """Write our format (``.safetensors`` by suffix, else a torch file) atomically, and its hash sidecar."""
    path = Path(path)
    state = {key: value.detach().cpu().contiguous() for key, value in to_our_keys(state_dict).items()}
    config_dict = None if config is None else config.to_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        metadata = {"format": CHECKPOINT_FORMAT, "version": str(CHECKPOINT_VERSION),
                    "config": json.dumps(config_dict), "epoch": json.dumps(epoch)}
        atomic_write(path, lambda f: f.write(save(state, metadata=metadata)))
    else:
        atomic_write(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                                                 "config": config_dict, "state_dict": state, "epoch": epoch}, f))
    write_hash_sidecar(path)
    return path


def save_pointcept_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor],
                              epoch: int | None = None) -> Path:
    """Write official key names: ``{"state_dict", "epoch"}`` as Pointcept's tester reads, or safetensors."""
    path = Path(path)
    state = {key: value.detach().cpu().contiguous() for key, value in to_pointcept_keys(state_dict).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 0 if epoch is None else epoch}, path)  # the tester logs epoch
    return path


def load_segmentor(path: str | Path, config: str | Path | SegmentorConfig | None = None,
                   allow_pickle: bool = False) -> PointMoESegmentor:
    """Build a model from a checkpoint, with the config it carries unless ``config`` (a preset, YAML or
    config) overrides it; official checkpoints carry none and need one."""
    checkpoint = read_checkpoint(path, allow_pickle)
    check_finite(checkpoint.state_dict, path)
    resolved = load_config(config) if config is not None else checkpoint.config
    if resolved is None:
        raise ValueError(f"{path} carries no config (an official checkpoint): pass config= "
                         "(e.g. 'L' for the released Point-MoE-L)")
    model = PointMoESegmentor(resolved)
    try:
        check_state_dict(model, checkpoint.state_dict)
    except CheckpointKeyError as error:
        if config is None or checkpoint.config is None:
            raise
        raise CheckpointKeyError(f"{error}; the checkpoint carries its own config {checkpoint.config.name!r}: "
                                 "give no config to use it") from None
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return model


