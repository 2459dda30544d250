/*
 * model.h: a Llama-family decoder with LoRA adapters, forward and backward.
 *
 * What it holds:
 *   - the frozen base: token embedding (V, C), per layer two RMSNorm weights,
 *     q/k/v/o and gate/up/down projections (NF4 or float32), optional q/k/v
 *     biases (Qwen2) and q/k norms (Qwen3), the final norm and the head (the
 *     embedding when tied).  Projections are quantized with --quant nf4;
 *     embedding, norms, biases and the head stay float32, as in QLoRA.
 *   - LoRA adapters on any of the seven projections: for a projection
 *     W (out, in), A (r, in) and B (out, r), and the layer computes
 *         y = x W^T + scaling * (dropout(x) A^T) B^T
 *     with scaling = alpha / r, or alpha / sqrt(r) with rsLoRA.  A starts
 *     Kaiming-uniform (bound 1/sqrt(in), PEFT's kaiming_uniform_(a=sqrt(5)))
 *     and B at zero, from our own seeded generator (not torch's).  All LoRA
 *     parameters live in one float array, their gradients in another of the
 *     same layout, so an optimizer can walk them as flat vectors.
 *   - activations for one micro-batch, allocated for the largest (B, T) seen.
 *
 * Training contract.  A batch is B rows of T token ids.  mask follows
 * lib/shard.h: mask[b*T+t] = 1 makes ids[b*T+t] a target, i.e. the loss at
 * position t-1 (predicting that token) counts.  doc, when given, numbers the
 * documents packed into a row: positions attend only to earlier positions of
 * the same document, RoPE positions restart at 0 at each document's first
 * token, and no loss is taken across a document boundary.
 * ftk_model_forward_backward() returns the *sum* of the per-token losses and
 * adds d(sum / norm)/dparam to the LoRA gradients, where norm is the number
 * of targets in the whole optimizer step (all accumulation micro-batches):
 * the caller counts them first with ftk_batch_count_targets().  So k
 * micro-batches with the same norm give exactly the gradient of one batch.
 *
 * Dropout (when LoRA dropout > 0) draws its masks from a counter-based
 * generator: mask bits are a hash of (seed, step counter, layer, target,
 * element), so recomputation under gradient checkpointing sees the same
 * masks and the whole state is two integers (ftk_model_rng_get/set), which
 * checkpoints save.  The counter advances once per forward_backward call.
 *
 * Gradient checkpointing (ftk_model_set_checkpointing): only each layer's
 * input is kept; the backward pass recomputes one layer's forward at a time.
 * Activation memory then is O(L * B*T*C) + one layer's worth instead of
 * O(L * one layer's worth).
 *
 * Errors are values (lib/err.h); nothing here prints.
 */
#ifndef FTK_MODEL_MODEL_H
#define FTK_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "lib/err.h"
#include "model/backend.h"
#include "model/config.h"

struct ftk_model;

struct ftk_load_opts {
	enum ftk_quant quant;			/* FTK_QUANT_NF4 (QLoRA) or FTK_QUANT_NONE */
	/*
	 * The instance to compute on, borrowed (free it after the model); NULL:
	 * a CPU instance of the model's own, freed with its weights.  The
	 * model sets its thread count (threads) and precision
	 * (ftk_model_set_precision), so models that are to differ in either
	 * need instances of their own.
	 */
	struct ftk_backend *backend;
	int threads;				/* 0: all cores */
	int max_seq;				/* 0: config's max_pos; longer batches are refused */
};

/*
 * Load a Hugging Face model directory (config.json, model.safetensors or the
 * sharded index).  The config, every tensor's presence, dtype and shape are
 * checked before anything big is allocated.  Returns 0 and *out (free with
 * ftk_model_free), or FTK_ENOTFOUND (no such dir, missing tensor),
 * FTK_EMISMATCH (wrong shape), FTK_EUNSUPPORTED (architecture, dtype),
 * FTK_EDATA/FTK_EIO; err names the file and tensor.
 */
int ftk_model_load(struct ftk_model **out, const char *dir, const struct ftk_load_opts *opts,
		   struct ftk_error *err);
void ftk_model_free(struct ftk_model *m);

