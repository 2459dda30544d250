/*
 * plan.c: the memory plan of a run (plan.h), computed from config.json and
 * the options by following, term by term, what the trainer allocates:
 *
 *   base     model.c's float32 arena (embeddings, norms, an untied head,
 *            biases; the projections too with --quant none) plus one NF4
 *            tensor per projection (nf4.h's ftk_nf4_bytes: codes, quantized
 *            scales, nested scales and the cached float scales);
 *   LoRA     A (r, in) and B (out, r) per target and layer, float32, and
 *            as many floats again for the gradients, twice for AdamW;
 *   acts     model.c's acts_layout per saved layer (all layers, or one with
 *            --checkpoint-activations, which recomputes the rest), each
 *            array rounded up to 64 bytes as the layout does; attention
 *            keeps (B, NH, T, T) probabilities, or with flash attention
 *            (--attention, chosen by model.h's ftk_attention_flash) (B, NH,
 *            T) log-sum-exps;
 *   work     the residual stream (L + 1 layers), the per-step scratch
 *            (model.c's ensure_buffers list, with its logits chunk), the
 *            backend's own scratch (CPU: a T x T attention-gradient buffer
 *            and an NF4 tile per thread; CUDA: the (B, NH, T, T) score
 *            gradients and one 16M-value NF4 tile; with flash attention
 *            instead of the T x T buffers, per CPU thread T document starts
 *            and two 64 x 128 tiles, on CUDA one float per query row), and
 *            the micro-batches;
 *            under --precision bf16 the tiles cover float32 weights too,
 *            CUDA's are bf16 (2 bytes a value, half the fp32 tile), and the
 *            converted operands of one product are added (bf16 on CUDA,
 *            rounded floats on the CPU); activations stay float32;
 *   runtime  on CUDA a fixed reserve for the context, cuBLAS workspace and
 *            NCCL buffers (an estimate, said so in the table).
 *
 * On the CPU the loading phase has its own peak: the safetensors files are
 * mapped and read whole, beside the arena and one float32 tensor being
 * converted; the peak is the larger of the two phases.
 */
#include "trainer/plan.h"

#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include "lib/strbuf.h"
#include "model/model.h"
#include "model/nf4.h"

#define MIB (1024.0 * 1024.0)
#define CUDA_RESERVE ((size_t)1 << 30)	/* context + cuBLAS + NCCL, an estimate */
/*
 * The local memory the driver reserves for the flash kernels, for every
 * thread the GPU can hold at once.  Since the kernels keep a row's state in
 * a warp's registers (issue 23), ptxas gives all three no stack at all
 * (sm_80, sm_89, sm_90: 0 bytes stack frame, no spills; it was up to 4.1
 * KiB per thread, 1.1 GB on an H100), so the estimate when the GPU cannot
 * be asked is 0; on a GPU cudaFuncGetAttributes' figure replaces it
 * (ftk_plan_set_local), so a build whose kernels do spill is still counted.
 */
#define FLASH_LOCAL_ESTIMATE ((size_t)0)

static size_t al64(size_t b)
{
	return (b + 63) & ~(size_t)63;
}

/* Projection t's (out, in), as model.c's ftk_model_base_shape. */
static void shape(const struct ftk_model_config *c, int t, size_t *out, size_t *in)
{
	size_t C = c->dim, H = c->hidden_dim, q = (size_t)c->n_heads * c->head_dim,
	       kv = (size_t)c->n_kv_heads * c->head_dim;
	switch (t) {
	case 0: *out = q, *in = C; break;
	case 1: case 2: *out = kv, *in = C; break;
	case 3: *out = C, *in = q; break;
	case 4: case 5: *out = H, *in = C; break;
	default: *out = C, *in = H; break;
	}
}

