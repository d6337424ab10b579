"""Fit a Pose-DiT planner to oracle demonstrations written by ``pointmoe sim demos``.

The samples are the demo frames of :mod:`pointmoe_core.data.demo_frames` (a scene cloud, its
instruction and the steps still to do); object points are re-sampled every time a frame is drawn
so the model cannot memorise samples.

``fit`` is the bare loop. ``train`` is ``pointmoe train pose-dit --config FILE --demos DIR
[--resume] [key=value ...]``: in ``output_dir`` it writes ``checkpoints/`` (see
:mod:`pointmoe_core.common.checkpoint`; every ``checkpoint_every`` steps and after the last; each
one a ``PoseDiTPlanner.from_checkpoint`` file plus the optimiser, schedule, sampling-generator and
RNG state), ``tensorboard/`` (losses, learning rate) and ``log.jsonl`` (one line per step).
``--resume`` continues from ``checkpoints/latest`` with the same batches and noise draws as an
uninterrupted run.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import yaml
from tqdm import tqdm

from ..common.checkpoint import capture_rng_state, latest_checkpoint, restore_rng_state, resume_payload, save_rotating
from ..common.config import YamlConfig
from ..common.device import resolve_device
from ..common.training import NonFiniteGuard, RunLog
from ..data.demo_frames import DemoFrame, load_demo_frames
from .instruction import InstructionEncoder
from .planner import PlanBatch, PoseDiTPlanner, PoseDiTPlannerConfig, collate_plans
from .scene_encoder import SceneObjects, objects_from_cloud


@dataclass
class FitConfig(YamlConfig):
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100  # linear warm-up, then cosine decay to zero
    grad_clip: float = 1.0
    seed: int = 0


def make_batch(planner: PoseDiTPlanner, frames: Sequence[DemoFrame], generator: torch.Generator) -> PlanBatch:
    c = planner.config.condition
    scenes: list[SceneObjects] = [
        objects_from_cloud(f.xyz, f.rgb, f.instance_ids, c.points_per_object, c.max_objects, generator)
        for f in frames
    ]
    text = planner.embed_instructions([f.instruction for f in frames])
    return collate_plans(scenes, text, [f.remaining for f in frames]).to(planner.device)


class PlannerFit:
    """The optimisation state of ``fit``: AdamW over the planner's trainable parameters with linear warm-up
    and cosine decay (a step whose loss or gradients are not finite is skipped: ``NonFiniteGuard``),
    the generator that draws samples and object points, and the step count. ``state_dict`` /
    ``load_state_dict`` make a run resumable; the loss's own noise comes from the global torch RNG,
    which the checkpoint captures beside it. ``batch_loss`` is the Pose-DiT loss on demo frames; the
    3D-MoE stages override it for their own samples."""

    def __init__(self, planner: torch.nn.Module, frames: Sequence[Any], config: FitConfig | None = None) -> None:
        if not frames:
            raise ValueError("no samples to fit")
        self.planner, self.frames = planner, frames
        self.config = config = config or FitConfig()
        self.generator = torch.Generator().manual_seed(config.seed)
        self.trainable = [p for p in planner.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.guard = NonFiniteGuard()
        self.step = 0

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    @property
    def lr(self) -> float:
        return self.lr_schedule.get_last_lr()[0]

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    def batch_loss(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        return self.planner.loss(make_batch(self.planner, samples, self.generator))

    def run_step(self) -> dict[str, float]:
        """One optimiser step on a random batch of samples; returns its losses."""
        pick = torch.randint(len(self.frames), (self.config.batch_size,), generator=self.generator).tolist()
        losses = self.batch_loss([self.frames[i] for i in pick])
        self.optimizer.zero_grad()
        losses["loss"].backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, self.config.grad_clip))
        if self.guard.allows(losses["loss"].item(), grad_norm, self.step + 1):
            self.optimizer.step()
        self.lr_schedule.step()
        self.step += 1
        return {name: value.item() for name, value in losses.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "lr_schedule": self.lr_schedule.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.generator.set_state(state["generator"])


def fit(
    planner: PoseDiTPlanner,
    frames: Sequence[DemoFrame],
    config: FitConfig | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[float]:
    """Train ``planner`` on ``frames`` with AdamW; returns the loss of every step.

    ``on_step(step, losses)`` is called after each step (counted from 0), for logging.
    """
    run = PlannerFit(planner, frames, config)
    planner.train()
    history = []
    while not run.done:
        losses = run.run_step()
        history.append(losses["loss"])
        if on_step is not None:
            on_step(run.step - 1, losses)
    planner.eval()
    return history


@dataclass
class PoseDiTTrainConfig(YamlConfig):
    """``pointmoe train pose-dit``: YAML keys are these fields (see config/train/pose_dit_tiny.yaml)."""

    demos: str = ""  # folder written by `pointmoe sim demos` (or --demos)
    planner: PoseDiTPlannerConfig = field(default_factory=PoseDiTPlannerConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    output_dir: str = "runs/pose_dit"
    checkpoint_every: int = 100  # steps; the last step is always saved
    keep_last: int = 3  # step checkpoints kept; 0 keeps all
    log_every: int = 10  # steps between TensorBoard scalars
    device: str = "auto"  # "auto": CUDA when available
    export: str = ""  # also write the final weights here as .safetensors (PoseDiTPlanner.export)


def resume_fit(run: PlannerFit, checkpoint_dir: Path, device: torch.device) -> dict[str, Any]:
    """Put ``run`` and the RNGs back where ``checkpoints/latest`` left them; returns the payload,
    whose weights the caller loads into its planner."""
    payload = resume_payload(checkpoint_dir, map_location=device)
    run.load_state_dict(payload["fit"])
    restore_rng_state(payload["rng"])
    return payload


@dataclass
class CheckpointSchedule:
    """How a checkpointed run writes: checkpoints every ``checkpoint_every`` steps (and after the
    last), keeping ``keep_last`` of them, TensorBoard scalars every ``log_every`` steps."""

    checkpoint_every: int
    keep_last: int
    log_every: int


def run_checkpointed(run: PlannerFit, output_dir: Path, train_config: dict[str, Any],
                     weights: Callable[[], dict[str, Any]], schedule: CheckpointSchedule, desc: str) -> float:
    """Step ``run`` until done, writing ``train_config.yaml``, ``log.jsonl`` (one line per step),
    ``tensorboard/`` and ``checkpoints/`` (``weights()`` beside the fit and RNG state) into
    ``output_dir``, with a tqdm bar; returns the last step's loss."""
    checkpoint_dir = output_dir / "checkpoints"
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "train_config.yaml").write_text(yaml.safe_dump(train_config, sort_keys=False))
    log = RunLog(output_dir)

    def save() -> None:
        payload = {**weights(), "step": run.step, "fit": run.state_dict(), "rng": capture_rng_state(),
                   "train_config": train_config}
        epoch = run.step * run.config.batch_size // len(run.frames)
        save_rotating(checkpoint_dir, payload, run.step, epoch, schedule.keep_last)

    progress = tqdm(total=run.config.steps, initial=run.step, dynamic_ncols=True, desc=desc)
    last_loss = math.nan
    run.planner.train()
    try:
        while not run.done:
            lr = run.lr  # the rate this step uses
            losses = run.run_step()
            last_loss = losses["loss"]
            log.record({"step": run.step, **losses, "lr": lr}, flush=False)
            progress.update(1)
            progress.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
            if run.step % schedule.log_every == 0 or run.done:
                log.scalars({**{f"loss/{name}": value for name, value in losses.items()}, "lr": lr}, run.step)
                log.flush()
            if (schedule.checkpoint_every and run.step % schedule.checkpoint_every == 0) or run.done:
                save()
    finally:
        progress.close()
        log.close()
    run.planner.eval()
    return last_loss