/*
 * Another model on src's weights, for serving several requests at once (one
 * model per worker thread): the base tensors (NF4 or float32, with any
 * backend copies) and the LoRA parameters are shared, not copied, and freed
 * with the last model that uses them; the new model's activations, scratch
 * buffers and KV cache are its own (allocated as it first runs).  Settings
 * (attention, checkpointing, head chunk, max_seq) are copied.  Models that
 * share weights may run ftk_model_forward and ftk_model_decode on different
 * threads at once: those read the weights only.  While shared, neither may
 * train or change its LoRA parameters (forward_backward, lora_init and so
 * ftk_adapter_apply refuse with FTK_EUSAGE); writing through
 * ftk_model_lora_upload then would change every sharer's answers.
 * Returns 0 and *out (free with ftk_model_free; src stays usable and may be
 * freed first).
 */
int ftk_model_share(struct ftk_model **out, struct ftk_model *src, struct ftk_error *err);
/* How many models use m's weights now (1: m alone). */
int ftk_model_shared_count(const struct ftk_model *m);
/* The identity of m's weights: equal for two models exactly when they share them. */
const void *ftk_model_weights_id(const struct ftk_model *m);

const struct ftk_model_config *ftk_model_config(const struct ftk_model *m);
const char *ftk_model_dir(const struct ftk_model *m);	/* borrowed */
/* The backend instance the model computes on (never NULL; borrowed). */
struct ftk_backend *ftk_model_backend(const struct ftk_model *m);
/* Bytes of the base weights as loaded (NF4 or float32). */
size_t ftk_model_base_bytes(const struct ftk_model *m);

/* ---------------------------------------------------------------- LoRA */

enum ftk_lora_target {
	FTK_LORA_Q = 0, FTK_LORA_K, FTK_LORA_V, FTK_LORA_O,
	FTK_LORA_GATE, FTK_LORA_UP, FTK_LORA_DOWN,
	FTK_LORA_N_TARGETS
};
#define FTK_LORA_ALL ((1u << FTK_LORA_N_TARGETS) - 1)

/* "q_proj", "k_proj", ..., "down_proj": PEFT's target_modules names. */
const char *ftk_lora_target_name(enum ftk_lora_target t);

/*
 * Parse a --targets list: comma-separated q,k,v,o,gate,up,down (or the PEFT
 * names q_proj, ...), or "all".  Returns 0 and a bit mask (1 << target), or
 * FTK_EUSAGE naming the unknown entry (*mask is then left unchanged).
 */
int ftk_lora_parse_targets(const char *s, unsigned *mask, struct ftk_error *err);

struct ftk_lora_opts {
	unsigned targets;	/* bit mask of 1 << ftk_lora_target */
	int rank;		/* r >= 1 */
	float alpha;		/* lora_alpha */
	int rslora;		/* scaling alpha/sqrt(r) instead of alpha/r */
	float dropout;		/* in [0, 1) */
	uint64_t seed;		/* initialization and dropout */
};

/* alpha / r, or alpha / sqrt(r) with rsLoRA. */
float ftk_lora_scaling(const struct ftk_lora_opts *o);

/*
 * Create (or re-create) the LoRA parameters and their gradients: A
 * Kaiming-uniform from seed, B zero, gradients zero.  Returns 0 or
 * FTK_EUSAGE (rank < 1, no targets, dropout out of range).
 */
int ftk_model_lora_init(struct ftk_model *m, const struct ftk_lora_opts *o, struct ftk_error *err);
/* The options the adapters were created with, or NULL when there are none. */
const struct ftk_lora_opts *ftk_model_lora_opts(const struct ftk_model *m);

/*
 * One LoRA tensor; data and grad point into the model's two flat arrays,
 * which are backend memory: device memory on CUDA, so host code never
 * dereferences them (it indexes a downloaded copy with offset).
 */
struct ftk_lora_tensor {
	char name[128];	/* PEFT name: base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight */
	int layer;
	enum ftk_lora_target target;
	int is_b;	/* 0: lora_A (rank, in); 1: lora_B (out, rank) */
	int rows, cols;
	float *data;	/* (rows, cols), backend memory: for backend ops only */
	float *grad;	/* (rows, cols), backend memory */
	size_t offset;	/* index of data[0] in the flat parameter array */
};

/*
 * The LoRA tensors in a fixed order (layer, then q,k,v,o,gate,up,down, then
 * A before B), and the flat arrays they point into.  Borrowed from the model;
 * valid until the next ftk_model_lora_init or ftk_model_free.  The flat
 * arrays are backend memory, for the backend's ops (the optimizer's sumsq,
 * scale, adamw; NCCL): host code copies them with the functions below.
 */
