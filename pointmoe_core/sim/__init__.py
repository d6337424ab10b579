"""Tabletop simulator with LoHoRavens tasks: PyBullet env, tasks and scoring, oracle, cloud
fusion, and the bridge to Ravens-style environments (ours or the real LoHoRavens one)."""
from .bridge import ExecutionResult, RavensBridge, to_action
from .cameras import DEFAULT_CAMERAS, CameraConfig
from .env import EnvConfig, TabletopEnv
from .objects import SEMANTIC_CLASSES, TEST_COLORS, TRAIN_COLORS
from .observe import SceneCloud, fuse_views
from .oracle import Oracle
from .poses import WORKSPACE_BOUNDS, ActionRefused, PoseStep
from .robot import MotionConfig
from .tasks import TASKS, Goal, Task

__all__ = [
    "DEFAULT_CAMERAS", "SEMANTIC_CLASSES", "TASKS", "TEST_COLORS", "TRAIN_COLORS", "WORKSPACE_BOUNDS",
    "ActionRefused", "CameraConfig", "EnvConfig", "ExecutionResult", "Goal", "MotionConfig", "Oracle",
    "PoseStep", "RavensBridge", "SceneCloud", "Task", "TabletopEnv", "fuse_views", "to_action",
]
