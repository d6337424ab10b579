"""``pointmoe bag``: inspect rosbag2 folders and record cloud files into new ones."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="topics, types, message counts and time span of a bag")
    info.add_argument("bag", type=Path)
    write = actions.add_parser("write", help="record cloud files as PointCloud2 messages in a new bag")
    write.add_argument("bag", type=Path, help="new rosbag2 folder (must not exist)")
    write.add_argument("clouds", nargs="+", help=".pcd/.ply/KITTI .bin/.npz files, or 'synthetic'")
    write.add_argument("--topic", default="/points")
    write.add_argument("--frame-id", default="map")
    write.add_argument("--rate-hz", type=float, default=10.0, help="stamps advance by 1/rate per cloud")


def run(args: argparse.Namespace) -> dict:
    return {"info": bag_info, "write": bag_write}[args.action](args)


def bag_info(args: argparse.Namespace) -> dict:
    from rosbags.highlevel import AnyReader

    with AnyReader([args.bag]) as reader:
        counts = Counter(connection.topic for connection, _, _ in reader.messages())
        types = {connection.topic: connection.msgtype for connection in reader.connections}
        span_s = (reader.end_time - reader.start_time) / 1e9 if counts else 0.0
    print(f"{args.bag}: {sum(counts.values())} messages over {span_s:.3f} s")
    for topic in sorted(types):
        print(f"  {topic:40s} {types[topic]:32s} {counts[topic]:6d}")
    return {"bag": str(args.bag), "duration_s": span_s,
            "topics": {topic: {"type": types[topic], "count": counts[topic]} for topic in types}}


def bag_write(args: argparse.Namespace) -> dict:
    from pointmoe_core.io import BagWriter, msg_from_cloud
    from pointmoe_core.io.sources import load_cloud

    period_ns = round(1e9 / args.rate_hz)
    points = []
    with BagWriter(args.bag) as bag:
        for index, source in enumerate(args.clouds):
            cloud = load_cloud(source)
            stamp_s = index * period_ns / 1e9
            bag.write(args.topic, msg_from_cloud(cloud, header=(args.frame_id, stamp_s), msg_class="rosbags"),
                      t_ns=index * period_ns)
            points.append(len(cloud))
            print(f"  {source}: {len(cloud)} points -> {args.topic}")
    print(f"wrote {len(points)} clouds to {args.bag}")
    return {"bag": str(args.bag), "topic": args.topic, "clouds": len(points), "points": points}
