"""SemanticKITTI from its raw layout: ``sequences/NN/velodyne/*.bin`` + ``sequences/NN/labels/*.label``.

Labels go through the ``learning_map`` of semantic-kitti.yaml (raw id -> 0..19, 0 = unlabeled),
then shift by one as Pointcept does: unlabeled becomes -1 (ignore) and the 19 classes 0..18.
The intensity (remission, already in [0, 1]) becomes ``strength``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from pointmoe_core.io import load_learning_map, read_kitti_bin, read_kitti_label

from .sample import OUTDOOR, Sample, SegDataset, Transform, make_sample
from .taxonomy import SEMANTIC_KITTI_CLASSES

SEMANTIC_KITTI_SPLITS = {
    "train": (0, 1, 2, 3, 4, 5, 6, 7, 9, 10),
    "val": (8,),
    "test": tuple(range(11, 22)),
}

SEMANTIC_KITTI_LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9,
    44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19,
    99: 0, 252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}
"""``learning_map`` of the official semantic-kitti.yaml (moving classes merged into static ones)."""


class SemanticKITTIDataset(SegDataset):
    """Scans of the split's sequences under ``root`` (the folder holding ``sequences/``).

    ``split`` is "train", "val", "test" or a list of sequence numbers; sequences absent on disk
    are skipped, so a partial download works. ``learning_map`` is a mapping or the path of a
    semantic-kitti.yaml; scans without a .label file get all-ignore labels.
    """

    name = "SemanticKITTI"
    class_names = SEMANTIC_KITTI_CLASSES
    input_spec = OUTDOOR

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[int] = "train",
        learning_map: Mapping[int, int] | str | Path | None = None,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, seed)
        self.root = Path(root)
        if learning_map is None:
            learning_map = SEMANTIC_KITTI_LEARNING_MAP
        elif isinstance(learning_map, (str, Path)):
            learning_map = load_learning_map(learning_map)
        self.learning_map = dict(learning_map)
        sequences = SEMANTIC_KITTI_SPLITS[split] if isinstance(split, str) else split
        folders = [self.root / "sequences" / f"{int(seq):02d}" / "velodyne" for seq in sequences]
        self.scans = sorted(scan for folder in folders for scan in folder.glob("*.bin"))
        if not self.scans:
            raise FileNotFoundError(f"no SemanticKITTI scans under {self.root}/sequences for split {split!r}")

    def __len__(self) -> int:
        return len(self.scans)

    def load(self, index: int) -> Sample:
        scan_path = self.scans[index]
        scan = read_kitti_bin(scan_path)
        label_path = scan_path.parent.parent / "labels" / f"{scan_path.stem}.label"
        segment = None
        if label_path.is_file():
            semantic, _ = read_kitti_label(label_path, self.learning_map)
            segment = semantic - 1  # Pointcept's shift: unlabeled 0 -> ignore -1
        return make_sample(
            scan.xyz,
            dataset=self.name,
            name=f"{scan_path.parent.parent.name}_{scan_path.stem}",
            segment=segment,
            strength=scan.intensity,
        )
