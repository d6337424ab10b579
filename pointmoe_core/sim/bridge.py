"""Bridge core: drive any environment with the Ravens interface from clouds and pose sequences.

Works with our ``TabletopEnv`` and, duck-typed, with Ravens' or LoHoRavens' ``Environment``
(nothing of theirs is imported): the environment needs ``reset() -> obs`` and
``step(act) -> (obs, reward, done, info)``, and for clouds ``agent_cams`` (Ravens' list of camera
dicts) with ``obs['color']`` and ``obs['depth']`` holding one image per camera.
Observations become fused ``SceneCloud``s; pose-sequence steps become ``act`` dicts, sent one at
a time until the environment reports ``done``. Every action is validated first (finite, inside
the workspace bounds, unit quaternion): a bad one raises ``ActionRefused`` and nothing is sent.

A step may be a ``PoseStep`` or ``pointmoe_core.common.pose_sequence.PickPlace`` (anything with
``pick_xyz``, ``pick_quat``, ``place_xyz``, ``place_quat``), a 4-sequence in that order, or a
Ravens ``act`` dict; a sequence of steps may be a list or anything with ``.steps`` (a
``PoseSequence``).

``EpisodeRunner`` adds episodes on top: it numbers them, totals steps and reward, and refuses
plans once an episode is done until the next reset. ``load_env_factory`` / ``env_from_factory``
turn a ``"package.module:callable"`` string (a ROS parameter) into a foreign environment.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..common.workspace import yaw_quat
from .cameras import CameraConfig
from .observe import CROP_BOUNDS, SceneCloud, fuse_views
from .poses import WORKSPACE_BOUNDS, ActionRefused, quat_yaw, validate_action

__all__ = ["ActionRefused", "EpisodeDone", "EpisodeRunner", "ExecutionResult", "NoCloud", "RavensBridge", "succeeded",
           "env_from_factory", "load_env_factory", "to_action"]


SUCCESS_REWARD = 0.98  # Ravens' Task.done threshold on an episode's total reward


def succeeded(info: Mapping, done: bool, total_reward: float) -> bool:
    """The env's own verdict: ``info['success']`` where it gives one (ours, ``RavensTaskEnv``),
    else Ravens' ``Task.done`` criterion, done with a total reward of at least SUCCESS_REWARD (an
    arm timeout is done with less)."""
    return bool(info["success"]) if "success" in info else bool(done and total_reward >= SUCCESS_REWARD)


class NoCloud(RuntimeError):
    """The environment gives no cloud: it has no cameras (``agent_cams``), or its observations
    hold no colour and depth image for each of them."""


class EpisodeDone(ActionRefused):
    """A plan that arrived after its episode ended: nothing is sent until the next reset."""


def load_env_factory(spec: str) -> Callable[[], Any]:
    """The callable named by ``spec``, ``"package.module:callable"`` (the part after the colon may
    be dotted, ``"package.module:Class.create"``); it is imported, not called.

    Raises ValueError for a malformed spec or a target that is not callable, ImportError when the
    module cannot be imported (including an error raised while importing it) or lacks the name.
    Every message names the spec.
    """
    module_name, colon, attribute = spec.partition(":")
    names = attribute.split(".")
    if not colon or not all(part.isidentifier() for part in module_name.split(".") + names):
        raise ValueError(f"env_factory {spec!r} is not of the form 'package.module:callable'")
    try:
        target = importlib.import_module(module_name)
    except Exception as error:  # user code runs on import: any failure means "cannot import"
        raise ImportError(f"env_factory {spec!r}: cannot import {module_name!r}: "
                          f"{type(error).__name__}: {error}") from error
    for name in names:
        if not hasattr(target, name):
            raise ImportError(f"env_factory {spec!r}: module {module_name!r} has no {attribute!r}")
        target = getattr(target, name)
    if not callable(target):
        raise ValueError(f"env_factory {spec!r} names a {type(target).__name__}, which is not callable")
    return target


def env_from_factory(spec: str) -> Any:
    """Call the factory ``spec`` names (with no arguments) and check that what it returns has the
    Ravens interface, ``reset()`` and ``step(act)``.

    Raises what ``load_env_factory`` raises, RuntimeError when the factory itself fails, and
    ValueError when its result is no environment.
    """
    factory = load_env_factory(spec)
    try:
        env = factory()
    except Exception as error:  # a foreign constructor: report any failure with the spec named
        raise RuntimeError(f"env_factory {spec!r} failed: {type(error).__name__}: {error}") from error
    missing = [f"{name}()" for name in ("reset", "step") if not callable(getattr(env, name, None))]
    if missing:
        raise ValueError(f"env_factory {spec!r} returned a {type(env).__name__} without {' or '.join(missing)}")
    return env


def to_action(step: Any, bounds: np.ndarray = WORKSPACE_BOUNDS, upright: bool = False) -> dict:
    """One pose-sequence step -> a validated Ravens ``act`` dict (raises ActionRefused).

    upright: keep only each quaternion's yaw. Ravens' pick-place primitive moves along the pose's
    own z axis, so a tilted pose is executed tilted; its oracle (and ours) only ever turn the
    suction about the vertical.
    """
    action = _validated(step, bounds)
    if upright:
        action = {key: (xyz, yaw_quat(quat_yaw(quat))) for key, (xyz, quat) in action.items()}
    return action


def _validated(step: Any, bounds: np.ndarray) -> dict:
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

    cameras: the env's cameras; by default read from ``env.agent_cams`` (none when the env has no
    such attribute: then ``cloud()`` raises NoCloud). class_ids: body id -> semantic class id for
    labelling clouds; by default ``env.class_ids`` when the env has it (ours), else clouds carry
    label -1. bounds: the workspace actions must stay in. upright: send yaw-only quaternions
    (``to_action``), Ravens' convention, which every env gets unless told otherwise.
    """

    def __init__(self, env: Any, cameras: Sequence[CameraConfig] | None = None,
                 bounds: np.ndarray = WORKSPACE_BOUNDS, crop: np.ndarray | None = CROP_BOUNDS,
                 voxel_size: float | None = None, upright: bool = True):
        self.env = env
        self.cameras = tuple(cameras) if cameras is not None else tuple(
            CameraConfig.from_ravens(config, name=f"camera{index}")
            for index, config in enumerate(getattr(env, "agent_cams", None) or ()))
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.crop, self.voxel_size, self.upright = crop, voxel_size, upright
        self.obs: Any = None
        self.info: dict = {}
        self.last_action: dict | None = None  # the last action sent, as sent (validated, upright)

    def reset(self, seed: int | None = None) -> SceneCloud:
        """Reset the env and return the first scene cloud (NoCloud when the env gives none: the
        env is reset all the same). seed: passed to ``env.seed()`` first (Ravens' and ours have
        one; ValueError for an env without it)."""
        if seed is not None:
            if not callable(getattr(self.env, "seed", None)):
                raise ValueError(f"{type(self.env).__name__} has no seed(): cannot reset with seed {seed}")
            self.env.seed(seed)
        self.obs, self.info = self.env.reset(), {}
        return self.cloud()

    def cloud(self, obs: Any = None) -> SceneCloud:
        """The latest observation (or ``obs``) fused into one labelled world-frame cloud; raises
        NoCloud when the env has no cameras or ``obs`` holds no colour and depth for each."""
        obs = self.obs if obs is None else obs
        if obs is None:
            raise RuntimeError("no observation yet: call reset() first")
        if not self.cameras:
            raise NoCloud(f"{type(self.env).__name__} has no cameras (no agent_cams attribute or an empty one)")
        if not isinstance(obs, Mapping) or not all(key in obs for key in ("color", "depth")):
            keys = sorted(map(str, obs)) if isinstance(obs, Mapping) else type(obs).__name__
            raise NoCloud(f"the observations of {type(self.env).__name__} hold no 'color' and 'depth' "
                          f"images (got {keys})")
        if min(len(obs["color"]), len(obs["depth"])) < len(self.cameras):
            raise NoCloud(f"{len(self.cameras)} cameras but {len(obs['color'])} colour and "
                          f"{len(obs['depth'])} depth images in the observation")
        return fuse_views(obs, self.cameras, getattr(self.env, "class_ids", None), self.crop, self.voxel_size)

    @property
    def instruction(self) -> str:
        """The task's language goal: the env's ``get_lang_goal()`` (LoHoRavens/CLIPort) where it
        has one, else CLIPort's ``info['lang_goal']``, else ""."""
        getter = getattr(self.env, "get_lang_goal", None)
        if callable(getter):
            return str(getter())
        if "lang_goal" in self.info:
            return str(self.info["lang_goal"])
        info = getattr(self.env, "info", None)
        return str(info.get("lang_goal", "")) if isinstance(info, dict) else ""

    def step(self, step: Any) -> tuple[Any, float, bool, dict]:
        """Validate one step, then send it; returns the env's (obs, reward, done, info)."""
        self.last_action = to_action(step, self.bounds, self.upright)
        self.obs, reward, done, self.info = self.env.step(self.last_action)
        return self.obs, reward, done, self.info

    def execute(self, steps: Iterable[Any] | Any) -> ExecutionResult:
        """Send a pose sequence one step at a time until the env says ``done``.

        Every step is validated before the first is sent, so a bad step anywhere refuses the
        whole sequence and the env is left untouched.
        """
        actions = [to_action(step, self.bounds, self.upright) for step in getattr(steps, "steps", steps)]
        result = ExecutionResult(obs=self.obs, info=self.info)
        for action in actions:
            self.obs, reward, done, self.info = self.env.step(action)
            result.rewards.append(float(reward))
            result.obs, result.info, result.done = self.obs, self.info, bool(done)
            if done:
                break
        return result


