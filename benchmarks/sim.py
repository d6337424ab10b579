"""Benchmark the tabletop simulator: physics and pick-place steps per second, and the time of
one observation (4 cameras rendered + fused into one labelled cloud).

    python benchmarks/sim.py [--task put-block-into-matching-bowl] [--episodes 3] [--json]

- env steps: oracle pick-and-place actions per second (``env.step``, which runs the whole
  Ravens primitive and waits for objects to settle), with 6x8 images so rendering is negligible;
- physics: the ``stepSimulation`` calls per second inside those actions (240 Hz sim time);
- observation: ``env.observe()`` at 480x640 (Ravens' D415 size) for all four cameras, and
  ``fuse_views`` on it, with and without a 5 mm voxel grid. Medians of ``--repeats`` runs.

CPU time (``process_time``) is reported beside wall time: on a shared machine the wall clock
also counts other jobs. ``--json`` prints a JSON summary as the last line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable

import pybullet
from machine import cpu_model

from pointmoe_core.sim import TASKS, EnvConfig, Oracle, TabletopEnv, fuse_views


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``fn`` over ``repeats`` runs, and its last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def bench_env_steps(task: str, episodes: int) -> dict:
    """Oracle pick-place actions per second, and the physics steps they run (counted by
    wrapping ``pybullet.stepSimulation``, which the env calls through the module)."""
    physics_steps = 0
    step_simulation = pybullet.stepSimulation

    def counting_step(*args, **kwargs):
        nonlocal physics_steps
        physics_steps += 1
        return step_simulation(*args, **kwargs)

    actions, wall, cpu, successes = 0, 0.0, 0.0, 0
    with TabletopEnv(TASKS[task](), EnvConfig(image_size=(6, 8))) as env:
        for seed in range(episodes):
            env.reset(seed)
            oracle, done = Oracle(env), False
            while not done:
                action = oracle.act()
                pybullet.stepSimulation = counting_step
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                try:
                    _, _, done, _ = env.step(action)
                finally:
                    wall += time.perf_counter() - start_wall
                    cpu += time.process_time() - start_cpu
                    pybullet.stepSimulation = step_simulation
                actions += 1
            successes += env.task.success
    return {"env_steps_per_s": actions / wall, "env_steps_per_cpu_s": actions / cpu, "env_steps": actions,
            "physics_steps_per_s": physics_steps / wall, "physics_steps_per_cpu_s": physics_steps / cpu,
            "physics_steps_per_env_step": physics_steps / actions, "oracle_success": successes / episodes}


def bench_observation(task: str, repeats: int) -> dict:
    with TabletopEnv(TASKS[task]()) as env:
        env.reset(0)
        render_wall, render_cpu, obs = timed(env.observe, repeats)
        fuse_wall, fuse_cpu, cloud = timed(lambda: fuse_views(obs, env.cameras, env.class_ids), repeats)
        voxel_wall, voxel_cpu, thinned = timed(
            lambda: fuse_views(obs, env.cameras, env.class_ids, voxel_size=0.005), repeats)
    return {
        "image_size": list(env.cameras[0].image_size), "cameras": len(env.cameras),
        "render_ms": 1e3 * render_wall, "render_cpu_ms": 1e3 * render_cpu,
        "fuse_ms": 1e3 * fuse_wall, "fuse_cpu_ms": 1e3 * fuse_cpu, "points": len(cloud),
        "fuse_voxel_ms": 1e3 * voxel_wall, "fuse_voxel_cpu_ms": 1e3 * voxel_cpu, "voxel_points": len(thinned),
        "observation_ms": 1e3 * (render_wall + fuse_wall), "observation_cpu_ms": 1e3 * (render_cpu + fuse_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="put-block-into-matching-bowl", choices=list(TASKS))
    parser.add_argument("--episodes", type=int, default=3, help="oracle episodes timed for env steps/s")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    args = parser.parse_args()

    machine = {"cpu_model": cpu_model(), "nproc": os.cpu_count(), "python": platform.python_version(),
               "pybullet_api": pybullet.getAPIVersion(), "load_average": os.getloadavg()[0]}
    steps = bench_env_steps(args.task, args.episodes)
    observation = bench_observation(args.task, args.repeats)
    print(f"{args.task} | {machine}")
    print(f"{'physics steps/s':>18} {'env steps/s':>12} {'observation ms':>15} {'= render ms':>12} "
          f"{'+ fuse ms':>10} {'points':>8} {'fuse 5mm ms':>12}")
    results = {**steps, **observation}
    for clock, key in (("wall", ""), ("CPU", "cpu_")):
        print(f"{results[f'physics_steps_per_{key}s']:18.0f} {results[f'env_steps_per_{key}s']:12.2f} "
              f"{results[f'observation_{key}ms']:15.1f} {results[f'render_{key}ms']:12.1f} "
              f"{results[f'fuse_{key}ms']:10.1f} {results['points']:8d} "
              f"{results[f'fuse_voxel_{key}ms']:12.1f}   {clock}")
    if args.json:
        print(json.dumps({"task": args.task, "machine": machine, **results}))


if __name__ == "__main__":
    main()
