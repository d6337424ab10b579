"""Pointcept preprocessed indoor datasets: ScanNet (20/200), S3DIS, Structured3D, Matterport3D.

Pointcept's preprocessing scripts write one folder per scene,
``<root>/<split>/<scene>/{coord,color,normal,segment,instance}.npy`` (ScanNet stores
``segment20.npy`` and ``segment200.npy`` instead of ``segment.npy``; Structured3D nests
``<split>/scene_*/room_*``; S3DIS uses the areas ``Area_1`` .. ``Area_6`` as splits). Labels are
already class indices with -1 = ignore.

``convert_mmdet3d_scene`` turns an mmdetection3d-style scene (``points/<scene>.bin`` float32
xyzrgb, ``semantic_mask/<scene>.bin`` int64, ``instance_mask/<scene>.bin`` int64) into such a
folder; ``NYU40_TO_SCANNET20`` maps ScanNet's NYU40 ids to the 20 benchmark classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .sample import IGNORE_INDEX, Sample, SegDataset, Transform, make_sample
from .taxonomy import (
    MATTERPORT3D_CLASSES,
    S3DIS_CLASSES,
    SCANNET20_CLASSES,
    SCANNET20_NYU40_IDS,
    SCANNET200_CLASSES,
    STRUCTURED3D_CLASSES,
)

NYU40_TO_SCANNET20 = np.full(256, IGNORE_INDEX, np.int64)
NYU40_TO_SCANNET20[list(SCANNET20_NYU40_IDS)] = np.arange(len(SCANNET20_NYU40_IDS))
"""Lookup table: NYU40 id -> ScanNet20 class index, -1 for the ids the benchmark ignores."""


class PointceptDataset(SegDataset):
    """Pointcept's DefaultDataset: every scene folder ``<root>/<split>/<scene_glob>``, sorted."""

    segment_file = "segment"
    scene_glob = "*"

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str] = "train",
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, seed)
        self.root = Path(root)
        splits = [split] if isinstance(split, str) else list(split)
        self.scenes = sorted(path for s in splits for path in (self.root / s).glob(self.scene_glob) if path.is_dir())
        if not self.scenes:
            raise FileNotFoundError(f"no {self.name} scenes in {self.root} for split {split!r}")

    def __len__(self) -> int:
        return len(self.scenes)

    def scene_name(self, folder: Path) -> str:
        return folder.name

    def load(self, index: int) -> Sample:
        folder = self.scenes[index]

        def array(stem: str) -> np.ndarray | None:
            path = folder / f"{stem}.npy"
            return np.load(path) if path.is_file() else None

        coord = array("coord")
        if coord is None:
            raise FileNotFoundError(f"{folder / 'coord.npy'} is missing")
        segment = array(self.segment_file)
        instance = array("instance")
        return make_sample(
            coord,
            dataset=self.name,
            name=self.scene_name(folder),
            segment=None if segment is None else segment.reshape(-1),
            color=array("color"),
            normal=array("normal"),
            instance=None if instance is None else instance.reshape(-1),
        )


class ScanNetDataset(PointceptDataset):
    name = "ScanNet"
    class_names = SCANNET20_CLASSES
    segment_file = "segment20"


class ScanNet200Dataset(PointceptDataset):
    name = "ScanNet200"
    class_names = SCANNET200_CLASSES
    segment_file = "segment200"


class S3DISDataset(PointceptDataset):
    """S3DIS; the usual split trains on areas 1-4 and 6 and validates on ``"Area_5"``."""

    name = "S3DIS"
    class_names = S3DIS_CLASSES

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[str] = ("Area_1", "Area_2", "Area_3", "Area_4", "Area_6"),
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(root, split, transform, seed)

    def scene_name(self, folder: Path) -> str:
        return f"{folder.parent.name}-{folder.name}"


class Structured3DDataset(PointceptDataset):
    name = "Structured3D"
    class_names = STRUCTURED3D_CLASSES
    scene_glob = "scene_*/room_*"

    def scene_name(self, folder: Path) -> str:
        return f"{folder.parent.name}_{folder.name}"


class Matterport3DDataset(PointceptDataset):
    name = "Matterport3D"
    class_names = MATTERPORT3D_CLASSES


def convert_mmdet3d_scene(
    src_root: str | Path,
    scene: str,
    dst_scene_dir: str | Path,
    label_map: np.ndarray | None = None,
    segment_file: str = "segment",
) -> Path:
    """Write an mmdetection3d scene as a Pointcept scene folder (coord, color, segment, instance .npy).

    ``label_map`` is a lookup table applied to the semantic ids (``NYU40_TO_SCANNET20`` for
    ScanNet, whose Pointcept folder then wants ``segment_file="segment20"``); without it the ids
    are written as they are (S3DIS masks already hold its 13 class indices).
    """
    src_root, dst = Path(src_root), Path(dst_scene_dir)
    points = np.fromfile(src_root / "points" / f"{scene}.bin", dtype=np.float32).reshape(-1, 6)
    semantic = np.fromfile(src_root / "semantic_mask" / f"{scene}.bin", dtype=np.int64)
    if label_map is not None:
        semantic = label_map[semantic]
    dst.mkdir(parents=True, exist_ok=True)
    np.save(dst / "coord.npy", points[:, :3])
    np.save(dst / "color.npy", points[:, 3:6])
    np.save(dst / f"{segment_file}.npy", semantic.astype(np.int64))
    instance_path = src_root / "instance_mask" / f"{scene}.bin"
    if instance_path.is_file():
        np.save(dst / "instance.npy", np.fromfile(instance_path, dtype=np.int64))
    return dst
