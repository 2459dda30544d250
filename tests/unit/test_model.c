/*
 * test_model.c: the model against references we did not write.
 *
 * stories260K (datasets/models/stories260K): logits at two positions and the
 * mean loss against reference.json (float64 PyTorch), greedy generation for
 * 256 positions against llama2.c's golden text, byte for byte, and the LoRA
 * gradients (layer 0 q_proj and v_proj, rank 4, alpha 8) against PyTorch
 * autograd.  Each check prints its largest difference and its tolerance.
 */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include "testutil.h"
#include "lib/json.h"
#include "lib/strbuf.h"
#include "model/adapter.h"
#include "model/generate.h"
#include "model/merge.h"
#include "model/model.h"
#include "model/safetensors.h"

#define S260 "datasets/models/stories260K"

static cJSON *load_json(const char *rel)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, src_path(rel)), 0);
	cJSON *j = NULL;
	ck_assert_int_eq(ftk_json_parse(sb.buf, sb.len, &j, NULL), 0);
	strbuf_release(&sb);
	return j;
}

static struct ftk_model *load_model(enum ftk_quant q)
{
	struct ftk_model *m = NULL;
	struct ftk_error e;
	struct ftk_load_opts o = { q, NULL, 1, 0 };
	int rc = ftk_model_load(&m, src_path(S260), &o, &e);
	if (rc < 0)
		ck_abort_msg("load: %s", e.msg);
	return m;
}

static double max_abs_diff(const float *a, const cJSON *ref, int n, double *ref_max)
{
	double d = 0.0, rm = 0.0;
	ck_assert_int_eq(cJSON_GetArraySize(ref), n);
	for (int i = 0; i < n; i++) {
		double r = cJSON_GetArrayItem(ref, i)->valuedouble;
		double x = fabs(a[i] - r);
		d = x > d ? x : d;
		rm = fabs(r) > rm ? fabs(r) : rm;
	}
	if (ref_max)
		*ref_max = rm;
	return d;
}

START_TEST(stories_logits_and_loss)
{
	cJSON *ref = load_json(S260 "/reference.json");
	cJSON *tok = cJSON_GetObjectItem(ref, "tokens");
	int T = cJSON_GetArraySize(tok);
	uint32_t ids[64];
	for (int i = 0; i < T; i++)
		ids[i] = (uint32_t)cJSON_GetArrayItem(tok, i)->valueint;
	struct ftk_model *m = load_model(FTK_QUANT_NONE);
	int V = ftk_model_config(m)->vocab_size;
	float *logits = malloc((size_t)T * V * sizeof(float));
	struct ftk_batch b = { 1, T, ids, NULL, NULL };
	double loss;
	long n;
	ck_assert_int_eq(ftk_model_forward(m, &b, logits, &loss, &n, NULL), 0);
	ck_assert_int_eq(n, T - 1);
	double d0 = max_abs_diff(logits, cJSON_GetObjectItem(ref, "logits_pos0"), V, NULL);
	double d1 = max_abs_diff(logits + (size_t)(T - 1) * V, cJSON_GetObjectItem(ref, "logits_last"), V, NULL);
	double want = cJSON_GetObjectItem(ref, "loss")->valuedouble;
	double dl = fabs(loss / n - want);
	printf("stories260K logits: max |diff| pos0 %.3g, last %.3g; loss %.9f vs %.9f (|diff| %.3g); tolerance 1e-4\n",
	       d0, d1, loss / n, want, dl);
	ck_assert(d0 < 1e-4 && d1 < 1e-4 && dl < 1e-4);
	/*
	 * The same with the head run in chunks of 7 rows.  Every row's final norm is
	 * ours and identical; the head product is sgemm on another M, and OpenBLAS
	 * may sum an element's K = dim products in another order for it (its
	 * Haswell kernel does).  Each result is then within gamma_K * sum_k |x_k w_k|
	 * of the exact dot product (Higham, Accuracy and Stability, 3.1), so the two
	 * differ by at most 2 gamma_K ||x|| ||w_v||, gamma_K = K u / (1 - K u),
	 * u = 2^-24.  x = gamma (.) x_hat with x_hat RMS-normalized (||x_hat|| <=
	 * sqrt(K)), so ||x|| <= sqrt(K) max|gamma|.  A wrong chunk (a row missed,
	 * shifted or stale) is off by whole logits, far beyond this.  The loss is a
	 * sum over rows of log-softmax, which moves by at most 2 max|dlogit| a row.
	 */
	float *l7 = malloc((size_t)T * V * sizeof(float));
	double loss7;
	ftk_model_set_head_chunk(m, 7);
	ck_assert_int_eq(ftk_model_forward(m, &b, l7, &loss7, NULL, NULL), 0);
	struct ftk_st *st;
	ck_assert_int_eq(ftk_st_open_dir(&st, src_path(S260), NULL), 0);
	const struct ftk_st_tensor *gt = ftk_st_find(st, "model.norm.weight");
	const struct ftk_st_tensor *wt = ftk_st_find(st, "lm_head.weight");
	if (!wt)	/* tied (stories260K is) */
		wt = ftk_st_find(st, "model.embed_tokens.weight");
	ck_assert(gt && wt && wt->shape[0] == V);
	int K = (int)wt->shape[1];
	float *gam = malloc((size_t)K * 4), *W = malloc((size_t)V * K * 4);
	ck_assert_int_eq(ftk_st_to_f32(gt, gam, NULL), 0);
	ck_assert_int_eq(ftk_st_to_f32(wt, W, NULL), 0);
	double gmax = 0, u = 0x1p-24, gK = K * u / (1 - K * u), worst = 0, dmax = 0;
	for (int k = 0; k < K; k++)
		gmax = fmax(gmax, fabs(gam[k]));
	for (int v = 0; v < V; v++) {
		double wn = 0;
		for (int k = 0; k < K; k++)
			wn += (double)W[(size_t)v * K + k] * W[(size_t)v * K + k];
		double bound = 2 * gK * sqrt(K) * gmax * sqrt(wn);
		for (int t = 0; t < T; t++) {
			double d = fabs((double)l7[(size_t)t * V + v] - logits[(size_t)t * V + v]);
			worst = fmax(worst, d / bound);
			dmax = fmax(dmax, d);
		}
	}
	printf("head in chunks of 7 rows: max |logit diff| %.3g, %.3g of its bound; loss diff %.3g (bound %.3g)\n",
	       dmax, worst, fabs(loss7 - loss), 2.0 * (T - 1) * dmax);
	ck_assert(worst <= 1.0);
	ck_assert(fabs(loss7 - loss) <= 2.0 * (T - 1) * dmax + 1e-12 * fabs(loss));
	ftk_st_close(st);
	free(gam), free(W);
	free(l7);
	free(logits);
	ftk_model_free(m);
	cJSON_Delete(ref);
}
END_TEST

