"""Per-dataset segmentation scores of a trained checkpoint (``pointmoe eval seg``, and the
trainer's validation).

For every dataset: per-class IoU, mIoU, allAcc and the confusion matrix, on every original point
(predictions on the voxelised cloud are carried back through GridSample's ``inverse``, as
Pointcept's tester does). A dataset the model was trained on is scored over its valid classes
of the model's class table; any other dataset is zero-shot: its own class names go through the
text encoder and the language-guided head scores the points against them.

Datasets are given as ``KIND[:key=value,...]`` specs (:mod:`.datasets`); by default those the
checkpoint's training run validated on (``val_datasets`` and ``zero_shot_datasets``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pointmoe_core.data.sample import SegDataset
from pointmoe_core.data.transforms import PipelineConfig, collate
from pointmoe_core.seg.convert import load_segmentor
from pointmoe_core.seg.head import LanguageGuidedHead
from pointmoe_core.seg.model import PointMoESegmentor
from pointmoe_core.seg.text import TextEncoder

from ..common.checkpoint import load_checkpoint, resolve_checkpoint
from .datasets import DatasetEntry
from .distributed import DistributedContext
from .metrics import SegMetrics

MODEL_INPUT_KEYS = ("coord", "grid_coord", "feat", "offset", "grid_size")
EVAL_SHUFFLE_SEED = 0  # the backbone shuffles serialization orders even in eval; fix them per scene


@dataclass
class TrainedModel:
    model: PointMoESegmentor
    train_config: dict[str, Any]
    step: int
    path: Path


def load_trained(checkpoint: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """The model of a training checkpoint (file or directory) and the config it was trained with.

    The file's hash is checked; the model is built by ``seg.convert.load_segmentor``, the same
    loader ``Segmenter.from_checkpoint`` uses.
    """
    path = resolve_checkpoint(checkpoint)
    payload = load_checkpoint(path)
    train_config, step = payload.get("train_config", {}), int(payload.get("step", 0))
    del payload
    model = load_segmentor(path).to(device).eval()
    return TrainedModel(model, train_config, step, path)


class _FullResolutionScenes(Dataset):
    """Scene i through the dataset's eval transform, with its labels on every original point."""

    def __init__(self, dataset: SegDataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[dict[str, Any], np.ndarray]:
        index = self.indices[i]
        raw = self.dataset.load(index)
        sample = self.dataset.transform(raw, np.random.default_rng((self.dataset.seed, index)))
        return sample, raw["segment"]


def _scenes(dataset: SegDataset, context: DistributedContext, max_scenes: int | None,
            num_workers: int) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    count = len(dataset) if max_scenes is None else min(max_scenes, len(dataset))
    mine = range(context.rank, count, context.world_size)
    loader = DataLoader(_FullResolutionScenes(dataset, mine), batch_size=None, collate_fn=_as_is,
                        num_workers=num_workers, generator=torch.Generator())  # keeps the global RNG untouched
    yield from loader


def _as_is(item: Any) -> Any:
    """The loader's collate_fn: scenes stay numpy (the default would turn arrays into tensors)."""
    return item


@torch.no_grad()
def evaluate(
    model: PointMoESegmentor,
    datasets: Sequence[SegDataset],
    context: DistributedContext | None = None,
    text_encoder: TextEncoder | None = None,
    max_scenes: int | None = None,
    num_workers: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per dataset name: ``SegMetrics.summary()`` plus ``zero_shot`` (True when the model never
    trained on it). ``datasets`` must carry eval transforms (``DatasetEntry.build(train=False)``).
    Under DDP every rank scores its share of the scenes and the matrices are summed.
    """
    context = context or DistributedContext(0, 1, 0, next(model.parameters()).device)
    metrics = SegMetrics({d.name: d.class_names for d in datasets})
    zero_shot = {}
    was_training = model.training
    model.eval()
    for dataset in datasets:
        zero_shot[dataset.name] = dataset.name not in model.config.valid_classes
        class_mask = text = to_local = None
        if zero_shot[dataset.name]:
            if not isinstance(model.head, LanguageGuidedHead):
                raise ValueError(f"{dataset.name} was not trained on and a linear head cannot score new class names")
            text_encoder = text_encoder or TextEncoder(model.config.text)
            text = text_encoder.encode(dataset.class_names).to(context.device)
        else:
            class_mask = model.class_mask_for([dataset.name])
            valid = list(model.config.valid_classes[dataset.name])
            to_local = torch.full((len(model.config.class_names),), -1, dtype=torch.long)
            to_local[valid] = torch.arange(len(valid))
        for sample, segment in _scenes(dataset, context, max_scenes, num_workers):
            batch = collate([sample])
            inputs = {key: to_device(batch[key], context.device) for key in MODEL_INPUT_KEYS}
            generator = torch.Generator().manual_seed(EVAL_SHUFFLE_SEED)  # per scene: independent of the order
            logits = model(inputs, class_mask=class_mask, text_embedding=text, generator=generator)
            pred = logits.argmax(-1).cpu()
            if to_local is not None:
                pred = to_local[pred]
            metrics.update(dataset.name, pred[batch["inverse"]], segment)
    metrics.all_reduce()
    model.train(was_training)
    return {name: {**result, "zero_shot": zero_shot[name]} for name, result in metrics.summary().items()}


def to_device(value: Any, device: torch.device) -> Any:
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value


def eval_datasets(entries: Sequence[DatasetEntry], train_config: dict[str, Any]) -> list[SegDataset]:
    """Eval-mode datasets, voxelised at the grid size the model was trained with."""
    pipeline = PipelineConfig(grid_size=train_config.get("grid_size"))
    return [entry.build(train=False, pipeline=pipeline) for entry in entries]


def mean_miou(results: dict[str, dict[str, Any]], zero_shot: bool) -> float | None:
    values = [r["miou"] for r in results.values() if r["zero_shot"] == zero_shot and r["miou"] is not None]
    return float(np.mean(values)) if values else None


def format_results(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, result in results.items():
        kind = "zero-shot" if result["zero_shot"] else "seen"
        lines.append(f"{name} ({kind}, {result['points']} points): mIoU {_pct(result['miou'])}  "
                     f"allAcc {_pct(result['allacc'])}")
        lines += [f"  {cls:<24} {_pct(iou)}" for cls, iou in result["iou"].items()]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"
