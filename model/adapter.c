/*
 * adapter.c: LoRA adapters in PEFT's layout (see adapter.h).
 *
 * Writing: the config is written key by key in the order PEFT's own
 * save_pretrained() produces (json.dump with sort_keys=True and indent=2),
 * with only keys that PEFT releases from 0.10 on accept: older releases pass
 * every key to LoraConfig(**kwargs) and fail on one they do not know, so
 * newer-only keys (peft_version, lora_bias, ...) are left out.  The tensors
 * go through model/safetensors.h with metadata {"format":"pt"}, which is
 * what PEFT writes and what safetensors' torch loader expects.
 *
 * Reading: the config is read strictly where a field changes the arithmetic
 * (r, lora_alpha, use_rslora, fan_in_fan_out, use_dora, bias, rank_pattern,
 * alpha_pattern, modules_to_save, layer_replication) and leniently elsewhere.
 * The tensor names are parsed back into (layer, module, A/B); a name we do
 * not understand is an error rather than something skipped, because skipping
 * a tensor means applying a different adapter from the one that was trained.
 * target_modules in the config is not trusted for what is adapted: PEFT
 * allows regular expressions there, and the tensors are the truth.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "model/adapter.h"
#include "model/safetensors.h"
#include "lib/json.h"
#include "lib/strbuf.h"

static const char *const module_names[FTK_LORA_N_TARGETS] = {
	"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};

static const char *block_name(int target)
{
	return target <= FTK_LORA_O ? "self_attn" : "mlp";
}

void ftk_adapter_tensor_name(char *buf, size_t n, int layer, enum ftk_lora_target target,
			     int is_b)
{
	snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
		 block_name(target), module_names[target], is_b ? 'B' : 'A');
}

float ftk_adapter_scaling(const struct ftk_adapter *a)
{
	return ftk_lora_scaling(&a->opts);
}

void ftk_adapter_free(struct ftk_adapter *a)
{
	if (!a)
		return;
	free(a->t);
	free(a->data);
	free(a);
}

const struct ftk_adapter_tensor *ftk_adapter_find(const struct ftk_adapter *a, int layer,
						  enum ftk_lora_target target, int is_b)
{
	for (size_t i = 0; i < a->n_tensors; i++) {
		const struct ftk_adapter_tensor *t = &a->t[i];
		if (t->layer == layer && t->target == target && t->is_b == !!is_b)
			return t;
	}
	return NULL;
}

/* ---------------------------------------------------------------- saving */

static int write_file_atomic(const char *path, const char *data, size_t len,
			     struct ftk_error *err)
{
	struct strbuf tmp = STRBUF_INIT;
	strbuf_addf(&tmp, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		strbuf_release(&tmp);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot create: %s", strerror(e));
	}
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			close(fd);
			unlink(tmp.buf);
			strbuf_release(&tmp);
			return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot write: %s", strerror(e));
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp.buf, path) < 0) {
		int e = errno;
		unlink(tmp.buf);
		strbuf_release(&tmp);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot write: %s", strerror(e));
	}
	strbuf_release(&tmp);
	return 0;
}

/*
 * A number the way Python's json.dump writes what PEFT holds: lora_alpha is
 * usually an int (16), lora_dropout a float (0.05, 0.0).  We print a whole
 * alpha without a fraction and anything else as the shortest decimal that
 * reads back to the same float32, with ".0" for whole floats.
 */
static void add_number(struct strbuf *sb, float v, int as_int_if_whole)
{
	if (v == floorf(v) && fabsf(v) < 1e9f) {
		strbuf_addf(sb, as_int_if_whole ? "%.0f" : "%.1f", (double)v);
		return;
	}
	for (int prec = 1; prec <= 9; prec++) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%.*g", prec, (double)v);
		if (strtof(buf, NULL) == v) {
			strbuf_addstr(sb, buf);
			return;
		}
	}
	strbuf_addf(sb, "%.9g", (double)v);
}

