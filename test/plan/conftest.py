"""Planner test fixtures: one torch thread, a stand-in text encoder, a tiny planner config.

Models this small gain nothing from intra-op parallelism, and on a shared 2-core machine a
second thread per test process makes training loops ~5x slower (measured: 100 overfit steps
5.3 s on one thread, 29.7 s on two, under load from other processes).
"""
import zlib

import pytest
import torch

from pointmoe_core.plan.instruction import pad_token_sets


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HashInstructions:
    """Stands in for the MiniLM instruction encoder: a fixed random unit vector per word."""

    def encode(self, instructions):
        def word(w):
            return torch.nn.functional.normalize(
                torch.randn(384, generator=torch.Generator().manual_seed(zlib.crc32(w.encode()))), dim=0)
        return pad_token_sets([torch.stack([word(w) for w in text.split() or [""]]) for text in instructions])


@pytest.fixture
def hash_text() -> HashInstructions:
    return HashInstructions()