size_t ftk_model_lora_count(const struct ftk_model *m);
const struct ftk_lora_tensor *ftk_model_lora_tensor(const struct ftk_model *m, size_t i);
/* Find a LoRA tensor by its PEFT name (NULL when absent). */
const struct ftk_lora_tensor *ftk_model_lora_find(const struct ftk_model *m, const char *name);
float *ftk_model_lora_flat(struct ftk_model *m, size_t *n);	/* n floats */
float *ftk_model_lora_grad_flat(struct ftk_model *m, size_t *n);	/* n floats, same layout */
/*
 * The flat LoRA parameters (ftk_model_lora_flat's n floats; tensor i at
 * ftk_model_lora_tensor(m, i)->offset) copied to or from host memory, after
 * every queued op: how code outside the backend ops reads and writes them
 * (adapter files, checkpoints, initialisation), so that the arrays can live
 * in device memory (docs/gpu.md, issue 23.9).  On the CPU a memcpy.
 */
void ftk_model_lora_download(const struct ftk_model *m, float *host);
void ftk_model_lora_upload(struct ftk_model *m, const float *host);
/* The flat gradients (same layout) copied to host memory, after every queued op. */
void ftk_model_lora_grad_download(const struct ftk_model *m, float *host);
void ftk_model_zero_grad(struct ftk_model *m);

/*
 * Rows of logits the head computes at a time for vocabulary V and M rows:
 * about 16 MiB of logits on the CPU, 256 MiB on a GPU (gpu != 0: fewer,
 * larger products), at least 64 rows, at most M.  plan.c counts the same.
 */
int ftk_model_head_chunk(int V, int M, int gpu);

/* Dropout generator state (two integers), to save with a checkpoint. */
struct ftk_model_rng {
	uint64_t seed;
	uint64_t counter;
};
void ftk_model_rng_get(const struct ftk_model *m, struct ftk_model_rng *r);
void ftk_model_rng_set(struct ftk_model *m, const struct ftk_model_rng *r);

/* ---------------------------------------------------------------- batches */

struct ftk_batch {
	int B, T;
	const uint32_t *ids;	/* (B, T) token ids */
	const uint8_t *mask;	/* (B, T) mask[i] = 1: ids[i] is a target; NULL: every token but each document's first */
	const uint32_t *doc;	/* (B, T) document number of each position, or NULL (one document per row) */
};

/* Number of positions whose loss counts (the normaliser of one batch). */
long ftk_batch_count_targets(const struct ftk_batch *b);

/*
 * Rows of logits held at once (head and cross-entropy run chunk by chunk):
 * 0 (the default) picks about 16 MiB of logits, at least 64 rows.  Smaller
 * saves memory for large vocabularies; the results do not depend on it.
 */
void ftk_model_set_head_chunk(struct ftk_model *m, int rows);

/* Gradient checkpointing per layer: 1 on, 0 off (the default). */
void ftk_model_set_checkpointing(struct ftk_model *m, int on);

/*
 * Precision of the matrix products (enum ftk_precision, backend.h): fp32
 * (the default) or bf16 operands with fp32 accumulation.  Weights, LoRA
 * parameters, gradients and activations stay float32 either way.  It is the
 * backend instance's mode (set_precision), so it holds for every model on
 * that instance (and those sharing m's weights), not for models on other
 * instances.  Returns 0, or FTK_EUNSUPPORTED when the backend cannot
 * compute that way.
 */
int ftk_model_set_precision(struct ftk_model *m, int precision, struct ftk_error *err);

/* "fp32" or "bf16"; NULL for anything else. */
const char *ftk_precision_name(int precision);
/* The precision named s ("fp32", "bf16"), or -1. */
int ftk_precision_parse(const char *s);

/*
 * How attention keeps what its backward pass needs (--attention, issue 9).
 * FULL saves each layer's softmax probabilities (B, NH, T, T): memory
 * O(T^2) per head.  FLASH saves only each query row's log-sum-exp (B, NH,
 * T) and recomputes the probabilities tile by tile in the backward pass
 * (backend.h's attn_fwd_flash / attn_bwd_flash): memory O(T), about one
 * more Q K^T product of work.  AUTO (the default) uses FLASH when one
 * layer's probabilities, B x NH x T x T floats, would take more than
 * FTK_ATTN_AUTO_BYTES (64 MiB: e.g. one row with 32 heads from T 725 on,
 * 8 rows with 8 heads from T 513 on), and FULL below, where they are small and
 * the saved probabilities spare the backward pass a recomputation.  Both
 * give the same numbers up to float rounding (about 1e-7 relative).
 */
