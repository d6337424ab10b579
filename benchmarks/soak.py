"""Soak: perception_node fed 1,000 clouds of mixed sizes and layouts over loopback DDS.

Starts perception_node from the colcon install with the installed parameters file (the shipped
checkpoint, CPU) and publishes clouds at a fixed rate, whatever the node manages: depth-camera
rooms with rgb (5k-60k points), LiDAR-like clouds with intensity (30k and 120k), rooms with
normals, an organized 120x160 frame with NaN holes, a float64 cloud at UTM coordinates, one with a
point at 1e17 m and an empty one. The node keeps only the newest cloud, so what it cannot keep up
with is dropped. Reports the node's RSS over time and whether it levels off: after the warm-up
(20 % of the clouds sent, and every layout answered at least once, as memory grows until the
biggest clouds have been through), within 10 % of its median; clouds answered and dropped, and
latency percentiles from publish to ``~/output/info``. The node runs inference on one torch thread
by default (``--torch-threads``): on a shared 2-core machine two threads were many times slower.

    source scripts/ros_env.sh && python benchmarks/soak.py [--clouds 1000] [--rate-hz 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_loopback.xml"))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_loopback.xml"))
os.environ.setdefault("ROS_DOMAIN_ID", str(101 + os.getpid() % 100))
WARM_UP = 0.2  # share of the run before RSS is expected to have levelled off, at least
RSS_EVERY = 25  # clouds between RSS samples


def layouts() -> list[tuple[str, object, tuple[int, int] | None]]:
    """(layout name, PointCloud, organized shape or None) of every kind the soak sends."""
    from pointmoe_core.data.synthetic import IndoorRoomConfig, IndoorRoomDomain
    from pointmoe_core.io import PointCloud

    rooms = [IndoorRoomDomain(IndoorRoomConfig()).generate(seed) for seed in range(3)]
    rng = np.random.default_rng(0)

    def sample(points: int, seed: int) -> dict[str, np.ndarray]:
        scene = rooms[seed % len(rooms)]
        rows = rng.choice(len(scene["coord"]), points, replace=len(scene["coord"]) < points)
        return {"xyz": scene["coord"][rows], "rgb": scene["color"][rows].astype(np.uint8),
                "normals": scene["normal"][rows]}

    out = []
    for points in (5_000, 20_000, 60_000):
        part = sample(points, points)
        out.append((f"rgb {points // 1000}k", PointCloud(xyz=part["xyz"], rgb=part["rgb"]), None))
    for points in (30_000, 120_000):
        part = sample(points, points + 1)
        out.append((f"lidar {points // 1000}k", PointCloud(xyz=part["xyz"] * 10, intensity=rng.uniform(0, 255, points)),
                    None))
    part = sample(20_000, 7)
    out.append(("rgb+normals 20k", PointCloud(xyz=part["xyz"], rgb=part["rgb"], normals=part["normals"]), None))
    part = sample(120 * 160, 8)
    holes = part["xyz"].copy()
    holes[rng.random(len(holes)) < 0.2] = np.nan  # missing depth, as a depth camera sends it
    out.append(("organized 120x160 NaN", PointCloud(xyz=holes, rgb=part["rgb"]), (120, 160)))
    part = sample(20_000, 9)  # written as float64 origin + xyz: a map frame at UTM coordinates
    out.append(("utm float64 20k", PointCloud(xyz=part["xyz"], rgb=part["rgb"], origin=[612_000.0, 5_800_000.0, 100.0]),
                None))
    part = sample(10_000, 10)
    part["xyz"][0] = [1e17, 0, 0]
    out.append(("outlier 10k", PointCloud(xyz=part["xyz"], rgb=part["rgb"]), None))
    out.append(("empty", PointCloud(xyz=np.zeros((0, 3), np.float32), rgb=np.zeros((0, 3), np.uint8)), None))
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clouds", type=int, default=1000)
    parser.add_argument("--rate-hz", type=float, default=5.0, help="clouds published per second")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="the node's torch_threads (0: torch's default, one per core)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    from pointmoe_core.io import msg_from_cloud
    from pointmoe_ros.msg import SegmentationInfo

    install = REPO / "install" / "pointmoe_ros"
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"soak_perception_node_{os.getpid()}.log"
    with open(log_path, "w") as log:
        node_process = subprocess.Popen(
            [str(install / "lib/pointmoe_ros/perception_node"), "--ros-args", "--params-file",
             str(install / "share/pointmoe_ros/config/perception.yaml"), "-p", "autostart:=true", "-p", "device:=cpu",
             "-p", f"torch_threads:={args.torch_threads}"],
            stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    node = rclpy.create_node("soak_benchmark")
    answered: dict[int, tuple[float, list[str]]] = {}
    node.create_subscription(SegmentationInfo, "/perception_node/output/info",
                             lambda msg: answered.setdefault(msg.header.stamp.sec,
                                                             (time.perf_counter(), list(msg.warnings))), 50)
    publisher = node.create_publisher(PointCloud2, "/perception_node/input/points", qos_profile_sensor_data)
    kinds = layouts()
    messages = [msg_from_cloud(cloud, organized_shape=shape, msg_class=PointCloud2) for _, cloud, shape in kinds]
    sent: dict[int, tuple[float, str]] = {}
    samples: list[tuple[int, float]] = []
    warm_from = None  # index of the first cloud sent after the warm-up
    try:
        # the model loads and discovery completes before the clock starts
        deadline = time.monotonic() + 300
        while not answered and time.monotonic() < deadline:
            messages[0].header.stamp.sec = 0
            publisher.publish(messages[0])
            end = time.monotonic() + 1.0
            while not answered and time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
        if not answered:
            raise RuntimeError(f"perception_node never answered; its log: {log_path}")
        answered.clear()
        period = 1.0 / args.rate_hz
        # each round of layouts in a new order: a fixed cycle can lock onto the node's pace, which then
        # only ever picks up the same few layouts
        rng = np.random.default_rng(0)
        order = np.concatenate([rng.permutation(len(kinds)) for _ in range(-(-args.clouds // len(kinds)))])
        start = time.perf_counter()
        for index in range(args.clouds):
            stamp = index + 1
            layout = order[index]
            msg = messages[layout]
            msg.header.stamp.sec = stamp
            while time.perf_counter() < start + index * period:
                rclpy.spin_once(node, timeout_sec=0.005)
            sent[stamp] = (time.perf_counter(), kinds[layout][0])
            publisher.publish(msg)
            if index % RSS_EVERY == 0:
                samples.append((index, rss_mb(node_process.pid)))
                answers = Counter(sent[s][1] for s in answered if s in sent)
                if warm_from is None and index >= WARM_UP * args.clouds and len(answers) == len(kinds):
                    warm_from = index
        end = time.monotonic() + 30  # the last answer in flight
        while max(answered, default=0) < args.clouds and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        samples.append((args.clouds, rss_mb(node_process.pid)))
        wall = time.perf_counter() - start
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        node_process.terminate()
        node_process.wait(timeout=30)

    latencies = np.array([answered[s][0] - sent[s][0] for s in answered if s in sent]) * 1000
    by_layout = {}
    for name, _, _ in kinds:
        stamps = [s for s, (_, layout) in sent.items() if layout == name]
        got = [s for s in stamps if s in answered]
        by_layout[name] = {"sent": len(stamps), "answered": len(got),
                           "median_ms": float(np.median([(answered[s][0] - sent[s][0]) * 1000 for s in got]))
                           if got else None,
                           "warnings": sorted({w.split(":")[0][:60] for s in got for w in answered[s][1]})}
    if warm_from is None:
        raise RuntimeError("the node never answered every layout: no warm RSS to judge")
    settled = [rss for index, rss in samples if index >= warm_from]
    level = float(np.median(settled))
    summary = {
        "cpu": cpu_model(), "nproc": os.cpu_count(), "clouds": args.clouds, "rate_hz": args.rate_hz, "wall_s": wall,
        "answered": len(latencies), "dropped": args.clouds - len(latencies),
        "latency_ms": {f"p{q}": float(np.percentile(latencies, q)) for q in (50, 90, 99)}
        | {"max": float(latencies.max())},
        "rss_mb": [(index, round(rss, 1)) for index, rss in samples],
        "warm_up_clouds": warm_from,
        "rss_after_warm_up": {"min": min(settled), "max": max(settled), "level": level},
        "rss_flat_within_10pct": max(settled) <= 1.1 * level and min(settled) >= 0.9 * level,
        "by_layout": by_layout, "node_exit_status": node_process.returncode,
    }
    print(f"perception_node soak: {args.clouds} clouds at {args.rate_hz} Hz over {wall:.0f} s; {summary['cpu']}, "
          f"{summary['nproc']} CPUs")
    print(f"answered {summary['answered']}, dropped {summary['dropped']} (newest-only); latency ms "
          + ", ".join(f"{k} {v:.0f}" for k, v in summary["latency_ms"].items()))
    print("RSS MB by clouds sent: " + ", ".join(f"{i}: {r:.0f}" for i, r in samples[:: max(1, len(samples) // 12)]))
    print(f"after the warm-up ({warm_from} clouds): {min(settled):.0f}-{max(settled):.0f} MB around {level:.0f} MB; "
          f"flat within 10 %: {summary['rss_flat_within_10pct']}")
    print(f"{'layout':24s} {'sent':>5s} {'answered':>8s} {'median ms':>9s}  warnings")
    for name, row in by_layout.items():
        median = f"{row['median_ms']:.0f}" if row["median_ms"] is not None else "-"
        print(f"{name:24s} {row['sent']:5d} {row['answered']:8d} {median:>9s}  {'; '.join(row['warnings'])}")
    print(f"node exit status {node_process.returncode}")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
