"""perception_node's whole callback on a real LiDAR scan: decode, segment, encode, per model size.

    python benchmarks/perception_latency.py [--points 120000] [--configs tiny edge base L]
        [--backends torch spconv] [--device cpu|cuda] [--dtype float32|bfloat16|float16]
        [--threads N] [--repeats 3] [--loops | --grouped] [--scan FILE.bin] [--profile N] [--count-ops]
        [--json]

The scan is SemanticKITTI sequence 00, frame 000000 from ``../shared/data/semantickitti`` (~124k
points; ``--scan`` names another KITTI .bin), cut or tiled to ``--points``. Each step is what
``perception_node`` does with a PointCloud2 (``seg.perception.segment_message``, split into its
stages): ``decode`` the message (x, y, z, intensity), ``segment`` (``Segmenter.predict``: range
crop, 5 cm voxels, the network, labels back to every point) and ``encode`` the labelled cloud as a
PointCloud2. The models are the presets with random weights and class table (speed does not depend
on the weights), the outdoor input (coordinates + intensity), each sparse-conv backend given that is
importable. The median of ``--repeats`` callbacks after one warm-up; a JSON line with ``--json``.
Each row names the kernels that ran (``Segmenter.kernels``). ``--profile N`` adds, per model, the N
operators that took the most device time (CPU time on a CPU) in one more callback, from
``torch.profiler``, and on CUDA the lines of ours that made the host wait for the GPU
(``torch.cuda.set_sync_debug_mode``). ``--count-ops`` counts the aten operators of one more callback
(host dispatches; on a GPU in eager mode mostly kernel launches); with ``--grouped`` a CPU runs the
grouped-GEMM paths a GPU takes in bfloat16, so the count there approximates the GPU's.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model
from operators import OperatorCount, print_profile

from pointmoe_core.common.heap import keep_freed_memory
from pointmoe_core.io import PointCloud, cloud_from_msg, msg_from_cloud, read_kitti_bin
from pointmoe_core.seg import OUTDOOR_INPUT, PointMoESegmentor, Segmenter, load_config
from pointmoe_core.seg.moe import SparseMoE
from pointmoe_core.seg.perception import InputMapping, segment_cloud
from pointmoe_core.seg.segmenter import AUTOCAST_DTYPES
from pointmoe_core.seg.sparse_conv import SubMConv3d

SCAN = Path(__file__).resolve().parents[2] / "shared/data/semantickitti/sequences/00/velodyne/000000.bin"
STAGES = ("decode", "segment", "encode")


def scan_message(path: Path, points: int):
    """The scan as a PointCloud2 (rosbags class) of exactly ``points`` points."""
    scan = read_kitti_bin(path)
    index = np.arange(points) % len(scan.xyz)  # tiled past the scan's end
    return msg_from_cloud(PointCloud(xyz=scan.xyz[index], intensity=scan.intensity[index]),
                          ("velodyne", 0.0), msg_class="rosbags")


def segmenter_for(config: str, backend: str, device: str, dtype: str = "float32", products: str = "auto") -> Segmenter:
    preset = load_config(config)
    preset = dataclasses.replace(preset, backbone=dataclasses.replace(preset.backbone, conv_backend=backend))
    torch.manual_seed(0)
    model = PointMoESegmentor(preset)
    # "loop": a GEMM per kernel offset and per expert even where grouped GEMMs would run; "grouped":
    # grouped GEMMs everywhere (on a CPU torch runs them as loops of its own: the GPU's operators)
    for module in model.modules():
        if isinstance(module, SubMConv3d):
            module.offset_products = products
        elif isinstance(module, SparseMoE):
            module.dispatch = products
    model.head.set_class_embedding(torch.randn(len(preset.class_names), preset.head.text_dim))
    return Segmenter(model, device=device, input=OUTDOOR_INPUT, dtype=dtype)


def callback_seconds(segmenter: Segmenter, msg, mapping: InputMapping) -> dict[str, float]:
    times = {}
    start = time.perf_counter()
    cloud = cloud_from_msg(msg, fields=["intensity"], recentre=True)
    times["decode"] = time.perf_counter() - start
    start = time.perf_counter()
    result = segment_cloud(cloud, segmenter, mapping)
    times["segment"] = time.perf_counter() - start  # predict returns numpy: the device is synced
    start = time.perf_counter()
    msg_from_cloud(result.segmented, ("velodyne", 0.0), msg_class="rosbags")
    times["encode"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=120_000)
    parser.add_argument("--configs", nargs="+", default=["tiny", "edge", "base", "L"])
    parser.add_argument("--backends", nargs="+", default=["torch", "spconv"], choices=("torch", "spconv"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(AUTOCAST_DTYPES),
                        help="autocast dtype of the forward (Segmenter dtype)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="tune malloc as perception_node does by default (common.heap)")
    parser.add_argument("--repeats", type=int, default=3)
    products = parser.add_mutually_exclusive_group()
    products.add_argument("--loops", action="store_const", const="loop", dest="products", default="auto",
                          help="one GEMM per kernel offset and per expert even where grouped GEMMs would run")
    products.add_argument("--grouped", action="store_const", const="grouped", dest="products",
                          help="grouped GEMMs for every convolution and MoE layer, also on a CPU")
    parser.add_argument("--scan", type=Path, default=SCAN, help="a KITTI .bin (x, y, z, intensity float32)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N most expensive operators of one more callback per model")
    parser.add_argument("--count-ops", action="store_true",
                        help="also count the aten operators of one more callback per model")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.scan.is_file():
        raise SystemExit(f"no SemanticKITTI scan at {args.scan}: this benchmark reads ../shared/data, or --scan")
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = args.keep_freed_memory and keep_freed_memory()
    backends = [b for b in args.backends if b == "torch" or importlib.util.find_spec("spconv") is not None]
    skipped = sorted(set(args.backends) - set(backends))
    device = torch.device(args.device)
    machine = dict(cpu=cpu_model(), torch=torch.__version__, torch_threads=torch.get_num_threads(), device=str(device),
                   dtype=args.dtype, keep_freed_memory=kept,
                   gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    print(f"{machine['gpu'] or machine['cpu']}, torch {machine['torch']} ({machine['torch_threads']} threads), "
          f"{args.points} points, {args.dtype}, keep_freed_memory {kept}"
          + (f"; not installed: {', '.join(skipped)}" if skipped else ""),
          flush=True)
    msg = scan_message(args.scan, args.points)
    mapping = InputMapping(use_rgb=False, use_normals=False)
    rows = []
    for config in args.configs:
        for backend in backends:
            segmenter = segmenter_for(config, backend, args.device, args.dtype, args.products)
            callback_seconds(segmenter, msg, mapping)  # warm-up
            runs = [callback_seconds(segmenter, msg, mapping) for _ in range(args.repeats)]
            row = {"config": config, "backend": backend,
                   **{k: round(1000 * statistics.median(r[k] for r in runs), 1) for k in (*STAGES, "total")},
                   "kernels": segmenter.kernels}
            if args.count_ops:
                with OperatorCount() as counted:
                    callback_seconds(segmenter, msg, mapping)
                row["operators"] = counted.count
            rows.append(row)
            print(f"{config:>5} {backend:>6}: " + "  ".join(f"{k} {row[k]:.1f} ms" for k in (*STAGES, "total"))
                  + "  (" + ", ".join(f"{k} {v}" for k, v in segmenter.kernels.items()) + ")"
                  + (f"  {row['operators']} aten operators" if args.count_ops else ""), flush=True)
            if args.profile:
                print_profile(lambda: callback_seconds(segmenter, msg, mapping), segmenter.device, args.profile,
                              "callback")
        if len(backends) == 2:
            torch_ms, spconv_ms = (r["total"] for r in rows[-2:])
            print(f"{config:>5}: pure-torch / spconv = {torch_ms / spconv_ms:.2f}x the time", flush=True)
    if args.json:
        print(json.dumps({"points": args.points, "machine": machine, "results": rows}))


if __name__ == "__main__":
    main()
