"""The three training stages of the 3D-MoE planner, on oracle demos from the simulator.

Ma et al., "3D-MoE" (arXiv 2501.16698) train in stages; here each is
``pointmoe train planner --stage N --config FILE --demos DIR [--resume] [key=value ...]``:

1. **3D-language alignment**: the LLM is frozen and only the scene tokenizer (PointNet++, spatial
   transformer, projector) learns, from scene captions ("there is a red block and a green bowl. a
   red block is left of a green bowl.") with the LM loss on the caption tokens.
2. **MoE conversion and instruction tuning**: each MLP is copied into ``planner.moe.num_experts``
   experts (0 keeps the LLM dense, the baseline), LoRA adapters go on the attention and expert
   projections, and adapters, routers and projector learn from simulator questions (count,
   colour, spatial relation) and the task's next step in words, with the LM loss plus the
   load-balance loss.
3. **Pose diffusion**: the LLM and its adapters are frozen; Pose-DiT learns to denoise the steps
   that remain from each demo frame (``data.demo_frames.load_demo_frames``' semantics) while
   cross-attending to the LLM's hidden states of the planning prompt. Since nothing upstream of
   Pose-DiT trains, each frame's condition is computed once (``condition_draws`` draws of its
   object points) before the first step, which makes a step as cheap as the MiniLM Pose-DiT's
   instead of one LLM forward per sample.

Stage N starts from stage N-1's exported planner (``stageN.init_from``, by default
``{output_dir}/stage{N-1}``) and writes ``{output_dir}/stage{N}`` the way ``pointmoe train
pose-dit`` does (``checkpoints/`` with resume, ``tensorboard/``, ``log.jsonl``, tqdm), plus the
planner folder ``planner/`` (``MoEPlanner.save``) that the next stage, ``pointmoe eval planner``,
``pointmoe sim eval --planner`` and ``planner_node`` read. Episodes whose seed is a multiple of
``heldout_every`` are held out of every stage, for ``pointmoe eval planner``.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..common.checkpoint import latest_checkpoint
from ..common.config import YamlConfig
from ..common.device import resolve_device
from ..common.pose_sequence import PoseSequence
from ..data.demo_frames import DemoFrame, iter_demo_frames
from ..data.sim_demos import SIM_CLASS_SETS
from ..sim.language import QA, ObjectFact, caption, demo_objects, next_step_qa, question_answers
from .instances import segmented_instances
from .lora import trainable_parameter_report
from .moe_planner import STAGES, MoEPlanner, MoEPlannerConfig, PoseCondition
from .moe_planner_files import EXPORT_DIR
from .prompt import PromptTemplate
from .train_pose_dit import (
    CheckpointSchedule,
    FitConfig,
    PlannerFit,
    resume_fit,
    run_checkpointed,
)

STAGE_CHECKPOINT_FORMAT = "pointmoe-3d-moe-stage"
Perception = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (xyz, rgb) -> per-point instance ids


@dataclass
class SceneFrame:
    """A demo frame with what language is generated from: the objects, and the next step."""

    cloud: DemoFrame
    objects: list[ObjectFact]
    episode_seed: int
    frame: int
    pick_xyz: np.ndarray
    place_xyz: np.ndarray


@dataclass
class TextSample:
    """A prompt about a frame's cloud and the answer the LLM should give."""

    cloud: DemoFrame
    prompt: str
    answer: str
    kind: str  # "caption", or the question kind of sim.language ("count", ..., "next step")


def load_scene_frames(demo_dir: str | Path, perceive: Perception | None = None,
                      perceived: Callable[[int], bool] = lambda seed: True) -> list[SceneFrame]:
    """Every demo frame with steps left to do, with its object list (demos need object metadata).

    Objects are the simulator's bodies, or with ``perceive`` ``(xyz, rgb) -> instance ids`` the
    instances found in the cloud of each episode whose seed ``perceived`` accepts. Only object
    points are kept: the planner reads nothing else, and a table of ~35k points per frame would not
    fit in memory for thousands of frames."""
    frames, found = [], iter_demo_frames(demo_dir)
    if perceive is not None:
        found = tqdm(found, desc="segmenting demo frames", unit="frame")
    for entry, demo, k, cloud in found:
        ids = cloud.instance_ids
        if perceive is not None and perceived(int(entry["seed"])):
            ids = perceive(cloud.xyz, cloud.rgb)
        keep = ids >= 0
        cloud = replace(cloud, xyz=cloud.xyz[keep], rgb=cloud.rgb[keep], instance_ids=ids[keep])
        frames.append(SceneFrame(cloud, demo_objects(demo, k), int(entry["seed"]), k, demo["pick_xyz"][k],
                                 demo["place_xyz"][k]))
    return frames


