"""The episode loop: the env's own verdict, one failure reason per failed episode, and a summary;
for our simulator and for a Ravens-style env that reports only reward and done."""
from __future__ import annotations

import numpy as np
import pytest

from pointmoe_core.sim.bridge import RavensBridge
from pointmoe_core.sim.episode import (
    FAILURES,
    env_counts,
    open_env,
    oracle_planner,
    run_episode,
    summarize,
    unscorable_note,
)

PICK = {"pose0": (np.array([0.4, 0.1, 0.02]), np.array([0, 0, 0, 1.0])),
        "pose1": (np.array([0.6, -0.1, 0.02]), np.array([0, 0, 0, 1.0]))}


class ScriptedEnv:
    """A Ravens-style env whose steps return the given (reward, done, info) in turn."""

    def __init__(self, outcomes, max_steps=5, unscorable=""):
        self.outcomes, self.max_steps, self.sent, self.unscorable = list(outcomes), max_steps, [], unscorable

    def seed(self, seed):
        return seed

    def reset(self):
        self.sent.clear()
        return {}

    def get_lang_goal(self):
        return "put the blocks in the bowls with matching colors."

    def step(self, action):
        self.sent.append(action)
        reward, done, info = self.outcomes[len(self.sent) - 1]
        return {}, reward, done, info


def _run(outcomes, planner=lambda bridge: PICK, **env_options):
    return run_episode(RavensBridge(ScriptedEnv(outcomes, **env_options)), 3, planner)


def test_done_with_the_whole_reward_is_success_without_an_info_verdict():
    episode = _run([(0.5, False, {}), (0.5, True, {})])
    assert episode.success and episode.score == pytest.approx(1.0) and episode.failure == ""
    assert episode.instruction.startswith("put the blocks") and len(episode.steps) == 2
    assert len(episode.plan_seconds) == len(episode.execute_seconds) == 2


@pytest.mark.parametrize("outcomes, reason", [
    ([(0.0, True, {"timeout": True})], "arm timeout"),
    ([(0.0, False, {"picked": False})] * 2, "missed pick"),
    ([(0.0, False, {"picked": True, "picked_goal_object": False})] * 2, "wrong object"),
    ([(0.0, False, {"picked": True, "picked_goal_object": True})] * 2, "missed placement"),
    # the first unrewarded step names the reason: later ones often only repeat it
    ([(0.5, False, {}), (0.0, False, {"picked_goal_object": False}), (0.0, False, {"picked": False})], "wrong object"),
])
def test_each_failure_gets_one_reason(outcomes, reason):
    episode = _run(outcomes, max_steps=len(outcomes))
    assert not episode.success and episode.failure == reason and reason in FAILURES


def test_refused_actions_and_a_planner_that_stops_are_reasons_too():
    refused = _run([(0.0, False, {})],
                   planner=lambda bridge: {"pose0": PICK["pose0"], "pose1": ([9.0, 0, 0], [0, 0, 0, 1])})
    assert refused.failure == "refused action" and "outside the workspace" in refused.refused and not refused.steps
    stopped = _run([(0.0, False, {})], planner=lambda bridge: None)
    assert stopped.failure == "planner stopped"


def test_the_env_verdict_wins_over_the_reward():
    episode = _run([(1.0, True, {"success": False, "score": 0.4})])
    assert not episode.success and episode.score == pytest.approx(0.4)


def test_summary_counts_failures_per_reason():
    episodes = [_run([(1.0, True, {})]), _run([(0.0, True, {"timeout": True})]),
                _run([(0.0, False, {"picked": False})] * 2, max_steps=2)]
    summary = summarize(episodes)
    assert summary["success_rate"] == pytest.approx(1 / 3) and summary["episodes"] == 3
    assert summary["failures"] == {"arm timeout": 1, "missed pick": 1}
    assert summary["mean_steps"] == pytest.approx(4 / 3) and summary["median_execute_s"] >= 0


def test_our_oracle_runs_through_the_same_loop():
    with open_env("ours", "pick-and-place-primitive", "test", (60, 80)) as env:
        episode = run_episode(RavensBridge(env), 0, oracle_planner)
    assert episode.success and episode.task == "pick-and-place-primitive" and episode.failure == ""


def test_open_env_names_what_is_wrong():
    with pytest.raises(ValueError, match="env must be one of ours, lohoravens"):
        open_env("mujoco", "pick-and-place-primitive")
    with pytest.raises(ValueError, match="no task 'stack-everything'"):
        open_env("ours", "stack-everything")
    with pytest.raises(ValueError, match="colour splits are train and test"):
        open_env("ours", "pick-and-place-primitive", split="val")


def test_a_layout_the_env_cannot_score_is_counted_apart():
    why = "goal 0 targets the purple zone but counts its blocks inside the green zone"
    missed = [(0.0, False, {"picked": True, "picked_goal_object": True})] * 2
    unscorable = _run(missed, max_steps=2, unscorable=why)
    assert unscorable.failure == "unscorable layout" and unscorable.unscorable == why
    # a fault of the planner or the arm keeps its own reason on such a layout
    assert _run([(0.0, True, {"timeout": True})], unscorable=why).failure == "arm timeout"
    summary = summarize([unscorable, _run([(1.0, True, {})]), _run(missed, max_steps=2)])
    assert summary["success_rate"] == pytest.approx(1 / 3) and summary["unscorable"] == 1
    assert summary["success_rate_scorable"] == pytest.approx(1 / 2)
    assert summary["failures"] == {"unscorable layout": 1, "missed placement": 1}
    assert unscorable_note(summary) == ("1 of 3 layouts unscorable (the env's own scorer counts a goal's blocks in "
                                        "another zone than its target); success on the other 2: 0.50")
    assert unscorable_note(summarize([_run([(1.0, True, {})])])) == ""


def test_env_counts_names_only_what_happened():
    class Counted:
        layout_redraws, scoring_repairs = 2, 0

    assert env_counts(Counted()) == {"layout_redraws": 2} and env_counts(object()) == {}
