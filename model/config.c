/*
 * config.c: read config.json into struct ftk_model_config.
 *
 * The rule is to refuse rather than guess: a field we depend on that is
 * missing or has the wrong type, an architecture whose arithmetic we do not
 * implement, a head layout that does not divide, all stop here with the
 * file and the field named.  Optional fields get transformers' defaults
 * (num_key_value_heads = num_attention_heads, head_dim = hidden/heads
 * except Qwen3's 128, rope_theta 10000, rms_norm_eps 1e-6,
 * tie_word_embeddings false: LlamaConfig, MistralConfig, Qwen2Config and
 * Qwen3Config each override PretrainedConfig's true with false).
 */
#include "model/config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "lib/json.h"
#include "lib/strbuf.h"

static int get_int(const cJSON *o, const char *key, int *out, int required, const char *file,
		   struct ftk_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v || cJSON_IsNull(v)) {
		if (required)
			return ftk_error_set(err, FTK_EDATA, file, 0, key, "missing field '%s'", key);
		return 0;
	}
	if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble ||
	    v->valuedouble < 0 || v->valuedouble > 1e9)
		return ftk_error_set(err, FTK_EDATA, file, 0, key,
				     "field '%s' must be a non-negative integer", key);
	*out = (int)v->valuedouble;
	return 1;
}

static int get_float(const cJSON *o, const char *key, float *out, const char *file,
		     struct ftk_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v))
		return ftk_error_set(err, FTK_EDATA, file, 0, key, "field '%s' must be a number", key);
	*out = (float)v->valuedouble;
	return 1;
}

static int get_bool(const cJSON *o, const char *key, int *out, const char *file,
		    struct ftk_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsBool(v))
		return ftk_error_set(err, FTK_EDATA, file, 0, key, "field '%s' must be true or false", key);
	*out = cJSON_IsTrue(v);
	return 1;
}

/*
 * The families, from transformers' configuration_<family>.py: Qwen2's
 * attention has q/k/v biases always and no attention_bias field; Llama's and
 * Qwen3's attention_bias puts a bias on q/k/v and o_proj; Mistral's
 * attention has no biases.  Every one defaults tie_word_embeddings to false;
 * Qwen3Config alone defaults head_dim to 128.
 */
static const struct ftk_arch_info archs[] = {
	/* model_type  qkv_bias  attention_bias  qk_norm  tie_default  head_dim_default */
	{ "llama", 0, 1, 0, 0, 0 },
	{ "mistral", 0, 0, 0, 0, 0 },
	{ "qwen2", 1, 0, 0, 0, 0 },
	{ "qwen3", 0, 1, 1, 0, 128 },
};

const struct ftk_arch_info *ftk_arch_find(const char *model_type)
{
	for (size_t i = 0; i < FTK_ARRAY_SIZE(archs); i++)
		if (!strcmp(archs[i].model_type, model_type))
			return &archs[i];
	return NULL;
}

#define TRY(x)                       \
	do {                         \
		if ((rc = (x)) < 0)  \
			goto out;    \
	} while (0)

