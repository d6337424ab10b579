"""Segmentation loss of the point_moe fork: cross-entropy + Lovász-softmax, ignore index -1.

In multi-dataset training each point may only be scored against the classes of its own dataset
(its "valid classes"): the segmentation head already masks the other logits
(``seg.head.mask_logits``), so their probability is zero and a ScanNet point never competes with
nuScenes' "driveable surface". With the batch flattened, a class then only gathers errors from the
points that may take it, which is Lovász over the valid classes of each sample, as Pointcept
computes it (``per_image=False``, ``classes="present"``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pointmoe_core.data.sample import IGNORE_INDEX


def lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at errors sorted descending.

    ``fg_sorted`` (P, C) float: 1 where the point, in that column's error order, belongs to the
    class. Row i is ``J(first i+1 points) - J(first i points)`` with ``J(S) = |S| / |fg ∪ S|``
    for the errors S = (fg \\ S) ∪ (S \\ fg) counted as in Berman et al. 2018.
    """
    gts = fg_sorted.sum(0, keepdim=True)
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)


def lovasz_softmax(probs: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean over the classes present in ``target`` of the Lovász-softmax loss (Berman et al. 2018).

    ``probs`` (N, C) class probabilities, ``target`` (N,) class ids; ignored points are dropped.
    Returns 0 (with a gradient path) when nothing is labelled.
    """
    keep = target != ignore_index
    probs, target = probs[keep], target[keep]
    if target.numel() == 0:
        return probs.sum() * 0.0
    present = torch.unique(target)
    probs = probs[:, present]
    fg = (target[:, None] == present[None, :]).to(probs.dtype)
    errors = (fg - probs).abs()
    errors_sorted, order = errors.sort(dim=0, descending=True)
    grad = lovasz_grad(fg.gather(0, order))
    return (errors_sorted * grad).sum(0).mean()


@dataclass
class LossConfig:
    ce_weight: float = 1.0
    lovasz_weight: float = 1.0
    ignore_index: int = IGNORE_INDEX


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    config: LossConfig | None = None,
) -> dict[str, torch.Tensor]:
    """``{"loss", "ce", "lovasz"}`` for ``logits`` (N, C) and ``target`` (N,); computed in
    float32 whatever the autocast dtype of ``logits``."""
    config = config or LossConfig()
    logits = logits.float()
    labelled = target != config.ignore_index
    if labelled.any():
        ce = F.cross_entropy(logits[labelled], target[labelled])
    else:
        ce = logits.sum() * 0.0  # keeps the graph: DDP needs every rank's grads
    lovasz = lovasz_softmax(logits.softmax(-1), target, config.ignore_index)
    loss = config.ce_weight * ce + config.lovasz_weight * lovasz
    return {"loss": loss, "ce": ce.detach(), "lovasz": lovasz.detach()}
