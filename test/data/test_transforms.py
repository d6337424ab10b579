import dataclasses

import numpy as np
import pytest
import torch

from pointmoe_core.data.preprocess import grid_sample
from pointmoe_core.data.sample import INDOOR, OUTDOOR, make_sample
from pointmoe_core.data.synthetic import IndoorRoomDomain, OutdoorLidarDomain
from pointmoe_core.data.transforms import (
    CollectFeatures,
    Compose,
    EstimateNormals,
    GridSample,
    NormalizeColor,
    PipelineConfig,
    RandomFlip,
    RandomJitter,
    RandomRotate,
    RandomScale,
    SphereCrop,
    collate,
    default_pipeline,
)


def cloud(n: int = 3000, seed: int = 0, dataset: str = "d") -> dict:
    rng = np.random.default_rng(seed)
    coord = rng.uniform(0, 1, (n, 3)) ** 2  # uneven density: many points per voxel in a corner
    normal = rng.normal(size=(n, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return make_sample(coord, dataset=dataset, name=f"s{seed}", segment=rng.integers(-1, 5, n),
                       color=rng.uniform(0, 255, (n, 3)), normal=normal, strength=rng.uniform(0, 1, n))


def voxel_keys(coord: np.ndarray, grid_size: float, origin: np.ndarray) -> set:
    return set(map(tuple, np.floor(coord / grid_size).astype(int) - origin))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---- GridSample ------------------------------------------------------------------------------
def test_grid_sample_train_keeps_one_random_point_per_voxel():
    sample = cloud()
    out = GridSample(0.1)(sample, rng(0))
    origin = np.floor(sample["coord"] / 0.1).astype(int).min(0)
    voxels = voxel_keys(sample["coord"], 0.1, origin)
    assert len(out["coord"]) == len(voxels) < len(sample["coord"])
    assert set(map(tuple, out["grid_coord"])) == voxels  # every voxel, once
    np.testing.assert_array_equal(out["grid_coord"], np.floor(out["coord"] / 0.1).astype(int) - origin)
    # kept rows are input rows, with all per-point fields carried along
    row = {tuple(c): i for i, c in enumerate(sample["coord"])}
    kept = np.array([row[tuple(c)] for c in out["coord"]])
    np.testing.assert_array_equal(out["segment"], sample["segment"][kept])
    np.testing.assert_array_equal(out["strength"], sample["strength"][kept])
    other = GridSample(0.1)(sample, rng(1))
    assert not np.array_equal(np.sort(other["coord"], axis=0), np.sort(out["coord"], axis=0))  # random pick
    assert out["grid_size"] == 0.1 and out["grid_coord"].dtype == np.int64


def test_grid_sample_inverse_maps_every_point_to_the_point_kept_in_its_voxel():
    sample = cloud()
    out = GridSample(0.1, return_inverse=True)(sample, rng(0))
    assert out["inverse"].shape == (len(sample["coord"]),)
    voxel = np.floor(sample["coord"] / 0.1).astype(int)
    np.testing.assert_array_equal(out["grid_coord"][out["inverse"]], voxel - voxel.min(0))


def test_grid_sample_of_a_tensor_equals_that_of_the_array_and_numpy_unique():
    coord = np.random.default_rng(4).uniform(-1, 1, (600, 3))
    coord[300:] = coord[:300] + 0.01  # many points share voxels
    grid = grid_sample(coord, 0.1)
    on_device = grid_sample(torch.from_numpy(coord), 0.1)
    for array, tensor in zip(dataclasses.astuple(grid), dataclasses.astuple(on_device)):
        assert isinstance(array, np.ndarray) and isinstance(tensor, torch.Tensor)
        np.testing.assert_array_equal(array, tensor.numpy())
    cells = np.floor(coord / 0.1).astype(np.int64)
    cells -= cells.min(0)
    _, voxel, count = np.unique(cells, axis=0, return_inverse=True, return_counts=True)  # (x, y, z) order
    np.testing.assert_array_equal(grid.grid_coord, cells)
    np.testing.assert_array_equal(grid.voxel, voxel.ravel())
    np.testing.assert_array_equal(grid.count, count)
    np.testing.assert_array_equal(grid.order, np.argsort(voxel.ravel(), kind="stable"))


def test_grid_sample_test_mode_fragments_cover_every_point():
    sample = cloud()
    fragments = GridSample(0.1, mode="test")(sample, rng(0))
    train = GridSample(0.1)(sample, rng(0))
    counts = np.unique(train["grid_coord"], axis=0, return_counts=True)[1]
    assert len(fragments) > 1
    index = np.concatenate([f["index"] for f in fragments])
    assert set(index.tolist()) == set(range(len(sample["coord"])))  # every point is in some fragment
    for fragment in fragments:  # each fragment is a whole voxelisation: every voxel exactly once
        assert len(fragment["coord"]) == len(counts) == len(np.unique(fragment["grid_coord"], axis=0))
        np.testing.assert_array_equal(fragment["coord"], sample["coord"][fragment["index"]])


# ---- augmentations ----------------------------------------------------------------------------
def test_random_rotate_z_keeps_heights_and_distances_and_turns_normals():
    sample = cloud(200)
    out = RandomRotate(angle=(0.5, 0.5), axis="z", center=(0, 0, 0), p=1.0)(sample, rng())  # a quarter turn
    np.testing.assert_allclose(out["coord"][:, 0], -sample["coord"][:, 1], atol=1e-6)
    np.testing.assert_allclose(out["coord"][:, 1], sample["coord"][:, 0], atol=1e-6)
    np.testing.assert_allclose(out["coord"][:, 2], sample["coord"][:, 2])
    np.testing.assert_allclose(out["normal"][:, 0], -sample["normal"][:, 1], atol=1e-6)
    assert RandomRotate(p=0.0)(sample, rng()) is sample


def test_scale_flip_jitter():
    sample = cloud(200)
    scaled = RandomScale((0.9, 1.1))(sample, rng())
    ratio = scaled["coord"] / sample["coord"]
    assert np.allclose(ratio, ratio[0, 0], rtol=1e-5) and 0.9 <= ratio[0, 0] <= 1.1
    flipped = RandomFlip(p=1.0)(sample, rng())
    np.testing.assert_array_equal(flipped["coord"], sample["coord"] * [-1, -1, 1])
    np.testing.assert_array_equal(flipped["normal"], sample["normal"] * [-1, -1, 1])
    jittered = RandomJitter(sigma=0.01, clip=0.02)(sample, rng())
    shift = np.abs(jittered["coord"] - sample["coord"])
    assert shift.max() <= 0.02 + 1e-6 and shift.mean() > 0.004
    assert np.array_equal(sample["coord"], cloud(200)["coord"])  # inputs are never written into


def test_sphere_crop_keeps_the_budget_nearest_the_centre():
    sample = cloud(5000)
    out = SphereCrop(point_max=1200, mode="center")(sample, rng())
    assert len(out["coord"]) == len(out["segment"]) == 1200
    center = sample["coord"][2500]
    kept = np.square(out["coord"] - center).sum(1)
    all_distances = np.sort(np.square(sample["coord"] - center).sum(1))
    assert kept.max() <= all_distances[1199]
    assert len(SphereCrop(sample_rate=0.5)(sample, rng())["coord"]) == 2500
    assert SphereCrop(point_max=10_000)(sample, rng()) is sample


def test_normalize_color_matches_the_fork():
    sample = make_sample(np.zeros((3, 3)), dataset="d", name="s", color=[[0, 0, 0], [127.5] * 3, [255] * 3])
    np.testing.assert_allclose(NormalizeColor()(sample, rng())["color"], [[-1] * 3, [0] * 3, [1] * 3])


def test_outdoor_features_are_coord_and_strength_three_times():
    sample = cloud(10)
    feat = CollectFeatures(OUTDOOR.feat_keys)(sample, rng())["feat"]
    assert feat.shape == (10, 6)
    np.testing.assert_array_equal(feat[:, :3], sample["coord"])
    np.testing.assert_array_equal(feat[:, 3:], np.repeat(sample["strength"], 3, axis=1))
    with pytest.raises(KeyError, match="color"):
        CollectFeatures(INDOOR.feat_keys)(make_sample(np.zeros((2, 3)), dataset="d", name="s"), rng())


def test_estimated_normals_of_a_floor_and_a_wall_face_the_room():
    u, v = (a.ravel() for a in np.meshgrid(np.linspace(0, 2, 30), np.linspace(0, 2, 30)))
    floor = np.c_[u, v, np.zeros_like(u)]
    wall = np.c_[np.zeros_like(u), u, v + 0.1]
    room = make_sample(np.concatenate([floor, wall]), dataset="d", name="room")
    normal = EstimateNormals(radius=0.2, max_nn=8)(room, rng())["normal"]
    floor_normal, wall_normal = normal[:len(u)], normal[len(u):]
    np.testing.assert_allclose(floor_normal[u > 0.2], np.tile([0, 0, 1], ((u > 0.2).sum(), 1)), atol=1e-6)
    np.testing.assert_allclose(wall_normal[v > 0.2], np.tile([1, 0, 0], ((v > 0.2).sum(), 1)), atol=1e-6)


# ---- pipelines and collation -------------------------------------------------------------------
def test_pipeline_is_reproducible_from_the_generator_seed():
    pipeline = default_pipeline(INDOOR, train=True, config=PipelineConfig(grid_size=0.05))
    a, b, c = (pipeline(cloud(), rng(seed)) for seed in (3, 3, 4))
    np.testing.assert_array_equal(a["feat"], b["feat"])
    assert not np.array_equal(a["coord"][:50], c["coord"][:50])


def test_collate_concatenates_clouds_with_cumulative_offsets():
    indoor = default_pipeline(INDOOR, train=False, config=PipelineConfig(grid_size=0.1))
    samples = [indoor(cloud(n, dataset="a"), rng()) for n in (500, 800)]
    samples.append(default_pipeline(OUTDOOR, train=False)(cloud(300, dataset="b"), rng()))
    batch = collate(samples, dataset_names=("b", "a"))
    counts = [len(s["coord"]) for s in samples]
    assert batch["offset"].tolist() == np.cumsum(counts).tolist() and batch["offset"].dtype == torch.long
    assert batch["coord"].shape == (sum(counts), 3) and batch["feat"].shape == (sum(counts), 6)
    assert batch["grid_coord"].dtype == torch.long and batch["segment"].dtype == torch.long
    assert batch["grid_size"] is None  # 0.1 and 0.05 in one batch: the model reads grid_coord
    assert batch["dataset"] == ["a", "a", "b"] and batch["dataset_index"].tolist() == [1, 1, 0]
    # inverse indexes the batch rows: every original point of cloud 2 maps into cloud 2's rows
    inverse = batch["inverse"][500 + 800:]
    assert inverse.min() >= counts[0] + counts[1] and inverse.max() < sum(counts)
    assert collate(samples[:2])["grid_size"] == 0.1


def test_synthetic_clouds_through_pipelines_run_in_the_backbone():
    from pointmoe_core.seg.ptv3 import BackboneConfig, PointTransformerMoE

    indoor_pipeline = default_pipeline(INDOOR, train=True, config=PipelineConfig(grid_size=0.1, point_max=1500))
    outdoor_pipeline = default_pipeline(OUTDOOR, train=True, config=PipelineConfig(grid_size=0.5))
    indoor = indoor_pipeline(IndoorRoomDomain().generate(0), rng())
    outdoor = outdoor_pipeline(OutdoorLidarDomain().generate(0), rng())
    batch = collate([indoor, outdoor])
    model = PointTransformerMoE(BackboneConfig(
        in_channels=6, stride=(2, 2), enc_depths=(1, 1, 1), enc_channels=(16, 16, 32), enc_num_head=(2, 2, 4),
        enc_patch_size=(64, 64, 64), dec_depths=(1, 1), dec_channels=(16, 16), dec_num_head=(2, 2),
        dec_patch_size=(64, 64), mlp_ratio=2, num_experts=4, conv_backend="torch")).eval()
    with torch.no_grad():
        out = model(batch)
    assert out.feat.shape == (len(batch["coord"]), 16) and torch.isfinite(out.feat).all()
    assert Compose()(indoor, rng()) is indoor
