"""``pointmoe demo``: what ``make demo`` runs.

At this stage it shows the sensor path every later stage builds on: real clouds (a
SemanticKITTI LiDAR scan and a TUM RGB-D frame from ``../shared/data`` when present, else a
generated tabletop scene) become ``sensor_msgs/PointCloud2`` messages, are recorded in a
rosbag2, read back and checked bit-exact, and are rendered to PNGs offscreen.
"""
from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointmoe_core.io import (
    BagWriter,
    PointCloud,
    cloud_from_depth,
    cloud_from_msg,
    msg_from_cloud,
    read_bag,
    read_kitti_bin,
    read_kitti_label,
)

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
    parser.add_argument("--data", type=Path, default=Path("../shared/data"),
                        help="folder with real sample scans (default ../shared/data); "
                             "a generated scene is used when it is missing")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")


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
    from pointmoe_core.viz.render import render_cloud_png

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    bag_path = out / "demo_bag"
    if bag_path.exists():
        shutil.rmtree(bag_path)  # rosbag2 writers refuse an existing folder

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
    return {"ok": all(row["bit_exact"] for row in rows), "bag": str(bag_path), "clouds": rows}
