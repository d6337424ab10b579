"""``pointmoe bag``: inspect rosbag2 folders and record cloud files into new ones."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from pointmoe_core.common.cli_args import UsageError, device, positive_float
from pointmoe_core.common.device import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="topics, types, message counts and time span of a bag")
    info.add_argument("bag", type=Path)
    write = actions.add_parser("write", help="record cloud files as PointCloud2 messages in a new bag")
    write.add_argument("bag", type=Path, help="new rosbag2 folder (must not exist)")
    write.add_argument("clouds", nargs="+", help=".pcd/.ply/KITTI .bin/.npz files, or 'synthetic'")
    write.add_argument("--topic", default="/points")
    write.add_argument("--frame-id", default="map")
    write.add_argument("--rate-hz", type=positive_float, default=10.0, help="stamps advance by 1/rate per cloud")
    segment = actions.add_parser(
        "segment", help="segment every cloud on a topic into a new bag, with what perception_node publishes")
    segment.add_argument("in_bag", type=Path, help="rosbag2 folder (sqlite3 or mcap)")
    segment.add_argument("out_bag", type=Path, help="new rosbag2 folder: the input plus the outputs")
    segment.add_argument("--topic", default="/points", help="PointCloud2 topic to segment")
    segment.add_argument("--checkpoint", help="model checkpoint (ours carries its config; official ones need --config)")
    segment.add_argument("--config",
                         help="model preset or YAML: overrides the checkpoint's own config (an official checkpoint "
                              "needs it); without a checkpoint, the untrained model (default tiny)")
    segment.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N or auto")
    segment.add_argument("--class-names", nargs="+", help="vocabulary for the text head (default: the model's)")
    segment.add_argument("--expert-layer", help="MoE layer whose expert ids colour the experts cloud")
    segment.add_argument("--output-prefix", default="/perception_node/output",
                         help="topic prefix of the outputs (the node's namespace by default)")


def run(args: argparse.Namespace) -> dict:
    return {"info": bag_info, "write": bag_write, "segment": bag_segment}[args.action](args)


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
    from pointmoe_core.data.sources import load_cloud
    from pointmoe_core.io import BagWriter, msg_from_cloud

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


def bag_segment(args: argparse.Namespace) -> dict:
    """The offline twin of perception_node: same core functions, outputs at the input stamps."""
    from rosbags.highlevel import AnyReader
    from tqdm import tqdm

    from pointmoe_core.io import BagWriter, msg_from_cloud, read_bag
    from pointmoe_core.io.ros_types import pointmoe_typestore
    from pointmoe_core.seg.perception import info_fields, segment_message
    from pointmoe_core.seg.segmenter import Segmenter

    with AnyReader([args.in_bag]) as reader:  # before the model loads: a wrong topic fails at once
        topics = sorted({connection.topic for connection in reader.connections})
    if args.topic not in topics:
        raise UsageError(f"no topic {args.topic} in {args.in_bag}; its topics: {', '.join(topics)}")
    device = resolve_device(args.device)
    if args.checkpoint:
        segmenter = Segmenter.from_checkpoint(args.checkpoint, device=device, config=args.config)
    else:
        config = args.config or "tiny"
        print(f"no --checkpoint: segmenting with an untrained {config!r} model")
        segmenter = Segmenter.from_config(config, device=device)
    typestore = pointmoe_typestore()
    info_type = typestore.types["pointmoe_ros/msg/SegmentationInfo"]
    clouds, warnings = 0, 0
    with BagWriter(args.out_bag, typestore=typestore) as bag:
        for topic, t_ns, msg in tqdm(read_bag(args.in_bag, typestore=typestore), desc="segment", unit="msg"):
            bag.write(topic, msg, t_ns)
            if topic != args.topic:
                continue
            result = segment_message(msg, segmenter, class_names=args.class_names, expert_layer=args.expert_layer)
            clouds += 1
            warnings += len(result.summary.warnings)
            for line in result.summary.warnings:
                tqdm.write(f"{t_ns}: {line}")
            for name, cloud in (("segmented", result.segmented), ("experts", result.experts)):
                if cloud is not None:
                    bag.write(f"{args.output_prefix}/{name}",
                              msg_from_cloud(cloud, header=msg.header, msg_class="rosbags"), t_ns)
            bag.write(f"{args.output_prefix}/info", info_type(header=msg.header, **info_fields(result.summary)), t_ns)
    print(f"segmented {clouds} clouds from {args.topic} into {args.out_bag} ({warnings} warnings)")
    summary = {"ok": clouds > 0, "bag": str(args.out_bag), "clouds": clouds, "warnings": warnings}
    return summary if clouds else {**summary, "error": f"no message on {args.topic} in {args.in_bag}"}