void ftk_adapter_config_json(struct strbuf *sb, const struct ftk_lora_opts *o,
			     const char *base_model)
{
	strbuf_addstr(sb, "{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,\n");
	strbuf_addstr(sb, "  \"base_model_name_or_path\": ");
	if (base_model && base_model[0])
		strbuf_add_json_str(sb, base_model, strlen(base_model));
	else
		strbuf_addstr(sb, "null");
	strbuf_addstr(sb, ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n"
			  "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
			  "  \"layer_replication\": null,\n  \"layers_pattern\": null,\n"
			  "  \"layers_to_transform\": null,\n  \"loftq_config\": {},\n"
			  "  \"lora_alpha\": ");
	add_number(sb, o->alpha, 1);
	strbuf_addstr(sb, ",\n  \"lora_dropout\": ");
	add_number(sb, o->dropout, 0);
	strbuf_addstr(sb, ",\n  \"megatron_config\": null,\n  \"megatron_core\": \"megatron.core\",\n"
			  "  \"modules_to_save\": null,\n  \"peft_type\": \"LORA\",\n  \"r\": ");
	strbuf_addf(sb, "%d", o->rank);
	strbuf_addstr(sb, ",\n  \"rank_pattern\": {},\n  \"revision\": null,\n  \"target_modules\": [");
	/* PEFT keeps target_modules as a set and writes it in no fixed order; we
	 * write the names sorted so that equal adapters are equal bytes. */
	const char *names[FTK_LORA_N_TARGETS];
	int n = 0;
	for (int t = 0; t < FTK_LORA_N_TARGETS; t++)
		if (o->targets & (1u << t))
			names[n++] = module_names[t];
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			const char *x = names[j];
			names[j] = names[j - 1];
			names[j - 1] = x;
		}
	for (int i = 0; i < n; i++)
		strbuf_addf(sb, "%s\n    \"%s\"", i ? "," : "", names[i]);
	strbuf_addstr(sb, n ? "\n  ],\n" : "],\n");
	strbuf_addstr(sb, "  \"task_type\": \"CAUSAL_LM\",\n  \"use_dora\": false,\n  \"use_rslora\": ");
	strbuf_addstr(sb, o->rslora ? "true" : "false");
	strbuf_addstr(sb, "\n}\n");
}

int ftk_adapter_save_model(const struct ftk_model *m, const char *base_model, const char *dir,
			   struct ftk_error *err)
{
	const struct ftk_lora_opts *o = ftk_model_lora_opts(m);
	size_t n = ftk_model_lora_count(m);
	if (!o || !n)
		return ftk_error_msg(err, FTK_EUSAGE, "the model has no LoRA parameters to save");
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		return ftk_error_set(err, FTK_EIO, dir, 0, NULL, "cannot create directory: %s",
				     strerror(errno));
	struct strbuf path = STRBUF_INIT, js = STRBUF_INIT;
	struct ftk_st_writer *w = ftk_st_writer_new();
	char name[160];
	int rc;
	ftk_st_writer_meta(w, "format", "pt");
	/* the parameters may be device memory: one copy to the host, written from there */
	const struct ftk_lora_tensor *last = ftk_model_lora_tensor(m, n - 1);
	float *host = xmalloc((last->offset + (size_t)last->rows * last->cols) * sizeof(float));
	ftk_model_lora_download(m, host);
	for (size_t i = 0; i < n; i++) {
		const struct ftk_lora_tensor *t = ftk_model_lora_tensor(m, i);
		int64_t shape[2] = { t->rows, t->cols };
		/* Our own name, not the model's: the file format is this module's
		 * promise, and the unit test checks the two agree. */
		ftk_adapter_tensor_name(name, sizeof(name), t->layer, t->target, t->is_b);
		ftk_st_writer_add(w, name, FTK_F32, 2, shape, host + t->offset);
	}
	strbuf_addf(&path, "%s/adapter_model.safetensors", dir);
	rc = ftk_st_writer_save(w, path.buf, err);
	if (rc < 0)
		goto out;
	ftk_adapter_config_json(&js, o, base_model);
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/adapter_config.json", dir);
	rc = write_file_atomic(path.buf, js.buf, js.len, err);
out:
	ftk_st_writer_free(w);
	free(host);
	strbuf_release(&path);
	strbuf_release(&js);
	return rc;
}

