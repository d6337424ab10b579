"""Planner test fixtures: one torch thread, a stand-in text encoder, a tiny planner config, and a
recorder of what would make the host wait for a GPU.

Models this small gain nothing from intra-op parallelism, and on a shared 2-core machine a
second thread per test process makes training loops ~5x slower (measured: 100 overfit steps
5.3 s on one thread, 29.7 s on two, under load from other processes).
"""
import zlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


class HostReads(TorchDispatchMode):
    """Records the operators that make the host wait for a GPU's result: a scalar or list read
    back (``.item()``, ``int()``, ``.tolist()``), or an output whose size depends on values
    (``nonzero``, boolean indexing, ``unique``, ``bincount``, ``repeat_interleave`` without its
    output size), or a tensor made from host data (``torch.tensor(...)``: on a GPU a copy from host
    memory). A CUDA graph cannot record a pass that does any of them. Run on a CPU, where reading is
    free, it finds the same operators."""

    SIZE_FROM_VALUES = {"nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive", "bincount"}
    SCALAR_READS = {"_local_scalar_dense", "is_nonzero", "equal"}
    FROM_HOST = {"lift_fresh"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        boolean_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
        tensor_repeats = (name == "repeat_interleave" and kwargs.get("output_size") is None
                          and any(isinstance(a, torch.Tensor) for a in args[:2]))
        from_host = name in self.FROM_HOST and args[0].numel() > 0  # an empty one copies nothing
        if name in self.SIZE_FROM_VALUES | self.SCALAR_READS or from_host or boolean_index or tensor_repeats:
            self.found.append(name)
        return func(*args, **kwargs)

    def __enter__(self):
        # a CPU tensor's tolist() never reaches the dispatcher: count it here
        self._tolist = torch.Tensor.tolist
        found, tolist = self.found, self._tolist
        torch.Tensor.tolist = lambda tensor: found.append("tolist") or tolist(tensor)
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)
