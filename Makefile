# Two commands on a fresh machine:
#   make demo   set up .venv and run the embedded default study to results/demo/report/
#   make test   set up .venv and run the test suite
# On a cluster's login node, once per clone (see README, "Cluster runs"):
#   make slurm-profile   then `snakemake --profile slurm ...` uses profiles/slurm
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
CORES ?= 2
# rules call `python -m polarity ...`: the venv's python must come first on PATH
export PATH := $(BIN):$(PATH)

.PHONY: setup demo test test-fast lint bench clean slurm-profile

setup: $(VENV)/.installed

# CPU torch first (the pinned build; a bare `torch` would pull a multi-GB CUDA build)
# constraints.txt: the exact versions of everything else (the same install, the same results)
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)
	@echo "report: results/demo/report/training.html results/demo/report/evaluation.html"

# pytest exits 5 when it collects no tests: that is a failure here, never a pass.
# TEST_WORKERS pytest workers (pytest-xdist), each running one test file at a time, the
# longest files first (tests/conftest.py).
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests; rc=$$?; \
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

# `snakemake --profile NAME` looks for NAME in the working directory, then in Snakemake's user
# config dir, then its site config dir. This links profiles/slurm into the user config dir, as
# Snakemake itself computes it (platformdirs: $XDG_CONFIG_HOME/snakemake, else
# ~/.config/snakemake, on Linux), so `snakemake --profile slurm` uses this clone's profile and
# follows it as the clone changes. Needs no setup: the .venv's python or any python3 with
# snakemake answers (else the Linux rule is used). An existing different profile of that name
# is left alone: move it away, or install under another name with PROFILE_NAME=...
PROFILE_NAME ?= slurm
SNAKEMAKE_CONFIG_DIR ?= $(or $(shell for py in "$(BIN)/python" python3; do "$$py" -c \
	'from snakemake.common import get_appdirs; print(get_appdirs().user_config_dir)' \
	2>/dev/null && break; done),$(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake)

slurm-profile:
	@src="$(abspath profiles/slurm)"; dest="$(SNAKEMAKE_CONFIG_DIR)/$(PROFILE_NAME)"; \
	if [ -L "$$dest" ] && [ "$$(readlink "$$dest")" = "$$src" ]; then \
		echo "$$dest -> $$src (already installed)"; \
	elif [ -e "$$dest" ] || [ -L "$$dest" ]; then \
		echo "$$dest exists and is not this clone's profiles/slurm: left as it is." >&2; \
		echo "Move it away, or: make slurm-profile PROFILE_NAME=polarity-slurm" \
		     "(then snakemake --profile polarity-slurm)" >&2; exit 1; \
	else \
		mkdir -p "$(SNAKEMAKE_CONFIG_DIR)" && ln -s "$$src" "$$dest" && echo "$$dest -> $$src"; \
	fi