/* ---------------------------------------------------------------- loading */

/* A member that is absent, null, false, or an empty object or list. */
static int is_unset(const cJSON *v)
{
	return !v || cJSON_IsNull(v) || cJSON_IsFalse(v) ||
	       ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child);
}

static int parse_config(const char *path, struct ftk_adapter *a, struct ftk_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	cJSON *root = NULL;
	int rc = strbuf_read_file(&sb, path);
	if (rc < 0) {
		strbuf_release(&sb);
		return ftk_error_set(err, rc == -ENOENT ? FTK_ENOTFOUND : FTK_EIO, path, 0, NULL,
				     "cannot read: %s", strerror(-rc));
	}
	rc = ftk_json_parse_object(sb.buf, sb.len, &root, err);
	strbuf_release(&sb);
	if (rc < 0) {
		ftk_error_place(err, path, 0);
		return rc;
	}
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
	if (!cJSON_IsString(v)) {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, "peft_type", "missing or not a string");
		goto out;
	}
	if (strcmp(v->valuestring, "LORA")) {
		rc = ftk_error_set(err, FTK_EUNSUPPORTED, path, 0, "peft_type",
				   "adapter type '%s' is not supported (only LORA)", v->valuestring);
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "r");
	if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65536 ||
	    v->valuedouble != floor(v->valuedouble)) {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, "r", "missing or not a positive integer");
		goto out;
	}
	a->opts.rank = (int)v->valuedouble;
	v = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
	if (!cJSON_IsNumber(v)) {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, "lora_alpha", "missing or not a number");
		goto out;
	}
	a->opts.alpha = (float)v->valuedouble;
	v = cJSON_GetObjectItemCaseSensitive(root, "lora_dropout");
	a->opts.dropout = cJSON_IsNumber(v) ? (float)v->valuedouble : 0.0f;
	if (a->opts.dropout < 0 || a->opts.dropout >= 1) {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, "lora_dropout", "must be in [0, 1)");
		goto out;
	}
	a->opts.rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "use_rslora"));
	v = cJSON_GetObjectItemCaseSensitive(root, "bias");
	if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "none"))) {
		rc = ftk_error_set(err, FTK_EUNSUPPORTED, path, 0, "bias",
				   "trained biases are not supported (bias must be \"none\")");
		goto out;
	}
	static const char *const unsupported[] = {
		"use_dora", "fan_in_fan_out", "rank_pattern", "alpha_pattern", "modules_to_save",
		"layer_replication",
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(unsupported); i++)
		if (!is_unset(cJSON_GetObjectItemCaseSensitive(root, unsupported[i]))) {
			rc = ftk_error_set(err, FTK_EUNSUPPORTED, path, 0, unsupported[i],
					   "this adapter option is not supported");
			goto out;
		}
	v = cJSON_GetObjectItemCaseSensitive(root, "base_model_name_or_path");
	if (cJSON_IsString(v))
		snprintf(a->base_model, sizeof(a->base_model), "%s", v->valuestring);
	rc = 0;
out:
	cJSON_Delete(root);
	return rc;
}

