"""perception_node over loopback DDS against the bare ``Segmenter.predict`` on the same clouds.

Publishes 30k- and 120k-point synthetic rooms to a perception_node (a separate process, tiny
untrained model, CPU) and times publish -> ``~/output/segmented`` received, one cloud in flight at
a time; then times ``predict`` in this process on the same clouds. The ratio is the ROS overhead:
serialisation, DDS transport and message conversion both ways.

    source scripts/ros_env.sh && python benchmarks/ros_latency.py [--clouds 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_loopback.xml"))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_loopback.xml"))
os.environ.setdefault("ROS_DOMAIN_ID", str(101 + os.getpid() % 100))


def room(points: int, seed: int):
    from pointmoe_core.data.synthetic import IndoorRoomConfig, IndoorRoomDomain
    from pointmoe_core.io import PointCloud

    rng = np.random.default_rng(seed)
    scene = IndoorRoomDomain(IndoorRoomConfig()).generate(seed)
    rows = rng.choice(len(scene["coord"]), points, replace=len(scene["coord"]) < points)
    return PointCloud(xyz=scene["coord"][rows], rgb=scene["color"][rows].astype(np.uint8),
                      normals=scene["normal"][rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clouds", type=int, default=5, help="timed clouds per size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    from pointmoe_core.io import msg_from_cloud
    from pointmoe_core.seg import Segmenter

    executable = REPO / "install" / "pointmoe_ros" / "lib" / "pointmoe_ros" / "perception_node"
    node_process = subprocess.Popen([str(executable), "--ros-args", "-p", "autostart:=true",
                                     "-p", "expert_layer:=''", "-p", "max_points:=1000000"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = rclpy.create_node("ros_latency_benchmark")
    received: dict[int, float] = {}
    node.create_subscription(PointCloud2, "/perception_node/output/segmented",
                             lambda msg: received.setdefault(msg.header.stamp.sec, time.perf_counter()), 10)
    publisher = node.create_publisher(PointCloud2, "/perception_node/input/points", qos_profile_sensor_data)
    segmenter = Segmenter.from_config("tiny", max_points=1_000_000)
    summary = {"cpu": cpu_model(), "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(), "sizes": {}}
    print(f"perception_node (tiny, CPU) vs Segmenter.predict; {summary['cpu']}, {summary['nproc']} CPUs")
    try:
        stamp = 0
        for points in (30_000, 120_000):
            clouds = [room(points, seed) for seed in range(args.clouds + 1)]
            ros_seconds = []
            for index, cloud in enumerate(clouds):
                stamp += 1
                msg = msg_from_cloud(cloud, header=("room", float(stamp)), msg_class=PointCloud2)
                deadline = time.monotonic() + (120 if stamp == 1 else 60)  # the first waits for discovery
                while stamp not in received and time.monotonic() < deadline:
                    sent = time.perf_counter()
                    publisher.publish(msg)
                    resend = time.monotonic() + 30
                    while stamp not in received and time.monotonic() < min(resend, deadline):
                        rclpy.spin_once(node, timeout_sec=0.01)
                if stamp not in received:
                    raise RuntimeError(f"perception_node did not answer a {points}-point cloud")
                if index > 0:  # the first of each size warms up
                    ros_seconds.append(received[stamp] - sent)
            predict_seconds = []
            for cloud in clouds[1:]:
                start = time.perf_counter()
                segmenter.predict(cloud.xyz, color=cloud.rgb, normal=cloud.normals)
                predict_seconds.append(time.perf_counter() - start)
            ros, bare = statistics.median(ros_seconds), statistics.median(predict_seconds)
            summary["sizes"][points] = {"ros_ms": ros * 1e3, "predict_ms": bare * 1e3, "ros_over_predict": ros / bare,
                                        "ros_points_per_s": points / ros}
            print(f"  {points:7d} points: node {ros * 1e3:8.1f} ms ({points / ros / 1e3:6.1f} k points/s)   "
                  f"predict {bare * 1e3:8.1f} ms   node/predict x{ros / bare:.2f}")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        node_process.terminate()
        node_process.wait(timeout=20)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
