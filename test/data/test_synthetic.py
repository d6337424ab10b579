
import numpy as np
import pytest

from pointmoe_core.data.raycast import RayScene
from pointmoe_core.data.synthetic import (
    HDL64_ELEVATIONS_DEG,
    IndoorRoomDomain,
    OutdoorLidarDomain,
    SyntheticDataset,
    SyntheticSuiteConfig,
    TabletopDomain,
    synthetic_suite,
)

DOMAINS = [IndoorRoomDomain(), OutdoorLidarDomain(), TabletopDomain()]


def test_ray_caster_hits_the_nearest_surface_with_its_label_and_normal():
    gray = (0.5, 0.5, 0.5)
    scene = RayScene()
    scene.add_box((0, 0, 1.5), (10, 10, 3), (0, 0, 0, 0, 1, 2), gray, inside=True)  # walls 0, floor 1, ceiling 2
    scene.add_box((2, 0, 0.5), (1, 1, 1), 3, gray, yaw=np.pi / 4)  # turned 45 degrees: a corner faces the origin
    scene.add_cylinder((0, 2, 0), 0.5, 1.0, 4, gray)
    scene.add_sphere((0, -2, 0.5), 0.5, 5, gray)
    directions = np.array([(1, 0, 0), (0, 1, 0), (0, -1, 0), (-1, 0, 0), (0, 0, -1), (0, 0, 1)], float)
    hits = scene.cast((0, 0, 0.5), directions)
    np.testing.assert_allclose(hits.t, [2 - np.sqrt(0.5), 1.5, 1.5, 5.0, 0.5, 2.5])
    assert hits.label.tolist() == [3, 4, 5, 0, 1, 2] and hits.instance.tolist() == [1, 2, 3, 0, 0, 0]
    np.testing.assert_allclose(hits.normal[3:], [(1, 0, 0), (0, 0, 1), (0, 0, -1)], atol=1e-12)  # facing the ray
    np.testing.assert_allclose(hits.normal[1:3], [(0, -1, 0), (0, 1, 0)], atol=1e-12)
    top = scene.cast((0, 2, 2.0), np.array([(0.0, 0.0, -1.0)]))  # down onto the cylinder's cap
    assert top.t[0] == 1.0 and top.label[0] == 4 and tuple(top.normal[0]) == (0, 0, 1)
    assert not RayScene().cast((0, 0, 0), directions).valid.any()


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_generation_is_deterministic_by_seed_and_labelled_within_the_taxonomy(domain):
    a, b, c = domain.generate(7), domain.generate(7), domain.generate(8)
    for key, value in a.items():
        assert np.array_equal(value, b[key]) if isinstance(value, np.ndarray) else value == b[key]
    assert not np.array_equal(a["segment"], c["segment"]) or not np.array_equal(a["coord"], c["coord"])
    assert a["dataset"] == domain.name and a["coord"].dtype == np.float32
    assert 0 <= a["segment"].min() and a["segment"].max() < len(domain.class_names)


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_every_class_appears_over_a_few_scenes(domain):
    seen = set()
    for seed in range(6):
        sample = domain.generate(seed)
        seen |= set(np.unique(sample["segment"]).tolist())
        assert 15_000 <= len(sample["coord"]) <= 25_000  # ~20k-point scenes
    assert seen == set(range(len(domain.class_names)))


def test_lidar_points_lie_on_the_64_beam_cones_of_an_hdl64():
    domain = OutdoorLidarDomain()
    sample = domain.generate(0)
    xyz = sample["coord"].astype(np.float64)
    elevation = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    nearest = np.abs(elevation[:, None] - HDL64_ELEVATIONS_DEG[None]).min(1)
    assert nearest.max() < 1e-3  # range noise runs along the beam, so each point stays on its ring
    ring = np.abs(elevation[:, None] - HDL64_ELEVATIONS_DEG[None]).argmin(1)
    assert len(np.unique(ring)) >= 60
    assert np.linalg.norm(xyz, axis=1).max() < domain.config.max_range + 0.1
    ground_range = np.hypot(xyz[:, 0], xyz[:, 1])
    near = ((ground_range > 5) & (ground_range < 10)).sum() / (np.pi * (10**2 - 5**2))
    far = ((ground_range > 20) & (ground_range < 40)).sum() / (np.pi * (40**2 - 20**2))
    assert near > 10 * far  # points per square metre fall off with range, as with a real spinning LiDAR
    road = sample["segment"] == domain.class_names.index("road")
    np.testing.assert_allclose(xyz[road, 2], -domain.config.sensor_height + 0.01, atol=0.1)
    assert sample["strength"].min() >= 0 and sample["strength"].max() <= 1 and sample["strength"].std() > 0.05


def test_indoor_points_lie_on_the_room_surfaces_seen_by_the_camera():
    domain = IndoorRoomDomain()
    sample = domain.generate(3)
    z, label = sample["coord"][:, 2], sample["segment"]
    names = domain.class_names
    assert np.abs(z[label == names.index("floor")]).max() < 0.1  # the floor slab's top, with depth noise
    assert z[label == names.index("table")].max() < 0.9 and z[label == names.index("chair")].max() < 1.1
    np.testing.assert_allclose(np.linalg.norm(sample["normal"], axis=1), 1, atol=1e-5)
    floor_normals = sample["normal"][label == names.index("floor")]
    assert (floor_normals[:, 2] > 0.99).all()  # the camera looks down at the floor: its normals face up
    assert sample["color"].min() >= 0 and sample["color"].max() <= 255
    # a depth camera above the table sees its top and sides, never the underside
    table_normals = sample["normal"][label == names.index("table")]
    assert (table_normals[:, 2] > 0.99).mean() > 0.5 and (table_normals[:, 2] < -0.01).sum() == 0


def test_taxonomies_overlap_partially_across_domains():
    indoor, outdoor, tabletop = (set(d.class_names) for d in DOMAINS)
    assert {"floor", "table"} <= indoor & tabletop and "person" in indoor & outdoor
    assert outdoor - indoor and tabletop - indoor  # and each keeps classes of its own


def test_suite_holds_a_domain_out_for_zero_shot():
    suite = synthetic_suite(SyntheticSuiteConfig(held_out=("tabletop",), train_scenes=4, val_scenes=2))
    assert [d.name for d in suite.train] == [d.name for d in suite.val] == ["synthetic_indoor", "synthetic_outdoor"]
    assert [d.name for d in suite.zero_shot] == ["synthetic_tabletop"]
    train, val = suite.train[0], suite.val[0]
    assert not {train.scene_seed(i) for i in range(4)} & {val.scene_seed(i) for i in range(2)}
    batch_ready = suite.zero_shot[0][0]
    assert batch_ready["feat"].shape[1] == 6 and "inverse" in batch_ready  # eval pipeline, normals estimated
    with pytest.raises(ValueError, match="unknown"):
        synthetic_suite(SyntheticSuiteConfig(domains=("indoor",), held_out=("outdoor",)))


def test_synthetic_dataset_scenes_repeat_by_index():
    dataset = SyntheticDataset(TabletopDomain(), num_scenes=3, seed=1)
    np.testing.assert_array_equal(dataset.load(1)["coord"], dataset.load(1)["coord"])
    assert dataset.load(1)["name"] != dataset.load(2)["name"] and len(dataset) == 3
