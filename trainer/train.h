/*
 * train.h: the training loop as a library call.
 *
 * ftk_train_run() is all of ftk-train except option parsing, messages and
 * the ledger: it loads the model and the shards, creates or restores the
 * LoRA, optimizer and data position, runs optimizer steps, writes
 * metrics.jsonl, checkpoints and the final adapter, and returns what it did.
 *
 * One optimizer step:
 *   1. draw grad_accum micro-batches and count their targets (the loss
 *      normaliser of the whole step, so accumulation equals one big batch);
 *   2. zero the gradients; forward/backward each micro-batch (model.h);
 *   3. opts->reduce_count / reduce_grads (NULL on one process; the
 *      data-parallel all-reduce of issue 9 plugs in here: the target count
 *      before the backward passes, gradients and loss after them);
 *   4. clip to the global norm; AdamW with the schedule's learning rate;
 *   5. append the metrics line; evaluate; checkpoint; check the stop flag.
 *
 * Every step is deterministic given (options, seed, threads): the data order
 * is a function of the seed, the dropout generator's state is saved, the
 * optimizer's sums run in index order.  Resuming from a checkpoint therefore
 * reproduces the uninterrupted run bit for bit, metrics included (apart from
 * the wall-clock fields tokens_per_s and elapsed).
 *
 * Stopping: when *opts->stop becomes non-zero (a signal handler sets it),
 * the loop finishes the step it is in, saves a checkpoint and returns with
 * result->interrupted set.
 */
#ifndef FTK_TRAINER_TRAIN_H
#define FTK_TRAINER_TRAIN_H

#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "lib/err.h"
#include "lib/strbuf.h"
#include "model/backend.h"
#include "model/model.h"
#include "trainer/optim.h"

enum ftk_objective { FTK_OBJ_SFT = 0, FTK_OBJ_DPO = 1 };

#define FTK_TRAIN_PATH 4096

struct ftk_train_opts {
	char model[FTK_TRAIN_PATH];	/* --model DIR */
	char data[FTK_TRAIN_PATH];	/* --data SHARD_DIR */
	char val[FTK_TRAIN_PATH];	/* --val SHARD_DIR, "" for none */
	char out[FTK_TRAIN_PATH];	/* --out RUN_DIR */
	char init_adapter[FTK_TRAIN_PATH];	/* --init-adapter DIR, "" for none */
	enum ftk_quant quant;		/* nf4 */
	struct ftk_lora_opts lora;	/* targets all, rank 8, alpha 16, rslora 0, dropout 0, seed */
	enum ftk_objective objective;	/* sft */
	double beta;			/* DPO beta, 0.1 */
	double lr;			/* 2e-4 */
	struct ftk_sched sched;		/* kind cosine, warmup 0, min_ratio 0 (lr/total filled in) */
	struct ftk_adamw_opts adamw;	/* 0.9, 0.999, 1e-8, 0 */
	double max_grad_norm;		/* 1.0; 0 disables */
	int batch;			/* rows (or pairs) per micro-batch, 4 */
	int grad_accum;			/* micro-batches per optimizer step, 1 */
	int seq_len;			/* 512 */
	int epochs;			/* 1 (ignored when max_steps > 0) */
	long max_steps;			/* 0: from epochs */
	long eval_every;		/* 0: only at the end */
	long ckpt_every;		/* 0: only when stopping */
	int keep;			/* checkpoints kept, 3 */
	uint64_t seed;			/* 42 */
	int threads;			/* 0: all cores */
	int checkpoint_activations;	/* 0 */
	int precision;			/* enum ftk_precision of the products: fp32 */
	enum ftk_attention attention;	/* auto (model.h: flash when the T x T probabilities are large) */

