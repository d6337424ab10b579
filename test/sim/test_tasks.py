"""Every LoHoRavens task resets, is well posed, and its oracle solves it."""
from __future__ import annotations

import numpy as np
import pytest

from pointmoe_core.sim import Oracle
from pointmoe_core.sim.objects import TEST_COLORS, TRAIN_COLORS
from pointmoe_core.sim.poses import WORKSPACE_BOUNDS, validate_action
from pointmoe_core.sim.tasks import TASKS

LOHORAVENS_V1 = [
    "pick-and-place-primitive", "put-block-into-matching-bowl", "stack-smaller-over-bigger-with-same-color",
    "stack-block-in-absolute-area", "put-even-blocks-in-same-color-zone", "put-block-into-mismatching-bowl",
    "stack-blocks-of-same-size", "stack-blocks-with-alternate-color",
    "stack-smaller-over-bigger-with-same-color-in-same-color-zone", "move-blocks-between-absolute-positions",
    "stack-blocks-of-same-color",
]


def test_registry_holds_the_eleven_lohoravens_tasks():
    assert list(TASKS) == LOHORAVENS_V1
    assert all(TASKS[name].name == name for name in TASKS)


@pytest.mark.parametrize("name", LOHORAVENS_V1)
def test_oracle_solves_task(name, make_env, solve):
    env = make_env(name)
    success, score, steps = solve(env, seed=0)
    assert success and score == pytest.approx(1.0)
    assert 1 <= steps <= env.task.max_steps


@pytest.mark.parametrize("name", LOHORAVENS_V1)
def test_reset_is_well_posed(name, make_env):
    """Goals name existing movable objects, the instruction is set, and every oracle action of the
    whole plan lies inside the workspace (so the bridge would accept it)."""
    env = make_env(name, split="test")
    for seed in (1, 2):
        env.reset(seed)
        task = env.task
        assert task.instruction and task.goals and task.score == 0.0 and not task.success
        assert sum(goal.weight for goal in task.goals) == pytest.approx(1.0)
        # the objects a goal is about come in the task's colours (the test split, or all eleven for
        # the pick-and-place primitive, as LoHoRavens draws them); distractors may take any colour
        assert set(task.colors) <= set(TEST_COLORS) or name == "pick-and-place-primitive"
        for goal in task.goals:
            assert all(env.objects[body].movable for body in goal.objects)
            assert {env.objects[body].color for body in goal.objects} <= set(task.colors)
        plan = Oracle(env).plan()
        assert 1 <= len(plan) <= task.max_steps
        for step in plan:
            validate_action({"pose0": (step.pick_xyz, step.pick_quat), "pose1": (step.place_xyz, step.place_quat)},
                            WORKSPACE_BOUNDS)


def test_same_seed_same_scene_and_splits_differ(make_env):
    train, test = make_env("put-block-into-matching-bowl"), make_env("put-block-into-matching-bowl", split="test")
    layouts = []
    for _ in range(2):
        train.reset(7)
        layouts.append(sorted((o.color, tuple(np.round(train.object_pose(b)[0], 6))) for b, o in train.objects.items()
                              if o.kind == "block"))
    assert layouts[0] == layouts[1]
    seen_train, seen_test = set(), set()
    for seed in range(6):
        train.reset(seed)
        test.reset(seed)
        seen_train |= {train.objects[body].color for body in train.task.goals[0].objects}
        seen_test |= {test.objects[body].color for body in test.task.goals[0].objects}
    assert seen_train <= set(TRAIN_COLORS) and seen_test <= set(TEST_COLORS)
    assert seen_train & {"yellow", "brown", "gray", "cyan"} and seen_test & {"orange", "purple", "pink", "white"}


@pytest.mark.slow
@pytest.mark.parametrize("name", LOHORAVENS_V1)
def test_oracle_succeeds_on_20_seeds(name, make_env, solve):
    env = make_env(name)
    results = [solve(env, seed)[0] for seed in range(20)]
    assert np.mean(results) >= 0.95, f"{name}: oracle solved {sum(results)}/20"


def test_scenes_are_as_crowded_as_lohoravens(make_env):
    """LoHoRavens' matching-bowl scenes: 5-7 bowls, 5 or more blocks, distractors in the colours
    left over; its even-blocks scenes: 2-3 colours dealt in turn to 3-9 blocks."""
    bowls = make_env("put-block-into-matching-bowl", split="test")
    even = make_env("put-even-blocks-in-same-color-zone", split="test")
    for seed in range(3):
        bowls.reset(seed)
        kinds = [o.kind for o in bowls.objects.values()]
        goal_blocks = bowls.task.goals[0].objects
        assert kinds.count("bowl") >= 5 and len(goal_blocks) >= 5
        assert kinds.count("bowl") + kinds.count("block") > 2 * len(goal_blocks)  # distractors
        even.reset(seed)
        colors = [o.color for o in even.objects.values() if o.kind == "block"]
        counts = sorted(colors.count(c) for c in set(colors))
        assert 2 <= len(counts) <= 3 and 3 <= len(colors) <= 9 and counts[-1] - counts[0] <= 1


def _key(xyz) -> tuple[float, ...]:
    return tuple(np.round(np.asarray(xyz), 4))


def test_first_step_options_are_every_step_the_oracle_could_take(make_env):
    from pointmoe_core.sim.oracle import first_step_options

    # matching bowls: every block still out of its bowl, each to its own bowl
    env = make_env("put-block-into-matching-bowl")
    env.reset(3)
    goal = env.task.goals[0]
    options = first_step_options(env.task, env)
    assert len(options) == len(goal.objects)
    bowl_of = {env.objects[b].color: b for b in env.objects if env.objects[b].kind == "bowl"}
    for option in options:
        block = min(goal.objects, key=lambda b: np.linalg.norm(env.object_pose(b)[0][:2] - option.pick_xyz[:2]))
        bowl = bowl_of[env.objects[block].color]
        assert np.linalg.norm(env.object_pose(bowl)[0][:2] - option.place_xyz[:2]) < 1e-6
    first = Oracle(env).plan()[0]
    assert (_key(first.pick_xyz), _key(first.place_xyz)) in {(_key(o.pick_xyz), _key(o.place_xyz)) for o in options}
    env.step(Oracle(env).act())
    assert len(first_step_options(env.task, env)) == len(goal.objects) - 1

    # stacks: any block of a stack's colour, onto the lowest free level only
    env = make_env("stack-blocks-of-same-color")
    for seed in range(3):
        env.reset(seed)
        options = first_step_options(env.task, env)
        goal = env.task.goals[0]
        lowest = min(target[0][2] for target in goal.targets)
        assert options and all(np.isclose(o.place_xyz[2] - 0.02, lowest, atol=0.005) for o in options)
        assert len({_key(o.pick_xyz) for o in options}) == len(goal.objects)