/* Parse "base_model.model.model.layers.N.<block>.<module>.lora_X.weight". */
static int parse_name(const char *name, int *layer, int *target, int *is_b)
{
	static const char prefix[] = "base_model.model.model.layers.";
	if (strncmp(name, prefix, sizeof(prefix) - 1))
		return -1;
	const char *p = name + sizeof(prefix) - 1;
	char *end;
	if (*p < '0' || *p > '9')
		return -1;
	long l = strtol(p, &end, 10);
	if (*end != '.' || l > 100000)
		return -1;
	p = end + 1;
	for (int t = 0; t < FTK_LORA_N_TARGETS; t++) {
		const char *blk = block_name(t), *mod = module_names[t];
		size_t nb = strlen(blk), nm = strlen(mod);
		if (strncmp(p, blk, nb) || p[nb] != '.' || strncmp(p + nb + 1, mod, nm))
			continue;
		const char *q = p + nb + 1 + nm;
		if (!strcmp(q, ".lora_A.weight") || !strcmp(q, ".lora_B.weight")) {
			*layer = (int)l;
			*target = t;
			*is_b = q[6] == 'B';
			return 0;
		}
	}
	return -1;
}

int ftk_adapter_load(const char *dir, struct ftk_adapter **out, struct ftk_error *err)
{
	struct strbuf path = STRBUF_INIT;
	struct ftk_st *st = NULL;
	struct ftk_adapter *a = xcalloc(1, sizeof(*a));
	char name[160];
	int rc;

	*out = NULL;
	strbuf_addf(&path, "%s/adapter_config.json", dir);
	rc = parse_config(path.buf, a, err);
	if (rc < 0)
		goto out;
	strbuf_reset(&path);
	strbuf_addf(&path, "%s/adapter_model.safetensors", dir);
	rc = ftk_st_open(&st, path.buf, err);
	if (rc < 0)
		goto out;

	/* First pass: every name understood, shapes agree with r and across
	 * layers, which layers and targets there are. */
	int in[FTK_LORA_N_TARGETS] = { 0 }, outf[FTK_LORA_N_TARGETS] = { 0 };
	unsigned targets = 0;
	size_t n = ftk_st_count(st);
	for (size_t i = 0; i < n; i++) {
		const struct ftk_st_tensor *t = ftk_st_at(st, i);
		int l, tg, is_b;
		if (parse_name(t->name, &l, &tg, &is_b) < 0) {
			rc = ftk_error_set(err, FTK_EUNSUPPORTED, path.buf, 0, t->name,
					   "not a LoRA tensor of a known module (expected names like "
					   "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')");
			goto out;
		}
		if (t->ndim != 2 || t->shape[is_b ? 1 : 0] != a->opts.rank) {
			rc = ftk_error_set(err, FTK_EDATA, path.buf, 0, t->name,
					   "shape does not match r=%d from adapter_config.json",
					   a->opts.rank);
			goto out;
		}
		int feat = (int)t->shape[is_b ? 0 : 1];
		int *slot = is_b ? &outf[tg] : &in[tg];
		if (*slot && *slot != feat) {
			rc = ftk_error_set(err, FTK_EDATA, path.buf, 0, t->name,
					   "%s features %d differ from another layer's %d",
					   is_b ? "out" : "in", feat, *slot);
			goto out;
		}
		*slot = feat;
		targets |= 1u << tg;
		if (l + 1 > a->n_layers)
			a->n_layers = l + 1;
	}
	if (!targets) {
		rc = ftk_error_set(err, FTK_EDATA, path.buf, 0, NULL, "no LoRA tensors");
		goto out;
	}
	a->opts.targets = targets;

	/* Second pass, in model.h's order: every layer has A and B of every target. */
	size_t n_params = 0;
	for (int tg = 0; tg < FTK_LORA_N_TARGETS; tg++)
		if (targets & (1u << tg))
			n_params += (size_t)a->opts.rank * (in[tg] + outf[tg]);
	n_params *= (size_t)a->n_layers;
	a->n_params = n_params;
	a->data = xmalloc(n_params * sizeof(float) + 1);
	a->t = xcalloc(n + 1, sizeof(*a->t));
	float *w = a->data;
	for (int l = 0; l < a->n_layers; l++)
		for (int tg = 0; tg < FTK_LORA_N_TARGETS; tg++) {
			if (!(targets & (1u << tg)))
				continue;
			for (int is_b = 0; is_b < 2; is_b++) {
				ftk_adapter_tensor_name(name, sizeof(name), l, tg, is_b);
				const struct ftk_st_tensor *st_t = ftk_st_find(st, name);
				if (!st_t || a->n_tensors >= n) {
					rc = ftk_error_set(err, FTK_EDATA, path.buf, 0, name,
							   "missing tensor (every layer needs lora_A and "
							   "lora_B of every adapted module)");
					goto out;
				}
				struct ftk_adapter_tensor *t = &a->t[a->n_tensors++];
				t->layer = l;
				t->target = tg;
				t->is_b = is_b;
				t->rows = is_b ? outf[tg] : a->opts.rank;
				t->cols = is_b ? a->opts.rank : in[tg];
				t->data = w;
				w += (size_t)t->rows * t->cols;
				rc = ftk_st_to_f32(st_t, t->data, err);
				if (rc < 0) {
					ftk_error_set(err, rc, path.buf, 0, name, "unsupported dtype %s",
						      ftk_dtype_name(st_t->dtype));
					goto out;
				}
			}
		}
	*out = a;
	a = NULL;
	rc = 0;
out:
	ftk_adapter_free(a);
	ftk_st_close(st);
	strbuf_release(&path);
	return rc;
}

