"""The one way our nodes run: spin until done, Ctrl-C or SIGTERM, then shut down quietly."""
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def spin_until_shutdown(node: Node, done: Callable[[], bool] = lambda: False) -> int:
    try:
        while rclpy.ok() and not done():
            rclpy.spin_once(node, timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C, or SIGTERM from launch
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