int ftk_config_load(const char *path, struct ftk_model_config *cfg, struct ftk_error *err)
{
	char file[4096];
	size_t pl = strlen(path);
	struct stat st;
	int is_file = stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
	if (is_file || (pl >= 5 && !strcmp(path + pl - 5, ".json")))
		snprintf(file, sizeof(file), "%s", path);
	else
		snprintf(file, sizeof(file), "%s/config.json", path);
	memset(cfg, 0, sizeof(*cfg));
	struct strbuf sb = STRBUF_INIT;
	int r = strbuf_read_file(&sb, file);
	if (r < 0) {
		strbuf_release(&sb);
		return ftk_error_set(err, r == -ENOENT ? FTK_ENOTFOUND : FTK_EIO, file, 0, NULL,
				     "cannot read: %s", strerror(-r));
	}
	cJSON *o = NULL;
	struct ftk_error je;
	int rc = ftk_json_parse_object(sb.buf, sb.len, &o, &je);
	strbuf_release(&sb);
	/* a model is a directory; a .json given in its place is most often not
	 * a config at all (a dataset, a tokenizer): say what --model takes */
	int given_file = strcmp(file, path) == 0;
	if (rc < 0 && given_file)
		return ftk_error_set(err, FTK_EDATA, file, 0, NULL,
				     "not a model config (%s): give the model's directory, the "
				     "Hugging Face folder with config.json, model.safetensors and "
				     "tokenizer.json", je.msg);
	if (rc < 0)
		return ftk_error_set(err, FTK_EDATA, file, 0, NULL, je.offset >= 0 ? "%s (at byte %ld)" : "%s",
				     je.msg, je.offset);

	const char *mt = ftk_json_get_str(o, "model_type");
	if (!mt && given_file) {
		rc = ftk_error_set(err, FTK_EDATA, file, 0, "model_type",
				   "not a model config (no 'model_type'): give the model's directory, "
				   "the Hugging Face folder with config.json, model.safetensors and "
				   "tokenizer.json");
		goto out;
	}
	if (!mt) {
		rc = ftk_error_set(err, FTK_EDATA, file, 0, "model_type", "missing field 'model_type'");
		goto out;
	}
	snprintf(cfg->model_type, sizeof(cfg->model_type), "%s", mt);
	cfg->arch = ftk_arch_find(mt);
	if (!cfg->arch) {
		struct strbuf names = STRBUF_INIT;
		for (size_t i = 0; i < FTK_ARRAY_SIZE(archs); i++)
			strbuf_addf(&names, "%s%s", i ? ", " : "", archs[i].model_type);
		rc = ftk_error_set(err, FTK_EUNSUPPORTED, file, 0, "model_type",
				   "unsupported architecture '%s' (supported: %s)", mt, names.buf);
		strbuf_release(&names);
		goto out;
	}
	const char *moe = "num_local_experts";	/* Mixtral's name; Qwen-MoE's is num_experts */
	if (!cJSON_GetObjectItemCaseSensitive(o, moe))
		moe = "num_experts";
	if (cJSON_GetObjectItemCaseSensitive(o, moe)) {
		rc = ftk_error_set(err, FTK_EUNSUPPORTED, file, 0, moe,
				   "mixture-of-experts models are not supported");
		goto out;
	}
	const char *act = ftk_json_get_str(o, "hidden_act");
	if (act && strcmp(act, "silu")) {
		rc = ftk_error_set(err, FTK_EUNSUPPORTED, file, 0, "hidden_act",
				   "unsupported activation '%s' (only silu)", act);
		goto out;
	}
	TRY(get_int(o, "hidden_size", &cfg->dim, 1, file, err));
	TRY(get_int(o, "intermediate_size", &cfg->hidden_dim, 1, file, err));
	TRY(get_int(o, "num_hidden_layers", &cfg->n_layers, 1, file, err));
	TRY(get_int(o, "num_attention_heads", &cfg->n_heads, 1, file, err));
	TRY(get_int(o, "vocab_size", &cfg->vocab_size, 1, file, err));
	cfg->n_kv_heads = cfg->n_heads;
	TRY(get_int(o, "num_key_value_heads", &cfg->n_kv_heads, 0, file, err));
	cfg->max_pos = 2048;
	TRY(get_int(o, "max_position_embeddings", &cfg->max_pos, 0, file, err));
	if (!cfg->dim || !cfg->hidden_dim || !cfg->n_layers || !cfg->n_heads || !cfg->n_kv_heads ||
	    !cfg->vocab_size || !cfg->max_pos) {
		rc = ftk_error_set(err, FTK_EDATA, file, 0, NULL,
				   "sizes must be positive (hidden_size, intermediate_size, num_hidden_layers, heads, vocab_size, max_position_embeddings)");
		goto out;
	}
	if (cfg->n_heads % cfg->n_kv_heads) {
		rc = ftk_error_set(err, FTK_EDATA, file, 0, "num_key_value_heads",
				   "num_attention_heads %d is not a multiple of num_key_value_heads %d",
				   cfg->n_heads, cfg->n_kv_heads);
		goto out;
	}
	cfg->head_dim = cfg->arch->head_dim_default ? cfg->arch->head_dim_default
						    : cfg->dim / cfg->n_heads;
	TRY(get_int(o, "head_dim", &cfg->head_dim, 0, file, err));
	if (rc == 0 && !cfg->arch->head_dim_default && cfg->dim % cfg->n_heads) {
		rc = ftk_error_set(err, FTK_EDATA, file, 0, "hidden_size",
				   "hidden_size %d is not a multiple of num_attention_heads %d", cfg->dim,
				   cfg->n_heads);
		goto out;
	}
	if (cfg->head_dim <= 0 || cfg->head_dim % 2) {
		rc = ftk_error_set(err, FTK_EDATA, file, 0, "head_dim", "head_dim %d must be even and positive",
				   cfg->head_dim);
		goto out;
	}
	cfg->norm_eps = 1e-6f;
	TRY(get_float(o, "rms_norm_eps", &cfg->norm_eps, file, err));
	cfg->rope_theta = 10000.0f;
	TRY(get_float(o, "rope_theta", &cfg->rope_theta, file, err));
	cfg->tie_embeddings = cfg->arch->tie_default;
	TRY(get_bool(o, "tie_word_embeddings", &cfg->tie_embeddings, file, err));
	cfg->qkv_bias = cfg->arch->qkv_bias;
	int attention_bias = 0;
	if (cfg->arch->attention_bias)
		TRY(get_bool(o, "attention_bias", &attention_bias, file, err));
	if (attention_bias) {
		/* q/k/v and o_proj: the model has no o_proj bias, and dropping it would be silent */
		rc = ftk_error_set(err, FTK_EUNSUPPORTED, file, 0, "attention_bias",
				   "attention_bias true (an o_proj bias) is not supported");
		goto out;
	}
	cfg->qk_norm = cfg->arch->qk_norm;
	int mlp_bias = 0;
	TRY(get_bool(o, "mlp_bias", &mlp_bias, file, err));
	if (mlp_bias) {
		rc = ftk_error_set(err, FTK_EUNSUPPORTED, file, 0, "mlp_bias", "mlp_bias true is not supported");
		goto out;
	}

	const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
	if (rs && !cJSON_IsNull(rs)) {
		const char *type = ftk_json_get_str(rs, "rope_type");
		if (!type)
			type = ftk_json_get_str(rs, "type");
		if (!type || (strcmp(type, "llama3") && strcmp(type, "default"))) {
			rc = ftk_error_set(err, FTK_EUNSUPPORTED, file, 0, "rope_scaling.rope_type",
					   "unsupported RoPE scaling '%s' (supported: llama3, default)",
					   type ? type : "(none)");
			goto out;
		}
		if (!strcmp(type, "llama3")) {
			cfg->rope_llama3 = 1;
			if (get_float(rs, "factor", &cfg->rope_factor, file, err) <= 0 ||
			    get_float(rs, "low_freq_factor", &cfg->rope_low_freq, file, err) <= 0 ||
			    get_float(rs, "high_freq_factor", &cfg->rope_high_freq, file, err) <= 0 ||
			    get_int(rs, "original_max_position_embeddings", &cfg->rope_orig_max_pos, 1, file,
				    err) <= 0 ||
			    cfg->rope_factor <= 0 || cfg->rope_high_freq <= cfg->rope_low_freq) {
				rc = ftk_error_set(err, FTK_EDATA, file, 0, "rope_scaling",
						   "llama3 rope_scaling needs factor > 0, low_freq_factor < high_freq_factor and original_max_position_embeddings");
				goto out;
			}
		}
	}

	cfg->bos_id = -1;
	TRY(get_int(o, "bos_token_id", &cfg->bos_id, 0, file, err));
	const cJSON *eos = cJSON_GetObjectItemCaseSensitive(o, "eos_token_id");
	if (cJSON_IsNumber(eos)) {
		cfg->eos_ids[cfg->n_eos++] = (int)eos->valuedouble;
	} else if (cJSON_IsArray(eos)) {
		const cJSON *x;
		cJSON_ArrayForEach(x, eos) {
			if (cJSON_IsNumber(x) && cfg->n_eos < FTK_MAX_EOS)
				cfg->eos_ids[cfg->n_eos++] = (int)x->valuedouble;
		}
	}
	rc = 0;
out:
	cJSON_Delete(o);
	return rc < 0 ? rc : 0;
}

long long ftk_config_n_params(const struct ftk_model_config *c)
{
	long long C = c->dim, H = c->hidden_dim, hd = c->head_dim;
	long long q = C * c->n_heads * hd, kv = C * c->n_kv_heads * hd;
	long long layer = q + 2 * kv + q + 3 * C * H + 2 * C;
	if (c->qkv_bias)
		layer += (c->n_heads + 2 * c->n_kv_heads) * hd;
	if (c->qk_norm)
		layer += 2 * hd;
	long long n = c->n_layers * layer + (long long)c->vocab_size * C + C;
	if (!c->tie_embeddings)
		n += (long long)c->vocab_size * C;
	return n;
}
