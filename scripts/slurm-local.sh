#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests: `scripts/slurm-local.sh start|stop|env [DIR]`.
# Needs root and Debian's slurm-wlm + munge (apt-get install -y slurm-wlm munge). Everything lives in
# DIR (default $MIMETIC_SLURM_DIR or /tmp/mimetic-slurm): slurm.conf, a private munge key and socket,
# state, logs. The daemons bind to 127.0.0.1 only. Clients need `export SLURM_CONF=DIR/slurm.conf`
# (`eval "$(scripts/slurm-local.sh env)"`). No cgroups, no GPUs: the node has 2 CPUs.
set -euo pipefail
cmd=${1:-}
dir=${2:-${MIMETIC_SLURM_DIR:-/tmp/mimetic-slurm}}

pid_of() { [ -f "$dir/$1.pid" ] && cat "$dir/$1.pid" 2>/dev/null || true; }

stop() {
  for d in slurmd slurmctld munged; do
    local pid
    pid=$(pid_of "$d")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$d.pid"
  done
}

case "$cmd" in
  start)
    [ "$(id -u)" = 0 ] || { echo "slurm-local: must run as root (the daemons run as root, without a slurm user)" >&2; exit 2; }
    for b in munged mungekey slurmctld slurmd sbatch; do
      command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { echo "slurm-local: $b not found; apt-get install -y slurm-wlm munge" >&2; exit 2; }
    done
    export PATH="$PATH:/usr/sbin"
    stop
    rm -rf "$dir"
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chmod 700 "$dir/munge"
    mungekey --create --keyfile="$dir/munge/munge.key" --force
    chmod 600 "$dir/munge/munge.key"
    # --force: munged refuses to run as root (and with a key outside /etc/munge) without it.
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
      --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munge.seed"
    cpus=2
    cat > "$dir/slurm.conf" <<EOF
ClusterName=mimetic-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MpiDefault=none
KillWait=30
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerParameters=sched_interval=2
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$dir/slurm.conf" -i
    slurmd -f "$dir/slurm.conf" -N localhost
    for _ in $(seq 100); do
      if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then echo "slurm-local: up; export SLURM_CONF=$dir/slurm.conf"; exit 0; fi
      sleep 0.2
    done
    echo "slurm-local: the node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
    stop
    exit 1
    ;;
  stop)
    stop
    ;;
  env)
    echo "export SLURM_CONF=$dir/slurm.conf"
    ;;
  *)
    echo "usage: $0 start|stop|env [DIR]" >&2
    exit 2
    ;;
esac
