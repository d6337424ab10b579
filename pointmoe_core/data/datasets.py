"""Every dataset loader by name, so configs can build them: ``build_dataset("ScanNet", root=..., split="val")``.

The loaders live one per source: :mod:`.pointcept` (ScanNet, ScanNet200, S3DIS, Structured3D,
Matterport3D), :mod:`.semantic_kitti`, :mod:`.nuscenes`, :mod:`.folder` (users' own clouds) and
:mod:`.synthetic` (generated domains, built with ``domain=`` one of ``SYNTHETIC_DOMAINS``).
"""
from __future__ import annotations

from typing import Any

from .folder import PointCloudFolder
from .nuscenes import NuScenesDataset
from .pointcept import (
    Matterport3DDataset,
    S3DISDataset,
    ScanNet200Dataset,
    ScanNetDataset,
    Structured3DDataset,
)
from .sample import SegDataset
from .semantic_kitti import SemanticKITTIDataset
from .synthetic import SYNTHETIC_DOMAINS, SyntheticDataset

DATASET_TYPES: dict[str, type[SegDataset]] = {
    "ScanNet": ScanNetDataset,
    "ScanNet200": ScanNet200Dataset,
    "S3DIS": S3DISDataset,
    "Structured3D": Structured3DDataset,
    "Matterport3D": Matterport3DDataset,
    "SemanticKITTI": SemanticKITTIDataset,
    "nuScenes": NuScenesDataset,
    "folder": PointCloudFolder,
    "synthetic": SyntheticDataset,
}


def build_dataset(kind: str, **kwargs: Any) -> SegDataset:
    """An instance of ``DATASET_TYPES[kind]``; for "synthetic", ``domain`` may be a name ("indoor")."""
    if kind not in DATASET_TYPES:
        raise ValueError(f"unknown dataset type {kind!r}; known: {sorted(DATASET_TYPES)}")
    if kind == "synthetic" and isinstance(kwargs.get("domain"), str):
        kwargs["domain"] = SYNTHETIC_DOMAINS[kwargs["domain"]]()
    return DATASET_TYPES[kind](**kwargs)