enum ftk_attention { FTK_ATTN_AUTO = 0, FTK_ATTN_FULL = 1, FTK_ATTN_FLASH = 2 };
#define FTK_ATTN_AUTO_BYTES ((size_t)64 << 20)

/* "auto", "full", "flash". */
const char *ftk_attention_name(enum ftk_attention a);
/* Parse one of those names into *a: 0, or FTK_EUSAGE with a message. */
int ftk_attention_parse(const char *s, enum ftk_attention *a, struct ftk_error *err);
/*
 * Whether mode a runs flash attention for micro-batches of B rows of T
 * positions with NH heads of head_dim hd: FLASH yes, FULL no, AUTO by the
 * size rule above; never when hd > FTK_FLASH_MAX_HD (the model refuses
 * FLASH then).  The memory plan uses the same rule.
 */
int ftk_attention_flash(enum ftk_attention a, int B, int T, int NH, int hd);
/*
 * Choose the attention path (FTK_ATTN_AUTO until called).  Returns 0, or
 * FTK_EUSAGE for FLASH when the backend has no flash ops or head_dim is
 * beyond FTK_FLASH_MAX_HD (AUTO then falls back to FULL silently).
 */
int ftk_model_set_attention(struct ftk_model *m, enum ftk_attention a, struct ftk_error *err);

/*
 * One training micro-step: forward, loss, backward.  Adds to the LoRA
 * gradients (call ftk_model_zero_grad() at the start of an optimizer step)
 * d(loss_sum / norm).  *loss_sum gets the summed loss of this batch (natural
 * log), *n_targets the number of targets in it (either may be NULL).
 * Returns 0, or FTK_EUSAGE (no LoRA parameters, T beyond max_seq, a token id
 * outside the vocabulary, norm <= 0).  Dropout counter advances by one.
 */
int ftk_model_forward_backward(struct ftk_model *m, const struct ftk_batch *b, double norm,
			       double *loss_sum, long *n_targets, struct ftk_error *err);

/*
 * Forward only (evaluation): summed loss and target count as above, and,
 * when logits is not NULL, all logits (B, T, V) into the caller's buffer.
 * LoRA applies without dropout when adapters exist.  Returns 0 or
 * FTK_EUSAGE as above.
 */
int ftk_model_forward(struct ftk_model *m, const struct ftk_batch *b, float *logits,
		      double *loss_sum, long *n_targets, struct ftk_error *err);

/* ---------------------------------------------------------------- decoding */

/*
 * KV cache for generation of one sequence; owned by the model (one per
 * model), holding the positions asked for so far (grown as needed, at least
 * doubling, at most max_seq), not max_seq from the start.
 * ftk_model_decode() feeds n tokens at positions [pos, pos+n) (pos = number
 * already cached) and writes the last position's logits (V) into logits.
 * Returns 0 or FTK_EUSAGE (past max_seq, bad id).  pos = 0 restarts the
 * cache.
 */
int ftk_model_decode(struct ftk_model *m, const uint32_t *ids, int n, int pos, float *logits,
		     struct ftk_error *err);

/*
 * Make room for n positions in the KV cache now (a request's prompt plus
 * its max_tokens), keeping what is cached.  0, or FTK_EUSAGE when n is
 * beyond max_seq.  ftk_model_kv_capacity: positions allocated now.
 */
int ftk_model_kv_reserve(struct ftk_model *m, int n, struct ftk_error *err);
int ftk_model_kv_capacity(const struct ftk_model *m);

/*
 * Bytes of m's own buffers now: activations, scratch, KV cache (not the
 * weights, which ftk_model_share shares).  What each extra engine costs.
 */
size_t ftk_model_buffer_bytes(const struct ftk_model *m);

/* ---------------------------------------------------------------- weights */

/*
 * Dense float32 copy of a base projection (layer, target) as the model uses
 * it (dequantized when NF4): (out, in) floats into dst.  For ftk-merge.
 */
void ftk_model_base_weight(const struct ftk_model *m, int layer, enum ftk_lora_target t,
			   float *dst);
/* Its shape: *rows = out, *cols = in. */
void ftk_model_base_shape(const struct ftk_model *m, enum ftk_lora_target t, int *rows,
			  int *cols);
/* The HF tensor name of a projection ("model.layers.3.mlp.up_proj.weight") into buf. */
void ftk_model_weight_name(int layer, enum ftk_lora_target t, char *buf, size_t n);

#endif
