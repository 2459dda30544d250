/*
 * test_adapter.c: PEFT adapters in and out.
 *
 * The reference is tests/fixtures/trainer/peft-stories260K, an adapter that
 * tools/ref/adapter_torch.py writes independently of ftk (PEFT's names and
 * config keys, its own safetensors writer) together with the logits a
 * hand-written float64 PyTorch Llama forward pass gives with it
 * (adapter_logits.json; the same forward without LoRA matches the model's
 * reference.json to 5e-7).  ftk loads the adapter into stories260K and must
 * give the same logits; what ftk writes must read back bit for bit, under
 * PEFT's names, with PEFT's config keys.
 */
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "testutil.h"
#include "lib/strbuf.h"
#include "model/adapter.h"
#include "model/safetensors.h"

#define STORIES "datasets/models/stories260K"
#define FIXTURE "tests/fixtures/trainer/peft-stories260K"

static struct ftk_model *load_model(void)
{
	struct ftk_model *m;
	struct ftk_error e;
	struct ftk_load_opts lo = { FTK_QUANT_NONE, NULL, 1, 0 };
	ck_assert_msg(ftk_model_load(&m, src_path(STORIES), &lo, &e) == 0, "%s", e.msg);
	return m;
}

/* Largest |ftk logit - fixture logit| with the adapter in dir; *moved: largest change from the base. */
static double logits_vs_fixture(const char *dir, const char *fixture, double *moved,
				const char **torch_version)
{
	struct ftk_error e;
	struct ftk_adapter *a;
	ck_assert_msg(ftk_adapter_load(dir, &a, &e) == 0, "%s", e.msg);
	struct ftk_model *m = load_model(), *base = load_model();
	ck_assert_msg(ftk_adapter_apply(m, a, NULL, &e) == 0, "%s", e.msg);
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, fixture), 0);
	cJSON *j = cJSON_Parse(sb.buf);
	ck_assert_ptr_nonnull(j);
	static char version[64];
	snprintf(version, sizeof(version), "%s", cJSON_GetObjectItem(j, "torch")->valuestring);
	*torch_version = version;
	ck_assert_double_eq_tol(cJSON_GetObjectItem(j, "scaling")->valuedouble,
				ftk_adapter_scaling(a), 1e-6);
	const cJSON *ids = cJSON_GetObjectItem(j, "ids"), *logits = cJSON_GetObjectItem(j, "logits");
	int T = cJSON_GetArraySize(ids), V = 512;
	uint32_t tok[64];
	for (int t = 0; t < T; t++)
		tok[t] = (uint32_t)cJSON_GetArrayItem(ids, t)->valueint;
	float *out = calloc((size_t)T * V, sizeof(float)), *out0 = calloc((size_t)T * V, sizeof(float));
	struct ftk_batch b = { 1, T, tok, NULL, NULL };
	double loss, worst = 0;
	long n;
	ck_assert_msg(ftk_model_forward(m, &b, out, &loss, &n, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(ftk_model_forward(base, &b, out0, &loss, &n, &e), 0);
	*moved = 0;
	for (int t = 0; t < T; t++) {
		const cJSON *row = cJSON_GetArrayItem(logits, t);
		for (int v = 0; v < V; v++) {
			size_t i = (size_t)t * V + v;
			worst = fmax(worst, fabs(out[i] - cJSON_GetArrayItem(row, v)->valuedouble));
			*moved = fmax(*moved, fabs(out0[i] - out[i]));
		}
	}
	free(out);
	free(out0);
	cJSON_Delete(j);
	strbuf_release(&sb);
	ftk_model_free(base);
	ftk_model_free(m);
	ftk_adapter_free(a);
	return worst;
}

START_TEST(peft_adapter_gives_torch_logits)
{
	struct ftk_error e;
	struct ftk_adapter *a;
	ck_assert_msg(ftk_adapter_load(src_path(FIXTURE), &a, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(a->opts.rank, 4);
	ck_assert_float_eq(a->opts.alpha, 8.0f);
	ck_assert_int_eq(a->opts.rslora, 0);
	ck_assert_uint_eq(a->opts.targets, (1u << FTK_LORA_Q) | (1u << FTK_LORA_V) |
						   (1u << FTK_LORA_O) | (1u << FTK_LORA_GATE) |
						   (1u << FTK_LORA_DOWN));
	ck_assert_int_eq(a->n_layers, 5);
	ck_assert_uint_eq(a->n_tensors, 50);
	ck_assert_str_eq(a->base_model, "stories260K");
	ck_assert_float_eq(ftk_adapter_scaling(a), 2.0f);

	ftk_adapter_free(a);
	double moved;
	const char *tv;
	double worst = logits_vs_fixture(src_path(FIXTURE),
					 src_path("tests/fixtures/trainer/adapter_logits.json"), &moved, &tv);
	printf("PEFT adapter: logits vs torch %s: max abs diff %.3g (tolerance 1e-4); the adapter "
	       "moves logits by up to %.3g\n", tv, worst, moved);
	ck_assert_double_le(worst, 1e-4);
	ck_assert_double_gt(moved, 0.1);
}
END_TEST

/*
 * The other direction: an adapter ftk-train wrote, read by the reference
 * script's own safetensors reader (names, shapes, config keys asserted
 * there), gives the same logits in PyTorch as in ftk.
 */
START_TEST(ftk_adapter_gives_torch_logits)
{
	double moved;
	const char *tv;
	double worst = logits_vs_fixture(src_path("tests/fixtures/trainer/ftk-adapter-stories260K"),
					 src_path("tests/fixtures/trainer/ftk_adapter_logits.json"),
					 &moved, &tv);
	printf("ftk-written adapter (rsLoRA): logits vs torch %s: max abs diff %.3g (tolerance "
	       "1e-4); moves logits by up to %.3g\n", tv, worst, moved);
	ck_assert_double_le(worst, 1e-4);
	ck_assert_double_gt(moved, 0.1);
}
END_TEST

/* The keys PEFT's LoraConfig writes (0.10 .. 0.13), sorted as json.dump(sort_keys) does. */
static const char *const peft_keys[] = {
	"alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out",
	"inference_mode", "init_lora_weights", "layer_replication", "layers_pattern",
	"layers_to_transform", "loftq_config", "lora_alpha", "lora_dropout", "megatron_config",
	"megatron_core", "modules_to_save", "peft_type", "r", "rank_pattern", "revision",
	"target_modules", "task_type", "use_dora", "use_rslora",
};

START_TEST(save_round_trip_with_peft_names_and_keys)
{
	struct ftk_error e;
	struct ftk_adapter *a, *b;
	ck_assert_int_eq(ftk_adapter_load(src_path(FIXTURE), &a, &e), 0);
	struct ftk_model *m = load_model();
	struct ftk_lora_opts train = { 0, 0, 0, 0, 0.05f, 3 };
	ck_assert_int_eq(ftk_adapter_apply(m, a, &train, &e), 0);
	ck_assert_msg(ftk_adapter_save_model(m, "stories260K", "out", &e) == 0, "%s", e.msg);
	ck_assert_msg(ftk_adapter_load("out", &b, &e) == 0, "%s", e.msg);

	/* every tensor bit for bit, in the same order, with the model's PEFT names */
	ck_assert_uint_eq(a->n_tensors, b->n_tensors);
	ck_assert_uint_eq(a->n_params, b->n_params);
	ck_assert_mem_eq(a->data, b->data, a->n_params * sizeof(float));
	ck_assert_uint_eq(ftk_model_lora_count(m), b->n_tensors);
	for (size_t i = 0; i < b->n_tensors; i++) {
		char name[160];
		const struct ftk_adapter_tensor *t = &b->t[i];
		ftk_adapter_tensor_name(name, sizeof(name), t->layer, t->target, t->is_b);
		ck_assert_str_eq(name, ftk_model_lora_tensor(m, i)->name);
	}
	char name[160];
	ftk_adapter_tensor_name(name, sizeof(name), 3, FTK_LORA_UP, 1);
	ck_assert_str_eq(name, "base_model.model.model.layers.3.mlp.up_proj.lora_B.weight");
	ftk_adapter_tensor_name(name, sizeof(name), 0, FTK_LORA_Q, 0);
	ck_assert_str_eq(name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");

	/* the safetensors file: PEFT's names, F32, [r, in] and [out, r], format pt */
	struct ftk_st *st;
	ck_assert_int_eq(ftk_st_open(&st, "out/adapter_model.safetensors", &e), 0);
	ck_assert_str_eq(ftk_st_metadata(st, "format"), "pt");
	ck_assert_uint_eq(ftk_st_count(st), 50);
	const struct ftk_st_tensor *t =
		ftk_st_find(st, "base_model.model.model.layers.4.mlp.down_proj.lora_A.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->dtype, FTK_F32);
	ck_assert_int_eq(t->shape[0], 4);
	ck_assert_int_eq(t->shape[1], 172);
	t = ftk_st_find(st, "base_model.model.model.layers.4.mlp.gate_proj.lora_B.weight");
	ck_assert_int_eq(t->shape[0], 172);
	ck_assert_int_eq(t->shape[1], 4);
	ftk_st_close(st);

	/* the config: exactly PEFT's keys, and the values that matter */
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, "out/adapter_config.json"), 0);
	cJSON *j = cJSON_Parse(sb.buf);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(cJSON_GetArraySize(j), (int)FTK_ARRAY_SIZE(peft_keys));
	int i = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, j) ck_assert_str_eq(x->string, peft_keys[i++]);
	ck_assert_str_eq(cJSON_GetObjectItem(j, "peft_type")->valuestring, "LORA");
	ck_assert_str_eq(cJSON_GetObjectItem(j, "task_type")->valuestring, "CAUSAL_LM");
	ck_assert_str_eq(cJSON_GetObjectItem(j, "bias")->valuestring, "none");
	ck_assert_str_eq(cJSON_GetObjectItem(j, "base_model_name_or_path")->valuestring, "stories260K");
	ck_assert_int_eq(cJSON_GetObjectItem(j, "r")->valueint, 4);
	ck_assert_double_eq(cJSON_GetObjectItem(j, "lora_alpha")->valuedouble, 8);
	ck_assert_double_eq_tol(cJSON_GetObjectItem(j, "lora_dropout")->valuedouble, 0.05, 1e-9);
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "use_rslora")));
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "use_dora")));
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "fan_in_fan_out")));
	char *tm = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "target_modules"));
	ck_assert_str_eq(tm, "[\"down_proj\",\"gate_proj\",\"o_proj\",\"q_proj\",\"v_proj\"]");
	free(tm);
	/* whole numbers as Python writes them: "lora_alpha": 8, "lora_dropout": 0.05 */
	ck_assert_ptr_nonnull(strstr(sb.buf, "\n  \"lora_alpha\": 8,\n  \"lora_dropout\": 0.05,\n"));
	cJSON_Delete(j);
	strbuf_release(&sb);
	ftk_adapter_free(a);
	ftk_adapter_free(b);
	ftk_model_free(m);
}
END_TEST