static size_t acts_bytes(const struct ftk_model_config *c, const struct ftk_train_opts *o,
			 size_t B, size_t T, int flash)
{
	size_t M = B * T, C = c->dim, H = c->hidden_dim, q = (size_t)c->n_heads * c->head_dim,
	       kv = (size_t)c->n_kv_heads * c->head_dim, r = (size_t)o->lora.rank, f = sizeof(float);
	size_t b = al64(M * C * f) + al64(M * f);
	if (c->qk_norm)
		b += al64(M * q * f) + al64(M * kv * f) + al64(M * c->n_heads * f) +
		     al64(M * c->n_kv_heads * f);
	b += al64(M * q * f) + 2 * al64(M * kv * f);
	b += flash ? al64(B * c->n_heads * T * f) : al64(B * c->n_heads * T * T * f);
	b += al64(M * q * f) + 2 * al64(M * C * f) + al64(M * f) + 3 * al64(M * H * f);
	for (int t = 0; t < 7; t++) {
		if (!(o->lora.targets & (1u << t)))
			continue;
		size_t out, in;
		shape(c, t, &out, &in);
		b += al64(M * r * f);
		if (o->lora.dropout > 0.0f)
			b += al64(M * in * f) + al64(M * in);
	}
	return b;
}

int ftk_plan_make(struct ftk_plan *p, const struct ftk_model_config *c,
		  const struct ftk_train_opts *o, const char *device, int world, int threads,
		  size_t file_bytes, struct ftk_error *err)
{
	memset(p, 0, sizeof(*p));
	if (!(o->lora.targets & 0x7f))
		return ftk_error_msg(err, FTK_EUSAGE, "no LoRA target");
	int cuda = device && !strcmp(device, "cuda");
	p->device = cuda ? "cuda" : "cpu";
	p->world = world < 1 ? 1 : world;
	if (threads < 1)
		threads = 1;
	if (threads > 64)
		threads = 64;
	p->threads = threads;
	size_t L = c->n_layers, C = c->dim, V = c->vocab_size, hd = c->head_dim,
	       H = c->hidden_dim, f = sizeof(float), r = (size_t)o->lora.rank;
	size_t q = (size_t)c->n_heads * hd, kv = (size_t)c->n_kv_heads * hd;

	/* base */
	size_t floats = V * C + C + (c->tie_embeddings ? 0 : V * C), nf4 = 0, nk_max = 0, n_lora = 0;
	size_t proj = 0;	/* projection weights */
	long long n_base = (long long)(V * C + C + (c->tie_embeddings ? 0 : V * C));
	for (size_t l = 0; l < L; l++) {
		floats += 2 * C + (c->qkv_bias ? q + 2 * kv : 0) + (c->qk_norm ? 2 * hd : 0);
		for (int t = 0; t < 7; t++) {
			size_t out, in;
			shape(c, t, &out, &in);
			n_base += (long long)(out * in);
			proj += out * in;
			if (o->quant == FTK_QUANT_NONE)
				floats += out * in;
			else
				nf4 += ftk_nf4_bytes(out * in);
			if (out * in > nk_max)
				nk_max = out * in;
			if (o->lora.targets & (1u << t))
				n_lora += r * (in + out);
		}
	}
	p->n_base = n_base;
	p->n_lora = n_lora;
	p->item[FTK_PLAN_BASE] = floats * f + nf4;
	p->item[FTK_PLAN_LORA] = n_lora * f;
	p->item[FTK_PLAN_GRADS] = n_lora * f;
	p->item[FTK_PLAN_OPTIM] = 2 * n_lora * f;

	/* activations: rows per micro-batch (DPO: chosen and rejected) */
	size_t B = (size_t)o->batch * (o->objective == FTK_OBJ_DPO ? 2 : 1), T = (size_t)o->seq_len;
	size_t M = B * T;
	p->flash = ftk_attention_flash(o->attention, (int)B, (int)T, c->n_heads, c->head_dim);
	p->att_full = al64(B * c->n_heads * T * T * f);
	p->att_flash = al64(B * c->n_heads * T * f);
	p->acts_full = L * acts_bytes(c, o, B, T, p->flash);
	p->acts_ckpt = acts_bytes(c, o, B, T, p->flash);
	p->item[FTK_PLAN_ACTS] = o->checkpoint_activations ? p->acts_ckpt : p->acts_full;

	/* work buffers (model.c's ensure_buffers) */
	size_t wide = C > H ? C : H;
	wide = wide > q ? wide : q;
	size_t chunk = (size_t)ftk_model_head_chunk((int)V, (int)(M < INT_MAX ? M : INT_MAX), cuda);
	size_t scratch = M * C + M + 4 * M + 2 * M * C + 5 * M * wide + 2 * M * kv + M * r +
			 chunk * V + chunk;
	size_t work = (L + 1) * M * C * f + scratch * f + 4 * M * sizeof(int32_t);
	/* the backend's scratch */
	size_t tile = o->quant == FTK_QUANT_NONE ? 0 : nk_max;
	/* bf16: every weight is tiled, float32 ones (the head) too; the tiles
	 * are bf16 on CUDA; the two converted operands of a product beside them */
	int bf16 = o->precision == FTK_PREC_BF16;
	size_t ops = bf16 ? (M * wide > chunk * V ? M * wide : chunk * V) + M * wide : 0;
	if (bf16 && !cuda)	/* the CPU rounds float32 weights (the head) into its tile too */
		tile = nk_max > V * C ? nk_max : V * C;
	/* CUDA converts each frozen float32 weight it multiplies under bf16 once
	 * and keeps the copy (backend_cuda.cu's bf16_copy): the head, and with
	 * --quant none every projection, which then needs no tile */
	size_t bf16_copies = V * C + (o->quant == FTK_QUANT_NONE ? proj : 0);
	if (cuda) {
		work += p->flash ? B * c->n_heads * T * f : B * c->n_heads * T * T * f;
		work += (tile < ((size_t)1 << 24) ? tile : ((size_t)1 << 24)) * (bf16 ? 2 : f);
		work += ops * 2;
		if (bf16)
			work += bf16_copies * 2;
	} else {
		/* flash: backend_cpu.c's per-task starts, two FLASH_BQ x FLASH_BK (64 x 128)
		 * tiles (backward) or one and FLASH_BQ output rows (forward): at most both */
		work += (size_t)threads * (p->flash ? T * sizeof(int) + (2 * 64 * 128 + 64 * hd) * f
						    : T * T * f);
		work += (size_t)threads * (tile < ((size_t)1 << 20) ? tile : ((size_t)1 << 20)) * f;
		work += ops * f;
	}
	/* micro-batches: ids, mask, doc per position, grad_accum of them (and one to discard) */
	work += (size_t)(o->grad_accum + (p->world > 1)) * M * 9;
	if (o->objective == FTK_OBJ_DPO)
		work += n_lora * f;	/* the pairs' scratch gradient */
	p->item[FTK_PLAN_WORK] = work;
	p->item[FTK_PLAN_RUNTIME] = cuda ? CUDA_RESERVE : 0;
	p->item[FTK_PLAN_LOCAL] = cuda && p->flash ? FLASH_LOCAL_ESTIMATE : 0;

	size_t train = 0;
	for (int i = 0; i < FTK_PLAN_N; i++)
		train += p->item[i];
	/* loading: the arena, NF4 tensors done so far, the mapped file, one tensor in float32 */
	p->load_peak = p->item[FTK_PLAN_BASE] + file_bytes + nk_max * f;
	p->total = train;
	if (!cuda && p->load_peak > p->total)
		p->total = p->load_peak;
	return 0;
}

