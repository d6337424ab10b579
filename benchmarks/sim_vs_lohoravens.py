"""How close our simulator's scenes are to LoHoRavens': the same tasks rendered in both, compared.

For each task and seed, each environment is reset and its four cameras fused into one labelled
cloud (5 mm voxels, the demos' grid); per object kind (table, robot, block, bowl, zone) it
measures the points per scene, the objects per scene, each object's extent (the 2nd-98th
percentile box of its points) and how far the mean colour of its points lies from its palette
colour (``rgb_error``, 0-255 units: shading and lighting). It prints both side by side with
the ratio ours / LoHoRavens and ends with a JSON line.

    python benchmarks/sim_vs_lohoravens.py --lohoravens-root PATH [--seeds 5] [--json]

LoHoRavens is run unmodified from the checkout (``pointmoe_core.sim.lohoravens``); our simulator at
LoHoRavens' camera resolution (480x640) and, for the robot, with the UR5 when ``--assets-root``
(Ravens' assets, e.g. ../shared/data/ravens_assets) is given.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np
from machine import cpu_model

from pointmoe_core.sim.bridge import RavensBridge
from pointmoe_core.sim.episode import open_env
from pointmoe_core.sim.objects import COLORS, KINDS, SEMANTIC_CLASSES

TASKS = ("pick-and-place-primitive", "put-block-into-matching-bowl", "put-even-blocks-in-same-color-zone",
         "stack-blocks-of-same-color")
VOXEL = 0.005
KIND_OF_CLASS = np.array([next(kind for kind in KINDS if name.endswith(kind)) for name in SEMANTIC_CLASSES])


def scene_statistics(env, seed: int) -> dict[str, dict[str, list]]:
    """Per kind: points in the scene, and per object its point count, extent and mean colour."""
    bridge = RavensBridge(env, voxel_size=VOXEL)
    env.seed(seed)
    scene = bridge.reset()
    labelled = scene.cloud.label >= 0
    kinds = np.full(len(scene), "", dtype=object)
    kinds[labelled] = KIND_OF_CLASS[scene.cloud.label[labelled]]
    stats: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for kind in KINDS:
        mask = kinds == kind
        stats[kind]["points"].append(int(mask.sum()))
        bodies = np.unique(scene.object_id[mask])
        stats[kind]["objects"].append(len(bodies) if kind in ("block", "bowl", "zone") else 0)
        for body in bodies:
            points = mask & (scene.object_id == body)
            xyz = scene.cloud.xyz[points]
            if len(xyz) < 10 or kind not in ("block", "bowl", "zone"):
                continue
            low, high = np.percentile(xyz, [2, 98], axis=0)
            stats[kind]["extent_xy"].append(float(np.max(high[:2] - low[:2])))
            stats[kind]["extent_z"].append(float(high[2] - low[2]))
            stats[kind]["object_points"].append(int(points.sum()))
            color = next(c for c in COLORS if c in SEMANTIC_CLASSES[scene.cloud.label[points][0]])
            observed = scene.cloud.rgb[points].astype(float).mean(axis=0)
            stats[kind]["rgb_error"].append(float(np.linalg.norm(observed - 255 * np.array(COLORS[color]))))
    return stats


def measure(env_name: str, task: str, seeds: list[int], args) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with open_env(env_name, task, "test", (480, 640), args.assets_root if env_name == "ours" else None,
                  args.lohoravens_root) as env:
        for seed in seeds:
            for kind, values in scene_statistics(env, seed).items():
                for key, items in values.items():
                    merged[kind][key] += items
    return {kind: {key: float(np.mean(items)) for key, items in values.items() if items}
            for kind, values in merged.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lohoravens-root", help="LoHoRavens checkout (default $LOHORAVENS_ROOT)")
    parser.add_argument("--assets-root", help="Ravens assets: our simulator then shows the UR5 arm")
    parser.add_argument("--seeds", type=int, default=5, help="scenes per task and environment")
    parser.add_argument("--first-seed", type=int, default=10001)
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    start = time.perf_counter()
    results = {task: {env: measure(env, task, seeds, args) for env in ("ours", "lohoravens")} for task in TASKS}
    if not args.json:
        keys = ("points", "objects", "object_points", "extent_xy", "extent_z", "rgb_error")
        print(f"{len(seeds)} scenes per task and env (seeds {seeds[0]}-{seeds[-1]}), {VOXEL * 1e3:.0f} mm voxels; "
              f"{cpu_model()}, {time.perf_counter() - start:.0f} s")
        print(f"{'task':36s} {'kind':6s} " + " ".join(f"{key + ' ours/LHR':>24s}" for key in keys))
        for task, by_env in results.items():
            for kind in KINDS:
                ours, theirs = by_env["ours"].get(kind, {}), by_env["lohoravens"].get(kind, {})
                cells = []
                for key in keys:
                    a, b = ours.get(key), theirs.get(key)
                    ratio = f"{a / b:5.2f}x" if a is not None and b else "   - "
                    cells.append(f"{_fmt(a)}/{_fmt(b)} {ratio}".rjust(24))
                print(f"{task:36s} {kind:6s} " + " ".join(cells))
    print(json.dumps({"benchmark": "sim_vs_lohoravens", "seeds": seeds, "machine": cpu_model(), "results": results}))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.3f}"


if __name__ == "__main__":
    main()
