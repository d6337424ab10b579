"""The bridge drives Ravens-style environments and refuses bad actions before sending them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pointmoe_core.sim import ActionRefused, Oracle, PoseStep, RavensBridge, to_action
from pointmoe_core.sim.objects import SEMANTIC_CLASSES

GOOD = PoseStep(np.array([0.4, 0.1, 0.02]), np.array([0, 0, 0, 1.0]), np.array([0.6, -0.1, 0.02]),
                np.array([0, 0, 0.3826834, 0.9238795]))


class RecordingEnv:
    """A foreign Ravens-style env (duck-typed like LoHoRavens'): records what reaches it."""

    def __init__(self, cameras=()):
        self.agent_cams = list(cameras)
        self.sent = []

    def reset(self):
        return {"color": (), "depth": ()}

    def step(self, action):
        self.sent.append(action)
        return {"color": (), "depth": ()}, 0.5, len(self.sent) >= 2, {"lang_goal": "stack the blocks."}


@dataclass
class PlannerStep:  # the shape of pointmoe_core.plan.pose_sequence.PickPlace
    pick_xyz: tuple
    pick_quat: tuple
    place_xyz: tuple
    place_quat: tuple
    score: float = 1.0


@dataclass
class Sequence:  # the shape of PoseSequence
    steps: list


def _with(step: PoseStep, **changes) -> PoseStep:
    return step._replace(**{k: np.asarray(v, float) for k, v in changes.items()})


@pytest.mark.parametrize("bad, message", [
    (_with(GOOD, pick_xyz=[0.2, 0.0, 0.02]), "x = 0.2000 m is outside"),
    (_with(GOOD, place_xyz=[0.5, 0.6, 0.02]), "y = 0.6000 m is outside"),
    (_with(GOOD, place_xyz=[0.5, 0.0, 0.3]), "z = 0.3000 m is outside"),
    (_with(GOOD, pick_xyz=[np.nan, 0.0, 0.02]), "NaN"),
    (_with(GOOD, place_quat=[0, 0, np.inf, 1]), "NaN or infinite"),
    (_with(GOOD, pick_quat=[0, 0, 0, 2.0]), "norm 2.0000, not 1"),
    (_with(GOOD, pick_quat=[0, 0, 1.0]), "quat_xyzw \\(4\\)"),
])
def test_bad_actions_are_refused_and_nothing_is_sent(bad, message):
    env = RecordingEnv()
    bridge = RavensBridge(env)
    with pytest.raises(ActionRefused, match=message):
        bridge.step(bad)
    with pytest.raises(ActionRefused, match=message):
        bridge.execute([GOOD, bad])  # the whole sequence is checked before the first step
    assert env.sent == []


def test_step_formats_and_execute_stops_on_done():
    env = RecordingEnv()
    bridge = RavensBridge(env)
    planner_step = PlannerStep(tuple(GOOD.pick_xyz), tuple(GOOD.pick_quat), tuple(GOOD.place_xyz),
                               tuple(GOOD.place_quat))
    as_dict = {"pose0": (GOOD.pick_xyz, GOOD.pick_quat), "pose1": (GOOD.place_xyz, GOOD.place_quat)}
    for step in (GOOD, tuple(GOOD), planner_step, as_dict):
        action = to_action(step)
        np.testing.assert_allclose(action["pose0"][0], GOOD.pick_xyz)
        np.testing.assert_allclose(action["pose1"][1], GOOD.place_quat / np.linalg.norm(GOOD.place_quat))
    result = bridge.execute(Sequence([GOOD, planner_step, GOOD]))
    assert result.steps_sent == 2 and result.done and result.rewards == [0.5, 0.5]  # done after the 2nd
    assert len(env.sent) == 2 and bridge.instruction == "stack the blocks."
    with pytest.raises(ActionRefused, match="cannot read"):
        to_action(3.0)


def test_bridge_drives_our_env_end_to_end(make_env):
    env = make_env("stack-blocks-with-alternate-color", image_size=(60, 80))
    bridge = RavensBridge(env)
    cloud = bridge.reset()
    assert len(cloud) > 500 and bridge.instruction == env.task.instruction
    blocks = {SEMANTIC_CLASSES[label] for label in np.unique(cloud.cloud.label)} & {
        f"smaller {obj.color} block" for obj in env.objects.values() if obj.kind == "block"}
    assert len(blocks) == 2  # both colours of the task are in the cloud
    plan = Oracle(env).plan()
    result = bridge.execute(plan)
    assert result.done and result.info["success"] and result.steps_sent == len(plan) == 5
    assert sum(result.rewards) == pytest.approx(1.0)
    assert len(bridge.cloud()) > 500  # the last observation fuses too


def test_foreign_env_cameras_come_from_agent_cams(make_env):
    ours = make_env("pick-and-place-primitive", image_size=(60, 80))
    obs = ours.reset(0)
    foreign = RecordingEnv(ours.agent_cams)
    bridge = RavensBridge(foreign)
    assert [c.image_size for c in bridge.cameras] == [(60, 80)] * 4
    cloud = bridge.cloud({"color": obs["color"], "depth": obs["depth"]})  # Ravens obs: no segmentation
    reference = RavensBridge(ours).cloud(obs)
    assert len(cloud) >= len(reference) > 0 and np.all(cloud.cloud.label == -1)
