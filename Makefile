# Two entry points: `make run` (the workflow on config.yaml) and `make test`.
# Both create .venv in this checkout and install the pinned dependencies first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed

.PHONY: run curve test test-quick lint mutation rehearsal clean-results

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

# The suite on $(CORES) workers (pytest-xdist; tests sharing a module's run on one worker).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(CORES) --dist loadgroup

# The developer's subset (docs/testing.md): every test but the Snakemake runs and the slow units.
test-quick: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not workflow and not slow"

# The real image-text run (config/xm3600_hybrid.yaml) at its real size on generated data
# (benchmarks/rehearsal.py; about 6 GB under rehearsal/, an hour on 2 cores): each stage's time and peak RSS.
rehearsal: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/rehearsal.py --dir rehearsal --cores $(CORES)

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
