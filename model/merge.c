/*
 * merge.c: ftk_merge (see merge.h).
 *
 * The base is loaded through ftk_model_load (so NF4 is quantized exactly as
 * for training) and the adapter applied through ftk_adapter_apply (so its
 * shapes are checked the same way); the merged weights are then computed per
 * projection with one sgemm: W (out, in) += scaling * B (out, r) @ A (r, in).
 */
#include "model/merge.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "lib/json.h"
#include "lib/strbuf.h"
#include "model/adapter.h"
#include "model/model.h"

/* Which projection (layer, target) a tensor name is, or -1. */
static int parse_proj(const char *name, int *layer)
{
	int l, n = 0;
	char mod[32], proj[32];
	if (sscanf(name, "model.layers.%d.%31[a-z_].%31[a-z_].weight%n", &l, mod, proj, &n) != 3 ||
	    name[n])
		return -1;
	for (int t = 0; t < FTK_LORA_N_TARGETS; t++)
		if (!strcmp(proj, ftk_lora_target_name((enum ftk_lora_target)t)) &&
		    !strcmp(mod, t <= FTK_LORA_O ? "self_attn" : "mlp")) {
			*layer = l;
			return t;
		}
	return -1;
}

static int copy_file(const char *from, const char *to, struct ftk_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	int r = strbuf_read_file(&sb, from);
	if (r == -ENOENT) {
		strbuf_release(&sb);
		return 0;
	}
	if (r < 0) {
		strbuf_release(&sb);
		return ftk_error_set(err, FTK_EIO, from, 0, NULL, "cannot read: %s", strerror(-r));
	}
	FILE *f = fopen(to, "wb");
	int bad = !f || fwrite(sb.buf, 1, sb.len, f) != sb.len;
	if (f && fclose(f))
		bad = 1;
	strbuf_release(&sb);
	if (bad)
		return ftk_error_set(err, FTK_EIO, to, 0, NULL, "cannot write: %s", strerror(errno));
	return 1;
}

static int write_config(const struct ftk_merge_opts *o, struct ftk_error *err)
{
	char from[4096], to[4096];
	snprintf(from, sizeof(from), "%s/config.json", o->model_dir);
	snprintf(to, sizeof(to), "%s/config.json", o->out_dir);
	struct strbuf sb = STRBUF_INIT;
	int r = strbuf_read_file(&sb, from);
	if (r < 0) {
		strbuf_release(&sb);
		return ftk_error_set(err, FTK_EIO, from, 0, NULL, "cannot read: %s", strerror(-r));
	}
	cJSON *cfg;
	struct ftk_error je;
	if (ftk_json_parse_object(sb.buf, sb.len, &cfg, &je) < 0) {
		strbuf_release(&sb);
		return ftk_error_set(err, FTK_EDATA, from, 0, NULL, "%s", je.msg);
	}
	strbuf_release(&sb);
	const char *dt = o->dtype == FTK_BF16 ? "bfloat16" : o->dtype == FTK_F16 ? "float16" : "float32";
	cJSON_DeleteItemFromObjectCaseSensitive(cfg, "torch_dtype");
	cJSON_AddStringToObject(cfg, "torch_dtype", dt);
	cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
	char *txt = cJSON_Print(cfg);
	cJSON_Delete(cfg);
	FILE *f = fopen(to, "w");
	int bad = !f || fputs(txt, f) < 0 || fputc('\n', f) < 0;
	if (f && fclose(f))
		bad = 1;
	free(txt);
	if (bad)
		return ftk_error_set(err, FTK_EIO, to, 0, NULL, "cannot write: %s", strerror(errno));
	return 0;
}

