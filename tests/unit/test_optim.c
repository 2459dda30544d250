/*
 * test_optim.c: AdamW, gradient clipping and schedules.
 *
 * The reference is PyTorch: tests/fixtures/trainer/optim_torch.json holds
 * torch.optim.AdamW's parameters and moments after each of six steps with
 * clipping by torch.nn.utils.clip_grad_norm_ (tools/ref/optim_torch.py).  We
 * run the same inputs and print the largest difference.  A quadratic whose
 * optimum is known checks that the whole loop (clip, schedule, step)
 * actually minimises something.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "testutil.h"
#include "lib/strbuf.h"
#include "model/backend.h"
#include "trainer/optim.h"

static cJSON *load_fixture(void)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, src_path("tests/fixtures/trainer/optim_torch.json")), 0);
	cJSON *j = cJSON_Parse(sb.buf);
	strbuf_release(&sb);
	ck_assert_ptr_nonnull(j);
	return j;
}

static void to_floats(const cJSON *arr, float *dst, int n)
{
	ck_assert_int_eq(cJSON_GetArraySize(arr), n);
	int i = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, arr) dst[i++] = (float)x->valuedouble;
}

/*
 * Largest |a - b| over n floats relative to the largest |b|: moments near
 * zero come from cancellation, where a last-bit difference in an input is a
 * large relative difference of one element but not of the vector.
 */
static double max_rel(const float *a, const float *b, int n)
{
	double worst = 0, scale = 0;
	for (int i = 0; i < n; i++) {
		worst = fmax(worst, fabs((double)a[i] - b[i]));
		scale = fmax(scale, fabs((double)b[i]));
	}
	return worst / fmax(scale, 1e-30);
}

START_TEST(adamw_matches_torch)
{
	cJSON *j = load_fixture();
	int n = cJSON_GetObjectItem(j, "n")->valueint;
	const cJSON *betas = cJSON_GetObjectItem(j, "betas");
	struct ftk_adamw_opts o = {
		.beta1 = cJSON_GetArrayItem(betas, 0)->valuedouble,
		.beta2 = cJSON_GetArrayItem(betas, 1)->valuedouble,
		.eps = cJSON_GetObjectItem(j, "eps")->valuedouble,
		.weight_decay = cJSON_GetObjectItem(j, "weight_decay")->valuedouble,
	};
	double max_norm = cJSON_GetObjectItem(j, "max_norm")->valuedouble;
	float w[64], g[64], want[64];
	struct ftk_adamw opt;
	ck_assert_int_eq(ftk_adamw_init(&opt, (size_t)n, &o, NULL), 0);
	to_floats(cJSON_GetObjectItem(j, "w0"), w, n);
	const cJSON *grads = cJSON_GetObjectItem(j, "grads");
	const cJSON *lrs = cJSON_GetObjectItem(j, "lrs");
	const cJSON *steps = cJSON_GetObjectItem(j, "steps");
	double worst_w = 0, worst_m = 0, worst_v = 0, worst_g = 0, worst_norm = 0;
	int clipped_some = 0;
	for (int k = 0; k < cJSON_GetArraySize(steps); k++) {
		const cJSON *s = cJSON_GetArrayItem(steps, k);
		to_floats(cJSON_GetArrayItem(grads, k), g, n);
		double norm = ftk_clip_grad_norm(g, (size_t)n, max_norm);
		double tn = cJSON_GetObjectItem(s, "norm")->valuedouble;
		worst_norm = fmax(worst_norm, fabs(norm - tn) / tn);
		clipped_some |= norm > max_norm;
		to_floats(cJSON_GetObjectItem(s, "clipped"), want, n);
		worst_g = fmax(worst_g, max_rel(g, want, n));
		ftk_adamw_step(&opt, w, g, cJSON_GetArrayItem(lrs, k)->valuedouble);
		to_floats(cJSON_GetObjectItem(s, "w"), want, n);
		worst_w = fmax(worst_w, max_rel(w, want, n));
		to_floats(cJSON_GetObjectItem(s, "m"), want, n);
		worst_m = fmax(worst_m, max_rel(opt.m, want, n));
		to_floats(cJSON_GetObjectItem(s, "v"), want, n);
		worst_v = fmax(worst_v, max_rel(opt.v, want, n));
	}
	printf("adamw vs torch %s: max rel diff norm %.3g clipped grad %.3g w %.3g m %.3g v %.3g "
	       "(tolerance 1e-6)\n",
	       cJSON_GetObjectItem(j, "torch")->valuestring, worst_norm, worst_g, worst_w,
	       worst_m, worst_v);
	ck_assert_msg(clipped_some, "the fixture should exercise clipping");
	ck_assert_double_le(worst_norm, 1e-6);
	ck_assert_double_le(worst_g, 1e-6);
	ck_assert_double_le(worst_w, 1e-6);
	ck_assert_double_le(worst_m, 1e-6);
	ck_assert_double_le(worst_v, 1e-6);
	ck_assert_int_eq(opt.t, 6);
	ftk_adamw_release(&opt);
	cJSON_Delete(j);
}
END_TEST

