"""How many aten operators a piece of code dispatches: each one a host dispatch of a few
microseconds, and on a GPU in eager mode most of them a kernel launch."""
from torch.utils._python_dispatch import TorchDispatchMode


class OperatorCount(TorchDispatchMode):
    """Counts the aten operators dispatched while it is on (views included)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))
