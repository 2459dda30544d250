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
 * This lives in eval/ because it calls eval's library; trainer/ only knows
 * the hook's shape (train.h), so the dependency points the allowed way.
 */
#ifndef FTK_EVAL_TRAIN_EVAL_H
#define FTK_EVAL_TRAIN_EVAL_H

#include "lib/err.h"
#include "lib/strbuf.h"

struct ftk_train_eval {
	const char *suite;	/* the suite file */
	const char *model_dir;	/* the base model */
	const char *run_dir;	/* the training run */
	const char *ledger;	/* ledger path or NULL */
	const char *run_name;	/* ledger run name or NULL */
	long limit;		/* only the first N cases (<= 0: all) */
	/* given each evaluation's one-line summary for people
	   ("step 20 eval (evals/step-20): toolcall.correct 0.500 (+0.100 vs base)"); NULL: none */
	void (*report)(void *ctx, const char *line);
	void *report_ctx;
	int n_regressed;	/* filled: checkpoints with a regression so far */
};

/*
 * The hook (matches train.h's on_checkpoint): ctx is a struct ftk_train_eval.
 * Appends the metrics line (without a newline) to line.  Returns 0, or the
 * eval's error (a bad suite, an unknown judge, I/O).
 */
int ftk_train_eval_checkpoint(void *ctx, long step, const char *adapter_dir, struct strbuf *line,
			      struct ftk_error *err);

#endif