/* Decode ids with tokenizer.json's rules for this model (byte fallback, ▁ as space, strip one leading space). */
static void decode_pieces(const cJSON *tokjson, const uint32_t *ids, int n, struct strbuf *out)
{
	const cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(tokjson, "model"), "vocab");
	const char *pieces[512] = { 0 };
	const cJSON *it;
	cJSON_ArrayForEach(it, vocab) {
		if (it->valueint >= 0 && it->valueint < 512)
			pieces[it->valueint] = it->string;
	}
	for (int i = 0; i < n; i++) {
		const char *p = pieces[ids[i]];
		ck_assert_ptr_nonnull(p);
		unsigned byte;
		if (strlen(p) == 6 && sscanf(p, "<0x%02X>", &byte) == 1) {
			strbuf_addch(out, (int)byte);
			continue;
		}
		for (; *p; p++) {
			if (!strncmp(p, "\xe2\x96\x81", 3)) {
				strbuf_addch(out, ' ');
				p += 2;
			} else {
				strbuf_addch(out, *p);
			}
		}
	}
	if (out->len && out->buf[0] == ' ') {
		memmove(out->buf, out->buf + 1, out->len);
		out->len--;
	}
}

static void greedy_check(enum ftk_quant q)
{
	cJSON *ref = load_json(S260 "/reference.json");
	cJSON *tokj = load_json(S260 "/tokenizer.json");
	cJSON *gids = cJSON_GetObjectItem(ref, "greedy_ids_n256");
	struct ftk_model *m = load_model(q);
	struct ftk_gen_opts o;
	ftk_gen_opts_default(&o);
	o.max_tokens = 256;
	int no_eos = -1;
	o.eos = &no_eos;
	o.n_eos = 1;
	uint32_t bos = 1, out[300];
	int n = 0;
	enum ftk_gen_stop why;
	ck_assert_int_eq(ftk_generate(m, &bos, 1, &o, out, 300, &n, &why, NULL), 0);
	ck_assert_int_eq(n, 256);
	int first_diff = -1;
	for (int i = 0; i < n && first_diff < 0; i++)
		if ((int)out[i] != cJSON_GetArrayItem(gids, i + 1)->valueint)
			first_diff = i;
	struct strbuf text = STRBUF_INIT, want = STRBUF_INIT;
	decode_pieces(tokj, out, n, &text);
	ck_assert_int_eq(strbuf_read_file(&want, src_path(S260 "/expected_greedy_n256.txt")), 0);
	ck_assert(want.len > 0 && want.buf[want.len - 1] == '\n');
	want.len--;
	printf("greedy (%s): first differing id %d; text %zu bytes vs golden %zu\n",
	       q == FTK_QUANT_NONE ? "f32" : "nf4", first_diff, text.len, want.len);
	if (q == FTK_QUANT_NONE) {
		ck_assert_int_eq(first_diff, -1);
		ck_assert_uint_eq(text.len, want.len);
		ck_assert(!memcmp(text.buf, want.buf, want.len));
	}
	strbuf_release(&text);
	strbuf_release(&want);
	ftk_model_free(m);
	cJSON_Delete(ref);
	cJSON_Delete(tokj);
}

START_TEST(stories_greedy_256)
{
	greedy_check(FTK_QUANT_NONE);
}
END_TEST

static void set_tensor(struct ftk_model *m, const char *name, const cJSON *vals)
{
	const struct ftk_lora_tensor *t = ftk_model_lora_find(m, name);
	ck_assert_msg(t != NULL, "no %s", name);
	const cJSON *row;
	int i = 0;
	cJSON_ArrayForEach(row, vals) {
		const cJSON *v;
		cJSON_ArrayForEach(v, row) t->data[i++] = (float)v->valuedouble;
	}
	ck_assert_int_eq(i, t->rows * t->cols);
}

static double rel_diff(const struct ftk_lora_tensor *t, const cJSON *ref)
{
	double d = 0.0, rm = 0.0;
	const cJSON *row, *v;
	int i = 0;
	cJSON_ArrayForEach(row, ref) {
		cJSON_ArrayForEach(v, row) {
			double x = fabs(t->grad[i] - v->valuedouble);
			d = x > d ? x : d;
			rm = fabs(v->valuedouble) > rm ? fabs(v->valuedouble) : rm;
			i++;
		}
	}
	ck_assert_int_eq(i, t->rows * t->cols);
	return d / rm;
}

