"""``TabletopEnv``: a headless PyBullet tabletop speaking the Ravens ``Environment`` interface.

``reset() -> obs`` and ``step(act) -> (obs, reward, done, info)`` with
``act = {'pose0': (xyz, quat_xyzw), 'pose1': (xyz, quat_xyzw)}`` executed by Ravens' suction
pick-and-place primitive. ``obs`` holds ``color``, ``depth`` and ``segm`` tuples, one image per
camera (Ravens' three D415 views, then LoHoRavens' top view); ``segm`` holds PyBullet body ids,
-1 where no body is seen. ``info`` has every object's (position, rotation, dimensions) under its
body id, as Ravens' ``env.info``, plus ``lang_goal`` (CLIPort's key for the instruction),
``score``, ``success``, ``picked`` and ``timeout``.

After an action the physics runs until every block has come to rest (Ravens' ``is_static``)
rather than for a fixed time. Physics runs at 240 Hz in DIRECT mode; images come from
PyBullet's CPU renderer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pybullet

from . import objects
from .cameras import DEFAULT_CAMERAS, CameraConfig, render
from .poses import WORKSPACE_BOUNDS, Pose, validate_action
from .robot import FloatingSuction, MotionConfig, Suction, UR5Suction, pick_and_place
from .tasks import LayoutError, Task

STATIC_SPEED = 5e-3  # m/s (and rad/s): Ravens' threshold for "objects have settled"


@dataclass
class EnvConfig:
    """image_size (height, width) applies to every camera, intrinsics scaled to match.
    assets_root: Ravens/LoHoRavens ``assets`` folder; when set, the UR5 carries the suction.
    max_steps: actions per episode (None: the task's). settle_steps: most physics steps spent
    waiting for objects to come to rest. layout_attempts: scene rebuilds before giving up."""

    image_size: tuple[int, int] = (480, 640)
    cameras: tuple[CameraConfig, ...] = DEFAULT_CAMERAS
    assets_root: str | None = None
    hz: int = 240
    max_steps: int | None = None
    settle_steps: int = 480
    layout_attempts: int = 50
    motion: MotionConfig = field(default_factory=MotionConfig)


class TabletopEnv:
    """Ravens' ``Environment`` on our own scene builders; ``task`` is a ``tasks.Task``."""

    def __init__(self, task: Task | None = None, config: EnvConfig | None = None):
        self.config = config or EnvConfig()
        self.cameras = tuple(c.resized(*self.config.image_size) for c in self.config.cameras)
        self.agent_cams = [c.as_ravens() for c in self.cameras]  # Ravens' attribute name
        self.bounds = WORKSPACE_BOUNDS.copy()
        self.client = pybullet.connect(pybullet.DIRECT)
        self.task = task
        self.objects: dict[int, objects.SceneObject] = {}
        self.ee: Suction | None = None
        self.step_count = 0
        self._rng = np.random.default_rng()

    # Ravens' gym-style interface ---------------------------------------------------------------
    def seed(self, seed: int | None = None) -> int | None:
        self._rng = np.random.default_rng(seed)
        return seed

    def set_task(self, task: Task) -> None:
        self.task = task

    @property
    def max_steps(self) -> int:
        return self.config.max_steps or self.task.max_steps

    def reset(self, seed: int | None = None) -> dict:
        """Build a fresh scene for the task and return the first observation."""
        if self.task is None:
            raise ValueError("no task: pass one to TabletopEnv(task) or call set_task first")
        if seed is not None:
            self.seed(seed)
        for _ in range(self.config.layout_attempts):
            self._build_world()
            try:
                self.task.reset(self, self._rng)
                break
            except LayoutError:
                continue
        else:
            raise LayoutError(f"{self.task.name}: no layout found in {self.config.layout_attempts} attempts")
        self._settle()
        self.step_count = 0
        return self.observe()

    def step(self, action: dict | None = None) -> tuple[dict, float, bool, dict]:
        """Execute one pick-and-place; ``None`` only observes (Ravens' ``step()``)."""
        reward, picked, timeout = 0.0, False, False
        if action is not None:
            action = validate_action(action, self.bounds)
            outcome = pick_and_place(self.ee, action["pose0"], action["pose1"], self.config.motion)
            picked, timeout = outcome.picked, outcome.timeout
            self.step_count += 1
            self._settle()
            reward = self.task.reward(self)
        done = self.task.done() or self.step_count >= self.max_steps or timeout
        return self.observe(), reward, done, {**self.info, "picked": picked, "timeout": timeout}

    def observe(self) -> dict:
        """Colour, depth and segmentation of every camera (Ravens' ``_get_obs`` plus ``segm``)."""
        views = [render(camera, self.client) for camera in self.cameras]
        return {key: tuple(view[i] for view in views) for i, key in enumerate(("color", "depth", "segm"))}

    @property
    def info(self) -> dict:
        info: dict = {body: (*self.object_pose(body), obj.dims) for body, obj in self.objects.items()
                      if obj.kind in ("block", "bowl", "zone")}
        info.update(lang_goal=self.task.instruction, score=self.task.score, success=self.task.success)
        return info

    def close(self) -> None:
        if self.client is not None and pybullet.isConnected(self.client):
            pybullet.disconnect(self.client)
        self.client = None

    def __enter__(self) -> TabletopEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # the scene, as tasks see it ----------------------------------------------------------------
    def add_block(self, color: str, size: str, pose: Pose) -> objects.SceneObject:
        return self._register(objects.add_block(self.client, color, size, pose))

    def add_bowl(self, color: str, pose: Pose) -> objects.SceneObject:
        return self._register(objects.add_bowl(self.client, color, pose))

    def add_zone(self, color: str, pose: Pose, side: float) -> objects.SceneObject:
        return self._register(objects.add_zone(self.client, color, pose, side))

    def object_pose(self, body_id: int) -> Pose:
        position, orientation = pybullet.getBasePositionAndOrientation(body_id, physicsClientId=self.client)
        return np.array(position), np.array(orientation)

    @property
    def class_ids(self) -> dict[int, int]:
        """Body id -> semantic class id (index into ``objects.SEMANTIC_CLASSES``)."""
        return {body: obj.class_id for body, obj in self.objects.items()}

    @property
    def is_static(self) -> bool:
        """Ravens' test: every movable object slower than STATIC_SPEED."""
        for body, obj in self.objects.items():
            if obj.movable:
                linear, angular = pybullet.getBaseVelocity(body, physicsClientId=self.client)
                if np.linalg.norm(linear) > STATIC_SPEED or np.linalg.norm(angular) > STATIC_SPEED:
                    return False
        return True

    # internals ---------------------------------------------------------------------------------
    def _register(self, obj: objects.SceneObject) -> objects.SceneObject:
        self.objects[obj.body_id] = obj
        return obj

    def _is_movable(self, body_id: int) -> bool:
        obj = self.objects.get(body_id)
        return obj is not None and obj.movable

    def _build_world(self) -> None:
        client = self.client
        pybullet.resetSimulation(physicsClientId=client)
        pybullet.setGravity(0, 0, -9.8, physicsClientId=client)
        pybullet.setTimeStep(1.0 / self.config.hz, physicsClientId=client)
        self.objects = {}
        for part in objects.add_table(client):
            self._register(part)
        if self.config.assets_root:
            self.ee = UR5Suction(client, self._is_movable, self.config.motion, self.config.assets_root)
        else:
            self.ee = FloatingSuction(client, self._is_movable, self.config.motion)
        for body in self.ee.bodies:
            self._register(objects.SceneObject(body, "robot", (0.0, 0.0, 0.0)))

    def _settle(self) -> None:
        for _ in range(self.config.settle_steps):
            pybullet.stepSimulation(physicsClientId=self.client)
            if self.is_static:
                return
