"""Numerical parity against a fixture of the official Point-MoE backbone.

A fixture directory holds three files sharing a prefix (see ``../shared/data/parity/README.md``):

* ``<name>_official.pth``: the official backbone's ``state_dict`` (loaded with ``strict=True``);
* ``<name>_meta.json``: ``kwargs`` of the official constructor (plus statistics);
* ``<name>_io.npz``: inputs ``coord, grid_coord, feat, offset, grid_size``, the output
  ``out_feat`` and optional intermediates: ``embed_feat``, ``serialized_code``,
  ``serialized_order``, ``enc0_block0_topk``, ``moe_topk__<block>``, ``enc_out_feat`` +
  ``enc_out_grid_coord`` and ``pool_perms`` (the pooling order permutations drawn by the run).

``run_parity`` rebuilds the backbone from the kwargs, loads the weights, runs it the way the
fixture was made (eval, no grad, one CPU thread, ``torch.manual_seed(0)`` right before forward,
and the recorded pooling permutations) and compares everything present.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .ptv3 import PointTransformerMoE
from .segmenter import autocast_to
from .structure import Point

INPUT_KEYS = ("coord", "grid_coord", "feat", "offset", "grid_size")


def find_fixture(fixture_dir: str | Path) -> dict[str, Path]:
    """Locate ``*_official.pth``, ``*_meta.json`` and ``*_io.npz`` (one prefix) in a directory."""
    d = Path(fixture_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"fixture directory not found: {d}")
    files = {}
    for kind, suffix in (("weights", "_official.pth"), ("meta", "_meta.json"), ("io", "_io.npz")):
        found = sorted(d.glob(f"*{suffix}"))
        if len(found) != 1:
            raise FileNotFoundError(f"expected exactly one *{suffix} in {d}, found {len(found)}")
        files[kind] = found[0]
    prefixes = {p.name[: -len(s)] for p, s in zip(files.values(), ("_official.pth", "_meta.json", "_io.npz"))}
    if len(prefixes) != 1:
        raise FileNotFoundError(f"fixture files in {d} do not share one prefix: {sorted(prefixes)}")
    return files


def load_fixture(fixture_dir: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, np.ndarray],
                                                     dict[str, Any]]:
    """The fixture's meta (official kwargs), the official state dict, its npz arrays and the
    backbone's input dict (CPU tensors), as the official forward took it."""
    files = find_fixture(fixture_dir)
    meta = json.loads(files["meta"].read_text())
    io = dict(np.load(files["io"]))
    missing = [k for k in (*INPUT_KEYS, "out_feat") if k not in io]
    if missing:
        raise KeyError(f"{files['io'].name} lacks {missing}")
    state = torch.load(files["weights"], map_location="cpu", weights_only=True)
    data = dict(
        coord=torch.from_numpy(io["coord"]).float(),
        grid_coord=torch.from_numpy(io["grid_coord"]).long(),
        feat=torch.from_numpy(io["feat"]).float(),
        offset=torch.from_numpy(io["offset"]).long(),
        grid_size=float(io["grid_size"]),
    )
    return meta, state, io, data


def _max_abs(a: torch.Tensor | np.ndarray, b: np.ndarray) -> float:
    a = a.detach().float().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def _row_mismatch(ours: torch.Tensor, ref: np.ndarray) -> dict[str, Any]:
    """Compare top-k expert ids row by row, ignoring the order inside a row."""
    a = np.sort(ours.detach().cpu().numpy(), axis=1)
    b = np.sort(ref, axis=1)
    if a.shape != b.shape:
        return dict(mismatch=-1, total=int(b.shape[0]), note=f"shape {a.shape} vs {b.shape}")
    bad = np.flatnonzero((a != b).any(axis=1))
    return dict(mismatch=int(bad.size), total=int(b.shape[0]), rows=bad[:20].tolist())


def _grid_keys(grid: np.ndarray) -> np.ndarray:
    g = grid.astype(np.int64)
    ext = g.max(0) + 1
    return (g[:, 0] * ext[1] + g[:, 1]) * ext[2] + g[:, 2]