/*
 * f(w) = sum_i a_i (w_i - c_i)^2 / 2 with a spread of curvatures; AdamW with
 * warmup, cosine decay and clipping must land near c.
 */
/*
 * A backend's optimizer entries (issue 9: on CUDA they run on the GPU) are
 * what a step calls when the optimizer is set up on it: the entries below
 * count their calls and use the shared loops, and a run of clipped steps
 * through them must equal the host path bit for bit, with every entry used
 * (a step that silently fell back to the host would leave a count at 0).
 */
static int n_sumsq, n_scale, n_adamw, n_alloc;
static const struct ftk_backend_ops *cpu_ops;	/* what count_alloc calls */

static double count_sumsq(struct ftk_backend *be, const float *x, size_t n)
{
	n_sumsq++;
	return ftk_sumsq_array(x, n);
}

static void count_scale(struct ftk_backend *be, float *x, float s, size_t n)
{
	n_scale++;
	ftk_scale_array(x, s, n);
}

static void count_adamw(struct ftk_backend *be, float *w, float *m, float *v, const float *g,
			size_t n, const struct ftk_adamw_consts *c)
{
	n_adamw++;
	ftk_adamw_array(w, m, v, g, n, c);
}

static void *count_alloc(struct ftk_backend *be, size_t bytes)
{
	n_alloc++;
	return cpu_ops->alloc(be, bytes);
}

START_TEST(backend_entries_run_the_step)
{
	enum { N = 37 };
	struct ftk_backend *cpu = ftk_backend_cpu_new();
	struct ftk_backend_ops counted = *cpu->ops;
	cpu_ops = cpu->ops;
	counted.sumsq = count_sumsq, counted.scale = count_scale, counted.adamw = count_adamw;
	counted.alloc = count_alloc;	/* the moments are backend memory (device memory on CUDA) */
	struct ftk_backend be = { &counted, cpu->ctx };
	float w1[N], w2[N], g1[N], g2[N];
	for (int i = 0; i < N; i++)
		w1[i] = w2[i] = (float)cos(i * 0.3);
	struct ftk_adamw_opts o = { 0.9, 0.99, 1e-8, 0.01 };
	struct ftk_adamw a, b;
	ck_assert_int_eq(ftk_adamw_init_on(&a, N, &o, &be, NULL), 0);
	ck_assert_int_eq(ftk_adamw_init(&b, N, &o, NULL), 0);
	ck_assert_int_eq(n_alloc, 2);
	for (int step = 0; step < 5; step++) {
		for (int i = 0; i < N; i++)
			g1[i] = g2[i] = (float)sin(i * 1.3 + step) * 4.0f;
		double n1 = ftk_clip_grad_norm_on(&be, g1, N, 1.0);
		double n2 = ftk_clip_grad_norm(g2, N, 1.0);
		ck_assert(n1 == n2);
		ftk_adamw_step(&a, w1, g1, 0.01);
		ftk_adamw_step(&b, w2, g2, 0.01);
	}
	ck_assert_int_eq(memcmp(w1, w2, sizeof(w1)), 0);
	ck_assert_int_eq(memcmp(a.m, b.m, N * sizeof(float)), 0);
	ck_assert_int_eq(memcmp(a.v, b.v, N * sizeof(float)), 0);
	ck_assert_int_eq(n_sumsq, 5);
	ck_assert_int_eq(n_scale, 5);	/* every step's norm is above 1 */
	ck_assert_int_eq(n_adamw, 5);
	/* a backend without the entries is the host path */
	struct ftk_backend_ops no_entries = *cpu->ops;
	no_entries.adamw = NULL;
	struct ftk_backend none = { &no_entries, cpu->ctx };
	struct ftk_adamw c;
	ck_assert_int_eq(ftk_adamw_init_on(&c, N, &o, &none, NULL), 0);
	ck_assert_ptr_null(c.be);
	ftk_adamw_release(&a);
	ftk_adamw_release(&b);
	ftk_adamw_release(&c);
	ftk_backend_free(cpu);
}
END_TEST

