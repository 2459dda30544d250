/*
 * checkpoint.h: checkpoints that survive kill -9 and power cuts.
 *
 * A run directory:
 *
 *   RUN/train_config.json         the options of the run (train.h)
 *   RUN/metrics.jsonl             one line per step, val lines
 *   RUN/checkpoints/step-N/       adapter_config.json, adapter_model.safetensors
 *                                 (PEFT, loadable as is), optimizer.safetensors
 *                                 (AdamW moments and step), state.json (step,
 *                                 data position, dropout RNG state, metrics.jsonl
 *                                 length, token and time counters),
 *                                 train_config.json (a copy)
 *   RUN/checkpoints/latest        symlink -> step-N, the newest complete one
 *   RUN/adapter/                  the final adapter (train.c)
 *
 * Writing a checkpoint: every file goes into checkpoints/.tmp-step-N/ and is
 * fsynced; the directory is fsynced and renamed to step-N; checkpoints/ is
 * fsynced; a new symlink made under a temporary name is renamed over
 * `latest` (rename(2) is atomic), and checkpoints/ is fsynced again.  Only
 * then are checkpoints beyond the newest K removed.  So at every instant
 * `latest` names a complete checkpoint or does not exist yet, and a crash
 * leaves at worst a .tmp-* directory, which the next save removes.
 *
 * state.json is the one place that says where the run stands; the trainer
 * (train.c) decides what goes in it, this module only stores it, adding two
 * keys of its own: "files" (the size and xxh3-128 of every other file of
 * the checkpoint) and "state_xxh3" (the checksum of state.json itself, taken
 * with those 32 hex digits as zeros).  It is written last, so the checksums
 * cover the files as they were fsynced.  A resume verifies them
 * (ftk_ckpt_pick): a checkpoint whose bytes changed since they were written
 * (a flipped bit, a truncated or missing file) is skipped for the newest
 * intact one, or refused, and is never loaded.
 */
#ifndef FTK_TRAINER_CHECKPOINT_H
#define FTK_TRAINER_CHECKPOINT_H

#include <cjson/cJSON.h>
#include "lib/err.h"
#include "model/model.h"
#include "trainer/optim.h"

/*
 * Save checkpoint `step` of the run in run_dir: the model's LoRA (as a PEFT
 * adapter naming base_model), the optimizer state, state (a JSON object,
 * borrowed) and config_json (the run's train_config.json text, borrowed).
 * Then point `latest` at it and keep only the newest `keep` checkpoints
 * (keep <= 0 keeps all).  Returns 0 or FTK_EIO / FTK_EUSAGE with the path.
 */
int ftk_ckpt_save(const char *run_dir, long step, const struct ftk_model *m,
		  const char *base_model, const struct ftk_adamw *opt, const cJSON *state,
		  const char *config_json, int keep, struct ftk_error *err);

/*
 * The directory `latest` points to, as "RUN/checkpoints/step-N", into buf
 * (size n).  Returns the step N (>= 0), or FTK_ENOTFOUND when the run has no
 * checkpoint yet, FTK_EDATA when `latest` points somewhere odd.
 */
long ftk_ckpt_latest(const char *run_dir, char *buf, size_t n, struct ftk_error *err);

/*
 * Load a checkpoint directory into the model (LoRA from the adapter, with
 * the dropout and seed of `lora`), the optimizer (already initialised for
 * the model's parameter count) and *state (caller frees with cJSON_Delete;
 * the state as saved, without the checksum keys).  It does not verify:
 * ftk_ckpt_pick does, before.
 * Returns 0 or the error of the part that failed, naming the file.
 */
int ftk_ckpt_load(const char *ckpt_dir, struct ftk_model *m, const struct ftk_lora_opts *lora,
		  struct ftk_adamw *opt, cJSON **state, struct ftk_error *err);

/*
 * Check every file of a checkpoint directory against the checksums in its
 * state.json.  Returns 0 when all match, 1 when the checkpoint has no
 * checksums (written by an ftk before they existed: nothing to verify),
 * FTK_EDATA when it is damaged (err names the file: missing, another size,
 * checksum mismatch, state.json unreadable), FTK_EIO when a file cannot be
 * read.
 */
int ftk_ckpt_verify(const char *ckpt_dir, struct ftk_error *err);

/* A checkpoint found damaged. */
struct ftk_ckpt_damage {
	long step;
	struct ftk_error err;	/* what is wrong, naming the file */
};

/* What a resume continues from (ftk_ckpt_pick). */
struct ftk_ckpt_pick {
	long step;				/* the checkpoint chosen, -1 when none */
	char dir[4160];				/* RUN/checkpoints/step-N */
	int unverified;				/* 1: it has no checksums (an older ftk) */
	struct ftk_ckpt_damage *damaged;	/* newer ones skipped, newest first */
	int n_damaged, alloc_damaged;
};

/*
 * Choose the checkpoint to resume run_dir from: the one `latest` names when
 * it verifies (ftk_ckpt_verify), else, unless strict, the newest older one
 * that does; every damaged one passed over is listed in p->damaged.
 * Returns 0 with p filled, FTK_ENOTFOUND (no checkpoint yet), FTK_EDATA
 * (strict and `latest` is damaged, or no checkpoint is intact: err names
 * the checkpoint and the file; or `latest` points somewhere odd), FTK_EIO.
 * Release p with ftk_ckpt_pick_release whatever the return.
 */
int ftk_ckpt_pick(const char *run_dir, int strict, struct ftk_ckpt_pick *p,
		  struct ftk_error *err);
void ftk_ckpt_pick_release(struct ftk_ckpt_pick *p);

/*
 * After a pick that passed over damaged checkpoints: rename each to
 * checkpoints/damaged-step-N (kept for inspection, never listed, loaded or
 * removed by ftk) and point `latest` at the chosen one, so that keeping the
 * newest K never counts a damaged one and a crash before the next save
 * resumes from the same place.  0 or FTK_EIO.
 */
int ftk_ckpt_set_aside(const char *run_dir, const struct ftk_ckpt_pick *p,
		       struct ftk_error *err);

/*
 * The step numbers of run_dir's complete checkpoints, ascending, into
 * *steps (caller frees).  Returns the count (0 when none) or FTK_EIO.
 */
int ftk_ckpt_list(const char *run_dir, long **steps, struct ftk_error *err);

/* fsync a directory (after a rename or create inside it).  0 or FTK_EIO. */
int ftk_fsync_dir(const char *dir, struct ftk_error *err);

/* Write a whole file through a temporary name, fsync and rename.  0 or FTK_EIO. */
int ftk_write_file_atomic(const char *path, const void *data, size_t len,
			  struct ftk_error *err);

#endif
