#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests (tests/test_slurm.py) and for trying
# the profile by hand. Needs root: installs Debian's slurm-wlm and munge when absent, writes
# /etc/slurm/slurm.conf (no accounting: the profile asks squeue for job states, and completed
# jobs stay visible to squeue for MinJobAge = 600 s), then starts munged, slurmctld, slurmd.
#
#   scripts/slurm-test-cluster.sh start    # idempotent; prints the partition when ready
#   scripts/slurm-test-cluster.sh stop     # stops the daemons and removes our slurm.conf
#
# It refuses (exit 77) to touch a /etc/slurm/slurm.conf it did not write, so running the tests
# as root on a real SLURM machine leaves that installation alone (the SLURM tests then skip).
#
# Facts this relies on (Debian bookworm, slurm 22.05.8): proctrack/linuxproc and task/none need
# no cgroups; there must be no cgroup.conf; the node name is this machine's short hostname.
set -euo pipefail

PARTITION="${POLARITY_SLURM_TEST_PARTITION:-polarity-test}"
MARK="# Written by polarity's scripts/slurm-test-cluster.sh"

start() {
    if [ "$(id -u)" != 0 ]; then
        echo "slurm-test-cluster: needs root (to install and start slurm and munge)" >&2
        exit 77
    fi
    if [ -e /etc/slurm/slurm.conf ] && ! grep -q "^${MARK}" /etc/slurm/slurm.conf; then
        echo "slurm-test-cluster: /etc/slurm/slurm.conf was not written by this script (a real" \
             "SLURM installation?): leaving it and its daemons alone" >&2
        exit 77
    fi
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -q slurm-wlm munge >/dev/null; }
    fi
    mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge /etc/slurm \
        /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
    chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
    cat > /etc/slurm/slurm.conf.new <<CONF
${MARK}: a one-node cluster for tests.
ClusterName=polarity-test
SlurmctldHost=${host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=${PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
    if ! cmp -s /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf 2>/dev/null; then
        stop_daemons
        mv /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf
    else
        rm /etc/slurm/slurm.conf.new
    fi
    rm -f /etc/slurm/cgroup.conf
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 60); do
        if sinfo -h -p "${PARTITION}" -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "${PARTITION}"
            return 0
        fi
        sleep 1
    done
    echo "slurm-test-cluster: the node did not come up; see /var/log/slurm/" >&2
    exit 1
}

stop_daemons() {
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    for _ in $(seq 20); do
        pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || return 0
        sleep 0.5
    done
}

case "${1:-start}" in
    start) start ;;
    stop)
        if [ -e /etc/slurm/slurm.conf ] && ! grep -q "^${MARK}" /etc/slurm/slurm.conf; then
            echo "slurm-test-cluster: not our cluster; nothing stopped" >&2
            exit 77
        fi
        stop_daemons
        # Without our slurm.conf, SLURM's clients fail at once; with it, they try the stopped
        # controller for ~9 s first (snakemake's SLURM plugin runs `scontrol show config` when
        # it is imported, so every later snakemake call on this machine would wait).
        rm -f /etc/slurm/slurm.conf
        ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
