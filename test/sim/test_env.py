"""TabletopEnv speaks Ravens' Environment interface."""
from __future__ import annotations

import numpy as np
import pytest

from pointmoe_core.common.workspace import yaw_quat
from pointmoe_core.sim import ActionRefused, Oracle, TabletopEnv


def _block_positions(env):
    return {body: env.object_pose(body)[0] for body, obj in env.objects.items() if obj.kind == "block"}


def test_reset_and_observe_only_step(make_env):
    env = make_env("put-block-into-matching-bowl")
    obs = env.reset(0)
    assert len(obs["color"]) == len(obs["depth"]) == len(obs["segm"]) == len(env.agent_cams) == 4
    obs, reward, done, info = env.step()  # Ravens: step() without an action just observes
    assert reward == 0.0 and not done and env.step_count == 0
    assert info["lang_goal"] == env.task.instruction == "put the blocks in the bowls with matching colors."
    assert info["score"] == 0.0 and info["success"] is False
    blocks = [body for body, obj in env.objects.items() if obj.kind == "block"]
    position, rotation, dims = info[blocks[0]]
    assert len(position) == 3 and len(rotation) == 4 and dims == (0.04, 0.04, 0.04)


def test_oracle_step_rewards_progress_and_settles(make_env):
    env = make_env("put-block-into-matching-bowl")
    env.reset(1)
    n_blocks = len(env.task.goals[0].objects)
    _, reward, done, info = env.step(Oracle(env).act())
    assert info["picked"] and not info["timeout"]
    assert reward == pytest.approx(1 / n_blocks) and info["score"] == pytest.approx(1 / n_blocks)
    assert not done and env.step_count == 1 and env.is_static


def test_pick_on_empty_table_moves_nothing(make_env):
    env = make_env("pick-and-place-primitive")
    env.reset(0)
    before = _block_positions(env)
    occupied = np.array(list(before.values()))[:, :2]
    empty = next(np.array([x, y, 0.0]) for x in np.linspace(0.3, 0.7, 9) for y in np.linspace(-0.45, 0.45, 19)
                 if np.min(np.linalg.norm(occupied - [x, y], axis=1)) > 0.1)
    identity = yaw_quat(0.0)
    _, reward, _, info = env.step({"pose0": (empty, identity), "pose1": (empty + [0.05, 0, 0], identity)})
    assert not info["picked"] and reward == 0.0 and env.step_count == 1
    for body, position in _block_positions(env).items():
        np.testing.assert_allclose(position, before[body], atol=1e-3)


def test_max_steps_ends_the_episode(make_env):
    env = make_env("stack-blocks-with-alternate-color", max_steps=1)
    env.reset(0)
    _, _, done, info = env.step(Oracle(env).act())
    assert done and not info["success"]


def test_env_refuses_bad_actions_itself(make_env):
    env = make_env("pick-and-place-primitive")
    env.reset(0)
    with pytest.raises(ActionRefused, match="NaN"):
        env.step({"pose0": ([np.nan, 0, 0.02], [0, 0, 0, 1]), "pose1": ([0.5, 0, 0.02], [0, 0, 0, 1])})
    assert env.step_count == 0


def test_reset_needs_a_task():
    with TabletopEnv() as env, pytest.raises(ValueError, match="no task"):
        env.reset()