/*
 * The host copies of the LoRA parameters (issue 23.9): what the model holds
 * after an apply is the adapter's tensors at their offsets; what is uploaded
 * is what a save writes, tensor by tensor, and a download gives back.
 */
START_TEST(host_copies_of_the_parameters)
{
	struct ftk_error e;
	struct ftk_adapter *a, *b;
	ck_assert_int_eq(ftk_adapter_load(src_path(FIXTURE), &a, &e), 0);
	struct ftk_model *m = load_model();
	ck_assert_int_eq(ftk_adapter_apply(m, a, NULL, &e), 0);
	size_t n;
	ftk_model_lora_flat(m, &n);
	ck_assert_uint_eq(n, a->n_params);
	float *h = malloc(n * sizeof(float)), *h2 = malloc(n * sizeof(float));
	ftk_model_lora_download(m, h);
	for (size_t i = 0; i < a->n_tensors; i++) {
		const struct ftk_lora_tensor *mt = ftk_model_lora_tensor(m, i);
		ck_assert_mem_eq(h + mt->offset, a->t[i].data,
				 (size_t)mt->rows * mt->cols * sizeof(float));
	}
	for (size_t i = 0; i < n; i++)
		h[i] = (float)i * 1e-3f - 1.0f;
	ftk_model_lora_upload(m, h);
	ftk_model_lora_download(m, h2);
	ck_assert_mem_eq(h, h2, n * sizeof(float));
	ck_assert_msg(ftk_adapter_save_model(m, "stories260K", "copies", &e) == 0, "%s", e.msg);
	ck_assert_msg(ftk_adapter_load("copies", &b, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < b->n_tensors; i++) {
		const struct ftk_lora_tensor *mt = ftk_model_lora_tensor(m, i);
		ck_assert_mem_eq(b->t[i].data, h + mt->offset,
				 (size_t)mt->rows * mt->cols * sizeof(float));
	}
	free(h), free(h2);
	ftk_adapter_free(a);
	ftk_adapter_free(b);
	ftk_model_free(m);
}
END_TEST

static void write_text(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(s, f);
	fclose(f);
}

static void copy_fixture(const char *dir, const char *config)
{
	struct strbuf sb = STRBUF_INIT, p = STRBUF_INIT;
	mkdir(dir, 0777);
	ck_assert_int_eq(strbuf_read_file(&sb, src_path(FIXTURE "/adapter_model.safetensors")), 0);
	strbuf_addf(&p, "%s/adapter_model.safetensors", dir);
	FILE *f = fopen(p.buf, "wb");
	fwrite(sb.buf, 1, sb.len, f);
	fclose(f);
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/adapter_config.json", dir);
	write_text(p.buf, config);
	strbuf_release(&sb);
	strbuf_release(&p);
}

START_TEST(refuses_what_it_cannot_apply)
{
	struct ftk_error e;
	struct ftk_adapter *a;
	copy_fixture("p", "{\"peft_type\":\"PREFIX_TUNING\",\"r\":4,\"lora_alpha\":8}");
	ck_assert_int_eq(ftk_adapter_load("p", &a, &e), FTK_EUNSUPPORTED);
	ck_assert_str_eq(e.field, "peft_type");
	ck_assert_str_eq(e.msg, "adapter type 'PREFIX_TUNING' is not supported (only LORA)");
	ck_assert_str_eq(e.file, "p/adapter_config.json");

	copy_fixture("d", "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"use_dora\":true}");
	ck_assert_int_eq(ftk_adapter_load("d", &a, &e), FTK_EUNSUPPORTED);
	ck_assert_str_eq(e.field, "use_dora");

	copy_fixture("r", "{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":8}");
	ck_assert_int_eq(ftk_adapter_load("r", &a, &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "shape does not match r=8 from adapter_config.json");

	copy_fixture("n", "{\"peft_type\":\"LORA\",\"lora_alpha\":8}");
	ck_assert_int_eq(ftk_adapter_load("n", &a, &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "r");

	ck_assert_int_eq(ftk_adapter_load("nonexistent", &a, &e), FTK_ENOTFOUND);

	/* a tensor we do not know, and an A without its B */
	mkdir("x", 0777);
	write_text("x/adapter_config.json", "{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4}");
	float z[2 * 64] = { 0 };
	int64_t sa[2] = { 2, 64 }, sh[2] = { 512, 64 };
	struct ftk_st_writer *w = ftk_st_writer_new();
	ftk_st_writer_add(w, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
			  FTK_F32, 2, sa, z);
	float *big = calloc(512 * 64, sizeof(float));
	ftk_st_writer_add(w, "base_model.model.lm_head.weight", FTK_F32, 2, sh, big);
	ck_assert_int_eq(ftk_st_writer_save(w, "x/adapter_model.safetensors", &e), 0);
	ftk_st_writer_free(w);
	ck_assert_int_eq(ftk_adapter_load("x", &a, &e), FTK_EUNSUPPORTED);
	ck_assert_str_eq(e.field, "base_model.model.lm_head.weight");
	w = ftk_st_writer_new();
	ftk_st_writer_add(w, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
			  FTK_F32, 2, sa, z);
	ck_assert_int_eq(ftk_st_writer_save(w, "x/adapter_model.safetensors", &e), 0);
	ftk_st_writer_free(w);
	ck_assert_int_eq(ftk_adapter_load("x", &a, &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");

	/* one layer does not fit a five-layer model */
	float zb[64 * 2] = { 0 };
	int64_t sb2[2] = { 64, 2 };
	w = ftk_st_writer_new();
	ftk_st_writer_add(w, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
			  FTK_F32, 2, sa, z);
	ftk_st_writer_add(w, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
			  FTK_F32, 2, sb2, zb);
	ck_assert_int_eq(ftk_st_writer_save(w, "x/adapter_model.safetensors", &e), 0);
	ftk_st_writer_free(w);
	ck_assert_int_eq(ftk_adapter_load("x", &a, &e), 0);
	struct ftk_model *m = load_model();
	ck_assert_int_eq(ftk_adapter_apply(m, a, NULL, &e), FTK_EMISMATCH);
	ck_assert_str_eq(e.msg, "adapter has 1 layers, model has 5");
	ftk_adapter_free(a);
	ftk_model_free(m);
	free(big);
}
END_TEST

START_TEST(rslora_scaling)
{
	struct ftk_error e;
	struct ftk_adapter *a;
	copy_fixture("s", "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"use_rslora\":true}");
	ck_assert_int_eq(ftk_adapter_load("s", &a, &e), 0);
	ck_assert_float_eq_tol(ftk_adapter_scaling(a), 4.0f, 1e-6);
	ftk_adapter_free(a);
}
END_TEST

static Suite *adapter_suite(void)
{
	Suite *s = suite_create("adapter");
	TCase *tc = tcase_create("core");
	/* loads real tokenizers or the model: 6-9 s under ASan on a loaded 2-core machine */
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, peft_adapter_gives_torch_logits);
	tcase_add_test(tc, ftk_adapter_gives_torch_logits);
	tcase_add_test(tc, save_round_trip_with_peft_names_and_keys);
	tcase_add_test(tc, host_copies_of_the_parameters);
	tcase_add_test(tc, refuses_what_it_cannot_apply);
	tcase_add_test(tc, rslora_scaling);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN_GUARDED(adapter_suite)
