"""Scene objects from instance ids, and the condition encoder's ``tokens (B, L, D) + mask``."""
import torch

from pointmoe_core.plan.pointnet2 import PointNet2Config
from pointmoe_core.plan.scene_encoder import (
    ConditionEncoder,
    ConditionEncoderConfig,
    SceneObjects,
    object_colors,
    objects_from_cloud,
    pad_scenes,
)

GEN = torch.Generator().manual_seed(0)
TINY = ConditionEncoderConfig(
    hidden_size=32,
    text_dim=16,
    points_per_object=64,
    pointnet=PointNet2Config(sa_centres=(16, 8), sa_mlps=((16, 32), (32, 32)), global_mlp=(32,), out_dim=48),
)


def box(centre, size, n):
    return torch.tensor(centre) + (torch.rand(n, 3, generator=GEN) - 0.5) * torch.tensor(size)


def nearest_distance(a, b):
    """For each point of a, the distance to the nearest point of b (exact, unlike cdist's matmul)."""
    return (a[:, None] - b[None]).norm(dim=-1).min(dim=1).values


def tabletop_cloud():
    """A table (instance -1), a red block (7) and a green bowl (3)."""
    table = torch.cat([torch.rand(500, 2, generator=GEN) * 0.5 + torch.tensor([0.25, -0.25]), torch.zeros(500, 1)], 1)
    block, bowl = box([0.4, 0.1, 0.02], [0.04, 0.04, 0.04], 300), box([0.6, -0.2, 0.03], [0.12, 0.12, 0.06], 40)
    xyz = torch.cat([table, block, bowl])
    red, green = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])
    colors = torch.cat([torch.full((500, 3), 0.5), red.expand(300, 3), green.expand(40, 3)])
    ids = torch.cat([torch.full((500,), -1), torch.full((300,), 7), torch.full((40,), 3)])
    return xyz, colors, ids


def test_objects_from_cloud_skips_background_and_normalises_each_object():
    xyz, colors, ids = tabletop_cloud()
    objects = objects_from_cloud(xyz, colors, ids, points_per_object=64, generator=GEN)
    assert objects.instance_ids.tolist() == [3, 7]
    assert objects.points.shape == (2, 64, 6)
    for i, instance in enumerate([3, 7]):
        member = xyz[ids == instance]
        low, high = member.amin(0), member.amax(0)
        torch.testing.assert_close(objects.locations[i], torch.cat([(low + high) / 2, high - low]))
        mean = member.mean(0)
        radius = (member - mean).norm(dim=-1).max()
        local = objects.points[i, :, :3]
        assert local.norm(dim=-1).max() <= 1 + 1e-6
        # every sample is one of the object's points, centred and scaled
        assert (nearest_distance(local * radius + mean, member) < 1e-5).all()
    torch.testing.assert_close(objects.points[1, :, 3:], torch.tensor([[1.0, -1, -1]]).expand(64, 3))  # red in [-1, 1]


def test_small_objects_keep_every_point():
    xyz, colors, ids = tabletop_cloud()
    bowl = objects_from_cloud(xyz, colors, ids, points_per_object=64, generator=GEN)
    bowl_points = xyz[ids == 3]
    mean = bowl_points.mean(0)
    restored = bowl.points[0, :, :3] * (bowl_points - mean).norm(dim=-1).max() + mean
    # all 40 bowl points appear among the 64 samples
    assert (nearest_distance(bowl_points, restored) < 1e-5).all()


def test_at_most_max_objects_keeping_the_largest():
    sizes = [5, 50, 20, 40]
    xyz = torch.cat([box([0.3 + 0.1 * i, 0, 0], [0.02] * 3, n) for i, n in enumerate(sizes)])
    ids = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    shuffle = torch.randperm(len(ids), generator=GEN)  # the objects' points interleaved in the cloud
    xyz, ids, colors = xyz[shuffle], ids[shuffle], torch.rand(len(ids), 3, generator=GEN)
    objects = objects_from_cloud(xyz, colors, ids, points_per_object=8, max_objects=2)
    assert sorted(objects.instance_ids.tolist()) == [1, 3]
    for i, instance in enumerate(objects.instance_ids.tolist()):  # the dropped object 2 takes nothing along
        member = xyz[ids == instance]
        low, high = member.amin(0), member.amax(0)
        assert torch.equal(objects.locations[i], torch.cat([(low + high) / 2, high - low]))
        assert torch.equal(objects.colors[i], 2 * colors[ids == instance].mean(0) - 1)


def test_empty_scene():
    objects = objects_from_cloud(torch.rand(10, 3), torch.rand(10, 3), torch.full((10,), -1), points_per_object=8)
    assert len(objects) == 0 and objects.points.shape == (0, 8, 6) and objects.locations.shape == (0, 6)


def test_pad_scenes():
    a = SceneObjects(torch.ones(2, 8, 6), torch.ones(2, 6), torch.tensor([0, 1]))
    b = SceneObjects(torch.ones(3, 8, 6), torch.ones(3, 6), torch.tensor([0, 1, 2]))
    points, locations, mask = pad_scenes([a, b])
    assert points.shape == (2, 3, 8, 6) and locations.shape == (2, 3, 6)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    assert points[0, 2].abs().sum() == 0


