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
#   rv_crash            SIGKILL the ftk-review in the pane
# the server's socket lives in the case's temporary folder, removed with it
RV_T="tmux -S $PWD/tmux.sock -f /dev/null"
trap '$RV_T kill-server 2>/dev/null' EXIT

rv_setup() {
	ftk-eval run "$SRC/datasets/suites/alce-demos.json" \
		--outputs "$SRC/datasets/suites/alce-demos.answers.jsonl" -o run -q >/dev/null
}

# Each start gets a new session ($RV_S) and only then ends the previous one:
# a server left without sessions exits, and a new-session racing with that
# exit fails ("server exited unexpectedly").
RV_N=0
RV_S=
rv_start() {
	rv_old=$RV_S
	RV_N=$((RV_N + 1))
	RV_S=rv$RV_N
	$RV_T -u new-session -d -x 80 -y 24 -s "$RV_S" \
		"$*; rc=\$?; stty sane; printf '\\r\\nEXITED rc=%s\\r\\n' \$rc; sleep 60"
	[ -z "$rv_old" ] || $RV_T kill-session -t "$rv_old"
}

rv_screen() { $RV_T capture-pane -p -t "$RV_S"; }

rv_keys() { $RV_T send-keys -t "$RV_S" "$@"; }

# SIGKILL the program running in the pane (a crash)
rv_crash() { pkill -KILL -P "$($RV_T list-panes -t "$RV_S" -F '#{pane_pid}')" ftk-review; }

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
