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
 * (train.c) decides what goes in it, this module only stores it.
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
 * the model's parameter count) and *state (caller frees with cJSON_Delete).
 * Returns 0 or the error of the part that failed, naming the file.
 */
int ftk_ckpt_load(const char *ckpt_dir, struct ftk_model *m, const struct ftk_lora_opts *lora,
		  struct ftk_adamw *opt, cJSON **state, struct ftk_error *err);

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
