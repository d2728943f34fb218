import os
from pathlib import Path

# Tests never touch the network: every Hugging Face load is of a local file.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


# `make test` runs two pytest workers, one test file each at a time (`-n 2 --dist loadfile
# --no-loadscope-reorder`; module fixtures then run once). xdist hands each worker two files at
# the start, then one file whenever it is free, in collection order: the verl study on CPU
# (the longest file: 15-26 min with the suite running) and a short file go to one worker, the
# SLURM and Snakemake studies to the other, which then takes the rest until the first is free.
LONGEST_FIRST = ("test_verl_cpu.py", "test_slurm.py", "test_verl_cpu_parts.py", "test_workflow.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = Path(str(item.fspath)).name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file and among the rest is kept
