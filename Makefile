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

.PHONY: setup build test test-all demo bench clean

setup: $(SETUP_STAMP)

# setup.sh keeps its own content stamp; make only decides whether to ask it
$(SETUP_STAMP): setup.py scripts/setup.sh scripts/fix_wheel_cmake.sh
	bash scripts/setup.sh

build: $(BUILD_STAMP)

$(BUILD_STAMP): $(SETUP_STAMP) $(BUILD_INPUTS)
	bash scripts/colcon_build.sh
	touch $@

test: $(BUILD_STAMP)
	$(ROS_ENV) && python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(BUILD_STAMP)
	$(ROS_ENV) && python -m pytest $(PYTEST_ARGS)

demo: $(BUILD_STAMP)
	$(ROS_ENV) && pointmoe demo

bench: $(BUILD_STAMP)
	$(ROS_ENV) && for b in benchmarks/*.py; do echo "== $$b"; python $$b || exit 1; done

clean:
	rm -rf build install log demo_out