/* Bytes of the model directory's *.safetensors files. */
static size_t st_bytes(const char *dir)
{
	size_t sum = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors"))
			continue;
		struct strbuf pth = STRBUF_INIT;
		struct stat sb;
		strbuf_addf(&pth, "%s/%s", dir, e->d_name);
		if (stat(pth.buf, &sb) == 0)
			sum += (size_t)sb.st_size;
		strbuf_release(&pth);
	}
	closedir(d);
	return sum;
}

int ftk_plan_for_dir(struct ftk_plan *p, const struct ftk_train_opts *o, const char *device,
		     int world, int threads, struct ftk_error *err)
{
	struct ftk_model_config cfg;
	int rc = ftk_config_load(o->model, &cfg, err);
	if (rc < 0)
		return rc;
	return ftk_plan_make(p, &cfg, o, device, world, threads, st_bytes(o->model), err);
}

static void row(FILE *out, const char *what, size_t b)
{
	fprintf(out, "  %-44s %10.1f MiB  %14zu\n", what, (double)b / MIB, b);
}

void ftk_plan_set_local(struct ftk_plan *p, size_t bytes)
{
	if (!p->flash || !p->item[FTK_PLAN_RUNTIME])
		return;	/* no flash kernels on this run, or not on CUDA */
	p->total = p->total - p->item[FTK_PLAN_LOCAL] + bytes;
	p->item[FTK_PLAN_LOCAL] = bytes;
	p->local_measured = 1;
}

