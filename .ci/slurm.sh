#!/usr/bin/env bash
# CI: a single-node SLURM cluster on this machine (Debian slurm-wlm + munge, no accounting, no systemd),
# then part of the ci scale through it with the workflow's SLURM profile, checking that every job went
# through sbatch. Run as root, with the project's virtual environment active (snakemake and
# snakemake-executor-plugin-slurm installed). Leaves no daemon and no configuration behind. About 4 minutes on 2 cores,
# a third of it the plugin's status polling (its interval grows by 10 s while no job finishes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS=0

die() { echo "slurm: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts slurmctld/slurmd)"
command -v snakemake >/dev/null || die "snakemake is not on PATH (activate the project's venv first)"
python -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
  || die "snakemake-executor-plugin-slurm is not installed in $(command -v python)"

# --- packages ---------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt_log=$(mktemp)
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"$apt_log" 2>&1 \
    || { tail -n 30 "$apt_log"; die "apt-get install slurm-wlm munge"; }
  rm -f "$apt_log"
fi

HOST=$(hostname -s)
CONF_MARK="# Written by .ci/slurm.sh"   # the first line of the configuration files this script writes
STATE=/var/spool/slurm-ci        # controller state, slurmd spool, pid and log files: wiped on every run
CTLD_LOG=$STATE/slurmctld.log
SLURMD_LOG=$STATE/slurmd.log
WORK=""
started_munged=""

# Only the daemons this script started (their pid files) are stopped, on any exit.
cleanup() {
  local rc=$?
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    if [ -s "$pidfile" ]; then
      local pid; pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  if [ -n "$started_munged" ] && [ -s /run/munge/munged.pid ]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
  # The configuration goes with the daemons. Left behind, it points every SLURM client at a dead controller, and
  # the executor plugin, which every snakemake command imports, asks scontrol for it: 9 s of timeouts per command.
  for f in slurm.conf gres.conf; do
    if head -n 1 "/etc/slurm/$f" 2>/dev/null | grep -q "^$CONF_MARK"; then rm -f "/etc/slurm/$f"; fi
    if [ -e "/etc/slurm/$f.before-ci" ]; then mv "/etc/slurm/$f.before-ci" "/etc/slurm/$f"; fi
  done
  [ -n "$WORK" ] && [ "$rc" = 0 ] && rm -rf "$WORK"
  [ "$rc" = 0 ] || [ -z "$WORK" ] || echo "slurm: workflow copy kept for inspection: $WORK" >&2
  exit "$rc"
}
trap cleanup EXIT

logs_tail() {
  for f in "$CTLD_LOG" "$SLURMD_LOG" /var/log/munge/munged.log; do
    [ -f "$f" ] && { echo "--- tail $f"; tail -n 25 "$f"; }
  done >&2
}

# A previous run of this script killed before its trap ran: stop its daemons (by their pid files).
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"; sleep 1
  fi
done
rm -rf "$STATE"
mkdir -p "$STATE/ctld" "$STATE/d"

# --- munge --------------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged || die "munged did not start"
  started_munged=1
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || { logs_tail; die "munge does not authenticate (munge -n | unmunge)"; }
fi

# --- configuration (must live in /etc/slurm/, where Debian's sbatch/squeue look) --------------------
# A configuration this script did not write is kept aside and put back on exit; its own is removed then.
CPUS=$(nproc)
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 1024 ))   # leave 1 GB to the OS
mkdir -p /etc/slurm
for f in slurm.conf gres.conf; do
  if [ -e "/etc/slurm/$f" ] && ! head -n 1 "/etc/slurm/$f" | grep -q "^$CONF_MARK" \
     && [ ! -e "/etc/slurm/$f.before-ci" ]; then
    mv "/etc/slurm/$f" "/etc/slurm/$f.before-ci"
  fi
done
cat > /etc/slurm/slurm.conf <<EOF
$CONF_MARK: a single-node CI cluster, no accounting, no cgroups.
ClusterName=mechrepro-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job without --mem would otherwise be given the whole node's memory.
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for 10 minutes: the executor plugin polls with squeue (there is
# no sacct without accounting) and falls back to sacct unless MinJobAge >= 3x its first-poll delay.
MinJobAge=600
ReturnToService=2
SlurmdTimeout=300
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
# A fake GPU: slurmd only needs a device file to count; jobs that ask for --gpus=1 get CUDA_VISIBLE_DEVICES=0.
cat > /etc/slurm/gres.conf <<EOF
$CONF_MARK: the fake GPU.
NodeName=$HOST Name=gpu File=/dev/null
EOF

# --- daemons (no systemd here: each daemonises itself) ----------------------------------------------
slurmctld || { logs_tail; die "slurmctld did not start"; }
slurmd || { logs_tail; die "slurmd did not start"; }
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1 || true)
  [ "$state" = idle ] && break
  case "$state" in down*|drain*|inval*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true;; esac
  sleep 1