START_TEST(quadratic_converges)
{
	enum { N = 50 };
	float w[N], g[N], c[N], a[N];
	for (int i = 0; i < N; i++) {
		c[i] = (float)sin(i * 1.7) * 3.0f;
		a[i] = 0.1f + (float)(i % 7);
		w[i] = 0;
	}
	struct ftk_adamw_opts o = FTK_ADAMW_DEFAULTS;
	struct ftk_adamw opt;
	ck_assert_int_eq(ftk_adamw_init(&opt, N, &o, NULL), 0);
	struct ftk_sched s = { FTK_SCHED_COSINE, 0.1, 50, 3000, 0.0 };
	double f0 = 0, f = 0;
	for (int i = 0; i < N; i++)
		f0 += 0.5 * a[i] * c[i] * c[i];
	for (long step = 0; step < s.total; step++) {
		for (int i = 0; i < N; i++)
			g[i] = a[i] * (w[i] - c[i]);
		ftk_clip_grad_norm(g, N, 10.0);
		ftk_adamw_step(&opt, w, g, ftk_sched_lr(&s, step));
	}
	double worst = 0;
	for (int i = 0; i < N; i++) {
		f += 0.5 * a[i] * (w[i] - c[i]) * (w[i] - c[i]);
		worst = fmax(worst, fabs(w[i] - c[i]));
	}
	printf("quadratic: f %.3g -> %.3g, max |w - c| %.3g\n", f0, f, worst);
	ck_assert_double_lt(worst, 1e-3);
	ftk_adamw_release(&opt);
}
END_TEST

START_TEST(weight_decay_alone_shrinks)
{
	/* With zero gradients, AdamW only decays: w * (1 - lr wd) per step. */
	float w[2] = { 1.0f, -2.0f }, g[2] = { 0, 0 };
	struct ftk_adamw_opts o = { 0.9, 0.999, 1e-8, 0.5 };
	struct ftk_adamw opt;
	ck_assert_int_eq(ftk_adamw_init(&opt, 2, &o, NULL), 0);
	ftk_adamw_step(&opt, w, g, 0.1);
	ftk_adamw_step(&opt, w, g, 0.1);
	ck_assert_float_eq_tol(w[0], 0.95f * 0.95f, 1e-7);
	ck_assert_float_eq_tol(w[1], -2.0f * 0.95f * 0.95f, 1e-7);
	ftk_adamw_release(&opt);
}
END_TEST

START_TEST(clip_by_global_norm)
{
	float g[2] = { 3, 4 };
	ck_assert_double_eq_tol(ftk_clip_grad_norm(g, 2, 1.0), 5.0, 1e-12);
	ck_assert_float_eq_tol(g[0], 0.6f, 1e-6);
	ck_assert_float_eq_tol(g[1], 0.8f, 1e-6);
	float h[2] = { 3, 4 };
	ftk_clip_grad_norm(h, 2, 10.0);	/* under the limit: untouched */
	ck_assert(h[0] == 3 && h[1] == 4);
	ftk_clip_grad_norm(h, 2, 0);	/* disabled */
	ck_assert(h[0] == 3 && h[1] == 4);
}
END_TEST