void ftk_plan_print(const struct ftk_plan *p, const struct ftk_train_opts *o, size_t available,
		    FILE *out)
{
	fprintf(out, "memory plan: %s, %d process%s (per process; data parallel keeps a full copy "
		     "on each)\n",
		p->device, p->world, p->world == 1 ? "" : "es");
	fprintf(out, "  %lld base parameters (%s), %zu LoRA parameters (rank %d), "
		     "micro-batch %d x %d tokens, global batch %d rows\n",
		p->n_base, o->quant == FTK_QUANT_NONE ? "float32" : "NF4", p->n_lora, o->lora.rank,
		o->batch, o->seq_len, o->batch * o->grad_accum * p->world);
	fprintf(out, "  %-44s %14s  %14s\n", "", "", "bytes");
	row(out, o->quant == FTK_QUANT_NONE ? "base weights (float32)"
					    : "base weights (NF4 projections, float32 rest)",
	    p->item[FTK_PLAN_BASE]);
	row(out, "LoRA weights (float32 master)", p->item[FTK_PLAN_LORA]);
	row(out, "LoRA gradients (float32)", p->item[FTK_PLAN_GRADS]);
	row(out, "AdamW state (m, v float32)", p->item[FTK_PLAN_OPTIM]);
	row(out, o->checkpoint_activations ? "activations (checkpointed: one layer)"
					   : "activations (all layers saved)",
	    p->item[FTK_PLAN_ACTS]);
	row(out, "work buffers (residuals, logits, scratch)", p->item[FTK_PLAN_WORK]);
	if (p->item[FTK_PLAN_LOCAL] || p->local_measured)
		row(out, p->local_measured ? "flash kernels' local memory (this GPU)"
					   : "flash kernels' local memory (H100 estimate)",
		    p->item[FTK_PLAN_LOCAL]);
	if (p->item[FTK_PLAN_RUNTIME])
		row(out, "CUDA context, cuBLAS, NCCL (estimate)", p->item[FTK_PLAN_RUNTIME]);
	if (!strcmp(p->device, "cpu"))
		row(out, "loading peak (mapped file + one tensor)", p->load_peak);
	row(out, "total per process (peak)", p->total);
	if (o->precision == FTK_PREC_BF16)
		fprintf(out, "  precision bf16: products take bf16 operands (converted per product%s); "
			     "activations, LoRA weights, gradients and AdamW stay float32\n",
			strcmp(p->device, "cuda") ? "" : ", bf16 weight tiles");
	fprintf(out, "  activations: %.1f MiB saving every layer, %.1f MiB with "
		     "--checkpoint-activations\n",
		(double)p->acts_full / MIB, (double)p->acts_ckpt / MIB);
	fprintf(out, "  attention: %s%s, per saved layer %.1f MiB of %s (%s: %.1f MiB)\n",
		p->flash ? "flash" : "full", o->attention == FTK_ATTN_AUTO ? " (auto)" : "",
		(double)(p->flash ? p->att_flash : p->att_full) / MIB,
		p->flash ? "log-sum-exps" : "T x T probabilities",
		p->flash ? "full" : "--attention flash",
		(double)(p->flash ? p->att_full : p->att_flash) / MIB);
	if (available)
		fprintf(out, "  available: %.1f MiB: %s\n", (double)available / MIB,
			p->total <= available ? "fits" : "DOES NOT FIT");
	else
		fprintf(out, "  available: unknown (give --device-memory SIZE to check)\n");
}

