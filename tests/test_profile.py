"""The README's cluster commands, as written: ``make slurm-profile``, then ``snakemake --profile
slurm`` from the clone.

``--profile slurm`` is a profile *name*: Snakemake looks for ``slurm`` in the working directory,
then in its user config dir ($XDG_CONFIG_HOME/snakemake, else ~/.config/snakemake), then its site
config dir. HOME and XDG_CONFIG_HOME point at a scratch folder here, so the install and the
lookup see only what this test put there. The SLURM commands are shadowed by stubs that record
their calls and fail: the dry run must plan every job without a cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

INSTALL = "make slurm-profile"
SUBMIT = "snakemake --profile slurm --configfile presets/a3po.yaml"
SLURM_TOOLS = ("sbatch", "srun", "squeue", "sacct", "scancel", "sinfo", "scontrol", "sshare",
               "sacctmgr")


def scratch_env(tmp_path: Path) -> tuple[dict, Path]:
    """A scratch home, an XDG config dir and failing SLURM stubs first on PATH."""
    stubs, calls = tmp_path / "bin", tmp_path / "slurm.calls"
    stubs.mkdir()
    for tool in SLURM_TOOLS:
        (stubs / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexit 1\n')
        (stubs / tool).chmod(0o755)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "PATH": os.pathsep.join([str(stubs), str(Path(sys.executable).parent), os.environ["PATH"]])}
    for key in ("SNAKEMAKE_PROFILE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(key, None)
    return env, calls


def run(command: str, env: dict) -> subprocess.CompletedProcess:
    """One README command line, from the repository root; `snakemake` is this venv's."""
    args = command.split()
    if args[0] == "snakemake":
        args = [sys.executable, "-m", "snakemake", *args[1:]]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_readme_install_then_profile_by_name_dry_runs_the_a3po_study(tmp_path):
    readme = (REPO / "README.md").read_text()
    assert INSTALL in readme and SUBMIT in readme  # the commands tested are the ones documented
    env, calls = scratch_env(tmp_path)
    dry_run = f"{SUBMIT} -n"

    before = run(dry_run, env)  # a fresh clone without the install: the reported failure
    assert before.returncode != 0
    assert "profile directory given (slurm), but no profile.yaml" in before.stderr

    install = run(INSTALL, env)
    assert install.returncode == 0, install.stdout + install.stderr
    link = tmp_path / "xdg" / "snakemake" / "slurm"  # Snakemake's user config dir under XDG
    assert link.is_symlink() and link.resolve() == (REPO / "profiles" / "slurm").resolve()
    assert not (tmp_path / "home" / ".config").exists()  # XDG_CONFIG_HOME wins over ~/.config
    again = run(INSTALL, env)  # idempotent
    assert again.returncode == 0 and "already installed" in again.stdout, again.stderr

    plan = run(dry_run, env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    out = plan.stdout + plan.stderr
    assert "Using profile slurm" in out
    # the profile's settings are in force
    assert re.search(r"rule train_verl:(?:.|\n)*?resources: [^\n]*mem_mb=\d+", out)
    assert "runtime=60" in out  # default-resources from profiles/slurm/config.yaml
    counts = job_counts(out)
    # README "Cluster runs", step 2: 18 train_verl + 18 merge_verl, 63 evaluate_shard +
    # 63 gather_evaluation (21 policies on 3 benchmarks)
    assert counts["train_verl"] == 18 and counts["merge_verl"] == 18, counts
    assert counts["evaluate_shard"] == 63 and counts["gather_evaluation"] == 63, counts
    # No job submitted, no cluster needed: the plugin's only probe is `scontrol show config`
    # (for its --slurm-status-command help text; a failure there is tolerated).
    called = calls.read_text().splitlines() if calls.exists() else []
    assert set(called) <= {"scontrol show config"}, called


def test_install_leaves_an_existing_profile_of_that_name_alone(tmp_path):
    env, _ = scratch_env(tmp_path)
    mine = tmp_path / "xdg" / "snakemake" / "slurm"
    mine.mkdir(parents=True)
    (mine / "config.yaml").write_text("executor: slurm\n")
    refused = run(INSTALL, env)
    assert refused.returncode != 0
    assert "PROFILE_NAME=polarity-slurm" in refused.stderr
    assert not mine.is_symlink() and (mine / "config.yaml").read_text() == "executor: slurm\n"

    other = run(f"{INSTALL} PROFILE_NAME=polarity-slurm", env)
    assert other.returncode == 0, other.stderr
    assert (mine.parent / "polarity-slurm").resolve() == (REPO / "profiles" / "slurm").resolve()
