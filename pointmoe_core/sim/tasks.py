"""LoHoRavens v1 tasks: scene layouts, language instructions, goals and Ravens-style scoring.

A task builds its scene in ``reset`` and describes success as a list of ``Goal``s, Ravens'
``(objs, matches, targs, replace, rotations, metric, params, max_reward)`` tuples. Goals are met
in order; the episode score is the weight of the goals met plus the met fraction of the current
one, so it rises from 0 to 1 ("progress reward"), and the task succeeds when every goal is met.
Pose goals compare positions in xy within 1 cm and yaw within 15 degrees (Ravens' ``pos_eps``,
``rot_eps``), and heights too for stacks; zone goals count the share of each object's points
lying inside a zone.

Tasks follow LoHoRavens (Zhang et al. 2023, ``cliport/tasks``) in names, object counts, sizes and
instructions, with these deliberate changes: goals use a one-to-one assignment of objects to
targets rather than Ravens' any-target count; stacks are built bigger blocks first, so their
target heights are well defined; zones and targets are sampled so that every goal is reachable.
Scenes use the colours of one split, ``train`` or ``test``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Sequence

import numpy as np

from ..common.workspace import yaw_quat
from .objects import BLOCK_SIZES, BOWL_DIAMETER, BOWL_FLOOR, COLOR_SPLITS, COLORS, SceneObject
from .poses import WORKSPACE_BOUNDS, Pose, quat_matrix, quat_yaw, yaw_difference

POSITION_TOLERANCE = 0.01  # metres in xy, Ravens' pos_eps
ROTATION_TOLERANCE = np.deg2rad(15)  # Ravens' rot_eps
HEIGHT_TOLERANCE = 0.015  # tells stack levels apart (the smallest level step is 4 cm)
BOWL_TOLERANCE = 0.05  # LoHoRavens' pos_eps for tasks with bowls: anywhere inside the bowl
CUBE_SYMMETRY = np.pi / 2
ZONE_SIDE = 0.1  # LoHoRavens' zone_size for stacking zones
BIG_ZONE_SIDE = 0.15  # and for zones that hold several blocks side by side
SUCCESS_SCORE = 0.99
MAX_DISTRACTORS = 6  # LoHoRavens' matching-bowl scenes add up to six distractor blocks or bowls
# the suction tip on top of a stack must stay inside the workspace
MAX_STACK_HEIGHT = WORKSPACE_BOUNDS[2, 1] - BLOCK_SIZES["smaller"]

# LoHoRavens' absolute areas: "top" is the half nearer the robot (small x), "left" is y < 0
AREAS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "top left area": ((0.25, 0.5), (-0.5, 0.0)),
    "top right area": ((0.25, 0.5), (0.0, 0.5)),
    "bottom left area": ((0.5, 0.75), (-0.5, 0.0)),
    "bottom right area": ((0.5, 0.75), (0.0, 0.5)),
}
Region = tuple[tuple[float, float], tuple[float, float]]  # ((x low, x high), (y low, y high))


class Scene(Protocol):
    """What a task needs from the environment (``TabletopEnv`` provides it)."""

    objects: dict[int, SceneObject]

    def add_block(self, color: str, size: str, pose: Pose) -> SceneObject: ...
    def add_bowl(self, color: str, pose: Pose) -> SceneObject: ...
    def add_zone(self, color: str, pose: Pose, side: float) -> SceneObject: ...
    def object_pose(self, body_id: int) -> Pose: ...


class LayoutError(RuntimeError):
    """No free place was found for an object; the environment rebuilds the scene and retries."""


@dataclass
class Goal:
    """One of Ravens' goals.

    objects: body ids the goal is about. targets: object (centre) poses for ``metric='pose'``;
    for ``metric='zone'``, free floor spots inside ``zone`` where the oracle puts the objects.
    matches[i, j]: object i may fill target j. weight: Ravens' max_reward, the goal's share of
    the score. symmetry: the objects' rotational symmetry about z (0: yaw does not matter).
    check_height: also compare heights (stacks). zone: (pose, (side x, side y)) for zone goals.
    """

    objects: list[int]
    targets: list[Pose]
    matches: np.ndarray
    weight: float
    metric: str = "pose"
    symmetry: float = CUBE_SYMMETRY
    position_tolerance: float = POSITION_TOLERANCE
    check_height: bool = False
    zone: tuple[Pose, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        self.matches = np.asarray(self.matches, dtype=bool)
        if self.matches.shape != (len(self.objects), len(self.targets)):
            raise ValueError(f"matches has shape {self.matches.shape}, expected "
                             f"{(len(self.objects), len(self.targets))}")
        if self.metric not in ("pose", "zone") or (self.metric == "zone") != (self.zone is not None):
            raise ValueError("a goal is either metric='pose' without zone or metric='zone' with one")

    def pose_matches(self, pose: Pose, target: Pose) -> bool:
        """Ravens' ``is_match``: xy distance and symmetric yaw error within tolerance."""
        position, target_position = np.asarray(pose[0]), np.asarray(target[0])
        if np.linalg.norm(position[:2] - target_position[:2]) >= self.position_tolerance:
            return False
        if self.check_height and abs(position[2] - target_position[2]) >= HEIGHT_TOLERANCE:
            return False
        return bool(yaw_difference(quat_yaw(pose[1]), quat_yaw(target[1]), self.symmetry) < ROTATION_TOLERANCE)

    def satisfied_pairs(self, scene: Scene) -> dict[int, int]:
        """Object index -> target index for a largest set of objects that sit on distinct targets."""
        poses = [scene.object_pose(body) for body in self.objects]
        edges = self.matches & np.array([[self.pose_matches(pose, target) for target in self.targets]
                                         for pose in poses]).reshape(self.matches.shape)
        return max_assignment(edges)

    def progress(self, scene: Scene) -> float:
        """Met fraction of this goal in [0, 1]."""
        if self.metric == "zone":
            return float(np.mean([zone_fraction(scene, body, *self.zone) for body in self.objects]))
        required = min(len(self.objects), len(self.targets))
        return len(self.satisfied_pairs(scene)) / required if required else 1.0


