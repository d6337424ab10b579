"""Benchmark Pose-DiT checkpoints: sampling latency per scheduler and step count, and how far the
first planned step lands from the oracle's on demo frames.

    python benchmarks/pose_dit.py --flow FLOW_CKPT --ddpm DDPM_CKPT [--demos DIR] [--json]

- sampling: ``sample_poses`` alone (the denoising loop; scene and text encoding excluded) on one
  random condition set, rectified flow at 1, 2, 4 and 10 Euler steps and DDPM at 50; median of
  ``--repeats`` after one warm-up, one torch thread (the closed-loop eval reports end-to-end plan
  time beside it);
- accuracy (with ``--demos``): on every second demo frame, the xy distance from the first planned
  pick and place to the oracle's, and, as the bar a model that ignores the scene would reach, the
  distance of the oracle picks from their own mean.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from pointmoe_core.data.demo_frames import load_demo_frames
from pointmoe_core.plan.planner import PoseDiTPlanner
from pointmoe_core.plan.pose_dit import sample_poses

FLOW_STEPS = (1, 2, 4, 10)
DDPM_STEPS = 50
CONDITION_TOKENS = 9  # a typical scene: 8 objects + the instruction


def sampling_ms(planner: PoseDiTPlanner, num_steps: int, repeats: int) -> float:
    cond = torch.randn(1, CONDITION_TOKENS, planner.config.condition.hidden_size)
    mask = torch.ones(1, CONDITION_TOKENS, dtype=torch.bool)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        sample_poses(planner.model, planner.scheduler, cond, mask, planner.config.horizon, num_steps)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def first_step_errors_cm(planner: PoseDiTPlanner, demo_dir: str) -> dict[str, float]:
    frames = load_demo_frames(demo_dir)[::2]
    generator = torch.Generator().manual_seed(0)
    pick, place = [], []
    for frame in frames:
        planned = planner.plan(frame.xyz, frame.rgb, frame.instance_ids, frame.instruction,
                               generator=generator).steps[0]
        oracle = frame.remaining.steps[0]
        pick.append(np.linalg.norm(np.subtract(planned.pick_xyz, oracle.pick_xyz)[:2]))
        place.append(np.linalg.norm(np.subtract(planned.place_xyz, oracle.place_xyz)[:2]))
    oracle_picks = np.array([frame.remaining.steps[0].pick_xyz for frame in frames])[:, :2]
    spread = np.linalg.norm(oracle_picks - oracle_picks.mean(0), axis=1)
    return {"frames": len(frames), "pick_cm": 100 * float(np.median(pick)),
            "place_cm": 100 * float(np.median(place)), "oracle_pick_spread_cm": 100 * float(np.median(spread))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow", required=True, help="rectified-flow Pose-DiT checkpoint (file or directory)")
    parser.add_argument("--ddpm", required=True, help="DDPM Pose-DiT checkpoint (file or directory)")
    parser.add_argument("--demos", help="demo folder: also measure first-step errors of the flow model")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    flow, ddpm = PoseDiTPlanner.from_checkpoint(args.flow), PoseDiTPlanner.from_checkpoint(args.ddpm)
    results: dict[str, object] = {f"flow_{n}_ms": sampling_ms(flow, n, args.repeats) for n in FLOW_STEPS}
    results[f"ddpm_{DDPM_STEPS}_ms"] = sampling_ms(ddpm, DDPM_STEPS, args.repeats)
    for name, value in results.items():
        print(f"{name}: {value:.2f}")
    if args.demos:
        results["first_step_error"] = errors = first_step_errors_cm(flow, args.demos)
        print(f"first step on {errors['frames']} demo frames: pick {errors['pick_cm']:.1f} cm, place "
              f"{errors['place_cm']:.1f} cm from the oracle's; oracle picks {errors['oracle_pick_spread_cm']:.1f} cm "
              "from their mean")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
