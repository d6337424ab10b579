"""Point cloud I/O: PointCloud2 messages, depth images, PCD/PLY/SemanticKITTI files, rosbag2 bags."""
from .bags import BagWriter, jazzy_typestore, new_bag_path, read_bag, write_bag
from .depth import cloud_from_depth
from .files import load_learning_map, read_cloud, read_kitti_bin, read_kitti_label, write_cloud
from .pointcloud2 import (
    ATTRIBUTES,
    CloudFormatError,
    PointCloud,
    cloud_from_msg,
    convert_cloud_msg,
    msg_from_cloud,
)

__all__ = [
    "ATTRIBUTES",
    "BagWriter",
    "CloudFormatError",
    "PointCloud",
    "cloud_from_depth",
    "cloud_from_msg",
    "convert_cloud_msg",
    "jazzy_typestore",
    "load_learning_map",
    "msg_from_cloud",
    "new_bag_path",
    "read_bag",
    "read_cloud",
    "read_kitti_bin",
    "read_kitti_label",
    "write_bag",
    "write_cloud",
]
