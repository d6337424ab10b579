"""The one way our nodes run: start, spin until done, Ctrl-C or SIGTERM, then shut down quietly.

``run`` initialises rclpy without its signal handlers: those only shut the context down, which
cannot stop Python work in progress (a model loading for a minute loads on, then fails on the dead
context, and launch has to kill the process). Here SIGINT and SIGTERM raise ``KeyboardInterrupt``
in the main thread wherever it is, loading included, and the node exits 0 within launch's window.
The signal is also remembered (``stop_requested``): an extension module may turn the interrupt
into an error of its own (torch, mid-load, into a ``ValueError``), which the node's configure then
catches as a failed load; the spin loop stops on the flag all the same.
"""
import signal
import threading
from typing import Callable, TypeVar

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from pointmoe_core.common.device import resolve_device

NodeT = TypeVar("NodeT", bound=Node)
_stop = threading.Event()  # SIGINT or SIGTERM arrived since ``run`` started
stop_requested = _stop.is_set


def _interrupt(signum: int, frame) -> None:
    _stop.set()
    raise KeyboardInterrupt


def run(make_node: Callable[[], NodeT], args=None, done: Callable[[NodeT], bool] = lambda node: False) -> int:
    """Initialise rclpy, build the node, spin it until ``done(node)``, SIGINT or SIGTERM: exit status 0.
    A node that cannot be built (say, a cloud file that does not exist) logs why in one line: status 1."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    _stop.clear()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)  # launch escalates SIGINT to SIGTERM
    try:
        node = make_node()
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    except Exception as error:  # noqa: BLE001 - one clear line, not a traceback
        if not stop_requested():  # else the interrupt, turned into another error on its way out
            rclpy.logging.get_logger("pointmoe_ros").error(f"cannot start: {type(error).__name__}: {error}")
        rclpy.try_shutdown()
        return 0 if stop_requested() else 1
    return spin_until_shutdown(node, lambda: done(node))


def spin_until_shutdown(node: Node, done: Callable[[], bool] = lambda: False) -> int:
    try:
        while rclpy.ok() and not done() and not stop_requested():
            rclpy.spin_once(node, timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C, or SIGTERM from launch
    except RCLError:
        if rclpy.ok():
            raise
        # the context went down while a callback was using it: shutting down is all that is left
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def autostart(node) -> None:
    """Configure and activate a lifecycle node whose ``autostart`` parameter is true; a failed configure
    leaves it unconfigured (its reason already logged), to be configured again once fixed."""
    if not node.get_parameter("autostart").value:
        return
    if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
        node.trigger_activate()
    else:
        node.get_logger().error("configure failed: the node stays unconfigured and keeps serving its "
                                "lifecycle services")


def torch_device(node) -> str:
    """The node's ``device`` parameter with ``auto`` resolved, after applying its ``torch_threads``
    (0 leaves torch's default of one thread per core)."""
    import torch  # only nodes that run a model need it

    if node.get_parameter("torch_threads").value > 0:
        torch.set_num_threads(node.get_parameter("torch_threads").value)
    device = node.get_parameter("device").value
    return resolve_device(device)
