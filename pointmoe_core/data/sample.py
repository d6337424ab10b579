"""The one sample layout every dataset yields, and the dataset base class.

A sample is a plain dict (Pointcept's ``data_dict``):

* ``coord`` (N, 3) float32, metres;
* feature parts, each optional: ``color`` (N, 3) float32 in [0, 255] (``NormalizeColor`` maps it
  to [-1, 1]), ``normal`` (N, 3) float32, ``strength`` (N, 1) float32 (LiDAR intensity);
* ``segment`` (N,) int64 class index into the dataset's ``class_names``, ``IGNORE_INDEX`` = -1
  where unlabelled; ``instance`` (N,) int64 when the source has it;
* ``dataset`` (str): the dataset's name, for metrics and class masks only, never model input;
* ``name`` (str): the scene id.

Transforms add ``grid_coord``, ``grid_size``, ``feat`` and ``inverse``/``index`` (see
:mod:`.transforms`). Every ndarray whose first dimension is N is a per-point field.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

IGNORE_INDEX = -1

Sample = dict[str, Any]
Transform = Callable[[Sample, np.random.Generator], Any]
"""A transform takes a sample and the random generator to draw from (see ``transforms.Compose``)."""


@dataclass(frozen=True)
class InputSpec:
    """What the model reads from a dataset (the official configs' ``feat_keys`` and grid size).

    ``feat_keys`` name the sample parts concatenated into ``feat``; a part may repeat.
    ``outdoor`` selects the LiDAR augmentation pipeline (no colour, clipped range).
    """

    feat_keys: tuple[str, ...]
    grid_size: float
    outdoor: bool


INDOOR = InputSpec(feat_keys=("color", "normal"), grid_size=0.02, outdoor=False)
OUTDOOR = InputSpec(feat_keys=("coord", "strength", "strength", "strength"), grid_size=0.05, outdoor=True)
"""LiDAR input of the point_moe fork: feat = [x, y, z, r, r, r], the intensity r repeated three
times so that indoor (colour + normal) and outdoor clouds both give 6 input channels."""


def make_sample(
    coord: np.ndarray,
    *,
    dataset: str,
    name: str,
    segment: np.ndarray | None = None,
    color: np.ndarray | None = None,
    normal: np.ndarray | None = None,
    strength: np.ndarray | None = None,
    instance: np.ndarray | None = None,
) -> Sample:
    """A sample dict with the dtypes and shapes above; parts given as None are left out."""
    coord = np.ascontiguousarray(coord, dtype=np.float32)
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise ValueError(f"coord must be (N, 3), got {coord.shape}")
    n = len(coord)
    sample: Sample = {"coord": coord}
    for key, value, width in (("color", color, 3), ("normal", normal, 3), ("strength", strength, 1)):
        if value is not None:
            sample[key] = np.ascontiguousarray(value, dtype=np.float32).reshape(n, width)
    if segment is None:
        segment = np.full(n, IGNORE_INDEX)
    for key, value in (("segment", segment), ("instance", instance)):
        if value is not None:
            value = np.asarray(value)
            if not np.issubdtype(value.dtype, np.integer) or value.shape != (n,):
                raise ValueError(f"{key} must be an integer array of shape ({n},), got {value.dtype} {value.shape}")
            sample[key] = value.astype(np.int64)
    sample["dataset"] = dataset
    sample["name"] = name
    return sample


class SegDataset(Dataset, ABC):
    """Base of every dataset: ``load(i)`` reads scene i, ``get(i, rng)`` also applies the transform.

    Subclasses set ``name`` (the sample's ``dataset``), ``class_names`` and ``input_spec``.
    ``__getitem__`` draws augmentations from a generator
    seeded by ``(seed, index)``, so a sample depends on nothing but its index; the mixed-dataset
    sampler calls ``get`` with a seed of its own per draw instead.
    """

    name: str = "dataset"
    class_names: tuple[str, ...] = ()
    input_spec: InputSpec = INDOOR

    def __init__(self, transform: Transform | None = None, seed: int = 0) -> None:
        self.transform = transform
        self.seed = seed

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> Sample:
        """Scene ``index`` as a sample dict, untransformed."""

    def get(self, index: int, rng: np.random.Generator) -> Any:
        """Scene ``index`` (taken modulo the length, like Pointcept's ``loop``) through the transform."""
        sample = self.load(index % len(self))
        return sample if self.transform is None else self.transform(sample, rng)

    def __getitem__(self, index: int) -> Any:
        return self.get(index, np.random.default_rng((self.seed, index)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, scenes={len(self)}, classes={len(self.class_names)})"