def split_episodes(frames: Sequence[SceneFrame], heldout_every: int) -> tuple[list[SceneFrame], list[SceneFrame]]:
    """(training, held-out) frames; an episode is held out when its seed is a multiple of
    ``heldout_every`` (0: none is), so the split does not depend on which episodes were written."""
    heldout = [f for f in frames if is_heldout(f.episode_seed, heldout_every)]
    return [f for f in frames if not is_heldout(f.episode_seed, heldout_every)], heldout


def is_heldout(seed: int, heldout_every: int) -> bool:
    return bool(heldout_every) and seed % heldout_every == 0


def _frame_rng(seed: int, frame: SceneFrame) -> np.random.Generator:
    # per frame, so a frame's language does not depend on which other frames were loaded
    return np.random.default_rng((seed, frame.episode_seed, frame.frame))


def caption_samples(frames: Sequence[SceneFrame], template: PromptTemplate, per_frame: int,
                    seed: int = 0) -> list[TextSample]:
    """Stage 1: ``per_frame`` captions of each frame (different relations picked each time)."""
    samples = []
    for frame in frames:
        rng = _frame_rng(seed, frame)
        samples += [TextSample(frame.cloud, template.caption(), caption(frame.objects, rng), "caption")
                    for _ in range(per_frame)]
    return samples


def question_samples(frames: Sequence[SceneFrame], template: PromptTemplate, per_frame: int,
                     seed: int = 0) -> list[TextSample]:
    """Stage 2 (and the held-out evaluation): up to ``per_frame`` questions about each frame and
    the next-step question of its task."""
    samples = []
    for frame in frames:
        qas: list[QA] = question_answers(frame.objects, _frame_rng(seed, frame), per_frame)
        qas.append(next_step_qa(frame.objects, frame.cloud.instruction, frame.pick_xyz, frame.place_xyz))
        samples += [TextSample(frame.cloud, template.question(qa.question), qa.answer, qa.kind) for qa in qas]
    return samples


@dataclass
class ConditionedFrame:
    """A stage-3 sample whose LLM condition is already computed (a batch of one, on the CPU)."""

    condition: PoseCondition
    remaining: PoseSequence
    first_steps: np.ndarray | None = None  # DemoFrame.first_steps


def condition_frames(planner: MoEPlanner, frames: Sequence[DemoFrame], draws: int, batch_size: int,
                     generator: torch.Generator) -> list[ConditionedFrame]:
    """Each frame's Pose-DiT condition for ``draws`` draws of its object points, batched."""
    jobs = [frame for frame in frames for _ in range(draws)]
    out = []
    for start in tqdm(range(0, len(jobs), batch_size), desc="stage 3: LLM conditions", unit="batch"):
        batch = jobs[start:start + batch_size]
        scenes = [planner.scene_objects(f.xyz, f.rgb, f.instance_ids, generator) for f in batch]
        rows = planner.condition(scenes, [f.instruction for f in batch]).to("cpu").unbatch()
        out += [ConditionedFrame(row, frame.remaining, frame.first_steps) for row, frame in zip(rows, batch)]
    return out


