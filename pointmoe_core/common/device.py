"""The ``"auto"`` device choice of every config, command and node parameter."""
from __future__ import annotations


def resolve_device(name: str = "auto") -> str:
    """``"auto"``: ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other name as given."""
    if name != "auto":
        return name
    import torch  # imported here: callers that never say "auto" (the ROS shells) need no torch

    return "cuda" if torch.cuda.is_available() else "cpu"
