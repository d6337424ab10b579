"""Service calls to our nodes in other processes that survive a lost response.

Fast DDS drops a service response when the server has not yet matched the client's response reader:
rmw_fastrtps waits 100 ms for the match, then gives up (ros2/rmw_fastrtps#467). ``wait_for_service``
cannot tell, it only sees the client's side of the match, so on a loaded 2-core CI machine the first
call after discovery can go unanswered for good. A request safe to repeat is sent again; a lifecycle
transition, which is not, is settled by asking the node which state it is in.
"""
import time

import pytest

RETRY_SECONDS = 10.0
# transition id -> (state it starts from, state it ends in), lifecycle_msgs/msg/Transition
TRANSITIONS = {1: ("unconfigured", "inactive"), 2: ("inactive", "unconfigured"),
               3: ("inactive", "active"), 4: ("active", "inactive")}


class ServiceCalls:
    def __init__(self, rclpy, node) -> None:
        self.rclpy, self.node = rclpy, node

    def call(self, client, request, seconds: float = 120.0):
        """Send ``request`` until it is answered; only for requests that are safe to repeat."""
        assert client.wait_for_service(timeout_sec=60), f"service {client.srv_name} not available"
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            future = client.call_async(request)
            self.rclpy.spin_until_future_complete(self.node, future, timeout_sec=min(RETRY_SECONDS, left))
            if future.done():
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f"no answer from {client.srv_name} in {seconds:.0f} s")

    def change_state(self, node_name: str, transition_id: int, seconds: float = 180.0) -> bool:
        """Ask lifecycle node ``node_name`` for a transition; whether it reached the transition's goal state.
        The transition runs in the node's executor, so a state asked for after it is answered after it."""
        from lifecycle_msgs.srv import ChangeState, GetState

        change = self.node.create_client(ChangeState, f"/{node_name}/change_state")
        get_state = self.node.create_client(GetState, f"/{node_name}/get_state")
        start, goal = TRANSITIONS[transition_id]
        request = ChangeState.Request()
        request.transition.id = transition_id
        assert change.wait_for_service(timeout_sec=60), f"service {change.srv_name} not available"
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                future = change.call_async(request)
                self.rclpy.spin_until_future_complete(self.node, future, timeout_sec=min(RETRY_SECONDS, left))
                if future.done():
                    return future.result().success
                change.remove_pending_request(future)
                state = self.call(get_state, GetState.Request(), seconds=max(left, RETRY_SECONDS))
                if state.current_state.label != start:  # the transition ran; only its answer was lost
                    return state.current_state.label == goal
            return False
        finally:
            self.node.destroy_client(change)
            self.node.destroy_client(get_state)


@pytest.fixture
def services(rclpy_context):
    """``services(node)``: robust service calls made through the test's own ``node``."""
    return lambda node: ServiceCalls(rclpy_context, node)