class StageFit(PlannerFit):
    """``PlannerFit`` with a 3D-MoE stage's loss: LM loss on ``TextSample``s (stages 1, 2), or
    Pose-DiT's loss on ``ConditionedFrame``s or ``DemoFrame``s (stage 3). Object points are
    re-drawn every time, except in a condition computed beforehand."""

    def batch_loss(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        planner: MoEPlanner = self.planner
        if isinstance(samples[0], ConditionedFrame):
            condition = PoseCondition.collate([s.condition for s in samples]).to(planner.device)
            return planner.pose_loss(condition, [s.remaining for s in samples], self.generator,
                                     [s.first_steps for s in samples])
        clouds = [s if isinstance(s, DemoFrame) else s.cloud for s in samples]
        scenes = [planner.scene_objects(c.xyz, c.rgb, c.instance_ids, self.generator) for c in clouds]
        if planner.stage == 3:
            condition = planner.condition(scenes, [c.instruction for c in clouds])
            return planner.pose_loss(condition, [c.remaining for c in clouds], self.generator,
                                     [c.first_steps for c in clouds])
        return planner.lm_loss(scenes, [s.prompt for s in samples], [s.answer for s in samples])


@dataclass
class StageConfig(YamlConfig):
    fit: FitConfig = field(default_factory=FitConfig)
    output_dir: str = ""  # default: {output_dir}/stage{N}
    init_from: str = ""  # default: the previous stage's output folder (stage 1: a fresh planner)
    export: str = ""  # also write the planner here, with hash sidecars (what checkpoints/ ships)
    # stage 3: also start the object pointer and Pose-DiT from init_from (fine-tuning a trained
    # planner on more tasks) instead of fresh ones
    init_head: bool = False


@dataclass
class PlannerTrainConfig(YamlConfig):
    """``pointmoe train planner``: YAML keys are these fields (see config/train/planner_*.yaml)."""

    demos: str = ""  # folder written by `pointmoe sim demos` (or --demos)
    planner: MoEPlannerConfig = field(default_factory=MoEPlannerConfig)
    stage1: StageConfig = field(default_factory=lambda: StageConfig(FitConfig(steps=1000, lr=1e-3)))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(FitConfig(steps=2000, lr=2e-4)))
    stage3: StageConfig = field(default_factory=lambda: StageConfig(FitConfig(steps=3000, lr=1e-3)))
    output_dir: str = "runs/planner"  # root of the stage folders
    heldout_every: int = 5  # episodes with seed % heldout_every == 0 are held out (0: none)
    captions_per_frame: int = 2
    questions_per_frame: int = 4  # plus the next-step question
    # stage 3: draws of each frame's object points whose LLM condition is computed once before
    # training; 0 computes it anew at every step (an LLM forward per sample)
    condition_draws: int = 1
    # stage 3: a segmentation checkpoint; each frame's objects are then the instances the planner
    # meets at test time (``segmentation_perception``: merged stacks, a block taken for part of a
    # bowl, misread strips) instead of the simulator's bodies. Empty: the bodies.
    perception: str = ""
    language_seed: int = 0
    checkpoint_every: int = 100  # steps; the last step is always saved
    keep_last: int = 2  # step checkpoints kept; 0 keeps all
    log_every: int = 10  # steps between TensorBoard scalars
    device: str = "auto"  # "auto": CUDA when available

    def stage(self, stage: int) -> StageConfig:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        return getattr(self, f"stage{stage}")

    def stage_dir(self, stage: int) -> Path:
        return Path(self.stage(stage).output_dir or f"{self.output_dir}/stage{stage}")

    def init_dir(self, stage: int) -> Path | None:
        given = self.stage(stage).init_from
        return Path(given) if given else (self.stage_dir(stage - 1) if stage > 1 else None)


def build_planner(config: PlannerTrainConfig, stage: int) -> MoEPlanner:
    """Stage ``stage``'s starting planner: fresh (stage 1) or the previous stage's, with a fresh
    Pose-DiT and object pointer unless ``init_head``; stage 2 converts and adapts its LLM."""
    init = config.init_dir(stage)
    if init is None:
        planner = MoEPlanner(config.planner)
    else:
        planner = MoEPlanner.from_checkpoint(init, config.planner, load_pose_dit=config.stage(stage).init_head)
    if stage == 2 and not planner.adapted:
        planner.adapt()
    planner.set_stage(stage)
    return planner