class EpisodeRunner:
    """Episodes over a ``RavensBridge``, for a long-running service like the sim bridge node.

    Episodes are numbered from 0 (the first ``reset``). ``execute`` runs a plan and totals the
    episode's steps and reward; once the env reports ``done`` every further plan raises
    EpisodeDone until ``reset``. auto_reset_s: seconds after done when ``reset_due`` turns true
    (0: never); clock: where the seconds come from.
    """

    def __init__(self, bridge: RavensBridge, auto_reset_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        if auto_reset_s < 0:
            raise ValueError(f"auto_reset_s must be >= 0 (0 = never), got {auto_reset_s}")
        self.bridge, self.auto_reset_s, self.clock = bridge, auto_reset_s, clock
        self.episode = -1
        self._begin()

    def _begin(self) -> None:
        self.steps, self.reward, self.done, self.success = 0, 0.0, False, False
        self.done_at: float | None = None

    def reset(self, seed: int | None = None) -> None:
        """Start the next episode (seeded like ``RavensBridge.reset``)."""
        try:
            self.bridge.reset(seed)
        except NoCloud:
            pass  # the env did reset; only its cloud is missing, and bridge.cloud() keeps saying so
        self.episode += 1
        self._begin()

    def execute(self, steps: Iterable[Any] | Any) -> ExecutionResult:
        """``RavensBridge.execute`` within the episode; EpisodeDone once it is over, ActionRefused
        for a bad plan (both before anything is sent)."""
        if self.episode < 0:
            raise RuntimeError("no episode yet: call reset() first")
        if self.done:
            raise EpisodeDone(f"episode {self.episode} is done; send a reset to start the next one")
        result = self.bridge.execute(steps)
        self.steps += result.steps_sent
        self.reward += sum(result.rewards)
        self.success = succeeded(result.info, result.done, self.reward)
        if result.done:
            self.done, self.done_at = True, self.clock()
        return result

    def reset_due(self) -> bool:
        """True once the episode has been done for ``auto_reset_s`` seconds (never when 0)."""
        return (self.done_at is not None and self.auto_reset_s > 0
                and self.clock() - self.done_at >= self.auto_reset_s)

    def status(self) -> dict:
        """The episode's state as JSON-ready values: episode, step, reward (the episode's total so
        far), done, success; and ``unscorable``, why, where the env cannot credit this layout
        (``sim.lohoravens``)."""
        status = {"episode": self.episode, "step": self.steps, "reward": self.reward, "done": self.done,
                  "success": self.success}
        unscorable = getattr(self.bridge.env, "unscorable", "")
        return {**status, "unscorable": unscorable} if unscorable else status
