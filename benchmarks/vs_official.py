"""Our Point-MoE backbone against the official one: same weights, same input, one process.

    python benchmarks/vs_official.py --official-root PATH [--rows tiny L] [--repeats 10]
        [--l-repeats 1] [--fixture DIR] [--scan FILE.bin] [--seed 0] [--json]

``--official-root`` is a checkout of UVA-Computer-Vision-Lab/point_moe (Point-MoE, a Pointcept fork).
Its ``PointTransformerMoE`` ("PTMoE-v0m0") is timed against ours (``pointmoe_core.seg.ptv3``) with
each sparse-conv backend (``BackboneConfig.conv_backend`` "spconv" and "torch"), on CPU, in float32,
eval mode, one torch thread (spconv's CPU kernels race with more). Rows:

* ``tiny``: the parity fixture (``../shared/data/parity``, see its README): the official weights
  and kwargs, 6,000 points, ``torch.manual_seed(0)`` before every forward (the pooling draws its
  curve shuffles from the global RNG). The median of ``--repeats`` forwards after one warm-up.
* ``L``: Point-MoE-L, the backbone of the checkout's ``configs/point_moe/indoor+outdoor.py`` with
  ``enable_flash=False`` (checked to equal our preset "L"), random weights made once from
  ``--seed`` by the official constructor and loaded into ours, on a SemanticKITTI scan voxelised
  at 5 cm over the whole scan (the first point of each voxel, in scan order; feat = x, y, z, r, r, r).
  The config keeps ``shuffle_orders=True``: both models draw that shuffle from the RNG seeded
  before each forward too. One warm-up and the median of ``--l-repeats`` forwards.

Each row prints the max abs difference of our output from the official one (the same computation
is being timed) and the official time over ours; ``--json`` adds a JSON line at the end.

How the official code is imported without running Pointcept's package ``__init__`` files (they
import every model, the trainer's registry and the CLIP-based PPT heads): ``pointcept``,
``pointcept.models`` and ``pointcept.models.point_moe`` are registered in ``sys.modules`` as empty
packages whose ``__path__`` is the checkout's folder, so only the modules the backbone imports run,
unchanged: ``point_moe/point_moe_v0m0_base.py``, ``point_moe/moe_layer.py``, ``modules.py`` and
``models/utils/`` (``Point``, serialization). Stand-ins, all in this file:

* ``pointcept.models.builder``: a module whose ``MODELS.register_module(name)`` only records the
  class (the real registry pulls in ``pointcept.utils``).
* ``torch_scatter`` (only when it does not import; it has no wheel for recent torch): a module
  with ``segment_csr(src, indptr, reduce)`` in plain torch (``torch.segment_reduce``). The pooling
  uses it for the max over each cell's features and the mean of its coordinates.
* spconv 2.3.8 on CPU refuses a fused bias in eval mode ("cpu don't support act and bias"), which
  the official blocks' cpe convolutions have: ``SparseConvolution.forward`` is wrapped so that such
  a call runs the convolution without bias and adds the bias after (the same math; our spconv
  backend does the same). Other calls are untouched.

Needs, beside this project: the checkout, ``addict``, ``timm`` and ``spconv`` (flash_attn is not used).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import statistics
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from machine import cpu_model

from pointmoe_core.data.preprocess import grid_sample
from pointmoe_core.io import read_kitti_bin
from pointmoe_core.seg import load_config
from pointmoe_core.seg.parity import load_fixture
from pointmoe_core.seg.ptv3 import BackboneConfig, PointTransformerMoE

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
FIXTURE = SHARED / "parity"
SCAN = SHARED / "semantickitti/sequences/00/velodyne/000000.bin"
L_CONFIG = "configs/point_moe/indoor+outdoor.py"
BACKENDS = ("spconv", "torch")


# ---- the official backbone -------------------------------------------------------------------
def segment_csr(src: torch.Tensor, indptr: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """torch_scatter.segment_csr as the official pooling calls it (a 1-D ``indptr`` over dim 0), in plain torch."""
    return torch.segment_reduce(src, reduce, offsets=indptr, axis=0)


def patch_spconv_bias_on_cpu() -> None:
    """Let spconv's CPU eval path take biased convolutions: conv without bias, then + bias."""
    from spconv.pytorch.conv import SparseConvolution

    forward = SparseConvolution.forward
    if getattr(forward, "bias_on_cpu", False):
        return

    def forward_with_bias(self, input, add_input=None):
        if self.bias is None or self.training or input.features.is_cuda:
            return forward(self, input, add_input)
        out = self._conv_forward(self.training, input, self.weight, None, add_input, name=self.name,
                                 sparse_unique_name=self._sparse_unique_name, act_type=self.act_type,
                                 act_alpha=self.act_alpha, act_beta=self.act_beta)
        return out.replace_feature(out.features + self.bias)

    forward_with_bias.bias_on_cpu = True
    SparseConvolution.forward = forward_with_bias


