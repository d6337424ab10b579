"""Semantic segmentation metrics: confusion matrix, per-class IoU, mIoU and allAcc, per dataset.

Conventions (Pointcept's tester): points labelled ``IGNORE_INDEX`` are not counted; a class's
IoU is ``TP / (TP + FP + FN)``; mIoU averages the classes that occur in the ground truth or the
predictions (a class absent from both has no defined IoU and is reported as None); allAcc is the
share of labelled points predicted right.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from pointmoe_core.data.sample import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(C, C) int64 counts, rows = ground truth, columns = prediction."""
    pred = torch.as_tensor(pred).reshape(-1).long().cpu()
    target = torch.as_tensor(target).reshape(-1).long().cpu()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if len(target) and (target.min() < 0 or target.max() >= num_classes or pred.min() < 0
                        or pred.max() >= num_classes):
        raise ValueError(f"class ids must lie in [0, {num_classes}) (or be {ignore_index} in the target)")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def scores(confusion: np.ndarray) -> dict[str, Any]:
    """``iou`` (C,) with NaN for classes absent from ground truth and predictions, ``miou``, ``allacc``."""
    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    labelled = confusion.sum()
    return {
        "iou": iou,
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "allacc": float(tp.sum() / labelled) if labelled else float("nan"),
    }


class SegMetrics:
    """Confusion matrices accumulated per dataset, each over that dataset's own class names."""

    def __init__(self, class_names: dict[str, Sequence[str]]) -> None:
        self.class_names = {name: tuple(classes) for name, classes in class_names.items()}
        self.confusion = {name: np.zeros((len(c), len(c)), np.int64) for name, c in self.class_names.items()}

    def update(self, dataset: str, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        self.confusion[dataset] += confusion_matrix(pred, target, len(self.class_names[dataset]))

    def all_reduce(self) -> None:
        """Sum the matrices over DDP ranks (every rank must call it, with the same datasets)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        for name, matrix in self.confusion.items():
            tensor = torch.from_numpy(matrix.copy())
            dist.all_reduce(tensor)
            self.confusion[name] = tensor.numpy()

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per dataset: mIoU, allAcc, IoU by class name (None where undefined), labelled point
        count and the confusion matrix as nested lists (JSON-ready)."""
        out = {}
        for name, matrix in self.confusion.items():
            result = scores(matrix)
            out[name] = {
                "miou": _finite_or_none(result["miou"]),
                "allacc": _finite_or_none(result["allacc"]),
                "iou": {c: _finite_or_none(v) for c, v in zip(self.class_names[name], result["iou"])},
                "points": int(matrix.sum()),
                "confusion": matrix.tolist(),
            }
        return out


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
