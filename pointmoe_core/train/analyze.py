"""Routing analysis of a trained Point-MoE checkpoint: what the experts learned (``pointmoe analyze
routing``, :mod:`.analyze_cli`).

For every MoE layer, over the scenes of each dataset (eval pipeline, no dataset id given to the
model, as in training):

* expert usage per dataset: the share of the layer's top-k assignments each expert receives;
* the Jensen-Shannon divergence between the datasets' usage distributions, each weighted by its
  share of the layer's tokens: ``JSD = H(sum_d w_d P_d) - sum_d w_d H(P_d)`` in bits (0 when every
  dataset routes alike, at most log2(#datasets) when they use disjoint experts);
* token pathways: for every input point (after voxelisation), the top-1 expert of each layer in
  forward order, a coarse stage's choice being that of the pooled token the point belongs to; the
  100 most frequent pathways with their count per dataset, and their purity (the point-weighted
  share of each pathway's majority dataset, beside its value if pathways ignored the dataset);
* PNGs in the output folder: ``jsd_per_layer.png`` and ``experts_<dataset>_<layer>.png``, the first
  scene of each dataset coloured by the top-1 expert of a layer (expert e in ``viz.palette`` colour e).

The summary (``--json``) holds all of it; ``routing.json`` in the output folder too.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pointmoe_core.data.sample import SegDataset
from pointmoe_core.data.transforms import collate
from pointmoe_core.io.pointcloud2 import PointCloud
from pointmoe_core.seg.model import PointMoESegmentor
from pointmoe_core.viz.palette import colorize

from .evaluate import EVAL_SHUFFLE_SEED, MODEL_INPUT_KEYS, to_device


# ---- divergence -----------------------------------------------------------------------------
def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits along the last axis (0 log 0 = 0)."""
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0).sum(-1)