def max_assignment(allowed: np.ndarray) -> dict[int, int]:
    """Maximum bipartite matching (rows -> columns) by augmenting paths; tiny inputs only."""
    owner: dict[int, int] = {}  # column -> row

    def augment(row: int, seen: set[int]) -> bool:
        for column in np.flatnonzero(allowed[row]):
            column = int(column)
            if column not in seen:
                seen.add(column)
                if column not in owner or augment(owner[column], seen):
                    owner[column] = row
                    return True
        return False

    for row in range(allowed.shape[0]):
        augment(row, set())
    return {row: column for column, row in owner.items()}


def zone_fraction(scene: Scene, body: int, zone_pose: Pose, zone_size: tuple[float, float]) -> float:
    """Share of a 3x3x3 grid of points spread over the object that lie inside the zone's square."""
    dims = np.asarray(scene.objects[body].dims)
    grid = np.stack(np.meshgrid(*[np.array([-0.4, 0.0, 0.4]) * d for d in dims], indexing="ij"), -1)
    position, orientation = scene.object_pose(body)
    world = grid.reshape(-1, 3) @ quat_matrix(orientation).T + position
    local = (world - np.asarray(zone_pose[0])) @ quat_matrix(zone_pose[1])
    inside = (np.abs(local[:, 0]) < zone_size[0] / 2) & (np.abs(local[:, 1]) < zone_size[1] / 2)
    return float(np.mean(inside & (world[:, 2] < WORKSPACE_BOUNDS[2, 1])))


class Layout:
    """Ravens' ``get_random_pose``: random collision-free floor poses inside the workspace.

    Each placed object occupies a disc of its half diagonal plus ``margin``; a new one is drawn
    uniformly in its region (the workspace by default) until it overlaps none.
    """

    def __init__(self, rng: np.random.Generator, margin: float = 0.005, attempts: int = 200):
        self.rng, self.margin, self.attempts = rng, margin, attempts
        self.discs: list[tuple[np.ndarray, float]] = []

    def sample(self, footprint: Sequence[float], region: Region | None = None) -> Pose:
        """A pose with random yaw whose footprint (x, y) lies in the workspace and whose centre
        lies in ``region``; z is 0 (the floor)."""
        radius = float(np.hypot(footprint[0], footprint[1]) / 2)
        bounds = WORKSPACE_BOUNDS[:2]
        low = np.maximum(bounds[:, 0] + radius, [r[0] for r in region] if region else -np.inf)
        high = np.minimum(bounds[:, 1] - radius, [r[1] for r in region] if region else np.inf)
        if np.any(low > high):
            raise LayoutError(f"a footprint {tuple(footprint)} does not fit in region {region}")
        for _ in range(self.attempts):
            xy = self.rng.uniform(low, high)
            if all(np.linalg.norm(xy - other) >= radius + other_radius + self.margin
                   for other, other_radius in self.discs):
                self.discs.append((xy, radius))
                return np.array([xy[0], xy[1], 0.0]), yaw_quat(self.rng.uniform(0, 2 * np.pi))
        raise LayoutError(f"no free place for a footprint {tuple(footprint)} in region {region}")


