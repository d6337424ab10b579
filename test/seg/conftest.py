"""Fixtures shared by the segmentation-model tests: a synthetic room scan and an offline tiny config."""
from dataclasses import replace

import numpy as np
import pytest

from pointmoe_core.seg.model import TINY_CLASSES, SegmentorConfig, load_config
from pointmoe_core.seg.text import TextConfig

ROOM_LABELS = {"floor": 0, "wall": 1, "table": 3}
EXTRA_NAMES = ("sofa", "lamp", "television")  # not in the tiny class table: "new" names at inference


@pytest.fixture(scope="session")
def make_room():
    """``make_room(num_points, seed)``: a scanned room (floor, two walls, a table) as raw sensor arrays:
    coord float32 (N, 3), color uint8 (N, 3), normal float32 (N, 3), label int64 (N,) into TINY_CLASSES."""

    def make(num_points: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        n = num_points // 4
        parts = [
            (np.c_[rng.uniform(0, 3, n), rng.uniform(0, 2.5, n), np.zeros(n)], (0, 0, 1), (150, 120, 90), "floor"),
            (np.c_[np.zeros(n), rng.uniform(0, 2.5, n), rng.uniform(0, 2, n)], (1, 0, 0), (230, 230, 225), "wall"),
            (np.c_[rng.uniform(0, 3, n), np.zeros(n), rng.uniform(0, 2, n)], (0, 1, 0), (225, 220, 200), "wall"),
            (np.c_[rng.uniform(1, 1.8, num_points - 3 * n), rng.uniform(1, 1.6, num_points - 3 * n),
                   np.full(num_points - 3 * n, 0.75)], (0, 0, 1), (90, 60, 30), "table"),
        ]
        coord = np.concatenate([p[0] for p in parts]).astype(np.float32)
        normal = np.concatenate([np.tile(p[1], (len(p[0]), 1)) for p in parts]).astype(np.float32)
        color = np.concatenate([np.clip(np.array(p[2]) + rng.normal(0, 8, (len(p[0]), 3)), 0, 255) for p in parts])
        label = np.concatenate([np.full(len(p[0]), ROOM_LABELS[p[3]]) for p in parts])
        return dict(coord=coord, color=color.astype(np.uint8), normal=normal, label=label.astype(np.int64))

    return make


@pytest.fixture(scope="session")
def offline_tiny_config(tmp_path_factory) -> SegmentorConfig:
    """The tiny preset with a precomputed random text table (instant; no text model to load).

    The table also holds EXTRA_NAMES, so predict can be asked for classes outside the model's table.
    """
    folder = tmp_path_factory.mktemp("text")
    names = TINY_CLASSES + EXTRA_NAMES
    np.save(folder / "table.npy", np.random.default_rng(0).normal(size=(len(names), 384)).astype(np.float32))
    (folder / "names.txt").write_text("\n".join(names) + "\n")
    text = TextConfig(source="precomputed", embeddings=str(folder / "table.npy"), names=str(folder / "names.txt"))
    return replace(load_config("tiny"), text=text)
