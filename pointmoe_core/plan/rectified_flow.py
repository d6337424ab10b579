"""Rectified flow: how Pose-DiT is trained and sampled ("pose diffusion via rectified flow").

Liu et al., "Flow Straight and Fast" (ICLR 2023), in the form of SD3 / pi0 / minRF:

* interpolation ``x_t = t * noise + (1 - t) * x0`` with t = 1 pure noise and t = 0 data;
* the network predicts the velocity ``v = noise - x0`` (constant along each straight path),
  trained with MSE over the entries that exist (padded plan steps are masked out);
* t is drawn logit-normal (``sigmoid(N(m, s))``, SD3's choice, weighting mid-noise levels) or
  uniform;
* sampling integrates dx/dt = v from t = 1 to 0 with N Euler steps (3D-MoE uses 4).

``NoiseScheduler`` is the interface this class shares with ``ddpm.DDPMScheduler``, so the
planner can swap them: the network always gets t in [0, 1] (1 = noise) and returns one tensor
shaped like x, whose meaning the scheduler decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..common.config import YamlConfig

# denoiser(x_t, t) -> prediction; t has shape (B,)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TIME_SAMPLINGS = ("logit_normal", "uniform")


class NoiseScheduler(Protocol):
    """What the planner needs from a scheduler (rectified flow or DDPM/DDIM)."""

    def sample_time(self, batch_size: int, device: torch.device | str = "cpu",
                    generator: torch.Generator | None = None) -> torch.Tensor: ...

    def noisy_input_and_target(self, x0: torch.Tensor, noise: torch.Tensor,
                               t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def sample(self, denoiser: Denoiser, noise: torch.Tensor, num_steps: int | None = None) -> torch.Tensor: ...


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the entries where ``mask`` (leading dims of x, True = real) holds."""
    squared = (prediction - target).square()
    if mask is None:
        return squared.mean()
    mask = mask.reshape(*mask.shape, *(1,) * (squared.dim() - mask.dim())).expand_as(squared)
    return squared[mask].sum() / mask.sum().clamp_min(1)


def _broadcast_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *(1,) * (x.dim() - 1)).to(x.dtype)


@dataclass
class RectifiedFlowConfig(YamlConfig):
    num_steps: int = 4  # Euler steps at sampling time
    time_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {self.time_sampling!r}")
        if self.num_steps < 1:
            raise ValueError("num_steps must be >= 1")


class RectifiedFlow:
    """Rectified-flow training target and N-step Euler sampler."""

    def __init__(self, config: RectifiedFlowConfig | None = None) -> None:
        self.config = config or RectifiedFlowConfig()

    def sample_time(self, batch_size: int, device: torch.device | str = "cpu",
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Training times t in (0, 1), one per sample."""
        c = self.config
        if c.time_sampling == "uniform":
            return torch.rand(batch_size, device=device, generator=generator)
        normal = torch.randn(batch_size, device=device, generator=generator)
        return torch.sigmoid(c.logit_mean + c.logit_std * normal)

    def noisy_input_and_target(self, x0: torch.Tensor, noise: torch.Tensor,
                               t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_t = t * noise + (1 - t) * x0`` and the velocity target ``noise - x0``."""
        tb = _broadcast_time(t, x0)
        return tb * noise + (1 - tb) * x0, noise - x0

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, noise: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """Euler-integrate from t = 1 (``noise``) to t = 0 in ``num_steps`` equal steps."""
        num_steps = num_steps or self.config.num_steps
        x = noise
        dt = 1.0 / num_steps
        for i in range(num_steps, 0, -1):
            t = torch.full((x.shape[0],), i * dt, dtype=x.dtype, device=x.device)
            x = x - dt * denoiser(x, t)
        return x
