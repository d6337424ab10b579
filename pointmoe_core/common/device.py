"""The ``"auto"`` device choice of every config, command and node parameter, and the planner LLM's dtypes."""
from __future__ import annotations

# what a 3D-MoE planner's LLM weights may be cast to for planning (``plan.interface.load_planner``;
# int8: dynamic quantisation, CPU only)
LLM_DTYPES = ("float32", "bfloat16", "int8")


def resolve_device(name: str = "auto") -> str:
    """``"auto"``: ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other name as given."""
    if name != "auto":
        return name
    import torch  # imported here: callers that never say "auto" (the ROS shells) need no torch

    return "cuda" if torch.cuda.is_available() else "cpu"