START_TEST(schedules)
{
	struct ftk_sched s = { FTK_SCHED_COSINE, 1e-3, 10, 110, 0.0 };
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 0), 1e-4, 1e-15);
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 4), 5e-4, 1e-15);
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 9), 1e-3, 1e-15);
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 10), 1e-3, 1e-15);
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 60), 5e-4, 1e-15);	/* p = 0.5 */
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 35), 1e-3 * (1 + cos(M_PI * 0.25)) / 2, 1e-15);
	s.kind = FTK_SCHED_LINEAR;
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 60), 5e-4, 1e-15);
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 85), 2.5e-4, 1e-15);
	s.min_ratio = 0.1;
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 60), 1e-3 * (0.1 + 0.9 * 0.5), 1e-15);
	s.kind = FTK_SCHED_CONSTANT;
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 100), 1e-3, 1e-15);
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 2), 3e-4, 1e-15);
	s.warmup = 0;
	ck_assert_double_eq_tol(ftk_sched_lr(&s, 0), 1e-3, 1e-15);

	enum ftk_sched_kind k;
	struct ftk_error e;
	ck_assert_int_eq(ftk_sched_parse("cosine", &k, &e), 0);
	ck_assert_int_eq(k, FTK_SCHED_COSINE);
	ck_assert_int_eq(ftk_sched_parse("exp", &k, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "unknown schedule 'exp' (use constant, linear or cosine)");
}
END_TEST

START_TEST(state_round_trip)
{
	struct ftk_adamw_opts o = FTK_ADAMW_DEFAULTS;
	struct ftk_adamw a, b, c;
	float w[5] = { 1, 2, 3, 4, 5 }, g[5] = { 0.5f, -1, 2, 0, 3 };
	ck_assert_int_eq(ftk_adamw_init(&a, 5, &o, NULL), 0);
	ftk_adamw_step(&a, w, g, 0.01);
	ftk_adamw_step(&a, w, g, 0.01);
	struct ftk_error e;
	ck_assert_int_eq(ftk_adamw_save(&a, "opt.safetensors", &e), 0);
	ck_assert_int_eq(ftk_adamw_init(&b, 5, &o, NULL), 0);
	ck_assert_int_eq(ftk_adamw_load(&b, "opt.safetensors", &e), 0);
	ck_assert_int_eq(b.t, 2);
	ck_assert_mem_eq(a.m, b.m, sizeof(w));
	ck_assert_mem_eq(a.v, b.v, sizeof(w));
	ck_assert_int_eq(ftk_adamw_init(&c, 4, &o, NULL), 0);
	ck_assert_int_eq(ftk_adamw_load(&c, "opt.safetensors", &e), FTK_EMISMATCH);
	ck_assert_str_eq(e.msg, "optimizer state holds 5 parameters, the model has 4");
	ftk_adamw_release(&a);
	ftk_adamw_release(&b);
	ftk_adamw_release(&c);
}
END_TEST

START_TEST(bad_options)
{
	struct ftk_adamw opt;
	struct ftk_adamw_opts o = { 1.0, 0.999, 1e-8, 0 };
	struct ftk_error e;
	ck_assert_int_eq(ftk_adamw_init(&opt, 3, &o, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "AdamW betas must be in [0, 1), got 1 and 0.999");
}
END_TEST

static Suite *optim_suite(void)
{
	Suite *s = suite_create("optim");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, adamw_matches_torch);
	tcase_add_test(tc, quadratic_converges);
	tcase_add_test(tc, backend_entries_run_the_step);
	tcase_add_test(tc, weight_decay_alone_shrinks);
	tcase_add_test(tc, clip_by_global_norm);
	tcase_add_test(tc, schedules);
	tcase_add_test(tc, state_round_trip);
	tcase_add_test(tc, bad_options);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(optim_suite)
