"""Shared fixtures. DDS is confined to loopback before anything can import rclpy."""
import copy
import os
from pathlib import Path

import pytest

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
