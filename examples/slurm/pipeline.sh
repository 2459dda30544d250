#!/bin/bash
# examples/slurm/pipeline.sh: the whole ftk pipeline as Slurm jobs, each
# stage waiting for the one before it (--dependency=afterok), so that one
# command submits everything and a stage that fails stops what depends on it.
#
#   split ─ prep[N] ─ dedupe-sign[N] ─ dedupe-merge ─ dedupe-apply[N] ─ tokenize[N]
#         ─ train (srun -n FTK_TRAIN_TASKS) ─ eval[FTK_EVAL_TASKS] ─ eval-merge
#
# [N] is an array job of FTK_SHARDS elements, one per shard.  Settings, from
# the environment (the stage scripts see the same, sbatch --export=ALL):
#   FTK_WORK           working directory on a shared file system (required)
#   FTK_INPUT          input JSONL files, space-separated (required)
#   FTK_MODEL          model directory (required)
#   FTK_SUITE          eval suite (required)
#   FTK_SHARDS         shards, and elements of each array (default 4)
#   FTK_TRAIN_TASKS    training processes, srun -n (default 2)
#   FTK_EVAL_TASKS     eval slices (default 2)
#   FTK_SPLIT_ARGS, FTK_FILTER_ARGS, FTK_DEDUPE_ARGS, FTK_DECONTAM_ARGS (it must
#   name --eval FILE), FTK_TOKENIZE_ARGS, FTK_TRAIN_ARGS, FTK_EVAL_ARGS: options
#   for each stage's ftk command
#   FTK_LEDGER         one ledger for every job (default $FTK_WORK/ledger.jsonl);
#                      every entry carries its Slurm job and array ids
#   FTK_RUN            the run's name in the ledger (default the work folder's)
#   FTK_SBATCH_ARGS    more sbatch options for every job (--partition, --account)
# The job ids go to $FTK_WORK/jobs.env (split=ID, prep=ID, ...) and standard
# output; each job's log to $FTK_WORK/logs/; the settings to
# $FTK_WORK/pipeline.env (resubmit.sh reads them).  ftk must be on PATH on the
# nodes, and this folder visible to them (the stage scripts source common.sh
# from it, as FTK_SLURM); paths must not contain spaces.  docs/scale.md
# explains every stage and how to recover from a failure.
set -euo pipefail
: "${FTK_WORK:?}" "${FTK_INPUT:?}" "${FTK_MODEL:?}" "${FTK_SUITE:?}"
export FTK_SLURM=${FTK_SLURM:-$(cd "$(dirname "$0")" && pwd)}
export FTK_SHARDS=${FTK_SHARDS:-4} FTK_TRAIN_TASKS=${FTK_TRAIN_TASKS:-2} FTK_EVAL_TASKS=${FTK_EVAL_TASKS:-2}
export FTK_LEDGER=${FTK_LEDGER:-$FTK_WORK/ledger.jsonl} FTK_RUN=${FTK_RUN:-$(basename "$FTK_WORK")}
export FTK_WORK FTK_INPUT FTK_MODEL FTK_SUITE
mkdir -p "$FTK_WORK/logs"
: > "$FTK_WORK/jobs.env"
# the settings, for resubmit.sh
export -p | grep -E '^declare -x FTK_[A-Z_]+=' > "$FTK_WORK/pipeline.env"
last=
# submit NAME [sbatch options] SCRIPT: after the previous stage succeeded
submit() {
	local name=$1 log=%j id; shift
	case "$*" in *--array=*) log=%A_%a ;; esac
	id=$(sbatch --parsable --export=ALL ${FTK_SBATCH_ARGS:-} ${last:+--dependency=afterok:$last} \
		-o "$FTK_WORK/logs/$name-$log.out" "$@")
	id=${id%%;*}	# --parsable prints ID;CLUSTER on federated sites
	echo "$name=$id" | tee -a "$FTK_WORK/jobs.env"
	last=$id
}
arr="--array=0-$((FTK_SHARDS - 1))"
submit split "$FTK_SLURM/split.sbatch"
submit prep "$arr" "$FTK_SLURM/prep.sbatch"
submit sign "$arr" "$FTK_SLURM/dedupe-sign.sbatch"
submit merge "$FTK_SLURM/dedupe-merge.sbatch"
submit apply "$arr" "$FTK_SLURM/dedupe-apply.sbatch"
submit tokenize "$arr" "$FTK_SLURM/tokenize.sbatch"
submit train --ntasks="$FTK_TRAIN_TASKS" "$FTK_SLURM/train.sbatch"
submit eval "--array=0-$((FTK_EVAL_TASKS - 1))" "$FTK_SLURM/eval.sbatch"
submit evalmerge "$FTK_SLURM/eval-merge.sbatch"
