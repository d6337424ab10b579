"""``pointmoe train seg --config FILE [key=value ...]``: multi-dataset Point-MoE training.

The recipe of the point_moe fork (configs/point_moe/*.py, Pointcept's trainer):

* batches from a shuffled concatenation of datasets (``MixedBatchSampler``), so a batch mixes
  datasets; the model never sees which dataset a cloud came from, the dataset name only picks
  its valid classes in the head and the loss. ``batch_from_single_dataset`` is the non-mixed
  baseline;
* cross-entropy + Lovász-softmax, plus the MoE load-balancing loss;
* AdamW with OneCycle (cosine, 5 % warm-up, div 10, final div 1000), and a separate peak
  learning rate for every parameter whose name contains "block" (Pointcept's ``param_dicts``:
  the transformer blocks train slower than stem, pooling and head);
* AMP on GPU, gradient clipping at norm 1.0, DDP through torchrun (NCCL on GPU, gloo on CPU).

Outputs in ``output_dir``: ``checkpoints/`` (see :mod:`.checkpoint`; every ``checkpoint_every``
steps and at each epoch end), ``tensorboard/`` (losses, lr, points/s, per-dataset mIoU, per-layer
expert load and routing entropy) and ``log.jsonl`` (one line per step, one per evaluation).

A checkpoint is a ``seg.convert`` "pointmoe-seg" file (``config``, ``state_dict``, ``epoch``:
what ``load_segmentor`` and ``Segmenter.from_checkpoint`` read) plus the training state:
``step``, ``optimizer``, ``scheduler``, ``scaler``, ``rng`` (one entry per rank) and
``train_config``. ``--resume`` continues from ``output_dir/checkpoints/latest``: the same batches,
augmentations and random draws follow, so the loss trajectory is the one of an uninterrupted
run.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pointmoe_core.data.sample import IGNORE_INDEX, SegDataset
from pointmoe_core.data.sampling import MixedBatchSampler, MixedDataset, SamplerConfig
from pointmoe_core.data.transforms import PipelineConfig, collate
from pointmoe_core.seg.convert import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from pointmoe_core.seg.head import LanguageGuidedHead
from pointmoe_core.seg.model import PointMoESegmentor, SegmentorConfig, load_config
from pointmoe_core.seg.text import TextEncoder

from ..common.checkpoint import capture_rng_state, latest_checkpoint, restore_rng_state, resume_payload, save_rotating
from ..common.config import YamlConfig
from ..common.training import NONFINITE_PATIENCE, NonFiniteGuard, RunLog
from .datasets import DatasetEntry, parse_entries
from .distributed import DistributedContext, all_reduce_mean, barrier, cleanup_distributed, init_distributed
from .evaluate import MODEL_INPUT_KEYS, eval_datasets, evaluate, format_results, mean_miou, to_device
from .losses import LossConfig, segmentation_loss


@dataclass
class SegTrainConfig(YamlConfig):
    """Everything a run needs; YAML keys are these field names (see config/train/*.yaml), and
    ``backbone.KEY=VALUE`` overrides one backbone field."""

    config_name = "training config"

    model: str = "tiny"  # SegmentorConfig preset (tiny, base, L) or YAML file
    backbone: dict[str, Any] = field(default_factory=dict)  # BackboneConfig fields to override
    train_datasets: list[DatasetEntry] = field(default_factory=list)
    val_datasets: list[DatasetEntry] = field(default_factory=list)
    zero_shot_datasets: list[DatasetEntry] = field(default_factory=list)  # never trained on
    grid_size: float | None = None  # None: each dataset's own (2 cm indoor, 5 cm outdoor)
    point_max: int | None = None  # crop every training cloud to this many points
    batch_size: int = 2  # clouds per rank and step
    batch_from_single_dataset: bool = False
    epochs: int = 10
    max_steps: int | None = None  # train exactly this many steps instead of `epochs`
    lr: float = 0.005
    block_lr: float = 0.0005
    weight_decay: float = 0.05
    pct_start: float = 0.05
    div_factor: float = 10.0
    final_div_factor: float = 1000.0
    grad_clip: float = 1.0
    ce_weight: float = 1.0
    lovasz_weight: float = 1.0
    amp: bool = True  # autocast on GPU (never on CPU)
    # bfloat16 has fp32's range and needs no loss scaling; with float16 the Point-MoE loss of the
    # synthetic run turned NaN after ~500 steps and stayed NaN. float16 where a GPU lacks bfloat16.
    amp_dtype: str = "bfloat16"
    output_dir: str = "runs/seg"
    # start from these weights (ours or official, e.g. a shipped checkpoint): fine-tuning; the
    # model built from this config must have the same shapes
    init_from: str = ""
    checkpoint_every: int = 0  # steps; 0: only at epoch ends
    keep_last: int = 3  # step checkpoints kept; 0 keeps all
    eval_every: int = 1  # epochs between evaluations; 0: only after the last
    eval_max_scenes: int | None = None
    log_every: int = 10  # steps between TensorBoard scalars
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("train_datasets", "val_datasets", "zero_shot_datasets"):
            setattr(self, name, parse_entries(getattr(self, name)))
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"amp_dtype must be float16 or bfloat16, got {self.amp_dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("train_datasets", "val_datasets", "zero_shot_datasets"):
            data[name] = [entry.to_dict() for entry in getattr(self, name)]
        return data


# ---- model ----------------------------------------------------------------------------------
def model_config_for(config: SegTrainConfig, datasets: Sequence[SegDataset]) -> SegmentorConfig:
    """The preset with the backbone overrides and the class table of the training datasets.

    Like the official indoor+outdoor config, the table concatenates every dataset's class names
    (a name shared by two datasets appears twice, with the same text embedding) and each dataset
    indexes its own rows.
    """
    base = load_config(config.model)
    class_names: list[str] = []
    valid_classes = {}
    for dataset in datasets:
        valid_classes[dataset.name] = tuple(range(len(class_names), len(class_names) + len(dataset.class_names)))
        class_names += dataset.class_names
    return dataclasses.replace(base, class_names=tuple(class_names), valid_classes=valid_classes,
                               backbone=base.backbone.replace(config.backbone, "backbone"))


def build_model(model_config: SegmentorConfig) -> PointMoESegmentor:
    """A fresh model whose language head holds the text embeddings of its class table."""
    model = PointMoESegmentor(model_config)
    if isinstance(model.head, LanguageGuidedHead):
        model.head.set_class_embedding(TextEncoder(model_config.text).encode(model_config.class_names))
    return model


def param_groups(model: nn.Module, lr: float, block_lr: float) -> list[dict[str, Any]]:
    """Pointcept's ``param_dicts=[dict(keyword="block", lr=...)]``: names containing "block" get ``block_lr``."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for name, p in named if "block" not in name], "lr": lr},
        {"params": [p for name, p in named if "block" in name], "lr": block_lr},
    ]


def global_target(batch: Mapping[str, Any], valid_classes: Mapping[str, Sequence[int]]) -> torch.Tensor:
    """Each cloud's labels (indices into its dataset's class names) as rows of the model's class table."""
    counts = torch.diff(batch["offset"], prepend=batch["offset"].new_zeros(1)).tolist()
    target = batch["segment"].clone()
    for segment, dataset in zip(target.split(counts), batch["dataset"]):
        rows = torch.tensor(valid_classes[dataset])
        labelled = segment != IGNORE_INDEX
        segment[labelled] = rows[segment[labelled]]
    return target


# ---- training -------------------------------------------------------------------------------
def routing_scalars(model: PointMoESegmentor) -> dict[str, float]:
    """Per MoE layer: routing entropy of the last forward and each expert's share of its tokens."""
    values = {}
    for name, layer in model.backbone.moe_layers().items():
        stats = layer.last_stats
        if stats is None:
            continue
        values[f"routing_entropy/{name}"] = float(stats.entropy)
        share = stats.tokens_per_expert.float() / max(int(stats.tokens_per_expert.sum()), 1)
        values.update({f"expert_load/{name}/expert{e}": float(s) for e, s in enumerate(share)})
    return values


def eval_scalars(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    values = {}
    for name, result in results.items():
        if result["miou"] is not None:
            values[f"miou/{name}"] = result["miou"]
            values[f"allacc/{name}"] = result["allacc"]
    return values


def _checkpoint_payload(config: SegTrainConfig, model: PointMoESegmentor, optimizer, scheduler, scaler,
                        step: int, epoch: int) -> dict[str, Any]:
    rng = capture_rng_state()
    if dist.is_available() and dist.is_initialized():
        per_rank: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(per_rank, rng)
    else:
        per_rank = [rng]
    return {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(), "state_dict": model.state_dict(), "epoch": epoch,
        "step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "rng": per_rank, "train_config": config.to_dict(),
    }


def train(config: SegTrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or continue) training; returns the summary the CLI prints with ``--json``."""
    if not config.train_datasets:
        raise ValueError("the training config lists no train_datasets")
    context = init_distributed(config.device)
    try:
        return _train(config, resume, context)
    finally:
        cleanup_distributed()


def _train(config: SegTrainConfig, resume: bool, context: DistributedContext) -> dict[str, Any]:
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    device = context.device
    random.seed(config.seed), np.random.seed(config.seed), torch.manual_seed(config.seed)

    pipeline = PipelineConfig(grid_size=config.grid_size)
    train_sets = [entry.build(train=True, pipeline=pipeline, point_max=config.point_max)
                  for entry in config.train_datasets]
    mixed = MixedDataset(train_sets)
    sampler = MixedBatchSampler(
        mixed.sizes,
        SamplerConfig(batch_size=config.batch_size, loops=[e.loop for e in config.train_datasets],
                      batch_from_single_dataset=config.batch_from_single_dataset, seed=config.seed),
        rank=context.rank, world_size=context.world_size)
    steps_per_epoch = len(sampler)
    if steps_per_epoch == 0:
        raise ValueError(f"no full batch of {sampler.global_batch_size} clouds in {mixed.sizes} scenes")
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    eval_sets = eval_datasets(config.val_datasets + config.zero_shot_datasets, config.to_dict())

    model = build_model(model_config_for(config, train_sets)).to(device)
    if config.init_from:  # a resume below replaces these weights with its own
        from pointmoe_core.seg.convert import read_checkpoint

        model.load_state_dict(read_checkpoint(config.init_from).state_dict)
    # ranks share the initial weights (seed above), then draw their own drop-path masks
    torch.manual_seed(config.seed + context.rank)
    optimizer = torch.optim.AdamW(param_groups(model, config.lr, config.block_lr), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[config.lr, config.block_lr], total_steps=total_steps, pct_start=config.pct_start,
        anneal_strategy="cos", div_factor=config.div_factor, final_div_factor=config.final_div_factor)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = getattr(torch, config.amp_dtype)
    if use_amp and amp_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        amp_dtype = torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    step, resumed_from = 0, None
    if resume:
        payload = resume_payload(checkpoint_dir, map_location=device)
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
        rng = payload["rng"]
        restore_rng_state(rng[context.rank] if len(rng) == context.world_size else rng[0])
        step = resumed_from = int(payload["step"])
        del payload

    core = model
    if context.distributed:
        # experts that receive no token in a step get no gradient
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=bool(core.backbone.moe_layers()))
    loss_config = LossConfig(config.ce_weight, config.lovasz_weight)
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        (output_dir / "model_config.yaml").write_text(core.config.to_yaml())
    logger = RunLog(output_dir, context.is_main)

    def save(epoch: int) -> Path:
        payload = _checkpoint_payload(config, core, optimizer, scheduler, scaler, step, epoch)
        path = None
        if context.is_main:
            path = save_rotating(checkpoint_dir, payload, step, epoch, config.keep_last)
        barrier()
        return path or checkpoint_dir / f"step_{step:08d}.pt"

    progress = tqdm(total=total_steps, initial=step, disable=not context.is_main, dynamic_ncols=True,
                    desc="train seg")
    results: dict[str, Any] = {}
    last_loss = math.nan
    guard = NonFiniteGuard(NONFINITE_PATIENCE, advice="with amp_dtype=float16 try bfloat16, else lower lr")
    checkpoint_path = None
    model.train()
    while step < total_steps:
        epoch = step // steps_per_epoch
        sampler.set_epoch(epoch)
        batches = list(sampler)[step - epoch * steps_per_epoch:]
        # a generator of its own keeps the global RNG (drop path, order shuffles) for the model
        loader = DataLoader(mixed, batch_sampler=batches, collate_fn=collate, num_workers=config.num_workers,
                            generator=torch.Generator())
        tick = time.perf_counter()
        for batch in loader:
            target = global_target(batch, core.config.valid_classes).to(device)
            class_mask = core.class_mask_for(batch["dataset"])
            inputs = {key: to_device(batch[key], device) for key in MODEL_INPUT_KEYS}
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(inputs, class_mask=class_mask)
            parts = segmentation_loss(logits, target, loss_config)
            aux = core.backbone.aux_loss()
            loss = parts["loss"] if aux is None else parts["loss"] + aux
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
            # reduced over ranks, so that every rank takes the same decision below
            logged = {key: float(all_reduce_mean(value.detach()))
                      for key, value in (("loss", loss), ("ce", parts["ce"]), ("lovasz", parts["lovasz"]))}
            logged["aux"] = 0.0 if aux is None else float(all_reduce_mean(aux.detach()))
            lrs = scheduler.get_last_lr()  # the rates this step used
            if guard.allows(logged["loss"], grad_norm, step + 1):
                scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1

            points = len(batch["coord"]) * context.world_size
            seconds = time.perf_counter() - tick
            tick = time.perf_counter()
            last_loss = logged["loss"]
            logger.record({"step": step, "epoch": epoch, **logged, "grad_norm": grad_norm, "lr": lrs[0],
                           "block_lr": lrs[1], "points": points, "points_per_s": points / seconds})
            progress.update(1)
            progress.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lrs[0]:.2e}", pts_s=f"{points / seconds:,.0f}")
            if step % config.log_every == 0 or step == total_steps:
                logger.scalars({f"loss/{k}": v for k, v in logged.items()}, step)
                logger.scalars({"lr/base": lrs[0], "lr/block": lrs[1], "speed/points_per_s": points / seconds,
                                **routing_scalars(core)}, step)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint_path = save(step // steps_per_epoch)
            if step >= total_steps:
                break

        # an epoch ended, or the run did (max_steps)
        if not (config.checkpoint_every and step % config.checkpoint_every == 0):
            checkpoint_path = save(step // steps_per_epoch)
        epochs_done = step // steps_per_epoch
        if eval_sets and (step >= total_steps or (config.eval_every and epochs_done % config.eval_every == 0)):
            results = evaluate(core, eval_sets, context, max_scenes=config.eval_max_scenes,
                               num_workers=config.num_workers)
            logger.scalars(eval_scalars(results), step)
            logger.record({"step": step, "eval": {name: r["miou"] for name, r in results.items()}})
            model.train()
    progress.close()
    logger.close()
    summary = {
        "ok": True, "task": "seg", "output_dir": str(output_dir), "steps": step, "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch, "resumed_from": resumed_from, "final_loss": last_loss,
        "checkpoint": str(checkpoint_path or latest_checkpoint(checkpoint_dir)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if results:
        summary.update(eval={name: {k: r[k] for k in ("miou", "allacc", "iou", "zero_shot")}
                             for name, r in results.items()},
                       miou_seen=mean_miou(results, zero_shot=False), miou_zero_shot=mean_miou(results, zero_shot=True))
    if context.is_main:
        print(f"trained {step} steps in {summary['seconds']} s, final loss {last_loss:.4f}, "
              f"checkpoint {summary['checkpoint']}")
        if results:
            print(format_results(results))
    return summary


def train_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``pointmoe train seg``: the parsed CLI arguments of :mod:`pointmoe_core.train_cli`."""
    config = SegTrainConfig.load(args.config, args.overrides)
    if args.batch_from_single_dataset:
        config.batch_from_single_dataset = True
    return train(config, resume=args.resume)