static void lora_check(int checkpointing)
{
	cJSON *ref = load_json(S260 "/reference.json");
	cJSON *lr = cJSON_GetObjectItem(ref, "lora");
	cJSON *tok = cJSON_GetObjectItem(ref, "tokens");
	int T = cJSON_GetArraySize(tok);
	uint32_t ids[64];
	for (int i = 0; i < T; i++)
		ids[i] = (uint32_t)cJSON_GetArrayItem(tok, i)->valueint;
	struct ftk_model *m = load_model(FTK_QUANT_NONE);
	ftk_model_set_checkpointing(m, checkpointing);
	if (checkpointing)
		ftk_model_set_head_chunk(m, 5);	/* and the head in 7 chunks */
	struct ftk_lora_opts lo = { (1u << FTK_LORA_Q) | (1u << FTK_LORA_V), 4, 8.0f, 0, 0.0f, 1 };
	ck_assert_int_eq(ftk_model_lora_init(m, &lo, NULL), 0);
	size_t np;
	float *p = ftk_model_lora_flat(m, &np);
	memset(p, 0, np * sizeof(float));	/* the reference has LoRA on layer 0 only */
	set_tensor(m, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", cJSON_GetObjectItem(lr, "A_q"));
	set_tensor(m, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", cJSON_GetObjectItem(lr, "B_q"));
	set_tensor(m, "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", cJSON_GetObjectItem(lr, "A_v"));
	set_tensor(m, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", cJSON_GetObjectItem(lr, "B_v"));
	struct ftk_batch b = { 1, T, ids, NULL, NULL };
	long nt = ftk_batch_count_targets(&b);
	ck_assert_int_eq(nt, T - 1);
	double loss;
	ftk_model_zero_grad(m);
	ck_assert_int_eq(ftk_model_forward_backward(m, &b, (double)nt, &loss, NULL, NULL), 0);
	double want = cJSON_GetObjectItem(lr, "loss_with_lora")->valuedouble;
	const char *names[4] = { "q_proj.lora_A", "q_proj.lora_B", "v_proj.lora_A", "v_proj.lora_B" };
	const char *refs[4] = { "dA_q", "dB_q", "dA_v", "dB_v" };
	double worst = 0.0;
	for (int i = 0; i < 4; i++) {
		char nm[128];
		snprintf(nm, sizeof(nm), "base_model.model.model.layers.0.self_attn.%s.weight", names[i]);
		double r = rel_diff(ftk_model_lora_find(m, nm), cJSON_GetObjectItem(lr, refs[i]));
		printf("LoRA grad %s (checkpointing %d): max |diff| / max |ref| = %.3g (tolerance 1e-4)\n",
		       refs[i], checkpointing, r);
		worst = r > worst ? r : worst;
	}
	printf("loss with LoRA %.9f vs %.9f\n", loss / nt, want);
	ck_assert(fabs(loss / nt - want) < 1e-4);
	ck_assert(worst < 1e-4);
	ftk_model_free(m);
	cJSON_Delete(ref);
}

START_TEST(stories_lora_grads)
{
	lora_check(0);
}
END_TEST

START_TEST(stories_lora_grads_checkpointed)
{
	lora_check(1);
}
END_TEST

/* Merged model (quant none) == base (as trained) + adapter, for both bases and two dtypes. */
static void merge_case(enum ftk_quant q, enum ftk_dtype dt, double tol)
{
	cJSON *ref = load_json(S260 "/reference.json");
	cJSON *tok = cJSON_GetObjectItem(ref, "tokens");
	int T = cJSON_GetArraySize(tok);
	uint32_t ids[64];
	for (int i = 0; i < T; i++)
		ids[i] = (uint32_t)cJSON_GetArrayItem(tok, i)->valueint;
	struct ftk_error e;
	struct ftk_merge_opts mo = { src_path(S260), src_path("tests/fixtures/stories260K-lora"), "merged", q, dt };
	int nm = 0;
	if (ftk_merge(&mo, &nm, &e) < 0)
		ck_abort_msg("merge: %s", e.msg);
	ck_assert_int_eq(nm, 15);
	struct ftk_model *base = load_model(q), *merged = NULL;
	struct ftk_adapter *ad;
	ck_assert_int_eq(ftk_adapter_load(src_path("tests/fixtures/stories260K-lora"), &ad, NULL), 0);
	ck_assert_int_eq(ftk_adapter_apply(base, ad, NULL, NULL), 0);
	struct ftk_load_opts lo = { FTK_QUANT_NONE, NULL, 1, 0 };
	ck_assert_int_eq(ftk_model_load(&merged, "merged", &lo, NULL), 0);
	int V = 512;
	float *la = malloc((size_t)T * V * 4), *lb = malloc((size_t)T * V * 4), *l0 = malloc((size_t)T * V * 4);
	struct ftk_batch b = { 1, T, ids, NULL, NULL };
	ck_assert_int_eq(ftk_model_forward(base, &b, la, NULL, NULL, NULL), 0);
	ck_assert_int_eq(ftk_model_forward(merged, &b, lb, NULL, NULL, NULL), 0);
	struct ftk_model *plain = load_model(FTK_QUANT_NONE);
	ck_assert_int_eq(ftk_model_forward(plain, &b, l0, NULL, NULL, NULL), 0);
	double md = 0, effect = 0;
	for (int i = 0; i < T * V; i++) {
		md = fmax(md, fabs(la[i] - lb[i]));
		effect = fmax(effect, fabs(la[i] - l0[i]));
	}
	printf("merge (%s base, %s): max |logit diff| merged vs base+adapter %.3g (tolerance %.0e); the adapter moves logits by up to %.3g\n",
	       q == FTK_QUANT_NF4 ? "nf4" : "f32", ftk_dtype_name(dt), md, tol, effect);
	ck_assert(md < tol);
	ck_assert(effect > 10 * tol);
	free(la), free(lb), free(l0);
	ftk_adapter_free(ad);
	ftk_model_free(base);
	ftk_model_free(merged);
	ftk_model_free(plain);
	cJSON_Delete(ref);
}

START_TEST(merge_equals_adapter)
{
	merge_case(FTK_QUANT_NONE, FTK_F32, 1e-4);
	merge_case(FTK_QUANT_NF4, FTK_F32, 1e-4);
}
END_TEST

START_TEST(merge_bf16)
{
	merge_case(FTK_QUANT_NF4, FTK_BF16, 1.0);
}
END_TEST

/*
 * Tiny random Llama 3 (rope_scaling llama3, GQA, untied head), Qwen2 (q/k/v
 * biases) and Qwen3 (q/k norms) models against PyTorch float64
 * (tests/fixtures/tiny-models/make.py): logits on a packed batch with two
 * documents in one row, then loss and every LoRA gradient with a loss mask.
 */
static void tiny_case(const char *name)
{
	cJSON *ref = load_json("tests/fixtures/tiny-models/reference.json");
	cJSON *mr = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "models"), name);
	ck_assert_ptr_nonnull(mr);
	uint32_t ids[16], doc[16];
	uint8_t mask[16];
	for (int b = 0; b < 2; b++)
		for (int t = 0; t < 8; t++) {
			ids[b * 8 + t] = (uint32_t)cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "ids"), b), t)->valueint;
			doc[b * 8 + t] = (uint32_t)cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "doc"), b), t)->valueint;
			mask[b * 8 + t] = (uint8_t)cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "mask"), b), t)->valueint;
		}
	char dir[256];
	snprintf(dir, sizeof(dir), "tests/fixtures/tiny-models/%s", name);
	struct ftk_model *m;
	struct ftk_error e;
	struct ftk_load_opts lo = { FTK_QUANT_NONE, NULL, 1, 0 };
	if (ftk_model_load(&m, src_path(dir), &lo, &e) < 0)
		ck_abort_msg("%s", e.msg);
	int V = ftk_model_config(m)->vocab_size;
	float logits[16 * 19];
	ck_assert_int_eq(V, 19);
	struct ftk_batch b = { 2, 8, ids, mask, doc };
	ck_assert_int_eq(ftk_model_forward(m, &b, logits, NULL, NULL, NULL), 0);
	double md = 0;
	cJSON *lg = cJSON_GetObjectItem(mr, "logits");
	for (int i = 0; i < 16; i++)
		for (int v = 0; v < V; v++) {
			double r = cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetArrayItem(lg, i / 8), i % 8), v)->valuedouble;
			md = fmax(md, fabs(r - logits[i * V + v]));
		}
	struct ftk_lora_opts o = { FTK_LORA_ALL, 2, 4.0f, 0, 0.0f, 1 };
	ck_assert_int_eq(ftk_model_lora_init(m, &o, NULL), 0);
	cJSON *lr = cJSON_GetObjectItem(mr, "lora");
	const cJSON *it;
	int n_set = 0;
	cJSON_ArrayForEach(it, lr) {
		set_tensor(m, it->string, cJSON_GetObjectItem(it, "value"));
		n_set++;
	}
	ck_assert_int_eq(n_set, (int)ftk_model_lora_count(m));
	long nt = ftk_batch_count_targets(&b);
	ck_assert_int_eq(nt, cJSON_GetObjectItem(mr, "n_targets")->valueint);
	double loss;
	ftk_model_zero_grad(m);
	ck_assert_int_eq(ftk_model_forward_backward(m, &b, (double)nt, &loss, NULL, NULL), 0);
	double want = cJSON_GetObjectItem(mr, "loss_with_lora")->valuedouble, worst = 0;
	cJSON_ArrayForEach(it, lr) {
		double r = rel_diff(ftk_model_lora_find(m, it->string), cJSON_GetObjectItem(it, "grad"));
		worst = fmax(worst, r);
	}
	printf("tiny %s vs PyTorch: max |logit diff| %.3g (tolerance 1e-4); loss %.8f vs %.8f; worst LoRA grad max|diff|/max|ref| %.3g over %d tensors (tolerance 1e-4)\n",
	       name, md, loss / nt, want, worst, n_set);
	ck_assert(md < 1e-4);
	ck_assert(fabs(loss / nt - want) < 1e-4);
	ck_assert(worst < 1e-4);
	ftk_model_free(m);
	cJSON_Delete(ref);
}