def on_floor(pose: Pose, height: float) -> Pose:
    """``pose`` raised so that an object ``height`` tall rests on the floor."""
    return np.array([pose[0][0], pose[0][1], height / 2]), pose[1]


def stack_targets(base: Pose, sizes: Sequence[str]) -> list[Pose]:
    """Centre poses of blocks of ``sizes`` stacked bottom-up on the floor at ``base`` (xy, yaw)."""
    edges = np.array([BLOCK_SIZES[size] for size in sizes])
    centres = np.cumsum(edges) - edges / 2
    return [(np.array([base[0][0], base[0][1], z]), np.asarray(base[1])) for z in centres]


def zone_spots(zone: Pose, side: float, count: int) -> list[Pose]:
    """Floor spots inside a zone: its centre for one object, else a 2x2 grid (repeating beyond 4)."""
    offsets = np.zeros((1, 2)) if count == 1 else np.array([[-1, -1], [1, 1], [-1, 1], [1, -1]]) * side / 4
    rotation = quat_matrix(zone[1])[:2, :2]
    return [(np.array([*(zone[0][:2] + rotation @ offsets[i % len(offsets)]), 0.0]), np.asarray(zone[1]))
            for i in range(count)]


def same_size_matrix(object_sizes: Sequence[str], target_sizes: Sequence[str]) -> np.ndarray:
    return np.array([[a == b for b in target_sizes] for a in object_sizes])


@dataclass
class Task(ABC):
    """Base task: builds a scene, holds goals and instruction, and scores the episode.

    ``split`` chooses the colours (``train`` or ``test``). Subclasses set ``name`` and implement
    ``build``, which adds objects through the scene, then sets ``goals``, ``instruction`` and
    ``max_steps`` (the number of pick-place steps allowed).
    """

    name: ClassVar[str]
    split: str = "train"
    goals: list[Goal] = field(default_factory=list, init=False)
    instruction: str = field(default="", init=False)
    max_steps: int = field(default=10, init=False)
    _progress: float = field(default=0.0, init=False)  # weight of the goals already met
    _score: float = field(default=0.0, init=False)  # cumulative reward returned so far

    @property
    def colors(self) -> tuple[str, ...]:
        return COLOR_SPLITS[self.split]

    def reset(self, scene: Scene, rng: np.random.Generator) -> None:
        self.goals, self.instruction, self._progress, self._score = [], "", 0.0, 0.0
        self.build(scene, rng, Layout(rng))

    @abstractmethod
    def build(self, scene: Scene, rng: np.random.Generator, layout: Layout) -> None:
        """Add the task's objects to ``scene`` and set ``goals``, ``instruction`` and ``max_steps``."""

    @property
    def score(self) -> float:
        """Progress so far in [0, 1] (Ravens' cumulative reward)."""
        return self._score

    @property
    def success(self) -> bool:
        """All goals met (Ravens counts a score above 0.99 as success)."""
        return self._score >= SUCCESS_SCORE

    def reward(self, scene: Scene) -> float:
        """Ravens' ``Task.reward``: the increase of the score since the last call.

        Met goals are dropped from the front of ``goals`` and their weight kept as progress.
        """
        current = 0.0
        while self.goals:
            fraction = self.goals[0].progress(scene)
            if fraction < SUCCESS_SCORE:
                current = self.goals[0].weight * fraction
                break
            self._progress += self.goals.pop(0).weight
        total = min(1.0, self._progress + current)
        delta, self._score = total - self._score, total
        return delta

    def done(self) -> bool:
        return self.success

    # helpers shared by the tasks -------------------------------------------------------------
    def pick_colors(self, rng: np.random.Generator, count: int, exclude: Sequence[str] = ()) -> list[str]:
        """Up to ``count`` distinct colours of the split, none of ``exclude``."""
        pool = [c for c in self.colors if c not in exclude]
        return [str(c) for c in rng.choice(pool, size=min(count, len(pool)), replace=False)]

    @staticmethod
    def add_block(scene: Scene, layout: Layout, color: str, size: str, region: Region | None = None) -> SceneObject:
        edge = BLOCK_SIZES[size]
        return scene.add_block(color, size, on_floor(layout.sample((edge, edge), region), edge))

    @staticmethod
    def add_bowl(scene: Scene, layout: Layout, color: str) -> SceneObject:
        return scene.add_bowl(color, layout.sample((BOWL_DIAMETER, BOWL_DIAMETER)))

    @staticmethod
    def add_zone(scene: Scene, layout: Layout, color: str, side: float = ZONE_SIDE) -> SceneObject:
        return scene.add_zone(color, layout.sample((side, side)), side)


