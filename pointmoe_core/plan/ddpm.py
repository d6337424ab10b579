"""DDPM / DDIM: the discrete-time diffusion baseline for Pose-DiT's scheduler ablation.

Ho et al., "Denoising Diffusion Probabilistic Models" (2020) for training (the network predicts
the noise) and Song et al., "Denoising Diffusion Implicit Models" (2021) for sampling on a
strided subset of the K training steps: ``eta = 1`` is DDPM's ancestral sampler on that subset,
``eta = 0`` deterministic DDIM. Same interface as ``rectified_flow.RectifiedFlow``: the network
gets t in [0, 1] with t = (k + 1) / K for discrete step k, so t = 1 is (almost) pure noise in
both schedulers and one network definition serves both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..common.config import YamlConfig
from .rectified_flow import Denoiser

BETA_SCHEDULES = ("linear", "cosine")


@dataclass
class DDPMConfig(YamlConfig):
    num_train_steps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4  # linear schedule of Ho et al.
    beta_end: float = 0.02
    num_steps: int = 50  # sampling steps
    eta: float = 1.0  # 1 = DDPM, 0 = DDIM
    # Poses live in [-1, 1] (normalised xyz, 6D entries); clipping the x0 estimate keeps early,
    # noisy steps from throwing the sample out of that range.
    clip_sample: bool = True

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if not 1 <= self.num_steps <= self.num_train_steps:
            raise ValueError("num_steps must be in [1, num_train_steps]")


def cumulative_alphas(config: DDPMConfig) -> torch.Tensor:
    """alpha_bar_k for k = 0..K-1 (float64)."""
    k = config.num_train_steps
    if config.beta_schedule == "linear":
        betas = torch.linspace(config.beta_start, config.beta_end, k, dtype=torch.float64)
    else:  # Nichol & Dhariwal's cosine schedule, betas capped at 0.999
        s = torch.arange(k + 1, dtype=torch.float64) / k
        f = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


class DDPMScheduler:
    """Epsilon-prediction diffusion with a DDPM (eta = 1) or DDIM (eta = 0) sampler."""

    def __init__(self, config: DDPMConfig | None = None) -> None:
        self.config = config or DDPMConfig()
        self.alpha_bar = cumulative_alphas(self.config)

    def step_to_time(self, k: torch.Tensor) -> torch.Tensor:
        return (k.double() + 1) / self.config.num_train_steps

    def time_to_step(self, t: torch.Tensor) -> torch.Tensor:
        k = torch.round(t.double() * self.config.num_train_steps).long() - 1
        return k.clamp(0, self.config.num_train_steps - 1)

    def sample_time(self, batch_size: int, device: torch.device | str = "cpu",
                    generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.randint(0, self.config.num_train_steps, (batch_size,), device=device, generator=generator)
        return self.step_to_time(k).float()

    def _alpha_bar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        a = self.alpha_bar.to(like.device)[self.time_to_step(t).to(like.device)]
        return a.reshape(-1, *(1,) * (like.dim() - 1)).to(like.dtype)

    def noisy_input_and_target(self, x0: torch.Tensor, noise: torch.Tensor,
                               t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_k = sqrt(a_k) x0 + sqrt(1 - a_k) noise``; the target is the noise."""
        a = self._alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise, noise

    def sampling_steps(self, num_steps: int) -> list[int]:
        """Evenly strided steps, highest first, ending at k = 0."""
        stride = self.config.num_train_steps // num_steps
        return list(range((num_steps - 1) * stride, -1, -stride))

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, noise: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """Denoise ``noise`` in ``num_steps`` DDIM steps (stochastic with ``eta``)."""
        c = self.config
        steps = self.sampling_steps(num_steps or c.num_steps)
        x = noise
        for i, k in enumerate(steps):
            a = self.alpha_bar[k].item()
            a_prev = self.alpha_bar[steps[i + 1]].item() if i + 1 < len(steps) else 1.0
            t = self.step_to_time(torch.full((x.shape[0],), k, device=x.device)).to(x.dtype)
            eps = denoiser(x, t)
            x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
            if c.clip_sample:
                x0 = x0.clamp(-1, 1)
                eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
            sigma = c.eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * torch.randn_like(x)
        return x