def jensen_shannon(distributions: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted (generalised) Jensen-Shannon divergence in bits of the rows of ``distributions``.

    Rows are normalised to sum to 1; ``weights`` (default uniform) too.
    """
    p = np.asarray(distributions, np.float64)
    p = p / p.sum(-1, keepdims=True)
    w = np.full(len(p), 1.0 / len(p)) if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
    return float(max(entropy_bits(w @ p) - w @ entropy_bits(p), 0.0))


# ---- routing collection ---------------------------------------------------------------------
@dataclass
class DatasetRouting:
    """What one dataset's scenes did in every MoE layer."""

    usage: dict[str, np.ndarray]  # layer -> (E,) top-k assignment counts
    tokens: dict[str, int]  # layer -> tokens routed
    pathways: Counter = field(default_factory=Counter)  # tuple of top-1 experts per layer -> points
    scene_coord: np.ndarray | None = None  # first scene, for rendering
    scene_experts: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (N,) top-1 expert


@torch.no_grad()
def collect_routing(model: PointMoESegmentor, dataset: SegDataset, max_scenes: int | None,
                    device: torch.device) -> DatasetRouting:
    layers = model.backbone.moe_layers()
    routing = DatasetRouting({name: np.zeros(m.num_experts, np.int64) for name, m in layers.items()},
                             dict.fromkeys(layers, 0))
    was_training = model.training
    model.eval()
    try:
        count = len(dataset) if max_scenes is None else min(max_scenes, len(dataset))
        for index in range(count):
            sample = dataset.transform(dataset.load(index), np.random.default_rng((dataset.seed, index)))
            batch = collate([sample])
            generator = torch.Generator().manual_seed(EVAL_SHUFFLE_SEED)
            point = model.backbone({key: to_device(batch[key], device) for key in MODEL_INPUT_KEYS},
                                   generator=generator)
            for name, topk in model.backbone.routing().items():  # usage counts the stage's own tokens
                routing.usage[name] += np.bincount(topk.flatten().cpu().numpy(), minlength=len(routing.usage[name]))
                routing.tokens[name] += len(topk)
            # pathways follow the input points: a pooled stage's choice is its token's
            paths = np.stack([topk[:, 0].cpu().numpy() for topk in model.backbone.point_routing(point).values()],
                             axis=1)
            unique, counts = np.unique(paths, axis=0, return_counts=True)
            routing.pathways.update({tuple(int(e) for e in row): int(c) for row, c in zip(unique, counts)})
            if index == 0:
                routing.scene_coord = batch["coord"].numpy()
                routing.scene_experts = dict(zip(layers, paths.T))
    finally:
        model.train(was_training)
    return routing


def analyze(routings: dict[str, DatasetRouting], top: int = 100) -> dict[str, Any]:
    """Per-layer usage and JSD, and the ``top`` pathways, from the datasets' collected routing."""
    names = list(routings)
    layer_names = list(next(iter(routings.values())).usage)
    layers = []
    for layer in layer_names:
        counts = np.stack([routings[d].usage[layer] for d in names]).astype(np.float64)
        tokens = np.array([routings[d].tokens[layer] for d in names], np.float64)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        layers.append({
            "layer": layer,
            "usage": {d: share[i].tolist() for i, d in enumerate(names)},
            "token_share": {d: float(t) for d, t in zip(names, tokens / tokens.sum())},
            "jsd": jensen_shannon(counts, tokens) if len(names) > 1 else 0.0,
        })
    total = Counter()
    for routing in routings.values():
        total.update(routing.pathways)
    points = sum(total.values())
    pathways = [{"experts": list(path), "points": count, "share": count / points,
                 "by_dataset": {d: routings[d].pathways.get(path, 0) for d in names}}
                for path, count in total.most_common(top)]
    # purity: how much of a pathway's traffic its majority dataset makes up, point-weighted over
    # the reported pathways; "chance" is that value if pathways ignored the dataset
    majority = sum(max(p["by_dataset"].values()) for p in pathways)
    dataset_points = [sum(routings[d].pathways.values()) for d in names]
    return {"datasets": names, "layers": layers, "mean_jsd": float(np.mean([l["jsd"] for l in layers])),
            "pathways": pathways, "distinct_pathways": len(total),
            "pathway_purity": majority / max(sum(p["points"] for p in pathways), 1),
            "pathway_purity_chance": max(dataset_points) / max(points, 1)}


# ---- pictures -------------------------------------------------------------------------------
def short_layer_name(layer: str) -> str:
    """``enc.enc2.block0.attn.proj`` -> ``e2.0``; ``dec.dec1.block1.attn.proj`` -> ``d1.1``."""
    match = re.match(r"(enc|dec)\.(?:enc|dec)(\d+)\.block(\d+)", layer)
    return f"{match.group(1)[0]}{match.group(2)}.{match.group(3)}" if match else layer


def plot_jsd_png(layers: Sequence[dict[str, Any]], path: str | Path, width: int = 900, height: int = 420) -> Path:
    """Bar chart of JSD per layer in forward order (encoder blue, decoder orange), drawn with PIL."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, 20, 40, 50
    values = [layer["jsd"] for layer in layers]
    y_max = max(max(values, default=0.0) * 1.15, 1e-3)
    draw.text((left, 12), "Jensen-Shannon divergence of expert usage between datasets (bits), per MoE layer",
              fill="black")
    draw.line([(left, top), (left, height - bottom), (width - right, height - bottom)], fill="black")
    for tick in np.linspace(0, y_max, 5):
        y = height - bottom - (height - top - bottom) * tick / y_max
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((6, y - 6), f"{tick:.3f}", fill="black")
    slot = (width - left - right) / max(len(layers), 1)
    for i, layer in enumerate(layers):
        x0 = left + i * slot + slot * 0.15
        x1 = left + (i + 1) * slot - slot * 0.15
        y = height - bottom - (height - top - bottom) * layer["jsd"] / y_max
        color = (31, 119, 180) if layer["layer"].startswith("enc") else (255, 127, 14)
        draw.rectangle([x0, y, x1, height - bottom], fill=color)
        draw.text((x0, height - bottom + 6), short_layer_name(layer["layer"]), fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def render_expert_choice(coord: np.ndarray, experts: np.ndarray, num_experts: int, path: str | Path) -> Path:
    """The cloud with every point in the colour of its expert (``viz.palette``, as everywhere)."""
    from pointmoe_core.viz.render import render_cloud_png

    return render_cloud_png(PointCloud(coord), path, colors=colorize(experts, num_experts), width=640, height=480)


def format_analysis(result: dict[str, Any]) -> str:
    names = result["datasets"]
    lines = [f"{'layer':<8} {'JSD':>6}  " + "  ".join(f"{d[:18]:<18}" for d in names) + "  (usage per expert, %)"]
    for layer in result["layers"]:
        usage = "  ".join(f"{' '.join(f'{100 * u:3.0f}' for u in layer['usage'][d]):<18}" for d in names)
        lines.append(f"{short_layer_name(layer['layer']):<8} {layer['jsd']:6.3f}  {usage}")
    lines.append(f"mean JSD {result['mean_jsd']:.3f} bits; {result['distinct_pathways']} distinct pathways, "
                 f"top ones {100 * result['pathway_purity']:.0f}% pure "
                 f"({100 * result['pathway_purity_chance']:.0f}% if they ignored the dataset)")
    for path in result["pathways"][:5]:
        lines.append(f"  {'-'.join(map(str, path['experts']))}: {100 * path['share']:.1f}% of points, "
                     + ", ".join(f"{d} {c}" for d, c in path["by_dataset"].items()))
    return "\n".join(lines)
