"""Benchmark the Point-MoE W_o layer (SparseMoE) against a dense gated MLP of equal active FLOPs
and against a per-token Python loop.

    python benchmarks/moe_layer.py [--tokens 32768] [--loop-tokens 512] [--json]

Runs on CPU, and on CUDA as well when torch sees a GPU. The dense baseline has hidden size
``k * 2C``, i.e. the same multiply-adds per token as k experts of hidden size 2C (the router's
E*C is extra for the MoE). The per-token loop is timed on fewer tokens and reported per token.
Where the grouped GEMMs are one kernel each (bfloat16 on a Hopper / datacenter Blackwell GPU: an MoE
forward then reads nothing back to the host), the MoE and dense forwards are also replayed as CUDA
graphs (``common.cuda_graphs``): without the host's dispatching, what each costs the GPU (the
backbone cannot replay its layers: its point counts change with every cloud).
``--json`` prints a JSON summary as the last line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import torch
from machine import cpu_model

from pointmoe_core.common.cuda_graphs import GraphedFunction
from pointmoe_core.common.grouped_mm import fused, keep_operands
from pointmoe_core.seg.moe import GatedExpert, SparseMoE


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_token_loop(moe: SparseMoE, x: torch.Tensor) -> torch.Tensor:
    """The naive formulation: route and run experts one token at a time."""
    rows = []
    for token in x:
        probs = torch.softmax(moe.gate(token), -1)
        weights, experts = probs.topk(moe.top_k)
        weights = weights / weights.sum()
        rows.append(sum(w * moe.experts[int(e)](token) for w, e in zip(weights, experts)))
    return torch.stack(rows)


def bench_device(device: torch.device, dtype: torch.dtype, dim: int, num_experts: int, top_k: int, tokens: int,
                 loop_tokens: int, repeats: int) -> dict:
    torch.manual_seed(0)
    moe = SparseMoE(dim, num_experts=num_experts, top_k=top_k).to(device, dtype)
    keep_operands(moe)  # as the Segmenter's inference copy: grouped GEMMs' stacked weights built once
    dense = GatedExpert(dim, top_k * 2 * dim).to(device, dtype)
    x = torch.randn(tokens, dim, device=device, dtype=dtype)
    x_loop = x[:loop_tokens]
    # the expert loop everywhere; grouped GEMMs where torch has them on a GPU (a CPU runs them as a loop)
    dispatches = ["loop"] + (["grouped"] if device.type == "cuda" and hasattr(torch, "_grouped_mm") else [])

    def forward(module: torch.nn.Module, inp: torch.Tensor,
                call: Callable[[torch.Tensor], object] | None = None) -> Callable[[], object]:
        def run() -> object:  # ``call``: the module's forward as something else runs it
            module.eval()
            with torch.no_grad():
                return (call or module)(inp)
        return run

    def forward_backward(module: torch.nn.Module) -> Callable[[], object]:
        inp = x.detach().requires_grad_(True)

        def run() -> object:
            module.train()
            module.zero_grad(set_to_none=True)
            module(inp).float().square().mean().backward()
        return run

    def loop() -> object:
        with torch.no_grad():
            return per_token_loop(moe.eval(), x_loop)

    result = {
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "moe": f"SparseMoE E={num_experts} top-{top_k} hidden {2 * dim}",
        "dense": f"dense gated MLP hidden {top_k * 2 * dim}",
        "tokens": tokens,
        "dense_fwd_s": median_seconds(forward(dense, x), device, repeats),
        "dense_fwd_bwd_s": median_seconds(forward_backward(dense), device, repeats),
        "dispatch": {},
        "loop_tokens": loop_tokens,
        "loop_fwd_s": median_seconds(loop, device, max(1, repeats // 3), warmup=1),
    }
    for dispatch in dispatches:
        moe.dispatch = dispatch
        fwd = median_seconds(forward(moe, x), device, repeats)
        fwd_bwd = median_seconds(forward_backward(moe), device, repeats)
        result["dispatch"][dispatch] = {
            "moe_fwd_s": fwd, "moe_fwd_bwd_s": fwd_bwd, "moe_fwd_us_per_token": 1e6 * fwd / tokens,
            "moe_over_dense_fwd": fwd / result["dense_fwd_s"],
            "moe_over_dense_fwd_bwd": fwd_bwd / result["dense_fwd_bwd_s"]}
    with torch.no_grad():
        fused_here = fused(device, dtype)
    if fused_here:  # grouped GEMMs in one kernel each: an MoE forward reads nothing back
        result["cuda_graphs"] = {}
        moe.dispatch = "grouped"
        for name, module in (("dense", dense), ("moe_grouped", moe)):
            graphed = GraphedFunction(module)
            run = forward(module, x, graphed)
            seconds = median_seconds(run, device, repeats)
            # a capture that failed ran eagerly: no graph time to report
            result["cuda_graphs"][name] = {"fwd_s": None if graphed.failed else seconds, "failed": graphed.failed}
        times = [r["fwd_s"] for r in result["cuda_graphs"].values()]
        result["cuda_graphs"]["moe_over_dense_fwd"] = None if None in times else times[1] / times[0]
    moe.dispatch = "auto"
    with torch.no_grad():  # what an inference forward picks (training keeps the loop)
        result["auto_dispatch"] = moe.kernel(device, dtype)
    result["loop_fwd_us_per_token"] = 1e6 * result["loop_fwd_s"] / loop_tokens
    fastest = min(result["dispatch"].values(), key=lambda d: d["moe_fwd_s"])
    result["loop_over_moe_per_token"] = result["loop_fwd_us_per_token"] / fastest["moe_fwd_us_per_token"]
    return result


def print_table(r: dict) -> None:
    ms = lambda s: f"{1e3 * s:9.2f}"  # noqa: E731
    print(f"\n[{r['device']}, {r['dtype']}]  N={r['tokens']} tokens (loop: {r['loop_tokens']} tokens); "
          f"auto dispatch: {r['auto_dispatch']}")
    print(f"{'':44}{'fwd ms':>9}  {'fwd+bwd ms':>10}  {'fwd us/token':>12}  {'MoE/dense fwd, fwd+bwd':>22}")
    for dispatch, d in r["dispatch"].items():
        print(f"{r['moe'] + ', ' + dispatch:44}{ms(d['moe_fwd_s'])}  {ms(d['moe_fwd_bwd_s']):>10}  "
              f"{d['moe_fwd_us_per_token']:12.3f}  "
              f"{d['moe_over_dense_fwd']:10.2f}x {d['moe_over_dense_fwd_bwd']:9.2f}x")
    print(f"{r['dense']:44}{ms(r['dense_fwd_s'])}  {ms(r['dense_fwd_bwd_s']):>10}  "
          f"{1e6 * r['dense_fwd_s'] / r['tokens']:12.3f}")
    print(f"{'per-token loop (fwd only)':44}{'':9}  {'':>10}  {r['loop_fwd_us_per_token']:12.3f}")
    print(f"per-token loop / fastest MoE dispatch, per token: {r['loop_over_moe_per_token']:.0f}x")
    if "cuda_graphs" in r:
        graphs = r["cuda_graphs"]
        times = ", ".join(f"{name} {'failed: ' + g['failed'] if g['failed'] else ms(g['fwd_s']).strip() + ' ms'}"
                          for name, g in graphs.items() if name != "moe_over_dense_fwd")
        ratio = graphs["moe_over_dense_fwd"]
        print(f"replayed as CUDA graphs, fwd: {times}" + ("" if ratio is None else f"; MoE/dense {ratio:.2f}x"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32768)
    parser.add_argument("--loop-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="weights and tokens (bfloat16: the grouped GEMMs' fused kernel on a GPU)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    args = parser.parse_args()

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    machine = {
        "cpu_model": cpu_model(),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    dtype = getattr(torch, args.dtype)
    print(f"SparseMoE C={args.dim} E={args.experts} k={args.top_k}, {args.dtype} | {machine}")
    results = []
    for device in devices:
        r = bench_device(device, dtype, args.dim, args.experts, args.top_k, args.tokens, args.loop_tokens, args.repeats)
        print_table(r)
        results.append(r)
    if args.json:
        print(json.dumps({"config": vars(args), "machine": machine, "results": results}))


if __name__ == "__main__":
    main()
