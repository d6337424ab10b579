"""Analytic ray casting for the synthetic sensors: boxes (yawed), vertical cylinders and spheres.

Rays leave one sensor origin. They are cast in chunks of neighbouring rays: a chunk is tested
(numpy broadcasting over (rays, primitives)) only against the primitives whose bounding sphere
lies inside the chunk's cone of directions, which keeps a street of a hundred primitives fast.
A box seen from inside (``inside=True``, a room) is hit where the ray leaves it. Each box face
has its own label, so one box can be a room with walls, floor and ceiling.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

EPS = 1e-4
BOX_FACES = ("-x", "+x", "-y", "+y", "-z", "+z")
"""Order of a box's six face labels."""


@dataclass
class Hits:
    """What each ray hit: distance ``t`` (inf on a miss), ``label`` (-1 on a miss), unit ``normal``
    facing the ray, surface ``albedo`` in [0, 1] and primitive ``instance``."""

    t: np.ndarray
    label: np.ndarray
    normal: np.ndarray
    albedo: np.ndarray
    instance: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.t)


def _columns(rows: list[tuple]) -> list[np.ndarray]:
    """Per-field arrays of a list of equal-shaped tuples."""
    return [np.array(column) for column in zip(*rows)]


@dataclass
class _Kind:
    """One kind of primitive during a cast: its field arrays, bounding spheres and functions."""

    columns: list[np.ndarray]
    intersect_params: list[np.ndarray]
    bound_center: np.ndarray
    bound_radius: np.ndarray
    intersect: Callable[..., np.ndarray]
    shade: Callable[..., None]


