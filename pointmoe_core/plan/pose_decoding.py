"""What both planners do with Pose-DiT's samples and their targets: plans padded into tensors,
samples decoded into ``PoseSequence``s and snapped onto the perceived objects, the object
grounding targets and loss, and the noise scheduler a config names.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.pose_sequence import PoseSequence, decode_steps, encode_steps, unnormalize_xyz
from .ddpm import DDPMScheduler
from .pose_dit import plan_lengths
from .rectified_flow import NoiseScheduler, RectifiedFlow

SCHEDULERS = ("rectified_flow", "ddpm")


def make_scheduler(config: Any) -> NoiseScheduler:
    """The scheduler ``config.scheduler`` names, set up by ``config.flow`` or ``config.ddpm`` (a
    ``PoseDiTPlannerConfig`` or ``MoEPlannerConfig``)."""
    return RectifiedFlow(config.flow) if config.scheduler == "rectified_flow" else DDPMScheduler(config.ddpm)


def pad_plans(plans: Sequence[PoseSequence]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded plans padded to the longest: poses (B, T, 2, 9) and step mask (B, T)."""
    encoded = [encode_steps(plan) for plan in plans]
    t_max = max(len(p) for p in encoded)
    poses = torch.zeros(len(encoded), t_max, *encoded[0].shape[1:])
    step_mask = torch.zeros(len(encoded), t_max, dtype=torch.bool)
    for i, p in enumerate(encoded):
        poses[i, : len(p)], step_mask[i, : len(p)] = p, True
    return poses, step_mask


def decode_plan(poses: torch.Tensor, stop: torch.Tensor, threshold: float, **metadata: Any) -> PoseSequence:
    """The first sampled plan (poses (B, T, 2, 9), stop probabilities (B, T)) cut at its stop flag.

    Each step's score is the probability that the plan has not ended before it; ``metadata``
    fills ``instruction``, ``planner`` and ``planning_time``.
    """
    n = int(plan_lengths(stop, threshold)[0])
    not_ended = torch.cat([stop.new_ones(1, 1), torch.cumprod(1 - stop, dim=1)[:, :-1]], dim=1)
    return decode_steps(poses[0, :n], not_ended[0, :n], **metadata)


def snap_to_objects(plan: PoseSequence, object_locations: torch.Tensor | np.ndarray, radius: float,
                    first_scores: torch.Tensor | np.ndarray | None = None) -> PoseSequence:
    """``plan`` with each pick and place moved in xy onto the nearest object centre (object_locations
    (M, 6) in metres, centre first) when one lies within ``radius`` metres; height, rotation and
    scores are kept, and ``radius`` 0 changes nothing. ``first_scores`` (2, M), the planner's own
    pick and place scores of each object for the first step (its grounding head or object
    pointer), choose among the objects within the radius for that step instead of the distance.

    Grasp refinement outside the network, as a robot stack does with the objects it perceives: the
    tiny planners choose the right object far more often than they land within a block's
    half-width of its centre (benchmarks/RESULTS.md), and suction off the centre misses. Results
    with and without it are reported apart.
    """
    if radius <= 0 or len(object_locations) == 0:
        return plan
    centres = np.asarray(torch.as_tensor(object_locations)[:, :2].double().cpu())

    def snapped(xyz: tuple[float, ...], scores: np.ndarray | None) -> tuple[float, ...]:
        distance = np.linalg.norm(centres - np.asarray(xyz[:2]), axis=1)
        within = distance <= radius
        if not within.any():
            return xyz
        chosen = np.where(within, distance if scores is None else -scores, np.inf).argmin()
        return (*centres[chosen], xyz[2])

    first = None if first_scores is None else np.asarray(torch.as_tensor(first_scores).double().cpu())
    steps = []
    for i, step in enumerate(plan.steps):
        pick_scores, place_scores = first if first is not None and i == 0 else (None, None)
        steps.append(dataclasses.replace(step, pick_xyz=snapped(step.pick_xyz, pick_scores),
                                         place_xyz=snapped(step.place_xyz, place_scores)))
    return dataclasses.replace(plan, steps=steps)


def grounding_targets(poses: torch.Tensor, object_locations: torch.Tensor, object_mask: torch.Tensor,
                      radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For each plan's first pick and place (B, 2): the index of the object whose centre is nearest
    in xy, and whether it is within ``radius`` metres; beyond it, the smallest object whose xy box
    holds the pose (a spot in a 15 cm zone lies farther from its centre than from a block's).
    poses (B, T, 2, 9) encoded, object_locations (B, M, 6) and object_mask (B, M) as
    ``pad_scenes`` makes them."""
    first = unnormalize_xyz(poses[:, 0, :, :3])[..., :2]  # (B, pick|place, 2), metres
    offset = first[:, :, None] - object_locations[:, None, :, :2]  # (B, 2, M, 2)
    distance = offset.norm(dim=-1).masked_fill(~object_mask[:, None], float("inf"))
    nearest, target = distance.min(-1)
    half_size = object_locations[:, None, :, 3:5] / 2
    area = (half_size.prod(-1) * 4).expand_as(distance)
    inside = (offset.abs() <= half_size).all(-1) & object_mask[:, None]
    holding_area, holder = area.masked_fill(~inside, float("inf")).min(-1)
    near = nearest < radius
    return torch.where(near, target, holder), near | holding_area.isfinite()


def grounding_loss(logits: torch.Tensor, poses: torch.Tensor, object_locations: torch.Tensor,
                   object_mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Cross-entropy over the objects for the object under the first pick and the first place;
    ``logits`` (B, 2, M) score each object as "picked first" and "placed on first".

    The diffusion loss alone teaches *which* object to act on slowly: at high noise its signal
    is the spread of the plans, not which object each belongs to, and the tiny models stayed at
    the data set's average move. Pointing at the objects directly gives the condition tokens
    that distinction, which Pose-DiT then reads through cross-attention. A place in an empty
    area (LoHoRavens' "top left area") grounds nowhere and is left out.
    """
    target, grounded = grounding_targets(poses, object_locations, object_mask, radius)
    logits = logits.masked_fill(~object_mask[:, None], float("-inf"))
    if not grounded.any():
        return logits.new_zeros(())
    return F.cross_entropy(logits[grounded], target[grounded])
