"""A function of tensors replayed as CUDA graphs: one kernel-launch sequence recorded per input shape.

In eager mode every operator costs the host a few microseconds to dispatch and launch, whatever
its size; the 3D-MoE planner's LLM pass is ~4,500 of them per plan, so on a GPU the host, not the
GPU, sets its time. A CUDA graph records the launches once and replays them in one call
(``torch.cuda.CUDAGraph``). What it needs of the function: every input is a tensor whose address
may stay fixed (the inputs are copied into buffers recorded with the graph), nothing reads values
back to the host (no ``.item()``, ``.tolist()``, boolean indexing or ``nonzero``: the capture
fails), and the output is used before the next call, which overwrites it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch

logger = logging.getLogger(__name__)

# warm-up calls before a capture, on a side stream as torch asks: lazy initialisations (cuBLAS
# workspaces, autotuning) must happen outside the recording
WARMUP_CALLS = 2

# a recorded graph, the input buffers it reads and the output buffers it writes (a tensor or a tuple)
Recorded = tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]


class GraphedFunction:
    """``function(*tensors) -> tensor(s)`` run as a replayed CUDA graph, recorded on the first call
    with each new combination of input shapes and dtypes.

    If a capture fails (the function made the host wait for the GPU), the reason is logged once and
    every later call runs ``function`` eagerly: slower, never wrong.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.graphs: dict[tuple, Recorded] = {}
        self.failed: str | None = None

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if self.failed is not None:
            return self.function(*inputs)
        key = tuple((x.shape, x.dtype, x.device) for x in inputs)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(inputs)
            except RuntimeError as error:
                self.failed = str(error).splitlines()[0]
                logger.warning("CUDA graph capture failed, running eagerly from now on: %s", self.failed)
                return self.function(*inputs)
        graph, static_inputs, output = self.graphs[key]
        for static, x in zip(static_inputs, inputs):
            static.copy_(x)
        graph.replay()
        return output

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> Recorded:
        static_inputs = [x.clone() for x in inputs]
        device = static_inputs[0].device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self.function(*static_inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # the outer stream context puts the current stream back even where a failed capture leaves
        # torch.cuda.graph's own exit half done; thread_local: other threads' CUDA calls (a node's
        # executor) do not break the recording
        with torch.cuda.stream(torch.cuda.current_stream(device)):
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                output = self.function(*static_inputs)
        return graph, static_inputs, output
