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
#include "testutil.h"
#include "lib/json.h"
#include "lib/strbuf.h"
#include "trainer/adapter.h"
#include "trainer/generate.h"
#include "trainer/merge.h"
#include "trainer/model.h"
#include "trainer/safetensors.h"

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
	return s;
}

FTK_TEST_MAIN(suite)
