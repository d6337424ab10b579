#!/usr/bin/env bash
# The GPU measurements of benchmarks/RESULTS.md in one run, on a CUDA machine that has its own
# Python and torch but none of our other dependencies and no network (a lent H100/H200).
#
#   bash benchmarks/gpu_checks.sh prepare      # here, with network: wheels + data into .gpu/ (~19 MB)
#   bash benchmarks/gpu_checks.sh run OUT_DIR  # there, from the repo root, .gpu/ carried along
#                                              # (git ignores it: name it where ignored files travel)
# `prepare` downloads the pure-Python and manylinux wheels that `run` needs and that such an image
# lacks (rosbags for the PointCloud2 messages, and its own needs) for Python 3.12 (or the version
# given after `prepare`), and copies the parity fixture and one SemanticKITTI scan from ../shared/data. spconv's CUDA
# wheels (~70 MB each) are left out: the GPU path measured is our pure-torch sparse convolution.
# For the 3D-MoE planner it renders three held-out demo episodes with our simulator and keeps
# SmolLM2-135M's config and tokenizer, not its weights (94 MB as GGUF, over what a call carries):
# there the planner runs on random weights of that architecture, which take about the same time.
# `rehearse OUT_DIR` runs the same checks on this machine's CPU at small sizes (no CUDA graphs), to
# find what would break there before device time is spent; with PYTHON=<python> it runs under
# another interpreter, e.g. a venv with the lent machine's versions (Python 3.12, torch 2.11 and
# transformers 5.17 so far: the planner check failed under those on a transformers rename that
# this venv's 5.25 did not show).
# `run` installs the wheels into .gpu/site, then writes one log per check into OUT_DIR:
# the machine, parity on CUDA (float32 against the official output, bfloat16/float16 error),
# the MoE layer against dense (expert loop vs grouped GEMMs, float32 and bfloat16; in bfloat16 both
# also replayed as CUDA graphs: the device time without the host's dispatching), the whole
# perception callback on 120k points at tiny / base / L in float32 and bfloat16 (bfloat16 once more
# with --loops: a GEMM per kernel offset and per expert instead of grouped GEMMs), each with its
# count of aten operators, the 3D-MoE planner's plan (LLM in float32 and bfloat16, eager, and
# bfloat16 replayed as CUDA graphs; each with a profile of one plan: its slowest operators, the
# time of its parts, its host syncs), and an operator profile and the host syncs of one L callback.
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    local python_version=${1:-3.12}
    rm -rf .gpu && mkdir -p .gpu/wheels .gpu/data/semantickitti
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/wheels \
        rosbags apsw backports.zstd lz4 ruamel.yaml || return 1
    cp -r ../shared/data/parity .gpu/data/parity
    cp ../shared/data/semantickitti/sequences/00/velodyne/000000.bin .gpu/data/semantickitti/
    python3 -m pointmoe_core.cli sim demos --task pick-and-place-primitive --task put-block-into-matching-bowl \
        --task stack-block-in-absolute-area --image-size 240x320 --episodes 1 --split test --seed 1000 \
        --out .gpu/data/demos || return 1
    local llm
    llm=$(python3 -c "from pointmoe_core.plan.llm import smollm2_float; print(smollm2_float())") || return 1
    mkdir -p .gpu/llm && find "$llm" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} .gpu/llm/ \;
    du -sh .gpu
}

run() {  # run|rehearse OUT_DIR: the checks on the GPU, or on this machine's CPU at small sizes
    local mode=$1 out=${2:?usage: gpu_checks.sh run|rehearse OUT_DIR}
    mkdir -p "$out"
    # the wheels are for the lent machine's Python: a rehearsal installs them beside its logs, and
    # only where its interpreter lacks them
    local site=.gpu/site
    [ "$mode" = rehearse ] && site=$out/site
    if ! "$PYTHON" -c "import rosbags" 2>/dev/null; then
        "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" .gpu/wheels/*.whl \
            || return 1
    fi
    export PYTHONPATH="$PWD:$(realpath -m "$site")" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    local scan=.gpu/data/semantickitti/000000.bin status=0 device=cuda points=120000 configs="tiny base L"
    local loop_configs="tiny L" profiled=L repeats=5 frames=10 graphs=--cuda-graphs
    if [ "$mode" = rehearse ]; then
        device=cpu points=6000 configs=tiny loop_configs=tiny profiled=tiny repeats=1 frames=2 graphs=
    fi
    check() {  # check NAME COMMAND...: run it, keep its output in OUT_DIR/NAME.log, note a failure
        echo "== $1: ${*:2}"
        "${@:2}" 2>&1 | tee "$out/$1.log" || { echo "!! $1 failed"; status=1; }
    }
    check machine bash -c "{ [ $device = cpu ] || nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; }
$PYTHON -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else \"no GPU\", \"grouped_mm:\", hasattr(torch, \"_grouped_mm\"))'"
    for dtype in float32 bfloat16 float16; do
        check "parity_$dtype" "$PYTHON" -m pointmoe_core.cli parity --fixture .gpu/data/parity --device "$device" \
            --dtype "$dtype" --conv-backend torch $([ "$dtype" = float32 ] || echo --tol 1)
    done
    for dtype in float32 bfloat16; do
        check "moe_layer_$dtype" "$PYTHON" benchmarks/moe_layer.py --dtype "$dtype" --json
    done
    for dtype in float32 bfloat16; do
        check "perception_$dtype" "$PYTHON" benchmarks/perception_latency.py --device "$device" --dtype "$dtype" \
            --configs $configs --points "$points" --backends torch --repeats "$repeats" --scan "$scan" --count-ops --json
    done
    check perception_bfloat16_loops "$PYTHON" benchmarks/perception_latency.py --device "$device" --dtype bfloat16 \
        --configs $loop_configs --points "$points" --backends torch --repeats "$repeats" --scan "$scan" --loops --json
    check planner "$PYTHON" benchmarks/planner_latency.py --device "$device" --demos .gpu/data/demos \
        --planner checkpoints/planner_3d_moe --llm-folder .gpu/llm --llm-random-weights \
        --llm-dtype float32 bfloat16 $graphs --count-ops --profile 25 --frames "$frames" --repeats "$repeats" --json
    check "perception_${profiled}_profile" "$PYTHON" benchmarks/perception_latency.py --device "$device" \
        --dtype bfloat16 --configs "$profiled" --points "$points" --backends torch --repeats 1 --scan "$scan" --profile 25
    return $status
}

PYTHON=${PYTHON:-python3}
case ${1:-} in
    prepare) prepare "${@:2}" ;;
    run | rehearse) run "$@" ;;
    *) echo "usage: $0 prepare [PYTHON_VERSION] | run OUT_DIR | rehearse OUT_DIR" >&2; exit 2 ;;
esac
