"""Bridge core: drive any environment with the Ravens interface from clouds and pose sequences.

Works with our ``TabletopEnv`` and, duck-typed, with Ravens' or LoHoRavens' ``Environment``
(nothing of theirs is imported): the environment needs ``reset() -> obs``,
``step(act) -> (obs, reward, done, info)`` and ``agent_cams`` (Ravens' list of camera dicts).
Observations become fused ``SceneCloud``s; pose-sequence steps become ``act`` dicts, sent one at
a time until the environment reports ``done``. Every action is validated first (finite, inside
the workspace bounds, unit quaternion): a bad one raises ``ActionRefused`` and nothing is sent.

A step may be a ``PoseStep`` or ``pointmoe_core.plan.pose_sequence.PickPlace`` (anything with
``pick_xyz``, ``pick_quat``, ``place_xyz``, ``place_quat``), a 4-sequence in that order, or a
Ravens ``act`` dict; a sequence of steps may be a list or anything with ``.steps`` (a
``PoseSequence``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .cameras import CameraConfig
from .observe import CROP_BOUNDS, SceneCloud, fuse_views
from .poses import WORKSPACE_BOUNDS, ActionRefused, validate_action

__all__ = ["ActionRefused", "ExecutionResult", "RavensBridge", "to_action"]


def to_action(step: Any, bounds: np.ndarray = WORKSPACE_BOUNDS) -> dict:
    """One pose-sequence step -> a validated Ravens ``act`` dict (raises ActionRefused)."""
    if isinstance(step, dict):
        return validate_action(step, bounds)
    if all(hasattr(step, name) for name in ("pick_xyz", "pick_quat", "place_xyz", "place_quat")):
        parts = (step.pick_xyz, step.pick_quat, step.place_xyz, step.place_quat)
    else:
        try:
            parts = tuple(step)
        except TypeError:
            raise ActionRefused(f"cannot read a pick-place step from {type(step).__name__}") from None
        if len(parts) != 4:
            raise ActionRefused(f"a step is (pick xyz, pick quat, place xyz, place quat), got {len(parts)} parts")
    return validate_action({"pose0": parts[:2], "pose1": parts[2:]}, bounds)


@dataclass
class ExecutionResult:
    """What running a pose sequence did: one reward per step sent, and the last transition."""

    rewards: list[float] = field(default_factory=list)
    done: bool = False
    obs: Any = None
    info: dict = field(default_factory=dict)

    @property
    def steps_sent(self) -> int:
        return len(self.rewards)


class RavensBridge:
    """Adapter between our planner side (clouds in, pose sequences out) and a Ravens-style env.

    cameras: the env's cameras; by default read from ``env.agent_cams``. class_ids: body id ->
    semantic class id for labelling clouds; by default ``env.class_ids`` when the env has it
    (ours), else clouds carry label -1. bounds: the workspace actions must stay in.
    """

    def __init__(self, env: Any, cameras: Sequence[CameraConfig] | None = None,
                 bounds: np.ndarray = WORKSPACE_BOUNDS, crop: np.ndarray | None = CROP_BOUNDS,
                 voxel_size: float | None = None):
        self.env = env
        self.cameras = tuple(cameras) if cameras is not None else tuple(
            CameraConfig.from_ravens(config, name=f"camera{index}") for index, config in enumerate(env.agent_cams))
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.crop, self.voxel_size = crop, voxel_size
        self.obs: Any = None
        self.info: dict = {}

    def reset(self) -> SceneCloud:
        """Reset the env and return the first scene cloud."""
        self.obs, self.info = self.env.reset(), {}
        return self.cloud()

    def cloud(self, obs: Any = None) -> SceneCloud:
        """The latest observation (or ``obs``) fused into one labelled world-frame cloud."""
        obs = self.obs if obs is None else obs
        if obs is None:
            raise RuntimeError("no observation yet: call reset() first")
        return fuse_views(obs, self.cameras, getattr(self.env, "class_ids", None), self.crop, self.voxel_size)

    @property
    def instruction(self) -> str:
        """The task's language goal (CLIPort's ``info['lang_goal']``) when the env exposes it."""
        if "lang_goal" in self.info:
            return str(self.info["lang_goal"])
        info = getattr(self.env, "info", None)
        return str(info.get("lang_goal", "")) if isinstance(info, dict) else ""

    def step(self, step: Any) -> tuple[Any, float, bool, dict]:
        """Validate one step, then send it; returns the env's (obs, reward, done, info)."""
        action = to_action(step, self.bounds)
        self.obs, reward, done, self.info = self.env.step(action)
        return self.obs, reward, done, self.info

    def execute(self, steps: Iterable[Any] | Any) -> ExecutionResult:
        """Send a pose sequence one step at a time until the env says ``done``.

        Every step is validated before the first is sent, so a bad step anywhere refuses the
        whole sequence and the env is left untouched.
        """
        actions = [to_action(step, self.bounds) for step in getattr(steps, "steps", steps)]
        result = ExecutionResult(obs=self.obs, info=self.info)
        for action in actions:
            self.obs, reward, done, self.info = self.env.step(action)
            result.rewards.append(float(reward))
            result.obs, result.info, result.done = self.obs, self.info, bool(done)
            if done:
                break
        return result
