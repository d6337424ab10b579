"""The one interface of both planners, and opening either from a path.

``PoseDiTPlanner`` (Pose-DiT on MiniLM instruction tokens) and ``MoEPlanner`` (the 3D-MoE LLM
driving Pose-DiT) both plan a cloud with an instruction. The planner node, ``pointmoe demo``,
``sim eval`` and the closed loops use nothing of them but this ``Planner`` protocol, so they never
ask which one they hold.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from ..common.device import LLM_DTYPES
from ..common.pose_sequence import PoseSequence
from .moe_planner import MoEPlanner
from .moe_planner_files import is_moe_planner
from .planner import PoseDiTPlanner


class Planner(Protocol):
    """Cloud + instruction -> ``PoseSequence``. A cloud is xyz (N, 3) in metres, colours (N, 3)
    (uint8 or [0, 1]) and instance ids (N,), negative for background. ``num_steps`` overrides the
    sampling steps, ``generator`` draws the object points and the noise; ``config.snap_radius``
    (metres, 0 = off) snaps the planned poses onto the objects."""

    config: Any

    def plan(self, xyz: Any, colors: Any, instance_ids: Any, instruction: str, num_steps: int | None = None,
             generator: torch.Generator | None = None) -> PoseSequence:
        ...

    def plan_with_answer(self, xyz: Any, colors: Any, instance_ids: Any, instruction: str,
                         num_steps: int | None = None,
                         generator: torch.Generator | None = None) -> tuple[PoseSequence, str | None]:
        """The plan and, in words, the next step; None from a planner without a language model."""
        ...


def load_planner(path: str | Path, map_location: str | torch.device = "cpu", llm_dtype: str = "float32",
                 llm_folder: str | Path | None = None, cuda_graphs: bool = False) -> Planner:
    """A 3D-MoE planner folder or a Pose-DiT checkpoint (file or directory), by what ``path`` holds,
    ready to plan (a 3D-MoE planner's adapters merged into its LLM, whose weights are then cast to
    ``llm_dtype``: "float32"; "bfloat16" or, on a CPU, "int8" (``MoEPlanner.quantize_llm``) for
    speed; a Pose-DiT planner has no LLM). ``llm_folder``: a 3D-MoE planner's base LLM from this
    Hugging Face folder instead of its saved source (``MoEPlanner.from_checkpoint``). ``cuda_graphs``:
    a 3D-MoE planner's LLM pass, scene tokenizer, and object pointer with denoising replayed as CUDA graphs
    (``MoEPlanner.use_cuda_graphs``: on a GPU, with a bfloat16 LLM)."""
    if llm_dtype not in LLM_DTYPES:
        raise ValueError(f"llm_dtype must be one of {', '.join(LLM_DTYPES)}, got {llm_dtype!r}")
    if is_moe_planner(path):
        planner = MoEPlanner.from_checkpoint(path, map_location=map_location, llm_folder=llm_folder).merge_adapters()
        planner = planner.quantize_llm() if llm_dtype == "int8" else planner.cast_llm(getattr(torch, llm_dtype))
        return planner.use_cuda_graphs() if cuda_graphs else planner
    if cuda_graphs:
        raise ValueError(f"{path} is a Pose-DiT planner: CUDA graphs are for a 3D-MoE planner's LLM")
    return PoseDiTPlanner.from_checkpoint(path, map_location=map_location)
