# examples/slurm/common.sh: sourced by every stage script (bash).
#
# The stage scripts run inside Slurm jobs and find everything through the
# environment that pipeline.sh exports (sbatch --export=ALL):
#   FTK_WORK      the working directory, on a file system every node shares
#   FTK_SHARDS    how many shards the input is split into (array size)
#   FTK_LEDGER    one ledger for every job (FTK_RUN names the run)
# and, per stage, the FTK_*_ARGS variables described in pipeline.sh.
set -euo pipefail
: "${FTK_WORK:?set FTK_WORK (pipeline.sh does)}"
W=$FTK_WORK
# this array element's shard, as ftk split --shards names it
shard() { printf '%05d' "${SLURM_ARRAY_TASK_ID:?not an array job}"; }
# the cores Slurm gave this task
threads() { echo "${SLURM_CPUS_PER_TASK:-1}"; }
# ftk-validate exits 1 when it rejected records: a data problem that its
# rejects file records, not a failure of the job.  $1: its status, $2: its
# --stats file.  A status of 1 passes only when every record is accounted
# for (in == out + rejected) and some were rejected.
validate_ok() {
	[ "$1" = 0 ] && return 0
	[ "$1" = 1 ] && [ -s "$2" ] &&
		jq -e '.rejected > 0 and .in == .out + .rejected' "$2" >/dev/null && return 0
	echo "ftk-validate failed (exit $1)" >&2
	return 1
}