def import_official(root: Path) -> type:
    """The checkout's ``PointTransformerMoE`` class, imported as the module docstring says."""
    source = root / "pointcept/models/point_moe/point_moe_v0m0_base.py"
    if not source.is_file():
        raise SystemExit(f"no {source.relative_to(root)} under --official-root {root}")
    for name in ("pointcept", "pointcept.models", "pointcept.models.point_moe"):
        package = types.ModuleType(name)
        package.__path__ = [str(root / name.replace(".", "/"))]
        sys.modules[name] = package
    builder = types.ModuleType("pointcept.models.builder")
    builder.MODELS = types.SimpleNamespace(classes={})
    builder.MODELS.register_module = lambda name=None: (
        lambda cls: builder.MODELS.classes.setdefault(name or cls.__name__, cls))
    sys.modules[builder.__name__] = builder
    try:
        importlib.import_module("torch_scatter")
    except ImportError:
        shim = types.ModuleType("torch_scatter", "segment_csr in plain torch (vs_official.py)")
        shim.segment_csr = segment_csr
        sys.modules["torch_scatter"] = shim
    patch_spconv_bias_on_cpu()
    with warnings.catch_warnings():  # timm's note that timm.models.layers moved, for the official import
        warnings.simplefilter("ignore", FutureWarning)
        module = importlib.import_module("pointcept.models.point_moe.point_moe_v0m0_base")
    return module.PointTransformerMoE


def official_l_kwargs(root: Path) -> dict:
    """The backbone kwargs of the checkout's indoor+outdoor config (Point-MoE-L), flash attention off."""
    namespace: dict = {}
    exec(compile((root / L_CONFIG).read_text(), L_CONFIG, "exec"), namespace)  # a Pointcept config: plain dicts
    kwargs = {k: v for k, v in namespace["model"]["backbone"].items() if k != "type"}
    return {**kwargs, "enable_flash": False}


# ---- inputs ----------------------------------------------------------------------------------
def scan_inputs(scan: Path, grid_size: float = 0.05) -> dict:
    """A KITTI scan voxelised over its whole extent: the first point of each voxel, in scan order."""
    cloud = read_kitti_bin(scan)
    grid = grid_sample(cloud.xyz, grid_size)
    keep = np.sort(grid.order[grid.start])  # a stable sort by voxel: order[start] is each voxel's first point
    xyz, r = cloud.xyz[keep], cloud.intensity[keep, None]
    return dict(coord=torch.from_numpy(xyz).float(), grid_coord=torch.from_numpy(grid.grid_coord[keep]).long(),
                feat=torch.from_numpy(np.concatenate([xyz, r, r, r], 1)).float(),
                offset=torch.tensor([len(keep)]), grid_size=grid_size)


# ---- timing ----------------------------------------------------------------------------------
def forward_fn(model: torch.nn.Module, data: dict) -> Callable[[], torch.Tensor]:
    """One forward as the fixture was made: eval, no grad, the global RNG seeded right before."""
    def run() -> torch.Tensor:
        with torch.no_grad():
            torch.manual_seed(0)
            return model(dict(data)).feat
    return run


