"""Shared fixtures. DDS is confined to loopback before anything can import rclpy."""
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