def stage_samples(config: PlannerTrainConfig, stage: int, frames: Sequence[SceneFrame],
                  planner: MoEPlanner) -> list[Any]:
    template = config.planner.prompt
    if stage == 1:
        return caption_samples(frames, template, config.captions_per_frame, config.language_seed)
    if stage == 2:
        return question_samples(frames, template, config.questions_per_frame, config.language_seed)
    clouds = [frame.cloud for frame in frames]
    if not config.condition_draws:
        return clouds
    # its own seed, so the conditions (and the fit's generator) are the same after a resume
    generator = torch.Generator().manual_seed(config.stage3.fit.seed + 1)
    return condition_frames(planner, clouds, config.condition_draws, config.stage3.fit.batch_size, generator)


def segmentation_perception(seg_checkpoint: str | Path) -> Perception:
    """``(xyz, rgb) -> instance ids`` as a planner without ground truth finds them: the
    checkpoint's coarse tabletop classes, clustered (``instances.segmented_instances``)."""
    from ..seg.segmenter import Segmenter

    segmenter = Segmenter.from_checkpoint(seg_checkpoint)
    vocabulary = SIM_CLASS_SETS["coarse"]
    if not set(vocabulary) <= set(segmenter.config.class_names):
        raise ValueError(f"{seg_checkpoint} lacks some of the tabletop classes {vocabulary}")
    return lambda xyz, rgb: segmented_instances(segmenter, xyz, rgb, vocabulary)


def train(config: PlannerTrainConfig, stage: int, resume: bool = False) -> dict[str, Any]:
    """Run (or continue) one stage; returns the summary the CLI prints with ``--json``."""
    if not config.demos:
        raise ValueError("no demos: give --demos DIR or demos: in the config")
    started = time.perf_counter()
    output_dir = config.stage_dir(stage)
    checkpoint_dir = output_dir / "checkpoints"
    device = torch.device(resolve_device(config.device))
    fit = config.stage(stage).fit
    torch.manual_seed(fit.seed)
    perceive = segmentation_perception(config.perception) if stage == 3 and config.perception else None
    # training only counts the held-out frames: they keep their bodies instead of being segmented
    frames, heldout = split_episodes(
        load_scene_frames(config.demos, perceive, lambda seed: not is_heldout(seed, config.heldout_every)),
        config.heldout_every)
    planner = build_planner(config, stage).to(device)
    samples = stage_samples(config, stage, frames, planner)
    run = StageFit(planner, samples, fit)
    resumed_from = None
    if resume:
        planner.load_trained_state(resume_fit(run, checkpoint_dir, device)["weights"])
        resumed_from = run.step

    def weights() -> dict[str, Any]:
        return {"format": STAGE_CHECKPOINT_FORMAT, "stage": stage, "weights": planner.trained_state()}

    schedule = CheckpointSchedule(config.checkpoint_every, config.keep_last, config.log_every)
    last_loss = run_checkpointed(run, output_dir, {**config.to_dict(), "stage_run": stage}, weights, schedule,
                                 f"train planner stage {stage}")
    exported = planner.save(output_dir / EXPORT_DIR)
    if config.stage(stage).export:
        exported = planner.export(config.stage(stage).export)
    summary = {
        "ok": True, "task": "planner", "stage": stage, "output_dir": str(output_dir), "planner": str(exported),
        "steps": run.step, "resumed_from": resumed_from, "samples": len(samples), "train_frames": len(frames),
        "heldout_frames": len(heldout), "final_loss": last_loss, "parameters": trainable_parameter_report(planner),
        "checkpoint": str(latest_checkpoint(checkpoint_dir)), "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"stage {stage}: trained {run.step} steps on {len(samples)} samples in {summary['seconds']} s, final loss "
          f"{last_loss:.4f}, planner {exported}")
    return summary


def train_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``pointmoe train planner``: the parsed CLI arguments of :mod:`pointmoe_core.train_cli`."""
    if args.stage is None:
        raise ValueError(f"pointmoe train planner needs --stage, one of {STAGES}")
    config = PlannerTrainConfig.load(args.config, args.overrides)
    if args.demos:
        config.demos = args.demos
    return train(config, args.stage, resume=args.resume)