def time_forward(run: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds of ``repeats`` calls after one warm-up, and the warm-up's output."""
    out = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def max_abs(a: torch.Tensor, b: torch.Tensor | np.ndarray) -> float:
    return float((a.double() - torch.as_tensor(b).double()).abs().max())


def bench_row(name: str, official: torch.nn.Module, ours: dict[str, Callable[[], PointTransformerMoE]],
              data: dict, repeats: int, reference: np.ndarray | None = None) -> dict:
    """Time the official model and each of ours on ``data``; ours are built one at a time."""
    n_params = sum(p.numel() for p in official.parameters())
    print(f"{name}: {len(data['coord'])} points, {n_params / 1e6:.2f} M parameters, "
          f"1 warm-up + median of {repeats}", flush=True)
    row = dict(row=name, points=len(data["coord"]), params=n_params, repeats=repeats)
    row["official_s"], official_out = time_forward(forward_fn(official, data), repeats)
    line = "  official".ljust(18) + f"{row['official_s']:8.3f} s"
    if reference is not None:
        row["official_vs_fixture"] = max_abs(official_out, reference)
        line += f"   max |official - fixture out_feat| {row['official_vs_fixture']:.2e}"
    print(line, flush=True)
    for backend, build in ours.items():
        model = build()
        row[f"ours_{backend}_s"], out = time_forward(forward_fn(model, data), repeats)
        row[f"ours_{backend}_max_abs_diff"] = max_abs(out, official_out)
        row[f"official_over_ours_{backend}"] = row["official_s"] / row[f"ours_{backend}_s"]
        line = (f"  ours ({backend})".ljust(18) + f"{row[f'ours_{backend}_s']:8.3f} s   official / ours "
                f"{row[f'official_over_ours_{backend}']:5.2f}x   max |ours - official| "
                f"{row[f'ours_{backend}_max_abs_diff']:.2e}")
        if reference is not None:
            row[f"ours_{backend}_vs_fixture"] = max_abs(out, reference)
            line += f", - fixture {row[f'ours_{backend}_vs_fixture']:.2e}"
        print(line, flush=True)
        del model
    return row


# ---- rows ------------------------------------------------------------------------------------
def tiny_row(official_cls: type, fixture: Path, repeats: int) -> dict:
    meta, state, io, data = load_fixture(fixture)
    kwargs, out_feat = meta["kwargs"], io["out_feat"]
    official = official_cls(**kwargs).eval()
    official.load_state_dict(state, strict=True)

    def ours(backend: str) -> Callable[[], PointTransformerMoE]:
        def build() -> PointTransformerMoE:
            model = PointTransformerMoE.from_official_kwargs(kwargs, conv_backend=backend).eval()
            model.load_state_dict(state, strict=True)
            return model
        return build

    return bench_row("tiny (parity fixture)", official, {b: ours(b) for b in BACKENDS}, data, repeats, out_feat)


def l_row(official_cls: type, root: Path, scan: Path, seed: int, repeats: int) -> dict:
    kwargs = official_l_kwargs(root)
    preset = dataclasses.replace(load_config("L").backbone, enable_flash=False)
    from_official = BackboneConfig.from_official_kwargs(kwargs)
    if from_official != preset:
        differ = [f.name for f in dataclasses.fields(preset)
                  if getattr(preset, f.name) != getattr(from_official, f.name)]
        raise SystemExit(f"our preset 'L' differs from {L_CONFIG} in {differ}")
    print(f"preset 'L' = the backbone of {L_CONFIG} (enable_flash=False)", flush=True)
    torch.manual_seed(seed)
    official = official_cls(**kwargs).eval()
    state = official.state_dict()

    def ours(backend: str) -> Callable[[], PointTransformerMoE]:
        def build() -> PointTransformerMoE:
            model = PointTransformerMoE(dataclasses.replace(preset, conv_backend=backend)).eval()
            model.load_state_dict(state, strict=True)
            return model
        return build

    return bench_row(f"L ({scan.name}, 5 cm)", official, {b: ours(b) for b in BACKENDS}, scan_inputs(scan), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-root", type=Path, required=True,
                        help="a checkout of UVA-Computer-Vision-Lab/point_moe")
    parser.add_argument("--rows", nargs="+", default=["tiny", "L"], choices=("tiny", "L"))
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards of the tiny row")
    parser.add_argument("--l-repeats", type=int, default=1, help="timed forwards of the L row")
    parser.add_argument("--fixture", type=Path, default=FIXTURE, help="the parity fixture directory")
    parser.add_argument("--scan", type=Path, default=SCAN, help="a KITTI .bin for the L row")
    parser.add_argument("--seed", type=int, default=0, help="seed of the L row's random weights")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # spconv's CPU kernels race with more threads (parity README)
    official_cls = import_official(args.official_root.resolve())
    machine = dict(cpu=cpu_model(), torch=torch.__version__, torch_threads=torch.get_num_threads())
    print(f"{machine['cpu']}, torch {machine['torch']} ({machine['torch_threads']} thread), float32, eval", flush=True)
    rows = []
    if "tiny" in args.rows:
        rows.append(tiny_row(official_cls, args.fixture, args.repeats))
    if "L" in args.rows:
        rows.append(l_row(official_cls, args.official_root.resolve(), args.scan, args.seed, args.l_repeats))
    if args.json:
        print(json.dumps({"machine": machine, "official_root": str(args.official_root), "results": rows}))


if __name__ == "__main__":
    main()