def run_parity(
    fixture_dir: str | Path,
    conv_backend: str = "auto",
    tol: float = 1e-4,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any]:
    """Rebuild the official backbone from a fixture and compare outputs and intermediates.

    Returns a JSON-able dict: ``max_abs_diff`` (of ``out_feat``), ``passed``, ``arrays`` (one
    entry per compared array: ``max_abs_diff`` or ``mismatch``/``total``), the backend used,
    the number of weights loaded and the wall time. ``dtype`` "bfloat16" / "float16" runs the
    forward under ``torch.autocast`` to measure the error of reduced precision (float32 weights).
    """
    meta, state, io, data = load_fixture(fixture_dir)
    model = PointTransformerMoE.from_official_kwargs(meta["kwargs"], conv_backend=conv_backend)
    model.load_state_dict(state, strict=True)
    model.eval().to(device)
    data = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in data.items()}
    perms = torch.from_numpy(io["pool_perms"]).long() if "pool_perms" in io else None

    captured: dict[str, Any] = {}

    def after_embedding(_m, _inp, point: Point) -> None:
        captured["embed_feat"] = point.feat.detach().clone()
        captured["serialized_code"] = point.serialized_code.clone()
        captured["serialized_order"] = point.serialized_order.clone()
        captured["serialized_depth"] = point.serialized_depth

    def after_encoder(_m, _inp, point: Point) -> None:
        captured["enc_out_feat"] = point.feat.detach().clone()
        captured["enc_out_grid_coord"] = point.grid_coord.clone()

    hooks = [model.embedding.register_forward_hook(after_embedding),
             list(model.enc.values())[-1].register_forward_hook(after_encoder)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixture was made single-threaded (spconv CPU races otherwise)
    t0 = time.perf_counter()
    try:
        with torch.no_grad(), autocast_to(device, dtype):
            torch.manual_seed(0)  # the official pooling draws its order shuffles from here
            out = model(data, pool_order_perms=perms)
    finally:
        torch.set_num_threads(threads)
        for h in hooks:
            h.remove()
    seconds = time.perf_counter() - t0

    arrays: dict[str, dict[str, Any]] = {}
    out_diff = _max_abs(out.feat, io["out_feat"])
    arrays["out_feat"] = dict(max_abs_diff=out_diff)
    if "embed_feat" in io:
        arrays["embed_feat"] = dict(max_abs_diff=_max_abs(captured["embed_feat"], io["embed_feat"]))
    for key in ("serialized_code", "serialized_order"):
        if key in io:
            ours = captured[key].cpu().numpy()
            bad = -1 if ours.shape != io[key].shape else int((ours != io[key]).sum())
            arrays[key] = dict(mismatch=bad, total=int(io[key].size))
    if "serialized_depth" in io:
        arrays["serialized_depth"] = dict(
            mismatch=int(captured["serialized_depth"] != int(io["serialized_depth"])), total=1)

    routing = {name.removesuffix(".attn.proj").removesuffix(".mlp.0"): idx
               for name, idx in model.routing().items()}
    if "enc0_block0_topk" in io and "enc.enc0.block0" in routing:
        arrays["enc0_block0_topk"] = _row_mismatch(routing["enc.enc0.block0"], io["enc0_block0_topk"])
    if "enc0_block0_topk_weight" in io and "enc.enc0.block0" in routing:
        layer = next(m for n, m in model.moe_layers().items() if n.startswith("enc.enc0.block0."))
        ours_idx = routing["enc.enc0.block0"].cpu().numpy()
        ours_w = layer.last_stats.topk_weight.float().cpu().numpy()
        ref_idx, ref_w = io["enc0_block0_topk"], io["enc0_block0_topk_weight"]
        # compare weights in expert-id order, since the official top-k is unsorted
        ours_w = np.take_along_axis(ours_w, np.argsort(ours_idx, 1), 1)
        ref_w = np.take_along_axis(ref_w, np.argsort(ref_idx, 1), 1)
        arrays["enc0_block0_topk_weight"] = dict(max_abs_diff=_max_abs(ours_w, ref_w))
    for key in io:
        if key.startswith("moe_topk__"):
            layer = key[len("moe_topk__"):]
            if layer in routing:
                arrays[key] = _row_mismatch(routing[layer], io[key])
            else:
                arrays[key] = dict(mismatch=-1, total=int(io[key].shape[0]), note="no such MoE layer")

    if "enc_out_feat" in io and "enc_out_grid_coord" in io:
        ours_key = _grid_keys(captured["enc_out_grid_coord"].cpu().numpy())
        ref_key = _grid_keys(io["enc_out_grid_coord"])
        if ours_key.shape == ref_key.shape and np.array_equal(np.sort(ours_key), np.sort(ref_key)):
            ours_feat = captured["enc_out_feat"].float().cpu().numpy()[np.argsort(ours_key)]
            ref_feat = io["enc_out_feat"][np.argsort(ref_key)]
            arrays["enc_out_feat"] = dict(max_abs_diff=_max_abs(ours_feat, ref_feat))
        else:
            arrays["enc_out_feat"] = dict(max_abs_diff=float("inf"), note="grid coordinates differ")

    return dict(
        fixture=str(Path(fixture_dir)),
        conv_backend=model.embedding.stem["conv"].backend,
        device=str(device),
        dtype=dtype,
        tol=tol,
        max_abs_diff=out_diff,
        passed=bool(out_diff <= tol),
        weights_loaded=len(state),
        pool_perms="from fixture" if perms is not None else "torch.manual_seed(0)",
        forward_seconds=round(seconds, 3),
        arrays=arrays,
    )


def format_report(result: dict[str, Any]) -> list[str]:
    """One human-readable line per compared array."""
    lines = [f"fixture {result['fixture']}  backend={result['conv_backend']}  "
             f"weights={result['weights_loaded']}  forward={result['forward_seconds']}s"]
    for name, r in result["arrays"].items():
        if "max_abs_diff" in r:
            lines.append(f"  {name:34s} max_abs_diff {r['max_abs_diff']:.3e}")
        else:
            lines.append(f"  {name:34s} mismatch {r['mismatch']}/{r['total']}")
    verdict = "PASS" if result["passed"] else "FAIL"
    lines.append(f"{verdict}: out_feat max_abs_diff {result['max_abs_diff']:.3e} (tol {result['tol']:g})")
    return lines


