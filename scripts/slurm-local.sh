#!/usr/bin/env bash
# Starts and stops a single-node Slurm cluster on this machine, for tests.
#
#   eval "$(scripts/slurm-local.sh start DIR)"   # prints one line: export SLURM_CONF=DIR/slurm.conf
#   scripts/slurm-local.sh status DIR            # sinfo + squeue; exits 1 when not running
#   scripts/slurm-local.sh stop DIR              # cancels jobs, stops the daemons; never fails
#
# Needs root and Debian 12's slurmctld, slurmd, slurm-client and munge (scripts/install-deps.sh
# installs them). No systemd: the daemons are started directly. Everything the cluster writes
# (slurm.conf, state, spool, pid files, logs) lives in DIR; `start` on a DIR whose cluster is
# running stops it first and starts from an empty state. One node (`hostname -s`, address
# 127.0.0.1, CPUs = nproc) in one default partition `debug`; proctrack/linuxproc, task/none, no
# accounting (sacct does not work: wait on squeue or output files). munged is shared with the
# machine: it is started only when not running, and stopped by `stop` only if `start` started it.
# `scancel` sends SIGCONT+SIGTERM to every process of the job, then SIGKILL KillWait (5 s) later;
# with proctrack/linuxproc a process forked during that window and orphaned can escape both.
# Ports: SLURM_LOCAL_CTLD_PORT (16817) and SLURM_LOCAL_SLURMD_PORT (16818), so only one cluster
# can run at a time with the defaults. Logs go to stderr; only the export line goes to stdout.
set -euo pipefail

log() { echo "slurm-local: $*" >&2; }
usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }

[ $# -eq 2 ] || usage
cmd=$1
[ "$cmd" != start ] || mkdir -p "$2" || { log "cannot create $2"; exit 1; }
if [ -d "$2" ]; then dir=$(cd "$2" && pwd); else dir=$2; fi
conf=$dir/slurm.conf
node=$(hostname -s)
ctld_port=${SLURM_LOCAL_CTLD_PORT:-16817}
slurmd_port=${SLURM_LOCAL_SLURMD_PORT:-16818}

# pid_of NAME: the PID in DIR/NAME.pid if that process is alive and is NAME, else nothing.
pid_of() {
    local pid
    pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = "$1" ] && echo "$pid"
    return 0
}

