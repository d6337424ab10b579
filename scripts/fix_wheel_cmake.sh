#!/usr/bin/env bash
# The ros-jazzy wheels' *_rosidl_generator_pyExport.cmake files name the manylinux builder's
# include dirs (/opt/python/cp311-cp311/...). Point them at this Python's headers and numpy's.
#
# numpy's headers are reached through a symlink outside the repo: the venv lives inside the
# repo, and CMake refuses an exported include dir "prefixed in the source directory".
set -euo pipefail
VENV=$(cd "${1:?usage: fix_wheel_cmake.sh VENV}" && pwd)
PYINC=$("$VENV/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC_REAL=$("$VENV/bin/python3" -c 'import numpy; print(numpy.get_include())')
LINK_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/pointmoe/$(echo "$VENV" | sha256sum | cut -c1-12)"
mkdir -p "$LINK_DIR"
ln -sfn "$NPINC_REAL" "$LINK_DIR/numpy_include"
NPINC="$LINK_DIR/numpy_include"
echo "$NPINC" > "$VENV/.numpy-include-link"  # read by colcon_build.sh
{ grep -rlE '/opt/python/cp311-cp311|numpy/_core/include' "$VENV"/share/*/cmake 2>/dev/null || true; } | while read -r f; do  # none left on a second run
  sed -i -E -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
            -e "s#[^;\"]*numpy/_core/include#$NPINC#g" "$f"
done
echo "fixed wheel cmake files: PYINC=$PYINC NPINC=$NPINC"
