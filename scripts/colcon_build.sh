#!/usr/bin/env bash
# colcon build of this repo (one ament_cmake package: messages, nodes, core, launch, config)
# against the wheel venv. --symlink-install keeps the install tree pointing at the sources.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
source "$VENV/bin/activate"
export CMAKE_PREFIX_PATH="$PWD/$VENV" AMENT_PREFIX_PATH="$PWD/$VENV"
# numpy's headers through the out-of-repo link made by fix_wheel_cmake.sh (CMake rejects
# exported include dirs inside the source tree, and the venv is inside it)
colcon build --symlink-install --event-handlers console_cohesion- \
  --cmake-args -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  "-DPython3_NumPy_INCLUDE_DIR=$(cat "$VENV/.numpy-include-link")"
