"""Rectified flow and the DDPM/DDIM baseline: targets, losses and samplers against exact fields."""
import math

import pytest
import torch

from pointmoe_core.plan.ddpm import DDPMConfig, DDPMScheduler, cumulative_alphas
from pointmoe_core.plan.rectified_flow import RectifiedFlow, RectifiedFlowConfig, masked_mse

GEN = torch.Generator().manual_seed(0)
X0 = torch.rand(4, 3, 2, 9, generator=GEN, dtype=torch.float64) * 2 - 1  # poses live in [-1, 1]
STEP_MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)


def exact_velocity(x0: torch.Tensor):
    """The velocity field of the straight paths into x0: x_t = t e + (1 - t) x0 => v = (x_t - x0) / t."""
    return lambda x_t, t: (x_t - x0) / t.reshape(-1, 1, 1, 1)


def exact_noise(scheduler: DDPMScheduler, x0: torch.Tensor):
    """The noise that produced x_k from x0: (x_k - sqrt(a_k) x0) / sqrt(1 - a_k)."""
    def predict(x_t, t):
        a = scheduler.alpha_bar[scheduler.time_to_step(t)].reshape(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    return predict


def test_interpolation_and_target():
    flow = RectifiedFlow()
    noise = torch.randn_like(X0)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    x_t, target = flow.noisy_input_and_target(X0, noise, t)
    torch.testing.assert_close(x_t[0], X0[0])  # t = 0: data
    torch.testing.assert_close(x_t[3], noise[3])  # t = 1: noise
    torch.testing.assert_close(x_t[1], 0.25 * noise[1] + 0.75 * X0[1])
    torch.testing.assert_close(target, noise - X0)


def test_loss_is_zero_for_the_perfect_velocity_field():
    flow = RectifiedFlow()
    noise = torch.randn(X0.shape, generator=GEN, dtype=torch.float64)
    t = flow.sample_time(4, generator=GEN).double()
    x_t, target = flow.noisy_input_and_target(X0, noise, t)
    perfect = exact_velocity(X0)(x_t, t)
    assert masked_mse(perfect, target, STEP_MASK) < 1e-20
    assert masked_mse(torch.zeros_like(target), target, STEP_MASK) > 0.5


def test_masked_mse_ignores_padded_steps():
    pred, target = torch.randn_like(X0), torch.randn_like(X0)
    want = torch.stack([(pred[b, s] - target[b, s]).square().mean() for b, s in STEP_MASK.nonzero()]).mean()
    torch.testing.assert_close(masked_mse(pred, target, STEP_MASK), want)
    pred_changed = pred.clone()
    pred_changed[~STEP_MASK] = 1e6
    torch.testing.assert_close(masked_mse(pred_changed, target, STEP_MASK), want)
    torch.testing.assert_close(masked_mse(pred, target), (pred - target).square().mean())


def test_one_euler_step_with_the_exact_field_recovers_x0():
    noise = torch.randn(X0.shape, generator=GEN, dtype=torch.float64)
    x = RectifiedFlow().sample(exact_velocity(X0), noise, num_steps=1)
    torch.testing.assert_close(x, X0, rtol=0, atol=1e-12)


def test_euler_calls_the_network_num_steps_times_from_t1_down():
    seen = []

    def field(x, t):
        seen.append(float(t[0]))
        return torch.zeros_like(x)

    RectifiedFlow().sample(field, torch.zeros(2, 1, 2, 9))
    assert seen == [1.0, 0.75, 0.5, 0.25]  # default: 4 steps, as in 3D-MoE


@pytest.mark.parametrize("sampling", ["logit_normal", "uniform"])
def test_time_sampling(sampling):
    t = RectifiedFlow(RectifiedFlowConfig(time_sampling=sampling)).sample_time(20000, generator=GEN)
    assert ((t > 0) & (t < 1)).all()
    assert abs(t.median().item() - 0.5) < 0.02
    # logit-normal puts more mass in the middle: P(|N(0, 1)| < logit(0.75) = ln 3) vs 0.5
    middle = ((t > 0.25) & (t < 0.75)).float().mean().item()
    want = 0.5 if sampling == "uniform" else math.erf(math.log(3) / math.sqrt(2))
    assert middle == pytest.approx(want, abs=0.015)


def test_config_validation():
    with pytest.raises(ValueError):
        RectifiedFlowConfig(time_sampling="beta")
    with pytest.raises(ValueError):
        RectifiedFlowConfig(num_steps=0)
    with pytest.raises(ValueError):
        DDPMConfig(num_steps=2000)


# ---- DDPM / DDIM ---------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_noise_schedule_goes_from_data_to_noise(schedule):
    alpha_bar = cumulative_alphas(DDPMConfig(beta_schedule=schedule))
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()
    assert alpha_bar[0] > 0.99 and alpha_bar[-1] < 1e-3


def test_ddpm_time_mapping_is_discrete_and_invertible():
    ddpm = DDPMScheduler()
    k = torch.arange(1000)
    t = ddpm.step_to_time(k)
    assert t.min() > 0 and t.max() == 1  # the network sees t in (0, 1], 1 = noise, like the flow
    assert torch.equal(ddpm.time_to_step(t.float()), k)
    t_train = ddpm.sample_time(500, generator=GEN)
    assert torch.equal(ddpm.step_to_time(ddpm.time_to_step(t_train)).float(), t_train)


def test_ddpm_target_is_the_noise():
    ddpm = DDPMScheduler()
    noise = torch.randn_like(X0)
    t = torch.tensor([0.001, 0.5, 0.9, 1.0], dtype=torch.float64)
    x_t, target = ddpm.noisy_input_and_target(X0, noise, t)
    assert torch.equal(target, noise)
    a = ddpm.alpha_bar[499]
    torch.testing.assert_close(x_t[1], a.sqrt() * X0[1] + (1 - a).sqrt() * noise[1])


def test_sampling_steps_are_strided_and_end_at_zero():
    steps = DDPMScheduler().sampling_steps(50)
    assert len(steps) == 50 and steps[-1] == 0 and steps[0] == 980
    assert all(a - b == 20 for a, b in zip(steps, steps[1:]))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_and_ddpm_with_the_exact_noise_recover_x0(eta):
    ddpm = DDPMScheduler(DDPMConfig(eta=eta))
    noise = torch.randn(X0.shape, generator=GEN, dtype=torch.float64)
    calls = []
    predict = exact_noise(ddpm, X0)
    x = ddpm.sample(lambda x_t, t: calls.append(1) or predict(x_t, t), noise)
    assert len(calls) == 50
    torch.testing.assert_close(x, X0, rtol=0, atol=1e-9)


def test_ddpm_clipping_keeps_samples_in_range():
    ddpm = DDPMScheduler(DDPMConfig(num_steps=10))
    x = ddpm.sample(lambda x_t, t: -10 * torch.ones_like(x_t), torch.randn(2, 3, 2, 9, generator=GEN))
    assert x.abs().max() <= 1 + 1e-6 and math.isfinite(x.sum().item())
