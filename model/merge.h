/*
 * merge.h: fold a LoRA adapter into its base model and write a Hugging Face
 * model directory (ftk-merge).
 *
 * Each adapted projection becomes W' = W + scaling * B A, computed in float32
 * from the base as training saw it: with quant NF4 (the default, QLoRA) W is
 * the NF4-dequantized weight, so the merged model computes what the trained
 * model computed; with quant none W is the original weight.  Under NF4,
 * projections without an adapter are written dequantized too, for the same
 * reason.  Every other tensor (embedding, norms, biases, an untied head) is
 * copied.  The output holds model.safetensors (F32, or BF16/F16 on request),
 * config.json (torch_dtype set to match) and the tokenizer and generation
 * files found beside the base.
 *
 * Memory: every output tensor is held in memory until the file is written
 * (one safetensors file, no shards), so merging needs about the model's
 * size in the output dtype plus the loaded base.
 */
#ifndef FTK_MODEL_MERGE_H
#define FTK_MODEL_MERGE_H

#include "lib/err.h"
#include "model/backend.h"
#include "model/safetensors.h"

struct ftk_merge_opts {
	const char *model_dir;
	const char *adapter_dir;	/* NULL: write the base (dequantized under NF4) */
	const char *out_dir;		/* created; existing files of the same names are replaced */
	enum ftk_quant quant;		/* the base as the adapter was trained on it */
	enum ftk_dtype dtype;		/* FTK_F32, FTK_BF16 or FTK_F16 */
};

/*
 * Merge and write.  Returns 0, or the loader's errors (model, adapter: a
 * shape or layer count that does not fit is FTK_EMISMATCH), FTK_EUSAGE (a
 * dtype other than F32/BF16/F16), FTK_EIO (cannot create or write out_dir).
 * *n_merged (may be NULL) gets the number of projections that had an adapter.
 */
int ftk_merge(const struct ftk_merge_opts *o, int *n_merged, struct ftk_error *err);

#endif
