"""The bash script that launches verl training: one node, or a Ray cluster across SLURM nodes.

One node: the script exports the environment and runs verl, which starts its own local Ray.

Several nodes (inside a SLURM allocation, one task per node): the first node of
``$SLURM_JOB_NODELIST`` runs the Ray head, every other node joins it (each a background
``srun ... ray start --block``); the script waits until Ray reports every node and GPU, then runs
verl with ``RAY_ADDRESS`` set so that its ``ray.init`` joins that cluster. On exit the ``ray start``
steps get SIGTERM (Ray then drains and stops that node's processes), and the script exits with
verl's exit code. Ray's own SLURM recipe does the same (docs.ray.io, "Deploying on Slurm").
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ...files import atomic_write

# Polled by the multi-node script: prints "<alive nodes> <GPUs>" of the cluster at argv[1].
# ray.init waits without end for a head that is not up: check the port first, and cap the time.
_PROBE = """\
import signal, socket, sys
signal.alarm(60)
host, port = sys.argv[1].rsplit(":", 1)
try:
    socket.create_connection((host, int(port)), timeout=5).close()
except OSError:
    print(0, 0)
    sys.exit()
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
alive = sum(1 for node in ray.nodes() if node["Alive"])
print(alive, int(ray.cluster_resources().get("GPU", 0)))
"""

_MULTI_NODE = r"""
say() { echo "polarity launch: $*" >&2; }

if [ -z "${SLURM_JOB_NODELIST:-}" ]; then
  say "SLURM_JOB_NODELIST is unset: a $nnodes-node run must be started" \
    "inside a SLURM allocation (sbatch --nodes=$nnodes)"
  exit 2
fi
hostnames=$(scontrol show hostnames "$SLURM_JOB_NODELIST")  # expands ranges like gpu[01-03,07]
read -r -d '' -a nodes <<< "$hostnames" || true
if (( ${#nodes[@]} < nnodes )); then
  say "the allocation has ${#nodes[@]} node(s) ($SLURM_JOB_NODELIST) but this run needs $nnodes"
  exit 2
fi
head=${nodes[0]}
read -r head_ip _ <<< "$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address)" || true
if [ -z "${head_ip:-}" ]; then
  say "could not get the IP address of the head node $head"
  exit 2
fi
address="$head_ip:$ray_port"

ray_pids=()
stop_ray() {
  # SIGTERM to each `ray start --block` step; Ray drains, then stops its node's processes.
  set +e
  local pid _
  for pid in ${ray_pids[@]+"${ray_pids[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 60); do
    local alive=0
    for pid in ${ray_pids[@]+"${ray_pids[@]}"}; do kill -0 "$pid" 2>/dev/null && alive=1; done
    (( alive )) || return 0
    sleep 1
  done
  for pid in ${ray_pids[@]+"${ray_pids[@]}"}; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap stop_ray EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# One token for this cluster, whatever ~/.ray/auth_token holds: Ray (2.59+) writes that file when
# ray.init starts a local cluster, and a client that reads it cannot join a cluster started
# without it ("InvalidAuthToken"). srun passes the environment to every node's `ray start`.
export RAY_AUTH_MODE=token
if [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  RAY_AUTH_TOKEN=$("$python" -c 'import secrets; print(secrets.token_hex(32))')
  export RAY_AUTH_TOKEN
fi

say "Ray head on $head ($address); nodes: ${nodes[*]:0:nnodes}"
srun --nodes=1 --ntasks=1 -w "$head" \
  ray start --head --node-ip-address="$head_ip" --port="$ray_port" \
  --num-gpus="$gpus_per_node" ${ray_cpus[@]+"${ray_cpus[@]}"} --block &
ray_pids+=($!)
for node in "${nodes[@]:1:nnodes-1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" \
    ray start --address="$address" --num-gpus="$gpus_per_node" ${ray_cpus[@]+"${ray_cpus[@]}"} \
    --block &
  ray_pids+=($!)
done

want_gpus=$((nnodes * gpus_per_node))
deadline=$((SECONDS + join_timeout_s))
while :; do
  status=$("$python" -c "$probe" "$address" 2>/dev/null | tail -n 1) || status=""
  [[ $status =~ ^[0-9]+\ [0-9]+$ ]] || status="0 0"
  read -r alive gpus <<< "$status"
  say "Ray cluster at $address: $alive/$nnodes nodes, $gpus/$want_gpus GPUs"
  if (( alive >= nnodes && gpus >= want_gpus )); then break; fi
  for pid in "${ray_pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "a 'ray start' step exited before the cluster was complete (see its output above)"
      exit 1
    fi
  done
  if (( SECONDS >= deadline )); then
    say "timed out after ${join_timeout_s}s waiting for $nnodes nodes" \
      "and $want_gpus GPUs to join $address"
    exit 1
  fi
  sleep 3
done

export RAY_ADDRESS="$address"
set +e
"${command[@]}"
rc=$?
set -e
say "training exited with status $rc; stopping Ray"
exit "$rc"
"""


def launch_script(command: list[str], *, env: dict[str, str], nnodes: int, gpus_per_node: int,
                  ray_port: int = 6379, join_timeout_s: int = 900, python: str = "python",
                  cpus_per_node: int | None = None) -> str:
    """The text of a bash script that runs ``command`` (verl's trainer) on ``nnodes`` nodes.

    ``env`` is exported first. With ``nnodes > 1`` the script must run inside a SLURM
    allocation of at least ``nnodes`` nodes; ``python`` (with Ray installed) polls the cluster;
    ``cpus_per_node`` sets the CPUs each ``ray start`` declares (CPU mode: logical ones).
    """
    if nnodes < 1 or gpus_per_node < 0:
        raise ValueError(f"need nnodes >= 1 and gpus_per_node >= 0, got {nnodes}, {gpus_per_node}")
    if not command:
        raise ValueError("empty command")
    q = shlex.quote
    lines = ["#!/usr/bin/env bash",
             f"# Written by polarity: verl training on {nnodes} node(s) x {gpus_per_node} GPU(s).",
             "set -euo pipefail", ""]
    bad = [name for name in env if not (name.isidentifier() and name.isascii())]
    if bad:
        raise ValueError(f"not environment variable names: {bad}")
    lines += [f"export {name}={q(str(value))}" for name, value in env.items()]
    lines.append("command=(" + " ".join(q(str(arg)) for arg in command) + ")")
    if nnodes == 1:
        lines.append('"${command[@]}"')  # the script's exit status is the command's (set -e)
        return "\n".join(lines) + "\n"
    lines += [f"nnodes={nnodes}", f"gpus_per_node={gpus_per_node}", f"ray_port={int(ray_port)}",
              f"join_timeout_s={int(join_timeout_s)}", f"python={q(python)}",
              f"probe={q(_PROBE)}",
              "ray_cpus=(" + (f"--num-cpus={int(cpus_per_node)}" if cpus_per_node else "") + ")"]
    return "\n".join(lines) + "\n" + _MULTI_NODE


def write_launch_script(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file, then rename), mode 0o755."""
    def write(tmp: Path) -> None:
        tmp.write_text(text)
        os.chmod(tmp, 0o755)

    return atomic_write(path, write)
