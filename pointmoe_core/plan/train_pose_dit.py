"""Fit a Pose-DiT planner to oracle demonstrations written by ``pointmoe sim demos``.

Each demo episode holds the fused cloud before every step and the steps the oracle executed.
Because the planner re-plans after every executed step (closed loop), every frame is a training
sample: the cloud at frame k, the instruction, and the steps k..end still to do. Objects come
from the per-point PyBullet body ids, with the table and the robot left out as background, and
their points are re-sampled every time a frame is drawn so the model cannot memorise samples.

This is the bare loop (``fit``); checkpoints, resume and TensorBoard belong to the training CLI.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .config import YamlConfig
from .planner import PlanBatch, PoseDiTPlanner, collate_plans
from .pose_sequence import PoseSequence
from .scene_encoder import SceneObjects, objects_from_cloud

BACKGROUND_CLASSES = ("table", "robot")


@dataclass
class DemoFrame:
    """One training sample: a scene cloud, its instruction and the steps left to do from it."""

    xyz: np.ndarray  # (N, 3) float32, metres
    rgb: np.ndarray  # (N, 3) uint8
    instance_ids: np.ndarray  # (N,) body id, -1 for background
    instruction: str
    remaining: PoseSequence
    task: str = ""


def object_instances(label: np.ndarray, object_id: np.ndarray, class_names: Sequence[str],
                     background: Sequence[str] = BACKGROUND_CLASSES) -> np.ndarray:
    """Per-point instance ids for the scene encoder: the body id, or -1 on background classes
    and unlabelled points."""
    background_ids = [i for i, name in enumerate(class_names) if name in background]
    return np.where((label >= 0) & ~np.isin(label, background_ids), object_id, -1)


def load_demo_frames(demo_dir: str | Path, background: Sequence[str] = BACKGROUND_CLASSES) -> list[DemoFrame]:
    """Every frame that still has steps to do, from the episodes listed in ``index.json``."""
    demo_dir = Path(demo_dir)
    index = json.loads((demo_dir / "index.json").read_text())
    frames = []
    for entry in index["episodes"]:
        with np.load(demo_dir / entry["file"]) as demo:
            class_names = [str(name) for name in demo["class_names"]]
            instance_ids = object_instances(demo["label"], demo["object_id"], class_names, background)
            steps = [(demo["pick_xyz"][i], demo["pick_quat"][i], demo["place_xyz"][i], demo["place_quat"][i])
                     for i in range(len(demo["pick_xyz"]))]
            offsets = demo["frame_offsets"]
            for k in range(len(steps)):
                points = slice(offsets[k], offsets[k + 1])
                remaining = PoseSequence.from_ravens_actions(
                    [{"pose0": s[:2], "pose1": s[2:]} for s in steps[k:]], instruction=str(demo["instruction"]),
                    planner="oracle")
                frames.append(DemoFrame(demo["xyz"][points], demo["rgb"][points], instance_ids[points],
                                        str(demo["instruction"]), remaining, str(demo["task"])))
    return frames


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


def fit(
    planner: PoseDiTPlanner,
    frames: Sequence[DemoFrame],
    config: FitConfig | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[float]:
    """Train ``planner`` on ``frames`` with AdamW; returns the loss of every step.

    ``on_step(step, losses)`` is called after each step, for logging and checkpoints.
    """
    config = config or FitConfig()
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(planner.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    planner.train()
    history = []
    for step in range(config.steps):
        pick = torch.randint(len(frames), (config.batch_size,), generator=generator).tolist()
        losses = planner.loss(make_batch(planner, [frames[i] for i in pick], generator))
        optimizer.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(planner.parameters(), config.grad_clip)
        optimizer.step()
        lr_schedule.step()
        history.append(losses["loss"].item())
        if on_step is not None:
            on_step(step, {name: value.item() for name, value in losses.items()})
    planner.eval()
    return history
