"""Per-plan latency of planners side by side: Pose-DiT with MiniLM tokens vs the 3D-MoE planner
(dense, MoE x2, MoE x4), end to end on the same simulator clouds.

    python benchmarks/planner_latency.py --demos DIR --planner CKPT [--planner CKPT ...] [--json]

Each ``--planner`` is a Pose-DiT checkpoint or a 3D-MoE planner folder (``load_planner``). Every
planner plans on the same ``--frames`` demo frames (objects from the simulator's ids), ``--repeats``
times each after a warm-up plan on each; the time is ``PoseSequence.planning_time`` (object tokens,
instruction or LLM prefill, sampling with the checkpoint's steps, decoding), median over all
plans, on ``--threads`` torch threads, with a 3D-MoE planner's LLM in each ``--llm-dtype``. Ratios
are against the first planner given. Each planner's start-up (``load_planner`` to ready, imports
excluded; a 3D-MoE planner reads its de-quantised LLM from the cache, or makes it on a first
start) is printed beside it. ``--device cuda`` plans on a GPU, where ``--cuda-graphs`` adds each
planner with a bfloat16 LLM, replayed as CUDA graphs (``load_planner(..., cuda_graphs=True)``;
recorded during the warm-up plans, whose total time is printed too; the largest difference between
its plans and the eager bfloat16 ones, same seeds, is printed as well). ``--llm-folder`` loads a 3D-MoE
planner's base LLM from a Hugging Face folder instead of its saved source. With
``--llm-random-weights`` that folder needs only its config and tokenizer: the LLM gets seeded random
weights of that architecture, which plan nonsense in about the same time (a plan's work depends on
the weights only through which experts the routers pick and which objects the plan acts on; on a
CPU 4-7 % less than with the real weights, benchmarks/RESULTS.md), for a machine the real weights
cannot reach. ``--count-ops`` prints how many aten operators one plan dispatches (each one host
dispatch, and on a GPU in eager mode most of them a kernel launch), and how many of them are in the
parts CUDA graphs record (the LLM's pass after the cached prefix, the object pointer with Pose-DiT's
denoising loop, the scene tokenizer); the rest runs eagerly. ``--profile N`` prints, for one more plan
of each planner, the N operators that took the most device time (CPU time on a CPU), the host and
device time of a 3D-MoE plan's parts (the prompt with its scene tokens, the LLM pass, the object
pointer with Pose-DiT; graphed or not), and on CUDA the lines that made the host wait for the GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model
from operators import OperatorCount, print_profile

from pointmoe_core.common.device import LLM_DTYPES
from pointmoe_core.data.demo_frames import load_demo_frames
from pointmoe_core.plan.interface import load_planner
from pointmoe_core.plan.moe_planner import MoEPlanner


def plan_ms(planner, frames, repeats: int) -> tuple[float, float]:
    """The median ms per plan, and the seconds of the warm-up plans (one per frame) before it."""
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for f in frames:  # with CUDA graphs, each prompt length's graph is recorded here
        planner.plan(f.xyz, f.rgb, f.instance_ids, f.instruction, generator=generator)
    warmup = time.perf_counter() - start
    times = [planner.plan(f.xyz, f.rgb, f.instance_ids, f.instruction, generator=generator).planning_time
             for f in frames for _ in range(repeats)]
    return 1000 * statistics.median(times), warmup


def plan_positions(planner, frames) -> list[list[tuple[float, ...]]]:
    """Each frame's plan (the seed is the frame's index) as its steps' pick and place positions."""
    plans = [planner.plan(f.xyz, f.rgb, f.instance_ids, f.instruction, generator=torch.Generator().manual_seed(i))
             for i, f in enumerate(frames)]
    return [[(*step.pick_xyz, *step.place_xyz) for step in plan.steps] for plan in plans]


def largest_difference(plans: list, others: list) -> float:
    """The largest position difference in metres between two planners' plans of the same frames;
    infinite where they differ in their number of steps."""
    if any(len(a) != len(b) for a, b in zip(plans, others)):
        return float("inf")
    return max((abs(x - y) for a, b in zip(plans, others) for sa, sb in zip(a, b) for x, y in zip(sa, sb)),
               default=0.0)


@contextlib.contextmanager
def each_part_within(parts: dict[str, list[tuple[object, str]]], context):
    """While on, each listed method of each part runs inside ``context(part)``."""
    for name, methods in parts.items():
        for owner, attribute in methods:
            def run(*args, _method=getattr(owner, attribute), _name=name, **kwargs):
                with context(_name):
                    return _method(*args, **kwargs)
            setattr(owner, attribute, run)
    try:
        yield
    finally:
        for methods in parts.values():
            for owner, attribute in methods:
                delattr(owner, attribute)


def plan_once(planner, frame):
    return planner.plan(frame.xyz, frame.rgb, frame.instance_ids, frame.instruction,
                        generator=torch.Generator().manual_seed(0))


def operators_per_plan(planner, frame) -> dict[str, int]:
    """Operators of one plan: all, and in each part CUDA graphs record."""
    parts = {"llm_pass": [(planner, "_suffix_states")],
             "pointer_and_pose_dit": [(planner, "_point_and_sample_tensors")],
             "scene_tokenizer": [(planner.scene, "forward")]}
    counts = {name: OperatorCount() for name in ["plan", *parts]}
    with each_part_within(parts, counts.get), counts["plan"]:
        plan_once(planner, frame)
    return {name: count.count for name, count in counts.items()}


