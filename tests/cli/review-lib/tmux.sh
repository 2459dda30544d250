# Helpers for the ftk-review cases: drive the program in a detached tmux
# session on an 80x24 pane, as a person at a terminal would.  Sourced by
# tests/cli/review-*/cmd (this folder has no cmd, so it is not a case).
#
#   rv_setup            a scored run in ./run (ALCE demonstrations, 3 flagged)
#   rv_start CMD...     start CMD in the pane (its exit prints "EXITED rc=N")
#   rv_wait TEXT [S]    poll the screen until TEXT shows (default 10 s), else
#                       print the screen and fail the case
#   rv_keys KEYS...     tmux send-keys
#   rv_screen           the screen now
RV_T="tmux -L ftk-review-test-$$ -f /dev/null"
trap '$RV_T kill-server 2>/dev/null' EXIT

rv_setup() {
	ftk-eval run "$SRC/datasets/suites/alce-demos.json" \
		--outputs "$SRC/datasets/suites/alce-demos.answers.jsonl" -o run -q >/dev/null
}

rv_start() {
	$RV_T -u new-session -d -x 80 -y 24 -s rv \
		"$*; rc=\$?; stty sane; printf '\\r\\nEXITED rc=%s\\r\\n' \$rc; sleep 60"
}

rv_screen() { $RV_T capture-pane -p -t rv; }

rv_keys() { $RV_T send-keys -t rv "$@"; }

rv_wait() {
	i=0
	lim=$(( ${2:-10} * 20 ))
	while [ $i -lt $lim ]; do
		if rv_screen | grep -qF -- "$1"; then
			return 0
		fi
		sleep 0.05
		i=$((i + 1))
	done
	echo "timed out waiting for '$1' on the screen:"
	rv_screen
	exit 1
}
