"""Where the robot may pick and place, and how a pose on the table turns."""

import numpy as np

# Ravens' workspace (x, y, z) rows of (low, high), metres: where pick and place poses may lie, and
# the range Pose-DiT scales positions over
WORKSPACE_BOUNDS = ((0.25, 0.75), (-0.5, 0.5), (0.0, 0.28))


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (x, y, z, w) of a rotation by ``yaw`` radians about world z."""
    return np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
