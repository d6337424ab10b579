"""Env factories for sim_bridge_node's ``env_factory`` parameter, as a user would write them.

``ForeignEnv`` shows our tabletop to the bridge through the Ravens interface only (``reset``,
``step``, ``seed``, ``info``, ``agent_cams``, ``close``): no ``class_ids``, no ``task`` and no
segmentation images, so the bridge treats it exactly like a LoHoRavens env. Its episodes end
after one action, so tests reach ``done`` with a single pick-place step. The sim bridge test
imports this module by name in the node's process (``PYTHONPATH`` holds this folder).
"""
from __future__ import annotations

from pointmoe_core.sim import TASKS, EnvConfig, TabletopEnv


class ForeignEnv:
    """A Ravens-style env backed by our ``TabletopEnv``; ``cameras`` False hides them, as an env
    that renders nothing would."""

    def __init__(self, cameras: bool = True):
        self._env = TabletopEnv(TASKS["pick-and-place-primitive"](), EnvConfig(image_size=(48, 64), max_steps=1))
        if cameras:
            self.agent_cams = self._env.agent_cams

    def seed(self, seed: int | None = None) -> int | None:
        return self._env.seed(seed)

    def reset(self) -> dict:
        return self._ravens_obs(self._env.reset())

    def step(self, action: dict) -> tuple[dict, float, bool, dict]:
        obs, reward, done, info = self._env.step(action)
        return self._ravens_obs(obs), reward, done, info

    @property
    def info(self) -> dict:
        return self._env.info

    def close(self) -> None:
        self._env.close()

    @staticmethod
    def _ravens_obs(obs: dict) -> dict:
        return {"color": obs["color"], "depth": obs["depth"]}  # Ravens renders no segmentation


def one_step_env() -> ForeignEnv:
    return ForeignEnv()


def blind_env() -> ForeignEnv:
    return ForeignEnv(cameras=False)

