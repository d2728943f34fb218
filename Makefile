# Two commands on a fresh machine:
#   make demo   set up .venv and run the embedded default study to results/demo/report/
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
CORES ?= 2
# rules call `python -m polarity ...`: the venv's python must come first on PATH
export PATH := $(BIN):$(PATH)

.PHONY: setup demo test test-fast lint bench clean

setup: $(VENV)/.installed

# CPU torch first (the pinned build; a bare `torch` would pull a multi-GB CUDA build)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)
	@echo "report: results/demo/report/training.html results/demo/report/evaluation.html"

# pytest exits 5 when it collects no tests: that is a failure here, never a pass
test: setup
	$(BIN)/python -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: setup
	$(BIN)/snakemake --lint

bench: setup
	$(BIN)/python benchmarks/bench_a3po.py
	$(BIN)/python benchmarks/bench_demo.py

clean:
	rm -rf results .snakemake
