/*
 * selftest.h: `ftk-train --selftest` and `make check-gpu` (issue 9): every
 * op of a backend and one whole QLoRA step, run on the same inputs by that
 * backend and by the CPU reference, with the largest difference per op
 * printed and checked against a tolerance.  It is the first thing to run
 * on a GPU machine (docs/gpu.md).
 */
#ifndef FTK_MODEL_SELFTEST_H
#define FTK_MODEL_SELFTEST_H

#include <stdio.h>
#include "lib/err.h"
#include "model/backend.h"

/* Exit status of --selftest when there is no usable GPU: nothing was checked. */
#define FTK_SELFTEST_NO_GPU 77

/*
 * Compare every op of dev with the CPU backend on seeded random inputs; one
 * line per op ("op  max_abs  max_rel  tol  ok|FAIL") to out.  Returns the
 * number of ops beyond tolerance.
 */
int ftk_selftest_ops(struct ftk_backend *dev, FILE *out);

/*
 * One QLoRA micro-step (NF4 base, LoRA on every target, forward, loss,
 * backward) of the model in model_dir on dev and on the CPU, same seed and
 * batch; prints the loss and the largest gradient difference.  Returns the
 * number of comparisons beyond tolerance, or an error loading the model.
 */
int ftk_selftest_step(struct ftk_backend *dev, const char *model_dir, FILE *out,
		      struct ftk_error *err);

struct ftk_model;
/*
 * One line per LoRA gradient tensor ("grad L<layer> <target> A|B"), each
 * compared on its own scale (largest |difference| over largest |ref|
 * value of that tensor) against tol.  Both models must have the same LoRA
 * layout (same model and options) and host-readable gradients.  Returns
 * the number of tensors beyond tol.
 */
int ftk_selftest_lora_grads(const struct ftk_model *ref, const struct ftk_model *dev, double tol,
			    FILE *out);

/*
 * The whole selftest on device ("cuda", or "cpu" to check the harness
 * against itself).  Returns the exit status: 0 everything within
 * tolerance, 1 something beyond it (or the model failed to load),
 * FTK_SELFTEST_NO_GPU when CUDA cannot be used here (said on out, with why).
 * model_dir NULL: datasets/models/stories260K under the current directory,
 * when present.
 */
int ftk_selftest_main(const char *device, const char *model_dir, FILE *out);

/*
 * As ftk_selftest_main, for one precision (enum ftk_precision: only the
 * fp32 lines, or only the bf16 ones) or both (precision -1, what
 * ftk_selftest_main runs).
 */
int ftk_selftest_run(const char *device, const char *model_dir, int precision, FILE *out);

/*
 * The bf16 lines: gemm, gemm_batch and the linear ops with both backends
 * set to FTK_PREC_BF16 (set back to fp32 after), and the QLoRA step the
 * same way.  Return as ftk_selftest_ops / ftk_selftest_step; a backend
 * without a bf16 mode counts as one failure.
 */
int ftk_selftest_ops_bf16(struct ftk_backend *dev, FILE *out);
int ftk_selftest_step_bf16(struct ftk_backend *dev, const char *model_dir, FILE *out,
			   struct ftk_error *err);
/*
 * The tf32 lines: gemm, gemm_batch and the linear ops with dev set to
 * FTK_PREC_TF32 (the CPU stays fp32; set back to fp32 after), within the
 * TF32 tolerance.  A backend without a tf32 mode (the CPU) prints that the
 * lines were not run and counts no failure.  Returns the failures.
 */
int ftk_selftest_ops_tf32(struct ftk_backend *dev, FILE *out);

/*
 * The fp32 step again with --attention flash on both backends (the flash
 * ops through the whole model: forward, backward, GQA, two documents per
 * row), on inputs of its own so its numbers do not depend on which steps
 * ran before.  Return as ftk_selftest_step.
 */
int ftk_selftest_step_flash(struct ftk_backend *dev, const char *model_dir, FILE *out,
			    struct ftk_error *err);

#endif