# stop_pids NAME:PID...: SIGTERM to all, then SIGKILL to those still running after ~10 s; waits
# until they are gone. (slurmctld and munged each take ~2 s to exit, so they stop together.)
stop_pids() {
    local np i left
    for np in "$@"; do kill "${np#*:}" 2>/dev/null || true; done
    for i in $(seq 150); do
        left=()
        for np in "$@"; do
            if kill -0 "${np#*:}" 2>/dev/null; then
                left+=("$np")
                [ "$i" -ne 100 ] || { log "${np%%:*} (${np#*:}) still running after 10 s: SIGKILL"; kill -9 "${np#*:}" 2>/dev/null || true; }
            fi
        done
        [ ${#left[@]} -gt 0 ] || break
        sleep 0.1
    done
    for np in "$@"; do log "stopped ${np%%:*} (${np#*:})"; done
}

show_logs() {
    local f
    for f in slurmctld.log slurmd.log slurmctld.out slurmd.out; do
        [ -s "$dir/$f" ] || continue
        echo "----- tail $dir/$f" >&2
        tail -n 30 "$dir/$f" >&2
    done
    if [ -s /var/log/munge/munged.log ]; then
        echo "----- tail /var/log/munge/munged.log" >&2
        tail -n 10 /var/log/munge/munged.log >&2
    fi
}

do_stop() {
    local pid i jobs
    if [ -n "$(pid_of slurmctld)" ]; then
        # Cancel the jobs while slurmd still runs, so their processes are killed (slurmstepd
        # outlives slurmd), and wait for them to leave the queue (KillWait is 5 s).
        if SLURM_CONF=$conf timeout 10 scancel -p debug 2>/dev/null && [ -n "$(pid_of slurmd)" ]; then
            for i in $(seq 150); do
                jobs=$(SLURM_CONF=$conf timeout 5 squeue -h -o %i 2>/dev/null) || break
                [ -z "$jobs" ] && break
                sleep 0.1
            done
            [ -z "${jobs:-}" ] || log "jobs still in the queue: $(echo $jobs)"
        fi
    fi
    local stop=()
    pid=$(pid_of slurmd); [ -z "$pid" ] || stop+=("slurmd:$pid")
    pid=$(pid_of slurmctld); [ -z "$pid" ] || stop+=("slurmctld:$pid")
    if [ -f "$dir/munged.started" ]; then
        pid=$(cat "$dir/munged.started")
        if [[ $pid =~ ^[0-9]+$ ]] && [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = munged ]; then
            stop+=("munged:$pid")
        fi
    fi
    [ ${#stop[@]} -eq 0 ] || stop_pids "${stop[@]}"
    rm -f "$dir/munged.started"
    rm -f "$dir/slurmctld.pid" "$dir/slurmd.pid"
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 700 /etc/munge
        (umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 711 /var/lib/munge
    install -d -o munge -g munge -m 700 /var/log/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 || { log "munged failed to start"; return 1; }
    local i
    for i in $(seq 50); do
        if munge -n 2>/dev/null | unmunge 2>/dev/null | grep -q 'STATUS: *Success'; then
            cat /run/munge/munged.pid > "$dir/munged.started" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
    done
    log "munge -n | unmunge does not succeed"
    return 1
}

write_conf() {
    local cpus mem avail
    cpus=$(nproc)
    avail=$(awk '/^MemAvailable:/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)
    mem=20000
    [ -n "$avail" ] && [ "$avail" -lt "$mem" ] && mem=$avail
    [ "$mem" -ge 1 ] || mem=1
    cat > "$conf" <<EOF
# Written by scripts/slurm-local.sh: a one-node test cluster, everything in $dir.
ClusterName=sdflowlocal
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
KillWait=5
MinJobAge=60
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

do_start() {
    [ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }
    local c
    for c in slurmctld slurmd sinfo squeue scancel munge unmunge munged; do
        command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] ||
            { log "$c not found: run scripts/install-deps.sh"; exit 1; }
    done
    if [ -n "$(pid_of slurmctld)$(pid_of slurmd)" ]; then
        log "a cluster from $dir is running: stopping it first"
        do_stop
    fi
    local port
    for port in "$ctld_port" "$slurmd_port"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            log "port $port is in use (another cluster?): stop it, or set SLURM_LOCAL_CTLD_PORT and SLURM_LOCAL_SLURMD_PORT"
            exit 1
        fi
    done
    rm -rf "$dir/state" "$dir/spool"
    rm -f "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/slurmctld.out "$dir"/slurmd.out
    mkdir -p "$dir/state" "$dir/spool"
    write_conf
    start_munge || { show_logs; exit 1; }

    local t0=$SECONDS state="" i
    log "starting slurmctld and slurmd ($conf)"
    # Their stdout/stderr must not be ours: `eval "$(... start DIR)"` waits for it to close.
    slurmctld -f "$conf" </dev/null >"$dir/slurmctld.out" 2>&1 || true
    slurmd -f "$conf" </dev/null >"$dir/slurmd.out" 2>&1 || true
    for i in $(seq 60); do
        state=$(SLURM_CONF=$conf timeout 5 sinfo -h -n "$node" -o %t 2>/dev/null || true)
        [ "$state" = idle ] && break
        if [ "$i" -gt 4 ] && { [ -z "$(pid_of slurmctld)" ] || [ -z "$(pid_of slurmd)" ]; }; then
            log "slurmctld or slurmd exited"
            break
        fi
        sleep 0.5
    done
    if [ "$state" != idle ]; then
        log "the node is not idle (state: '${state:-no answer}')"
        show_logs
        do_stop
        exit 1
    fi
    log "node $node idle after $((SECONDS - t0)) s"
    printf 'export SLURM_CONF=%q\n' "$conf"
}

do_status() {
    if [ -z "$(pid_of slurmctld)" ]; then
        echo "no slurmctld running for $dir" >&2
        exit 1
    fi
    SLURM_CONF=$conf sinfo
    SLURM_CONF=$conf squeue
}

case $cmd in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) usage ;;
esac
