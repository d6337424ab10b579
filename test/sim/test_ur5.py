"""The UR5 with Ravens' suction gripper, from the Ravens assets, picks and places by IK."""
from __future__ import annotations

import numpy as np

from pointmoe_core.sim import Oracle
from pointmoe_core.sim.robot import UR5Suction


def test_ur5_pick_and_place_with_ravens_assets(shared_data, make_env):
    env = make_env("pick-and-place-primitive", image_size=(60, 80),
                   assets_root=str(shared_data / "ravens_assets"))
    obs = env.reset(0)
    assert isinstance(env.ee, UR5Suction)
    robot = {body for body, obj in env.objects.items() if obj.kind == "robot"}
    assert env.ee.arm in robot and any(np.isin(segm, list(robot)).any() for segm in obs["segm"])
    np.testing.assert_allclose(env.ee.tip_pose()[0], [0.487, 0.109, 0.312], atol=2e-3)  # Ravens' home
    _, reward, done, info = env.step(Oracle(env).act())
    assert info["picked"] and not info["timeout"]
    assert reward == 1.0 and done and info["success"]
