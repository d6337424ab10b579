"""Point cloud transforms on sample dicts (Pointcept's ``pointcept/datasets/transform.py``) and collation.

Every transform is a dataclass whose fields are its configuration, called as
``transform(sample, rng)``: random ones draw only from ``rng``, so a pipeline is reproducible
from a seed (Pointcept draws from the global ``np.random`` instead). Transforms return new
arrays and never write into the input's, so a cached scene is never altered.

``default_pipeline`` assembles the train and eval pipelines of the point_moe fork's configs;
``collate`` concatenates transformed samples into the batch dict the model takes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .preprocess import center_shift, estimate_normals, grid_sample, normalize_color
from .sample import InputSpec, Sample, Transform


def point_count(sample: Sample) -> int:
    return len(sample["coord"])


def select_points(sample: Sample, index: np.ndarray) -> Sample:
    """A copy of ``sample`` keeping the points ``index`` (a mask or indices) in every per-point field."""
    n = point_count(sample)
    return {key: value[index] if isinstance(value, np.ndarray) and value.ndim and len(value) == n else value
            for key, value in sample.items()}


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


@dataclass
class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    transforms: Sequence[Transform] = ()

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Any:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


@dataclass
class CenterShift:
    """Move the bounding-box centre to the origin in x and y; with ``apply_z``, the lowest point to z = 0."""

    apply_z: bool = True

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return {**sample, "coord": center_shift(sample["coord"], self.apply_z).astype(np.float32)}


@dataclass
class RandomRotate:
    """Rotate about ``axis`` by an angle drawn from ``angle`` (in units of pi, as Pointcept), with probability p.

    ``center`` None rotates about the bounding-box centre; normals rotate along.
    """

    angle: tuple[float, float] = (-1.0, 1.0)
    axis: str = "z"
    center: tuple[float, float, float] | None = None
    p: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        rot = _rotation(self.axis, rng.uniform(*self.angle) * np.pi)
        coord = sample["coord"]
        center = (coord.min(0) + coord.max(0)) / 2 if self.center is None else np.asarray(self.center)
        out = {**sample, "coord": ((coord - center) @ rot.T + center).astype(np.float32)}
        if "normal" in sample:
            out["normal"] = (sample["normal"] @ rot.T).astype(np.float32)
        return out


@dataclass
class RandomScale:
    """Scale coordinates by a factor from ``scale`` (one per axis when anisotropic)."""

    scale: tuple[float, float] = (0.9, 1.1)
    anisotropic: bool = False

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        factor = rng.uniform(*self.scale, size=3 if self.anisotropic else 1)
        return {**sample, "coord": (sample["coord"] * factor).astype(np.float32)}


@dataclass
class RandomFlip:
    """Mirror x, then independently y, each with probability p (normals too)."""

    p: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        sign = np.where(rng.random(2) < self.p, -1.0, 1.0)
        sign = np.array([sign[0], sign[1], 1.0], np.float32)
        out = {**sample, "coord": sample["coord"] * sign}
        if "normal" in sample:
            out["normal"] = sample["normal"] * sign
        return out


@dataclass
class RandomJitter:
    """Add Gaussian noise of std ``sigma`` to every coordinate, clipped to +-``clip``."""

    sigma: float = 0.005
    clip: float = 0.02

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        noise = np.clip(self.sigma * rng.standard_normal(sample["coord"].shape), -self.clip, self.clip)
        return {**sample, "coord": (sample["coord"] + noise).astype(np.float32)}


@dataclass
class PointClip:
    """Clamp coordinates into (x_min, y_min, z_min, x_max, y_max, z_max), as Pointcept does (no points dropped)."""

    point_cloud_range: tuple[float, ...] = (-35.2, -35.2, -4.0, 35.2, 35.2, 2.0)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        low, high = self.point_cloud_range[:3], self.point_cloud_range[3:]
        return {**sample, "coord": np.clip(sample["coord"], low, high).astype(np.float32)}


@dataclass
class GridSample:
    """Pointcept's GridSample: voxelise at ``grid_size`` and set ``grid_coord`` and ``grid_size``.

    * ``mode="train"``: keep one random point per voxel (returns a sample). With
      ``return_inverse``, ``inverse`` (N_original,) gives, for every input point, the row of the
      point kept in its voxel: predictions on the kept points map back with ``pred[inverse]``
      (valid until a later step selects or reorders points).
    * ``mode="test"``: return a list of fragments that together cover every point; fragment i
      keeps the i-th point of every voxel (cycling in voxels with fewer points), so each fragment
      is a complete voxelisation of the scene. ``index`` holds the input rows a fragment kept:
      accumulate per-fragment predictions into ``logits[index]``.
    """

    grid_size: float = 0.05
    mode: str = "train"
    return_inverse: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("train", "test"):
            raise ValueError(f"GridSample mode must be 'train' or 'test', got {self.mode!r}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample | list[Sample]:
        grid = grid_sample(sample["coord"], self.grid_size)
        if self.mode == "test":
            return [self._keep(sample, grid.grid_coord, grid.fragment(i)) for i in range(grid.num_fragments)]
        out = self._keep(sample, grid.grid_coord, grid.sample(rng))
        if self.return_inverse:
            out["inverse"] = grid.voxel  # kept rows are in voxel order: voxel v kept row v
        return out

    def _keep(self, sample: Sample, grid_coord: np.ndarray, index: np.ndarray) -> Sample:
        out = select_points(sample, index)
        out["grid_coord"] = grid_coord[index]
        out["grid_size"] = self.grid_size
        if self.mode == "test":
            out["index"] = index
        return out


@dataclass
class SphereCrop:
    """Keep at most ``point_max`` points (or ``sample_rate`` of them) nearest to a centre.

    The centre is a random point (``mode="random"``) or the middle row (``"center"``).
    """

    point_max: int = 80_000
    sample_rate: float | None = None
    mode: str = "random"

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        n = point_count(sample)
        budget = int(self.sample_rate * n) if self.sample_rate is not None else self.point_max
        if n <= budget:
            return sample
        coord = sample["coord"]
        center = coord[rng.integers(n)] if self.mode == "random" else coord[n // 2]
        distance = np.square(coord - center).sum(1)
        return select_points(sample, np.argpartition(distance, budget - 1)[:budget])


@dataclass
class ShufflePoint:
    """Shuffle the order of the points."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return select_points(sample, rng.permutation(point_count(sample)))


