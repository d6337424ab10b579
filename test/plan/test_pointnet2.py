"""Pure-torch PointNet++: farthest point sampling, ball query, grouping, set abstraction."""
import itertools

import pytest
import torch

from pointmoe_core.plan.pointnet2 import (
    PointNet2Config,
    PointNet2Encoder,
    SetAbstraction,
    ball_query,
    farthest_point_sample,
    gather_points,
)

GEN = torch.Generator().manual_seed(0)


def brute_force_fps(xyz: torch.Tensor, k: int) -> list[int]:
    picked = [0]
    while len(picked) < k:
        d = torch.cdist(xyz, xyz[picked]).min(dim=1).values
        picked.append(int(d.argmax()))
    return picked


def test_fps_picks_distinct_points_like_the_greedy_definition():
    xyz = torch.rand(3, 200, 3, generator=GEN)
    index = farthest_point_sample(xyz, 32)
    assert index.shape == (3, 32)
    for b in range(3):
        assert len(set(index[b].tolist())) == 32
        assert index[b].tolist() == brute_force_fps(xyz[b], 32)


def test_fps_finds_the_cube_corners_first():
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))
    inside = torch.rand(100, 3, generator=GEN) * 1.6 - 0.8
    xyz = torch.cat([corners, inside])[None]
    assert set(farthest_point_sample(xyz, 8)[0].tolist()) == set(range(8))


def test_fps_of_all_points_is_a_permutation():
    index = farthest_point_sample(torch.rand(2, 50, 3, generator=GEN), 50)
    for row in index:
        assert sorted(row.tolist()) == list(range(50))


def test_ball_query_respects_the_radius():
    xyz = torch.rand(2, 300, 3, generator=GEN)
    centres = gather_points(xyz, farthest_point_sample(xyz, 16))
    radius, k = 0.2, 8
    index = ball_query(xyz, centres, radius, k)
    assert index.shape == (2, 16, k)
    neighbours = gather_points(xyz, index)
    assert ((neighbours - centres[:, :, None]).norm(dim=-1) <= radius + 1e-6).all()
    for b, s in itertools.product(range(2), range(16)):
        inside = ((xyz[b] - centres[b, s]).norm(dim=-1) <= radius).nonzero().squeeze(1)
        got = index[b, s].tolist()
        # first K in index order; a sparse ball repeats its first neighbour
        assert got[: min(k, len(inside))] == inside[:k].tolist()
        assert set(got) == set(inside[:k].tolist())


def test_ball_query_with_fewer_points_than_neighbours():
    xyz = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [5.0, 0, 0]]])
    index = ball_query(xyz, xyz[:, :1], radius=0.5, num_neighbors=6)
    assert index.tolist() == [[[0, 1, 0, 0, 0, 0]]]


def test_gather_points():
    points = torch.arange(24.0).reshape(2, 4, 3)
    index = torch.tensor([[[3, 0]], [[1, 1]]])
    out = gather_points(points, index)
    assert out.shape == (2, 1, 2, 3)
    assert torch.equal(out[0, 0, 0], points[0, 3]) and torch.equal(out[1, 0, 1], points[1, 1])


def test_set_abstraction_shapes():
    sa = SetAbstraction(num_centres=16, radius=0.4, num_neighbors=8, in_channels=3, mlp=(8, 12))
    centres, features = sa(torch.rand(2, 64, 3, generator=GEN), torch.rand(2, 64, 3, generator=GEN))
    assert centres.shape == (2, 16, 3) and features.shape == (2, 16, 12)
    global_sa = SetAbstraction(None, None, None, in_channels=12, mlp=(20,))
    centres, features = global_sa(centres, features)
    assert centres.shape == (2, 1, 3) and features.shape == (2, 1, 20)


def test_default_config_is_leo_object_encoder():
    c = PointNet2Config()
    assert (c.sa_centres, c.sa_radii, c.sa_neighbors, c.out_dim) == ((32, 16), (0.2, 0.4), (32, 32), 768)


@pytest.mark.parametrize("out_dim", [64, 256])
def test_encoder_output_width_is_configurable_and_trains(out_dim):
    config = PointNet2Config(sa_mlps=((16, 16, 32), (32, 32, 64)), global_mlp=(64,), out_dim=out_dim)
    encoder = PointNet2Encoder(config)
    xyz = torch.rand(5, 128, 3, generator=GEN) * 2 - 1
    colors = torch.rand(5, 128, 3, generator=GEN)
    out = encoder(xyz, colors)
    assert out.shape == (5, out_dim) and out.isfinite().all()
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in encoder.parameters())
    encoder.eval()
    torch.testing.assert_close(encoder(xyz, colors), encoder(xyz, colors))  # deterministic FPS start