def train(config: PoseDiTTrainConfig, resume: bool = False,
          instruction_encoder: InstructionEncoder | None = None) -> dict[str, Any]:
    """Run (or continue) training; returns the summary the CLI prints with ``--json``."""
    if not config.demos:
        raise ValueError("no demos: give --demos DIR or demos: in the config")
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    device = torch.device(resolve_device(config.device))
    torch.manual_seed(config.fit.seed)
    frames = load_demo_frames(config.demos)
    planner = PoseDiTPlanner(config.planner, instruction_encoder).to(device)
    run = PlannerFit(planner, frames, config.fit)
    resumed_from = None
    if resume:
        planner.load_state_dict(resume_fit(run, checkpoint_dir, device)["state_dict"])
        resumed_from = run.step

    schedule = CheckpointSchedule(config.checkpoint_every, config.keep_last, config.log_every)
    last_loss = run_checkpointed(run, output_dir, config.to_dict(), planner.checkpoint_payload, schedule,
                                 "train pose-dit")
    summary = {
        "ok": True, "task": "pose-dit", "output_dir": str(output_dir), "steps": run.step,
        "resumed_from": resumed_from, "frames": len(frames), "final_loss": last_loss,
        "checkpoint": str(latest_checkpoint(checkpoint_dir)), "seconds": round(time.perf_counter() - started, 1),
    }
    if config.export:
        summary["export"] = str(planner.export(config.export))
    print(f"trained {run.step} steps on {len(frames)} demo frames in {summary['seconds']} s, final loss "
          f"{last_loss:.4f}, checkpoint {summary['checkpoint']}")
    return summary


def train_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``pointmoe train pose-dit``: the parsed CLI arguments of :mod:`pointmoe_core.train_cli`."""
    config = PoseDiTTrainConfig.load(args.config, args.overrides)
    if args.demos:
        config.demos = args.demos
    return train(config, resume=args.resume)
