/*
 * adapter.h: LoRA adapters in PEFT's layout, on disk and in memory.
 *
 * An adapter directory is what Hugging Face PEFT writes with
 * save_pretrained(), so that PEFT, vLLM and llama.cpp's converters load ours
 * and we load theirs:
 *
 *   adapter_config.json        {"peft_type":"LORA","r":8,"lora_alpha":16,
 *                               "target_modules":["q_proj","v_proj"],
 *                               "lora_dropout":0.05,"use_rslora":false,
 *                               "bias":"none","task_type":"CAUSAL_LM",
 *                               "base_model_name_or_path":"...", ...}
 *   adapter_model.safetensors  base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
 *                              (r, in_features) and ...lora_B.weight (out_features, r),
 *                              float32, metadata {"format":"pt"}
 *
 * Attention targets (q, k, v, o) live under self_attn, MLP targets (gate,
 * up, down) under mlp: the module names of Hugging Face's Llama, Mistral and
 * Qwen implementations.  The adapted weight is W + scaling * B A (model.h).
 *
 * Two ways in and one way out:
 *   ftk_adapter_load()      a directory -> a struct ftk_adapter in memory
 *                           (generate, merge, serve, --init-adapter);
 *   ftk_adapter_apply()     a loaded adapter -> a model's LoRA parameters;
 *   ftk_adapter_save_model() a model's LoRA parameters -> a directory.
 */
#ifndef FTK_MODEL_ADAPTER_H
#define FTK_MODEL_ADAPTER_H

#include <stddef.h>
#include <stdint.h>
#include "lib/err.h"
#include "model/model.h"

/* One lora_A or lora_B matrix of a loaded adapter. */
struct ftk_adapter_tensor {
	int layer;
	enum ftk_lora_target target;
	int is_b;		/* 0: lora_A (r, in); 1: lora_B (out, r) */
	int rows, cols;
	float *data;		/* (rows, cols), points into the adapter's one array */
};

struct ftk_adapter {
	struct ftk_lora_opts opts;	/* targets, rank, alpha, rslora, dropout; seed 0 */
	char base_model[1024];		/* base_model_name_or_path, "" when null */
	int n_layers;			/* 1 + the highest layer index present */
	size_t n_tensors;
	struct ftk_adapter_tensor *t;	/* sorted by (layer, target, A before B): model.h's order */
	float *data;			/* every tensor's floats, back to back */
	size_t n_params;
};

/*
 * Read an adapter directory written by us or by PEFT.  Tensors may be F32,
 * F16 or BF16 (converted to float32).  Refused with FTK_EUNSUPPORTED: a
 * peft_type other than LORA, use_dora, bias other than "none",
 * fan_in_fan_out, non-empty rank_pattern / alpha_pattern, modules_to_save,
 * layer_replication, and any tensor that is not a lora_A / lora_B of one of
 * the seven known modules.  Refused with FTK_EDATA: a missing file or field,
 * a shape that disagrees with r or with another layer, an A without its B, a
 * layer without the targets the others have.  FTK_ENOTFOUND when the
 * directory has no adapter_config.json.  Returns 0 and *out (caller frees
 * with ftk_adapter_free), or the error naming the file and the field or
 * tensor.
 */
int ftk_adapter_load(const char *dir, struct ftk_adapter **out, struct ftk_error *err);
void ftk_adapter_free(struct ftk_adapter *a);

/* The tensor for (layer, target, A or B), or NULL.  Borrowed. */
const struct ftk_adapter_tensor *ftk_adapter_find(const struct ftk_adapter *a, int layer,
						  enum ftk_lora_target target, int is_b);

/* PEFT's scaling of a loaded adapter (alpha / r, or alpha / sqrt(r)). */
float ftk_adapter_scaling(const struct ftk_adapter *a);

/*
 * Give a model this adapter's LoRA: ftk_model_lora_init() with the adapter's
 * targets, rank, alpha, rsLoRA, and the dropout and seed from `train`
 * (NULL: the adapter's dropout, seed 0), then copy every A and B in.
 * Returns 0, or FTK_EMISMATCH when the adapter's layers or shapes do not fit
 * the model ("adapter has 4 layers, model has 5",
 * "layers.0.self_attn.q_proj.lora_A: adapter has [8, 64], model [8, 32]").
 */
int ftk_adapter_apply(struct ftk_model *m, const struct ftk_adapter *a,
		      const struct ftk_lora_opts *train, struct ftk_error *err);

/*
 * Write the model's LoRA parameters as a PEFT adapter into dir (created if
 * needed): adapter_model.safetensors first, then adapter_config.json, each
 * through a temporary file, fsync and rename, so a directory with a config
 * always has its tensors.  base_model goes into base_model_name_or_path
 * (NULL: null).  Returns 0, FTK_EUSAGE (the model has no LoRA) or FTK_EIO.
 */
int ftk_adapter_save_model(const struct ftk_model *m, const char *base_model, const char *dir,
			   struct ftk_error *err);

/*
 * The PEFT tensor name for (layer, target, A or B) into buf:
 * "base_model.model.model.layers.3.mlp.up_proj.lora_B.weight".
 */
void ftk_adapter_tensor_name(char *buf, size_t n, int layer, enum ftk_lora_target target,
			     int is_b);

/*
 * adapter_config.json's text for these options, as PEFT writes it (keys
 * sorted, two-space indent).  Appended to sb.  For tests and ftk-merge.
 */
struct strbuf;
void ftk_adapter_config_json(struct strbuf *sb, const struct ftk_lora_opts *o,
			     const char *base_model);

#endif
