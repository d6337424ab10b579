"""What a plan looks like in a viewer, as plain numbers: one pick -> place arrow and one step
number per step. ``pointmoe_ros.plan_msgs`` turns these into RViz markers; keeping the geometry
here lets it be tested without ROS."""
from __future__ import annotations

from dataclasses import dataclass

from ..common.pose_sequence import PoseSequence, Vec3

LABEL_LIFT = 0.03  # metres above the pick point, so the number does not hide in the object


@dataclass(frozen=True)
class StepMarker:
    """Step ``number`` (1-based): an arrow from the pick to the place position, a label above the pick."""

    number: int
    arrow_start: Vec3
    arrow_end: Vec3
    label_position: Vec3

    @property
    def label(self) -> str:
        return str(self.number)


def step_markers(sequence: PoseSequence) -> list[StepMarker]:
    markers = []
    for number, step in enumerate(sequence.steps, start=1):
        x, y, z = step.pick_xyz
        markers.append(StepMarker(number, step.pick_xyz, step.place_xyz, (x, y, z + LABEL_LIFT)))
    return markers
