"""Fixtures for the simulator tests: small-image environments and an oracle episode runner."""
from __future__ import annotations

import pytest

from pointmoe_core.sim import EnvConfig, Oracle, TabletopEnv
from pointmoe_core.sim.tasks import TASKS

# the oracle reads true poses, not images: tiny images keep episodes cheap
TINY_IMAGES = (24, 32)


@pytest.fixture
def make_env():
    """make_env(task_name, split="train", image_size=TINY_IMAGES, **EnvConfig fields) -> env."""
    envs = []

    def make(task_name: str, split: str = "train", image_size=TINY_IMAGES, **config) -> TabletopEnv:
        env = TabletopEnv(TASKS[task_name](split=split), EnvConfig(image_size=image_size, **config))
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture
def solve():
    """solve(env, seed) -> (success, score, steps): an oracle episode from a fresh reset."""

    def run(env: TabletopEnv, seed: int) -> tuple[bool, float, int]:
        env.reset(seed)
        oracle, done = Oracle(env), False
        while not done:
            action = oracle.act()
            if action is None:
                break
            _, _, done, _ = env.step(action)
        return env.task.success, env.task.score, env.step_count

    return run
