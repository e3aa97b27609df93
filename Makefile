# Two entry points: `make run` (the workflow on config.yaml) and `make test`.
# Both create .venv in this checkout and install the pinned dependencies first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed

.PHONY: run curve test test-all test-quick gpu-check lint mutation rehearsal clean-results

# The pins are installed with uv (pinned): 40 s into a fresh .venv against pip's 105 s
# (docs/results.md). uv reads no pip config, so pip's find-links (where a local torch wheel
# lies) are handed on; bytecode is compiled once here, not by every job.
UV_VERSION := 0.13.9
FIND_LINKS := $(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python $(foreach links,$(FIND_LINKS),--find-links $(links))

$(STAMP): envs/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(UV) --compile-bytecode -r envs/requirements.txt
	$(UV) --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --cores $(CORES)

# The image-text answer as a budget curve (config/emoji_curve.yaml): every strategy from 64
# batches to its plateau, three seeds, evaluated at full strength (docs/results.md: its time).
curve: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --cores $(CORES) --configfile config/emoji_curve.yaml

# The suite but the long tier, on $(CORES) workers (pytest-xdist): a module's tests on one worker,
# so a run that several of them read (a module fixture) is built once.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(CORES) --dist loadfile -m "not long"

# The long tier (docs/testing.md): the shipped configs' runs, the SLURM cluster, S3, the real
# XQuAD-R files. `make test test-all` is the whole suite (.ci/run runs both).
test-all: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(CORES) -m long

# The developer's subset (docs/testing.md): every test but the Snakemake runs and the slow units.
test-quick: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not workflow and not slow and not long"

# The real image-text run (config/xm3600_hybrid.yaml) at its real size on generated data
# (benchmarks/rehearsal.py; about 6 GB under rehearsal/, an hour on 2 cores): each stage's time and peak RSS.
rehearsal: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/rehearsal.py --dir rehearsal --cores $(CORES)

# Every CUDA path (packed encoder, LiT with GradCache under bf16, evaluation products, image
# features) on tiny models against its CPU result, as a table; without CUDA it says so and exits 0.
gpu-check: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/gpu_check.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint

# Mutation testing of the modules that turn scores into numbers ([tool.mutmut] in
# pyproject.toml); verdicts are kept in mutants/ and reused by the next run.
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet -r envs/mutation.txt
	ln -sfn workflow src
	mkdir -p mutants
	HF_HUB_OFFLINE=1 $(BIN)/mutmut run --max-children $(CORES) > mutants/run.log 2>&1 || (tail -20 mutants/run.log; exit 1)
	$(BIN)/python tests/mutation_report.py
