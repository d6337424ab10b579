"""nuScenes-lidarseg: ``.pcd.bin`` sweeps (float32 x, y, z, intensity, ring) + ``lidarseg/*.bin`` uint8 labels.

Layout as Pointcept uses it: ``<root>/raw`` is the nuScenes download (``samples/LIDAR_TOP``,
``lidarseg/v1.0-trainval``) and ``<root>/info/nuscenes_infos_10sweeps_<split>.pkl`` is the
scene list written by Pointcept's ``preprocess_nuscenes_info.py``: a list of records with
``lidar_path``, ``lidar_token`` and, for labelled splits, ``gt_segment_path``, the paths relative
to ``<root>/raw``. A JSON file holding the same list of records works too (``info_path``).

The 32 raw lidarseg classes map to the 16 challenge classes, the rest to -1; intensity
(0..255) is divided by 255 into ``strength``, as in the point_moe fork. Only the keyframe sweep
is read (no multi-sweep accumulation).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from .sample import IGNORE_INDEX, OUTDOOR, Sample, SegDataset, Transform, make_sample
from .taxonomy import NUSCENES_CLASSES

NUSCENES_RAW_TO_CLASS = {
    2: 6, 3: 6, 4: 6, 6: 6,  # human.pedestrian.{adult, child, construction_worker, police_officer}
    9: 0,  # movable_object.barrier
    12: 7,  # movable_object.trafficcone
    14: 1, 15: 2, 16: 2, 17: 3, 18: 4, 21: 5, 22: 8, 23: 9,  # vehicle.*
    24: 10, 25: 11, 26: 12, 27: 13,  # flat.{driveable_surface, other, sidewalk, terrain}
    28: 14, 30: 15,  # static.{manmade, vegetation}
}
"""The 32 -> 16 lidarseg learning map. Raw ids absent here are ignored: noise, animal, personal
mobility, stroller, wheelchair, debris, pushable/pullable, bicycle rack, ambulance, police car,
static.other and the ego vehicle."""

NUSCENES_LEARNING_MAP = np.full(32, IGNORE_INDEX, np.int64)
NUSCENES_LEARNING_MAP[list(NUSCENES_RAW_TO_CLASS)] = list(NUSCENES_RAW_TO_CLASS.values())


def load_info(info_path: str | Path) -> list[dict]:
    """The scene records of a Pointcept info .pkl or a JSON list of the same records."""
    info_path = Path(info_path)
    if info_path.suffix == ".json":
        return json.loads(info_path.read_text())
    with open(info_path, "rb") as f:
        return pickle.load(f)


class NuScenesDataset(SegDataset):
    name = "nuScenes"
    class_names = NUSCENES_CLASSES
    input_spec = OUTDOOR

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        info_path: str | Path | None = None,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, seed)
        self.root = Path(root)
        self.records = load_info(info_path or self.root / "info" / f"nuscenes_infos_10sweeps_{split}.pkl")
        if not self.records:
            raise FileNotFoundError(f"the nuScenes info file for split {split!r} lists no scans")

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> Sample:
        record = self.records[index]
        points = np.fromfile(self.root / "raw" / record["lidar_path"], dtype=np.float32).reshape(-1, 5)
        segment = None
        if record.get("gt_segment_path"):
            raw = np.fromfile(self.root / "raw" / record["gt_segment_path"], dtype=np.uint8)
            segment = NUSCENES_LEARNING_MAP[raw]
        return make_sample(
            points[:, :3],
            dataset=self.name,
            name=record["lidar_token"],
            segment=segment,
            strength=points[:, 3] / 255.0,
        )