int ftk_adapter_apply(struct ftk_model *m, const struct ftk_adapter *a,
		      const struct ftk_lora_opts *train, struct ftk_error *err)
{
	const struct ftk_model_config *cfg = ftk_model_config(m);
	if (a->n_layers != cfg->n_layers)
		return ftk_error_msg(err, FTK_EMISMATCH, "adapter has %d layers, model has %d",
				     a->n_layers, cfg->n_layers);
	struct ftk_lora_opts o = a->opts;
	o.seed = train ? train->seed : 0;
	if (train)
		o.dropout = train->dropout;
	/* Check every shape before touching the model's LoRA. */
	for (size_t i = 0; i < a->n_tensors; i++) {
		const struct ftk_adapter_tensor *t = &a->t[i];
		int rows, cols;
		ftk_model_base_shape(m, t->target, &rows, &cols);
		int want_r = t->is_b ? rows : a->opts.rank, want_c = t->is_b ? a->opts.rank : cols;
		if (t->rows != want_r || t->cols != want_c)
			return ftk_error_msg(err, FTK_EMISMATCH,
					     "layers.%d.%s.%s.lora_%c: adapter has [%d, %d], model needs [%d, %d]",
					     t->layer, block_name(t->target), module_names[t->target],
					     t->is_b ? 'B' : 'A', t->rows, t->cols, want_r, want_c);
	}
	int rc = ftk_model_lora_init(m, &o, err);
	if (rc < 0)
		return rc;
	if (ftk_model_lora_count(m) != a->n_tensors)
		return ftk_error_msg(err, FTK_EMISMATCH, "adapter has %zu tensors, model made %zu",
				     a->n_tensors, ftk_model_lora_count(m));
	/* the parameters may be device memory: assembled on the host, one upload */
	size_t n;
	ftk_model_lora_flat(m, &n);
	float *host = xcalloc(n ? n : 1, sizeof(float));
	for (size_t i = 0; i < a->n_tensors; i++) {
		const struct ftk_lora_tensor *mt = ftk_model_lora_tensor(m, i);
		const struct ftk_adapter_tensor *t = &a->t[i];
		if (mt->layer != t->layer || mt->target != t->target || mt->is_b != t->is_b ||
		    mt->rows != t->rows || mt->cols != t->cols) {
			free(host);
			return ftk_error_msg(err, FTK_EMISMATCH,
					     "LoRA tensor %zu: the model's '%s' is not the adapter's", i,
					     mt->name);
		}
		memcpy(host + mt->offset, t->data, (size_t)t->rows * t->cols * sizeof(float));
	}
	ftk_model_lora_upload(m, host);
	free(host);
	return 0;
}
