"""Mixed-dataset sampling: Point-MoE's shuffled concatenation of datasets, and the per-dataset baseline.

``MixedDataset`` is the concatenation (Pointcept's ``ConcatDataset``); its items are addressed by
``SampleKey`` (dataset, scene index, augmentation seed), so what a batch holds depends only on
the sampler's seed and epoch. ``MixedBatchSampler`` yields lists of keys, as a
``torch.utils.data.DataLoader(batch_sampler=...)`` expects:

* mixed (default, the paper's setting): each dataset contributes ``loop`` x its size per epoch,
  all draws are shuffled together and cut into batches, so a batch mixes datasets;
* ``batch_from_single_dataset`` (the non-mixed baseline, the fork's ``MultiDatasetDataloader``):
  each dataset's draws are shuffled and cut into batches on their own, then the batches are
  shuffled, so each batch comes from one dataset.

For DDP every rank builds the same global batches of ``batch_size * world_size`` draws and takes
its own slice; in single-dataset mode a global batch, hence every rank's share of a step, comes
from one dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
from torch.utils.data import Dataset

from .sample import SegDataset


class SampleKey(NamedTuple):
    dataset: int
    index: int
    seed: int


class MixedDataset(Dataset):
    """Several datasets behind one index of ``SampleKey`` s."""

    def __init__(self, datasets: Sequence[SegDataset]) -> None:
        self.datasets = list(datasets)
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be distinct (they key metrics and class lists): {names}")

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.datasets]

    @property
    def sizes(self) -> list[int]:
        return [len(d) for d in self.datasets]

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, key: SampleKey) -> Any:
        return self.datasets[key.dataset].get(key.index, np.random.default_rng(key.seed))


@dataclass
class SamplerConfig:
    """``loops``: draws per epoch of each dataset as a multiple of its size (Pointcept's ``loop``;
    fractions allowed); None means 1 for every dataset."""

    batch_size: int = 2
    loops: Sequence[float] | None = None
    batch_from_single_dataset: bool = False
    seed: int = 0
    drop_last: bool = True


class MixedBatchSampler:
    """Batches of ``SampleKey`` for one rank; deterministic given (seed, epoch, rank, world_size)."""

    def __init__(self, sizes: Sequence[int], config: SamplerConfig, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        if world_size > 1 and not config.drop_last:
            raise ValueError("DDP needs drop_last: a partial last batch would give ranks unequal step counts")
        self.sizes = list(sizes)
        self.config = config
        self.loops = list(config.loops) if config.loops is not None else [1.0] * len(self.sizes)
        if len(self.loops) != len(self.sizes):
            raise ValueError(f"{len(self.loops)} loop factors for {len(self.sizes)} datasets")
        self.rank, self.world_size = rank, world_size
        self.global_batch_size = config.batch_size * world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw_counts(self) -> list[int]:
        return [int(round(loop * size)) if size else 0 for loop, size in zip(self.loops, self.sizes)]

    def _batch_count(self, draws: int) -> int:
        return draws // self.global_batch_size if self.config.drop_last else -(-draws // self.global_batch_size)

    def _cut(self, draws: np.ndarray) -> list[np.ndarray]:
        step = self.global_batch_size
        return [draws[i * step:(i + 1) * step] for i in range(self._batch_count(len(draws)))]

    def global_batches(self) -> list[np.ndarray]:
        """This epoch's global batches, each a (batch_size * world_size, 2) array of (dataset, index) rows."""
        rng = np.random.default_rng((self.config.seed, self.epoch))
        per_dataset = []
        for dataset, (size, total) in enumerate(zip(self.sizes, self._draw_counts())):
            # round(loop * size) draws: whole shuffled passes over the dataset, then part of one more.
            passes = -(-total // size) if size else 0
            index = np.concatenate([rng.permutation(size) for _ in range(passes)] + [np.zeros(0, np.int64)])[:total]
            per_dataset.append(np.stack([np.full(total, dataset), index], axis=1))
        if self.config.batch_from_single_dataset:
            batches = [b for draws in per_dataset for b in self._cut(draws[rng.permutation(len(draws))])]
            return [batches[i] for i in rng.permutation(len(batches))]
        draws = np.concatenate(per_dataset)
        return self._cut(draws[rng.permutation(len(draws))])

    def __iter__(self) -> Iterator[list[SampleKey]]:
        batches = self.global_batches()
        # One augmentation seed per draw, the same on every rank.
        seeds = np.random.default_rng((self.config.seed, self.epoch, 1)).integers(
            0, 2**63 - 1, (len(batches), self.global_batch_size))
        mine = slice(self.rank * self.config.batch_size, (self.rank + 1) * self.config.batch_size)
        for batch, batch_seeds in zip(batches, seeds):
            yield [SampleKey(int(d), int(i), int(s)) for (d, i), s in zip(batch[mine], batch_seeds[mine])]

    def __len__(self) -> int:
        counts = self._draw_counts()
        if self.config.batch_from_single_dataset:
            return sum(self._batch_count(c) for c in counts)
        return self._batch_count(sum(counts))
