"""perception_node: Point-MoE segmentation of PointCloud2 streams, as a lifecycle node.

configure loads the model, activate subscribes ``~/input/points`` (sensor-data QoS, newest only)
and publishes ``~/output/segmented``, ``~/output/experts`` and ``~/output/info``. All the work is
``pointmoe_core.perception.segment_message``; this file only wires ROS to it.

    ros2 run pointmoe_ros perception_node --ros-args --params-file config/perception.yaml
"""
from __future__ import annotations

import rclpy
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import PointCloud2

from pointmoe_core.io import msg_from_cloud
from pointmoe_core.perception import InputMapping, info_fields, segment_message
from pointmoe_ros.msg import SegmentationInfo
from pointmoe_ros.spin import spin_until_shutdown

# sensor data, but only the newest cloud matters: a stale one is dropped, never queued
NEWEST_CLOUD_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                              reliability=QoSReliabilityPolicy.BEST_EFFORT)
RESULT_QOS = QoSProfile(depth=1, history=QoSHistoryPolicy.KEEP_LAST,
                        reliability=QoSReliabilityPolicy.RELIABLE)


class PerceptionNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("perception_node")
        self.declare_parameter("checkpoint", "")
        self.declare_parameter("model_config", "tiny")
        self.declare_parameter("device", "auto")
        self.declare_parameter("class_names", [""])
        self.declare_parameter("max_points", 200_000)
        self.declare_parameter("use_rgb", True)
        self.declare_parameter("use_intensity", True)
        self.declare_parameter("use_normals", True)
        self.declare_parameter("intensity_scale", "auto")
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
        from pointmoe_core.seg.segmenter import Segmenter

        parameter = self.parameter
        device = parameter("device")
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        options = {"max_points": int(parameter("max_points"))}
        try:
            if parameter("checkpoint"):
                self.segmenter = Segmenter.from_checkpoint(parameter("checkpoint"), device=device,
                                                           config=parameter("model_config"), **options)
            else:
                self.get_logger().warning(f"no checkpoint given: using an untrained "
                                          f"{parameter('model_config')!r} model")
                self.segmenter = Segmenter.from_config(parameter("model_config"), device=device, **options)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            self.get_logger().error(f"cannot load the segmentation model: {error}")
            return TransitionCallbackReturn.FAILURE
        self.mapping = InputMapping(parameter("use_rgb"), parameter("use_intensity"), parameter("use_normals"),
                                    _number_or_auto(parameter("intensity_scale")))
        self.class_names = [name for name in parameter("class_names") if name] or None
        self.expert_layer = parameter("expert_layer") or None
        self.output_frame = parameter("output_frame")
        self.segmented_pub = self.create_lifecycle_publisher(PointCloud2, "~/output/segmented", RESULT_QOS)
        self.experts_pub = self.create_lifecycle_publisher(PointCloud2, "~/output/experts", RESULT_QOS)
        self.info_pub = self.create_lifecycle_publisher(SegmentationInfo, "~/output/info", RESULT_QOS)
        self.timer = self.create_timer(0.005, self.process_pending)
        self.get_logger().info(f"model ready on {device}")
        return TransitionCallbackReturn.SUCCESS

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
        result = segment_message(msg, self.segmenter, self.mapping, self.class_names, self.expert_layer)
        header = msg.header
        if self.output_frame:
            header.frame_id = self.output_frame
        for warning in result.summary.warnings:
            self.get_logger().warning(warning, throttle_duration_sec=5.0)
        if result.segmented is not None:
            self.segmented_pub.publish(msg_from_cloud(result.segmented, header, msg_class=PointCloud2))
        if result.experts is not None:
            self.experts_pub.publish(msg_from_cloud(result.experts, header, msg_class=PointCloud2))
        fields = info_fields(result.summary)
        info = SegmentationInfo(header=header, class_names=fields["class_names"],
                                class_colors_rgb=fields["class_colors_rgb"].tobytes(),
                                class_point_counts=fields["class_point_counts"].tolist(),
                                inference_time=fields["inference_time"], points_in=fields["points_in"],
                                points_dropped=fields["points_dropped"], warnings=fields["warnings"])
        self.info_pub.publish(info)


def _number_or_auto(value: str) -> float | str:
    return value if value == "auto" else float(value)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = PerceptionNode()
    if node.parameter("autostart"):
        node.trigger_configure()
        node.trigger_activate()
    return spin_until_shutdown(node)
