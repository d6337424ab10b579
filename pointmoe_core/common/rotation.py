"""Rotation formats: the continuous 6D representation, rotation matrices and quaternions.

Pose-DiT denoises rotations in the continuous 6D representation of Zhou et al., "On the
Continuity of Rotation Representations in Neural Networks" (CVPR 2019): the first two columns of
the rotation matrix, mapped back by Gram-Schmidt. Unlike quaternions or Euler angles it has no
discontinuity, so a network regresses it smoothly. Quaternions are (x, y, z, w), the order
PyBullet and Ravens use.

Every function works on any leading batch shape and never returns NaN: degenerate 6D vectors
(a zero or non-finite column, or two parallel columns) and zero quaternions map to the identity.
"""
from __future__ import annotations

import torch

# Below this norm a 6D column (or the orthogonal part of the second column) carries no direction.
DEGENERATE_NORM = 1e-6


def _identity_like(x: torch.Tensor, batch_shape: torch.Size) -> torch.Tensor:
    return torch.eye(3, dtype=x.dtype, device=x.device).expand(*batch_shape, 3, 3)


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) = (column 0, column 1) -> (..., 3, 3) rotation matrix by Gram-Schmidt."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    n1 = a1.norm(dim=-1, keepdim=True)
    b1 = a1 / n1.clamp_min(DEGENERATE_NORM)
    u2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    n2 = u2.norm(dim=-1, keepdim=True)
    b2 = u2 / n2.clamp_min(DEGENERATE_NORM)
    matrix = torch.stack([b1, b2, torch.linalg.cross(b1, b2)], dim=-1)
    usable = (n1 > DEGENERATE_NORM) & (n2 > DEGENERATE_NORM) & torch.isfinite(d6).all(-1, keepdim=True)
    return torch.where(usable[..., None], matrix, _identity_like(d6, d6.shape[:-1]))


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, concatenated."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


def quaternion_to_matrix(quat_xyzw: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (x, y, z, w), any norm > 0, -> (..., 3, 3)."""
    norm = quat_xyzw.norm(dim=-1, keepdim=True)
    x, y, z, w = (quat_xyzw / norm.clamp_min(DEGENERATE_NORM)).unbind(-1)
    matrix = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).unflatten(-1, (3, 3))
    usable = (norm > DEGENERATE_NORM) & torch.isfinite(quat_xyzw).all(-1, keepdim=True)
    return torch.where(usable[..., None], matrix, _identity_like(quat_xyzw, quat_xyzw.shape[:-1]))


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion (x, y, z, w) with w >= 0.

    Each of the four textbook formulas divides by one quaternion component; using the one whose
    component is largest (Shepperd's method) keeps the division well conditioned for every
    rotation, including half turns where w = 0.
    """
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 2|w|, 2|x|, 2|y|, 2|z|
    r = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    ).clamp_min(0).sqrt()
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    d10, d02, d21 = m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] - m[..., 2, 0], m[..., 2, 1] - m[..., 1, 2]
    # candidates[..., i, :] = (x, y, z, w) * 2 r_i, each exact when r_i > 0
    candidates = torch.stack(
        [
            torch.stack([d21, d02, d10, r[..., 0] ** 2], dim=-1),
            torch.stack([r[..., 1] ** 2, s01, s02, d21], dim=-1),
            torch.stack([s01, r[..., 2] ** 2, s12, d02], dim=-1),
            torch.stack([s02, s12, r[..., 3] ** 2, d10], dim=-1),
        ],
        dim=-2,
    )
    best = r.argmax(-1, keepdim=True)
    quat = candidates.gather(-2, best[..., None].expand(*best.shape, 4)).squeeze(-2)
    quat = quat / quat.norm(dim=-1, keepdim=True).clamp_min(DEGENERATE_NORM)
    # q and -q are the same rotation; pick w >= 0 so equal rotations give equal quaternions
    return torch.where(quat[..., 3:] < 0, -quat, quat)


def rotation_6d_to_quaternion(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 4) unit quaternion (x, y, z, w), w >= 0."""
    return matrix_to_quaternion(rotation_6d_to_matrix(d6))


def quaternion_to_rotation_6d(quat_xyzw: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (x, y, z, w) -> (..., 6)."""
    return matrix_to_rotation_6d(quaternion_to_matrix(quat_xyzw))
