"""Where the robot may pick and place."""

# Ravens' workspace (x, y, z) rows of (low, high), metres: where pick and place poses may lie, and
# the range Pose-DiT scales positions over
WORKSPACE_BOUNDS = ((0.25, 0.75), (-0.5, 0.5), (0.0, 0.28))
