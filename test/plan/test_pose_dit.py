"""Pose-DiT: variants, masks, causality, adaLN-Zero start, bounded outputs, overfitting demos."""
import numpy as np
import pytest
import torch

from pointmoe_core.common.pose_sequence import WORKSPACE_BOUNDS, decode_steps
from pointmoe_core.plan.ddpm import DDPMConfig, DDPMScheduler
from pointmoe_core.plan.pose_dit import (
    ATTENTION_VARIANTS,
    AttentionMasks,
    PoseDiT,
    PoseDiTConfig,
    plan_lengths,
    pose_dit_loss,
    sample_poses,
    stop_targets,
)
from pointmoe_core.plan.rectified_flow import RectifiedFlow

VARIANTS = sorted(ATTENTION_VARIANTS)
B, T, L, COND = 2, 5, 6, 24


def tiny(attention: str = "st", causal: bool = True) -> PoseDiTConfig:
    return PoseDiTConfig(hidden_size=32, depth=2, num_heads=4, attention=attention, causal=causal,
                         cond_dim=COND, frequency_embedding_size=32)


def randomized(config: PoseDiTConfig, seed: int = 0) -> PoseDiT:
    """A model whose every weight is random, so zero-initialised heads and gates do not hide anything."""
    torch.manual_seed(seed)
    model = PoseDiT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 2, 9, generator=g)
    t = torch.rand(B, generator=g)
    cond = torch.randn(B, L, COND, generator=g)
    cond_mask = torch.tensor([[1] * L, [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    step_mask = torch.tensor([[1] * T, [1, 1, 1, 0, 0]], dtype=torch.bool)
    return x, t, cond, cond_mask, step_mask


def test_defaults_follow_the_paper_and_load_from_yaml(tmp_path):
    config = PoseDiTConfig()
    assert (config.depth, config.hidden_size, config.num_heads, config.attention) == (3, 256, 4, "st")
    path = tmp_path / "pose_dit.yaml"
    path.write_text("model:\n  attention: joint\n  depth: 2\n")
    loaded = PoseDiTConfig.from_yaml(path, key="model")
    assert (loaded.attention, loaded.depth, loaded.hidden_size) == ("joint", 2, 256)
    with pytest.raises(ValueError):
        PoseDiTConfig.from_dict({"attention": "spatial"})
    with pytest.raises(ValueError):
        PoseDiTConfig.from_dict({"widht": 3})


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_run_forward_and_backward(variant):
    model = randomized(tiny(variant)).train()
    x, t, cond, cond_mask, step_mask = inputs()
    cond_xyz = torch.rand(*cond.shape[:2], 3) * 2 - 1
    cond_xyz[:, -1] = float("nan")  # a word token: no position
    out = model(x, t, cond, cond_mask, step_mask, cond_xyz)
    assert out.prediction.shape == (B, T, 2, 9) and out.stop_logits.shape == (B, T)
    assert out.prediction.isfinite().all() and out.stop_logits.isfinite().all()
    loss = pose_dit_loss(model, RectifiedFlow(), x, step_mask, cond, cond_mask, cond_xyz=cond_xyz)["loss"]
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.isfinite().all() for g in grads)
    # each variant builds its own attention layout
    assert len(model.blocks[0].self_attn) == len(ATTENTION_VARIANTS[variant])


def test_adaln_zero_starts_as_the_identity_with_zero_output():
    model = PoseDiT(tiny())
    x, t, cond, cond_mask, step_mask = inputs()
    out = model(x, t, cond, cond_mask, step_mask)
    assert torch.equal(out.prediction, torch.zeros_like(out.prediction))
    assert torch.equal(out.stop_logits, torch.zeros_like(out.stop_logits))  # p(stop) = 0.5
    h = torch.randn(B, T, 2, 32)
    c = model.time_embed(t)
    masks = AttentionMasks.build(step_mask, cond_mask, causal=True)
    torch.testing.assert_close(model.blocks[0](h, c, model.cond_embed(cond), masks), h)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_steps_do_not_change_real_steps(variant):
    model = randomized(tiny(variant, causal=False))  # without causality only the mask hides them
    x, t, cond, cond_mask, step_mask = inputs()
    before = model(x, t, cond, cond_mask, step_mask)
    changed = x.clone()
    changed[~step_mask] = 50 * torch.randn_like(changed[~step_mask])
    after = model(changed, t, cond, cond_mask, step_mask)
    torch.testing.assert_close(after.prediction[step_mask], before.prediction[step_mask])
    torch.testing.assert_close(after.stop_logits[step_mask], before.stop_logits[step_mask])
    # and the check is sensitive: unmasked, the same change does move the real steps
    unmasked = model(changed, t, cond, cond_mask, torch.ones_like(step_mask))
    assert not torch.allclose(unmasked.prediction[1, :3], before.prediction[1, :3], atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_condition_tokens_are_ignored(variant):
    model = randomized(tiny(variant))
    x, t, cond, cond_mask, step_mask = inputs()
    before = model(x, t, cond, cond_mask, step_mask).prediction
    changed = cond.clone()
    changed[~cond_mask] = 50.0
    torch.testing.assert_close(model(x, t, changed, cond_mask, step_mask).prediction, before)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("causal", [True, False])
def test_causal_steps_never_see_later_steps(variant, causal):
    model = randomized(tiny(variant, causal=causal))
    x, t, cond, cond_mask, _ = inputs()
    before = model(x, t, cond, cond_mask).prediction
    changed = x.clone()
    changed[:, 3:] += 1.0
    after = model(changed, t, cond, cond_mask).prediction
    assert torch.allclose(after[:, :3], before[:, :3], atol=1e-5) == causal


def test_timestep_conditions_the_output():
    model = randomized(tiny())
    x, t, cond, cond_mask, step_mask = inputs()
    out_a = model(x, torch.full((B,), 0.1), cond, cond_mask, step_mask).prediction
    out_b = model(x, torch.full((B,), 0.9), cond, cond_mask, step_mask).prediction
    assert (out_a - out_b).abs().max() > 1e-2


@pytest.mark.parametrize("scheduler", [RectifiedFlow(), DDPMScheduler(DDPMConfig(num_steps=5))], ids=["flow", "ddpm"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_random_weights_give_finite_poses_inside_the_workspace(scheduler, variant):
    model = randomized(tiny(variant), seed=3)
    with torch.no_grad():
        model.pose_head.weight.mul_(100)  # make wild outputs likely
    _, _, cond, cond_mask, _ = inputs()
    poses, stop = sample_poses(model, scheduler, cond, cond_mask, horizon=4)
    assert poses.shape == (B, 4, 2, 9) and ((stop >= 0) & (stop <= 1)).all()
    low, high = np.array(WORKSPACE_BOUNDS).T
    for plan in poses:
        seq = decode_steps(plan, planner="pose-dit")
        for step in seq.steps:
            for xyz, quat in ((step.pick_xyz, step.pick_quat), (step.place_xyz, step.place_quat)):
                assert np.isfinite(xyz).all() and np.isfinite(quat).all()
                assert (np.array(xyz) >= low).all() and (np.array(xyz) <= high).all()
                assert abs(np.linalg.norm(quat) - 1) < 1e-9


def test_stop_targets_and_plan_lengths():
    step_mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert stop_targets(step_mask).tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    stop_prob = torch.tensor([[0.1, 0.2, 0.9, 0.9], [0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]])
    assert plan_lengths(stop_prob).tolist() == [3, 1, 4]  # no stop fired: keep the whole horizon


def overfit(steps: int, variant: str = "st"):
    """Fit six fixed plans of 1-3 steps, each with its own condition; return losses and the model."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    n, t_max = 6, 3
    poses = torch.rand(n, t_max, 2, 9, generator=g) * 2 - 1
    lengths = torch.tensor([1, 2, 3, 3, 2, 1])
    step_mask = torch.arange(t_max)[None] < lengths[:, None]
    cond = torch.randn(n, 4, COND, generator=g)
    cond_mask = torch.ones(n, 4, dtype=torch.bool)
    model = PoseDiT(PoseDiTConfig(hidden_size=64, depth=2, num_heads=4, attention=variant, cond_dim=COND,
                                  frequency_embedding_size=64))
    flow = RectifiedFlow()

    def held_out_loss() -> float:  # the same noise and times before and after training
        with torch.no_grad():
            g_eval = torch.Generator().manual_seed(123)
            losses = [pose_dit_loss(model, flow, poses, step_mask, cond, cond_mask, generator=g_eval)["pose_loss"]
                      for _ in range(8)]
        return torch.stack(losses).mean().item()

    start = held_out_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    batch = [poses.repeat(4, 1, 1, 1), step_mask.repeat(4, 1), cond.repeat(4, 1, 1), cond_mask.repeat(4, 1)]
    for _ in range(steps):
        loss = pose_dit_loss(model, flow, *batch, generator=g)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    sampled, stop = sample_poses(model, flow, cond, cond_mask, horizon=t_max,
                                 generator=torch.Generator().manual_seed(1))
    return start, held_out_loss(), (sampled - poses)[step_mask].abs().max().item(), plan_lengths(stop), lengths


def test_tiny_model_overfits_a_handful_of_demos():
    start, end, sample_error, predicted_lengths, lengths = overfit(steps=300)
    assert end < start / 10
    assert sample_error < 0.3  # 4 Euler steps land near the demo (inputs span [-1, 1])
    assert torch.equal(predicted_lengths, lengths)  # the stop flag ends each plan at its length


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_overfits_longer(variant):
    start, end, sample_error, predicted_lengths, lengths = overfit(steps=1500, variant=variant)
    assert end < start / 30
    assert sample_error < 0.1
    assert torch.equal(predicted_lengths, lengths)


def test_distance_bias_makes_each_pose_attend_to_the_object_it_sits_on():
    torch.manual_seed(0)
    block = randomized(tiny("st")).blocks[0]
    torch.nn.init.constant_(block.distance_weight[1].bias, 1e3)  # every head: weight ~1000 per unit^2
    d = block.cross_attn.q.in_features
    cond = torch.randn(1, 3, d)
    centres = torch.tensor([[[0.5, 0.5, 0.0], [-0.5, 0.2, 0.0], [0.0, -0.6, 0.3]]])
    poses_xyz = centres[:, [2, 0]]  # pick sits on object 2, place on object 0
    distances = (poses_xyz[:, :, None] - centres[:, None]).square().sum(-1)
    masks = AttentionMasks.build(torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool), True)
    out = block.cross_attention(cond, masks, distances, torch.randn(1, d), torch.randn(1, 1, 2, d))
    values = block.cross_attn.kv(cond)[..., d:]  # (1, 3, d): the value of each object
    expected = block.cross_attn.out(values[:, [2, 0]])
    torch.testing.assert_close(out.reshape(1, 2, d), expected, atol=1e-5, rtol=1e-5)


def test_position_embedding_reaches_positioned_condition_tokens_only():
    config = tiny()
    config.position_embed = True
    model = randomized(config)
    x, t, cond, cond_mask, step_mask = inputs()
    cond_xyz = torch.full((B, L, 3), float("nan"))
    cond_xyz[:, :2] = torch.rand(B, 2, 3) * 2 - 1  # two object tokens, the rest words
    before = model(x, t, cond, cond_mask, step_mask, cond_xyz).prediction
    moved = cond_xyz.clone()
    moved[:, 0] += 0.5
    assert not torch.allclose(model(x, t, cond, cond_mask, step_mask, moved).prediction, before, atol=1e-4)
    # with the distance bias switched off, only the embedding could carry the move
    for block in model.blocks:
        torch.nn.init.constant_(block.distance_weight[1].bias, -1e4)
    before = model(x, t, cond, cond_mask, step_mask, cond_xyz).prediction
    assert not torch.allclose(model(x, t, cond, cond_mask, step_mask, moved).prediction, before, atol=1e-4)
    # a word token has no centre to embed: its NaN never leaks into the output
    assert model(x, t, cond, cond_mask, step_mask, cond_xyz).prediction.isfinite().all()
    # off by default: the MiniLM planner's checkpoints keep their parameter set
    assert not any(name.startswith("cond_position") for name, _ in PoseDiT(tiny()).named_parameters())
