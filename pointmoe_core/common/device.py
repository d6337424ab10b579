"""The ``"auto"`` device choice of every config, command and node parameter, the planner LLM's
dtypes, and constant tensors kept per device."""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

Made = TypeVar("Made")

# what a 3D-MoE planner's LLM weights may be cast to for planning (``plan.interface.load_planner``;
# int8: dynamic quantisation, CPU only)
LLM_DTYPES = ("float32", "bfloat16", "int8")


def resolve_device(name: str = "auto") -> str:
    """``"auto"``: ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other name as given."""
    if name != "auto":
        return name
    import torch  # imported here: callers that never say "auto" (the ROS shells) need no torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_constants(make: Callable[..., Made]) -> Callable[..., Made]:
    """``make(*arguments)`` (the last a device) made once per arguments and kept: tensors that depend
    on nothing else, such as lookup tables. Made outside inference mode, so that later calls, in
    inference mode or not, may use them."""

    @functools.cache
    @functools.wraps(make)
    def cached(*arguments):
        import torch  # imported here, as in resolve_device

        with torch.inference_mode(False):
            return make(*arguments)

    return cached
