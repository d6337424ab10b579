"""Shared fixtures, and a recorder of what would make the host wait for a GPU (``host_reads``). DDS is
confined to loopback before anything can import rclpy."""
import copy
import os
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Rule of the project: every test run that may start DDS stays on loopback, in its own domain.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_loopback.xml")
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_loopback.xml")
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ros_install() -> Path:
    """The colcon install prefix of this package (``make build`` makes it)."""
    prefix = REPO / "install" / "pointmoe_ros"
    if not (prefix / "share" / "pointmoe_ros" / "package.xml").is_file():
        pytest.skip("colcon install not found: run `make build` (make test does it)")
    return prefix


@pytest.fixture(scope="session")
def rclpy_context():
    """rclpy initialised once per test session, on loopback only (see the env set above)."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Jazzy wheels, `.[ros]` extra) not installed")
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


# a Pose-DiT planner small enough to train in seconds, and to load and sample in one, on a CPU
TINY_PLANNER = {
    "model": {"hidden_size": 32, "depth": 2, "num_heads": 4, "cond_dim": 32, "frequency_embedding_size": 32},
    "condition": {
        "hidden_size": 32,
        "points_per_object": 64,
        "pointnet": {"sa_centres": [16, 8], "sa_mlps": [[16, 32], [32, 32]], "global_mlp": [32], "out_dim": 32},
    },
    "horizon": 4,
}


@pytest.fixture
def tiny_planner_config() -> dict:
    return copy.deepcopy(TINY_PLANNER)


class HostReads(TorchDispatchMode):
    """Records the operators that make the host wait for a GPU's result: a scalar or list read
    back (``.item()``, ``int()``, ``.tolist()``), or an output whose size depends on values
    (``nonzero``, boolean indexing, ``unique``, ``bincount``, ``repeat_interleave`` without its
    output size), or a tensor made from host data (``torch.tensor(...)``: on a GPU a copy from host
    memory). A CUDA graph cannot record a pass that does any of them. Run on a CPU, where reading is
    free, it finds the same operators."""

    SIZE_FROM_VALUES = {"nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive", "bincount"}
    SCALAR_READS = {"_local_scalar_dense", "is_nonzero", "equal"}
    FROM_HOST = {"lift_fresh"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        boolean_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
        tensor_repeats = (name == "repeat_interleave" and kwargs.get("output_size") is None
                          and any(isinstance(a, torch.Tensor) for a in args[:2]))
        from_host = name in self.FROM_HOST and args[0].numel() > 0  # an empty one copies nothing
        if name in self.SIZE_FROM_VALUES | self.SCALAR_READS or from_host or boolean_index or tensor_repeats:
            self.found.append(name)
        return func(*args, **kwargs)

    def __enter__(self):
        # a CPU tensor's tolist() never reaches the dispatcher: count it here
        self._tolist = torch.Tensor.tolist
        found, tolist = self.found, self._tolist
        torch.Tensor.tolist = lambda tensor: found.append("tolist") or tolist(tensor)
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)


@pytest.fixture
def host_reads() -> type[HostReads]:
    """``with host_reads() as reads:`` records in ``reads.found`` what would make the host wait
    for a GPU (``HostReads``)."""
    return HostReads