def _rotate_z(vectors: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (..., 3) vectors by ``angle`` about z (broadcast over leading axes)."""
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.stack(np.broadcast_arrays(c * x - s * y, s * x + c * y, z), axis=-1)


@dataclass
class RayScene:
    """A scene of primitives to cast rays at; every ``add_*`` returns the primitive's instance id.

    Instance ids number boxes, cylinders and spheres together in the order they were added.
    """

    boxes: list[tuple] = field(default_factory=list)
    cylinders: list[tuple] = field(default_factory=list)
    spheres: list[tuple] = field(default_factory=list)

    def _next_instance(self) -> int:
        return len(self.boxes) + len(self.cylinders) + len(self.spheres)

    def add_box(self, center, size, label: int | tuple[int, ...], albedo, yaw: float = 0.0,
                inside: bool = False) -> int:
        """A box of full ``size`` turned by ``yaw`` about z; ``label`` per face (see BOX_FACES) or one for all."""
        faces = (label,) * 6 if np.isscalar(label) else tuple(label)
        instance = self._next_instance()
        self.boxes.append((tuple(center), tuple(np.asarray(size, float) / 2), float(yaw), faces,
                           tuple(albedo), inside, instance))
        return instance

    def add_cylinder(self, base, radius: float, height: float, label: int, albedo) -> int:
        """A vertical cylinder (side and top cap) standing on ``base``."""
        instance = self._next_instance()
        self.cylinders.append((tuple(base), float(radius), float(height), label, tuple(albedo), instance))
        return instance

    def add_sphere(self, center, radius: float, label: int, albedo) -> int:
        instance = self._next_instance()
        self.spheres.append((tuple(center), float(radius), label, tuple(albedo), instance))
        return instance

    def cast(self, origin: np.ndarray, directions: np.ndarray, chunk: int = 2048) -> Hits:
        """Nearest hit of each ray from ``origin`` (3,) along unit ``directions`` (R, 3).

        Neighbouring rows should be neighbouring rays (image tiles, LiDAR azimuth columns) so that
        chunks have narrow cones and cull well.
        """
        origin = np.asarray(origin, np.float64)
        directions = np.asarray(directions, np.float64)
        kinds = []
        if self.boxes:
            box = _columns(self.boxes)
            center, half, yaw, _, _, inside, _ = box
            kinds.append(_Kind(box, [center, half, yaw, inside], center, np.linalg.norm(half, axis=1),
                               self._box_t, self._shade_boxes))
        if self.cylinders:
            cyl = _columns(self.cylinders)
            base, radius, height = cyl[:3]
            middle = base + np.stack([np.zeros_like(height), np.zeros_like(height), height / 2], axis=1)
            kinds.append(_Kind(cyl, [base, radius, height], middle, np.hypot(radius, height / 2),
                               self._cylinder_t, self._shade_cylinders))
        if self.spheres:
            sph = _columns(self.spheres)
            center, radius = sph[:2]
            kinds.append(_Kind(sph, [center, radius], center, radius, self._sphere_t, self._shade_spheres))
        first = np.cumsum([0] + [len(kind.bound_radius) for kind in kinds])

        n = len(directions)
        t, winner = np.full(n, np.inf), np.full(n, -1)
        for lo in range(0, n, chunk):
            d = directions[lo:lo + chunk]
            axis = d.mean(0)
            axis /= max(np.linalg.norm(axis), 1e-12)
            cone = np.arccos(np.clip((d @ axis).min(), -1, 1))
            best_t, best = t[lo:lo + chunk], winner[lo:lo + chunk]  # views: filled in place
            for k, kind in enumerate(kinds):
                to_center = kind.bound_center - origin
                distance = np.maximum(np.linalg.norm(to_center, axis=1), 1e-12)
                angle = np.arccos(np.clip(to_center @ axis / distance, -1, 1))
                spread = np.arcsin(np.clip(kind.bound_radius / distance, 0, 1))
                candidate = np.flatnonzero((distance <= kind.bound_radius) | (angle <= cone + spread + 1e-3))
                if not len(candidate):
                    continue
                t_kind = kind.intersect(origin, d, *(p[candidate] for p in kind.intersect_params))
                nearest = np.argmin(t_kind, axis=1)
                t_near = t_kind[np.arange(len(d)), nearest]
                better = t_near < best_t
                best_t[better], best[better] = t_near[better], first[k] + candidate[nearest[better]]

        hits = Hits(t=t, label=np.full(n, -1, np.int64), normal=np.zeros((n, 3)),
                    albedo=np.zeros((n, 3)), instance=np.full(n, -1, np.int64))
        point = origin + directions * np.where(np.isfinite(t), t, 0.0)[:, None]
        for k, kind in enumerate(kinds):
            rows = np.flatnonzero((winner >= first[k]) & (winner < first[k + 1]))
            if len(rows):
                kind.shade(hits, rows, [c[winner[rows] - first[k]] for c in kind.columns], point[rows])
        facing_away = np.einsum("ni,ni->n", hits.normal, directions) > 0
        hits.normal[facing_away] *= -1
        return hits

    # --- intersection distances, (R, primitives), inf where missed ---------------------------

    @staticmethod
    def _box_t(origin, directions, center, half, yaw, inside) -> np.ndarray:
        o = _rotate_z((origin - center)[None], -yaw[None])  # (1, B, 3) origin in each box's frame
        d = _rotate_z(directions[:, None, :], -yaw[None])  # (R, B, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t1, t2 = (-half - o) * inv, (half - o) * inv
        # fmin/fmax skip the NaN of 0 * inf (a ray parallel to a slab, starting on its plane)
        t_near = np.fmax.reduce(np.fmin(t1, t2), axis=2)
        t_far = np.fmin.reduce(np.fmax(t1, t2), axis=2)
        t = np.where(inside[None, :], t_far, t_near)
        return np.where((t_far >= t_near) & (t > EPS), t, np.inf)

    @staticmethod
    def _cylinder_t(origin, directions, base, radius, height) -> np.ndarray:
        rel = (origin[:2] - base[:, :2])[None]  # (1, C, 2)
        dxy = directions[:, None, :2]
        a = np.maximum((dxy**2).sum(-1), 1e-12)
        b = 2 * (rel * dxy).sum(-1)
        c = (rel**2).sum(-1) - radius**2
        disc = b**2 - 4 * a * c
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        z_side = origin[2] + t_side * directions[:, None, 2]
        side_ok = (disc >= 0) & (t_side > EPS) & (z_side >= base[:, 2]) & (z_side <= base[:, 2] + height)
        with np.errstate(divide="ignore", invalid="ignore"):  # horizontal rays never reach the cap
            t_cap = (base[:, 2] + height - origin[2]) / directions[:, None, 2]
            cap_xy = rel + t_cap[..., None] * dxy
            cap_ok = (t_cap > EPS) & ((cap_xy**2).sum(-1) <= radius**2)
        return np.fmin(np.where(side_ok, t_side, np.inf), np.where(cap_ok, t_cap, np.inf))

    @staticmethod
    def _sphere_t(origin, directions, center, radius) -> np.ndarray:
        rel = origin - center  # (S, 3)
        b = directions @ rel.T  # (R, S)
        disc = b**2 - ((rel**2).sum(-1) - radius**2)
        t = -b - np.sqrt(np.maximum(disc, 0))
        return np.where((disc >= 0) & (t > EPS), t, np.inf)

    # --- surface attributes of the winning primitive ------------------------------------------

    @staticmethod
    def _shade_boxes(hits: Hits, rows: np.ndarray, box: list[np.ndarray], point: np.ndarray) -> None:
        center, half, yaw, faces, albedo, _, instance = box
        local = _rotate_z(point - center, -yaw)
        axis = np.argmax(np.abs(local) / half, axis=1)
        every = np.arange(len(rows))
        positive = local[every, axis] > 0
        normal = np.zeros_like(local)
        normal[every, axis] = np.where(positive, 1.0, -1.0)
        hits.normal[rows] = _rotate_z(normal, yaw)
        hits.label[rows] = faces[every, 2 * axis + positive]
        hits.albedo[rows], hits.instance[rows] = albedo, instance

    @staticmethod
    def _shade_cylinders(hits: Hits, rows: np.ndarray, cyl: list[np.ndarray], point: np.ndarray) -> None:
        base, radius, height, label, albedo, instance = cyl
        on_cap = np.abs(point[:, 2] - (base[:, 2] + height)) < EPS
        radial = np.concatenate([(point[:, :2] - base[:, :2]) / radius[:, None], np.zeros((len(rows), 1))], axis=1)
        hits.normal[rows] = np.where(on_cap[:, None], [0.0, 0.0, 1.0], radial)
        hits.label[rows], hits.albedo[rows], hits.instance[rows] = label, albedo, instance

    @staticmethod
    def _shade_spheres(hits: Hits, rows: np.ndarray, sph: list[np.ndarray], point: np.ndarray) -> None:
        center, radius, label, albedo, instance = sph
        hits.normal[rows] = (point - center) / radius[:, None]
        hits.label[rows], hits.albedo[rows], hits.instance[rows] = label, albedo, instance
