"""Tabletop objects of LoHoRavens built from PyBullet collision primitives: no asset files needed.

Colours are CLIPort/LoHoRavens' Tableau palette (``utils.COLORS``) with their train/test splits.
Blocks are the smaller (4 cm, ``stacking/block.urdf``) and bigger (6 cm,
``stacking/bigger_block.urdf``) cubes; bowls match ``bowl/bowl.urdf`` (12 cm across, 3.5 cm
tall, fixed) as a floor disc inside a ring of thin wall boxes; zones are flat, visual-only square
outlines like ``zone/zone.urdf``. Every body carries a semantic class name, which the fused point cloud
uses as its label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet

from .poses import Pose

COLORS: dict[str, tuple[float, float, float]] = {
    name: (r / 255, g / 255, b / 255) for name, (r, g, b) in {
        "blue": (78, 121, 167), "red": (255, 87, 89), "green": (89, 169, 79),
        "orange": (242, 142, 43), "yellow": (237, 201, 72), "purple": (176, 122, 161),
        "pink": (255, 157, 167), "cyan": (118, 183, 178), "brown": (156, 117, 95),
        "white": (255, 255, 255), "gray": (186, 176, 172),
    }.items()
}
TRAIN_COLORS = ("blue", "red", "green", "yellow", "brown", "gray", "cyan")
TEST_COLORS = ("blue", "red", "green", "orange", "purple", "pink", "white")  # CLIPort's EVAL_COLORS
COLOR_SPLITS = {"train": TRAIN_COLORS, "test": TEST_COLORS}

BLOCK_SIZES = {"smaller": 0.04, "bigger": 0.06}  # cube edge, metres
BLOCK_MASSES = {"smaller": 0.01, "bigger": 0.034}  # Ravens' 10 g block, the bigger one by volume
BOWL_DIAMETER = 0.12
BOWL_HEIGHT = 0.035
BOWL_FLOOR = 0.005  # thickness of the bowl's floor disc
BOWL_WALLS = 16  # wall boxes in the ring
ZONE_THICKNESS = 0.001
ZONE_OUTLINE_SIDE = 0.12  # zone.obj (20 units) at zone.urdf's scale 0.006
ZONE_BORDER = 0.006  # its strips are 1 unit wide
TABLE_GRAY = (0.2, 0.2, 0.2)  # Ravens' dark workspace board
FRICTION = 1.0  # Ravens' lateral_friction for blocks, bowls and the plane

KINDS = ("table", "robot", "block", "bowl", "zone")
SEMANTIC_CLASSES: tuple[str, ...] = (
    ("table", "robot")
    + tuple(f"{size} {color} block" for color in COLORS for size in BLOCK_SIZES)
    + tuple(f"{color} bowl" for color in COLORS)
    + tuple(f"{color} zone" for color in COLORS)
)
"""Fixed class list of the tabletop domain, so class ids mean the same in every episode."""
CLASS_IDS = {name: index for index, name in enumerate(SEMANTIC_CLASSES)}


@dataclass(frozen=True)
class SceneObject:
    """A body in the scene: what it is, its colour and block size, and its extent (x, y, z)."""

    body_id: int
    kind: str  # one of KINDS
    dims: tuple[float, float, float]
    color: str | None = None
    size: str | None = None  # "smaller" | "bigger" for blocks

    @property
    def semantic_class(self) -> str:
        if self.kind == "block":
            return f"{self.size} {self.color} block"
        if self.kind in ("bowl", "zone"):
            return f"{self.color} {self.kind}"
        return self.kind

    @property
    def class_id(self) -> int:
        return CLASS_IDS[self.semantic_class]

    @property
    def movable(self) -> bool:
        """Whether suction can pick it (Ravens' 'rigid' objects, as opposed to 'fixed' ones)."""
        return self.kind == "block"


def _rgba(color: str | tuple[float, float, float]) -> list[float]:
    return [*(COLORS[color] if isinstance(color, str) else color), 1.0]


def add_table(client: int) -> list[SceneObject]:
    """The table: Ravens' ground plane (collision only, top at z=0) under its dark 0.5 x 1 m
    workspace board. The white floor around the board is not drawn: the CPU renderer pays for
    every pixel it fills, and the cloud is cropped to the workspace anyway."""
    ground = pybullet.createCollisionShape(pybullet.GEOM_BOX, halfExtents=(3.0, 3.0, 0.05), physicsClientId=client)
    # a body without a visual shape is drawn from its collision shape; a transparent speck hides it
    hidden = pybullet.createVisualShape(pybullet.GEOM_SPHERE, radius=0.001, rgbaColor=[1, 1, 1, 0],
                                        physicsClientId=client)
    floor = pybullet.createMultiBody(0, ground, hidden, basePosition=[0, 0, -0.05], physicsClientId=client)
    pybullet.changeDynamics(floor, -1, lateralFriction=FRICTION, physicsClientId=client)
    board_half = (0.25, 0.5, 0.0005)
    board = pybullet.createMultiBody(
        0, -1, pybullet.createVisualShape(pybullet.GEOM_BOX, halfExtents=board_half, rgbaColor=_rgba(TABLE_GRAY),
                                          physicsClientId=client),
        basePosition=[0.5, 0, -board_half[2]], physicsClientId=client)
    return [SceneObject(floor, "table", (6.0, 6.0, 0.1)), SceneObject(board, "table", (0.5, 1.0, 0.0))]


def add_block(client: int, color: str, size: str, pose: Pose) -> SceneObject:
    """A dynamic cube of edge BLOCK_SIZES[size]; ``pose`` is its centre."""
    edge = BLOCK_SIZES[size]
    half = [edge / 2] * 3
    body = pybullet.createMultiBody(
        BLOCK_MASSES[size],
        pybullet.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half, physicsClientId=client),
        pybullet.createVisualShape(pybullet.GEOM_BOX, halfExtents=half, rgbaColor=_rgba(color),
                                   physicsClientId=client),
        basePosition=pose[0], baseOrientation=pose[1], physicsClientId=client)
    # resting blocks may sleep: it makes a physics step of a cluttered table ~4x cheaper
    pybullet.changeDynamics(body, -1, lateralFriction=FRICTION, rollingFriction=1e-4,
                            activationState=pybullet.ACTIVATION_STATE_ENABLE_SLEEPING, physicsClientId=client)
    return SceneObject(body, "block", (edge, edge, edge), color, size)


