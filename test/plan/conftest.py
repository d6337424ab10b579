"""Planner test fixtures: one torch thread, a stand-in text encoder, a tiny planner config.

Models this small gain nothing from intra-op parallelism, and on a shared 2-core machine a
second thread per test process makes training loops ~5x slower (measured: 100 overfit steps
5.3 s on one thread, 29.7 s on two, under load from other processes).
"""
import copy
import zlib

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HashText:
    """Stands in for the MiniLM sentence encoder: a fixed random unit vector per instruction."""

    def encode(self, names):
        rows = [torch.randn(384, generator=torch.Generator().manual_seed(zlib.crc32(n.encode()))) for n in names]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


@pytest.fixture
def hash_text() -> HashText:
    return HashText()


# a planner small enough to train in seconds on one CPU thread
TINY_PLANNER = {
    "model": {"hidden_size": 32, "depth": 2, "num_heads": 4, "cond_dim": 32, "frequency_embedding_size": 32},
    "condition": {
        "hidden_size": 32,
        "points_per_object": 64,
        "pointnet": {"sa_centres": [16, 8], "sa_mlps": [[16, 32], [32, 32]], "global_mlp": [32], "out_dim": 32},
    },
    "horizon": 4,
}


@pytest.fixture
def tiny_planner_config() -> dict:
    return copy.deepcopy(TINY_PLANNER)
