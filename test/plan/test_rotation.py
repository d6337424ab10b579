"""6D rotation <-> matrix <-> quaternion (x, y, z, w): round trips, conventions, degenerate inputs."""
import math

import pytest
import torch

from pointmoe_core.common.rotation import (
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_matrix,
    quaternion_to_rotation_6d,
    rotation_6d_to_matrix,
    rotation_6d_to_quaternion,
)


def random_quaternions(n: int, seed: int = 0) -> torch.Tensor:
    q = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[:, 3:] < 0, -q, q)


def test_quaternion_6d_round_trip():
    q = random_quaternions(1000)
    torch.testing.assert_close(rotation_6d_to_quaternion(quaternion_to_rotation_6d(q)), q, rtol=0, atol=1e-12)


def test_half_turns_round_trip():
    """w = 0 (rotations by pi) is where the naive trace formula divides by zero."""
    axes = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3]], dtype=torch.float64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    q = torch.cat([axes, torch.zeros(5, 1, dtype=torch.float64)], dim=-1)
    m = quaternion_to_matrix(q)
    q_back = matrix_to_quaternion(m)
    assert q_back.isfinite().all()
    torch.testing.assert_close(quaternion_to_matrix(q_back), m, rtol=0, atol=1e-12)


def test_matrices_are_rotations_and_6d_is_their_first_two_columns():
    m = quaternion_to_matrix(random_quaternions(200, seed=1))
    eye = torch.eye(3, dtype=torch.float64).expand_as(m)
    torch.testing.assert_close(m.transpose(-1, -2) @ m, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(200, dtype=torch.float64))
    d6 = matrix_to_rotation_6d(m)
    torch.testing.assert_close(d6[:, :3], m[:, :, 0])
    torch.testing.assert_close(d6[:, 3:], m[:, :, 1])
    torch.testing.assert_close(rotation_6d_to_matrix(d6), m, rtol=0, atol=1e-12)


def test_gram_schmidt_ignores_column_scale_and_the_first_column_in_the_second():
    m = quaternion_to_matrix(random_quaternions(50, seed=2))
    a1, a2 = 3.0 * m[:, :, 0], 0.5 * m[:, :, 1] + 2.0 * m[:, :, 0]
    torch.testing.assert_close(rotation_6d_to_matrix(torch.cat([a1, a2], -1)), m, rtol=0, atol=1e-12)


def test_quarter_turn_about_z_matches_xyzw_convention():
    s = math.sqrt(0.5)
    m = quaternion_to_matrix(torch.tensor([0.0, 0.0, s, s], dtype=torch.float64))
    want = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(m, want, rtol=0, atol=1e-12)


def test_agrees_with_scipy():
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    q = random_quaternions(100, seed=3)
    want = torch.from_numpy(rotation.from_quat(q.numpy()).as_matrix())
    torch.testing.assert_close(quaternion_to_matrix(q), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "d6",
    [
        [0, 0, 0, 0, 1, 0],  # zero first column
        [1, 0, 0, 2, 0, 0],  # parallel columns
        [float("nan"), 0, 0, 0, 1, 0],
        [float("inf"), 0, 0, 0, 1, 0],
    ],
)
def test_degenerate_6d_gives_identity(d6):
    d6 = torch.tensor(d6, dtype=torch.float32)
    torch.testing.assert_close(rotation_6d_to_matrix(d6), torch.eye(3))
    torch.testing.assert_close(rotation_6d_to_quaternion(d6), torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_random_network_outputs_give_unit_quaternions():
    d6 = 10 * torch.randn(4, 7, 6, generator=torch.Generator().manual_seed(4))
    q = rotation_6d_to_quaternion(d6)
    assert q.shape == (4, 7, 4)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(4, 7))
    assert (q[..., 3] >= 0).all()


def test_zero_quaternion_gives_identity():
    torch.testing.assert_close(quaternion_to_matrix(torch.zeros(4)), torch.eye(3))
