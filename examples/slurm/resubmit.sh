#!/bin/bash
# examples/slurm/resubmit.sh: run a failed stage (or some elements of a
# failed array) again, and let the rest of the chain go on after it.
#
#   FTK_WORK=DIR examples/slurm/resubmit.sh STAGE [ELEMENTS]
#
# STAGE is a name from $FTK_WORK/jobs.env (split, prep, sign, merge, apply,
# tokenize, train, eval, evalmerge); ELEMENTS the array indices to run again
# (Slurm's --array syntax: 1 or 1,4 or 2-5), for an array stage.  When an
# element fails, the stage after it stays pending for ever (afterok cannot
# be met: squeue says DependencyNeverSatisfied), and so does everything
# after that.  Once the cause is fixed, this submits the stage's script again
# with the pipeline's settings ($FTK_WORK/pipeline.env) and points the next
# stage's dependency at the new job; the elements that succeeded are not run
# again.  A training job stopped before its end resumes from its checkpoint.
set -euo pipefail
: "${FTK_WORK:?}"
stage=${1:?usage: resubmit.sh STAGE [ELEMENTS]}
elements=${2:-}
source "$FTK_WORK/pipeline.env"
declare -A script=([split]=split [prep]=prep [sign]=dedupe-sign [merge]=dedupe-merge
	[apply]=dedupe-apply [tokenize]=tokenize [train]=train [eval]=eval [evalmerge]=eval-merge)
[ -n "${script[$stage]:-}" ] || { echo "resubmit.sh: no stage '$stage'" >&2; exit 2; }
order=$(grep -Eo '^[a-z]+=' "$FTK_WORK/jobs.env" | tr -d = | awk '!seen[$0]++')
next=$(echo "$order" | awk -v s="$stage" 'found { print; exit } $0 == s { found = 1 }')
opts=()
[ -n "$elements" ] && opts+=(--array="$elements")
[ "$stage" = train ] && opts+=(--ntasks="$FTK_TRAIN_TASKS")
log=%j
[ -n "$elements" ] && log=%A_%a
id=$(sbatch --parsable --export=ALL ${FTK_SBATCH_ARGS:-} "${opts[@]}" \
	-o "$FTK_WORK/logs/$stage-$log.out" "$FTK_SLURM/${script[$stage]}.sbatch")
id=${id%%;*}
echo "$stage=$id" | tee -a "$FTK_WORK/jobs.env"
if [ -n "$next" ]; then
	nid=$(grep "^$next=" "$FTK_WORK/jobs.env" | tail -n 1 | cut -d= -f2)
	scontrol update jobid="$nid" dependency="afterok:$id"
	echo "$next ($nid) now waits for $id" >&2
fi