def test_object_colours_are_the_mean_of_all_points_whatever_was_sampled():
    rng = torch.Generator().manual_seed(1)
    xyz = torch.cat([box([0.4, -0.2, 0.02], [0.04] * 3, 300), box([0.5, 0.2, 0.02], [0.04] * 3, 40)])
    colors = torch.randint(0, 256, (340, 3), generator=rng, dtype=torch.uint8)
    ids = torch.tensor([3] * 300 + [5] * 40)
    expected = torch.stack([2 * colors[:300].float().mean(0) / 255 - 1, 2 * colors[300:].float().mean(0) / 255 - 1])
    for seed in (0, 1):
        generator = torch.Generator().manual_seed(seed)
        scene = objects_from_cloud(xyz, colors, ids, points_per_object=16, generator=generator)
        torch.testing.assert_close(object_colors([scene])[0], expected)
    # a scene made without them (older callers) falls back on its sampled points; padding is zero
    sampled = SceneObjects(scene.points[:1], scene.locations[:1], scene.instance_ids[:1])
    padded = object_colors([scene, sampled])
    torch.testing.assert_close(padded[1, 0], scene.points[0, :, 3:].mean(0))
    assert padded[1, 1].abs().sum() == 0


def make_batch():
    xyz, colors, ids = tabletop_cloud()
    full = objects_from_cloud(xyz, colors, ids, points_per_object=64, generator=GEN)
    one = SceneObjects(full.points[:1], full.locations[:1], full.instance_ids[:1])
    points, locations, mask = pad_scenes([full, one])
    text = torch.randn(2, 5, 16, generator=GEN)
    text_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    return points, locations, mask, text, text_mask


def test_condition_tokens_and_mask():
    encoder = ConditionEncoder(TINY)
    points, locations, mask, text, text_mask = make_batch()
    tokens, token_mask = encoder(points, locations, mask, text, text_mask)
    assert tokens.shape == (2, 2 + 5, 32) and tokens.isfinite().all()
    assert token_mask.tolist() == [[True] * 7, [True, False, True, True, True, False, False]]


def test_padded_objects_do_not_change_real_tokens_even_in_training():
    encoder = ConditionEncoder(TINY).train()  # BatchNorm uses batch statistics here
    points, locations, mask, text, text_mask = make_batch()
    before, _ = encoder(points, locations, mask, text, text_mask)
    points[~mask] = torch.randn_like(points[~mask]) * 100
    locations[~mask] = 5.0
    after, _ = encoder(points, locations, mask, text, text_mask)
    torch.testing.assert_close(after[:, :2][mask], before[:, :2][mask])


def test_in_eval_all_object_slots_are_encoded_at_once_each_as_if_alone():
    """Planning runs PointNet++ on every object slot, padding included (no boolean indexing, so
    nothing is read on the host and CUDA graphs can record it): each real object's token is the one
    it gets alone, and a padding slot carries its location terms only."""
    scene = ConditionEncoder(TINY).scene.eval()
    points, locations, mask, _, _ = make_batch()
    points[~mask] = torch.randn_like(points[~mask]) * 100
    with torch.no_grad():
        tokens = scene(points, locations, mask)
        for b, m in mask.nonzero().tolist():
            alone = scene(points[b:b + 1, m:m + 1], locations[b:b + 1, m:m + 1], torch.ones(1, 1, dtype=torch.bool))
            torch.testing.assert_close(tokens[b, m], alone[0, 0], atol=1e-5, rtol=1e-5)
        normalized = scene.normalize_locations(locations[~mask])
        torch.testing.assert_close(tokens[~mask], scene.location_linear(normalized) + scene.location_embed(normalized))


def test_locations_are_scaled_like_the_poses():
    encoder = ConditionEncoder(TINY)
    centre_of_workspace = torch.tensor([[0.5, 0.0, 0.14, 0.5, 1.0, 0.28]])
    torch.testing.assert_close(encoder.scene.normalize_locations(centre_of_workspace),
                               torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0]]))


def test_config_from_dict_builds_nested_pointnet():
    config = ConditionEncoderConfig.from_dict({"hidden_size": 64, "pointnet": {"out_dim": 32, "sa_centres": [8, 4]}})
    assert config.pointnet.out_dim == 32 and config.pointnet.sa_centres == (8, 4)
    assert ConditionEncoder(config)(*make_batch_for(config))[0].shape[-1] == 64


def make_batch_for(config):
    points, locations, mask, text, text_mask = make_batch()
    return points, locations, mask, torch.randn(2, 5, config.text_dim), text_mask


def test_objects_come_in_order_of_place_whatever_their_ids():
    centres = [[0.5, 0.2, 0.0], [0.4, -0.3, 0.0], [0.6, -0.1, 0.0], [0.3, 0.1, 0.0]]
    xyz = torch.cat([box(c, [0.02] * 3, 30) for c in centres])
    ids = torch.arange(len(centres)).repeat_interleave(30)
    first = objects_from_cloud(xyz, torch.zeros_like(xyz), ids, points_per_object=8)
    renumbered = objects_from_cloud(xyz, torch.zeros_like(xyz), torch.tensor([7, 2, 5, 0])[ids], points_per_object=8)
    # by y: -0.3, -0.1, 0.1, 0.2
    torch.testing.assert_close(first.locations[:, :2], torch.tensor([[0.4, -0.3], [0.6, -0.1], [0.3, 0.1], [0.5, 0.2]]),
                               atol=0.02, rtol=0)
    torch.testing.assert_close(renumbered.locations, first.locations)
    assert first.instance_ids.tolist() == [1, 2, 3, 0] and renumbered.instance_ids.tolist() == [2, 5, 0, 7]
