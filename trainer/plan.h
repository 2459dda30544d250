/*
 * plan.h: the memory a training run needs, worked out before any weight is
 * loaded (`ftk-train --plan`, issue 9).
 *
 * The plan follows the trainer's own allocations (model.c's loading arena,
 * NF4 tensors, activation blocks and work buffers; the LoRA arrays; AdamW's
 * two moments; the backend's scratch), from config.json and the options
 * alone, so its numbers can be checked against the measured peak memory of
 * a CPU run (tests/cli/train-plan).  Data parallelism keeps a whole copy
 * per process, so the per-GPU figure does not shrink with more GPUs; the
 * global batch grows instead.
 */
#ifndef FTK_TRAINER_PLAN_H
#define FTK_TRAINER_PLAN_H

#include <stdio.h>
#include "lib/err.h"
#include "model/config.h"
#include "trainer/train.h"

enum ftk_plan_item {
	FTK_PLAN_BASE,		/* frozen weights: NF4 projections + float32 rest */
	FTK_PLAN_LORA,		/* LoRA parameters (float32 master copy) */
	FTK_PLAN_GRADS,		/* LoRA gradients */
	FTK_PLAN_OPTIM,		/* AdamW m and v */
	FTK_PLAN_ACTS,		/* activations saved for backward */
	FTK_PLAN_WORK,		/* residual stream, logits chunk, per-op scratch */
	FTK_PLAN_LOCAL,		/* CUDA flash kernels' local memory, reserved per resident
				 * thread by the driver; 0 on CPU or without flash */
	FTK_PLAN_RUNTIME,	/* CUDA context + cuBLAS + NCCL (a reserve), 0 on CPU */
	FTK_PLAN_N
};

struct ftk_plan {
	const char *device;		/* "cpu" or "cuda" */
	int world;			/* processes (GPUs) */
	int threads;			/* CPU threads the plan assumed */
	size_t item[FTK_PLAN_N];	/* bytes per process */
	size_t acts_ckpt, acts_full;	/* activations with and without --checkpoint-activations */
	size_t load_peak;		/* host bytes while loading (CPU: the mapped file + one tensor) */
	size_t total;			/* peak bytes per process on the device */
	size_t n_lora;			/* LoRA parameters */
	long long n_base;		/* base parameters */
	int flash;			/* the run uses flash attention (--attention, model.h's rule) */
	size_t att_full, att_flash;	/* per saved layer: T x T probabilities, or log-sum-exps */
	int local_measured;		/* FTK_PLAN_LOCAL came from the GPU, not the estimate */
};

/*
 * Work out the plan for options o (model config cfg, safetensors bytes
 * file_bytes for the loading peak), on device "cpu" or "cuda", for world
 * processes and threads CPU threads.  Returns 0 or FTK_EUSAGE (no LoRA
 * target).  Nothing is allocated.
 */
int ftk_plan_make(struct ftk_plan *p, const struct ftk_model_config *cfg,
		  const struct ftk_train_opts *o, const char *device, int world, int threads,
		  size_t file_bytes, struct ftk_error *err);

/* Read model_dir's config.json and the size of its safetensors files, then ftk_plan_make. */
int ftk_plan_for_dir(struct ftk_plan *p, const struct ftk_train_opts *o, const char *device,
		     int world, int threads, struct ftk_error *err);

/*
 * The flash kernels' local memory as the GPU reports it (device.h's
 * ftk_device_local_reserve: cudaFuncGetAttributes' local bytes per thread
 * times the threads the GPU can hold at once), replacing the plan's
 * estimate (0: ptxas gives the kernels no stack); counted
 * only when the run uses flash attention on CUDA.  Updates the total.
 */
void ftk_plan_set_local(struct ftk_plan *p, size_t bytes);

/* Print the plan as a table (MiB and bytes) to out; available is 0 when unknown. */
void ftk_plan_print(const struct ftk_plan *p, const struct ftk_train_opts *o, size_t available,
		    FILE *out);

/*
 * When the plan does not fit in available bytes: FTK_ELIMIT with a message
 * naming what to change, cheapest first (--attention flash,
 * --checkpoint-activations, both, a --seq-len or --batch that fits, more
 * memory).  0 when it fits or available is 0.
 */
int ftk_plan_fits(const struct ftk_plan *p, const struct ftk_train_opts *o, size_t available,
		  struct ftk_error *err);

#endif