int ftk_merge(const struct ftk_merge_opts *o, int *n_merged, struct ftk_error *err)
{
	if (o->dtype != FTK_F32 && o->dtype != FTK_BF16 && o->dtype != FTK_F16)
		return ftk_error_msg(err, FTK_EUSAGE, "output dtype must be F32, BF16 or F16");
	if (n_merged)
		*n_merged = 0;
	struct ftk_model *m = NULL;
	struct ftk_adapter *ad = NULL;
	struct ftk_st *st = NULL;
	struct ftk_st_writer *w = NULL;
	void **bufs = NULL;
	size_t nb = 0;
	float *lora = NULL;	/* host copy of the model's LoRA parameters */
	struct ftk_load_opts lo = { o->quant, NULL, 0, 0 };
	int rc = ftk_model_load(&m, o->model_dir, &lo, err);
	if (rc < 0)
		return rc;
	if (o->adapter_dir) {
		if ((rc = ftk_adapter_load(o->adapter_dir, &ad, err)) < 0 ||
		    (rc = ftk_adapter_apply(m, ad, NULL, err)) < 0)
			goto out;
	}
	if ((rc = ftk_st_open_dir(&st, o->model_dir, err)) < 0)
		goto out;
	if (mkdir(o->out_dir, 0755) < 0 && errno != EEXIST) {
		rc = ftk_error_set(err, FTK_EIO, o->out_dir, 0, NULL, "cannot create: %s", strerror(errno));
		goto out;
	}
	const struct ftk_lora_opts *lopt = ftk_model_lora_opts(m);
	float scaling = lopt ? ftk_lora_scaling(lopt) : 0.0f;
	if (lopt) {	/* the parameters are backend memory: one host copy */
		size_t nl;
		ftk_model_lora_flat(m, &nl);
		lora = xmalloc(nl * sizeof(float) + 1);
		ftk_model_lora_download(m, lora);
	}
	w = ftk_st_writer_new();
	ftk_st_writer_meta(w, "format", "pt");
	size_t n = ftk_st_count(st);
	bufs = xcalloc(n, sizeof(*bufs));
	for (size_t i = 0; i < n; i++) {
		const struct ftk_st_tensor *t = ftk_st_at(st, i);
		size_t ne = (size_t)t->numel;
		float *f = xmalloc((ne ? ne : 1) * sizeof(float));
		int layer = -1, tg = parse_proj(t->name, &layer);
		if (tg >= 0 && layer < ftk_model_config(m)->n_layers) {
			ftk_model_base_weight(m, layer, (enum ftk_lora_target)tg, f);
			char an[160], bn[160];
			snprintf(an, sizeof(an), "base_model.model.model.layers.%d.%s.%s.lora_A.weight",
				 layer, tg <= FTK_LORA_O ? "self_attn" : "mlp",
				 ftk_lora_target_name((enum ftk_lora_target)tg));
			snprintf(bn, sizeof(bn), "%.*s_B.weight", (int)(strlen(an) - 9), an);
			const struct ftk_lora_tensor *A = ftk_model_lora_find(m, an),
						     *B = ftk_model_lora_find(m, bn);
			if (A && B) {
				/* W (out, in) += scaling * B (out, r) @ A (r, in) */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B->rows, A->cols,
					    A->rows, scaling, lora + B->offset, B->cols, lora + A->offset,
					    A->cols, 1.0f, f, A->cols);
				if (n_merged)
					(*n_merged)++;
			}
		} else if ((rc = ftk_st_to_f32(t, f, err)) < 0) {
			free(f);
			goto out;
		}
		void *data = f;
		if (o->dtype != FTK_F32) {
			uint16_t *h = xmalloc((ne ? ne : 1) * 2);
			for (size_t k = 0; k < ne; k++)
				h[k] = o->dtype == FTK_BF16 ? ftk_f32_to_bf16(f[k]) : ftk_f32_to_f16(f[k]);
			free(f);
			data = h;
		}
		bufs[nb++] = data;
		ftk_st_writer_add(w, t->name, o->dtype, t->ndim, t->shape, data);
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/model.safetensors", o->out_dir);
	if ((rc = ftk_st_writer_save(w, path, err)) < 0)
		goto out;
	if ((rc = write_config(o, err)) < 0)
		goto out;
	static const char *const files[] = { "tokenizer.json", "tokenizer_config.json",
					     "special_tokens_map.json", "generation_config.json",
					     "tokenizer.model", "vocab.json", "merges.txt" };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(files); i++) {
		char from[4096], to[4096];
		snprintf(from, sizeof(from), "%s/%s", o->model_dir, files[i]);
		snprintf(to, sizeof(to), "%s/%s", o->out_dir, files[i]);
		if ((rc = copy_file(from, to, err)) < 0)
			goto out;
	}
	rc = 0;
out:
	for (size_t i = 0; i < nb; i++)
		free(bufs[i]);
	free(bufs);
	free(lora);
	ftk_st_writer_free(w);
	ftk_st_close(st);
	ftk_adapter_free(ad);
	ftk_model_free(m);
	return rc;
}
