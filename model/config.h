/*
 * config.h: a Hugging Face config.json, reduced to what the trainer needs.
 *
 * Every supported model is a Llama-shaped decoder: embedding, N blocks of
 * (RMSNorm, GQA attention with RoPE, RMSNorm, SwiGLU MLP), a final RMSNorm
 * and an output head.  The families differ only in small switches, which is
 * all this struct records.  The families are one table (struct
 * ftk_arch_info, in config.c):
 *
 *   llama    Llama 2 / 3 / 3.x (rope_scaling {"rope_type":"llama3"}), SmolLM
 *   mistral  as llama (sliding_window is ignored: we never run past it on CPU)
 *   qwen2    q/k/v projections carry a bias
 *   qwen3    RMSNorm over each head of q and k before RoPE (q_norm, k_norm)
 *
 * Everything that reads a config.json goes through ftk_config_load: the
 * model, the memory plan (trainer/plan.c) and the cost estimate
 * (ledger/estimate.c), so they agree on every default.  Anything else (an
 * unknown model_type, hidden_act other than silu, a RoPE scaling type we
 * do not implement, a head count that does not divide, biases or experts
 * the model has no arithmetic for) is refused here, before a byte of
 * weights is read, with a message naming the file and the field.
 */
#ifndef FTK_MODEL_CONFIG_H
#define FTK_MODEL_CONFIG_H

#include "lib/err.h"

/*
 * One model family.  Adding a Llama-shaped family is one row in config.c's
 * table; a family that needs new arithmetic also adds its switch to struct
 * ftk_model_config and implements it (docs/HACKING.md, "A new model
 * architecture").  The defaults are transformers' (its configuration_<family>.py)
 * for a config.json that omits the field.
 */
struct ftk_arch_info {
	const char *model_type;	/* config.json's model_type */
	int qkv_bias;		/* q/k/v projections always carry a bias (Qwen2) */
	int attention_bias;	/* reads attention_bias: a bias on q/k/v and o_proj (Llama, Qwen3) */
	int qk_norm;		/* RMSNorm over each head of q and k (Qwen3) */
	int tie_default;	/* tie_word_embeddings when omitted */
	int head_dim_default;	/* head_dim when omitted; 0: hidden_size / num_attention_heads */
};

/* The family of model_type, or NULL when ftk does not implement it. */
const struct ftk_arch_info *ftk_arch_find(const char *model_type);

#define FTK_MAX_EOS 8

struct ftk_model_config {
	const struct ftk_arch_info *arch;	/* the family's row */
	char model_type[32];	/* as written in config.json ("llama", "qwen2", ...) */
	int dim;		/* hidden_size */
	int hidden_dim;		/* intermediate_size */
	int n_layers;		/* num_hidden_layers */
	int n_heads;		/* num_attention_heads */
	int n_kv_heads;		/* num_key_value_heads (defaults to n_heads) */
	int head_dim;		/* head_dim (the family's default, or dim / n_heads) */
	int vocab_size;
	int max_pos;		/* max_position_embeddings */
	float norm_eps;		/* rms_norm_eps */
	float rope_theta;
	int tie_embeddings;	/* tie_word_embeddings: the head is embed_tokens */
	int qkv_bias;		/* qwen2 */
	int qk_norm;		/* qwen3 */
	/* rope_scaling {"rope_type":"llama3", factor, low_freq_factor,
	 * high_freq_factor, original_max_position_embeddings}; 0 when absent */
	int rope_llama3;
	float rope_factor, rope_low_freq, rope_high_freq;
	int rope_orig_max_pos;
	int bos_id;		/* -1 when config.json has none */
	int eos_ids[FTK_MAX_EOS];	/* eos_token_id (an int or a list) */
	int n_eos;
};

/*
 * Read and check dir/config.json (path may also name the file itself, under
 * any name).
 * Returns 0 and fills *cfg, or FTK_ENOTFOUND (no file), FTK_EDATA (bad
 * JSON, a missing or ill-typed field), FTK_EUNSUPPORTED (an architecture,
 * activation or RoPE scaling this trainer does not implement); err names
 * the file and field.
 */
int ftk_config_load(const char *path, struct ftk_model_config *cfg, struct ftk_error *err);

/* Number of parameters of the full-precision model (embedding and head counted once when tied). */
long long ftk_config_n_params(const struct ftk_model_config *cfg);

#endif
