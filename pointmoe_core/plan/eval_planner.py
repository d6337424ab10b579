"""``pointmoe eval planner --checkpoint DIR --demos DIR``: 3D question answering on held-out scenes.

3D-MoE (arXiv 2501.16698) reports its LLM on 3D question answering; here the questions are the
simulator's (:mod:`pointmoe_core.sim.language`: count, colour, spatial relation, next step) on
the episodes the training stages held out (seed a multiple of ``heldout_every``), scored by exact
match of the greedy answer, overall and per question kind. The JSON also carries the MoE routing
report over these questions (:func:`.llm_moe.routing_report`): each layer's expert load for 3D
tokens and for text tokens, and whether a layer collapsed onto one expert; and how often the
object pointer (stage 3) points at the object under the demo's first pick and first place.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from ..common.device import resolve_device
from .llm_moe import reset_routing_stats, routing_report
from .moe_planner import MoEPlanner
from .pose_decoding import grounding_sets, grounding_targets, pad_plans
from .train_planner import (
    PlannerTrainConfig,
    SceneFrame,
    TextSample,
    load_scene_frames,
    question_samples,
    split_episodes,
)

SPLITS = ("heldout", "train", "all")
EXAMPLES_KEPT = 5  # question, expected and predicted answers shown in the JSON


def normalise(answer: str) -> str:
    """Exact match up to case and surrounding/repeated white space."""
    return " ".join(answer.lower().split())


@torch.no_grad()
def evaluate_questions(planner: MoEPlanner, samples: Sequence[TextSample], seed: int = 0) -> dict[str, Any]:
    """Exact-match accuracy overall and per kind, and the routing report over these questions."""
    if not samples:
        raise ValueError("no questions to evaluate")
    generator = torch.Generator().manual_seed(seed)  # which object points are drawn
    reset_routing_stats(planner.llm)
    correct: dict[str, list[bool]] = defaultdict(list)
    examples = []
    for sample in samples:
        cloud = sample.cloud
        predicted = planner.generate(planner.scene_objects(cloud.xyz, cloud.rgb, cloud.instance_ids, generator),
                                     sample.prompt)
        correct[sample.kind].append(normalise(predicted) == normalise(sample.answer))
        if len(examples) < EXAMPLES_KEPT:
            examples.append({"prompt": sample.prompt, "expected": sample.answer, "predicted": predicted})
    every = [ok for oks in correct.values() for ok in oks]
    return {
        "questions": len(every),
        "accuracy": sum(every) / len(every),
        "per_kind": {kind: {"questions": len(oks), "accuracy": sum(oks) / len(oks)}
                     for kind, oks in sorted(correct.items())},
        "routing": routing_report(planner.llm, reset=True),
        "examples": examples,
    }


@torch.no_grad()
def evaluate_grounding(planner: MoEPlanner, frames: Sequence[SceneFrame], seed: int = 0,
                       batch_size: int = 16) -> dict[str, Any]:
    """How often the object pointer's top object is one the first pick could be on, and its top
    place (after the demo's pick) one the first place could be on (``grounding_sets``: any of the
    demo's alternatives where it recorded them, else the demo's own object), over the frames whose
    pick (place) is on an object, overall and per task; ``chance`` is the mean of 1 / objects."""
    generator = torch.Generator().manual_seed(seed)
    hits: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"pick": [], "place": []})
    chance = []
    radius = planner.config.grounding_radius
    for start in range(0, len(frames), batch_size):
        batch = [frame.cloud for frame in frames[start:start + batch_size]]
        scenes = [planner.scene_objects(f.xyz, f.rgb, f.instance_ids, generator) for f in batch]
        condition = planner.condition(scenes, [f.instruction for f in batch])
        poses, _ = pad_plans([f.remaining for f in batch])
        target, grounded = grounding_targets(poses.to(planner.device), condition.object_locations,
                                             condition.object_mask, radius)
        logits = planner.pointer.logits(condition, target[:, 0].masked_fill(~grounded[:, 0], -1))
        sets = grounding_sets([f.first_steps for f in batch], target, grounded, condition.object_locations,
                              condition.object_mask, radius)
        right = sets.gather(2, logits.argmax(-1, keepdim=True)).squeeze(-1).tolist()
        for frame, row_right, row_grounded in zip(batch, right, grounded.tolist()):
            for role, r in (("pick", 0), ("place", 1)):
                if row_grounded[r]:
                    hits[frame.task][role].append(row_right[r])
        chance += (1 / condition.object_mask.sum(1)[grounded[:, 0]]).tolist()

    def accuracies(task_hits: dict[str, list[bool]]) -> dict[str, Any]:
        return {f"{role}_accuracy": sum(h) / len(h) if h else None for role, h in task_hits.items()} | {
            "grounded_frames": len(task_hits["pick"])}

    every = {role: [ok for task_hits in hits.values() for ok in task_hits[role]] for role in ("pick", "place")}
    return accuracies(every) | {"chance": sum(chance) / len(chance) if chance else None,
                                "per_task": {task: accuracies(h) for task, h in sorted(hits.items())}}


def _training_config(checkpoint: Path) -> PlannerTrainConfig:
    """The training run's config when ``checkpoint`` is a stage folder (or its planner/), else defaults."""
    for folder in (checkpoint, checkpoint.parent):
        if (folder / "train_config.yaml").is_file():
            data = yaml.safe_load((folder / "train_config.yaml").read_text())
            data.pop("stage_run", None)
            return PlannerTrainConfig.from_dict(data)
    return PlannerTrainConfig()


def run(args: argparse.Namespace) -> dict[str, Any]:
    checkpoint = Path(args.checkpoint)
    trained = _training_config(checkpoint)
    demos = args.demos or trained.demos
    if not demos:
        return {"ok": False, "error": "no demos: pass --demos DIR"}
    heldout_every = trained.heldout_every if args.heldout_every is None else args.heldout_every
    train_frames, heldout = split_episodes(load_scene_frames(demos), heldout_every)
    frames = {"heldout": heldout, "train": train_frames, "all": train_frames + heldout}[args.split]
    device = resolve_device(args.device)
    planner = MoEPlanner.from_checkpoint(checkpoint, map_location=device)
    samples = question_samples(frames, planner.config.prompt, trained.questions_per_frame, args.seed)
    if args.max_questions and len(samples) > args.max_questions:
        # evenly over the frames, which come task by task, so every task and kind stays in
        picks = np.linspace(0, len(samples) - 1, args.max_questions).round().astype(int)
        samples = [samples[i] for i in picks]
    result = evaluate_questions(planner, samples, args.seed)
    print(f"{args.split} QA exact match {result['accuracy']:.3f} over {result['questions']} questions: "
          + ", ".join(f"{kind} {r['accuracy']:.3f} ({r['questions']})" for kind, r in result["per_kind"].items()))
    grounding = evaluate_grounding(planner, frames, args.seed)
    print(f"{args.split} object pointer: first pick on an allowed object {grounding['pick_accuracy']}, first "
          f"place {grounding['place_accuracy']} over {grounding['grounded_frames']} frames (chance "
          f"{grounding['chance']})")
    return {"ok": True, "checkpoint": str(checkpoint), "demos": str(demos), "split": args.split,
            "heldout_every": heldout_every, **result, "grounding": grounding}
