"""The bridge drives Ravens-style environments, refuses bad actions before sending them, runs
episodes, and loads foreign environments from a "package.module:callable" spec."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pointmoe_core.sim import ActionRefused, Oracle, PoseStep, RavensBridge, TabletopEnv, to_action
from pointmoe_core.sim.bridge import EpisodeDone, EpisodeRunner, NoCloud, env_from_factory, load_env_factory
from pointmoe_core.sim.objects import SEMANTIC_CLASSES
from pointmoe_core.sim.poses import quat_yaw

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
class PlannerStep:  # the shape of pointmoe_core.common.pose_sequence.PickPlace
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


def test_foreign_env_without_cameras_or_images_says_there_is_no_cloud(make_env):
    blind = RavensBridge(RecordingEnv())
    with pytest.raises(NoCloud, match="RecordingEnv has no cameras"):
        blind.reset()
    assert blind.obs is not None  # the env was reset all the same
    with pytest.raises(NoCloud, match="RecordingEnv has no cameras"):
        blind.cloud()
    ours = make_env("pick-and-place-primitive", image_size=(60, 80))
    seeing = RavensBridge(RecordingEnv(ours.agent_cams))
    with pytest.raises(NoCloud, match=r"hold no 'color' and 'depth' images \(got \['rgb'\]\)"):
        seeing.cloud({"rgb": ()})
    with pytest.raises(NoCloud, match="4 cameras but 0 colour and 0 depth images"):
        seeing.cloud(seeing.env.reset())


def test_episodes_refuse_plans_once_done_until_reset():
    now = [100.0]
    runner = EpisodeRunner(RavensBridge(RecordingEnv()), auto_reset_s=2.0, clock=lambda: now[0])
    with pytest.raises(RuntimeError, match="call reset"):
        runner.execute([GOOD])
    runner.reset()
    assert runner.status() == {"episode": 0, "step": 0, "reward": 0.0, "done": False, "success": False}
    runner.execute([GOOD])
    runner.execute([GOOD, GOOD])  # RecordingEnv is done after its 2nd action: the 3rd is not sent
    # no info['success']: Ravens' own criterion, done with a total reward >= 0.98
    assert runner.status() == {"episode": 0, "step": 2, "reward": 1.0, "done": True, "success": True}
    with pytest.raises(EpisodeDone, match="episode 0 is done"):
        runner.execute([GOOD])
    assert len(runner.bridge.env.sent) == 2 and not runner.reset_due()
    now[0] += 2.0
    assert runner.reset_due()
    with pytest.raises(ValueError, match="RecordingEnv has no seed"):
        runner.reset(seed=4)
    assert runner.episode == 0  # a refused reset starts nothing
    runner.reset()
    assert runner.status()["episode"] == 1 and not runner.done and not runner.reset_due()
    runner.bridge.env.unscorable = "goal 0 targets the purple zone but counts its blocks inside the green zone"
    assert runner.status()["unscorable"].startswith("goal 0 targets the purple zone")  # said on the status topic
    never = EpisodeRunner(RavensBridge(RecordingEnv()), auto_reset_s=0.0, clock=lambda: now[0])
    never.reset()
    never.execute([GOOD, GOOD])
    now[0] += 1e6
    assert never.done and not never.reset_due()


@pytest.mark.parametrize("spec, error, message", [
    ("pointmoe_core.sim.env.TabletopEnv", ValueError, "not of the form 'package.module:callable'"),
    ("pointmoe_core.sim.env:", ValueError, "not of the form"),
    ("no_such_package.envs:make", ImportError, "cannot import 'no_such_package.envs'"),
    ("pointmoe_core.sim.env:NoSuchEnv", ImportError, "module 'pointmoe_core.sim.env' has no 'NoSuchEnv'"),
    ("pointmoe_core.sim.env:STATIC_SPEED", ValueError, "names a float, which is not callable"),
])
def test_bad_env_factory_specs_are_named_in_the_error(spec, error, message):
    with pytest.raises(error, match=message) as raised:
        load_env_factory(spec)
    assert repr(spec) in str(raised.value)


def test_env_from_factory_builds_and_checks_the_env():
    from pointmoe_core.sim.cameras import CameraConfig

    # the part after the colon may be dotted, e.g. a classmethod
    assert load_env_factory("pointmoe_core.sim.cameras:CameraConfig.from_ravens") == CameraConfig.from_ravens
    env = env_from_factory("pointmoe_core.sim.env:TabletopEnv")
    try:
        assert isinstance(env, TabletopEnv)
    finally:
        env.close()
    with pytest.raises(ValueError, match="returned a dict without reset\\(\\) or step\\(\\)"):
        env_from_factory("builtins:dict")
    with pytest.raises(RuntimeError, match="'math:sqrt' failed: TypeError"):
        env_from_factory("math:sqrt")


class TimingOutEnv(RecordingEnv):
    """Ravens' step after an arm timeout: done, reward 0, and no success in its info."""

    def step(self, action):
        self.sent.append(action)
        return {"color": (), "depth": ()}, 0.0, True, {}


def test_done_without_the_reward_is_no_success():
    runner = EpisodeRunner(RavensBridge(TimingOutEnv()))
    runner.reset()
    runner.execute([GOOD])
    assert runner.status()["done"] and not runner.status()["success"]


def test_tilted_poses_reach_the_env_upright_unless_told_otherwise():
    tilt = np.array([np.sin(0.2), 0.0, 0.0, np.cos(0.2)])  # 23 degrees about x
    yawed = np.array([0.0, 0.0, np.sin(0.3), np.cos(0.3)])
    step = _with(GOOD, pick_quat=tilt, place_quat=(tilt + yawed) / np.linalg.norm(tilt + yawed))
    upright = RavensBridge(RecordingEnv())
    upright.step(step)
    for key in ("pose0", "pose1"):
        quat = upright.env.sent[0][key][1]
        assert quat[0] == 0.0 and quat[1] == 0.0 and np.linalg.norm(quat) == pytest.approx(1.0)
    assert quat_yaw(upright.env.sent[0]["pose1"][1]) == pytest.approx(quat_yaw(step.place_quat))
    as_given = RavensBridge(RecordingEnv(), upright=False)
    as_given.step(step)
    np.testing.assert_allclose(as_given.env.sent[0]["pose0"][1], tilt)