def add_bowl(client: int, color: str, pose: Pose) -> SceneObject:
    """A fixed bowl standing on the table at ``pose`` (its floor centre)."""
    radius = BOWL_DIAMETER / 2
    wall_half_thickness = 0.003
    wall_radius = radius - wall_half_thickness
    angles = np.arange(BOWL_WALLS) * 2 * np.pi / BOWL_WALLS
    # walls slightly wider than their arc so the ring has no gaps
    wall_half = [wall_half_thickness, 1.1 * np.pi * wall_radius / BOWL_WALLS, BOWL_HEIGHT / 2]
    shapes = {
        "shapeTypes": [pybullet.GEOM_CYLINDER] + [pybullet.GEOM_BOX] * BOWL_WALLS,
        "radii": [radius] + [0.0] * BOWL_WALLS,
        "lengths": [BOWL_FLOOR] + [0.0] * BOWL_WALLS,
        "halfExtents": [[0, 0, 0]] + [wall_half] * BOWL_WALLS,
    }
    positions = [[0, 0, BOWL_FLOOR / 2]] + [
        [wall_radius * np.cos(a), wall_radius * np.sin(a), BOWL_HEIGHT / 2] for a in angles]
    orientations = [[0, 0, 0, 1]] + [[0, 0, np.sin(a / 2), np.cos(a / 2)] for a in angles]
    collision = pybullet.createCollisionShapeArray(
        **shapes, collisionFramePositions=positions, collisionFrameOrientations=orientations,
        physicsClientId=client)
    visual = pybullet.createVisualShapeArray(
        **shapes, visualFramePositions=positions, visualFrameOrientations=orientations,
        physicsClientId=client)
    body = pybullet.createMultiBody(0, collision, visual, basePosition=pose[0], baseOrientation=pose[1],
                                    physicsClientId=client)
    pybullet.changeVisualShape(body, -1, rgbaColor=_rgba(color), physicsClientId=client)
    pybullet.changeDynamics(body, -1, lateralFriction=FRICTION, physicsClientId=client)
    return SceneObject(body, "bowl", (BOWL_DIAMETER, BOWL_DIAMETER, BOWL_HEIGHT), color)


def add_zone(client: int, color: str, pose: Pose, side: float) -> SceneObject:
    """A zone lying on the table, seen but never touched: like LoHoRavens' ``zone/zone.urdf``, a
    square outline ZONE_OUTLINE_SIDE across with ZONE_BORDER wide strips, whatever ``side`` (the
    square the task scores, 0.1 or 0.15 m there too) says."""
    half_side, half_border = ZONE_OUTLINE_SIDE / 2, ZONE_BORDER / 2
    strip = half_side - half_border  # centre line of each strip
    long_half = [half_side, half_border, ZONE_THICKNESS / 2]
    short_half = [half_border, half_side - ZONE_BORDER, ZONE_THICKNESS / 2]
    visual = pybullet.createVisualShapeArray(
        shapeTypes=[pybullet.GEOM_BOX] * 4, halfExtents=[long_half, long_half, short_half, short_half],
        visualFramePositions=[[0, strip, 0], [0, -strip, 0], [strip, 0, 0], [-strip, 0, 0]],
        physicsClientId=client)
    body = pybullet.createMultiBody(0, -1, visual, basePosition=[pose[0][0], pose[0][1], ZONE_THICKNESS / 2],
                                    baseOrientation=pose[1], physicsClientId=client)
    pybullet.changeVisualShape(body, -1, rgbaColor=_rgba(color), physicsClientId=client)
    return SceneObject(body, "zone", (ZONE_OUTLINE_SIDE, ZONE_OUTLINE_SIDE, ZONE_THICKNESS), color)
