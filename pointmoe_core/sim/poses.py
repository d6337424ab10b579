"""Poses as Ravens writes them: ``(xyz, quat_xyzw)`` pairs, plus the few rotations the sim needs.

Pure numpy, so the bridge and the cloud fusion work without a PyBullet connection.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..common import workspace

Pose = tuple[np.ndarray, np.ndarray]  # (xyz (3,), quaternion (x, y, z, w) (4,))

# the workspace as an array, for the simulator's arithmetic on it
WORKSPACE_BOUNDS = np.array(workspace.WORKSPACE_BOUNDS)


class PoseStep(NamedTuple):
    """One pick-place step: Ravens' ``pose0`` (suction pick) and ``pose1`` (place), unpacked.

    Field names match ``pointmoe_core.common.pose_sequence.PickPlace``, so either one works wherever
    a step is expected.
    """

    pick_xyz: np.ndarray
    pick_quat: np.ndarray
    place_xyz: np.ndarray
    place_quat: np.ndarray


def quat_yaw(quat: np.ndarray) -> float:
    """Rotation about z of a quaternion (the yaw of its ZYX Euler angles)."""
    x, y, z, w = np.asarray(quat, dtype=np.float64)
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def quat_matrix(quat: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix of a unit quaternion (x, y, z, w)."""
    x, y, z, w = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def yaw_difference(yaw0: float, yaw1: float, symmetry: float) -> float:
    """Smallest rotation between two yaws for a shape that repeats every ``symmetry`` radians.

    ``symmetry`` 0 means the rotation does not matter (Ravens' convention), so the result is 0.
    """
    if symmetry <= 0:
        return 0.0
    diff = abs(yaw0 - yaw1) % symmetry
    return float(min(diff, symmetry - diff))


def nearest_symmetric_yaw(yaw: float, reference: float, symmetry: float) -> float:
    """The yaw equivalent to ``yaw`` under ``symmetry`` that is closest to ``reference``.

    Lets the oracle turn a block by at most half its symmetry instead of up to a full turn.
    """
    if symmetry <= 0:
        return reference
    return float(reference + (yaw - reference + symmetry / 2) % symmetry - symmetry / 2)


class ActionRefused(ValueError):
    """An action that must not reach an environment: malformed, non-finite, outside the
    workspace bounds, or with a quaternion that is not of unit length."""


QUATERNION_TOLERANCE = 1e-3  # accepted deviation of |q| from 1
_AXES = "xyz"


def validate_pose(name: str, xyz, quat, bounds: np.ndarray = WORKSPACE_BOUNDS) -> Pose:
    """Check one Ravens pose; return it as float arrays with the quaternion normalised.

    Raises ActionRefused naming ``name`` and what is wrong.
    """
    try:
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1)
        quat = np.asarray(quat, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ActionRefused(f"{name}: not numeric ({error})") from None
    if xyz.shape != (3,) or quat.shape != (4,):
        raise ActionRefused(f"{name}: needs xyz (3 numbers) and quat_xyzw (4), got {xyz.size} and {quat.size}")
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat))):
        raise ActionRefused(f"{name}: NaN or infinite value in position {xyz.tolist()} or quaternion {quat.tolist()}")
    bounds = np.asarray(bounds, dtype=np.float64)
    outside = (xyz < bounds[:, 0] - 1e-9) | (xyz > bounds[:, 1] + 1e-9)
    if np.any(outside):
        axis = int(np.argmax(outside))
        raise ActionRefused(f"{name}: {_AXES[axis]} = {xyz[axis]:.4f} m is outside the workspace bounds "
                            f"[{bounds[axis, 0]}, {bounds[axis, 1]}]")
    norm = float(np.linalg.norm(quat))
    if abs(norm - 1.0) > QUATERNION_TOLERANCE:
        raise ActionRefused(f"{name}: quaternion {quat.tolist()} has norm {norm:.4f}, not 1")
    return xyz, quat / norm


def validate_action(action, bounds: np.ndarray = WORKSPACE_BOUNDS) -> dict[str, Pose]:
    """Check a Ravens action ``{'pose0': (xyz, quat), 'pose1': (xyz, quat)}``; return a clean copy."""
    if not isinstance(action, dict) or not {"pose0", "pose1"} <= action.keys():
        raise ActionRefused(f"an action is a dict with 'pose0' and 'pose1', got {type(action).__name__}")
    clean = {}
    for key in ("pose0", "pose1"):
        try:
            xyz, quat = action[key]
        except (TypeError, ValueError):
            raise ActionRefused(f"{key}: expected a pair (xyz, quat_xyzw)") from None
        clean[key] = validate_pose(key, xyz, quat, bounds)
    return clean
