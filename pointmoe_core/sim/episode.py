"""The closed-loop episode, for our simulator and any Ravens-style environment.

An environment needs ``seed``, ``reset() -> obs`` and ``step(act) -> (obs, reward, done, info)``;
the instruction is its ``get_lang_goal()`` where it has one (LoHoRavens), else ``info['lang_goal']``.
The verdict is the environment's own: ``info['success']`` / ``info['score']`` where it reports them
(``TabletopEnv``, ``RavensTaskEnv``), else Ravens' criterion, done with a total reward of at least
0.98 (their ``Task.done``). Every failed episode gets one reason, ``FAILURES``:

* ``refused action``: the bridge refused the planner's pose (outside the workspace, NaN, ...);
* ``arm timeout``: the env ended the episode because the arm's motion timed out (not a plan's fault);
* ``planner stopped``: the planner returned no action before the task was done;
* ``unscorable layout``: the env's own scorer cannot be satisfied by a plan that follows the
  instruction (``env.unscorable`` says why: ``sim.lohoravens``); counted apart, as
  ``success_rate_scorable`` leaves those layouts out;
* otherwise the step limit ended it, and the reason is what went wrong in its first unrewarded
  step, where the episode went off course (later steps often only repeat it: a block put on the
  wrong target is then picked and put down where it lies): ``missed pick`` (nothing was carried),
  ``wrong object`` (the carried object is not one the goal is about; needs
  ``info['picked_goal_object']``), or ``missed placement``.

``open_env`` makes the environment of a task by name: ours, or a LoHoRavens checkout's; the
commands that run episodes take its arguments with ``add_env_arguments``.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .bridge import NoCloud, RavensBridge, succeeded
from .poses import ActionRefused, PoseStep

__all__ = ["ENVS", "FAILURES", "Episode", "Policy", "env_counts", "open_env", "oracle_planner", "run_episode",
           "summarize", "unscorable_note"]

# what acts in an episode: the scene the bridge shows -> the next Ravens action, None to stop (the
# oracle, or a planner in closed loop: sim.cli.PoseDiTClosedLoop, demo_pipeline.PerceivePlanAct)
Policy = Callable[[RavensBridge], "dict | None"]
FAILURES = ("refused action", "arm timeout", "unscorable layout", "planner stopped", "missed pick", "wrong object",
            "missed placement")
ENVS = ("ours", "lohoravens")


@dataclass
class Episode:
    """One closed-loop episode: the steps sent, their rewards, and (if kept) every observation."""

    task: str
    seed: int
    instruction: str
    steps: list[PoseStep] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    observations: list[dict] = field(default_factory=list)
    score: float = 0.0
    success: bool = False
    refused: str = ""  # why the bridge refused the planner's action, if it did
    failure: str = ""  # one of FAILURES when the episode failed
    unscorable: str = ""  # why the env's scorer cannot credit this layout (sim.lohoravens), "" if it can
    plan_seconds: list[float] = field(default_factory=list)  # per planner call (perception included)
    execute_seconds: list[float] = field(default_factory=list)  # per executed step (motion, physics, cameras)


def oracle_planner(bridge: RavensBridge) -> dict | None:
    """The environment's own oracle: ours (``sim.oracle``) or a Ravens task's ``oracle(env)``."""
    from .env import TabletopEnv
    from .oracle import Oracle

    env = bridge.env
    if isinstance(env, TabletopEnv):
        return Oracle(env).act()
    task = getattr(env, "task", None)
    if not callable(getattr(task, "oracle", None)):
        raise ValueError(f"{type(env).__name__} has no oracle (no task.oracle(env))")
    return task.oracle(env).act(bridge.obs, bridge.info)


def task_name(env: Any) -> str:
    task = getattr(env, "task", None)
    return str(getattr(env, "task_name", None) or getattr(task, "name", None) or type(task).__name__)


def _step_failure(info: dict, reward: float) -> str | None:
    if info.get("timeout"):
        return "arm timeout"
    if reward > 0:
        return None
    if not info.get("picked", True):
        return "missed pick"
    return "wrong object" if info.get("picked_goal_object") is False else "missed placement"


def run_episode(bridge: RavensBridge, seed: int, planner: Policy, keep_observations: bool = False) -> Episode:
    """Reset with ``seed`` and let ``planner`` act until the env is done or the planner stops."""
    env = bridge.env
    env.seed(seed)
    try:
        bridge.reset()
    except NoCloud:
        pass  # the env did reset; a planner that needs the cloud gets this reason from bridge.cloud()
    episode = Episode(task_name(env), seed, bridge.instruction, unscorable=getattr(env, "unscorable", ""))
    if keep_observations:
        episode.observations.append(bridge.obs)
    max_steps = getattr(env, "max_steps", None) or getattr(getattr(env, "task", None), "max_steps", None)
    done, info, first_failure = False, {}, None
    while not done and (max_steps is None or len(episode.steps) < max_steps):
        start = time.perf_counter()
        action = planner(bridge)
        episode.plan_seconds.append(time.perf_counter() - start)
        if action is None:
            episode.failure = "planner stopped"
            break
        start = time.perf_counter()
        try:
            obs, reward, done, info = bridge.step(action)
        except ActionRefused as error:
            episode.refused, episode.failure = str(error), "refused action"
            break
        episode.execute_seconds.append(time.perf_counter() - start)
        sent = bridge.last_action
        episode.steps.append(PoseStep(*sent["pose0"], *sent["pose1"]))
        episode.rewards.append(float(reward))
        first_failure = first_failure or _step_failure(info, float(reward))
        if keep_observations:
            episode.observations.append(obs)
    total = float(sum(episode.rewards))
    episode.score = float(info.get("score", total))
    episode.success = succeeded(info, done, total)
    if episode.success:
        episode.failure = ""
    elif not episode.failure:
        episode.failure = "arm timeout" if info.get("timeout") else (first_failure or "missed placement")
    if not episode.success and episode.unscorable and episode.failure not in ("refused action", "arm timeout"):
        episode.failure = "unscorable layout"
    return episode


def summarize(episodes: list[Episode]) -> dict:
    """Success rate, mean score (reward), steps, failure reasons and median seconds per stage."""
    failures = Counter(e.failure for e in episodes if not e.success)
    scorable = [e.success for e in episodes if not e.unscorable]
    return {
        "episodes": len(episodes),
        "success_rate": float(np.mean([e.success for e in episodes])),
        "unscorable": len(episodes) - len(scorable),
        "success_rate_scorable": float(np.mean(scorable)) if scorable else None,
        "mean_score": float(np.mean([e.score for e in episodes])),
        "mean_steps": float(np.mean([len(e.steps) for e in episodes])),
        "refused": sum(bool(e.refused) for e in episodes),
        "failures": {reason: failures[reason] for reason in FAILURES if failures[reason]},
        "median_plan_s": _median([s for e in episodes for s in e.plan_seconds]),
        "median_execute_s": _median([s for e in episodes for s in e.execute_seconds]),
    }


def env_counts(env: Any) -> dict[str, int]:
    """What a LoHoRavens env coped with over its episodes (``sim.lohoravens``), where non-zero:
    ``layout_redraws`` (resets whose own layout code raised) and ``scoring_repairs`` (goals
    scored against their own target zone, ``repair_scoring``)."""
    counts = {name: int(getattr(env, name, 0)) for name in ("layout_redraws", "scoring_repairs")}
    return {name: count for name, count in counts.items() if count}


def unscorable_note(summary: dict) -> str:
    """One line on the layouts the env's scorer cannot credit, "" when there were none."""
    if not summary["unscorable"]:
        return ""
    rest = summary["episodes"] - summary["unscorable"]
    on_rest = f"success on the other {rest}: {summary['success_rate_scorable']:.2f}" if rest else "no other layout"
    return (f"{summary['unscorable']} of {summary['episodes']} layouts unscorable (the env's own scorer counts a "
            f"goal's blocks in another zone than its target); {on_rest}")


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def open_env(env: str, task: str, split: str = "test", image_size: tuple[int, int] = (480, 640),
             assets_root: str | None = None, lohoravens_root: str | None = None,
             repair_scoring: bool | None = None) -> Any:
    """The environment of ``task``: ``ours`` (``TabletopEnv``, colour ``split`` train/test) or
    ``lohoravens`` (the checkout at ``lohoravens_root`` or ``$LOHORAVENS_ROOT``, in mode ``split``;
    its cameras are its own, so ``image_size`` does not apply; ``repair_scoring``: see
    ``sim.lohoravens``)."""
    if env == "lohoravens":
        from .lohoravens import make_env

        return make_env(task, split, lohoravens_root, assets_root, repair_scoring)
    if env != "ours":
        raise ValueError(f"env must be one of {', '.join(ENVS)}, got {env!r}")
    from .env import EnvConfig, TabletopEnv
    from .tasks import TASKS

    if task not in TASKS:
        raise ValueError(f"our simulator has no task {task!r}; it has: {', '.join(TASKS)}")
    if split not in ("train", "test"):
        raise ValueError(f"our simulator's colour splits are train and test, got {split!r}")
    return TabletopEnv(TASKS[task](split=split), EnvConfig(image_size=image_size, assets_root=assets_root))


def add_env_arguments(parser: argparse.ArgumentParser, split: str = "test") -> None:
    """--env, --lohoravens-root, --split/--mode, --assets-root: which environment runs the tasks."""
    parser.add_argument("--env", choices=ENVS, default="ours",
                        help="'ours' (the built-in simulator) or 'lohoravens' (a LoHoRavens checkout, unmodified)")
    parser.add_argument("--lohoravens-root", help="--env lohoravens: the checkout (default $LOHORAVENS_ROOT)")
    parser.add_argument("--split", "--mode", dest="split", choices=("train", "val", "test"), default=split,
                        help=f"colour split (ours: train/test) or LoHoRavens mode (default {split})")
    parser.add_argument("--assets-root", help="ours: Ravens/LoHoRavens assets folder, use the UR5 arm; "
                        "Google Ravens as --env lohoravens: its URDF folder")
    parser.add_argument("--repair-scoring", action="store_true", default=None,
                        help="--env lohoravens: score a goal that counts its blocks in another zone than its "
                        "target against its target (default: as the checkout scores it, such layouts counted "
                        "as unscorable; or $LOHORAVENS_REPAIR_SCORING=1)")