def _in_bowl(bowl_pose: Pose) -> Pose:
    return np.array([bowl_pose[0][0], bowl_pose[0][1], BOWL_FLOOR + BLOCK_SIZES["smaller"] / 2]), bowl_pose[1]


def _random_sizes(rng: np.random.Generator, count: int) -> list[str]:
    return [str(s) for s in rng.choice(list(BLOCK_SIZES), size=count)]


def _bigger_first(blocks: Sequence[SceneObject]) -> list[SceneObject]:
    return sorted(blocks, key=lambda b: -BLOCK_SIZES[b.size])


class PickAndPlacePrimitive(Task):
    """A. Pick up one block and place it on a block, in a bowl or on a zone (one step). As in
    LoHoRavens, its colours come from all eleven in either split (the primitive follows Inner
    Monologue's setting)."""

    name = "pick-and-place-primitive"

    @property
    def colors(self) -> tuple[str, ...]:
        return tuple(COLORS)

    def build(self, scene, rng, layout):
        bowl_colors = self.pick_colors(rng, int(rng.integers(2, 4)))
        block_colors = self.pick_colors(rng, int(rng.integers(2, 4)))
        zone_colors = self.pick_colors(rng, int(rng.integers(1, 3)))
        bowls = [self.add_bowl(scene, layout, c) for c in bowl_colors]
        blocks = [self.add_block(scene, layout, c, "smaller") for c in block_colors]
        zones = [self.add_zone(scene, layout, c) for c in zone_colors]
        kind = str(rng.choice(["block", "bowl", "zone"]))
        picked = blocks[0].body_id
        if kind == "block":
            place = blocks[1]
            below = scene.object_pose(place.body_id)
            target = stack_targets(below, ["smaller", "smaller"])[1]
            goal = Goal([picked], [target], np.ones((1, 1)), 1.0, check_height=True)
        elif kind == "bowl":
            place = bowls[0]
            goal = Goal([picked], [_in_bowl(scene.object_pose(place.body_id))], np.ones((1, 1)), 1.0,
                        symmetry=0.0, position_tolerance=BOWL_TOLERANCE)
        else:
            place = zones[0]
            zone_pose = scene.object_pose(place.body_id)
            goal = Goal([picked], zone_spots(zone_pose, ZONE_SIDE, 1), np.ones((1, 1)), 1.0, metric="zone",
                        zone=(zone_pose, (ZONE_SIDE, ZONE_SIDE)))
        self.goals = [goal]
        self.instruction = f"pick up the {blocks[0].color} block and place it on the {place.color} {kind}."
        self.max_steps = 3


