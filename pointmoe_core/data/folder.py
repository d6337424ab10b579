"""A plain folder of users' own clouds: every ``.ply``, ``.pcd`` and ``.npz`` file in it, sorted.

PLY/PCD are read with ``pointmoe_core.io.read_cloud``: colours, normals, intensity and an
integer ``label`` field are used when present. An ``.npz`` holds arrays named like the sample
parts (``coord``, ``color`` 0..255, ``normal``, ``strength``, ``segment``, ``instance``).
Labels are class indices into the ``class_names`` given; values outside them become -1
(ignore), and without class names every point is unlabelled (inference only).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pointmoe_core.io import read_cloud

from .sample import IGNORE_INDEX, INDOOR, InputSpec, Sample, SegDataset, Transform, make_sample

CLOUD_SUFFIXES = (".ply", ".pcd", ".npz")


class PointCloudFolder(SegDataset):
    def __init__(
        self,
        root: str | Path,
        class_names: Sequence[str] = (),
        name: str = "folder",
        input_spec: InputSpec = INDOOR,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, seed)
        self.root = Path(root)
        self.name = name
        self.class_names = tuple(class_names)
        self.input_spec = input_spec
        self.files = sorted(p for p in self.root.iterdir() if p.suffix.lower() in CLOUD_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"no {'/'.join(CLOUD_SUFFIXES)} files in {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Sample:
        path = self.files[index]
        if path.suffix.lower() == ".npz":
            with np.load(path) as arrays:
                parts = {key: arrays[key] for key in ("coord", "color", "normal", "strength", "segment", "instance")
                         if key in arrays}
        else:
            cloud = read_cloud(path)
            parts = {"coord": cloud.xyz, "color": cloud.rgb, "normal": cloud.normals,
                     "strength": cloud.intensity, "segment": cloud.label}
        segment = parts.pop("segment", None)
        if segment is not None:
            segment = segment.astype(np.int64)
            segment[(segment < 0) | (segment >= len(self.class_names))] = IGNORE_INDEX
        return make_sample(dataset=self.name, name=path.stem, segment=segment, **parts)
