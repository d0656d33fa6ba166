# Two commands do all set-up on a fresh machine with only Python 3.10+:
#   make demo   the main job: the LUNG_LOBES example end to end
#   make test   the whole test suite
# Both create (or reuse) .venv and install the project into it, pinned by constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= selfconfig_data
export SELFCONFIG_RAW ?= $(CURDIR)/$(DATA)/raw
export SELFCONFIG_PREPROCESSED ?= $(CURDIR)/$(DATA)/preprocessed
export SELFCONFIG_RESULTS ?= $(CURDIR)/$(DATA)/results

.PHONY: demo test venv clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

# make the example, plan and preprocess it, pre-train SurrogateFlip on the unlabeled pool, train
# Scratch and SurrogateFlip on 25 % of fold 0's labels, predict and score the test scans, print
# the table and the figure's path (about 9 minutes on a 2-core CPU, after installation).
# The demo's budget is iterations (about 90 s of estimated iterations per arm, 80 s of
# pre-training: about 440 and 1280 iterations) with a wall-clock cap (3.75 / 4 minutes) for a
# machine slower than its plan; it plans for short iterations (--cpu-seconds 0.25): with the
# default 1 s plan the same seconds would be about 90 iterations (documentation/benchmarks.md).
demo: $(STAMP)
	$(BIN)/selfconfig_make_example LUNG_LOBES --exist-ok
	$(BIN)/selfconfig_plan_and_preprocess -d LUNG_LOBES --cpu-seconds 0.25 --no-progress
	$(BIN)/selfconfig_experiment -d LUNG_LOBES -tr Scratch SurrogateFlip -frac 0.25 -f 0 --budget demo --no-progress

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean-demo:
	rm -rf $(DATA)