def profile_plan(planner, frame, device: torch.device, rows: int, name: str) -> None:
    """``print_profile`` of one plan; a 3D-MoE plan's parts marked, whether replayed as graphs or not."""
    parts = {}
    if isinstance(planner, MoEPlanner):
        parts = {"prompt_and_scene_tokens": [(planner, "_spliced")], "llm_pass": [(planner, "_condition_states")],
                 "pointer_and_pose_dit": [(planner, "_point_and_sample")]}
    print(f"== profile of one plan: {name}", flush=True)
    with each_part_within(parts, torch.profiler.record_function):
        print_profile(lambda: plan_once(planner, frame), device, rows, "plan", tuple(parts))


def random_weights_folder(source: str, seed: int = 0) -> str:
    """A model folder with ``source``'s config and tokenizer files and seeded random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(tempfile.mkdtemp(prefix="random-llm-"))
    for file in Path(source).iterdir():
        if file.is_file() and file.suffix not in (".safetensors", ".bin"):
            shutil.copy(file, folder)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source)).save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demos", required=True, help="demo folder of `pointmoe sim demos`")
    parser.add_argument("--planner", action="append", required=True, help="checkpoint or planner folder (repeat)")
    parser.add_argument("--frames", type=int, default=5, help="demo frames, evenly spread over the folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--llm-dtype", nargs="+", choices=LLM_DTYPES, default=["float32"],
                        help="a 3D-MoE planner's LLM weights; several: each planner in each, side by side")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--llm-folder", help="a 3D-MoE planner's base LLM from this Hugging Face folder instead of "
                        "its saved source (the same model stored elsewhere)")
    parser.add_argument("--llm-random-weights", action="store_true",
                        help="with --llm-folder: its architecture and tokenizer, seeded random weights (timing only)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="on CUDA: each 3D-MoE planner also with a bfloat16 LLM, replayed as CUDA graphs")
    parser.add_argument("--count-ops", action="store_true",
                        help="also count the aten operators of one plan (3D-MoE planners without CUDA graphs)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile one plan of each planner: its N slowest operators and its parts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.llm_random_weights and not args.llm_folder:
        parser.error("--llm-random-weights needs --llm-folder (the config and tokenizer to build it from)")
    if args.cuda_graphs and torch.device(args.device).type != "cuda":
        parser.error("--cuda-graphs needs --device cuda")
    torch.set_num_threads(args.threads)
    frames = load_demo_frames(args.demos)
    frames = frames[:: max(1, len(frames) // args.frames)][: args.frames]
    device = torch.device(args.device)
    machine = f"{cpu_model()}, {args.threads} torch thread(s)"
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    weights = " (LLM: random weights of its architecture)" if args.llm_random_weights else ""
    print(f"{machine}, {len(frames)} frames x {args.repeats}{weights}")
    results, startup, warmup, operators, positions = {}, {}, {}, {}, {}
    llm_folder = random_weights_folder(args.llm_folder) if args.llm_random_weights else args.llm_folder
    try:
        variants = [(dtype, False) for dtype in args.llm_dtype] + [("bfloat16", True)] * args.cuda_graphs
        for path in args.planner:
            for dtype, graphs in variants:
                name = path if len(variants) == 1 else f"{path} ({dtype}{', CUDA graphs' if graphs else ''})"
                start = time.perf_counter()
                planner = load_planner(path, map_location=device, llm_dtype=dtype, llm_folder=llm_folder,
                                       cuda_graphs=graphs)
                startup[name] = time.perf_counter() - start
                results[name], warmup[name] = plan_ms(planner, frames, args.repeats)
                if args.cuda_graphs and dtype == "bfloat16":  # the graphs must plan what eager mode plans
                    positions[graphs] = plan_positions(planner, frames)
                if args.count_ops and not graphs and isinstance(planner, MoEPlanner):
                    operators[name] = operators_per_plan(planner, frames[0])
                if args.profile:
                    profile_plan(planner, frames[0], device, args.profile, name)
    finally:
        if llm_folder != args.llm_folder:
            shutil.rmtree(llm_folder)
    first = next(iter(results.values()))
    for name, ms in results.items():
        print(f"{name}: {ms:.1f} ms per plan ({ms / first:.2f}x the first), ready in {startup[name]:.1f} s, "
              f"warm-up plans {warmup[name]:.1f} s")
        if name in operators:
            ops = operators[name]
            eager = ops["plan"] - ops["llm_pass"] - ops["pointer_and_pose_dit"] - ops["scene_tokenizer"]
            print(f"  aten operators in one plan: {ops['plan']}; CUDA graphs record the LLM pass after the prefix "
                  f"({ops['llm_pass']}), the object pointer with Pose-DiT's denoising ({ops['pointer_and_pose_dit']}) "
                  f"and the scene tokenizer ({ops['scene_tokenizer']}); eager: the rest ({eager})")
    graphs_vs_eager = largest_difference(positions[True], positions[False]) if len(positions) == 2 else None
    if graphs_vs_eager is not None:
        print(f"CUDA graphs against eager (bfloat16, same seeds): largest pick/place difference "
              f"{graphs_vs_eager * 1000:.3f} mm over {len(frames)} plans")
    if args.json:
        print(json.dumps({"ms_per_plan": results, "startup_s": startup, "warmup_s": warmup, "operators": operators,
                          "graphs_vs_eager_m": graphs_vs_eager, "llm_random_weights": args.llm_random_weights}))


if __name__ == "__main__":
    main()
