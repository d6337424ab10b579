"""``Segmenter``: Point-MoE semantic segmentation of raw point clouds (Pointcept's test-time path).

``Segmenter.predict(coord, color=None, normal=None, strength=None, class_names=None)`` labels
every input point. The steps follow Pointcept's ``SemSegTester`` and the official test pipeline
(``InputConfig`` of the model's config):

1. rows with NaN or Inf in any given attribute are dropped, and so are points beyond
   ``MAX_COORDINATE_M`` (corrupt values, not places) and, with ``max_range``, points farther than it
   from the cloud's median point: they never reach the network and get label -1, score 0 and
   ``valid`` False (a warning gives each count). A cloud far from its frame's origin (UTM-like map
   coordinates) is re-centred in float64 before anything becomes float32, so its voxels stay apart;
2. ``PointClip`` / ``CenterShift`` as configured, colour ``/127.5 - 1``; normals the model wants but
   the cloud lacks are estimated with open3d, missing colour is fed as mid-grey and missing
   strength as 0 (each with a warning);
3. GridSample in test mode: fragment i holds the i-th point of every voxel. ``max_fragments``
   fragments run (default 1: one point per voxel, and every point takes its voxel's prediction);
   with more, each point covered by a fragment gets the mean of its own softmax outputs, as in
   Pointcept's tester, and the rest take their voxel's mean;
4. above ``max_points`` voxels a seeded random subset of ``max_points`` voxels runs, and every other
   voxel takes the prediction of its nearest voxel that ran (a warning says so);
5. the backbone's serialization-order shuffles (which the official code does in eval too) draw
   from a generator seeded with ``seed``, so the same input gives the same output;
6. ``dtype="bfloat16"`` or ``"float16"`` runs the forward under ``torch.autocast`` (for GPUs; the
   error against float32 is in benchmarks/RESULTS.md), ``"float32"`` (default) plainly. The
   weights autocast would cast in every forward are cast once, in the Segmenter's own copy of the
   model (``cast_matrix_weights``).

``class_names`` chooses the vocabulary per call: names in the model's class table use its stored
embeddings, new names are encoded by the ``TextEncoder`` of the config's text source.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..common.grouped_mm import keep_operands
from ..common.reductions import column_bounds, rows_all, rows_any, squared_distances
from ..data.preprocess import VoxelGrid, center_shift, estimate_normals, grid_sample, normalize_color
from ..io.pointcloud2 import MAX_COORDINATE_M, recentre_origin, recentred_note
from .convert import load_segmentor, save_checkpoint
from .head import LanguageGuidedHead
from .model import InputConfig, PointMoESegmentor, SegmentorConfig, load_config
from .moe import Router
from .serialization import MAX_DEPTH
from .sparse_conv import SubMConv3d
from .text import TextEncoder

ArrayLike = Any  # numpy array, torch tensor or nested sequence


# Segmenter(dtype=...): the autocast dtype of the forward (None: plain float32)
AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_to(device: torch.device | str, dtype: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``AUTOCAST_DTYPES[dtype]`` on ``device``; no context for float32."""
    target = AUTOCAST_DTYPES[dtype]
    return contextlib.nullcontext() if target is None else torch.autocast(torch.device(device).type, dtype=target)


def cast_matrix_weights(backbone: nn.Module, dtype: torch.dtype) -> None:
    """Cast, in place, the weights that autocast to ``dtype`` would cast in every forward: those of
    the backbone's linear layers, MoE routers and pure-torch sparse convolutions, whose products
    autocast runs in ``dtype`` (spconv's CPU kernels take float32 only; norms stay float32, as
    autocast runs them; the head reads its projection's float32 weights for the norm). The forward
    then computes with the same values, without a cast per layer per forward (~380 at
    Point-MoE-L's size, each a GPU kernel)."""
    for module in backbone.modules():
        if type(module) in (nn.Linear, Router) or (isinstance(module, SubMConv3d) and module.backend == "torch"):
            module.to(dtype)


