"""Benchmark ``Segmenter.predict`` (points per second) with the tiny config on CPU.

    python benchmarks/segmenter.py [--sizes 30000 120000] [--repeats 3] [--device cpu] [--threads N] [--json]

The input is a synthetic scanned room (floor, ceiling, four walls, furniture) with colours, at
each size. Each size is timed with normals given and, unless ``--normals given``, without them,
so that open3d estimates them inside predict as it does for a depth-camera cloud. Times are the
median of ``--repeats`` calls after one warm-up, wall clock for the whole call (voxelisation,
features, network, mapping back to every input point), plus the process CPU time, which with
``--threads 1`` estimates the wall time of a quiet single core when other jobs share the CPU. The
model is untrained with a random class table: throughput does not depend on the weights, and no text model is needed.
``--json`` prints a JSON summary as the last line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from machine import cpu_model

from pointmoe_core.seg import PointMoESegmentor, Segmenter, load_config


def synthetic_room(num_points: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A 6 x 5 x 2.8 m room sampled uniformly by area: coord, colour (uint8) and normal."""
    rng = np.random.default_rng(seed)
    size = np.array([6.0, 5.0, 2.8])
    # (origin, edge u, edge v, normal, colour): floor, ceiling, four walls, a table top and a cabinet side
    planes = [
        ((0, 0, 0), (6, 0, 0), (0, 5, 0), (0, 0, 1), (150, 120, 90)),
        ((0, 0, 2.8), (6, 0, 0), (0, 5, 0), (0, 0, -1), (240, 240, 240)),
        ((0, 0, 0), (0, 5, 0), (0, 0, 2.8), (1, 0, 0), (220, 215, 200)),
        ((6, 0, 0), (0, 5, 0), (0, 0, 2.8), (-1, 0, 0), (220, 215, 200)),
        ((0, 0, 0), (6, 0, 0), (0, 0, 2.8), (0, 1, 0), (200, 210, 220)),
        ((0, 5, 0), (6, 0, 0), (0, 0, 2.8), (0, -1, 0), (200, 210, 220)),
        ((2, 2, 0.75), (1.6, 0, 0), (0, 0.9, 0), (0, 0, 1), (90, 60, 30)),
        ((4.5, 0.5, 0), (0, 1.2, 0), (0, 0, 1.8), (-1, 0, 0), (60, 80, 120)),
    ]
    area = np.array([np.linalg.norm(np.cross(u, v)) for _, u, v, _, _ in planes])
    counts = rng.multinomial(num_points, area / area.sum())
    coord, color, normal = [], [], []
    for (origin, u, v, n, c), k in zip(planes, counts):
        a, b = rng.random((2, k, 1))
        coord.append(np.asarray(origin) + a * np.asarray(u) + b * np.asarray(v) + rng.normal(0, 0.003, (k, 3)))
        color.append(np.clip(np.asarray(c) + rng.normal(0, 10, (k, 3)), 0, 255))
        normal.append(np.tile(n, (k, 1)))
    coord = np.clip(np.concatenate(coord), 0, size)
    return dict(coord=coord.astype(np.float32), color=np.concatenate(color).astype(np.uint8),
                normal=np.concatenate(normal).astype(np.float32))



def time_predict(segmenter: Segmenter, room: dict[str, np.ndarray], with_normals: bool, repeats: int) -> dict:
    normal = room["normal"] if with_normals else None
    result = segmenter.predict(room["coord"], room["color"], normal)  # warm-up
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        segmenter.predict(room["coord"], room["color"], normal)  # returns numpy: the device is synced
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    seconds = statistics.median(times)
    n = len(room["coord"])
    return dict(points=n, voxels=result.num_voxels, normals="given" if with_normals else "open3d",
                seconds=round(seconds, 3), points_per_s=round(n / seconds),
                min_seconds=round(min(times), 3), max_seconds=round(max(times), 3),
                cpu_seconds=round(statistics.median(cpu_times), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 120_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default="tiny", help="preset or YAML (default tiny)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--normals", choices=("given", "both"), default="both",
                        help="'both' also times open3d normal estimation")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = PointMoESegmentor(load_config(args.config))
    if hasattr(model.head, "set_class_embedding"):
        model.head.set_class_embedding(torch.randn(len(model.config.class_names), model.config.head.text_dim))
    segmenter = Segmenter(model, device=args.device)
    backend = model.backbone.embedding.stem["conv"].backend
    machine = dict(cpu=cpu_model(), nproc=os.cpu_count(), torch_threads=torch.get_num_threads(),
                   torch=torch.__version__, device=str(args.device), conv_backend=backend,
                   load_average=list(os.getloadavg()))
    if torch.device(args.device).type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(args.device)
    print(f"config {args.config} on {machine.get('gpu', args.device)}, CPU: {machine['cpu']}, "
          f"nproc {machine['nproc']}, "
          f"torch {machine['torch']} ({machine['torch_threads']} threads), sparse conv {backend}, "
          f"load average {machine['load_average']}")
    rows = []
    for size in args.sizes:
        room = synthetic_room(size)
        for with_normals in (True, False)[: 2 if args.normals == "both" else 1]:
            row = time_predict(segmenter, room, with_normals, args.repeats)
            rows.append(row)
            print(f"{row['points']:>8} points ({row['voxels']} voxels, normals {row['normals']:>6}): "
                  f"{row['seconds']:.3f} s median -> {row['points_per_s']:,} points/s "
                  f"(min {row['min_seconds']:.3f}, max {row['max_seconds']:.3f}; "
                  f"process CPU {row['cpu_seconds']:.3f} s)", flush=True)
    machine["load_average_end"] = list(os.getloadavg())
    if args.json:
        print(json.dumps(dict(config=args.config, machine=machine, results=rows)))


if __name__ == "__main__":
    main()