done
[ "$state" = idle ] || { sinfo -N -l >&2 || true; logs_tail; die "node $HOST not idle after 60 s (state: '${state:-none}')"; }
# The fake GPU is schedulable (fails fast if the GRES setup is wrong).
gpu_env=$(timeout 60 srun -N1 -n1 --gpus=1 -t 1 --mem 100 printenv CUDA_VISIBLE_DEVICES 2>&1) \
  || { echo "$gpu_env" >&2; logs_tail; die "srun --gpus=1 on the fake GPU"; }
echo "slurm: cluster up after ${SECONDS}s (node $HOST idle, $CPUS CPUs, ${MEM_MB} MB, fake GPU CUDA_VISIBLE_DEVICES=$gpu_env)"

# --- part of the ci scale through SLURM, in a copy of the workflow --------------------------------
WORK=$(mktemp -d /tmp/mechrepro-slurm.XXXXXX)
cp "$ROOT/Snakefile" "$WORK/"
cp -r "$ROOT/workflow" "$ROOT/replications" "$WORK/"
# The tokenizer, the induction corpus, the smallest attention-only ci model and its capability check
# (4 jobs, one after the other); the check runs on the fake GPU so that gpu=1 -> --gpus=1 is exercised.
TARGETS=(results/ci/models/attn-only-1l-ci/capabilities.json)
cd "$WORK"
N_EXPECTED=$(snakemake "${TARGETS[@]}" -n --quiet rules --workflow-profile workflow/profiles/slurm \
  --config scale=ci 2>/dev/null | awk '$1 == "total" {print $2; exit}')
[ -n "$N_EXPECTED" ] && [ "$N_EXPECTED" -gt 0 ] || die "dry run found no jobs to run"
t0=$SECONDS
run_log=$WORK/snakemake-slurm.log
snakemake "${TARGETS[@]}" --workflow-profile workflow/profiles/slurm --jobs 2 \
  --set-resources capabilities:gpu=1 \
  --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 --seconds-between-status-checks 5 \
  --slurm-keep-successful-logs --latency-wait 5 --retries 0 \
  --config scale=ci >"$run_log" 2>&1 \
  || { tail -n 60 "$run_log" >&2; logs_tail; die "snakemake through SLURM failed (log: $run_log)"; }
run_s=$((SECONDS - t0))

# --- checks: every job was an sbatch job, and its outputs exist -------------------------------------
run_id=$(sed -n 's/.*SLURM run ID: \([0-9a-f-]*\).*/\1/p' "$run_log" | head -n 1)
[ -n "$run_id" ] || die "snakemake did not use the slurm executor (no 'SLURM run ID' in $run_log)"
n_done=$(grep -c "^Finished jobid" "$run_log" || true)
[ "$n_done" = "$N_EXPECTED" ] || die "snakemake finished $n_done jobs, the dry run planned $N_EXPECTED"
n_submitted=$(grep -c "Job .* has been submitted with SLURM jobid" "$run_log" || true)
# squeue keeps finished jobs for MinJobAge: every job of this run (named after the run id) completed.
n_completed=$(squeue -h --states=all --name "$run_id" -o "%i %T" | grep -c " COMPLETED$" || true)
n_rpc=$(grep -c "_slurm_rpc_submit_batch_job" "$CTLD_LOG" || true)
n_logs=$(find .snakemake/slurm_logs -name "*.log" -type f | wc -l)
n_gpu=$(squeue -h --states=all --name "$run_id" -O "tres-per-job:40" | grep -c "gpu" || true)
for n in n_submitted n_completed n_rpc n_logs; do
  [ "${!n}" -ge "$N_EXPECTED" ] || { squeue --states=all -l >&2 || true; logs_tail
    die "$n=${!n} < $N_EXPECTED jobs (see $run_log)"; }
done
[ "$n_gpu" -ge 1 ] || die "no job of this run asked for a GPU (capabilities:gpu=1 -> --gpus=1)"
for target in "${TARGETS[@]}" results/ci/models/attn-only-1l-ci/model.safetensors; do
  [ -s "$target" ] || die "missing output $target"
done
for rule in tokenizer corpus train_toy_model capabilities; do
  [ -d ".snakemake/slurm_logs/rule_$rule" ] || die "no SLURM log for rule $rule"
done
# A copy of what the cluster made, for .ci/run to compare with the same files of the end-to-end test's local run.
if [ -n "${MECHREPRO_SLURM_RESULTS:-}" ]; then
  rm -rf "$MECHREPRO_SLURM_RESULTS" && mkdir -p "$(dirname "$MECHREPRO_SLURM_RESULTS")"
  cp -r results/ci "$MECHREPRO_SLURM_RESULTS"
fi
echo "slurm: $N_EXPECTED jobs went through sbatch ($n_rpc submissions in slurmctld's log," \
  "$n_completed COMPLETED in squeue, $n_logs job logs, $n_gpu on the fake GPU); workflow ${run_s}s, total ${SECONDS}s"
