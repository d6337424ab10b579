"""What both planners do with Pose-DiT's samples and their targets: plans padded into tensors,
samples decoded into ``PoseSequence``s and snapped onto the perceived objects, the object
grounding targets and loss, and the noise scheduler a config names.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from ..common.pose_sequence import PoseSequence, decode_steps, encode_steps, unnormalize_xyz
from ..common.workspace import yaw_quat
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


def snap_to_chosen(plan: PoseSequence, pick: tuple[Sequence[float], float],
                   place: tuple[Sequence[float], float]) -> PoseSequence:
    """``plan`` with its first pick and place on the objects a hard object pointer chose: each
    ``(centre xy, yaw)`` as ``instances.footprint`` measures them on the cloud. Ravens' suction
    keeps the object's pose relative to the gripper, so with the picked object's yaw as the pick
    yaw and the target's as the place yaw the block lands turned as what it goes on, which a
    stack on a zone must be (Ravens matches cubes to 15 degrees, modulo 90). Heights and later
    steps are kept: Ravens' primitives come down until contact."""
    if not len(plan):
        return plan
    step = plan.steps[0]
    first = dataclasses.replace(step, pick_xyz=(*pick[0], step.pick_xyz[2]), pick_quat=yaw_quat(pick[1]),
                                place_xyz=(*place[0], step.place_xyz[2]), place_quat=yaw_quat(place[1]))
    return dataclasses.replace(plan, steps=[first, *plan.steps[1:]])


def ground_points(xy: torch.Tensor, object_locations: torch.Tensor, object_mask: torch.Tensor,
                  radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For points xy (B, R, 2) in metres: the index of the object whose centre is nearest in xy,
    and whether it is within ``radius`` metres; beyond it, the smallest object whose xy box holds
    the point (a spot in a 15 cm zone lies farther from its centre than from a block's).
    object_locations (B, M, 6) and object_mask (B, M) as ``pad_scenes`` makes them."""
    offset = xy[:, :, None] - object_locations[:, None, :, :2]  # (B, R, M, 2)
    distance = offset.norm(dim=-1).masked_fill(~object_mask[:, None], float("inf"))
    nearest, target = distance.min(-1)
    half_size = object_locations[:, None, :, 3:5] / 2
    area = (half_size.prod(-1) * 4).expand_as(distance)
    inside = (offset.abs() <= half_size).all(-1) & object_mask[:, None]
    holding_area, holder = area.masked_fill(~inside, float("inf")).min(-1)
    near = nearest < radius
    return torch.where(near, target, holder), near | holding_area.isfinite()


def grounding_targets(poses: torch.Tensor, object_locations: torch.Tensor, object_mask: torch.Tensor,
                      radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For each plan's first pick and place (B, 2): ``ground_points`` of them; poses (B, T, 2, 9)
    encoded."""
    first = unnormalize_xyz(poses[:, 0, :, :3])[..., :2]  # (B, pick|place, 2), metres
    return ground_points(first, object_locations, object_mask, radius)


def grounding_sets(first_steps: Sequence[np.ndarray | None], target: torch.Tensor, grounded: torch.Tensor,
                   object_locations: torch.Tensor, object_mask: torch.Tensor, radius: float) -> torch.Tensor:
    """(B, 2, M) boolean: the objects the first pick may be on, and those the first place may be on
    once the demo's own pick object is picked. ``first_steps`` holds per plan every step that could
    come first ((K, pick|place, xyz) metres, ``DemoFrame.first_steps``) or None; ``target`` and
    ``grounded`` (B, 2) are ``grounding_targets`` of the demo's own step, which is always in."""
    sets = torch.zeros(*target.shape, object_mask.shape[1], dtype=torch.bool, device=target.device)
    sets.scatter_(2, target[..., None], grounded[..., None])
    for b, options in enumerate(first_steps):
        if options is None or not len(options):
            continue
        xy = torch.as_tensor(options[..., :2], dtype=object_locations.dtype, device=target.device).reshape(1, -1, 2)
        found, on_object = (x.view(-1, 2) for x in ground_points(xy, object_locations[b:b + 1],
                                                                 object_mask[b:b + 1], radius))
        sets[b, 0, found[on_object[:, 0], 0]] = True
        if grounded[b, 0]:
            after_demo_pick = on_object.all(1) & (found[:, 0] == target[b, 0])
            sets[b, 1, found[after_demo_pick, 1]] = True
    return sets


def grounding_loss(logits: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
    """Minus the log of the probability the pointer gives to the allowed objects (``sets`` (B, 2, M),
    ``grounding_sets``) for the first pick and the first place; ``logits`` (B, 2, M) score each
    object as "picked first" and "placed on first", padding at -inf.

    The diffusion loss alone teaches *which* object to act on slowly: at high noise its signal
    is the spread of the plans, not which object each belongs to, and the tiny models stayed at
    the data set's average move. Pointing at the objects directly gives the condition tokens
    that distinction, which Pose-DiT then reads through cross-attention. With one allowed object
    this is the cross-entropy; with several ("the blocks" of a colour, any free bowl that matches)
    the pointer may put its mass on any of them, as the oracle's own choice among them is
    arbitrary. A place in an empty area (LoHoRavens' "top left area") grounds nowhere and is left
    out.
    """
    rows = sets.any(-1)
    if not rows.any():
        return logits.new_zeros(())
    scores = logits[rows]
    return (scores.logsumexp(-1) - scores.masked_fill(~sets[rows], float("-inf")).logsumexp(-1)).mean()