class PutBlockIntoMatchingBowl(Task):
    """B. Put every block into the bowl of its colour."""

    name = "put-block-into-matching-bowl"
    mismatching: ClassVar[bool] = False

    def build(self, scene, rng, layout):
        # LoHoRavens: 5-7 bowls, a block for each of the first 5..bowls of them, then up to 6
        # distractor blocks or bowls in the colours left over of all eleven
        bowl_colors = self.pick_colors(rng, int(rng.integers(5, 8)))
        colors = bowl_colors[:int(rng.integers(5, len(bowl_colors) + 1))]
        bowls = [self.add_bowl(scene, layout, c) for c in bowl_colors]
        blocks = [self.add_block(scene, layout, c, "smaller") for c in colors]
        spare = [str(c) for c in rng.permutation([c for c in COLORS if c not in bowl_colors])]
        for color in spare[:MAX_DISTRACTORS]:
            try:
                if rng.random() > 0.5:
                    self.add_block(scene, layout, color, "smaller")
                else:
                    self.add_bowl(scene, layout, color)
            except LayoutError:
                break  # a full table: LoHoRavens stops adding distractors too
        bowls = bowls[:len(colors)]
        same = np.eye(len(colors), dtype=bool)
        self.goals = [Goal([b.body_id for b in blocks], [_in_bowl(scene.object_pose(b.body_id)) for b in bowls],
                           ~same if self.mismatching else same, 1.0, symmetry=0.0,
                           position_tolerance=BOWL_TOLERANCE)]
        kind = "mismatching" if self.mismatching else "matching"
        self.instruction = f"put the blocks in the bowls with {kind} colors."
        self.max_steps = len(blocks) + 2


class PutBlockIntoMismatchingBowl(PutBlockIntoMatchingBowl):
    """F (unseen). Put every block into a bowl of another colour, one block per bowl."""

    name = "put-block-into-mismatching-bowl"
    mismatching = True


class StackSmallerOverBiggerWithSameColor(Task):
    """C. Put each smaller block on the bigger block of the same colour; distractors stay."""

    name = "stack-smaller-over-bigger-with-same-color"

    def build(self, scene, rng, layout):
        colors = self.pick_colors(rng, int(rng.integers(5, 8)))
        bigger = [self.add_block(scene, layout, c, "bigger") for c in colors]
        smaller = [self.add_block(scene, layout, c, "smaller") for c in colors]
        for color, size in zip(self.pick_colors(rng, int(rng.integers(0, 3)), exclude=colors),
                               _random_sizes(rng, 2)):
            self.add_block(scene, layout, color, size)
        targets = [stack_targets(scene.object_pose(b.body_id), ["bigger", "smaller"])[1] for b in bigger]
        self.goals = [Goal([b.body_id for b in smaller], targets, np.eye(len(colors)), 1.0, check_height=True)]
        self.instruction = "stack all the smaller blocks over the bigger blocks of the same color."
        self.max_steps = len(colors) + 2


class StackBlockInAbsoluteArea(Task):
    """D. Stack all blocks of one absolute area (e.g. "top left area") on one of them there."""

    name = "stack-block-in-absolute-area"

    def build(self, scene, rng, layout):
        area = str(rng.choice(list(AREAS)))
        sizes = _random_sizes(rng, int(rng.integers(3, 6)))
        while sum(BLOCK_SIZES[size] for size in sizes) > MAX_STACK_HEIGHT:
            sizes = _random_sizes(rng, len(sizes))
        inside = [self.add_block(scene, layout, str(rng.choice(self.colors)), size, AREAS[area]) for size in sizes]
        others = [a for a in AREAS if a != area]
        for size in _random_sizes(rng, int(rng.integers(2, 5))):
            self.add_block(scene, layout, str(rng.choice(self.colors)), size, AREAS[str(rng.choice(others))])
        base, *movers = _bigger_first(inside)
        sizes = [b.size for b in movers]
        targets = stack_targets(scene.object_pose(base.body_id), [base.size, *sizes])[1:]
        self.goals = [Goal([b.body_id for b in movers], targets, same_size_matrix(sizes, sizes), 1.0,
                           check_height=True)]
        self.instruction = f"stack all the blocks in the {area}."
        self.max_steps = len(movers) + 2