START_TEST(tiny_llama3_rope_scaling)
{
	tiny_case("llama3");
}
END_TEST

START_TEST(tiny_qwen2_bias)
{
	tiny_case("qwen2");
}
END_TEST

START_TEST(tiny_qwen3_qk_norm)
{
	tiny_case("qwen3");
}
END_TEST

/* ---------------------------------------------------------------- safetensors, config */

START_TEST(half_floats_exact)
{
	/* every non-NaN half converts to float and back unchanged */
	for (uint32_t h = 0; h < 65536; h++) {
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue;
		ck_assert_uint_eq(ftk_f32_to_f16(ftk_f16_to_f32((uint16_t)h)), h);
	}
	ck_assert(ftk_f16_to_f32(0x3c00) == 1.0f);
	ck_assert(ftk_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
	ck_assert(ftk_f16_to_f32(0x7bff) == 65504.0f);
	ck_assert(ftk_f16_to_f32(0xc000) == -2.0f);
	/* bf16: round to nearest, ties to even */
	ck_assert_uint_eq(ftk_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
	ck_assert_uint_eq(ftk_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
	ck_assert(ftk_bf16_to_f32(0x3f82) == 1.015625f);
}
END_TEST

static void copy_file(const char *from, const char *to)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, from), 0);
	FILE *f = fopen(to, "wb");
	ck_assert_uint_eq(fwrite(sb.buf, 1, sb.len, f), sb.len);
	fclose(f);
	strbuf_release(&sb);
}

