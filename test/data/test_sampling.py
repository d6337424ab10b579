from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from pointmoe_core.data.sample import SegDataset, make_sample
from pointmoe_core.data.sampling import MixedBatchSampler, MixedDataset, SampleKey, SamplerConfig
from pointmoe_core.data.transforms import Compose, GridSample, RandomJitter, collate


class TinyClouds(SegDataset):
    """In-memory clouds of 50 points, scene i shifted by i along x."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(Compose([RandomJitter(0.01, 0.05), GridSample(0.05), FeatFromCoord()]))
        self.name, self.size = name, size

    def __len__(self) -> int:
        return self.size

    def load(self, index: int) -> dict:
        coord = np.random.default_rng(index).uniform(0, 1, (50, 3)) + [index, 0, 0]
        return make_sample(coord, dataset=self.name, name=f"{self.name}{index}")


class FeatFromCoord:
    def __call__(self, sample, rng):
        return {**sample, "feat": sample["coord"]}


def datasets_per_batch(sampler: MixedBatchSampler) -> list[set[int]]:
    return [{key.dataset for key in batch} for batch in sampler]


def test_mixed_batches_mix_datasets_and_draw_each_loop_times_its_size():
    sampler = MixedBatchSampler([40, 40, 20], SamplerConfig(batch_size=10, loops=(1, 2, 0.5), seed=0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == (40 + 80 + 10) // 10
    mixed = [len(d) > 1 for d in datasets_per_batch(sampler)]
    assert sum(mixed) >= 0.9 * len(mixed)
    draws = Counter((key.dataset, key.index) for batch in batches for key in batch)
    assert all(draws[(0, i)] == 1 for i in range(40)) and all(draws[(1, i)] == 2 for i in range(40))
    assert sum(n for (d, _), n in draws.items() if d == 2) == 10 and max(draws[(2, i)] for i in range(20)) == 1


def test_batch_from_single_dataset_reproduces_the_non_mixed_baseline():
    config = SamplerConfig(batch_size=8, loops=(1, 1, 2), batch_from_single_dataset=True, seed=0)
    sampler = MixedBatchSampler([40, 24, 20], config)
    per_batch = datasets_per_batch(sampler)
    assert all(len(d) == 1 for d in per_batch)
    assert Counter(next(iter(d)) for d in per_batch) == {0: 5, 1: 3, 2: 5}
    assert len(sampler) == len(per_batch) == 13
    assert per_batch[:5] != [{0}] * 5  # datasets take turns in shuffled order, not one after another


def test_sampler_is_deterministic_by_seed_and_epoch():
    def keys(seed: int, epoch: int) -> list:
        sampler = MixedBatchSampler([30, 30], SamplerConfig(batch_size=4, seed=seed))
        sampler.set_epoch(epoch)
        return list(sampler)

    assert keys(0, 0) == keys(0, 0)
    assert keys(0, 0) != keys(0, 1) and keys(0, 0) != keys(1, 0)


@pytest.mark.parametrize("single", [False, True])
def test_ddp_ranks_split_each_global_batch(single):
    sizes, config = [33, 21], SamplerConfig(batch_size=3, seed=5, batch_from_single_dataset=single)
    ranks = [list(MixedBatchSampler(sizes, config, rank=r, world_size=2)) for r in range(2)]
    whole = list(MixedBatchSampler(sizes, SamplerConfig(batch_size=6, seed=5, batch_from_single_dataset=single)))
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    for step, (a, b) in enumerate(zip(*ranks)):
        assert len(a) == len(b) == 3
        assert a + b == whole[step]  # same draws and augmentation seeds as one process with the global batch
        if single:
            assert {k.dataset for k in a + b} in ({0}, {1})
    with pytest.raises(ValueError, match="drop_last"):
        MixedBatchSampler(sizes, SamplerConfig(drop_last=False), rank=0, world_size=2)


def test_dataloader_yields_collated_mixed_batches():
    mixed = MixedDataset([TinyClouds("a", 6), TinyClouds("b", 6)])
    sampler = MixedBatchSampler(mixed.sizes, SamplerConfig(batch_size=4, seed=1))
    loader = DataLoader(mixed, batch_sampler=sampler, collate_fn=lambda s: collate(s, mixed.names))
    batches = list(loader)
    assert len(batches) == 3
    for batch, keys in zip(batches, sampler):
        assert batch["offset"].shape == (4,) and batch["dataset"] == [mixed.names[k.dataset] for k in keys]
        assert batch["name"] == [f"{mixed.names[k.dataset]}{k.index}" for k in keys]
    assert any(len(set(b["dataset"])) == 2 for b in batches)
    key = SampleKey(0, 2, 123)
    np.testing.assert_array_equal(mixed[key]["coord"], mixed[key]["coord"])  # augmentation seeded by the key
    assert not np.array_equal(mixed[key]["coord"], mixed[SampleKey(0, 2, 124)]["coord"])


def test_mixed_dataset_rejects_duplicate_names():
    with pytest.raises(ValueError, match="distinct"):
        MixedDataset([TinyClouds("a", 2), TinyClouds("a", 3)])
