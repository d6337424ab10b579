"""The Pose-DiT planner: cloud + instruction -> ``PoseSequence``.

Wires the pieces of this package together the way 3D-MoE's action head is used before the LLM
is attached: the cloud's instances become object tokens (``scene_encoder``), the instruction MiniLM tokens
(``instruction``), Pose-DiT denoises a plan of ``horizon`` steps
with the configured scheduler (rectified flow, or DDPM/DDIM for the ablation), the stop flags cut
it, and the poses are decoded to metres and quaternions inside the workspace. ``loss`` is the
training objective on a ``PlanBatch`` of demos.

Checkpoints are :mod:`pointmoe_core.common.checkpoint` files (atomic, hash-checked) whose payload
holds ``format`` ("pointmoe-pose-dit"), ``version``, the planner ``config`` dict and the
``state_dict`` (``checkpoint_payload``); the trainer adds its own state beside them, and
``PoseDiTPlanner.from_checkpoint`` reads a file or a checkpoint directory's ``latest``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..common.checkpoint import HASH_SUFFIX, load_checkpoint, sha256_file, verify_checkpoint
from ..common.config import YamlConfig
from ..common.pose_sequence import PoseSequence
from .ddpm import DDPMConfig
from .instruction import InstructionEncoder
from .pose_decoding import (
    SCHEDULERS,
    decode_plan,
    grounding_loss,
    grounding_sets,
    grounding_targets,
    make_scheduler,
    pad_plans,
    snap_to_objects,
)
from .pose_dit import PoseDiT, PoseDiTConfig, pose_dit_loss, sample_poses
from .rectified_flow import RectifiedFlowConfig
from .scene_encoder import ConditionEncoder, ConditionEncoderConfig, SceneObjects, objects_from_cloud, pad_scenes

PLANNER_NAME = "pose-dit"
CHECKPOINT_FORMAT = "pointmoe-pose-dit"
CHECKPOINT_VERSION = 1


@dataclass
class PoseDiTPlannerConfig(YamlConfig):
    model: PoseDiTConfig = field(default_factory=PoseDiTConfig)
    condition: ConditionEncoderConfig = field(default_factory=ConditionEncoderConfig)
    scheduler: str = "rectified_flow"  # "rectified_flow" | "ddpm"
    flow: RectifiedFlowConfig = field(default_factory=RectifiedFlowConfig)
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)
    horizon: int = 8  # steps sampled per plan before the stop flag cuts it
    stop_weight: float = 1.0  # weight of the stop-flag BCE in the loss
    stop_threshold: float = 0.5
    # weight of the grounding loss: which object token the first pick and place are at
    grounding_weight: float = 1.0
    grounding_radius: float = 0.05  # metres (xy): a pose farther from every object grounds nowhere
    snap_radius: float = 0.0  # metres: ``snap_to_objects`` after sampling; 0 = the network's poses as they are

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.model.cond_dim != self.condition.hidden_size:
            raise ValueError(f"model.cond_dim ({self.model.cond_dim}) must equal condition.hidden_size "
                             f"({self.condition.hidden_size})")


@dataclass
class PlanBatch:
    """Demos padded to a batch: plans (B, T, 2, 9) + step mask, objects, instruction tokens."""

    poses: torch.Tensor
    step_mask: torch.Tensor
    object_points: torch.Tensor
    object_locations: torch.Tensor
    object_mask: torch.Tensor
    text_tokens: torch.Tensor
    text_mask: torch.Tensor

    def to(self, device: torch.device | str) -> "PlanBatch":
        return PlanBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def collate_plans(scenes: Sequence[SceneObjects], text: tuple[torch.Tensor, torch.Tensor],
                  plans: Sequence[PoseSequence]) -> PlanBatch:
    """Batch demos: ``text`` is the embedded instructions, tokens (B, L, E) and mask (B, L)."""
    return PlanBatch(*pad_plans(plans), *pad_scenes(scenes), *text)


class PoseDiTPlanner(nn.Module):
    """Condition encoder + Pose-DiT + noise scheduler, as one trainable planner."""

    def __init__(self, config: PoseDiTPlannerConfig | None = None,
                 instruction_encoder: InstructionEncoder | None = None) -> None:
        super().__init__()
        self.config = config = config or PoseDiTPlannerConfig()
        self.condition = ConditionEncoder(config.condition)
        # trained by ``grounding_loss``, used by nothing at planning time
        self.grounding_head = nn.Linear(config.condition.hidden_size, 2)
        self.model = PoseDiT(config.model)
        self.scheduler = make_scheduler(config)
        self.instruction_encoder = instruction_encoder or InstructionEncoder(config.condition.instruction)

    def embed_instructions(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) strings -> tokens (B, L, E) and mask (B, L) on the planner's device."""
        tokens, mask = self.instruction_encoder.encode(instructions)
        return tokens.to(self.device), mask.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def checkpoint_payload(self) -> dict[str, Any]:
        """What ``from_checkpoint`` needs: format tag, config dict and weights."""
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": self.config.to_dict(),
                "state_dict": self.state_dict()}

    def export(self, path: str | Path) -> Path:
        """Weights alone as ``.safetensors`` (config in its metadata) plus a ``.sha256`` sidecar:
        what ``checkpoints/`` ships and ``from_checkpoint`` reads back."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
        save_file(state, str(path), metadata={"format": CHECKPOINT_FORMAT, "version": str(CHECKPOINT_VERSION),
                                              "config": json.dumps(self.config.to_dict())})
        path.with_name(path.name + HASH_SUFFIX).write_text(f"{sha256_file(path)}  {path.name}\n")
        return path

    @staticmethod
    def _read_export(path: Path) -> dict[str, Any]:
        from safetensors import safe_open
        from safetensors.torch import load_file

        verify_checkpoint(path)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return {"format": meta.get("format"), "version": int(meta.get("version", 0)),
                "config": json.loads(meta.get("config", "{}")), "state_dict": load_file(str(path))}

    @classmethod
    def from_checkpoint(cls, path: str | Path, instruction_encoder: InstructionEncoder | None = None,
                        map_location: str | torch.device = "cpu") -> "PoseDiTPlanner":
        """The planner of an exported ``.safetensors`` file, a training checkpoint file, or the one a
        checkpoint directory's ``latest`` names (all hash-checked); returned in eval mode."""
        path = Path(path)
        payload = (cls._read_export(path) if path.suffix == ".safetensors"
                   else load_checkpoint(path, map_location=map_location))
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a Pose-DiT checkpoint (format {payload.get('format')!r}, "
                             f"expected {CHECKPOINT_FORMAT!r})")
        if payload["version"] > CHECKPOINT_VERSION:
            raise ValueError(f"{path} has Pose-DiT checkpoint version {payload['version']}; this install reads "
                             f"up to {CHECKPOINT_VERSION}")
        planner = cls(PoseDiTPlannerConfig.from_dict(payload["config"]), instruction_encoder)
        planner.load_state_dict(payload["state_dict"])
        return planner.to(map_location).eval()

    def loss(self, batch: PlanBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cond, cond_mask = self.condition(batch.object_points, batch.object_locations, batch.object_mask,
                                         batch.text_tokens, batch.text_mask)
        losses = pose_dit_loss(self.model, self.scheduler, batch.poses, batch.step_mask, cond, cond_mask,
                               self.config.stop_weight, generator,
                               self.condition.token_positions(batch.object_locations, batch.text_mask))
        if self.config.grounding_weight:
            object_tokens = cond[:, : batch.object_mask.shape[1]]
            radius = self.config.grounding_radius
            target, grounded = grounding_targets(batch.poses, batch.object_locations, batch.object_mask, radius)
            sets = grounding_sets((), target, grounded, batch.object_locations, batch.object_mask, radius)
            losses["grounding_loss"] = grounding_loss(self.grounding_head(object_tokens).transpose(1, 2), sets)
            losses["loss"] = losses["loss"] + self.config.grounding_weight * losses["grounding_loss"]
        return losses

    @torch.no_grad()
    def plan(
        self,
        xyz: torch.Tensor | np.ndarray,
        colors: torch.Tensor | np.ndarray,
        instance_ids: torch.Tensor | np.ndarray,
        instruction: str,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> PoseSequence:
        """Plan for one cloud: xyz (N, 3) in metres, colours (N, 3) (uint8 or [0, 1]), instance ids
        (N,), negative for background.

        ``num_steps`` overrides the scheduler's sampling steps (see ``decode_plan`` for the scores);
        ``config.snap_radius`` > 0 snaps the poses onto the objects (``snap_to_objects``).
        """
        start = time.perf_counter()
        c = self.config.condition
        scene = objects_from_cloud(xyz, colors, instance_ids, c.points_per_object, c.max_objects, generator)
        points, locations, object_mask = (x.to(self.device) for x in pad_scenes([scene]))
        text, text_mask = self.embed_instructions([instruction])
        cond, cond_mask = self.condition(points, locations, object_mask, text, text_mask)
        poses, stop = sample_poses(self.model, self.scheduler, cond, cond_mask, self.config.horizon,
                                   num_steps, generator, self.condition.token_positions(locations, text_mask))
        plan = decode_plan(poses, stop, self.config.stop_threshold, instruction=instruction, planner=PLANNER_NAME)
        scores = self.grounding_head(cond[0, : len(scene)]).T if self.config.grounding_weight else None
        plan = snap_to_objects(plan, scene.locations, self.config.snap_radius, scores)
        plan.planning_time = time.perf_counter() - start
        return plan

    def plan_with_answer(self, xyz: torch.Tensor | np.ndarray, colors: torch.Tensor | np.ndarray,
                         instance_ids: torch.Tensor | np.ndarray, instruction: str, num_steps: int | None = None,
                         generator: torch.Generator | None = None) -> tuple[PoseSequence, None]:
        """The plan, and no answer: this planner has no language model to say the next step in words."""
        return self.plan(xyz, colors, instance_ids, instruction, num_steps, generator), None