START_TEST(sharded_model_equals_single_file)
{
	/* split stories260K into two shards (BF16 and F32) with an index */
	struct ftk_st *st;
	ck_assert_int_eq(ftk_st_open_dir(&st, src_path(S260), NULL), 0);
	mkdir("sh", 0755);
	copy_file(src_path(S260 "/config.json"), "sh/config.json");
	struct ftk_st_writer *w[2] = { ftk_st_writer_new(), ftk_st_writer_new() };
	struct strbuf idx = STRBUF_INIT;
	strbuf_addstr(&idx, "{\"metadata\":{},\"weight_map\":{");
	uint16_t *bf[64];
	size_t n = ftk_st_count(st);
	ck_assert_uint_le(n, 64);
	for (size_t i = 0; i < n; i++) {
		const struct ftk_st_tensor *t = ftk_st_at(st, i);
		int k = i % 2;
		bf[i] = NULL;
		if (k) {
			bf[i] = malloc((size_t)t->numel * 2);
			const float *f = t->data;
			for (int64_t j = 0; j < t->numel; j++)
				bf[i][j] = ftk_f32_to_bf16(f[j]);
			ftk_st_writer_add(w[k], t->name, FTK_BF16, t->ndim, t->shape, bf[i]);
		} else {
			ftk_st_writer_add(w[k], t->name, FTK_F32, t->ndim, t->shape, t->data);
		}
		strbuf_addf(&idx, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", i ? "," : "", t->name, k + 1);
	}
	strbuf_addstr(&idx, "}}");
	ck_assert_int_eq(ftk_st_writer_save(w[0], "sh/model-00001-of-00002.safetensors", NULL), 0);
	ck_assert_int_eq(ftk_st_writer_save(w[1], "sh/model-00002-of-00002.safetensors", NULL), 0);
	FILE *f = fopen("sh/model.safetensors.index.json", "w");
	fputs(idx.buf, f);
	fclose(f);
	struct ftk_st *sh;
	ck_assert_int_eq(ftk_st_open_dir(&sh, "sh", NULL), 0);
	ck_assert_uint_eq(ftk_st_count(sh), n);
	/* every tensor reads back as the original (BF16 ones as rounded) */
	for (size_t i = 0; i < n; i++) {
		const struct ftk_st_tensor *a = ftk_st_at(st, i), *b = ftk_st_find(sh, a->name);
		ck_assert_ptr_nonnull(b);
		float *x = malloc((size_t)b->numel * 4);
		ck_assert_int_eq(ftk_st_to_f32(b, x, NULL), 0);
		const float *o = a->data;
		for (int64_t j = 0; j < a->numel; j++)
			ck_assert(x[j] == (bf[i] ? ftk_bf16_to_f32(ftk_f32_to_bf16(o[j])) : o[j]));
		free(x);
	}
	/* and the model loads from it */
	struct ftk_model *m;
	struct ftk_load_opts lo = { FTK_QUANT_NONE, NULL, 1, 0 };
	ck_assert_int_eq(ftk_model_load(&m, "sh", &lo, NULL), 0);
	ftk_model_free(m);
	/* an index naming a tensor its shard lacks */
	f = fopen("sh/model.safetensors.index.json", "w");
	fputs("{\"weight_map\":{\"extra\":\"model-00001-of-00002.safetensors\"}}", f);
	fclose(f);
	struct ftk_error e;
	struct ftk_st *sh2 = NULL;
	ck_assert_int_eq(ftk_st_open_dir(&sh2, "sh", &e), FTK_ENOTFOUND);
	ck_assert_str_eq(e.msg, "tensor 'extra' is not in shard 'model-00001-of-00002.safetensors'");
	for (size_t i = 0; i < n; i++)
		free(bf[i]);
	strbuf_release(&idx);
	ftk_st_writer_free(w[0]);
	ftk_st_writer_free(w[1]);
	ftk_st_close(sh);
	ftk_st_close(st);
}
END_TEST

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	ck_assert_uint_eq(fwrite(p, 1, n, f), n);
	fclose(f);
}

