"""Ravens' oracle demonstrator: reads the task's remaining goals and the true object poses, and
returns the pick-place steps that meet them.

For each goal it keeps the objects already on a target, assigns the others one-to-one to free
targets they may fill (a maximum bipartite matching, so e.g. "mismatching bowls" never ends in a
dead end), and orders the steps bottom-up so stacks are built from their base. The suction picks
at the centre of a block's top face; the place pose puts the block's centre on its target with
the target's yaw (Ravens computes it the same way, through the pick-to-object transform).
"""
from __future__ import annotations

import numpy as np

from ..common.workspace import yaw_quat
from .poses import PoseStep, nearest_symmetric_yaw, quat_matrix, quat_yaw
from .tasks import CUBE_SYMMETRY, SUCCESS_SCORE, Goal, Scene, Task, max_assignment, zone_fraction

SPOT_CLEARANCE = 0.03  # a zone spot with a block centre nearer than this (xy) is taken


def _pending(goal: Goal, scene: Scene) -> tuple[list[int], list[int]]:
    """Indices of the goal's objects still to move and of its targets still free."""
    if goal.metric == "zone":
        objects = [i for i, body in enumerate(goal.objects)
                   if zone_fraction(scene, body, *goal.zone) < SUCCESS_SCORE]
        centres = np.array([scene.object_pose(body)[0][:2] for body in scene.objects
                            if scene.objects[body].movable]).reshape(-1, 2)
        targets = [j for j, spot in enumerate(goal.targets)
                   if not np.any(np.linalg.norm(centres - spot[0][:2], axis=1) < SPOT_CLEARANCE)]
        return objects, targets
    satisfied = goal.satisfied_pairs(scene)
    return ([i for i in range(len(goal.objects)) if i not in satisfied],
            [j for j in range(len(goal.targets)) if j not in satisfied.values()])


def _step(scene: Scene, body: int, goal: Goal, target_index: int) -> PoseStep:
    position, orientation = scene.object_pose(body)
    height = scene.objects[body].dims[2]
    top = position + quat_matrix(orientation) @ [0.0, 0.0, height / 2]
    pick_yaw = nearest_symmetric_yaw(quat_yaw(orientation), 0.0, CUBE_SYMMETRY)
    target_position, target_orientation = goal.targets[target_index]
    # zone targets are floor spots; pose targets are object centres
    centre_z = target_position[2] + (height / 2 if goal.metric == "zone" else 0.0)
    place_yaw = nearest_symmetric_yaw(quat_yaw(target_orientation), pick_yaw, goal.symmetry)
    place = np.array([target_position[0], target_position[1], centre_z + height / 2])
    return PoseStep(top, yaw_quat(pick_yaw), place, yaw_quat(place_yaw))


def plan(task: Task, scene: Scene) -> list[PoseStep]:
    """Every step still needed for the task's remaining goals, in execution order (open loop)."""
    steps: list[PoseStep] = []
    for goal in task.goals:
        objects, targets = _pending(goal, scene)
        assignment = max_assignment(goal.matches[np.ix_(objects, targets)])
        pairs = sorted(((objects[i], targets[j]) for i, j in assignment.items()),
                       key=lambda pair: (goal.targets[pair[1]][0][2], pair[1]))
        steps += [_step(scene, goal.objects[i], goal, j) for i, j in pairs]
    return steps


def first_step_options(task: Task, scene: Scene) -> list[PoseStep]:
    """Every step that could come first: each pending object with each free target it may fill,
    where a stack's target counts only once the targets below it are filled.

    The oracle takes one of these (its order is the goals' and targets' order, which nothing in
    the scene shows); a learner told only that one is told a coin toss. Planner training grounds
    its first pick and place on the whole set.
    """
    options = []
    for goal in task.goals:
        objects, targets = _pending(goal, scene)
        heights = {j: goal.targets[j][0][2] for j in targets}
        ready = [j for j in targets if goal.metric == "zone" or not goal.check_height or not any(
            heights[k] < heights[j] and np.linalg.norm(goal.targets[k][0][:2] - goal.targets[j][0][:2]) < 0.01
            for k in targets)]
        options += [_step(scene, goal.objects[i], goal, j) for i in objects for j in ready if goal.matches[i, j]]
    return options


class Oracle:
    """Ravens' ``OracleAgent`` for a ``TabletopEnv`` (or any scene exposing ``task``,
    ``objects`` and ``object_pose``): ``act`` returns the next action, ``plan`` all of them."""

    def __init__(self, env):
        self.env = env

    def plan(self) -> list[PoseStep]:
        return plan(self.env.task, self.env)

    def act(self, obs=None, info=None) -> dict | None:
        """The next Ravens action, or None when nothing is left to do."""
        steps = self.plan()
        if not steps:
            return None
        step = steps[0]
        return {"pose0": (step.pick_xyz, step.pick_quat), "pose1": (step.place_xyz, step.place_quat)}
