"""Plan <-> message conversions of pointmoe_ros.plan_msgs, as plain functions on the built messages."""
import numpy as np
import pytest

from pointmoe_core.common.pose_sequence import WORKSPACE_BOUNDS, PickPlace, PoseSequence

pytestmark = pytest.mark.ros


@pytest.fixture
def plan_msgs(ros_install):
    pytest.importorskip("rclpy", reason="rclpy (ROS 2 Jazzy wheels, `.[ros]` extra) not installed")
    from pointmoe_ros import plan_msgs

    return plan_msgs


def _sequence() -> PoseSequence:
    yawed = (0.0, 0.0, np.sin(0.4), np.cos(0.4))
    return PoseSequence([PickPlace((0.4, -0.1, 0.04), yawed, (0.5, 0.2, 0.04), (0, 0, 0, 1), 0.9),
                         PickPlace((0.6, 0.3, 0.02), (0, 0, 0, 1), (0.3, -0.4, 0.08), yawed, 0.25)],
                        instruction="put the blocks in the zone", planner="oracle", planning_time=0.125)


def test_sequence_round_trips_through_the_message(plan_msgs):
    from std_msgs.msg import Header

    sequence = _sequence()
    msg = plan_msgs.sequence_to_msg(sequence, Header(frame_id="map"))
    assert msg.header.frame_id == "map" and len(msg.steps) == 2
    assert msg.steps[1].place.position.z == pytest.approx(0.08)
    back = plan_msgs.sequence_from_msg(msg)
    assert (back.instruction, back.planner, back.planning_time) == (sequence.instruction, "oracle", 0.125)
    for got, want in zip(back.steps, sequence.steps):
        for name in ("pick_xyz", "pick_quat", "place_xyz", "place_quat"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name))
        assert got.score == pytest.approx(want.score)  # float32 in the message


def test_pose_array_lists_picks_and_places_in_step_order(plan_msgs):
    from std_msgs.msg import Header

    sequence = _sequence()
    poses = plan_msgs.pose_array(sequence, Header(frame_id="map")).poses
    expected = [xyz for s in sequence.steps for xyz in (s.pick_xyz, s.place_xyz)]
    np.testing.assert_allclose([(p.position.x, p.position.y, p.position.z) for p in poses], expected)
    bounds = np.array(WORKSPACE_BOUNDS)
    for pose in poses:
        o = pose.orientation
        assert np.linalg.norm([o.x, o.y, o.z, o.w]) == pytest.approx(1.0)
        xyz = np.array([pose.position.x, pose.position.y, pose.position.z])
        assert np.all(xyz >= bounds[:, 0]) and np.all(xyz <= bounds[:, 1])


def test_markers_clear_first_then_arrow_and_number_per_step(plan_msgs):
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    sequence = _sequence()
    markers = plan_msgs.plan_markers(sequence, Header(frame_id="map")).markers
    assert markers[0].action == Marker.DELETEALL
    added = [m for m in markers if m.action == Marker.ADD]
    arrows = [m for m in added if m.type == Marker.ARROW]
    labels = [m for m in added if m.type == Marker.TEXT_VIEW_FACING]
    assert len(markers) == 1 + 2 * len(sequence) and len(arrows) == len(labels) == len(sequence)
    for number, (arrow, label, step) in enumerate(zip(arrows, labels, sequence.steps), start=1):
        start, end = arrow.points
        np.testing.assert_allclose([(start.x, start.y, start.z), (end.x, end.y, end.z)],
                                   [step.pick_xyz, step.place_xyz])
        assert label.text == str(number) and label.pose.position.z > step.pick_xyz[2]
        assert arrow.color.a > 0 and label.color.a > 0 and arrow.header.frame_id == "map"
    assert len({(m.ns, m.id) for m in markers[1:]}) == len(markers) - 1  # no marker replaces another


def test_empty_plan_only_clears(plan_msgs):
    from std_msgs.msg import Header

    markers = plan_msgs.plan_markers(PoseSequence(), Header()).markers
    assert len(markers) == 1
    assert plan_msgs.pose_array(PoseSequence(), Header()).poses == []
