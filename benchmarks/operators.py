"""What a piece of code dispatches: how many aten operators (each one a host dispatch of a few
microseconds, and on a GPU in eager mode most of them a kernel launch), and which of them took the
most time, with the places that made the host wait for a GPU."""
import collections
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OperatorCount(TorchDispatchMode):
    """Counts the aten operators dispatched while it is on (views included)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def print_profile(run: Callable[[], object], device: torch.device, rows: int, what: str,
                  ranges: tuple[str, ...] = ()) -> None:
    """The ``rows`` operators of one ``run()`` that took the most time on ``device`` (``torch.profiler``;
    CPU time on a CPU), the host and device time of the ``record_function`` ``ranges`` it marks,
    and on CUDA the lines that made the host wait for the GPU (``torch.cuda.set_sync_debug_mode``)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        run()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=rows),
          flush=True)
    for event in averages:
        if event.key in ranges:
            print(f"{what}, {event.key}: host {event.cpu_time_total / 1000:.2f} ms"
                  + (f", device {event.device_time_total / 1000:.2f} ms" if cuda else ""), flush=True)
    if cuda:
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
        torch.cuda.set_sync_debug_mode(0)
        syncs = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught
                                    if "synchroniz" in str(w.message))
        print(f"host syncs in one {what}: {sum(syncs.values())}; by line: {dict(syncs.most_common())}", flush=True)