class PutEvenBlocksInSameColorZone(Task):
    """E. Move the blocks of each colour that occurs an even number of times into its zone."""

    name = "put-even-blocks-in-same-color-zone"

    def build(self, scene, rng, layout):
        # LoHoRavens' counts: n blocks of n_colors colours in turn, some colour with an even count
        n_colors = int(rng.integers(2, 4))
        colors = self.pick_colors(rng, n_colors)
        counts = np.zeros(n_colors, int)
        while not np.any((counts % 2 == 0) & (counts > 0)):
            n_blocks = int(rng.integers(n_colors + 1, min(4 * n_colors, 10)))
            counts = np.bincount(np.arange(n_blocks) % n_colors, minlength=n_colors)
        zones = [self.add_zone(scene, layout, c, BIG_ZONE_SIDE) for c in colors]
        blocks = {c: [self.add_block(scene, layout, c, "smaller") for _ in range(n)] for c, n in zip(colors, counts)}
        even = [(c, z) for c, z, n in zip(colors, zones, counts) if n % 2 == 0 and n > 0]
        for color, zone in even:
            zone_pose = scene.object_pose(zone.body_id)
            members = [b.body_id for b in blocks[color]]
            self.goals.append(Goal(members, zone_spots(zone_pose, BIG_ZONE_SIDE, len(members)),
                                   np.ones((len(members), len(members))), 1 / len(even), metric="zone",
                                   zone=(zone_pose, (BIG_ZONE_SIDE, BIG_ZONE_SIDE))))
        self.instruction = "put the blocks of an even number in the zone with the matching color."
        self.max_steps = sum(len(g.objects) for g in self.goals) + 2


class StackBlocksOfSameSize(Task):
    """G (unseen). Stack the bigger blocks on one zone and the smaller blocks on another."""

    name = "stack-blocks-of-same-size"

    def build(self, scene, rng, layout):
        zone_colors = self.pick_colors(rng, 2)
        zones = [self.add_zone(scene, layout, c) for c in zone_colors]
        blocks = [self.add_block(scene, layout, c, size)
                  for size in BLOCK_SIZES for c in self.pick_colors(rng, int(rng.integers(1, 5)))]
        sizes = [b.size for b in blocks]
        target_sizes = [size for zone_size in ("bigger", "smaller") for size in sizes if size == zone_size]
        bigger_count = target_sizes.count("bigger")
        targets = (stack_targets(scene.object_pose(zones[0].body_id), target_sizes[:bigger_count])
                   + stack_targets(scene.object_pose(zones[1].body_id), target_sizes[bigger_count:]))
        self.goals = [Goal([b.body_id for b in blocks], targets, same_size_matrix(sizes, target_sizes), 1.0,
                           check_height=True)]
        self.instruction = (f"stack the bigger blocks on the {zone_colors[0]} zone and the smaller blocks "
                            f"on the {zone_colors[1]} zone.")
        self.max_steps = len(blocks) + 2


class StackBlocksWithAlternateColor(Task):
    """H (unseen). Stack five blocks of two colours on a zone, alternating, a given colour first."""

    name = "stack-blocks-with-alternate-color"

    def build(self, scene, rng, layout):
        block_colors = self.pick_colors(rng, 2)
        zone_color = str(rng.choice(self.colors))
        zone = self.add_zone(scene, layout, zone_color)
        blocks = [self.add_block(scene, layout, block_colors[i % 2], "smaller") for i in range(5)]
        targets = stack_targets(scene.object_pose(zone.body_id), ["smaller"] * 5)
        matches = np.array([[b.color == block_colors[level % 2] for level in range(5)] for b in blocks])
        self.goals = [Goal([b.body_id for b in blocks], targets, matches, 1.0, check_height=True)]
        self.instruction = (f"stack blocks with alternate colors on the {zone_color} zone, "
                            f"starting with the {block_colors[0]} color.")
        self.max_steps = len(blocks) + 2


class StackSmallerOverBiggerWithSameColorInSameColorZone(Task):
    """I (unseen). Put each bigger block in the zone of its colour, then the smaller one on it."""

    name = "stack-smaller-over-bigger-with-same-color-in-same-color-zone"

    def build(self, scene, rng, layout):
        colors = self.pick_colors(rng, int(rng.integers(3, 6)))
        zones = [self.add_zone(scene, layout, c, BIG_ZONE_SIDE) for c in colors]
        bigger = [self.add_block(scene, layout, c, "bigger") for c in colors]
        smaller = [self.add_block(scene, layout, c, "smaller") for c in colors]
        for color, size in zip(self.pick_colors(rng, int(rng.integers(0, 3)), exclude=colors),
                               _random_sizes(rng, 2)):
            self.add_block(scene, layout, color, size)
        stacks = [stack_targets(scene.object_pose(z.body_id), ["bigger", "smaller"]) for z in zones]
        same = np.eye(len(colors))
        self.goals = [
            Goal([b.body_id for b in bigger], [s[0] for s in stacks], same, 0.5, check_height=True),
            Goal([b.body_id for b in smaller], [s[1] for s in stacks], same, 0.5, check_height=True),
        ]
        self.instruction = ("stack all the smaller blocks over the bigger blocks of the same color "
                            "in the zone with the same color.")
        self.max_steps = 2 * len(colors) + 3


