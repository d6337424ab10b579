"""PointCloud2 -> contiguous (N, 3) float32 xyz: `cloud_from_msg` against the usual numpy recipes.

A 120k-point LiDAR-like cloud with a 32-byte point_step (PCL PointXYZI: x y z, pad, intensity, pad),
decoded from rosbags-style (ndarray) and rclpy-style (array.array) data. The reference that speedups
are measured against: a structured dtype built from msg.fields (itemsize = point_step) viewed over
`data`, then x, y, z copied column by column into a contiguous array. Also timed: sensor_msgs_py's
read_points_numpy recipe made contiguous, and a float32 column slice. Medians of repeats run in shuffled order.

    python benchmarks/pointcloud2_decode.py [--points 120000] [--repeats 200] [--json]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import time
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
from machine import cpu_model
from numpy.lib import recfunctions

from pointmoe_core.io import cloud_from_msg, convert_cloud_msg

NUMPY_TYPE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def make_messages(points: int) -> dict[str, Any]:
    """The same cloud as a rosbags message and, when the ROS 2 wheels are installed, an rclpy one."""
    rng = np.random.default_rng(0)
    records = np.zeros(points, np.dtype({"names": ["xyz", "intensity"], "formats": [("<f4", 3), "<f4"],
                                         "offsets": [0, 16], "itemsize": 32}))
    records["xyz"] = rng.uniform(-50, 50, (points, 3))
    records["intensity"] = rng.random(points)
    layout = SimpleNamespace(
        header=SimpleNamespace(frame_id="velodyne", stamp=SimpleNamespace(sec=0, nanosec=0)),
        height=1, width=points, is_bigendian=False, point_step=32, row_step=32 * points,
        fields=[SimpleNamespace(name=name, offset=offset, datatype=7, count=1)
                for name, offset in (("x", 0), ("y", 4), ("z", 8), ("intensity", 16))],
        data=records.view(np.uint8), is_dense=True,
    )
    messages = {"rosbags (ndarray data)": convert_cloud_msg(layout, "rosbags")}
    try:
        messages["rclpy (array.array data)"] = convert_cloud_msg(layout, "ros")
    except ImportError:
        pass
    return messages


def vars_of(msg: Any) -> dict[str, Any]:
    return {name: getattr(msg, name) for name in ("header", "height", "width", "fields", "is_bigendian",
                                                  "point_step", "row_step", "data", "is_dense")}


def structured_view(msg: Any) -> np.ndarray:
    """sensor_msgs_py.point_cloud2.read_points: every field in a dtype of itemsize point_step."""
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({
        "names": [f.name for f in msg.fields],
        "formats": [order + NUMPY_TYPE[f.datatype] for f in msg.fields],
        "offsets": [f.offset for f in msg.fields],
        "itemsize": msg.point_step,
    })
    return np.frombuffer(msg.data, dtype=dtype, count=msg.width * msg.height)


def reference_columns(msg: Any) -> np.ndarray:
    points = structured_view(msg)
    xyz = np.empty((len(points), 3), np.float32)
    for i, axis in enumerate("xyz"):
        xyz[:, i] = points[axis]
    return xyz


def reference_read_points_numpy(msg: Any) -> np.ndarray:
    """read_points_numpy's structured_to_unstructured (a strided view here), made contiguous."""
    xyz = recfunctions.structured_to_unstructured(structured_view(msg)[["x", "y", "z"]])
    return np.ascontiguousarray(xyz)


def float32_column_slice(msg: Any) -> np.ndarray:
    """Data as float32 (N, point_step / 4), columns 0..3 sliced, one contiguous copy (x, y, z at 0, 4, 8)."""
    return np.ascontiguousarray(np.frombuffer(msg.data, np.float32).reshape(-1, msg.point_step // 4)[:, :3])


METHODS: dict[str, Callable[[Any], np.ndarray]] = {
    "ours (defaults; is_dense=True skips the NaN scan)": lambda msg: cloud_from_msg(msg, fields=()).xyz,
    "ours, NaN scan forced (what is_dense=False costs)": lambda msg: cloud_from_msg(
        SimpleNamespace(**{**vars_of(msg), "is_dense": False}), fields=()).xyz,
    "reference (structured view + column copies)": reference_columns,
    "reference (read_points_numpy + ascontiguousarray)": reference_read_points_numpy,
    "float32 column slice + ascontiguousarray": float32_column_slice,
}


def median_seconds(methods: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Run the methods in a fresh random order each round, so that neither clock drift nor what ran
    just before (caches, the allocator) favours one of them."""
    rng = random.Random(0)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name in rng.sample(list(methods), len(methods)):
            start = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=120_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    args = parser.parse_args()

    summary: dict[str, Any] = {"points": args.points, "point_step": 32, "repeats": args.repeats,
                               "cpu": cpu_model(), "nproc": os.cpu_count(), "numpy": np.__version__,
                               "results": {}}
    print(f"{args.points} points x 32 B, median of {args.repeats}; {summary['cpu']}, {summary['nproc']} CPUs")
    for kind, msg in make_messages(args.points).items():
        expected = reference_columns(msg)
        for name, method in METHODS.items():
            out = method(msg)
            assert out.flags.c_contiguous and out.dtype == np.float32 and np.array_equal(out, expected), name
            method(msg)  # warm-up
        seconds = median_seconds({name: functools.partial(method, msg) for name, method in METHODS.items()},
                                 args.repeats)
        reference = seconds["reference (structured view + column copies)"]
        nbytes = len(msg.data)
        print(f"\n{kind}: {nbytes / 1e6:.2f} MB of data")
        rows = {}
        for name, s in seconds.items():
            rows[name] = {"ms": s * 1e3, "GB/s": nbytes / s / 1e9, "speedup_vs_reference": reference / s}
            print(f"  {name:52s} {s * 1e3:7.3f} ms  {nbytes / s / 1e9:6.2f} GB/s  x{reference / s:.2f}")
        summary["results"][kind] = rows
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
