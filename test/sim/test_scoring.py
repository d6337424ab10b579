"""Ravens-style goals and scoring, on a scene of plain poses (no physics)."""
from __future__ import annotations

import numpy as np
import pytest

from pointmoe_core.common.workspace import yaw_quat
from pointmoe_core.sim.objects import SceneObject
from pointmoe_core.sim.poses import nearest_symmetric_yaw, yaw_difference
from pointmoe_core.sim.tasks import Goal, Task, max_assignment, zone_fraction

CUBE = (0.04, 0.04, 0.04)


class PoseScene:
    """Just what scoring reads: object dims and poses."""

    def __init__(self, poses: dict[int, tuple]):
        self.objects = {body: SceneObject(body, "block", CUBE, "red", "smaller") for body in poses}
        self.poses = {body: (np.asarray(p, float), yaw_quat(yaw)) for body, (p, yaw) in poses.items()}

    def object_pose(self, body):
        return self.poses[body]

    def move(self, body, position, yaw=0.0):
        self.poses[body] = (np.asarray(position, float), yaw_quat(yaw))


def target(x, y, z=0.02, yaw=0.0):
    return np.array([x, y, z]), yaw_quat(yaw)


@pytest.mark.parametrize("offset, yaw_deg, expected", [
    (0.009, 0, True), (0.011, 0, False),  # Ravens' 1 cm in xy
    (0.0, 14, True), (0.0, 16, False),  # and 15 degrees
    (0.0, 90 + 10, True), (0.0, 45, False),  # a cube looks the same every 90 degrees
])
def test_pose_tolerances(offset, yaw_deg, expected):
    goal = Goal([1], [target(0.5, 0.0)], np.ones((1, 1)), 1.0)
    pose = (np.array([0.5 + offset, 0.0, 0.02]), yaw_quat(np.deg2rad(yaw_deg)))
    assert goal.pose_matches(pose, goal.targets[0]) is expected


def test_height_is_checked_only_for_stacks():
    on_table, on_block = target(0.5, 0.0, 0.02), target(0.5, 0.0, 0.06)
    assert Goal([1], [on_block], np.ones((1, 1)), 1.0).pose_matches(on_table, on_block)
    assert not Goal([1], [on_block], np.ones((1, 1)), 1.0, check_height=True).pose_matches(on_table, on_block)


def test_symmetry_zero_ignores_yaw_and_helpers_agree():
    assert yaw_difference(0.0, 2.0, 0.0) == 0.0
    assert yaw_difference(0.1, np.pi / 2 + 0.05, np.pi / 2) == pytest.approx(0.05)
    yaw = nearest_symmetric_yaw(np.pi / 2 + 0.2, 0.0, np.pi / 2)
    assert yaw == pytest.approx(0.2)


def test_max_assignment_finds_a_perfect_matching_where_greedy_fails():
    # row 0 may take column 0 or 1, row 1 only column 0: greedy row 0 -> 0 would strand row 1
    allowed = np.array([[True, True], [True, False]])
    assignment = max_assignment(allowed)
    assert assignment == {0: 1, 1: 0}
    assert max_assignment(np.zeros((2, 2), bool)) == {}


def test_objects_must_sit_on_distinct_targets():
    scene = PoseScene({1: ((0.5, 0.0, 0.02), 0.0), 2: ((0.5, 0.0, 0.02), 0.0)})
    goal = Goal([1, 2], [target(0.5, 0.0), target(0.6, 0.0)], np.ones((2, 2)), 1.0)
    assert goal.progress(scene) == pytest.approx(0.5)  # both on target 0 count once
    scene.move(2, (0.6, 0.0, 0.02))
    assert goal.progress(scene) == pytest.approx(1.0)


def test_zone_fraction_counts_points_inside():
    scene = PoseScene({1: ((0.5, 0.0, 0.02), 0.0)})
    zone = (np.array([0.5, 0.0, 0.0]), yaw_quat(0.3)), (0.1, 0.1)
    assert zone_fraction(scene, 1, *zone) == 1.0
    scene.move(1, (0.55, 0.0, 0.02))  # straddles the zone's edge
    assert 0.0 < zone_fraction(scene, 1, *zone) < 1.0
    scene.move(1, (0.7, 0.0, 0.02))
    assert zone_fraction(scene, 1, *zone) == 0.0


class GoalsOnly(Task):
    """A task whose goals the test sets by hand."""

    name = "goals-only"

    def build(self, scene, rng, layout) -> None:
        pass


def test_reward_is_progress_over_sequential_goals():
    """Ravens' reward: deltas of a score that rises through the goals in order, ending at 1."""
    scene = PoseScene({1: ((0.3, 0.3, 0.02), 0.0), 2: ((0.3, -0.3, 0.02), 0.0)})
    task = GoalsOnly()
    task.goals = [Goal([1], [target(0.5, 0.0)], np.ones((1, 1)), 0.5),
                  Goal([2], [target(0.5, 0.0, 0.06)], np.ones((1, 1)), 0.5, check_height=True)]
    assert task.reward(scene) == 0.0 and not task.done()
    scene.move(2, (0.5, 0.0, 0.06))  # the top block first: the second goal waits for the first
    assert task.reward(scene) == 0.0
    scene.move(1, (0.5, 0.0, 0.02))
    rewards = [task.reward(scene), task.reward(scene)]
    assert rewards == [pytest.approx(1.0), 0.0]
    assert task.score == pytest.approx(1.0) and task.success and task.done() and not task.goals


def test_goal_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="matches"):
        Goal([1, 2], [target(0.5, 0.0)], np.ones((1, 1)), 1.0)
    with pytest.raises(ValueError, match="zone"):
        Goal([1], [target(0.5, 0.0)], np.ones((1, 1)), 1.0, metric="zone")
