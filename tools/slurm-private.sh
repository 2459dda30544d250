#!/bin/sh
# A private one-node Slurm cluster in a directory, for tests and for trying
# examples/slurm/ on one machine.  Debian's slurm-wlm and munge; run as root.
#
#   tools/slurm-private.sh start DIR   start munged, slurmctld and slurmd with
#                                      DIR/slurm.conf (ports that were free;
#                                      state, spool and logs in DIR; munged's
#                                      socket and key in /tmp/ftk-munge.*);
#                                      wait (bounded) until the node is idle;
#                                      print the line to eval:
#                                      export SLURM_CONF=DIR/slurm.conf
#   tools/slurm-private.sh stop DIR    cancel its jobs, shut the daemons down,
#                                      wait for them (bounded), kill by pid what
#                                      is left; safe to call twice or after a
#                                      failed start
#   tools/slurm-private.sh check       exit 0 when this machine can run it,
#                                      else say why on stderr and exit 1
#
# Nothing outside DIR and its /tmp/ftk-munge.* is touched and no daemon of
# the system is used: every client finds this cluster through SLURM_CONF, and the daemons are stopped
# by the pids they wrote.  The settings are the ones that work in a
# container (no cgroups, no systemd): proctrack/linuxproc, task/none,
# cons_tres by core, a partition that oversubscribes so that a 2-core
# machine can run an array's elements beside a waiting job.  The daemons
# talk over 127.0.0.1 (SlurmctldHost's address, NodeAddr), so the host name
# need not resolve (a debootstrap chroot has no /etc/hosts).  Two clusters
# may run at once (make -j2 check runs slurm-chain beside slurm-faults), so
# nothing they name may collide: each numbers its jobs from its own port
# (FirstJobId) and keeps the PMIx client folders that srun --mpi=pmix names
# by job id (TmpFS/spmix_appdir_UID_JOB.STEP) under its own folder.
set -u
cmd=${1:-}
dir=${2:-}
log() { echo "slurm-private: $*" >&2; }

check() {
	if [ "$(id -u)" != 0 ]; then
		log "needs root (slurmd runs jobs as their users; munged as the munge user)"
		return 1
	fi
	for p in munged munge slurmctld slurmd sbatch srun scontrol sinfo squeue setpriv python3; do
		command -v $p >/dev/null 2>&1 || { log "no '$p' (make deps installs slurm-wlm and munge)"; return 1; }
	done
	getent passwd munge >/dev/null || { log "no munge user (the munge package makes it)"; return 1; }
	return 0
}

# alive PIDFILE: the daemon it names runs (a zombie does not count)
alive() {
	[ -f "$1" ] || return 1
	p=$(cat "$1" 2>/dev/null)
	[ -n "$p" ] && [ -r /proc/$p/stat ] || return 1
	st=$(sed 's/.*) //' /proc/$p/stat | cut -c1)
	[ "$st" != Z ]
}

stop() {
	[ -f "$dir/munge" ] || return 0
	m=$(cat "$dir/munge")
	export SLURM_CONF="$dir/slurm.conf"
	if [ -f "$SLURM_CONF" ] && alive "$dir/slurmctld.pid"; then
		scancel --full -u root >/dev/null 2>&1
		i=0
		while [ $i -lt 50 ] && [ -n "$(squeue -h 2>/dev/null)" ]; do sleep 0.2; i=$((i + 1)); done
		scontrol shutdown >/dev/null 2>&1
	fi
	# munged goes last (the others need it to shut down) and only when told
	for f in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$m/munged.pid"; do
		[ "$f" = "$m/munged.pid" ] && alive "$f" && kill -TERM "$(cat "$f")"
		i=0
		while [ $i -lt 50 ] && alive "$f"; do
			[ $i = 25 ] && kill -TERM "$(cat "$f")" 2>/dev/null
			sleep 0.2; i=$((i + 1))
		done
		if alive "$f"; then kill -KILL "$(cat "$f")" 2>/dev/null; fi
	done
	case "$m" in /tmp/ftk-munge.*) rm -rf "$m" ;; esac
	rm -f "$dir/munge"
	return 0
}

start() {
	check || return 1
	mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/tmp" || return 1
	dir=$(cd "$dir" && pwd)
	# munged wants every directory above its socket open to all (a test's
	# temporary directory is not), the socket's own owned by it, and a key
	# nobody else can read: its own directory under /tmp, named in DIR/munge
	m=$(mktemp -d /tmp/ftk-munge.XXXXXX) || return 1
	echo "$m" > "$dir/munge"
	chown munge:munge "$m" && chmod 755 "$m"
	head -c 1024 /dev/urandom > "$m/munge.key"
	chown munge:munge "$m/munge.key" && chmod 400 "$m/munge.key"
	if ! setpriv --reuid=munge --regid=munge --clear-groups munged \
		--key-file="$m/munge.key" --socket="$m/sock" --pid-file="$m/munged.pid" \
		--log-file="$m/log" --seed-file="$m/seed" --origin=127.0.0.1; then
		log "munged did not start: $(tail -n 1 "$m/log" 2>/dev/null)"
		stop
		return 1
	fi
	# two ports nobody listens on now
	ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
	set -- $ports
	host=$(hostname)
	cpus=$(nproc)
	mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
	cat > "$dir/slurm.conf" <<EOF
# written by tools/slurm-private.sh: a private one-node cluster
ClusterName=ftkprivate
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$m/sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
TmpFS=$dir/tmp
FirstJobId=$(($1 * 1000))
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
PlugStackConfig=/dev/null
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=5
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
	export SLURM_CONF="$dir/slurm.conf"
	if ! slurmctld -f "$SLURM_CONF"; then log "slurmctld did not start (see $dir/log)"; stop; return 1; fi
	if ! slurmd -f "$SLURM_CONF"; then log "slurmd did not start (see $dir/log)"; stop; return 1; fi
	i=0
	while [ $i -lt 150 ]; do
		case "$(sinfo -h -o %t 2>/dev/null)" in idle*) echo "export SLURM_CONF=$SLURM_CONF"; return 0 ;; esac
		sleep 0.2; i=$((i + 1))
	done
	log "the node did not come up in 30 s: $(sinfo -h -o '%t %E' 2>&1 | head -n 1); logs in $dir/log"
	stop
	return 1
}

case "$cmd" in
start) [ -n "$dir" ] || { log "usage: start DIR"; exit 2; }; start ;;
stop) [ -n "$dir" ] || { log "usage: stop DIR"; exit 2; }; stop ;;
check) check ;;
*) echo "usage: tools/slurm-private.sh start DIR | stop DIR | check" >&2; exit 2 ;;
esac