START_TEST(safetensors_bad_files)
{
	struct ftk_st *st;
	struct ftk_error e;
	write_bytes("short.safetensors", "abc", 3);
	ck_assert_int_eq(ftk_st_open(&st, "short.safetensors", &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "not a safetensors file: 3 bytes, too short for a header");
	/* a header claiming more data than the file holds */
	const char h[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
	char buf[256];
	uint64_t hl = sizeof(h) - 1;
	memcpy(buf, &hl, 8);
	memcpy(buf + 8, h, hl);
	memset(buf + 8 + hl, 0, 8);
	write_bytes("trunc.safetensors", buf, 8 + hl + 8);
	ck_assert_int_eq(ftk_st_open(&st, "trunc.safetensors", &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "a");
	ck_assert_str_eq(e.msg, "tensor 'a' has a bad shape or data_offsets [0, 16] outside the 8 data bytes");
	/* shape and byte count that disagree */
	const char h2[] = "{\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
	hl = sizeof(h2) - 1;
	memcpy(buf, &hl, 8);
	memcpy(buf + 8, h2, hl);
	memset(buf + 8 + hl, 0, 8);
	write_bytes("shape.safetensors", buf, 8 + hl + 8);
	ck_assert_int_eq(ftk_st_open(&st, "shape.safetensors", &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "tensor 'b' holds 8 bytes, but F32 of 3 elements needs 12");
	/* header length past the end */
	hl = 1000;
	memcpy(buf, &hl, 8);
	write_bytes("len.safetensors", buf, 40);
	ck_assert_int_eq(ftk_st_open(&st, "len.safetensors", &e), FTK_EDATA);
	ck_assert_int_eq(ftk_st_open(&st, "missing.safetensors", &e), FTK_ENOTFOUND);
}
END_TEST

static int config_err(const char *json, struct ftk_error *e)
{
	write_bytes("config.json", json, strlen(json));
	struct ftk_model_config c;
	return ftk_config_load(".", &c, e);
}

#define BASE "\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,\"vocab_size\":512"

START_TEST(config_families_and_errors)
{
	struct ftk_model_config c;
	struct ftk_error e;
	/* Llama 3.1: rope scaling, eos list, untied */
	ck_assert_int_eq(config_err("{\"model_type\":\"llama\"," BASE ",\"num_attention_heads\":8,"
				    "\"num_key_value_heads\":2,\"rope_theta\":500000.0,\"tie_word_embeddings\":false,"
				    "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
				    "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
				    "\"eos_token_id\":[128001,128008,128009],\"bos_token_id\":128000}", &e), 0);
	ck_assert_int_eq(ftk_config_load("config.json", &c, NULL), 0);
	ck_assert_int_eq(c.rope_llama3, 1);
	ck_assert_int_eq(c.rope_orig_max_pos, 8192);
	ck_assert_int_eq(c.n_eos, 3);
	ck_assert_int_eq(c.eos_ids[2], 128009);
	ck_assert_int_eq(c.head_dim, 8);
	ck_assert_int_eq(c.tie_embeddings, 0);
	/* Qwen2 always has q/k/v biases; Qwen3 has q/k norms and an explicit head_dim */
	ck_assert_int_eq(config_err("{\"model_type\":\"qwen2\"," BASE ",\"num_attention_heads\":8}", &e), 0);
	ftk_config_load(".", &c, NULL);
	ck_assert(c.qkv_bias && !c.qk_norm && c.n_kv_heads == 8 && !c.tie_embeddings);
	ck_assert_int_eq(config_err("{\"model_type\":\"qwen3\"," BASE ",\"num_attention_heads\":8,\"head_dim\":16}", &e), 0);
	ftk_config_load(".", &c, NULL);
	ck_assert(c.qk_norm && !c.qkv_bias && c.head_dim == 16);
	ck_assert_int_eq(config_err("{\"model_type\":\"mistral\"," BASE ",\"num_attention_heads\":8,\"sliding_window\":4096}", &e), 0);
	/* errors, each naming the field */
	ck_assert_int_eq(config_err("{\"model_type\":\"gemma\"}", &e), FTK_EUNSUPPORTED);
	ck_assert_str_eq(e.msg, "unsupported architecture 'gemma' (supported: llama, mistral, qwen2, qwen3)");
	ck_assert_int_eq(config_err("{\"model_type\":\"llama\",\"hidden_size\":64}", &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "missing field 'intermediate_size'");
	ck_assert_int_eq(config_err("{\"model_type\":\"llama\"," BASE ",\"num_attention_heads\":8,\"num_key_value_heads\":3}", &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "num_key_value_heads");
	ck_assert_int_eq(config_err("{\"model_type\":\"llama\"," BASE ",\"num_attention_heads\":8,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", &e), FTK_EUNSUPPORTED);
	ck_assert_str_eq(e.msg, "unsupported RoPE scaling 'yarn' (supported: llama3, default)");
	ck_assert_int_eq(config_err("{\"model_type\":\"llama\"," BASE ",\"num_attention_heads\":8,\"hidden_act\":\"gelu\"}", &e), FTK_EUNSUPPORTED);
	ck_assert_int_eq(config_err("{\"model_type\":\"llama\"," BASE ",\"num_attention_heads\":\"8\"}", &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "field 'num_attention_heads' must be a non-negative integer");
	ck_assert_int_eq(config_err("{\"model_type\":", &e), FTK_EDATA);
	ck_assert_str_eq(e.file, "./config.json");
}
END_TEST

/*
 * What a config.json that leaves a field out means, per family, as
 * transformers reads it (src/transformers/models/<family>/configuration_<family>.py,
 * read at huggingface/transformers 008e574): LlamaConfig, MistralConfig,
 * Qwen2Config and Qwen3Config all default tie_word_embeddings to False
 * (overriding PretrainedConfig's True), Qwen3Config alone defaults head_dim
 * to 128 (the others hidden_size // num_attention_heads), and Llama's and
 * Qwen3's attention_bias puts a bias on q/k/v and o_proj, which the model
 * does not implement, so it is refused rather than dropped.  The ledger's
 * estimate reads configs with the same loader, so both count the same
 * parameters (test_ledger checks published counts).
 */
START_TEST(config_defaults_are_transformers)
{
	static const struct { const char *type; int head_dim; } fam[] = {
		{ "llama", 8 }, { "mistral", 8 }, { "qwen2", 8 }, { "qwen3", 128 },
	};
	struct ftk_model_config c;
	struct ftk_error e;
	char json[512];
	for (size_t i = 0; i < FTK_ARRAY_SIZE(fam); i++) {
		snprintf(json, sizeof(json), "{\"model_type\":\"%s\"," BASE ",\"num_attention_heads\":8}",
			 fam[i].type);
		ck_assert_int_eq(config_err(json, &e), 0);
		ck_assert_int_eq(ftk_config_load(".", &c, NULL), 0);
		ck_assert_msg(!c.tie_embeddings, "%s: untied when tie_word_embeddings is absent", fam[i].type);
		ck_assert_int_eq(c.head_dim, fam[i].head_dim);
		ck_assert_str_eq(c.arch->model_type, fam[i].type);
		/* an explicit value wins over the default */
		snprintf(json, sizeof(json), "{\"model_type\":\"%s\"," BASE ",\"num_attention_heads\":8,"
			 "\"tie_word_embeddings\":true,\"head_dim\":16}", fam[i].type);
		ck_assert_int_eq(config_err(json, &e), 0);
		ck_assert_int_eq(ftk_config_load(".", &c, NULL), 0);
		ck_assert(c.tie_embeddings && c.head_dim == 16);
	}
	/* attention_bias: refused where it means an o_proj bias, ignored where the family has none */
	ck_assert_int_eq(config_err("{\"model_type\":\"llama\"," BASE ",\"num_attention_heads\":8,"
				    "\"attention_bias\":true}", &e), FTK_EUNSUPPORTED);
	ck_assert_str_eq(e.field, "attention_bias");
	ck_assert_int_eq(config_err("{\"model_type\":\"qwen3\"," BASE ",\"num_attention_heads\":8,"
				    "\"attention_bias\":false}", &e), 0);
	ck_assert_int_eq(config_err("{\"model_type\":\"mistral\"," BASE ",\"num_attention_heads\":8,"
				    "\"attention_bias\":true}", &e), 0);
	ck_assert_int_eq(ftk_config_load(".", &c, NULL), 0);
	ck_assert(!c.qkv_bias);
	/* experts are refused by name */
	ck_assert_int_eq(config_err("{\"model_type\":\"qwen2\"," BASE ",\"num_attention_heads\":8,"
				    "\"num_experts\":60}", &e), FTK_EUNSUPPORTED);
	ck_assert_str_eq(e.field, "num_experts");
	/* a config file under another name */
	write_bytes("my-config", "{\"model_type\":\"llama\"," BASE ",\"num_attention_heads\":8}",
		    strlen("{\"model_type\":\"llama\"," BASE ",\"num_attention_heads\":8}"));
	ck_assert_int_eq(ftk_config_load("my-config", &c, &e), 0);
	ck_assert_int_eq(ftk_config_load("nowhere", &c, &e), FTK_ENOTFOUND);
	ck_assert_str_eq(e.file, "nowhere/config.json");
}
END_TEST

START_TEST(missing_tensor_before_allocation)
{
	/* stories260K without one layer norm */
	struct ftk_st *st;
	ck_assert_int_eq(ftk_st_open_dir(&st, src_path(S260), NULL), 0);
	mkdir("mt", 0755);
	copy_file(src_path(S260 "/config.json"), "mt/config.json");
	struct ftk_st_writer *w = ftk_st_writer_new();
	for (size_t i = 0; i < ftk_st_count(st); i++) {
		const struct ftk_st_tensor *t = ftk_st_at(st, i);
		if (strcmp(t->name, "model.layers.3.post_attention_layernorm.weight"))
			ftk_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
	}
	ck_assert_int_eq(ftk_st_writer_save(w, "mt/model.safetensors", NULL), 0);
	ftk_st_writer_free(w);
	ftk_st_close(st);
	struct ftk_model *m;
	struct ftk_error e;
	ck_assert_int_eq(ftk_model_load(&m, "mt", NULL, &e), FTK_ENOTFOUND);
	ck_assert_str_eq(e.msg, "missing tensor 'model.layers.3.post_attention_layernorm.weight'");
	ck_assert_str_eq(e.file, "mt/model.safetensors");
}
END_TEST

START_TEST(lora_init_like_peft)
{
	struct ftk_model *m = load_model(FTK_QUANT_NF4);
	unsigned tg;
	ck_assert_int_eq(ftk_lora_parse_targets("q,v_proj,down", &tg, NULL), 0);
	ck_assert_uint_eq(tg, (1u << FTK_LORA_Q) | (1u << FTK_LORA_V) | (1u << FTK_LORA_DOWN));
	struct ftk_error e;
	ck_assert_int_eq(ftk_lora_parse_targets("q,attn", &tg, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "unknown LoRA target 'attn' (use q,k,v,o,gate,up,down or all)");
	struct ftk_lora_opts o = { tg, 8, 16.0f, 1, 0.05f, 42 };
	ck_assert_float_eq_tol(ftk_lora_scaling(&o), 16.0f / sqrtf(8.0f), 1e-6f);
	ck_assert_int_eq(ftk_model_lora_init(m, &o, NULL), 0);
	ck_assert_uint_eq(ftk_model_lora_count(m), 5 * 3 * 2);
	const struct ftk_lora_tensor *t = ftk_model_lora_tensor(m, 4);
	ck_assert_str_eq(t->name, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
	ck_assert(t->rows == 8 && t->cols == 172 && !t->is_b);
	size_t n;
	float *p = ftk_model_lora_flat(m, &n);
	float *first = malloc(n * 4);
	memcpy(first, p, n * 4);
	double var = 0;
	long na = 0;
	for (size_t i = 0; i < ftk_model_lora_count(m); i++) {
		t = ftk_model_lora_tensor(m, i);
		ck_assert_ptr_eq(t->data, p + t->offset);
		float bound = 1.0f / sqrtf((float)t->cols);
		for (int k = 0; k < t->rows * t->cols; k++) {
			if (t->is_b) {
				ck_assert(t->data[k] == 0.0f);	/* B starts at zero */
			} else {
				ck_assert(fabsf(t->data[k]) <= bound);
				var += (double)t->data[k] * t->data[k] / ((double)bound * bound);
				na++;
			}
		}
	}
	/* uniform on [-b, b] has variance b^2 / 3 */
	printf("LoRA A init: variance / bound^2 = %.4f over %ld values (uniform: 0.3333)\n", var / na, na);
	ck_assert(fabs(var / na - 1.0 / 3.0) < 0.02);
	/* same seed: same values; another seed: others */
	ck_assert_int_eq(ftk_model_lora_init(m, &o, NULL), 0);
	p = ftk_model_lora_flat(m, &n);
	ck_assert(!memcmp(first, p, n * 4));
	o.seed = 43;
	ck_assert_int_eq(ftk_model_lora_init(m, &o, NULL), 0);
	p = ftk_model_lora_flat(m, &n);
	ck_assert(memcmp(first, p, n * 4));
	struct ftk_model_rng r;
	ftk_model_rng_get(m, &r);
	ck_assert(r.seed == 43 && r.counter == 0);
	o.rank = 0;
	ck_assert_int_eq(ftk_model_lora_init(m, &o, &e), FTK_EUSAGE);
	free(first);
	ftk_model_free(m);
}
END_TEST

START_TEST(sampler_rules)
{
	float base[6] = { 1.0f, 3.0f, 2.9f, -1.0f, 0.5f, 3.0f };
	float l[6];
	struct ftk_gen_opts o;
	ftk_gen_opts_default(&o);
	struct ftk_rng rng;
	ftk_rng_seed(&rng, 1);
	memcpy(l, base, sizeof(l));
	ck_assert_uint_eq(ftk_sample(l, 6, &o, &rng), 1);	/* greedy: lowest id on ties */
	/* top-k 2 at a high temperature: only ids 1 and 5 ever come out */
	o.temperature = 5.0f;
	o.top_k = 2;
	int seen[6] = { 0 };
	for (int i = 0; i < 2000; i++) {
		memcpy(l, base, sizeof(l));
		seen[ftk_sample(l, 6, &o, &rng)]++;
	}
	ck_assert(seen[1] > 800 && seen[5] > 800 && seen[0] + seen[2] + seen[3] + seen[4] == 0);
	/* top-p: temperature 1, p = 0.5 keeps the two most likely tokens (0.34 + 0.34 > 0.5) */
	o.temperature = 1.0f;
	o.top_k = 0;
	o.top_p = 0.5f;
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < 2000; i++) {
		memcpy(l, base, sizeof(l));
		seen[ftk_sample(l, 6, &o, &rng)]++;
	}
	ck_assert(seen[1] > 800 && seen[5] > 800 && seen[2] == 0);
	/* no cut: the frequencies follow softmax (id 3 has p = 0.0109) */
	o.top_p = 1.0f;
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < 20000; i++) {
		memcpy(l, base, sizeof(l));
		seen[ftk_sample(l, 6, &o, &rng)]++;
	}
	double z = 0;
	for (int i = 0; i < 6; i++)
		z += exp(base[i]);
	printf("sampling: id 2 drawn %.4f of the time, softmax says %.4f\n", seen[2] / 20000.0, exp(2.9) / z);
	ck_assert(fabs(seen[2] / 20000.0 - exp(2.9) / z) < 0.015);
	ck_assert(seen[3] > 100 && seen[3] < 350);
}
END_TEST

START_TEST(kv_cache_equals_full_forward)
{
	/* decoding token by token (NF4: the fused few-row path) gives the full forward's logits */
	struct ftk_model *m = load_model(FTK_QUANT_NF4);
	uint32_t ids[20] = { 1, 403, 407, 261, 378, 430, 261, 439, 300, 263, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
	float *full = malloc(20 * 512 * 4), step[512];
	struct ftk_batch b = { 1, 20, ids, NULL, NULL };
	ck_assert_int_eq(ftk_model_forward(m, &b, full, NULL, NULL, NULL), 0);
	double md = 0;
	ck_assert_int_eq(ftk_model_decode(m, ids, 6, 0, step, NULL), 0);	/* a prompt of 6 */
	/* the cache holds what was asked (16 positions), not the model's 512 */
	ck_assert_int_eq(ftk_model_kv_capacity(m), 16);
	for (int v = 0; v < 512; v++)
		md = fmax(md, fabs(step[v] - full[5 * 512 + v]));
	for (int t = 6; t < 20; t++) {	/* grows to 32 at t = 16, keeping what is cached */
		ck_assert_int_eq(ftk_model_decode(m, ids + t, 1, t, step, NULL), 0);
		for (int v = 0; v < 512; v++)
			md = fmax(md, fabs(step[v] - full[t * 512 + v]));
	}
	printf("KV-cache decoding vs full forward: max |logit diff| %.3g (tolerance 1e-4)\n", md);
	ck_assert(md < 1e-4);
	struct ftk_error e;
	ck_assert_int_eq(ftk_model_decode(m, ids, 1, 25, step, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "decoding at position 25, but only 20 are cached");
	ck_assert_int_eq(ftk_model_kv_capacity(m), 32);
	ck_assert_int_eq(ftk_model_kv_reserve(m, 513, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "a KV cache of 513 positions is beyond the model's context of 512");
	free(full);
	ftk_model_free(m);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("stories260K");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, stories_logits_and_loss);
	tcase_add_test(tc, stories_greedy_256);
	tcase_add_test(tc, stories_lora_grads);
	tcase_add_test(tc, stories_lora_grads_checkpointed);
	tcase_add_test(tc, merge_equals_adapter);
	tcase_add_test(tc, merge_bf16);
	tcase_add_test(tc, tiny_llama3_rope_scaling);
	tcase_add_test(tc, tiny_qwen2_bias);
	tcase_add_test(tc, tiny_qwen3_qk_norm);
	suite_add_tcase(s, tc);
	TCase *tf = tcase_create("files");
	tcase_add_test(tf, half_floats_exact);
	tcase_add_test(tf, sharded_model_equals_single_file);
	tcase_add_test(tf, safetensors_bad_files);
	tcase_add_test(tf, config_families_and_errors);
	tcase_add_test(tf, config_defaults_are_transformers);
	tcase_add_test(tf, missing_tensor_before_allocation);
	tcase_add_test(tf, lora_init_like_peft);
	tcase_add_test(tf, sampler_rules);
	tcase_add_test(tf, kv_cache_equals_full_forward);
	suite_add_tcase(s, tf);
	return s;
}

FTK_TEST_MAIN(suite)
