/*
 * ops_shared.cu: compile-check that ops.h and optim_ops.h are valid device
 * code.  Built (not run) by the Makefile whenever nvcc is found, with
 * warnings as errors; every shared function is called from a kernel, so a
 * host-only call, a VLA or a missing FTK_HD in either header fails the
 * build here.  tests/unit/test_ops_shared.c checks the same functions'
 * results on the host.
 */
#include <stdint.h>
#include "model/ops.h"
#include "model/optim_ops.h"

__global__ void ftk_ops_shared_check(float *x, const uint8_t *packed, const float *absmax,
				     const float *code, const int32_t *target, float *out)
{
	float r = ftk_rmsnorm_row(out, x, x + 8, 8, 1e-6f);
	ftk_rmsnorm_row_bwd(out, x, x + 8, x + 16, r, 8);
	ftk_rope_head(x, 3, x + 8, 8, 1);
	out[0] += ftk_rope_inv_freq(1, 8, 10000.0f, 8.0f, 1.0f, 4.0f, 8192);
	out[1] += ftk_softmax_row(x, 8);
	ftk_softmax_row_bwd(out, x, x + 8, 8);
	float dg, du;
	ftk_swiglu_bwd(x[0], x[1], x[2], &dg, &du);
	out[2] += ftk_swiglu(dg, du) + ftk_silu(x[3]);
	out[3] += ftk_xent_row(x, 8, target[0], 1.0f);
	float p = x[0], m = 0, v = 0;
	ftk_adamw(&p, &m, &v, 0.1f, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.1f, 0.001f);
	struct ftk_adamw_consts c = { 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 1.0f, -1e-3f, 0.03f };
	ftk_adamw_update(&p, &m, &v, ftk_clip_scale(0.1f, 0.5f), &c);
	out[4] += p + ftk_nf4_decode(packed, absmax, code, threadIdx.x) +
		  ftk_nf4_absmax(packed, absmax, code, 0.5f, 0);
	out[5] += (float)ftk_dropout_keep(7, threadIdx.x, 0.1f) + (float)(ftk_mix64(1) & 1);
	out[6] += ftk_bf16_round(x[4]) + ftk_bf16_float(ftk_bf16_rne(x[5]));
}
