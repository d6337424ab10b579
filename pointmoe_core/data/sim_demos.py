"""Fused tabletop clouds rendered by our simulator, read from ``pointmoe sim demos`` folders.

Every ``.npz`` episode file under ``root`` (searched recursively, sorted) holds the fused,
labelled cloud of each frame (``xyz``, ``rgb``, ``label`` = index into the file's
``class_names``, ``frame_offsets``); each frame of each episode is one sample. The simulator's
46 classes (``table``, ``robot``, ``"<size> <color> block"``, ``"<color> bowl"``,
``"<color> zone"``) are mapped to one of ``SIM_CLASS_SETS``:

* ``coarse`` (default): ``table, robot, block, bowl, zone``: what a planner needs to find the
  objects (their colour comes from the points' RGB), and what the sim's ground truth measures
  without depending on the colour split;
* ``color``: ``"<color> <kind>"`` for blocks, bowls and zones (the block size dropped), plus
  ``table`` and ``robot``.

Splits are by episode: ``seeds: [first, stop)`` keeps only the episodes whose seed lies in that
range, ``tasks`` only the named tasks, so a held-out set is a disjoint seed range (or a folder
written with another ``--seed``). The input is colour + coordinate (``SIM_TABLETOP_INPUT``); the
default grid is 1 cm: 4 cm blocks span four voxels.

YAML: ``{kind: sim_demos, root: [runs/seg_sim_demos/train], classes: coarse}``; on a command
line ``sim_demos:root=runs/seg_sim_demos/heldout``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .sample import IGNORE_INDEX, InputSpec, Sample, SegDataset, Transform, make_sample

SIM_KINDS = ("table", "robot", "block", "bowl", "zone")
SIM_COLORS = ("blue", "red", "green", "orange", "yellow", "purple", "pink", "cyan", "brown", "white", "gray")
SIM_CLASS_SETS: dict[str, tuple[str, ...]] = {
    "coarse": SIM_KINDS,
    "color": ("table", "robot") + tuple(f"{color} {kind}" for kind in ("block", "bowl", "zone")
                                        for color in SIM_COLORS),
}
SIM_TABLETOP_INPUT = InputSpec(feat_keys=("color", "coord"), grid_size=0.01, outdoor=False)
"""Colour and position: after the pipeline's ``CenterShift`` the coordinate's z is the height
above the table (the robot is the only thing 30 cm up), and no normals are needed, so a
``Segmenter`` whose ``InputConfig`` has these ``feat_keys`` sees exactly the training features
(its normal estimation orients normals towards the world origin, which lies in the table plane)."""


def sim_class_name(name: str, classes: str = "coarse") -> str | None:
    """The ``classes`` set's name of a simulator class name, or None when it has none."""
    words = str(name).split()
    if not words:
        return None
    kind = words[-1]
    if kind not in SIM_KINDS:
        return None
    if classes == "coarse" or kind in ("table", "robot"):
        return kind
    color = words[-2] if len(words) >= 2 else None
    return f"{color} {kind}" if color in SIM_COLORS else None


def sim_label_map(source_names: Sequence[str], classes: str = "coarse") -> np.ndarray:
    """(len(source_names),) int64: each simulator class id -> index into ``SIM_CLASS_SETS[classes]``
    (-1 where the name has no class there)."""
    targets = {name: index for index, name in enumerate(SIM_CLASS_SETS[classes])}
    return np.array([targets.get(sim_class_name(name, classes), IGNORE_INDEX) for name in source_names],
                    dtype=np.int64)


class SimDemoDataset(SegDataset):
    """Each frame of each demo episode under ``root`` (a folder or a list of folders) as a sample."""

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        classes: str = "coarse",
        seeds: Sequence[int] | None = None,
        tasks: Sequence[str] | str | None = None,
        name: str = "sim_tabletop",
        grid_size: float = SIM_TABLETOP_INPUT.grid_size,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, seed)
        if classes not in SIM_CLASS_SETS:
            raise ValueError(f"classes must be one of {sorted(SIM_CLASS_SETS)}, got {classes!r}")
        roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
        if isinstance(tasks, str):
            tasks = [tasks]
        self.name = name
        self.classes = classes
        self.class_names = SIM_CLASS_SETS[classes]
        self.input_spec = InputSpec(SIM_TABLETOP_INPUT.feat_keys, float(grid_size), outdoor=False)
        self.frames: list[tuple[Path, int, int, int]] = []  # (file, frame, start, stop) per frame
        files = sorted({path for r in roots for path in Path(r).rglob("*.npz")})
        if not files:
            raise FileNotFoundError(f"no demo .npz files under {', '.join(map(str, roots))}")
        for path in files:
            with np.load(path) as arrays:
                if "frame_offsets" not in arrays or "label" not in arrays:
                    continue  # not a `pointmoe sim demos` file
                if seeds is not None and not (seeds[0] <= int(arrays["seed"]) < seeds[1]):
                    continue
                if tasks is not None and str(arrays["task"]) not in tasks:
                    continue
                offsets = arrays["frame_offsets"].astype(np.int64)
            self.frames += [(path, frame, int(a), int(b))
                            for frame, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])) if b > a]
        if not self.frames:
            raise FileNotFoundError(f"no demo frames under {', '.join(map(str, roots))} "
                                    f"(seeds {seeds}, tasks {tasks})")
        self._cache: tuple[Path, dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def _arrays(self, path: Path) -> dict[str, np.ndarray]:
        """The file's clouds, kept for the next frame (frames of a file are neighbours in the index)."""
        if self._cache is None or self._cache[0] != path:
            with np.load(path) as arrays:
                data = {key: arrays[key] for key in ("xyz", "rgb", "label", "class_names")}
            data["map"] = sim_label_map(data.pop("class_names"), self.classes)
            self._cache = (path, data)
        return self._cache[1]

    def load(self, index: int) -> Sample:
        path, frame, start, stop = self.frames[index]
        data = self._arrays(path)
        label = data["label"][start:stop].astype(np.int64)
        segment = np.full(len(label), IGNORE_INDEX, np.int64)
        known = (label >= 0) & (label < len(data["map"]))
        segment[known] = data["map"][label[known]]
        return make_sample(data["xyz"][start:stop], dataset=self.name, name=f"{path.stem}#{frame}",
                           segment=segment, color=data["rgb"][start:stop])
