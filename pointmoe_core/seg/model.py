"""The Point-MoE segmentation model: backbone + language-guided head, its configs and presets.

The official model is point_moe's ``PPTMoE-v0m0`` (``PointPromptMoETraining``): a
``PTMoE-v0m0`` backbone, the PPT language-guided head over CLIP embeddings of every dataset's
class names, and per-dataset lists of valid classes (``conditions`` / ``valid_index``; the
dataset is never fed to the router). ``PointMoESegmentor`` is that model with ``backbone`` and
``head`` submodules; :mod:`.convert` maps its state dict to and from the official names.

Configs are plain dataclasses (``SegmentorConfig`` nests ``BackboneConfig``, ``HeadConfig``,
``TextConfig``, ``InputConfig``) that load from and save to YAML. Presets:

* ``tiny``: a small Point-MoE (4 experts, top-2) that trains on 2 CPU cores;
* ``base``: PTv3-base (Pointcept's PT-v3m1 base config, dense W_o) with the language head;
* ``L``: Point-MoE-L, the released model: PTv3-base widths, MoE at W_o, 8 experts, top-2, the
  indoor+outdoor class table of ``configs/point_moe/indoor+outdoor.py``.

``count_parameters`` reports total and active (top-k of E experts per MoE layer) parameters.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml
from torch import nn

from ..common.config import YamlConfig
from .head import CLIP_LOGIT_SCALE, LanguageGuidedHead, LinearHead
from .moe import SparseMoE
from .ptv3 import BackboneConfig, PointTransformerMoE
from .structure import Point
from .text import TextConfig

FEATURE_CHANNELS = {"coord": 3, "color": 3, "normal": 3, "strength": 1}
HEAD_TYPES = ("language", "linear")


@dataclass
class InputConfig(YamlConfig):
    """How a raw cloud becomes backbone input (the official data pipeline at test time).

    ``feat_keys`` name the per-point parts concatenated into ``feat`` (a part may repeat: the
    fork feeds LiDAR as coord + strength x 3). Indoor: colour + normal at 2 cm with the cloud
    centred (Pointcept's ``CenterShift``); outdoor: coord + strength at 5 cm, optionally clipped
    to ``point_clip`` = (x0, y0, z0, x1, y1, z1) like the official ``PointClip``.
    """

    feat_keys: tuple[str, ...] = ("color", "normal")
    grid_size: float = 0.02
    center_shift: bool = True
    point_clip: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        self.feat_keys = tuple(self.feat_keys)
        unknown = sorted(set(self.feat_keys) - set(FEATURE_CHANNELS))
        if unknown:
            raise ValueError(f"unknown feat_keys {unknown}; choose from {sorted(FEATURE_CHANNELS)}")
        if self.point_clip is not None:
            self.point_clip = tuple(float(v) for v in self.point_clip)
            if len(self.point_clip) != 6:
                raise ValueError("point_clip needs 6 numbers: x0, y0, z0, x1, y1, z1")
        if self.grid_size <= 0:
            raise ValueError(f"grid_size must be positive, got {self.grid_size}")

    @property
    def in_channels(self) -> int:
        return sum(FEATURE_CHANNELS[key] for key in self.feat_keys)


INDOOR_INPUT = InputConfig()
OUTDOOR_INPUT = InputConfig(feat_keys=("coord", "strength", "strength", "strength"), grid_size=0.05,
                            center_shift=False, point_clip=(-35.2, -35.2, -4.0, 35.2, 35.2, 2.0))


@dataclass
class HeadConfig(YamlConfig):
    """``type``: "language" (cosine against text embeddings of width ``text_dim``) or "linear"."""

    type: str = "language"
    text_dim: int = 384
    logit_scale: float = CLIP_LOGIT_SCALE
    learnable_scale: bool = False

    def __post_init__(self) -> None:
        if self.type not in HEAD_TYPES:
            raise ValueError(f"head type must be one of {HEAD_TYPES}, got {self.type!r}")


@dataclass
class SegmentorConfig(YamlConfig):
    """Everything needed to rebuild a segmentation model and feed it."""

    config_name = "segmentor config"

    name: str = "custom"
    class_names: tuple[str, ...] = ()
    # dataset name -> indices of its classes in class_names (the official conditions/valid_index)
    valid_classes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    text: TextConfig = field(default_factory=TextConfig)
    input: InputConfig = field(default_factory=InputConfig)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        if not self.class_names:
            raise ValueError("a segmentor config needs class_names")
        self.valid_classes = {name: tuple(int(i) for i in idx) for name, idx in self.valid_classes.items()}
        for dataset, idx in self.valid_classes.items():
            bad = [i for i in idx if not 0 <= i < len(self.class_names)]
            if bad or not idx:
                raise ValueError(f"valid_classes[{dataset!r}] must be non-empty indices into class_names, bad: {bad}")
        if self.input.in_channels != self.backbone.in_channels:
            raise ValueError(f"input feat_keys {self.input.feat_keys} give {self.input.in_channels} channels "
                             f"but the backbone takes in_channels={self.backbone.in_channels}")
        if self.backbone.cls_mode:
            raise ValueError("segmentation needs the decoder: backbone.cls_mode must be False")

    # ---- dict / YAML ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain lists instead of tuples: checkpoints store this dict as JSON (safetensors metadata)."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.dump(self.to_dict(), Dumper=_FlowListDumper, sort_keys=False, width=100)
        if path is not None:
            Path(path).write_text(text)
        return text


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so YAML and JSON hold plain types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _FlowListDumper(yaml.SafeDumper):
    """Lists of numbers on one line (``[32, 64, 128]``), names one per line."""


_FlowListDumper.add_representer(list, lambda dumper, value: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", value, flow_style=all(isinstance(v, (int, float)) for v in value)))


# =============================================================================================
# Presets
# =============================================================================================
# class_name of point_moe's configs/point_moe/indoor.py (37) and indoor+outdoor.py (94; names of
# different datasets repeat on purpose, each dataset indexes its own rows).
POINT_MOE_INDOOR_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door",
    "window", "bookshelf", "bookcase", "picture", "counter", "desk", "shelves", "curtain",
    "dresser", "pillow", "mirror", "ceiling", "refrigerator", "television", "shower curtain", "nightstand",
    "toilet", "sink", "lamp", "bathtub", "garbagebin", "board", "beam", "column",
    "clutter", "otherstructure", "otherfurniture", "otherprop", "other",
)
POINT_MOE_OUTDOOR_CLASSES = (
    # SemanticKITTI
    "car", "bicycle", "motorcycle", "truck", "other vehicle",
    "person", "person who rides a bicycle", "person who rides a motorcycle", "road", "parking",
    "path for pedestrians at the side of a road", "other ground", "building", "fence", "vegetation",
    "trunk", "terrain", "pole", "traffic sign",
    # nuScenes
    "barrier", "bicycle", "bus", "car", "construction vehicle",
    "motorcycle", "pedestrian", "traffic cone", "trailer", "truck",
    "path suitable or safe for driving", "other flat", "sidewalk", "terrain", "man made", "vegetation",
    # Waymo
    "car", "truck", "bus", "other vehicle", "person who rides a motorcycle",
    "person who rides a bicycle", "pedestrian", "sign", "traffic light", "pole",
    "construction cone", "bicycle", "motorcycle", "building", "vegetation",
    "tree trunk", "curb", "road", "lane marker", "other ground", "horizontal surface that can not drive",
    "surface when pedestrians most likely to walk on",
)
POINT_MOE_INDOOR_VALID = {
    "Structured3D": (0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23, 25, 26, 33, 34, 35),
    "ScanNet": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 20, 22, 24, 25, 27, 34),
    "S3DIS": (0, 1, 4, 5, 6, 7, 8, 10, 19, 29, 30, 31, 32),
    "Matterport3D": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 20, 22, 24, 25, 27, 19, 36),
}
POINT_MOE_OUTDOOR_VALID = {
    "SemanticKITTI": tuple(range(37, 56)),
    "nuScenes": tuple(range(56, 72)),
    "Waymo": tuple(range(72, 94)),
}
TINY_CLASSES = ("floor", "wall", "ceiling", "table", "chair", "shelf", "object", "person")

# Pointcept's PTv3 base / Point-MoE-L backbone: the BackboneConfig defaults with all four curves
# and 1024-point patches, as in configs/point_moe/*.py.
_BASE_WIDTHS = dict(in_channels=6, enc_patch_size=(1024,) * 5, dec_patch_size=(1024,) * 4, drop_path=0.3)
# open_clip has no OpenAI-weights file here: text.weights must be set to a local checkpoint of
# the model that produced the class table (CLIP ViT-B/16, QuickGELU for the OpenAI weights).
_CLIP_B16 = dict(source="open_clip", model="ViT-B-16-quickgelu")


def _tiny() -> SegmentorConfig:
    return SegmentorConfig(
        name="tiny",
        class_names=TINY_CLASSES,
        backbone=BackboneConfig(
            in_channels=6, stride=(2, 2, 2, 2),
            enc_depths=(1, 1, 1, 1, 1), enc_channels=(16, 32, 64, 128, 128),
            enc_num_head=(1, 2, 4, 8, 8), enc_patch_size=(128,) * 5,
            dec_depths=(1, 1, 1, 1), dec_channels=(32, 32, 64, 128),
            dec_num_head=(2, 2, 4, 8), dec_patch_size=(128,) * 4,
            mlp_ratio=2.0, drop_path=0.1, num_experts=4, top_k=2, aux_loss_alpha=0.001,
        ),
        head=HeadConfig(text_dim=384),
        text=TextConfig(source="minilm"),
        input=InputConfig(),
    )


def _edge() -> SegmentorConfig:
    """A Point-MoE for one CPU core: nothing but the stem runs at the input resolution.

    Against ``tiny``: the first pooling has stride 4 (PTv3's grid pooling merges 4^3 cells), no
    block at full resolution (``enc_depths[0] = dec_depths[0] = 0``: the stem, the skip and the
    head carry the fine detail), a 3^3 stem, four stages up to 64 channels, 64-point attention
    patches and top-1 of 4 experts with hidden width = channels. 0.54 M parameters; on one core it
    labels a 30k-point LiDAR sweep at 5 cm ~4x faster than ``tiny`` (benchmarks/RESULTS.md).
    """
    return SegmentorConfig(
        name="edge",
        class_names=TINY_CLASSES,
        backbone=BackboneConfig(
            in_channels=6, stride=(4, 2, 2), stem_kernel=3,
            enc_depths=(0, 1, 1, 1), enc_channels=(16, 32, 48, 64),
            enc_num_head=(1, 2, 3, 4), enc_patch_size=(64,) * 4,
            dec_depths=(0, 1, 1), dec_channels=(32, 32, 48),
            dec_num_head=(2, 2, 3), dec_patch_size=(64,) * 3,
            mlp_ratio=2.0, drop_path=0.1, num_experts=4, top_k=1, moe_hidden_ratio=1.0, aux_loss_alpha=0.001,
        ),
        head=HeadConfig(text_dim=384),
        text=TextConfig(source="minilm"),
        input=InputConfig(),
    )


def _base() -> SegmentorConfig:
    return SegmentorConfig(
        name="base",
        class_names=POINT_MOE_INDOOR_CLASSES,
        valid_classes=POINT_MOE_INDOOR_VALID,
        backbone=BackboneConfig(moe_placement="none", **_BASE_WIDTHS),
        head=HeadConfig(text_dim=512),
        text=TextConfig(**_CLIP_B16),
        input=InputConfig(),
    )


def _large() -> SegmentorConfig:
    return SegmentorConfig(
        name="L",
        class_names=POINT_MOE_INDOOR_CLASSES + POINT_MOE_OUTDOOR_CLASSES,
        valid_classes={**POINT_MOE_INDOOR_VALID, **POINT_MOE_OUTDOOR_VALID},
        backbone=BackboneConfig(moe_placement="proj", num_experts=8, top_k=2, moe_hidden_ratio=2.0,
                                moe_act="relu", aux_loss_alpha=0.001, **_BASE_WIDTHS),
        head=HeadConfig(text_dim=512),
        text=TextConfig(**_CLIP_B16),
        input=InputConfig(),
    )


PRESETS = {"tiny": _tiny, "edge": _edge, "base": _base, "L": _large}


def load_config(config: str | Path | SegmentorConfig) -> SegmentorConfig:
    """A preset name (``tiny``, ``edge``, ``base``, ``L``), a YAML file, or a config (returned as is)."""
    if isinstance(config, SegmentorConfig):
        return config
    if str(config) in PRESETS:
        return PRESETS[str(config)]()
    path = Path(config)
    if path.is_file():
        return SegmentorConfig.from_yaml(path)
    raise FileNotFoundError(f"{config!r} is neither a preset ({sorted(PRESETS)}) nor a YAML file")


# =============================================================================================
# Model
# =============================================================================================
class PointMoESegmentor(nn.Module):
    """Backbone + head: ``forward(data) -> (N, K)`` logits over ``config.class_names``."""

    def __init__(self, config: SegmentorConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = PointTransformerMoE(config.backbone)
        num_classes = len(config.class_names)
        if config.head.type == "language":
            self.head: LanguageGuidedHead | LinearHead = LanguageGuidedHead(
                self.backbone.out_channels, config.head.text_dim, num_classes,
                config.head.logit_scale, config.head.learnable_scale)
        else:
            self.head = LinearHead(self.backbone.out_channels, num_classes)

    def forward(
        self,
        data: Point | Mapping[str, Any],
        class_mask: torch.Tensor | None = None,
        text_embedding: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_routing: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (N, K) in input order.

        ``class_mask``: (K,) or per-cloud (B, K) valid classes (see ``class_mask_for``);
        ``text_embedding``: (K', D) class table replacing the stored one (language head only);
        ``generator``: feeds the backbone's order shuffles (they happen in eval too);
        ``return_routing``: also return each MoE layer's top-k experts per point
        (``PointTransformerMoE.point_routing``), as ``(logits, routing)``.
        """
        point = self.backbone(data, generator=generator)
        if text_embedding is None:
            logits = self.head(point.feat, class_mask, point.batch)
        elif not isinstance(self.head, LanguageGuidedHead):
            raise ValueError("only the language-guided head takes a text_embedding")
        else:
            logits = self.head(point.feat, class_mask, point.batch, text_embedding=text_embedding)
        return (logits, self.backbone.point_routing(point)) if return_routing else logits

    def class_mask_for(self, datasets: Sequence[str]) -> torch.Tensor:
        """(B, K) bool: row b marks the valid classes of cloud b's dataset (``config.valid_classes``)."""
        unknown = sorted(set(datasets) - set(self.config.valid_classes))
        if unknown:
            raise KeyError(f"no valid_classes for datasets {unknown}; known: {sorted(self.config.valid_classes)}")
        mask = torch.zeros(len(datasets), len(self.config.class_names), dtype=torch.bool)
        for row, dataset in enumerate(datasets):
            mask[row, list(self.config.valid_classes[dataset])] = True
        return mask


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``total`` parameters and ``active`` ones per token: each MoE layer runs top_k of its E experts."""
    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    for module in model.modules():
        if isinstance(module, SparseMoE):
            per_expert = sum(p.numel() for p in module.experts[0].parameters())
            inactive += (module.num_experts - module.top_k) * per_expert
    return {"total": total, "active": total - inactive}