@dataclass
class NormalizeColor:
    """Colour [0, 255] -> [-1, 1] (``color / 127.5 - 1``, the point_moe fork's NormalizeColor)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if "color" not in sample:
            return sample
        return {**sample, "color": normalize_color(sample["color"])}


@dataclass
class EstimateNormals:
    """Add ``normal`` (open3d PCA normals) when the sample has none (custom clouds, S3DIS without mesh).

    Normals face the bounding-box centre raised to its top, which turns a room's floor up and its
    walls inwards.
    """

    radius: float = 0.1
    max_nn: int = 16

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if "normal" in sample:
            return sample
        coord = sample["coord"]
        low, high = coord.min(0), coord.max(0)
        viewpoint = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, high[2]])
        return {**sample, "normal": estimate_normals(coord, self.radius, self.max_nn, viewpoint)}


@dataclass
class CollectFeatures:
    """``feat`` = the parts ``keys`` concatenated along channels (Pointcept's ``Collect(feat_keys=...)``)."""

    keys: tuple[str, ...] = ("color", "normal")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        missing = sorted({key for key in self.keys if key not in sample})
        if missing:
            raise KeyError(f"sample {sample.get('name')!r} of {sample.get('dataset')!r} lacks {missing} for feat")
        parts = [sample[key].reshape(point_count(sample), -1) for key in self.keys]
        return {**sample, "feat": np.concatenate(parts, axis=1).astype(np.float32)}


@dataclass
class PipelineConfig:
    """Knobs of ``default_pipeline``; None takes the value of the dataset's ``InputSpec``."""

    grid_size: float | None = None
    point_max: int | None = 204_800  # the fork's SphereCrop budget indoors
    point_cloud_range: tuple[float, ...] = field(default=(-35.2, -35.2, -4.0, 35.2, 35.2, 2.0))


def default_pipeline(spec: InputSpec, train: bool, config: PipelineConfig | None = None) -> Compose:
    """The point_moe fork's pipelines (configs/point_moe/indoor+outdoor.py), without the colour and
    elastic augmentations.

    Indoor train: centre, random rotate (z full turn, x/y +-pi/64), scale 0.9-1.1, flip, jitter,
    GridSample, normals if missing, SphereCrop, centre xy, NormalizeColor, shuffle, features.
    Outdoor train: rotate z, clip range, scale, flip, jitter, GridSample, features.
    Eval keeps only the deterministic steps and GridSample with ``inverse`` back to every point.
    """
    config = config or PipelineConfig()
    grid = GridSample(config.grid_size or spec.grid_size, return_inverse=not train)
    steps: list[Transform] = []
    if spec.outdoor:
        if train:
            steps.append(RandomRotate(angle=(-1, 1), axis="z", center=(0, 0, 0), p=0.5))
        steps.append(PointClip(config.point_cloud_range))
        if train:
            steps += [RandomScale((0.9, 1.1)), RandomFlip(0.5), RandomJitter(0.005, 0.02)]
        steps.append(grid)
    else:
        steps.append(CenterShift(apply_z=True))
        if train:
            steps += [
                RandomRotate(angle=(-1, 1), axis="z", center=(0, 0, 0), p=0.5),
                RandomRotate(angle=(-1 / 64, 1 / 64), axis="x", p=0.5),
                RandomRotate(angle=(-1 / 64, 1 / 64), axis="y", p=0.5),
                RandomScale((0.9, 1.1)),
                RandomFlip(0.5),
                RandomJitter(0.005, 0.02),
            ]
        steps += [grid, EstimateNormals()]
        if train and config.point_max is not None:
            steps.append(SphereCrop(point_max=config.point_max))
        steps += [CenterShift(apply_z=False), NormalizeColor()]
        if train:
            steps.append(ShufflePoint())
    steps.append(CollectFeatures(spec.feat_keys))
    return Compose(steps)


def collate(samples: Sequence[Sample], dataset_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Concatenate transformed samples into the model's batch dict (Pointcept's ``point_collate_fn``).

    Gives ``coord`` (N, 3) float, ``grid_coord`` (N, 3) long, ``feat`` (N, C) float, ``offset``
    (B,) long cumulative point counts, ``segment`` (N,) long, ``grid_size`` (a float; None when
    the clouds were voxelised at different sizes, which the backbone allows since it reads
    ``grid_coord``), and per cloud ``dataset`` and ``name`` lists. With ``dataset_names``,
    ``dataset_index`` (B,) long indexes it. ``inverse``, when every sample has it, is shifted to
    index the concatenated rows.
    """
    counts = np.array([point_count(s) for s in samples])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def cat(key: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([s[key] for s in samples])).to(dtype)

    grid_sizes = {s.get("grid_size") for s in samples}
    batch: dict[str, Any] = {
        "coord": cat("coord", torch.float32),
        "grid_coord": cat("grid_coord", torch.long),
        "feat": cat("feat", torch.float32),
        "offset": torch.from_numpy(np.cumsum(counts)).long(),
        "segment": cat("segment", torch.long),
        "grid_size": grid_sizes.pop() if len(grid_sizes) == 1 else None,
        "dataset": [s["dataset"] for s in samples],
        "name": [s["name"] for s in samples],
    }
    if dataset_names is not None:
        batch["dataset_index"] = torch.tensor([list(dataset_names).index(s["dataset"]) for s in samples])
    if all("inverse" in s for s in samples):
        batch["inverse"] = torch.from_numpy(np.concatenate([s["inverse"] + o for s, o in zip(samples, starts)]))
    return batch