@dataclass
class SegResult:
    """Per-input-point predictions (length N = number of input rows, duplicates and NaN rows included)."""

    labels: np.ndarray  # (N,) int64 index into class_names; -1 for dropped rows
    scores: np.ndarray  # (N,) float32 softmax probability of the label; 0 for dropped rows
    class_names: tuple[str, ...]
    valid: np.ndarray  # (N,) bool; False = dropped (NaN/Inf), never seen by the network
    experts: dict[str, np.ndarray] | None = None  # MoE layer -> (N,) top-1 expert id, -1 for dropped rows
    warnings: list[str] = field(default_factory=list)
    num_voxels: int = 0  # voxels of the valid points at the model's grid size
    kernels: dict[str, str] = field(default_factory=dict)  # sparse_conv / attention / moe_dispatch kernels that ran

    def __len__(self) -> int:
        return len(self.labels)


class Segmenter:
    """Inference wrapper around a ``PointMoESegmentor`` (eval mode, no gradients)."""

    def __init__(
        self,
        model: PointMoESegmentor,
        device: str | torch.device = "cpu",
        text_encoder: TextEncoder | None = None,
        max_points: int = 200_000,
        max_fragments: int = 1,
        seed: int = 0,
        normal_radius: float = 0.1,
        normal_max_nn: int = 30,
        input: InputConfig | None = None,
        dtype: str = "float32",
    ) -> None:
        if max_points < 1 or max_fragments < 1:
            raise ValueError("max_points and max_fragments must be at least 1")
        if dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(AUTOCAST_DTYPES)}, got {dtype!r}")
        self.dtype = dtype  # bfloat16 / float16 run the forward under autocast
        self.device = torch.device(device)
        if AUTOCAST_DTYPES[dtype] is not None:  # on a copy: the caller's model may serve float32 too
            model = copy.deepcopy(model)
            cast_matrix_weights(model.backbone, AUTOCAST_DTYPES[dtype])
            keep_operands(model.backbone)  # its grouped GEMMs' stacked weights, built once
        self.model = model.to(self.device).eval()
        with torch.no_grad():  # what every forward (an inference) runs: fixed here
            self.kernels = self.model.backbone.kernels(self.device, AUTOCAST_DTYPES[dtype] or torch.float32)
        self.config: SegmentorConfig = model.config
        # e.g. OUTDOOR_INPUT for LiDAR scans through the indoor+outdoor Point-MoE-L
        self.input = input or self.config.input
        if self.input.in_channels != self.config.backbone.in_channels:
            raise ValueError(f"input feat_keys {self.input.feat_keys} give {self.input.in_channels} channels, "
                             f"the backbone takes {self.config.backbone.in_channels}")
        self.text_encoder = text_encoder or TextEncoder(self.config.text, self.device)
        self.max_points = max_points
        self.max_fragments = max_fragments
        self.seed = seed
        self.normal_radius = normal_radius
        self.normal_max_nn = normal_max_nn

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | SegmentorConfig = "tiny", device: str | torch.device = "cpu",
                    **options: Any) -> "Segmenter":
        """An untrained model (preset name, YAML file or config); its class table is encoded now."""
        segmenter = cls(PointMoESegmentor(load_config(config)), device, **options)
        if isinstance(segmenter.model.head, LanguageGuidedHead):
            segmenter.model.head.set_class_embedding(segmenter.text_encoder.encode(segmenter.config.class_names))
        return segmenter

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu",
                        config: str | Path | SegmentorConfig | None = None, allow_pickle: bool = False,
                        **options: Any) -> "Segmenter":
        """Our checkpoint, or an official Pointcept / point_moe one given its ``config`` (e.g. ``"L"``)."""
        return cls(load_segmentor(path, config, allow_pickle), device, **options)

    def save(self, path: str | Path) -> Path:
        """Write the model in our checkpoint format (config, class names and text source included)."""
        return save_checkpoint(path, self.model.state_dict(), self.config)

    # ---- prediction -------------------------------------------------------------------------
    def predict(
        self,
        coord: ArrayLike,
        color: ArrayLike | None = None,
        normal: ArrayLike | None = None,
        strength: ArrayLike | None = None,
        class_names: Sequence[str] | None = None,
        return_experts: bool = False,
        max_range: float | None = None,
    ) -> SegResult:
        """Label every row of ``coord`` (N, 3).

        ``color`` (N, 3) in [0, 255] (floats that are all <= 1 are read as [0, 1]); ``normal``
        (N, 3); ``strength`` (N,) LiDAR intensity in [0, 1]; ``class_names`` the vocabulary (default
        the model's); ``return_experts`` adds each MoE layer's top-1 expert per point; ``max_range``
        (metres from the cloud's median point) drops points beyond it, e.g. stray far returns.
        """
        coord = _rows(coord, "coord", None, 3)
        n = len(coord)
        parts = {"color": _rows(color, "color", n, 3), "normal": _rows(normal, "normal", n, 3),
                 "strength": _rows(strength, "strength", n, 1)}
        names, table, columns = self._vocabulary(class_names)
        valid, origin, warnings = _sanitize(coord, parts, max_range)
        result = SegResult(np.full(n, -1, np.int64), np.zeros(n, np.float32), names, valid,
                           {} if return_experts else None, warnings,
                           kernels=dict(self.kernels))
        keep = np.flatnonzero(valid)
        if len(keep) == 0:
            return result

        # float64 until the offset is gone: float32 of a far-off coordinate has lost its centimetres
        raw_xyz = coord[keep] if origin is None else (coord[keep].astype(np.float64) - origin).astype(np.float32)
        inputs = self._prepare(raw_xyz, {k: None if v is None else v[keep] for k, v in parts.items()},
                               result.warnings)
        _check_extent(inputs["coord"], self.input.grid_size)
        # from here on the cloud lives on the model's device, until the labels come back
        inputs = {key: None if value is None else torch.from_numpy(value).to(self.device)
                  for key, value in inputs.items()}
        grid = grid_sample(inputs["coord"], self.input.grid_size)
        result.num_voxels = grid.num_voxels
        run, source = self._voxels_to_run(grid, result.warnings)
        labels, scores, experts = self._run_fragments(grid, run, source, inputs, raw_xyz, table, columns,
                                                      return_experts, result.warnings)
        result.labels[keep], result.scores[keep] = labels, scores
        if experts is not None:
            for layer, ids in experts.items():
                result.experts[layer] = np.full(n, -1, np.int64)
                result.experts[layer][keep] = ids
        return result

    def _vocabulary(self, class_names: Sequence[str] | None
                    ) -> tuple[tuple[str, ...], torch.Tensor | None, list[int] | None]:
        """Names, plus a class table for the language head or logit columns for the linear head."""
        stored = self.config.class_names
        if class_names is None:
            return stored, None, None
        if isinstance(class_names, str):  # tuple("table") would be five one-letter classes
            raise TypeError(f"class_names must be a sequence of names, not the string {class_names!r}")
        names = tuple(class_names)
        if not names or not all(isinstance(name, str) for name in names):
            raise ValueError("class_names must be a non-empty sequence of strings")
        row = {}
        for i, name in enumerate(stored):
            row.setdefault(name, i)
        new = [name for name in names if name not in row]
        head = self.model.head
        if not isinstance(head, LanguageGuidedHead):
            if new:
                raise ValueError(f"this model has a closed-set linear head; unknown classes {new}")
            return names, None, [row[name] for name in names]
        stored_table = head.class_embedding
        encoded = dict(zip(new, self.text_encoder.encode(new).to(stored_table))) if new else {}
        if new and len(encoded[new[0]]) != stored_table.shape[1]:
            raise ValueError(f"text source {self.config.text.source!r} gives {len(encoded[new[0]])}-d embeddings "
                             f"but the head expects {stored_table.shape[1]}-d: configure the text model the "
                             "class table was made with to encode new class names")
        table = torch.stack([stored_table[row[name]] if name in row else encoded[name] for name in names])
        return names, table, None

    def _prepare(self, xyz: np.ndarray, parts: dict[str, np.ndarray | None],
                 warnings: list[str]) -> dict[str, np.ndarray | None]:
        """Coordinates and per-point features as the model's input pipeline wants them."""
        spec = self.input
        xyz = xyz.astype(np.float32)
        if spec.point_clip is not None:
            xyz = np.clip(xyz, spec.point_clip[:3], spec.point_clip[3:]).astype(np.float32)
        if spec.center_shift:
            xyz = center_shift(xyz, apply_z=True)
        wanted = set(spec.feat_keys)
        inputs: dict[str, np.ndarray | None] = {"coord": xyz, "normal": None}
        if "color" in wanted:
            color = parts["color"]
            if color is None:
                warnings.append("no colour given: fed as mid-grey")
                inputs["color"] = np.zeros((len(xyz), 3), np.float32)
            else:
                if np.issubdtype(color.dtype, np.floating) and color.max(initial=0.0) <= 1.0:
                    color = color * 255.0
                inputs["color"] = normalize_color(color)
        if "normal" in wanted:
            if parts["normal"] is None:
                warnings.append("no normals given: estimated with open3d")
            else:
                inputs["normal"] = parts["normal"].astype(np.float32)
        if "strength" in wanted:
            if parts["strength"] is None:
                warnings.append("no strength given: fed as 0")
                inputs["strength"] = np.zeros((len(xyz), 1), np.float32)
            else:
                inputs["strength"] = parts["strength"].astype(np.float32)
        return inputs

    def _voxels_to_run(self, grid: VoxelGrid, warnings: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Voxels that go through the network and, for every voxel, the row of ``run`` it takes."""
        if grid.num_voxels <= self.max_points:
            everything = torch.arange(grid.num_voxels, device=self.device)
            return everything, everything
        from scipy.spatial import cKDTree  # only oversized clouds need it

        rng = np.random.default_rng(self.seed)
        run = np.sort(rng.choice(grid.num_voxels, self.max_points, replace=False))
        voxel_coord = grid.grid_coord[grid.order[grid.start]].cpu().numpy()
        _, source = cKDTree(voxel_coord[run]).query(voxel_coord, k=1)
        warnings.append(f"{grid.num_voxels} voxels > max_points={self.max_points}: the network ran on "
                        f"{self.max_points} random voxels, the others took their nearest one's label")
        return torch.from_numpy(run).to(self.device), torch.from_numpy(source.astype(np.int64)).to(self.device)

    def _run_fragments(self, grid: VoxelGrid, run: torch.Tensor, source: torch.Tensor,
                       inputs: dict[str, torch.Tensor | None], raw_xyz: np.ndarray,
                       table: torch.Tensor | None, columns: list[int] | None, return_experts: bool,
                       warnings: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]:
        # one fragment, the default, needs no look at the voxels' point counts (a read from a GPU)
        num_fragments = 1 if self.max_fragments == 1 and grid.num_voxels else min(self.max_fragments,
                                                                                  grid.num_fragments)
        voxel_probs: torch.Tensor | None = None
        point_probs: torch.Tensor | None = None
        hits: torch.Tensor | None = None  # fragments each point was in, when there are several
        voxel_experts = None
        for fragment in range(num_fragments):
            rows = grid.fragment(fragment)[run]
            want_experts = return_experts and fragment == 0
            probs, experts = self._forward(rows, grid, inputs, raw_xyz, table, columns, want_experts)
            voxel_probs = probs if voxel_probs is None else voxel_probs + probs
            if num_fragments > 1:
                if point_probs is None:
                    point_probs = probs.new_zeros((len(probs), len(raw_xyz)))
                    hits = torch.zeros(len(raw_xyz), dtype=torch.long, device=self.device)
                point_probs[:, rows] += probs  # a fragment holds each point at most once
                hits[rows] += 1
            if want_experts:
                voxel_experts = experts
        if 1 < num_fragments < grid.num_fragments:
            warnings.append(f"ran {num_fragments} of {grid.num_fragments} fragments; points outside them "
                            "took their voxel's mean prediction")

        row_of_point = source[grid.voxel]
        voxel_score, voxel_label = voxel_probs.max(0)  # the first maximum, as argmax
        labels, scores = voxel_label[row_of_point], (voxel_score / num_fragments)[row_of_point]
        if hits is not None:  # a point seen in some fragments takes its own mean prediction
            covered = torch.nonzero(hits).squeeze(1)
            scores[covered], labels[covered] = (point_probs[:, covered] / hits[covered]).max(0)
        experts = None
        if voxel_experts is not None:
            experts = {layer: ids[row_of_point].cpu().numpy() for layer, ids in voxel_experts.items()}
        return labels.cpu().numpy(), scores.cpu().numpy(), experts

    def _forward(self, rows: torch.Tensor, grid: VoxelGrid, inputs: dict[str, torch.Tensor | None],
                 raw_xyz: np.ndarray, table: torch.Tensor | None, columns: list[int] | None,
                 want_experts: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Softmax (M, V) of one fragment, class by class, and, optionally, each MoE layer's top-1 expert
        per row. Class-major because a softmax or argmax across a few classes for each of V voxels
        runs as V tiny loops, one across V voxels for each class vectorised: 15 vs 4 ms at 90k x 8."""
        features = []
        for key in self.input.feat_keys:
            if key == "normal" and inputs["normal"] is None:
                normals = estimate_normals(raw_xyz[rows.cpu().numpy()], self.normal_radius, self.normal_max_nn)
                features.append(torch.from_numpy(normals).to(self.device))
            else:
                features.append(inputs[key][rows].reshape(len(rows), -1))
        data = dict(
            coord=inputs["coord"][rows],
            grid_coord=grid.grid_coord[rows],
            feat=torch.cat(features, 1).float(),
            offset=torch.full((1,), len(rows), device=self.device),
            grid_size=self.input.grid_size,
        )
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad(), autocast_to(self.device, self.dtype):
            output = self.model(data, text_embedding=table, generator=generator, return_routing=want_experts)
        logits, routing = output if want_experts else (output, None)
        if columns is not None:
            logits = logits[:, columns]
        probs = torch.softmax(logits.float().T.contiguous(), 0)
        if routing is None:
            return probs, None
        return probs, {layer: topk[:, 0] for layer, topk in routing.items()}


def _sanitize(coord: np.ndarray, parts: dict[str, np.ndarray | None], max_range: float | None
              ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Rows fit for the network, the float64 offset to re-centre them by (or None), and what was done."""
    n = len(coord)
    valid = rows_all(np.isfinite(coord))
    for value in parts.values():
        if value is not None:
            valid &= rows_all(np.isfinite(value))
    warnings = []
    if not valid.all():
        warnings.append(f"dropped {int((~valid).sum())} of {n} points with NaN/Inf values (label -1, score 0)")
    corrupt = valid & rows_any(np.abs(coord) > MAX_COORDINATE_M)
    if corrupt.any():
        valid &= ~corrupt
        warnings.append(f"dropped {int(corrupt.sum())} of {n} points beyond {MAX_COORDINATE_M:.0e} m, no place "
                        "on Earth (label -1, score 0)")
    origin = recentre_origin(coord, valid)
    if origin is not None:
        warnings.append(recentred_note(origin))
    if max_range is not None and valid.any():
        kept = coord[valid].astype(np.float64)
        far = np.zeros(n, bool)
        far[valid] = squared_distances(kept, np.median(kept, axis=0)) > max_range**2
        if far.any():
            valid &= ~far
            warnings.append(f"dropped {int(far.sum())} of {n} points farther than max_range={max_range:g} m from "
                            "the cloud's median point (label -1, score 0)")
    return valid, origin, warnings


def _check_extent(coord: np.ndarray, grid_size: float) -> None:
    """Refuse a cloud wider than the serialization's ``2**MAX_DEPTH`` voxels per axis, as grid_sample
    will voxelise it, before anything is allocated for it."""
    # floor(x / g) is monotonic in x: the extreme voxels are those of the extreme coordinates
    low, high = (bound.astype(np.float64) / grid_size for bound in column_bounds(coord))
    extent = int((np.floor(high) - np.floor(low)).max()) + 1
    if extent > 1 << MAX_DEPTH:
        span = float(np.ptp(coord, axis=0).max())
        raise ValueError(f"the cloud spans {span:.0f} m, {extent} voxels of {grid_size} m, beyond the "
                         f"{1 << MAX_DEPTH} per axis the serialization orders: limit it with max_range")


def _rows(value: ArrayLike | None, name: str, n: int | None, width: int) -> np.ndarray | None:
    """``value`` as an (n, width) float array (torch tensors and sequences accepted)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.size == 0 and (n is None or n == 0):
        return np.zeros((0, width), np.float64)
    if width == 1 and array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != width or (n is not None and array.shape[0] != n):
        expected = f"({n if n is not None else 'N'}, {width})"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)
