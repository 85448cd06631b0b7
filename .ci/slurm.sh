#!/usr/bin/env bash
# Run the demo workflow on a real single-node SLURM and compare it with a local run.
#
# 1. Installs Debian's slurm-wlm and munge when missing (needs root) and the SLURM
#    executor plugin into .venv.
# 2. Starts munged, slurmctld and slurmd with a private configuration: one node called
#    localhost at 127.0.0.1 with this machine's CPUs and memory,
#    ProctrackType=proctrack/linuxproc, TaskPlugin=task/none and no accounting.
# 3. Runs the demo images locally, then through workflow/profiles/slurm with
#    --executor slurm, --slurm-no-account and --slurm-status-command squeue.
# 4. Checks that every non-local job was a SLURM job that slurmd launched, and that the
#    tables of both runs are equal.
# 5. Stops the daemons this script started (and only those).
#
# Environment: SLURM_TEST_DIR (work folder, default .cache/slurm-test),
# VLM_MICRO_MODEL (model spec for both runs, default: the config's builtin:demo).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
WORK=${SLURM_TEST_DIR:-$ROOT/.cache/slurm-test}
STATE=$WORK/slurm-state
# srun inside a job step reads the default location only, so the configuration goes
# there. An existing file that this script did not write is never replaced.
SLURM_CONF_FILE=/etc/slurm/slurm.conf
CONF_MARKER="# Written by vlm-micro .ci/slurm.sh for a throwaway single-node test cluster."
WROTE_CONF=0
export HF_HUB_OFFLINE=1
STARTED_PIDS=()

log() { echo "test-slurm: $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "slurm-wlm and munge are missing; install them with: sudo apt-get install slurm-wlm munge"
        exit 1
    fi
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends slurm-wlm munge
}

install_plugin() {
    if ! "$BIN/python" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
        log "installing snakemake-executor-plugin-slurm into .venv"
        "$BIN/pip" install -q "snakemake-executor-plugin-slurm>=1.0"
    fi
}

start_munge() {
    if [ -S /run/munge/munge.socket.2 ] && munge -n >/dev/null 2>&1; then
        log "using the munged that is already running"
        return
    fi
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- munged
    for _ in $(seq 50); do
        [ -s /run/munge/munged.pid ] && break
        sleep 0.1
    done
    STARTED_PIDS+=("$(cat /run/munge/munged.pid)")
}

write_slurm_conf() {
    local cpus memory
    cpus=$(nproc)
    # Leave 10% of the memory to the system, as slurmd would otherwise drain the node.
    memory=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$STATE/ctld" "$STATE/spool" "$(dirname "$SLURM_CONF_FILE")"
    if [ -e "$SLURM_CONF_FILE" ] && [ "$(head -n 1 "$SLURM_CONF_FILE")" != "$CONF_MARKER" ]; then
        log "$SLURM_CONF_FILE exists and was not written by this script; refusing to replace it"
        exit 1
    fi
    WROTE_CONF=1
    cat >"$SLURM_CONF_FILE" <<EOF
$CONF_MARKER
ClusterName=vlmmicro
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_slurm() {
    slurmctld -f "$SLURM_CONF_FILE"
    slurmd -f "$SLURM_CONF_FILE" -N localhost
    for _ in $(seq 100); do
        [ -s "$STATE/slurmctld.pid" ] && [ -s "$STATE/slurmd.pid" ] && break
        sleep 0.2
    done
    STARTED_PIDS+=("$(cat "$STATE/slurmctld.pid")" "$(cat "$STATE/slurmd.pid")")
    for _ in $(seq 100); do
        if sinfo -h -N -o "%T" 2>/dev/null | grep -qx "idle"; then
            log "SLURM is up: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
            return
        fi
        sleep 0.3
    done
    log "the node did not become idle; last lines of the logs:"
    tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
    exit 1
}

stop_started() {
    local pid
    # Newest first: slurmd, slurmctld, then munged.
    for ((index = ${#STARTED_PIDS[@]} - 1; index >= 0; index--)); do
        pid=${STARTED_PIDS[index]}
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    done
    if [ ${#STARTED_PIDS[@]} -gt 0 ]; then
        log "stopped the daemons this script started (pids ${STARTED_PIDS[*]})"
    fi
    if [ "$WROTE_CONF" -eq 1 ]; then
        rm -f "$SLURM_CONF_FILE"
    fi
}

write_run_config() {
    # The bundled config with shards of 4 images, so the 10 demo images make 3
    # labelling jobs, which also write the reports.
    cat >"$WORK/config.yaml" <<EOF
sample_sheet: demo_data/images.tsv
labels: config/labels.yaml
workflow:
  shard_size: 4
  threads: 1
  mem_mb: 2000
EOF
}

run_demo() {
    local out=$1
    shift
    local model_args=()
    if [ -n "${VLM_MICRO_MODEL:-}" ]; then
        model_args=(--model "$VLM_MICRO_MODEL")
    fi
    rm -rf "$out"
    # -v keeps snakemake's per-job lines ("rule label_shard:") in its log, which the
    # comparison counts.
    "$BIN/vlm-micro" -v run --config "$WORK/config.yaml" --out "$out" "${model_args[@]}" "$@"
}

trap stop_started EXIT
install_packages
install_plugin
mkdir -p "$WORK"
start_munge
write_slurm_conf
start_slurm

log "writing the demo images"
"$BIN/python" -c "from vlm_micro.pipeline.demo import write_demo_data; write_demo_data('demo_data')"
write_run_config
log "local run"
run_demo "$WORK/local" --cores 2
log "SLURM run"
run_demo "$WORK/slurm" --cores 2 --profile slurm -- \
    --slurm-no-account --slurm-status-command squeue --slurm-keep-successful-logs
"$BIN/python" "$ROOT/.ci/compare_slurm_run.py" "$WORK/local" "$WORK/slurm" "$STATE/slurmd.log"
log "passed"
