"""perception_node: Point-MoE segmentation of PointCloud2 streams, as a lifecycle node.

configure loads the model, activate subscribes ``~/input/points`` (sensor-data QoS, newest only)
and publishes ``~/output/segmented``, ``~/output/experts`` and ``~/output/info``. All the work is
``pointmoe_core.seg.perception.segment_message``; this file only wires ROS to it.

A configure that fails (a missing or unfit checkpoint) logs why and leaves the node unconfigured;
a cloud that cannot be segmented, for whatever reason, gives a throttled warning and an info
message carrying the reason, and the node goes on with the next one. A relative ``checkpoint`` is
looked up in the working directory, then in the package's share (``pointmoe_core.common.paths``).

    ros2 run pointmoe_ros perception_node --ros-args --params-file config/perception.yaml
"""
from __future__ import annotations

from ament_index_python.packages import get_package_share_directory
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import PointCloud2

from pointmoe_core.common.heap import keep_freed_memory
from pointmoe_core.common.paths import resolve_path
from pointmoe_core.io import msg_from_cloud
from pointmoe_core.seg.perception import (
    MAX_CLOUD_POINTS,
    InputMapping,
    SegmentationSummary,
    info_fields,
    segment_message,
)
from pointmoe_ros.msg import SegmentationInfo
from pointmoe_ros.spin import autostart, run, torch_device

# sensor data, but only the newest cloud matters: a stale one is dropped, never queued
NEWEST_CLOUD_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                              reliability=QoSReliabilityPolicy.BEST_EFFORT)
RESULT_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                        reliability=QoSReliabilityPolicy.RELIABLE)


class PerceptionNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("perception_node")
        self.declare_parameter("checkpoint", "")
        self.declare_parameter("model_config", "")
        self.declare_parameter("device", "auto")
        self.declare_parameter("dtype", "float32")
        self.declare_parameter("torch_threads", 0)
        self.declare_parameter("keep_freed_memory", True)
        self.declare_parameter("class_names", [""])
        self.declare_parameter("max_points", 200_000)
        self.declare_parameter("use_rgb", True)
        self.declare_parameter("use_intensity", True)
        self.declare_parameter("use_normals", True)
        # "auto" or a number, as a string or a number: `-p max_range:=80` arrives as an integer
        number_or_auto = ParameterDescriptor(dynamic_typing=True)
        self.declare_parameter("intensity_scale", "auto", number_or_auto)
        self.declare_parameter("max_range", "auto", number_or_auto)
        self.declare_parameter("max_cloud_points", MAX_CLOUD_POINTS)
        self.declare_parameter("expert_layer", "dec.dec0.block0.attn.proj")
        self.declare_parameter("output_frame", "")
        self.declare_parameter("autostart", False)
        self.segmenter = None
        self.subscription = None
        self.pending: PointCloud2 | None = None
        self.clouds_dropped = 0
        self.clouds_skipped = 0

    # ---- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        if self.parameter("keep_freed_memory") and not keep_freed_memory():
            self.get_logger().info("keep_freed_memory: this C library has no glibc mallopt, malloc left as it is")
        try:
            self.segmenter = self.load_segmenter()
            self.mapping = InputMapping(self.parameter("use_rgb"), self.parameter("use_intensity"),
                                        self.parameter("use_normals"),
                                        _number_or_auto(self.parameter("intensity_scale")),
                                        _number_or_auto(self.parameter("max_range")),
                                        int(self.parameter("max_cloud_points")))
        except Exception as error:  # noqa: BLE001 - whatever it is, the node stays up, unconfigured
            self.get_logger().error(f"cannot configure: {type(error).__name__}: {error}")
            self.segmenter = None
            return TransitionCallbackReturn.FAILURE
        self.class_names = [name for name in self.parameter("class_names") if name] or None
        self.expert_layer = self.parameter("expert_layer") or None
        self.output_frame = self.parameter("output_frame")
        self.segmented_pub = self.create_lifecycle_publisher(PointCloud2, "~/output/segmented", RESULT_QOS)
        self.experts_pub = self.create_lifecycle_publisher(PointCloud2, "~/output/experts", RESULT_QOS)
        self.info_pub = self.create_lifecycle_publisher(SegmentationInfo, "~/output/info", RESULT_QOS)
        self.timer = self.create_timer(0.005, self.process_pending)
        self.get_logger().info(f"model {self.segmenter.config.name!r} ready on {self.segmenter.device}")
        return TransitionCallbackReturn.SUCCESS

    def load_segmenter(self):
        from pointmoe_core.seg.segmenter import Segmenter

        device = torch_device(self)
        options = {"max_points": int(self.parameter("max_points")), "dtype": self.parameter("dtype")}
        # empty: the checkpoint's own config; set, it overrides (an official checkpoint needs it)
        model_config = self.parameter("model_config") or None
        if self.parameter("checkpoint"):
            checkpoint = resolve_path(self.parameter("checkpoint"), get_package_share_directory("pointmoe_ros"))
            self.get_logger().info(f"loading {checkpoint}")
            return Segmenter.from_checkpoint(checkpoint, device=device, config=model_config, **options)
        model_config = model_config or "tiny"
        self.get_logger().warning(f"no checkpoint given: using an untrained {model_config!r} model")
        return Segmenter.from_config(model_config, device=device, **options)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.subscription = self.create_subscription(PointCloud2, "~/input/points", self.receive,
                                                     NEWEST_CLOUD_QOS)
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.destroy_subscription(self.subscription)
        self.subscription, self.pending = None, None
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        for publisher in (self.segmented_pub, self.experts_pub, self.info_pub):
            self.destroy_publisher(publisher)
        self.destroy_timer(self.timer)
        self.segmenter = None
        return TransitionCallbackReturn.SUCCESS

    def parameter(self, name: str):
        return self.get_parameter(name).value

    # ---- work ---------------------------------------------------------------------------------
    def receive(self, msg: PointCloud2) -> None:
        if self.pending is not None:
            self.clouds_dropped += 1  # a newer cloud arrived before the last one was processed
        self.pending = msg

    def process_pending(self) -> None:
        msg, self.pending = self.pending, None
        if msg is None or self.segmenter is None:
            return
        publishers = (self.segmented_pub, self.experts_pub, self.info_pub)
        if not any(publisher.get_subscription_count() for publisher in publishers):
            self.clouds_skipped += 1  # nobody listens: skip the inference
            return
        header = msg.header
        if self.output_frame:
            header.frame_id = self.output_frame
        try:
            self.publish_results(msg, header)
        except Exception as error:  # noqa: BLE001 - one message must never stop the node
            reason = f"cannot publish the results of this cloud: {type(error).__name__}: {error}"
            self.get_logger().error(reason, throttle_duration_sec=5.0)
            self.info_pub.publish(self.info_message(SegmentationSummary(warnings=[reason]), header))

    def publish_results(self, msg: PointCloud2, header) -> None:
        result = segment_message(msg, self.segmenter, self.mapping, self.class_names, self.expert_layer)
        for warning in result.summary.warnings:
            self.get_logger().warning(warning, throttle_duration_sec=5.0)
        if result.segmented is not None:
            self.segmented_pub.publish(msg_from_cloud(result.segmented, header, msg_class=PointCloud2))
        if result.experts is not None:
            self.experts_pub.publish(msg_from_cloud(result.experts, header, msg_class=PointCloud2))
        self.info_pub.publish(self.info_message(result.summary, header))

    @staticmethod
    def info_message(summary: SegmentationSummary, header) -> SegmentationInfo:
        fields = info_fields(summary)
        # rclpy wants bytes and a list where the ROS-free fields are numpy arrays
        return SegmentationInfo(header=header, **{**fields, "class_colors_rgb": fields["class_colors_rgb"].tobytes(),
                                                  "class_point_counts": fields["class_point_counts"].tolist()})


def _number_or_auto(value: str | float) -> float | str:
    return value if value == "auto" else float(value)


def main(args=None) -> int:
    def started() -> PerceptionNode:
        node = PerceptionNode()
        autostart(node)
        return node

    return run(started, args)
