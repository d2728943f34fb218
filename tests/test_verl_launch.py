"""The verl launch script, run for real with bash: one node, and a 2-node Ray cluster on this
machine behind fake ``scontrol``/``srun`` (two raylets on one host join fine in Ray 2.60)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from polarity.backends.verl.launch import launch_script, write_launch_script

from .helpers import one_ray_head

VENV_BIN = str(Path(sys.executable).parent)

# `scontrol show hostnames LIST` prints $FAKE_NODES, one a line (the real one expands LIST).
FAKE_SCONTROL = """#!/usr/bin/env bash
[ "$1 $2" = "show hostnames" ] || exit 1
printf '%s\\n' $FAKE_NODES
"""
# srun drops its SLURM options and runs the rest here; every node's address is loopback.
FAKE_SRUN = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_SRUN_LOG"
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in -w|--nodelist) shift 2 ;; *) shift ;; esac
done
if [ "$1" = hostname ]; then echo "127.0.0.1 10.255.255.1"; exit 0; fi
exec "$@"
"""

# Prints argv and one variable as JSON: what the launched command really received.
ECHO = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'v': os.environ.get('V')}))"
# Joins the cluster the script started and reports what it sees.
CLUSTER = ("import os, ray; ray.init(address=os.environ['RAY_ADDRESS'], logging_level='ERROR'); "
           "alive = [n for n in ray.nodes() if n['Alive']]; "
           "print('SEEN', len(alive), int(ray.cluster_resources().get('GPU', 0)))")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(script: Path, env: dict, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def slurm(tmp_path):
    """A PATH with fake scontrol/srun first, then the venv's python and ray."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(PATH=f"{bin_dir}:{VENV_BIN}:{env.get('PATH', '')}",
               FAKE_SRUN_LOG=str(tmp_path / "srun.log"), SLURM_JOB_NODELIST="node[1-2]",
               FAKE_NODES="node1 node2")
    return env


def test_single_node_runs_command_with_env_and_quoting(tmp_path):
    tricky = ["a b", "it's", 'say "hi"', "$HOME", "`id`", "*", ""]
    text = launch_script([sys.executable, "-c", ECHO, *tricky],
                         env={"V": "x y 'z' \"w\" $PATH"}, nnodes=1, gpus_per_node=4)
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert "ray start" not in text and "srun" not in text
    script = write_launch_script(tmp_path / "run" / "launch.sh", text)
    assert script.stat().st_mode & 0o777 == 0o755
    assert not list(script.parent.glob("*.tmp"))
    result = run(script, {"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"argv": tricky, "v": "x y 'z' \"w\" $PATH"}


def test_single_node_exit_code_is_the_commands(tmp_path):
    text = launch_script([sys.executable, "-c", "import sys; sys.exit(7)"], env={},
                         nnodes=1, gpus_per_node=1)
    script = write_launch_script(tmp_path / "launch.sh", text)
    assert run(script, {"PATH": os.environ["PATH"]}).returncode == 7


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        launch_script(["x"], env={"NOT A NAME": "1"}, nnodes=1, gpus_per_node=1)
    with pytest.raises(ValueError):
        launch_script([], env={}, nnodes=1, gpus_per_node=1)
    with pytest.raises(ValueError):
        launch_script(["x"], env={}, nnodes=0, gpus_per_node=1)


def test_multi_node_needs_enough_slurm_nodes(tmp_path, slurm):
    text = launch_script(["true"], env={}, nnodes=3, gpus_per_node=2, python=sys.executable)
    script = write_launch_script(tmp_path / "launch.sh", text)
    t0 = time.time()
    result = run(script, slurm, timeout=30)
    assert result.returncode == 2
    assert "has 2 node(s) (node[1-2]) but this run needs 3" in result.stderr
    assert time.time() - t0 < 10
    assert not (tmp_path / "srun.log").exists()  # failed before starting anything

    del slurm["SLURM_JOB_NODELIST"]
    result = run(script, slurm, timeout=30)
    assert result.returncode == 2 and "SLURM_JOB_NODELIST is unset" in result.stderr


def test_multi_node_fails_fast_when_ray_start_dies(tmp_path, slurm):
    """A `ray start` that exits (here: no such program) stops the wait at once."""
    bin_dir = tmp_path / "broken"
    bin_dir.mkdir()
    (bin_dir / "ray").write_text("#!/usr/bin/env bash\necho 'ray: broken' >&2; exit 1\n")
    (bin_dir / "ray").chmod(0o755)
    slurm["PATH"] = f"{bin_dir}:{slurm['PATH']}"
    text = launch_script(["true"], env={}, nnodes=2, gpus_per_node=2, ray_port=free_port(),
                         join_timeout_s=60, python=sys.executable)
    script = write_launch_script(tmp_path / "launch.sh", text)
    t0 = time.time()
    result = run(script, slurm, timeout=60)
    assert result.returncode == 1
    assert "exited before the cluster was complete" in result.stderr
    assert time.time() - t0 < 30


def ray_processes(port: int, temp_root: str) -> list[psutil.Process]:
    """Processes of the test's Ray cluster: their command line names its port or temp dir."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if f":{port}" in cmd or f"--port={port}" in cmd or temp_root in cmd:
            found.append(proc)
    return found


def test_multi_node_ray_cluster_on_one_machine(tmp_path, slurm):
    """Two raylets join and a driver sees both, in a home without ``~/.ray/auth_token`` (the
    two-node training test in test_verl_cpu.py runs with a stale one)."""
    home = tmp_path / "home"
    home.mkdir()
    slurm["HOME"] = str(home)
    port = free_port()
    # a short root: Ray's unix socket paths live under it and must stay under 108 bytes
    temp_root = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    slurm["RAY_TMPDIR"] = temp_root
    text = launch_script([sys.executable, "-c", CLUSTER], env={"V": "1"}, nnodes=2,
                         gpus_per_node=2, ray_port=port, join_timeout_s=60,
                         python=sys.executable)
    script = write_launch_script(tmp_path / "launch.sh", text)
    with one_ray_head():  # the script's `ray start --head`, until its processes are gone
        try:
            result = run(script, slurm, timeout=90)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            assert "SEEN 2 4" in result.stdout
            assert "Ray cluster at 127.0.0.1:" in result.stderr
            calls = (tmp_path / "srun.log").read_text()
            head = f"-w node1 ray start --head --node-ip-address=127.0.0.1 --port={port} --num-gpus=2"
            assert head in calls
            assert f"-w node2 ray start --address=127.0.0.1:{port} --num-gpus=2" in calls
            deadline = time.time() + 15  # the script waited for its ray steps; allow stragglers
            while ray_processes(port, temp_root) and time.time() < deadline:
                time.sleep(0.5)
            assert not ray_processes(port, temp_root)
        finally:  # never leave this test's Ray behind (only its own processes, by pid)
            for proc in ray_processes(port, temp_root):
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            shutil.rmtree(temp_root, ignore_errors=True)