class MoveBlocksBetweenAbsolutePositions(Task):
    """J (unseen). Move all blocks of one absolute area into another area."""

    name = "move-blocks-between-absolute-positions"

    def build(self, scene, rng, layout):
        source, target = (str(a) for a in rng.choice(list(AREAS), size=2, replace=False))
        movers = [self.add_block(scene, layout, str(rng.choice(self.colors)), size, AREAS[source])
                  for size in _random_sizes(rng, int(rng.integers(3, 5)))]
        others = [a for a in AREAS if a not in (source, target)]
        for size in _random_sizes(rng, int(rng.integers(1, 4))):
            self.add_block(scene, layout, str(rng.choice(self.colors)), size, AREAS[str(rng.choice(others))])
        bigger_edge = BLOCK_SIZES["bigger"]
        (x_low, x_high), (y_low, y_high) = AREAS[target]
        # spots keep a whole block inside the area, whatever its size and yaw
        inset = bigger_edge / np.sqrt(2)
        spot_region = ((x_low + inset, x_high - inset), (y_low + inset, y_high - inset))
        spots = [layout.sample((bigger_edge, bigger_edge), spot_region) for _ in movers]
        area_pose = (np.array([(x_low + x_high) / 2, (y_low + y_high) / 2, 0.0]), yaw_quat(0.0))
        self.goals = [Goal([b.body_id for b in movers], spots, np.ones((len(movers), len(spots))), 1.0,
                           metric="zone", zone=(area_pose, (x_high - x_low, y_high - y_low)))]
        self.instruction = f"move all the blocks on the {source} to the {target}."
        self.max_steps = len(movers) + 2


class StackBlocksOfSameColor(Task):
    """K (unseen). Stack the blocks of each colour on the zone of that colour."""

    name = "stack-blocks-of-same-color"

    def build(self, scene, rng, layout):
        n_colors = int(rng.integers(1, 4))
        n_blocks = int(rng.integers(*{1: (2, 4), 2: (4, 7), 3: (6, 10)}[n_colors]))
        colors = self.pick_colors(rng, n_colors)
        zones = [self.add_zone(scene, layout, c) for c in colors]
        distractor_zone_colors = self.pick_colors(rng, int(rng.integers(0, 2)), exclude=colors)
        for color in distractor_zone_colors:
            self.add_zone(scene, layout, color)
        blocks = [self.add_block(scene, layout, colors[i % n_colors], "smaller") for i in range(n_blocks)]
        for color in self.pick_colors(rng, int(rng.integers(0, 3)), exclude=colors + distractor_zone_colors):
            self.add_block(scene, layout, color, "smaller")
        targets, target_colors = [], []
        for color, zone in zip(colors, zones):
            count = sum(b.color == color for b in blocks)
            targets += stack_targets(scene.object_pose(zone.body_id), ["smaller"] * count)
            target_colors += [color] * count
        matches = np.array([[b.color == c for c in target_colors] for b in blocks])
        self.goals = [Goal([b.body_id for b in blocks], targets, matches, 1.0, check_height=True)]
        self.instruction = "stack all the blocks of the same color together on the same colored zone."
        self.max_steps = n_blocks + 2


TASKS: dict[str, type[Task]] = {
    task.name: task for task in (
        PickAndPlacePrimitive,
        PutBlockIntoMatchingBowl,
        StackSmallerOverBiggerWithSameColor,
        StackBlockInAbsoluteArea,
        PutEvenBlocksInSameColorZone,
        PutBlockIntoMismatchingBowl,
        StackBlocksOfSameSize,
        StackBlocksWithAlternateColor,
        StackSmallerOverBiggerWithSameColorInSameColorZone,
        MoveBlocksBetweenAbsolutePositions,
        StackBlocksOfSameColor,
    )
}
"""LoHoRavens v1 tasks by name: A-E seen in training, F-K unseen (LoHoRavens' split)."""