	/* not saved in train_config.json */
	int strict_resume;	/* --strict: refuse a damaged latest checkpoint rather than
				 * resume from an older intact one */
	volatile sig_atomic_t *stop;	/* set non-zero to stop at the next step boundary */
	/*
	 * Data-parallel hooks (issue 9); NULL on one process.  Each rank draws
	 * its own micro-batches; reduce_count is called with the rank's target
	 * count (pairs for DPO) before any backward pass and must leave the sum
	 * over ranks (the loss normaliser of the global batch); reduce_grads is
	 * called after the backward passes with the rank's gradients (n floats)
	 * and loss sum and must leave the sums over ranks in both.  Clipping and
	 * AdamW then run identically on every rank.  The gradients it gets are
	 * a host copy (downloaded before, uploaded after: the model's arrays
	 * are backend memory, device memory on a GPU) unless
	 * reduce_grads_device says the hook takes the backend's memory itself
	 * (NCCL's device pointers).
	 */
	int rank, world;	/* this process and the process count (0, 1 by default):
				 * every rank draws the same global stream of world x
				 * grad_accum micro-batches per step and keeps those with
				 * index % world == rank; only rank 0 writes anything */
	int (*reduce_count)(void *ctx, long *count, struct ftk_error *err);
	int (*reduce_grads)(void *ctx, float *grads, size_t n, double *loss_sum,
			    struct ftk_error *err);
	int reduce_grads_device;	/* reduce_grads takes backend memory (0: a host copy) */
	/*
	 * Called once per step on every rank with this rank's stop flag (0 or
	 * 1); must leave the maximum over ranks, so that a signal that reached
	 * one rank a step before the others still stops them all at the same
	 * step (a rank that left alone would leave the rest waiting in their
	 * next all-reduce).  NULL on one process.
	 */
	int (*reduce_max)(void *ctx, int *flag, struct ftk_error *err);
	void *reduce_ctx;
	/* The compute backend (--device; issue 9); NULL: the CPU backend. */
	struct ftk_backend *backend;
	/* Progress for the program to print (NULL: none).  line is one metrics line. */
	/* each metrics.jsonl line as written, plus "of": the run's total steps */
	void (*on_step)(void *ctx, const char *line);
	void *on_step_ctx;
	/*
	 * A note for the person running it (NULL: none), e.g. that a resume runs
	 * under another BLAS kernel or thread count than its checkpoint, so it
	 * will not be bit-identical.  The run goes on.
	 */
	void (*on_note)(void *ctx, const char *msg);
	void *on_note_ctx;
	/*
	 * Called on rank 0 after each checkpoint is written, with the checkpoint
	 * directory (which holds the adapter); it may append one JSON object (no
	 * newline) to line, which goes into metrics.jsonl.  ftk-train --eval uses
	 * it (eval/train_eval.h).  A negative return stops the run with err.
	 */
	int (*on_checkpoint)(void *ctx, long step, const char *adapter_dir, struct strbuf *line,
			     struct ftk_error *err);
	void *on_checkpoint_ctx;
};

/* Fill *o with the defaults listed above. */
void ftk_train_opts_default(struct ftk_train_opts *o);

/* The saved options (train_config.json) as JSON text; caller frees. */
char *ftk_train_opts_json(const struct ftk_train_opts *o);
/*
 * Read train_config.json text into *o (over the defaults).  Returns 0 or
 * FTK_EDATA naming the field (path is used in the message).
 */
int ftk_train_opts_parse(const char *text, size_t len, const char *path,
			 struct ftk_train_opts *o, struct ftk_error *err);

/* Check option values before anything is loaded.  0 or FTK_EUSAGE. */
int ftk_train_opts_check(const struct ftk_train_opts *o, struct ftk_error *err);

struct ftk_train_result {
	long start_step;	/* step the run (re)started at */
	long steps;		/* optimizer steps completed in total */
	long total_steps;	/* the run's planned length */
	int interrupted;	/* stopped by *stop before the end */
	int resumed;		/* continued from a checkpoint */
	double last_loss;
	double first_val_loss, last_val_loss;	/* NAN without --val */
	uint64_t tokens;	/* tokens this process trained on in this call */
	uint64_t truncated;	/* training sequences cut to --seq-len */
	uint64_t skipped;	/* training sequences (pairs) with nothing to learn within it */
	double seconds;		/* wall time of this call */
	int threads;
	char device[32];
};

/*
 * Run (resume = 0: a new run into o->out, which must not hold one yet;
 * resume = 1: continue o->out from its latest checkpoint, or from the start
 * when it has none).  Returns 0 and fills *res (interrupted or finished), or
 * an error: from loading the model, the adapter, the shards (a tokenizer
 * mismatch is FTK_EMISMATCH), FTK_EUSAGE for a refused combination (DPO from
 * an unmerged adapter), FTK_EIO writing the run directory.
 */
int ftk_train_run(const struct ftk_train_opts *o, int resume, struct ftk_train_result *res,
		  struct ftk_error *err);

/*
 * DPO on one micro-batch of pairs: rows 2i (chosen) and 2i+1 (rejected) of
 * b, ref[row] the frozen reference's summed token loss of each row.  Adds
 * d(sum over pairs of -log sigmoid(z) / norm)/dparam to the model's LoRA
 * gradients, z = beta ((ref_c - L_c) - (ref_r - L_r)), L the rows' summed
 * token losses now; norm is the number of pairs in the whole step.
 * scratch is backend memory (the model's backend) for as many floats as the
 * LoRA parameters.  *loss_sum gets the
 * pairs' losses added and *right the pairs with z > 0.  Returns 0 or the
 * model's error.
 */
int ftk_dpo_pairs(struct ftk_model *m, const struct ftk_batch *b, const double *ref, double beta,
		  double norm, float *scratch, double *loss_sum, long *right, struct ftk_error *err);

#endif
