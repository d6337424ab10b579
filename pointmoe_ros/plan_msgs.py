"""``pointmoe_core`` plans <-> ROS messages: PoseSequence, PoseArray and RViz markers.

Only message construction lives here; the marker geometry is ``pointmoe_core.plan.markers``.
"""
from __future__ import annotations

from geometry_msgs.msg import Point, Pose, PoseArray
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from pointmoe_core.common.pose_sequence import PickPlace, PoseSequence, Quat, Vec3
from pointmoe_core.plan.markers import step_markers
from pointmoe_ros.msg import PickPlace as PickPlaceMsg
from pointmoe_ros.msg import PoseSequence as PoseSequenceMsg

ARROW_SHAFT, ARROW_HEAD = 0.008, 0.02  # metres: visible at tabletop scale without hiding blocks
LABEL_HEIGHT = 0.04
ARROW_RGBA = (1.0, 0.55, 0.0, 0.9)
LABEL_RGBA = (1.0, 1.0, 1.0, 1.0)


def pose_msg(xyz: Vec3, quat: Quat) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in xyz)
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quat)
    return pose


def _xyz(pose: Pose) -> Vec3:
    return pose.position.x, pose.position.y, pose.position.z


def _quat(pose: Pose) -> Quat:
    o = pose.orientation
    return o.x, o.y, o.z, o.w


def sequence_to_msg(sequence: PoseSequence, header: Header) -> PoseSequenceMsg:
    steps = [PickPlaceMsg(pick=pose_msg(s.pick_xyz, s.pick_quat), place=pose_msg(s.place_xyz, s.place_quat),
                          score=s.score) for s in sequence.steps]
    return PoseSequenceMsg(header=header, instruction=sequence.instruction, steps=steps,
                           planner=sequence.planner, planning_time=float(sequence.planning_time))


def sequence_from_msg(msg: PoseSequenceMsg) -> PoseSequence:
    steps = [PickPlace(_xyz(s.pick), _quat(s.pick), _xyz(s.place), _quat(s.place), s.score) for s in msg.steps]
    return PoseSequence(steps, msg.instruction, msg.planner, msg.planning_time)


def pose_array(sequence: PoseSequence, header: Header) -> PoseArray:
    """Every pick and place pose, in step order: pick 1, place 1, pick 2, ..."""
    poses = [pose for s in sequence.steps
             for pose in (pose_msg(s.pick_xyz, s.pick_quat), pose_msg(s.place_xyz, s.place_quat))]
    return PoseArray(header=header, poses=poses)


def _point(xyz: Vec3) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _marker(header: Header, namespace: str, marker_id: int, marker_type: int, rgba: tuple) -> Marker:
    marker = Marker(header=header, ns=namespace, id=marker_id, type=marker_type, action=Marker.ADD)
    marker.pose.orientation.w = 1.0
    marker.color.r, marker.color.g, marker.color.b, marker.color.a = rgba
    return marker


def plan_markers(sequence: PoseSequence, header: Header) -> MarkerArray:
    """DELETEALL first, so a shorter plan leaves no arrows of the last one; then per step a
    pick -> place arrow and its step number."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for step in step_markers(sequence):
        arrow = _marker(header, "pick_place", step.number, Marker.ARROW, ARROW_RGBA)
        arrow.points = [_point(step.arrow_start), _point(step.arrow_end)]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = ARROW_SHAFT, ARROW_HEAD, ARROW_HEAD
        label = _marker(header, "step_number", step.number, Marker.TEXT_VIEW_FACING, LABEL_RGBA)
        label.pose.position = _point(step.label_position)
        label.scale.z = LABEL_HEIGHT
        label.text = step.label
        markers += [arrow, label]
    return MarkerArray(markers=markers)
