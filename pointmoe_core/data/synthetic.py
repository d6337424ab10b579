"""Synthetic domains: generated scenes with their own sensor, density and taxonomy (issue item 5).

They let the multi-dataset machinery (mixing, zero-shot through class names, routing analysis)
run and be tested with nothing downloaded. Each domain's ``generate(seed)`` returns one sample
dict and depends on the seed only:

* ``IndoorRoomDomain``: a furnished room seen by one pinhole depth camera (RGB-D). Rays are
  cast through every pixel, so only visible surfaces are sampled, densely near the camera; depth
  noise grows with distance squared (structured-light style). Colour, normals.
* ``OutdoorLidarDomain``: a street seen by a 64-beam spinning LiDAR with the HDL-64E elevation
  pattern (SemanticKITTI's sensor, 1.73 m above the road): points lie on 64 cones, sparser with
  range. Intensity from albedo and incidence angle.
* ``TabletopDomain``: objects on a table (``pointmoe_core.data.scenes.tabletop_scene``).

``SyntheticDataset`` turns a domain into a dataset of scenes; ``synthetic_suite`` builds the
seen/held-out split for zero-shot evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from .raycast import RayScene
from .sample import INDOOR, OUTDOOR, InputSpec, Sample, SegDataset, Transform, make_sample
from .scenes import tabletop_scene
from .taxonomy import INDOOR_ROOM_CLASSES, OUTDOOR_LIDAR_CLASSES, TABLETOP_CLASSES
from .transforms import PipelineConfig, default_pipeline

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class Domain(Protocol):
    name: str
    class_names: tuple[str, ...]
    input_spec: InputSpec

    def generate(self, seed: int) -> Sample: ...


def _yawed(center: Sequence[float], yaw: float, local: Sequence[float]) -> np.ndarray:
    """``center`` plus the offset ``local`` given in a frame turned by ``yaw`` about z."""
    c, s = np.cos(yaw), np.sin(yaw)
    x, y, z = local
    return np.asarray(center, float) + [c * x - s * y, s * x + c * y, z]


def _vary(rng: np.random.Generator, albedo: Sequence[float], spread: float = 0.08) -> np.ndarray:
    return np.clip(np.asarray(albedo) + rng.uniform(-spread, spread, 3), 0.02, 1.0)


# ---------------------------------------------------------------------------------------------
# Indoor rooms, depth camera
# ---------------------------------------------------------------------------------------------

ROOM = {name: i for i, name in enumerate(INDOOR_ROOM_CLASSES)}


@dataclass
class IndoorRoomConfig:
    image_width: int = 160
    image_height: int = 128
    horizontal_fov_deg: float = 75.0
    max_depth: float = 8.0
    pixel_dropout: float = 0.02


class _Footprints:
    """Axis-aligned floor rectangles already taken, to place furniture without overlap."""

    def __init__(self, half_room: np.ndarray, wall_margin: float = 0.05) -> None:
        self.half_room, self.margin, self.taken = half_room, wall_margin, []

    def free(self, center: np.ndarray, half: np.ndarray) -> bool:
        if np.any(np.abs(center) + half > self.half_room - self.margin):
            return False
        return all(np.any(np.abs(center - c) >= half + h) for c, h in self.taken)

    def take(self, center: np.ndarray, half: np.ndarray) -> None:
        self.taken.append((np.asarray(center, float), np.asarray(half, float)))

    def place(self, rng: np.random.Generator, half: np.ndarray, near: np.ndarray | None = None,
              radius: float = 1.0, tries: int = 30) -> np.ndarray | None:
        for _ in range(tries):
            center = (rng.uniform(-self.half_room, self.half_room) if near is None
                      else near + rng.uniform(-radius, radius, 2))
            if self.free(center, half):
                self.take(center, half)
                return center
        return None


def _add_objects(scene: RayScene, rng: np.random.Generator, center, yaw: float, half_xy, z: float,
                 count: int, max_height: float) -> None:
    """Small boxes and balls resting at height z on a surface of half extent ``half_xy``."""
    for _ in range(count):
        albedo = rng.uniform(0.1, 0.95, 3)
        if rng.random() < 0.3:
            r = rng.uniform(0.04, min(0.09, max_height / 2))
            xy = rng.uniform(-1, 1, 2) * np.maximum(np.asarray(half_xy) - r, 0)
            scene.add_sphere(_yawed(center, yaw, (*xy, z + r)), r, ROOM["object"], albedo)
        else:
            size = np.array([*rng.uniform(0.06, 0.25, 2), rng.uniform(0.05, max_height)])
            xy = rng.uniform(-1, 1, 2) * np.maximum(np.asarray(half_xy) - size[:2] / 2, 0)
            scene.add_box(_yawed(center, yaw, (*xy, z + size[2] / 2)), size, ROOM["object"], albedo,
                          yaw + rng.uniform(-0.5, 0.5))


def _add_table(scene: RayScene, rng: np.random.Generator, center, size_xy, yaw: float) -> None:
    height, top = rng.uniform(0.7, 0.78), 0.04
    albedo = _vary(rng, (0.55, 0.38, 0.22))
    scene.add_box((*center, height - top / 2), (*size_xy, top), ROOM["table"], albedo, yaw)
    for sx in (-1, 1):
        for sy in (-1, 1):
            corner = (sx * (size_xy[0] / 2 - 0.06), sy * (size_xy[1] / 2 - 0.06), 0)
            scene.add_box(_yawed((*center, (height - top) / 2), yaw, corner), (0.05, 0.05, height - top),
                          ROOM["table"], albedo, yaw)
    _add_objects(scene, rng, (*center, 0.0), yaw, np.asarray(size_xy) / 2, height, rng.integers(1, 5), 0.3)


def _add_chair(scene: RayScene, rng: np.random.Generator, center, yaw: float) -> None:
    seat_h, seat, t = rng.uniform(0.42, 0.48), rng.uniform(0.42, 0.5), 0.04
    albedo = _vary(rng, rng.choice([(0.2, 0.2, 0.22), (0.6, 0.15, 0.1), (0.15, 0.3, 0.55)]))
    scene.add_box((*center, seat_h - t / 2), (seat, seat, t), ROOM["chair"], albedo, yaw)
    for sx in (-1, 1):
        for sy in (-1, 1):
            corner = (sx * (seat / 2 - 0.03), sy * (seat / 2 - 0.03), 0)
            scene.add_box(_yawed((*center, (seat_h - t) / 2), yaw, corner), (0.04, 0.04, seat_h - t),
                          ROOM["chair"], albedo, yaw)
    back_h = rng.uniform(0.35, 0.5)
    back = _yawed((*center, seat_h + back_h / 2), yaw, (0, -seat / 2 + t / 2, 0))
    scene.add_box(back, (seat, t, back_h), ROOM["chair"], albedo, yaw)


def _add_shelf(scene: RayScene, rng: np.random.Generator, center, width: float, depth: float, yaw: float) -> None:
    """A bookshelf open towards its local +y, with objects on its boards."""
    height, t = rng.uniform(1.4, 2.0), 0.02
    albedo = _vary(rng, rng.choice([(0.75, 0.72, 0.65), (0.45, 0.3, 0.18)]))
    middle = (*center, height / 2)
    for sx in (-1, 1):
        side = _yawed(middle, yaw, (sx * (width / 2 - t / 2), 0, 0))
        scene.add_box(side, (t, depth, height), ROOM["shelf"], albedo, yaw)
    scene.add_box(_yawed(middle, yaw, (0, -depth / 2 + t / 2, 0)), (width, t, height), ROOM["shelf"], albedo, yaw)
    levels = np.linspace(t / 2, height - t / 2, rng.integers(3, 6))
    for z in levels:
        scene.add_box(_yawed((*center, z), yaw, (0, t / 2, 0)), (width - 2 * t, depth - t, t), ROOM["shelf"],
                      albedo, yaw)
    for z_low, z_high in zip(levels[:-1], levels[1:]):
        _add_objects(scene, rng, (*center, 0.0), yaw, (width / 2 - t, depth / 2 - t), z_low + t / 2,
                     rng.integers(0, 4), min(0.3, z_high - z_low - 0.05))


def _add_person(scene: RayScene, rng: np.random.Generator, base, label: int) -> None:
    """A standing person: body cylinder and head sphere, about 1.7 m tall."""
    body_h = rng.uniform(1.35, 1.55)
    scene.add_cylinder(base, rng.uniform(0.17, 0.26), body_h, label, _vary(rng, rng.uniform(0.1, 0.8, 3)))
    scene.add_sphere((base[0], base[1], base[2] + body_h + 0.12), 0.11, label, _vary(rng, (0.8, 0.62, 0.5)))


def camera_rays(config: IndoorRoomConfig, yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """World ray directions of every pixel and the camera's forward axis.

    The camera looks along ``yaw`` (about z) tilted down by ``pitch``; image x is right, y down.
    Pixels come in 32 x 32 tiles (row-major within and across tiles) so that ray-casting chunks
    are narrow cones.
    """
    forward = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), -np.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    fx = config.image_width / 2 / np.tan(np.radians(config.horizontal_fov_deg) / 2)
    u = (np.arange(config.image_width) + 0.5 - config.image_width / 2) / fx
    v = (np.arange(config.image_height) + 0.5 - config.image_height / 2) / fx
    rows, cols = np.divmod(np.arange(config.image_height * config.image_width), config.image_width)
    tiled = np.lexsort((cols, rows, cols // 32, rows // 32))
    directions = u[cols[tiled], None] * right + v[rows[tiled], None] * down + forward
    return directions / np.linalg.norm(directions, axis=1, keepdims=True), forward


class IndoorRoomDomain:
    name = "synthetic_indoor"
    class_names = INDOOR_ROOM_CLASSES
    input_spec = INDOOR

    def __init__(self, config: IndoorRoomConfig | None = None) -> None:
        self.config = config or IndoorRoomConfig()

    def layout(self, rng: np.random.Generator) -> tuple[RayScene, list[np.ndarray], _Footprints]:
        """The room, the floor positions worth looking at, and the floor space furniture takes."""
        size = np.array([rng.uniform(4, 7), rng.uniform(4, 7), rng.uniform(2.5, 3.0)])
        half_room = size[:2] / 2
        scene = RayScene()
        wall, floor, ceiling = ROOM["wall"], ROOM["floor"], ROOM["ceiling"]
        scene.add_box((0, 0, size[2] / 2), size, (wall, wall, wall, wall, floor, ceiling),
                      _vary(rng, (0.8, 0.78, 0.72)), inside=True)
        # the floor and ceiling look different from the walls: thin slabs inside the room box
        scene.add_box((0, 0, 0.005), (*size[:2], 0.01), floor, _vary(rng, (0.5, 0.42, 0.35)))
        scene.add_box((0, 0, size[2] - 0.005), (*size[:2], 0.01), ceiling, _vary(rng, (0.92, 0.92, 0.9)))
        taken = _Footprints(half_room)
        targets = []
        for _ in range(rng.integers(1, 3)):  # shelves against walls
            width, depth = rng.uniform(0.8, 1.6), rng.uniform(0.3, 0.4)
            side = rng.integers(4)
            along = rng.uniform(-1, 1) * (half_room[1 - side // 2] - width / 2 - 0.1)
            against = half_room[side // 2] - depth / 2 - 0.06  # clear of _Footprints' wall margin
            center = np.zeros(2)
            center[side // 2], center[1 - side // 2] = (against if side % 2 else -against), along
            yaw = (-np.pi / 2, np.pi / 2, 0.0, np.pi)[side]  # local +y (open side) faces the room
            half = np.array([width, depth]) / 2 if side >= 2 else np.array([depth, width]) / 2
            if taken.free(center, half):
                taken.take(center, half)
                _add_shelf(scene, rng, center, width, depth, yaw)
                targets.append(center)
        for _ in range(rng.integers(1, 3)):
            size_xy = np.array([rng.uniform(1.0, 1.8), rng.uniform(0.6, 1.0)])
            yaw = rng.choice([0.0, np.pi / 2])
            half = size_xy / 2 if yaw == 0 else size_xy[::-1] / 2
            center = taken.place(rng, half + 0.1)
            if center is None:
                continue
            _add_table(scene, rng, center, size_xy, yaw)
            targets.append(center)
            for _ in range(rng.integers(1, 4)):
                chair = taken.place(rng, np.array([0.3, 0.3]), near=center, radius=1.2)
                if chair is not None:
                    # facing the table: the chair's front, its local +y, points at the table centre
                    away = chair - center
                    _add_chair(scene, rng, chair, np.arctan2(away[1], away[0]) + np.pi / 2)
        if rng.random() < 0.6:
            person = taken.place(rng, np.array([0.25, 0.25]))
            if person is not None:
                _add_person(scene, rng, (*person, 0.0), ROOM["person"])
                targets.append(person)
        return scene, targets, taken

    def generate(self, seed: int) -> Sample:
        rng = np.random.default_rng(seed)
        scene, targets, taken = self.layout(rng)
        # a hand-held camera: a free spot at least 1.5 m from a piece of furniture it looks at
        target = targets[rng.integers(len(targets))] if targets else np.zeros(2)
        for _ in range(30):
            position = rng.uniform(-taken.half_room + 0.4, taken.half_room - 0.4)
            if np.linalg.norm(position - target) > 1.5 and taken.free(position, np.array([0.15, 0.15])):
                break
        height = rng.uniform(1.2, 1.7)
        offset = target - position
        yaw = np.arctan2(offset[1], offset[0]) + rng.uniform(-0.3, 0.3)
        pitch = np.clip(np.arctan2(height - 0.5, np.linalg.norm(offset)) + rng.uniform(-0.15, 0.15), 0.05, 0.9)
        directions, forward = camera_rays(self.config, yaw, pitch)
        origin = np.array([*position, height])
        hits = scene.cast(origin, directions)

        depth = hits.t * (directions @ forward)
        keep = hits.valid & (depth < self.config.max_depth) & (rng.random(len(depth)) >= self.config.pixel_dropout)
        depth, directions = depth[keep], directions[keep]
        sigma = 0.0012 + 0.0019 * (depth - 0.4) ** 2  # structured-light depth noise grows ~ z^2
        t = (depth + sigma * rng.standard_normal(len(depth))) / (directions @ forward)
        coord = origin + directions * t[:, None]
        light = np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])
        shading = 0.45 + 0.55 * np.clip(hits.normal[keep] @ light, 0, 1)
        color = np.clip(hits.albedo[keep] * shading[:, None] * 255 + rng.normal(0, 3, (len(t), 3)), 0, 255)
        return make_sample(coord, dataset=self.name, name=f"indoor_{seed}", segment=hits.label[keep],
                           color=color, normal=hits.normal[keep], instance=hits.instance[keep])


# ---------------------------------------------------------------------------------------------
# Outdoor streets, spinning LiDAR
# ---------------------------------------------------------------------------------------------

STREET = {name: i for i, name in enumerate(OUTDOOR_LIDAR_CLASSES)}

HDL64_ELEVATIONS_DEG = np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.33, 32)])
"""Beam elevations of a Velodyne HDL-64E (SemanticKITTI's LiDAR): the upper block's 32 lasers
1/3 degree apart from +2 to -8.33, the lower block's 32 lasers 1/2 degree apart down to -24.33."""


@dataclass
class OutdoorLidarConfig:
    azimuth_steps: int = 360
    elevations_deg: np.ndarray = field(default_factory=lambda: HDL64_ELEVATIONS_DEG.copy())
    sensor_height: float = 1.73
    max_range: float = 70.0
    range_noise: float = 0.02
    dropout: float = 0.05


def lidar_rays(config: OutdoorLidarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions of one revolution and each ray's beam (ring) index.

    Azimuth-major, as the sensor fires: all beams of one azimuth, then the next azimuth.
    """
    elevation = np.radians(config.elevations_deg)
    azimuth = np.linspace(-np.pi, np.pi, config.azimuth_steps, endpoint=False)
    az, el = np.meshgrid(azimuth, elevation, indexing="ij")
    directions = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
    return directions, np.tile(np.arange(len(elevation)), config.azimuth_steps)


def _add_car(scene: RayScene, rng: np.random.Generator, center_xy, yaw: float, ground: float) -> None:
    length, width = rng.uniform(3.9, 4.8), rng.uniform(1.7, 1.9)
    albedo = _vary(rng, rng.uniform(0.1, 0.9, 3), 0.0)
    scene.add_box((*center_xy, ground + 0.65), (length, width, 0.8), STREET["car"], albedo, yaw)
    cabin = _yawed((*center_xy, ground + 1.3), yaw, (-0.2 * length * rng.uniform(0, 1), 0, 0))
    scene.add_box(cabin, (0.55 * length, 0.9 * width, 0.5), STREET["car"], albedo, yaw)


def _add_tree(scene: RayScene, rng: np.random.Generator, center_xy, ground: float) -> None:
    trunk_h, crown = rng.uniform(1.8, 3.0), rng.uniform(1.2, 2.5)
    scene.add_cylinder((*center_xy, ground), rng.uniform(0.12, 0.25), trunk_h, STREET["vegetation"],
                       _vary(rng, (0.35, 0.25, 0.15)))
    scene.add_sphere((*center_xy, ground + trunk_h + crown * 0.8), crown, STREET["vegetation"],
                     _vary(rng, (0.2, 0.45, 0.15)))


class OutdoorLidarDomain:
    name = "synthetic_outdoor"
    class_names = OUTDOOR_LIDAR_CLASSES
    input_spec = OUTDOOR

    def __init__(self, config: OutdoorLidarConfig | None = None) -> None:
        self.config = config or OutdoorLidarConfig()

    def layout(self, rng: np.random.Generator) -> RayScene:
        """A straight street along x through the sensor at the origin; the road at z = -sensor_height."""
        ground = -self.config.sensor_height
        scene = RayScene()
        scene.add_box((0, 0, ground - 0.5), (400, 400, 1.0), STREET["terrain"], _vary(rng, (0.3, 0.35, 0.2)))
        road_y, road_half = rng.uniform(-1.5, 1.5), rng.uniform(3.5, 6.0)
        scene.add_box((0, road_y, ground + 0.005), (200, 2 * road_half, 0.01), STREET["road"],
                      _vary(rng, (0.15, 0.15, 0.16), 0.05))
        for side in (-1, 1):
            self._street_side(scene, rng, side, road_y, road_half, ground)
        for x in rng.uniform(-40, 40, rng.integers(0, 4)):  # traffic in the lanes, clear of the sensor car
            if abs(x) > 6:
                lane = road_y + rng.choice([-1, 1]) * road_half / 2
                _add_car(scene, rng, (x, lane), rng.choice([0, np.pi]) + rng.normal(0, 0.03), ground)
        if rng.random() < 0.5:  # someone crossing the road
            x = rng.choice([-1, 1]) * rng.uniform(5, 20)
            _add_person(scene, rng, (x, road_y + rng.uniform(-road_half, road_half), ground), STREET["person"])
        return scene

    @staticmethod
    def _street_side(scene: RayScene, rng: np.random.Generator, side: int, road_y: float, road_half: float,
                     ground: float) -> None:
        """Sidewalk, kerbside cars, poles and people, then terrain and a row of buildings with trees in gaps."""
        walk = rng.uniform(1.5, 3.5)
        walk_y = road_y + side * (road_half + walk / 2)
        kerb = ground + 0.12
        scene.add_box((0, walk_y, kerb - 0.06), (200, walk, 0.12), STREET["sidewalk"], _vary(rng, (0.45, 0.43, 0.4)))
        x = -50 + rng.uniform(0, 10)
        while x < 50:  # parked cars along the kerb, none where the sensor car drives
            if abs(x) > 4:
                heading = rng.choice([0, np.pi]) + rng.normal(0, 0.05)
                _add_car(scene, rng, (x, road_y + side * (road_half - 1.1)), heading, ground)
            x += rng.uniform(5.5, 30)
        for x in np.arange(-60, 60, rng.uniform(12, 25)) + rng.uniform(0, 10):
            scene.add_cylinder((x, walk_y + side * walk * 0.3, kerb), rng.uniform(0.08, 0.15), rng.uniform(4, 8),
                               STREET["pole"], _vary(rng, (0.5, 0.5, 0.52)))
        for x in rng.uniform(-40, 40, rng.integers(1, 5)):
            _add_person(scene, rng, (x, walk_y + rng.uniform(-0.4, 0.4) * walk, kerb), STREET["person"])
        facade = road_y + side * (road_half + walk + rng.uniform(0.5, 6.0))
        x = -80.0
        while x < 80:
            length, gap = rng.uniform(8, 25), rng.uniform(0, 8)
            depth, height = rng.uniform(8, 15), rng.uniform(4, 20)
            scene.add_box((x + length / 2, facade + side * depth / 2, ground + height / 2), (length, depth, height),
                          STREET["building"], _vary(rng, rng.uniform(0.3, 0.8, 3), 0.0))
            if gap > 4:
                _add_tree(scene, rng, (x + length + gap / 2, facade + side * rng.uniform(0, 2)), ground)
            x += length + gap

    def generate(self, seed: int) -> Sample:
        rng = np.random.default_rng(seed)
        scene = self.layout(rng)
        directions, _ = lidar_rays(self.config)
        hits = scene.cast(np.zeros(3), directions)
        keep = hits.valid & (hits.t < self.config.max_range) & (rng.random(len(hits.t)) >= self.config.dropout)
        t = hits.t[keep] + self.config.range_noise * rng.standard_normal(int(keep.sum()))
        coord = directions[keep] * t[:, None]  # noise only along the beam keeps each point on its ring
        incidence = np.abs(np.einsum("ni,ni->n", hits.normal[keep], directions[keep]))
        strength = np.clip(hits.albedo[keep].mean(1) * (0.3 + 0.7 * incidence) + rng.normal(0, 0.03, len(t)), 0, 1)
        return make_sample(coord, dataset=self.name, name=f"outdoor_{seed}", segment=hits.label[keep],
                           strength=strength, instance=hits.instance[keep])


# ---------------------------------------------------------------------------------------------
# Tabletop
# ---------------------------------------------------------------------------------------------


@dataclass
class TabletopConfig:
    num_points: int = 20_000


class TabletopDomain:
    """Blocks and a bowl on a table (``scenes.tabletop_scene``); no normals, the pipeline estimates them."""

    name = "synthetic_tabletop"
    class_names = TABLETOP_CLASSES
    input_spec = INDOOR

    def __init__(self, config: TabletopConfig | None = None) -> None:
        self.config = config or TabletopConfig()

    def generate(self, seed: int) -> Sample:
        cloud = tabletop_scene(self.config.num_points, seed=seed)
        return make_sample(cloud.xyz, dataset=self.name, name=f"tabletop_{seed}", segment=cloud.label,
                           color=cloud.rgb)


SYNTHETIC_DOMAINS: dict[str, type] = {
    "indoor": IndoorRoomDomain,
    "outdoor": OutdoorLidarDomain,
    "tabletop": TabletopDomain,
}


class SyntheticDataset(SegDataset):
    """``num_scenes`` scenes of a domain; scene i of a split is ``generate`` of a seed drawn from
    (seed, split, i), so splits never share a scene."""

    def __init__(self, domain: Domain, num_scenes: int, split: str = "train", seed: int = 0,
                 transform: Transform | None = None) -> None:
        super().__init__(transform, seed)
        self.domain, self.num_scenes, self.split = domain, num_scenes, split
        self.name, self.class_names, self.input_spec = domain.name, domain.class_names, domain.input_spec

    def __len__(self) -> int:
        return self.num_scenes

    def scene_seed(self, index: int) -> int:
        return int(np.random.SeedSequence((self.seed, SPLIT_CODES[self.split], index)).generate_state(1)[0])

    def load(self, index: int) -> Sample:
        return self.domain.generate(self.scene_seed(index))


@dataclass
class SyntheticSuiteConfig:
    domains: tuple[str, ...] = ("indoor", "outdoor", "tabletop")
    held_out: tuple[str, ...] = ()
    train_scenes: int = 64
    val_scenes: int = 8
    seed: int = 0


@dataclass
class SyntheticSuite:
    """``train``/``val``: the seen domains; ``zero_shot``: the held-out domains' val scenes, never trained on."""

    train: list[SyntheticDataset]
    val: list[SyntheticDataset]
    zero_shot: list[SyntheticDataset]


def synthetic_suite(config: SyntheticSuiteConfig, pipeline: PipelineConfig | None = None) -> SyntheticSuite:
    """Datasets of the configured domains with the default train/eval pipelines of their input kind."""
    unknown = set(config.domains) - set(SYNTHETIC_DOMAINS) or set(config.held_out) - set(config.domains)
    if unknown:
        raise ValueError(f"unknown or unlisted domains {sorted(unknown)}; domains are {sorted(SYNTHETIC_DOMAINS)}")

    def dataset(key: str, split: str, scenes: int) -> SyntheticDataset:
        domain = SYNTHETIC_DOMAINS[key]()
        transform = default_pipeline(domain.input_spec, train=split == "train", config=pipeline)
        return SyntheticDataset(domain, scenes, split, config.seed, transform)

    seen = [key for key in config.domains if key not in config.held_out]
    return SyntheticSuite(
        train=[dataset(key, "train", config.train_scenes) for key in seen],
        val=[dataset(key, "val", config.val_scenes) for key in seen],
        zero_shot=[dataset(key, "val", config.val_scenes) for key in config.held_out],
    )
