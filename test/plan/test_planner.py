"""The Pose-DiT planner end to end: cloud + instruction -> PoseSequence, and its training loss."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pointmoe_core.common.pose_sequence import WORKSPACE_BOUNDS, PickPlace, PoseSequence
from pointmoe_core.plan.planner import (
    PoseDiTPlanner,
    PoseDiTPlannerConfig,
    collate_plans,
)
from pointmoe_core.plan.pose_decoding import (
    grounding_loss,
    grounding_sets,
    grounding_targets,
    pad_plans,
    snap_to_chosen,
    snap_to_objects,
)
from pointmoe_core.plan.scene_encoder import objects_from_cloud

LOW, HIGH = np.array(WORKSPACE_BOUNDS).T


def tabletop(seed: int, block_at=(0.4, 0.1)):
    g = torch.Generator().manual_seed(seed)
    table = torch.cat([torch.rand(400, 2, generator=g) * 0.5 + torch.tensor([0.25, -0.25]), torch.zeros(400, 1)], 1)
    block = torch.tensor([*block_at, 0.02]) + (torch.rand(200, 3, generator=g) - 0.5) * 0.04
    bowl = torch.tensor([0.6, -0.2, 0.03]) + (torch.rand(200, 3, generator=g) - 0.5) * torch.tensor([0.12, 0.12, 0.06])
    xyz = torch.cat([table, block, bowl])
    red, green = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])
    colors = torch.cat([torch.full((400, 3), 0.5), red.expand(200, 3), green.expand(200, 3)])
    ids = torch.cat([torch.full((400,), -1), torch.zeros(200, dtype=torch.long), torch.ones(200, dtype=torch.long)])
    return xyz, colors, ids


def test_config_checks_widths_and_scheduler(tiny_planner_config):
    with pytest.raises(ValueError):
        PoseDiTPlannerConfig.from_dict({"model": {"cond_dim": 64}, "condition": {"hidden_size": 32}})
    with pytest.raises(ValueError):
        PoseDiTPlannerConfig.from_dict({**tiny_planner_config, "scheduler": "euler"})
    config = PoseDiTPlannerConfig.from_dict({**tiny_planner_config, "scheduler": "ddpm", "ddpm": {"num_steps": 10}})
    assert config.ddpm.num_steps == 10 and config.condition.pointnet.out_dim == 32


def test_plan_with_real_minilm_returns_a_valid_pose_sequence(tiny_planner_config):
    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(tiny_planner_config)).eval()
    xyz, colors, ids = tabletop(0)
    seq = planner.plan(xyz, colors, ids, "put the red block in the green bowl",
                       generator=torch.Generator().manual_seed(0))
    assert isinstance(seq, PoseSequence) and 1 <= len(seq) <= 4
    assert seq.planner == "pose-dit" and seq.instruction.startswith("put the red") and seq.planning_time > 0
    assert all(0 <= s <= 1 for s in seq.scores) and seq.scores[0] == 1.0
    for act in seq.to_ravens_actions():
        for xyz_, quat in (act["pose0"], act["pose1"]):
            assert (xyz_ >= LOW).all() and (xyz_ <= HIGH).all()
            assert abs(np.linalg.norm(quat) - 1) < 1e-9


@pytest.mark.parametrize("scheduler", ["rectified_flow", "ddpm"])
def test_loss_on_collated_demos(scheduler, tiny_planner_config, hash_text):
    config = PoseDiTPlannerConfig.from_dict({**tiny_planner_config, "scheduler": scheduler})
    planner = PoseDiTPlanner(config, instruction_encoder=hash_text)
    scenes = [objects_from_cloud(*tabletop(i), points_per_object=64) for i in range(3)]
    step = PickPlace((0.4, 0.1, 0.02), (0, 0, 0, 1), (0.6, -0.2, 0.05), (0, 0, 0, 1))
    plans = [PoseSequence([step]), PoseSequence([step, step]), PoseSequence([step] * 3)]
    batch = collate_plans(scenes, planner.embed_instructions(["a", "b", "c"]), plans)
    assert batch.poses.shape == (3, 3, 2, 9) and batch.step_mask.sum(1).tolist() == [1, 2, 3]
    losses = planner.loss(batch)
    assert set(losses) == {"loss", "pose_loss", "stop_loss", "grounding_loss"} and losses["loss"].isfinite()
    # the pick is on the block, the place in the bowl; objects come in order of y, so the bowl
    # (y -0.2) is object 0 and the block (y 0.1) object 1
    target, grounded = grounding_targets(batch.poses, batch.object_locations, batch.object_mask, radius=0.05)
    assert target.tolist() == [[1, 0]] * 3 and grounded.all()
    # adaLN-Zero starts every block as the identity with zero heads: the first step trains the
    # heads, the second the gates, and from the third on the scene, text and pose paths all learn
    optimizer = torch.optim.SGD(planner.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        planner.loss(batch)["loss"].backward()
        optimizer.step()
    parts = (planner.condition.scene.pointnet, planner.condition.text_proj, planner.model.blocks[0].cross_attn)
    for part in parts:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    # the grounding head's bias moves every object's score alike, which a softmax over the objects
    # ignores: its gradient is zero up to rounding
    assert planner.grounding_head.weight.grad.abs().sum() > 0


@pytest.mark.slow  # ~35 s of CPU: 600 steps
def test_plan_learns_to_pick_the_block_where_the_cloud_shows_it(tiny_planner_config, hash_text):
    """Two scenes differing only in where the block is: the plan must follow the points."""
    torch.manual_seed(0)
    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(tiny_planner_config), instruction_encoder=hash_text)
    places = [(0.35, 0.2), (0.65, -0.3)]
    clouds = [tabletop(0, block_at=p) for p in places]
    plans = [PoseSequence([PickPlace((*p, 0.02), (0, 0, 0, 1), (0.6, -0.2, 0.05), (0, 0, 0, 1))]) for p in places]
    text = planner.embed_instructions(["put the block in the bowl"] * 8)
    optimizer = torch.optim.AdamW(planner.parameters(), lr=5e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        # fresh point samples every step, so only what is real about the scene can be learnt
        scenes = [objects_from_cloud(*cloud, points_per_object=64, generator=g) for cloud in clouds * 4]
        loss = planner.loss(collate_plans(scenes, text, plans * 4), generator=g)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    planner.eval()
    for i, cloud in enumerate(clouds):
        seq = planner.plan(*cloud, "put the block in the bowl", generator=torch.Generator().manual_seed(1))
        assert len(seq) == 1
        pick = np.array(seq.steps[0].pick_xyz[:2])
        assert np.linalg.norm(pick - places[i]) < 0.06 < np.linalg.norm(pick - places[1 - i])


def test_export_round_trips_as_safetensors_and_is_hash_checked(tiny_planner_config, hash_text, tmp_path):
    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(tiny_planner_config), instruction_encoder=hash_text).eval()
    path = planner.export(tmp_path / "planner.safetensors")
    loaded = PoseDiTPlanner.from_checkpoint(path, instruction_encoder=hash_text)
    assert loaded.config == planner.config
    xyz, colors, ids = tabletop(0)
    a, b = (p.plan(xyz, colors, ids, "put it there", generator=torch.Generator().manual_seed(0))
            for p in (planner, loaded))
    assert a.to_ravens_actions()[0]["pose0"][0].tolist() == b.to_ravens_actions()[0]["pose0"][0].tolist()
    path.write_bytes(path.read_bytes()[:-1] + b" ")  # one byte changed
    with pytest.raises(Exception, match="corrupt"):
        PoseDiTPlanner.from_checkpoint(path, instruction_encoder=hash_text)


def test_snap_to_objects_moves_poses_within_the_radius_only():
    locations = torch.tensor([[0.40, 0.10, 0.02, 0.04, 0.04, 0.04], [0.60, -0.20, 0.03, 0.12, 0.12, 0.06]])
    near_block, far = (0.42, 0.09, 0.03), (0.50, 0.30, 0.05)
    step = PickPlace(near_block, (0, 0, 0, 1), far, (0, 0, 0.6, 0.8), score=0.7)
    plan = PoseSequence([step, PickPlace(far, (0, 0, 0, 1), (0.57, -0.18, 0.1), (0, 0, 0, 1))], "x", "pose-dit", 0.5)
    snapped = snap_to_objects(plan, locations, radius=0.05)
    # the reference: nearest centre in xy, moved only when within the radius, height kept
    for before, after in zip(plan.steps, snapped.steps):
        for xyz, moved in ((before.pick_xyz, after.pick_xyz), (before.place_xyz, after.place_xyz)):
            distance = np.linalg.norm(locations[:, :2].numpy() - np.array(xyz[:2]), axis=1)
            want = (*locations[distance.argmin(), :2].tolist(), xyz[2]) if distance.min() <= 0.05 else xyz
            assert moved == pytest.approx(want)
        assert (after.pick_quat, after.place_quat, after.score) == (before.pick_quat, before.place_quat, before.score)
    assert snapped.steps[0].pick_xyz == pytest.approx((0.40, 0.10, 0.03)) and snapped.steps[0].place_xyz == far
    assert (snapped.instruction, snapped.planner, snapped.planning_time) == ("x", "pose-dit", 0.5)
    assert snap_to_objects(plan, locations, radius=0.0) is plan


def test_snap_follows_the_planners_first_step_scores_within_the_radius():
    locations = torch.tensor([[0.40, 0.10, 0.02, 0.04, 0.04, 0.04], [0.46, 0.10, 0.02, 0.04, 0.04, 0.04],
                              [0.70, 0.30, 0.00, 0.10, 0.10, 0.00]])
    between = (0.42, 0.10, 0.03)  # 2 cm from object 0, 4 cm from object 1
    step = PickPlace(between, (0, 0, 0, 1), (0.60, 0.30, 0.05), (0, 0, 0, 1))
    plan = PoseSequence([step, step])
    # pick: object 1 scores highest; place: object 2 does, but lies 10 cm away
    scores = torch.tensor([[0.0, 5.0, 9.0], [0.0, 0.0, 9.0]])
    snapped = snap_to_objects(plan, locations, radius=0.05, first_scores=scores)
    assert snapped.steps[0].pick_xyz == pytest.approx((0.46, 0.10, 0.03))
    assert snapped.steps[0].place_xyz == (0.60, 0.30, 0.05)  # nothing within the radius: kept
    # later steps have no scores: nearest, as without them
    assert snapped.steps[1].pick_xyz == pytest.approx((0.40, 0.10, 0.03))


def test_plan_snaps_onto_the_scene_objects(tiny_planner_config):
    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict({**tiny_planner_config, "snap_radius": 1.0})).eval()
    xyz, colors, ids = tabletop(0)
    centres = objects_from_cloud(xyz, colors, ids, 32, 16).locations[:, :2]
    plan = planner.plan(xyz, colors, ids, "put the red block in the green bowl",
                        generator=torch.Generator().manual_seed(0))
    # with a radius wider than the workspace every pose lands on an object centre
    for step in plan.steps:
        for xyz_ in (step.pick_xyz, step.place_xyz):
            assert torch.isclose(centres.double(), torch.tensor(xyz_[:2]).double()).all(1).any()


def test_grounding_falls_back_to_the_smallest_object_whose_box_holds_the_pose():
    # a 15 cm zone at (0.5, 0) holding a 4 cm block at (0.54, 0.04); one far 4 cm block
    locations = torch.tensor([[[0.5, 0.0, 0.0, 0.15, 0.15, 0.002],
                               [0.54, 0.04, 0.02, 0.04, 0.04, 0.04],
                               [0.7, -0.3, 0.02, 0.04, 0.04, 0.04]]])
    mask = torch.ones(1, 3, dtype=torch.bool)

    def first(pick, place):
        plan = PoseSequence([PickPlace((*pick, 0.02), (0, 0, 0, 1), (*place, 0.02), (0, 0, 0, 1))])
        return pad_plans([plan])[0]

    # the pick is on the far block's centre; the place a zone spot 5.3 cm from the zone's centre
    target, grounded = grounding_targets(first((0.7, -0.3), (0.4625, -0.0375)), locations, mask, radius=0.05)
    assert target.tolist() == [[2, 0]] and grounded.all()
    # inside the block's box as well as the zone's: the nearer centre wins within the radius
    target, _ = grounding_targets(first((0.7, -0.3), (0.55, 0.05)), locations, mask, radius=0.05)
    assert target[0, 1] == 1
    # nowhere near an object, in no box: not grounded
    _, grounded = grounding_targets(first((0.3, 0.4), (0.3, 0.4)), locations, mask, radius=0.05)
    assert not grounded.any()


def test_grounding_sets_hold_every_alternative_and_the_loss_is_their_likelihood():
    # three 4 cm blocks and two 12 cm bowls; the demo picks block 0 into bowl 3
    locations = torch.tensor([[[0.4, -0.2, 0.02, 0.04, 0.04, 0.04], [0.5, 0.0, 0.02, 0.04, 0.04, 0.04],
                               [0.6, 0.2, 0.02, 0.04, 0.04, 0.04], [0.4, 0.3, 0.03, 0.12, 0.12, 0.06],
                               [0.7, -0.3, 0.03, 0.12, 0.12, 0.06]]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    demo = PoseSequence([PickPlace((0.4, -0.2, 0.04), (0, 0, 0, 1), (0.4, 0.3, 0.05), (0, 0, 0, 1))])
    target, grounded = grounding_targets(pad_plans([demo])[0], locations, mask, radius=0.05)
    # the alternatives: block 0 to either bowl, block 1 to bowl 4 (and the demo's own step)
    options = np.array([[[0.4, -0.2, 0.04], [0.4, 0.3, 0.05]], [[0.4, -0.2, 0.04], [0.7, -0.3, 0.05]],
                        [[0.5, 0.0, 0.04], [0.7, -0.3, 0.05]]], dtype=np.float32)
    sets = grounding_sets([options], target, grounded, locations, mask, radius=0.05)
    assert sets[0, 0].tolist() == [True, True, False, False, False]
    assert sets[0, 1].tolist() == [False, False, False, True, True]  # after the demo's pick, block 0
    # without alternatives, the demo's own objects: the loss is then the cross-entropy
    alone = grounding_sets([None], target, grounded, locations, mask, radius=0.05)
    assert alone[0].nonzero().tolist() == [[0, 0], [1, 3]]
    logits = torch.randn(1, 2, 5)
    torch.testing.assert_close(grounding_loss(logits, alone), F.cross_entropy(logits[0], target[0]))
    want = torch.stack([logits[0, r].logsumexp(-1) - logits[0, r, sets[0, r]].logsumexp(-1) for r in (0, 1)]).mean()
    torch.testing.assert_close(grounding_loss(logits, sets), want)


def test_snap_to_chosen_acts_on_the_chosen_objects():
    plan = PoseSequence([PickPlace((0.42, -0.19, 0.04), (0, 0, 0, 1), (0.53, 0.24, 0.05), (0, 0, 0, 1)),
                         PickPlace((0.1, 0.1, 0.04), (0, 0, 0, 1), (0.2, 0.2, 0.05), (0, 0, 0, 1))])
    snapped = snap_to_chosen(plan, ((0.4, -0.2), 0.3), ((0.5, 0.2), 1.2))
    # the first step on the chosen centres, turned as the objects are; heights and later steps kept
    first = snapped.steps[0]
    assert first.pick_xyz == pytest.approx((0.4, -0.2, 0.04)) and first.place_xyz == pytest.approx((0.5, 0.2, 0.05))
    assert first.pick_quat == pytest.approx((0, 0, np.sin(0.15), np.cos(0.15)))
    assert first.place_quat == pytest.approx((0, 0, np.sin(0.6), np.cos(0.6)))
    assert snapped.steps[1] == plan.steps[1]
