/*
 * train_eval.h: evals after every training run (ftk-train --eval SUITE).
 *
 * ftk-train calls ftk_train_eval_checkpoint() after each checkpoint it saves.
 * The first call evaluates the base model once into RUN/evals/base; each call
 * evaluates the checkpoint's adapter into RUN/evals/step-N, compares it with
 * the base (paired, as `ftk-eval compare` does), and returns one metrics line
 * so the run's quality curve sits in metrics.jsonl beside its loss curve:
 *
 *   {"step":N,"eval":{"suite":"calls","metrics":{"toolcall.correct":{"mean","lo","hi","n",
 *     "base","diff","p","regressed"}},"regressed":["..."],"dir":"evals/step-N"}}
 *
 * A metric regresses when it is semantic and significantly lower than the
 * base's (alpha 0.05).  The eval's time goes to the ledger under the run
 * (stage eval, kind compute).  The eval runs the model locally with the same
 * code as ftk-eval --model-dir, one case at a time.
 *
 * Guard rails (ftk-train --stop-on-regression, --keep-best METRIC).  Each
 * checkpoint is also compared with the best checkpoint so far (by the
 * --keep-best metric, else by the mean of the semantic metrics), paired, as
 * compare does.  With stop_on_regression, a semantic metric significantly
 * below the base's or the best checkpoint's sets *stop (the run ends after
 * this checkpoint, which is kept) and `stopped_at`; ftk-train then exits
 * with its own status (3).  With keep_best, the best checkpoint's step is
 * tracked (`best_step`), its adapter copied to RUN/evals/best as it becomes
 * the best (the run prunes old checkpoints), and ftk-train copies that into
 * RUN/adapter at the end and writes RUN/best.json.  The base is the model
 * with base_adapter applied (the --init-adapter a run started from), so a
 * run that continues a tuned adapter is judged against it.
 *
 * This lives in eval/ because it calls eval's library; trainer/ only knows
 * the hook's shape (train.h), so the dependency points the allowed way.
 */
#ifndef FTK_EVAL_TRAIN_EVAL_H
#define FTK_EVAL_TRAIN_EVAL_H

#include <signal.h>
#include "lib/err.h"
#include "lib/strbuf.h"

struct ftk_train_eval {
	const char *suite;	/* the suite file */
	const char *model_dir;	/* the base model */
	const char *run_dir;	/* the training run */
	const char *ledger;	/* ledger path or NULL */
	const char *run_name;	/* ledger run name or NULL */
	long limit;		/* only the first N cases (<= 0: all) */
	const char *base_adapter;	/* the base's adapter (--init-adapter), or NULL */
	int stop_on_regression;
	const char *keep_best;	/* metric name, or NULL */
	volatile sig_atomic_t *stop;	/* set to 1 to end the run (stop_on_regression) */
	/* given each evaluation's one-line summary for people
	   ("step 20 eval (evals/step-20): toolcall.correct 0.500 (+0.100 vs base)"); NULL: none */
	void (*report)(void *ctx, const char *line);
	void *report_ctx;
	int n_regressed;	/* filled: checkpoints with a regression so far */
	long stopped_at;	/* filled: the step whose regression stopped the run, 0: none */
	char stop_reason[256];	/* filled: which metric, against what */
	long best_step;		/* filled: the best checkpoint so far, 0: none yet */
	double best_value;
	int base_value_known;	/* filled: the base's value of the same measure */
	double base_value;
	char best_dir[4200];	/* a copy of its adapter (RUN/evals/best): checkpoints are pruned */
	void *best_results;	/* private: its results (cJSON) */
};

/* Free what the hook kept (the best checkpoint's results).  NULL allowed. */
void ftk_train_eval_release(struct ftk_train_eval *te);

/*
 * The hook (matches train.h's on_checkpoint): ctx is a struct ftk_train_eval.
 * Appends the metrics line (without a newline) to line.  Returns 0, or the
 * eval's error (a bad suite, an unknown judge, I/O).
 */
int ftk_train_eval_checkpoint(void *ctx, long step, const char *adapter_dir, struct strbuf *line,
			      struct ftk_error *err);

#endif