int ftk_plan_fits(const struct ftk_plan *p, const struct ftk_train_opts *o, size_t available,
		  struct ftk_error *err)
{
	if (!available || p->total <= available)
		return 0;
	struct ftk_model_config cfgv, *cfg = &cfgv;
	size_t file_bytes = st_bytes(o->model);
	if (ftk_config_load(o->model, cfg, err) < 0)
		return err->code;
	struct ftk_train_opts t = *o;
	struct ftk_plan q;
	struct ftk_error e2;
	struct strbuf hint = STRBUF_INIT;
	/*
	 * The changes, cheapest first: flash attention (one more Q K^T product
	 * in the backward pass), checkpointing (a whole layer's forward again),
	 * both, then shorter rows, then smaller batches.
	 */
	int can_flash = !p->flash && cfg->head_dim <= FTK_FLASH_MAX_HD;
	if (can_flash) {
		t.attention = FTK_ATTN_FLASH;
		if (ftk_plan_make(&q, cfg, &t, p->device, p->world, p->threads, file_bytes, &e2) == 0 &&
		    q.total <= available)
			strbuf_addf(&hint, "use --attention flash (%.1f MiB)", (double)q.total / MIB);
		t.attention = o->attention;
	}
	if (!hint.len && !o->checkpoint_activations) {
		t.checkpoint_activations = 1;
		if (ftk_plan_make(&q, cfg, &t, p->device, p->world, p->threads, file_bytes, &e2) == 0 &&
		    q.total <= available)
			strbuf_addf(&hint, "add --checkpoint-activations (%.1f MiB)",
				    (double)q.total / MIB);
	}
	if (!hint.len && can_flash) {
		t.checkpoint_activations = 1;
		t.attention = FTK_ATTN_FLASH;
		if (ftk_plan_make(&q, cfg, &t, p->device, p->world, p->threads, file_bytes, &e2) == 0 &&
		    q.total <= available)
			strbuf_addf(&hint, "use --attention flash with --checkpoint-activations "
					   "(%.1f MiB)",
				    (double)q.total / MIB);
		t.attention = o->attention;
	}
	if (!hint.len) {
		t.checkpoint_activations = 1;
		for (int s = o->seq_len / 2; s >= 16 && !hint.len; s /= 2) {
			t.seq_len = s;
			if (ftk_plan_make(&q, cfg, &t, p->device, p->world, p->threads, file_bytes, &e2) == 0 &&
			    q.total <= available)
				strbuf_addf(&hint, "use --checkpoint-activations with --seq-len %d "
						   "(%.1f MiB)",
					    s, (double)q.total / MIB);
		}
	}
	if (!hint.len) {
		t.seq_len = o->seq_len;
		for (int b = o->batch / 2; b >= 1 && !hint.len; b /= 2) {
			t.batch = b;
			if (ftk_plan_make(&q, cfg, &t, p->device, p->world, p->threads, file_bytes, &e2) == 0 &&
			    q.total <= available)
				strbuf_addf(&hint, "use --checkpoint-activations with --batch %d and "
						   "--grad-accum %d (%.1f MiB)",
					    b, o->grad_accum * (o->batch / b), (double)q.total / MIB);
		}
	}
	if (!hint.len)
		strbuf_addf(&hint, "use a device with more memory (the base weights alone need "
				   "%.1f MiB)",
			    (double)p->item[FTK_PLAN_BASE] / MIB);
	int rc = ftk_error_msg(err, FTK_ELIMIT,
			       "the run needs %.1f MiB per process but %.1f MiB are available: %s",
			       (double)p->total / MIB, (double)available / MIB, hint.buf);
	strbuf_release(&hint);
	return rc;
}
