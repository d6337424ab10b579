"""``PoseSequence``: the planner's output, and its tensor form inside Pose-DiT.

A plan is a list of pick-place steps, each a suction pick pose and a place pose (position in
metres, quaternion (x, y, z, w)) with a confidence score: the same fields as the ROS
``pointmoe/PoseSequence`` message and, step by step, the Ravens action
``{'pose0': (xyz, quat), 'pose1': (xyz, quat)}``. No ROS import here; ``pointmoe_ros`` converts.

Inside the network a plan is a tensor (T, 2, 9): per step the pick and the place pose, each as
xyz scaled to [-1, 1] over the workspace plus the continuous 6D rotation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .rotation import quaternion_to_rotation_6d, rotation_6d_to_quaternion
from .workspace import WORKSPACE_BOUNDS

POSE_DIM = 9  # xyz + 6D rotation
Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


def _floats(values: Any, n: int, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))
    if len(out) != n:
        raise ValueError(f"{name} needs {n} numbers, got {len(out)}")
    return out


@dataclass(frozen=True)
class PickPlace:
    """One step: where to pick with suction and where to place (Ravens ``pose0`` / ``pose1``)."""

    pick_xyz: Vec3
    pick_quat: Quat  # (x, y, z, w)
    place_xyz: Vec3
    place_quat: Quat
    score: float = 1.0

    def __post_init__(self) -> None:
        # stored as Python floats so the dataclass compares and round-trips exactly
        object.__setattr__(self, "pick_xyz", _floats(self.pick_xyz, 3, "pick_xyz"))
        object.__setattr__(self, "pick_quat", _floats(self.pick_quat, 4, "pick_quat"))
        object.__setattr__(self, "place_xyz", _floats(self.place_xyz, 3, "place_xyz"))
        object.__setattr__(self, "place_quat", _floats(self.place_quat, 4, "place_quat"))
        object.__setattr__(self, "score", float(self.score))


@dataclass
class PoseSequence:
    """A planned sequence of pick-place steps for one instruction."""

    steps: list[PickPlace] = field(default_factory=list)
    instruction: str = ""
    planner: str = ""  # which planner produced it, e.g. "pose-dit" or "oracle"
    planning_time: float = 0.0  # seconds

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def scores(self) -> list[float]:
        return [s.score for s in self.steps]

    def to_ravens_actions(self) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
        """One Ravens ``act`` per step: ``{'pose0': (xyz, quat_xyzw), 'pose1': (xyz, quat_xyzw)}``."""
        return [
            {
                "pose0": (np.array(s.pick_xyz), np.array(s.pick_quat)),
                "pose1": (np.array(s.place_xyz), np.array(s.place_quat)),
            }
            for s in self.steps
        ]

    @classmethod
    def from_ravens_actions(
        cls,
        actions: Sequence[dict[str, Any]],
        scores: Sequence[float] | None = None,
        instruction: str = "",
        planner: str = "",
        planning_time: float = 0.0,
    ) -> "PoseSequence":
        """Inverse of ``to_ravens_actions``; scores default to 1."""
        scores = [1.0] * len(actions) if scores is None else list(scores)
        if len(scores) != len(actions):
            raise ValueError(f"{len(scores)} scores for {len(actions)} actions")
        steps = [
            PickPlace(a["pose0"][0], a["pose0"][1], a["pose1"][0], a["pose1"][1], score)
            for a, score in zip(actions, scores)
        ]
        return cls(steps, instruction, planner, planning_time)


# ---------------------------------------------------------------------------------------------
# Tensor form for the network
# ---------------------------------------------------------------------------------------------
def bound_tensors(like: torch.Tensor, bounds: Sequence[Sequence[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The (low, high) corners of ``bounds`` ((lo, hi) per axis) as tensors like ``like``."""
    # filled on the device rather than copied from a host list: a CUDA graph can record that
    low = torch.stack([like.new_full((), float(lo)) for lo, _ in bounds])
    high = torch.stack([like.new_full((), float(hi)) for _, hi in bounds])
    return low, high


def normalize_xyz(xyz: torch.Tensor, bounds: Sequence[Sequence[float]] = WORKSPACE_BOUNDS) -> torch.Tensor:
    """Metres -> [-1, 1] over the workspace (the range the 6D entries already live in)."""
    low, high = bound_tensors(xyz, bounds)
    return 2 * (xyz - low) / (high - low) - 1


def unnormalize_xyz(xyz: torch.Tensor, bounds: Sequence[Sequence[float]] = WORKSPACE_BOUNDS) -> torch.Tensor:
    """[-1, 1] -> metres, clipped to the workspace; NaN becomes the workspace centre."""
    low, high = bound_tensors(xyz, bounds)
    metres = low + (torch.nan_to_num(xyz, nan=0.0) + 1) * (high - low) / 2
    return metres.clamp(low, high)


def encode_steps(sequence: PoseSequence, bounds: Sequence[Sequence[float]] = WORKSPACE_BOUNDS) -> torch.Tensor:
    """PoseSequence -> (T, 2, 9) float32: per step (pick, place), normalised xyz + 6D rotation."""
    xyz = torch.tensor([[s.pick_xyz, s.place_xyz] for s in sequence.steps], dtype=torch.float64).reshape(-1, 2, 3)
    quat = torch.tensor([[s.pick_quat, s.place_quat] for s in sequence.steps], dtype=torch.float64).reshape(-1, 2, 4)
    return torch.cat([normalize_xyz(xyz, bounds), quaternion_to_rotation_6d(quat)], dim=-1).float()


def decode_steps(
    poses: torch.Tensor,
    scores: Sequence[float] | torch.Tensor | None = None,
    bounds: Sequence[Sequence[float]] = WORKSPACE_BOUNDS,
    **metadata: Any,
) -> PoseSequence:
    """(T, 2, 9) network poses -> PoseSequence with xyz clipped to ``bounds`` and unit quaternions.

    Never NaN: non-finite xyz goes to the workspace centre, degenerate 6D to the identity.
    ``metadata`` fills ``instruction``, ``planner``, ``planning_time``.
    """
    poses = poses.detach().to("cpu", torch.float64)
    xyz = unnormalize_xyz(poses[..., :3], bounds)
    quat = rotation_6d_to_quaternion(poses[..., 3:])
    scores = [1.0] * len(poses) if scores is None else [float(s) for s in scores]
    steps = [PickPlace(p[0], q[0], p[1], q[1], s) for p, q, s in zip(xyz.numpy(), quat.numpy(), scores)]
    return PoseSequence(steps, **metadata)
