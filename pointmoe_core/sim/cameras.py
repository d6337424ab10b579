"""Camera models of Ravens (three RealSense D415 views) and LoHoRavens (a fourth, top view).

A camera is a pinhole with square pixels whose optical frame is OpenCV's (x right, y down,
z forward), placed in the world by ``position`` and ``rotation`` exactly as in Ravens'
``cameras.RealSenseD415.CONFIG``; ``as_ravens`` / ``from_ravens`` convert to and from those dicts.
Rendering goes through PyBullet's CPU renderer (``ER_TINY_RENDERER``), so it needs no display.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .poses import quat_matrix

D415_IMAGE_SIZE = (480, 640)  # (height, width), Ravens' order
# Image pixel (u, v) of PyBullet's CPU renderer looks along the intrinsics ray of (u, v + 1):
# with this offset a rendered table back-projects flat to 0.01 mm (Ravens' get_pointcloud, which
# uses (u, v), lifts it by about a pixel's footprint).
PIXEL_OFFSET = (0.0, 1.0)
D415_INTRINSICS = (450.0, 0.0, 320.0, 0.0, 450.0, 240.0, 0.0, 0.0, 1.0)


def _euler_quat(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of extrinsic XYZ Euler angles (PyBullet's getQuaternionFromEuler)."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return (float(sr * cp * cy - cr * sp * sy), float(cr * sp * cy + sr * cp * sy),
            float(cr * cp * sy - sr * sp * cy), float(cr * cp * cy + sr * sp * sy))


@dataclass(frozen=True)
class CameraConfig:
    """One RGB-D camera: image size (height, width), row-major 3x3 intrinsics, pose, depth range."""

    name: str
    position: tuple[float, float, float]
    rotation: tuple[float, float, float, float]  # quaternion (x, y, z, w), camera -> world
    image_size: tuple[int, int] = D415_IMAGE_SIZE
    intrinsics: tuple[float, ...] = D415_INTRINSICS
    zrange: tuple[float, float] = (0.01, 10.0)

    def __post_init__(self) -> None:
        fx, fy = self.intrinsics[0], self.intrinsics[4]
        if not np.isclose(fx, fy):
            # PyBullet's projection takes one field of view, so pixels must be square
            raise ValueError(f"camera {self.name!r} needs square pixels (fx == fy), got {fx} and {fy}: "
                             "resize images keeping their aspect ratio")

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) intrinsic matrix K."""
        return np.asarray(self.intrinsics, dtype=np.float64).reshape(3, 3)

    @property
    def camera_to_world(self) -> np.ndarray:
        """(4, 4) extrinsics taking optical-frame points to the world frame."""
        transform = np.eye(4)
        transform[:3, :3] = quat_matrix(self.rotation)
        transform[:3, 3] = self.position
        return transform

    def resized(self, height: int, width: int) -> CameraConfig:
        """The same camera rendering (height, width) images, intrinsics scaled to keep the view."""
        sy, sx = height / self.image_size[0], width / self.image_size[1]
        fx, _, cx, _, fy, cy, *_ = self.intrinsics
        scaled = (fx * sx, 0.0, cx * sx, 0.0, fy * sy, cy * sy, 0.0, 0.0, 1.0)
        return replace(self, image_size=(height, width), intrinsics=scaled)

    def as_ravens(self) -> dict:
        """The camera as an entry of Ravens' ``agent_cams`` list."""
        return {"image_size": self.image_size, "intrinsics": self.intrinsics, "position": self.position,
                "rotation": self.rotation, "zrange": self.zrange, "noise": False}

    @classmethod
    def from_ravens(cls, config: dict, name: str = "camera") -> CameraConfig:
        """Read one entry of a Ravens/LoHoRavens ``agent_cams`` list as their renderer uses it.

        Their ``render_camera`` derives one vertical field of view from ``intrinsics[0]`` and the
        image height, so the pixels are square with focal length ``intrinsics[0]`` whatever
        ``intrinsics[4]`` says (LoHoRavens' top camera lists 316 and 450: it renders at 316).
        """
        fx, _, cx, _, _, cy, *_ = map(float, np.ravel(config["intrinsics"]))
        return cls(name=name, position=tuple(map(float, config["position"])),
                   rotation=tuple(map(float, config["rotation"])),
                   image_size=tuple(map(int, config["image_size"])),
                   intrinsics=(fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0),
                   zrange=tuple(map(float, config.get("zrange", (0.01, 10.0)))))


# Ravens cameras.RealSenseD415: front, left, right; LoHoRavens adds a camera looking straight down
# from (0.5, 0, 0.55), oriented like Ravens' top-down oracle camera (image x along world -y).
FRONT = CameraConfig("front", (1.0, 0.0, 0.75), _euler_quat(np.pi / 4, np.pi, -np.pi / 2))
LEFT = CameraConfig("left", (0.0, 0.5, 0.75), _euler_quat(np.pi / 4.5, np.pi, np.pi / 4))
RIGHT = CameraConfig("right", (0.0, -0.5, 0.75), _euler_quat(np.pi / 4.5, np.pi, 3 * np.pi / 4))
# LoHoRavens lists the top camera's intrinsics as (450 // 1.42, ..., 450, ...) and renders with the first
TOP = CameraConfig("top", (0.5, 0.0, 0.55), _euler_quat(0.0, np.pi, -np.pi / 2),
                   intrinsics=(450.0 // 1.42, 0.0, 320.0, 0.0, 450.0 // 1.42, 240.0, 0.0, 0.0, 1.0))
DEFAULT_CAMERAS = (FRONT, LEFT, RIGHT, TOP)


def render(camera: CameraConfig, client: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render colour (H, W, 3) uint8, depth (H, W) float32 metres along the optical axis, and
    segmentation (H, W) int32 PyBullet body ids (-1 where no body is seen), as Ravens does."""
    import pybullet

    height, width = camera.image_size
    rotation = quat_matrix(camera.rotation)
    position = np.asarray(camera.position, dtype=np.float64)
    # optical z looks forward and optical -y is up in the image
    view = pybullet.computeViewMatrix(position, position + rotation[:, 2], -rotation[:, 1],
                                      physicsClientId=client)
    near, far = camera.zrange
    fov_deg = np.degrees(2 * np.arctan(height / 2 / camera.intrinsics[4]))
    projection = pybullet.computeProjectionMatrixFOV(fov_deg, width / height, near, far,
                                                     physicsClientId=client)
    _, _, color, zbuffer, segm = pybullet.getCameraImage(
        width, height, view, projection, shadow=0, renderer=pybullet.ER_TINY_RENDERER,
        physicsClientId=client)
    color = np.asarray(color, dtype=np.uint8).reshape(height, width, 4)[..., :3]
    zbuffer = np.asarray(zbuffer, dtype=np.float64).reshape(height, width)
    depth = (far * near / (far - (far - near) * zbuffer)).astype(np.float32)
    segm = np.asarray(segm, dtype=np.int32).reshape(height, width)
    return np.ascontiguousarray(color), depth, segm
