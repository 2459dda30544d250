/*
 * train.c: the training loop (see train.h for what one step is).
 *
 * Exact resume is the design constraint that shapes this file.  Everything a
 * step depends on is either a pure function of the options (data order,
 * schedule) or saved in the checkpoint (LoRA weights as float32, AdamW
 * moments and step, the dropout generator's two integers, the data
 * position).  metrics.jsonl is fsynced before every checkpoint and the
 * checkpoint records its length; on resume the file is cut back to that
 * length, so lines written after the checkpoint by a killed process are
 * replaced by the same lines recomputed.  Only tokens_per_s and elapsed
 * differ between an interrupted run and an uninterrupted one.
 *
 * DPO (Rafailov et al. 2023): for a pair with policy losses Lc, Lr (summed
 * token cross-entropy of chosen and rejected, i.e. minus their
 * log-probabilities) and the same under the frozen reference Rc, Rr,
 *     z = beta * ((Rc - Lc) - (Rr - Lr)),   loss = -log sigmoid(z),
 * and d loss / d Lc = beta * sigmoid(-z) = -d loss / d Lr.  The reference is
 * the model the run starts from, which for a fresh LoRA (B = 0) is the base
 * itself; its losses are computed once before training from the freshly
 * initialised model and kept in memory (on resume, recomputed the same way
 * before the checkpoint is loaded).  model.h gives the gradient of
 * (loss sum / norm) with norm > 0, so a pair's weighted gradient is two
 * backward passes, the rejected one subtracted through a scratch copy of the
 * gradients.  Starting from an existing adapter would make "the reference"
 * ambiguous (the adapted model or the base?), which is why --init-adapter
 * with DPO is refused: merge first, and the merged model is the reference.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/blas.h"
#include "model/adapter.h"
#include "trainer/checkpoint.h"
#include "trainer/data.h"
#include "trainer/train.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/strbuf.h"
#include "lib/yamljson.h"

void ftk_train_opts_default(struct ftk_train_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->quant = FTK_QUANT_NF4;
	o->lora.targets = FTK_LORA_ALL;
	o->lora.rank = 8;
	o->lora.alpha = 16;
	o->lora.dropout = 0;
	o->objective = FTK_OBJ_SFT;
	o->beta = 0.1;
	o->lr = 2e-4;
	o->sched.kind = FTK_SCHED_COSINE;
	struct ftk_adamw_opts ad = FTK_ADAMW_DEFAULTS;
	o->adamw = ad;
	o->max_grad_norm = 1.0;
	o->batch = 4;
	o->grad_accum = 1;
	o->seq_len = 512;
	o->epochs = 1;
	o->keep = 3;
	o->seed = 42;
}

static void targets_str(unsigned mask, char *buf, size_t n)
{
	static const char *const names[] = { "q", "k", "v", "o", "gate", "up", "down" };
	size_t len = 0;
	buf[0] = 0;
	for (int t = 0; t < FTK_LORA_N_TARGETS; t++)
		if (mask & (1u << t))
			len += (size_t)snprintf(buf + len, len < n ? n - len : 0, "%s%s",
						len ? "," : "", names[t]);
}

char *ftk_train_opts_json(const struct ftk_train_opts *o)
{
	char tg[64];
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "model", o->model);
	cJSON_AddStringToObject(j, "data", o->data);
	cJSON_AddStringToObject(j, "val", o->val);
	cJSON_AddStringToObject(j, "init_adapter", o->init_adapter);
	cJSON_AddStringToObject(j, "objective", o->objective == FTK_OBJ_DPO ? "dpo" : "sft");
	cJSON_AddNumberToObject(j, "beta", o->beta);
	cJSON_AddStringToObject(j, "quant", o->quant == FTK_QUANT_NF4 ? "nf4" : "none");
	targets_str(o->lora.targets, tg, sizeof(tg));
	cJSON_AddStringToObject(j, "targets", tg);
	cJSON_AddNumberToObject(j, "rank", o->lora.rank);
	cJSON_AddNumberToObject(j, "alpha", o->lora.alpha);
	cJSON_AddBoolToObject(j, "rslora", o->lora.rslora);
	cJSON_AddNumberToObject(j, "dropout", o->lora.dropout);
	cJSON_AddNumberToObject(j, "lr", o->lr);
	cJSON_AddStringToObject(j, "schedule", ftk_sched_name(o->sched.kind));
	cJSON_AddNumberToObject(j, "warmup", (double)o->sched.warmup);
	cJSON_AddNumberToObject(j, "min_lr_ratio", o->sched.min_ratio);
	cJSON_AddNumberToObject(j, "beta1", o->adamw.beta1);
	cJSON_AddNumberToObject(j, "beta2", o->adamw.beta2);
	cJSON_AddNumberToObject(j, "eps", o->adamw.eps);
	cJSON_AddNumberToObject(j, "weight_decay", o->adamw.weight_decay);
	cJSON_AddNumberToObject(j, "max_grad_norm", o->max_grad_norm);
	cJSON_AddNumberToObject(j, "batch", o->batch);
	cJSON_AddNumberToObject(j, "grad_accum", o->grad_accum);
	cJSON_AddNumberToObject(j, "world", o->world > 1 ? o->world : 1);
	cJSON_AddNumberToObject(j, "seq_len", o->seq_len);
	cJSON_AddNumberToObject(j, "epochs", o->epochs);
	cJSON_AddNumberToObject(j, "max_steps", (double)o->max_steps);
	cJSON_AddNumberToObject(j, "eval_every", (double)o->eval_every);
	cJSON_AddNumberToObject(j, "ckpt_every", (double)o->ckpt_every);
	cJSON_AddNumberToObject(j, "keep", o->keep);
	cJSON_AddNumberToObject(j, "seed", (double)o->seed);
	cJSON_AddNumberToObject(j, "threads", o->threads);
	cJSON_AddBoolToObject(j, "checkpoint_activations", o->checkpoint_activations);
	cJSON_AddStringToObject(j, "precision", ftk_precision_name(o->precision));
	cJSON_AddStringToObject(j, "attention", ftk_attention_name(o->attention));
	char *s = cJSON_Print(j);
	cJSON_Delete(j);
	size_t n = strlen(s);
	char *out = xmalloc(n + 2);
	memcpy(out, s, n);
	out[n] = '\n';
	out[n + 1] = 0;
	free(s);
	return out;
}

static int get_num(const cJSON *j, const char *key, double lo, double hi, double *v,
		   const char *path, struct ftk_error *err)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
	if (!x)
		return 0;	/* absent: keep the default */
	if (!cJSON_IsNumber(x) || x->valuedouble < lo || x->valuedouble > hi)
		return ftk_error_set(err, FTK_EDATA, path, 0, key, "must be a number in [%g, %g]", lo,
				     hi);
	*v = x->valuedouble;
	return 0;
}

static int get_str(const cJSON *j, const char *key, char *dst, size_t n, const char *path,
		   struct ftk_error *err)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
	if (!x)
		return 0;
	if (!cJSON_IsString(x) || strlen(x->valuestring) >= n)
		return ftk_error_set(err, FTK_EDATA, path, 0, key, "must be a string");
	strcpy(dst, x->valuestring);
	return 0;
}

int ftk_train_opts_parse(const char *text, size_t len, const char *path,
			 struct ftk_train_opts *o, struct ftk_error *err)
{
	cJSON *j;
	int rc = ftk_json_parse_object(text, len, &j, err);
	if (rc < 0) {
		ftk_error_place(err, path, 0);
		return rc;
	}
	char buf[64];
	double v;
#define STR(key, dst) \
	if ((rc = get_str(j, key, dst, sizeof(dst), path, err)) < 0) goto out
#define NUM(key, lo, hi, dst)                                                  \
	do {                                                                   \
		v = (double)(dst);                                             \
		if ((rc = get_num(j, key, lo, hi, &v, path, err)) < 0) goto out; \
		dst = v;                                                       \
	} while (0)
	STR("model", o->model);
	STR("data", o->data);
	STR("val", o->val);
	STR("init_adapter", o->init_adapter);
	buf[0] = 0;
	STR("objective", buf);
	if (buf[0]) {
		if (strcmp(buf, "sft") && strcmp(buf, "dpo")) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, "objective", "must be sft or dpo");
			goto out;
		}
		o->objective = strcmp(buf, "dpo") ? FTK_OBJ_SFT : FTK_OBJ_DPO;
	}
	NUM("beta", 0, 1e6, o->beta);
	buf[0] = 0;
	STR("quant", buf);
	if (buf[0]) {
		if (strcmp(buf, "nf4") && strcmp(buf, "none")) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, "quant", "must be nf4 or none");
			goto out;
		}
		o->quant = strcmp(buf, "nf4") ? FTK_QUANT_NONE : FTK_QUANT_NF4;
	}
	buf[0] = 0;
	STR("targets", buf);
	if (buf[0] && (rc = ftk_lora_parse_targets(buf, &o->lora.targets, err)) < 0) {
		ftk_error_set(err, rc, path, 0, "targets", "%s", err ? err->msg : "bad targets");
		goto out;
	}
	NUM("rank", 1, 65536, o->lora.rank);
	NUM("alpha", -1e9, 1e9, o->lora.alpha);
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "rslora");
	if (b)
		o->lora.rslora = cJSON_IsTrue(b);
	NUM("dropout", 0, 0.999999, o->lora.dropout);
	NUM("lr", 0, 1e3, o->lr);
	buf[0] = 0;
	STR("schedule", buf);
	if (buf[0] && (rc = ftk_sched_parse(buf, &o->sched.kind, err)) < 0) {
		ftk_error_place(err, path, 0);
		goto out;
	}
	NUM("warmup", 0, 1e15, o->sched.warmup);
	NUM("min_lr_ratio", 0, 1, o->sched.min_ratio);
	NUM("beta1", 0, 1, o->adamw.beta1);
	NUM("beta2", 0, 1, o->adamw.beta2);
	NUM("eps", 0, 1, o->adamw.eps);
	NUM("weight_decay", 0, 1e3, o->adamw.weight_decay);
	NUM("max_grad_norm", 0, 1e30, o->max_grad_norm);
	NUM("batch", 1, 1 << 20, o->batch);
	NUM("grad_accum", 1, 1 << 20, o->grad_accum);
	NUM("world", 0, 1 << 20, o->world);	/* processes of the saved run (issue 9) */
	NUM("seq_len", 2, 1 << 24, o->seq_len);
	NUM("epochs", 1, 1 << 20, o->epochs);
	NUM("max_steps", 0, 1e15, o->max_steps);
	NUM("eval_every", 0, 1e15, o->eval_every);
	NUM("ckpt_every", 0, 1e15, o->ckpt_every);
	NUM("keep", 0, 1 << 20, o->keep);
	NUM("seed", 0, 9007199254740992.0, o->seed);
	NUM("threads", 0, 4096, o->threads);
	b = cJSON_GetObjectItemCaseSensitive(j, "checkpoint_activations");
	if (b)
		o->checkpoint_activations = cJSON_IsTrue(b);
	buf[0] = 0;
	STR("precision", buf);	/* absent in runs from before it: fp32 */
	if (buf[0]) {
		if (ftk_precision_parse(buf) < 0) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, "precision", "must be fp32 or bf16");
			goto out;
		}
		o->precision = ftk_precision_parse(buf);
	}
	STR("attention", buf);	/* absent in runs from before --attention: auto */
	if (buf[0] && (rc = ftk_attention_parse(buf, &o->attention, err)) < 0) {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, "attention", "must be auto, full or flash");
		goto out;
	}
#undef STR
#undef NUM
	rc = 0;
out:
	cJSON_Delete(j);
	return rc;
}

int ftk_train_opts_check(const struct ftk_train_opts *o, struct ftk_error *err)
{
	if (!o->model[0])
		return ftk_error_msg(err, FTK_EUSAGE, "--model is required");
	if (!o->data[0])
		return ftk_error_msg(err, FTK_EUSAGE, "--data is required");
	if (!o->out[0])
		return ftk_error_msg(err, FTK_EUSAGE, "--out is required");
	if (o->objective == FTK_OBJ_DPO && o->init_adapter[0])
		return ftk_error_msg(err, FTK_EUSAGE,
				     "DPO cannot start from an unmerged adapter ('%s'): the reference "
				     "model would be ambiguous; merge it first (ftk-merge --model M "
				     "--adapter A --out MERGED) and train DPO on the merged model",
				     o->init_adapter);
	if (o->lora.rank < 1)
		return ftk_error_msg(err, FTK_EUSAGE, "--rank must be at least 1");
	if (!(o->lora.dropout >= 0 && o->lora.dropout < 1))
		return ftk_error_msg(err, FTK_EUSAGE, "--dropout must be in [0, 1)");
	if (!(o->lr > 0))
		return ftk_error_msg(err, FTK_EUSAGE, "--lr must be positive");
	if (o->batch < 1 || o->grad_accum < 1 || o->seq_len < 2 || o->epochs < 1)
		return ftk_error_msg(err, FTK_EUSAGE,
				     "--batch, --grad-accum and --epochs must be at least 1, "
				     "--seq-len at least 2");
	if (o->max_steps < 0 || o->eval_every < 0 || o->ckpt_every < 0 || o->keep < 0 ||
	    o->sched.warmup < 0)
		return ftk_error_msg(err, FTK_EUSAGE, "step counts must not be negative");
	if (o->seed >= (1ULL << 53))
		return ftk_error_msg(err, FTK_EUSAGE, "--seed must be below 2^53");
	if (o->objective == FTK_OBJ_DPO && !(o->beta > 0))
		return ftk_error_msg(err, FTK_EUSAGE, "--beta must be positive");
	return 0;
}

/* ---------------------------------------------------------------- the run */

struct run {
	const struct ftk_train_opts *o;
	struct ftk_model *m;
	struct ftk_data *train, *val;
	struct ftk_data_batch *mb;	/* grad_accum micro-batches */
	struct ftk_data_batch discard;	/* other ranks' micro-batches */
	int world, writer;		/* process count; 1 on rank 0 (the one that writes) */
	struct ftk_adamw opt;
	struct ftk_sched sched;
	float *params, *grads, *scratch;	/* backend memory */
	float *host_grads;	/* (n) reduce_grads's host copy, when it wants one */
	size_t n;
	double *ref_train, *ref_val;	/* DPO reference losses by sequence index */
	int metrics_fd;
	char *config_json;
	long step, total;
	uint64_t tokens_total;		/* over the whole run, resumed parts included */
	double elapsed_before;		/* seconds of earlier invocations */
	double t0;
	double first_val;
};

static int open_metrics(struct run *r, off_t keep_bytes, struct ftk_error *err)
{
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/metrics.jsonl", r->o->out);
	r->metrics_fd = open(p.buf, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	int rc = 0;
	if (r->metrics_fd < 0 || ftruncate(r->metrics_fd, keep_bytes) < 0 ||
	    lseek(r->metrics_fd, 0, SEEK_END) < 0)
		rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot open: %s", strerror(errno));
	strbuf_release(&p);
	return rc;
}

static int write_metrics(struct run *r, const struct strbuf *line, struct ftk_error *err)
{
	size_t off = 0;
	if (!r->writer)
		return 0;
	while (off < line->len) {
		ssize_t w = write(r->metrics_fd, line->buf + off, line->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return ftk_error_set(err, FTK_EIO, "metrics.jsonl", 0, NULL, "cannot write: %s",
					     strerror(errno));
		off += (size_t)w;
	}
	if (r->o->on_step) {
		/* the line as written, with the run's step count for a progress display */
		struct strbuf s = STRBUF_INIT;
		strbuf_add(&s, line->buf, line->len - 2);
		strbuf_addf(&s, ",\"of\":%ld}", r->total);
		r->o->on_step(r->o->on_step_ctx, s.buf);
		strbuf_release(&s);
	}
	return 0;
}

/* Loss of one row (forward only) as a batch of one. */
static int row_loss(struct ftk_model *m, const struct ftk_data_batch *db, int row, double *loss,
		    struct ftk_error *err)
{
	size_t off = (size_t)row * db->T;
	struct ftk_batch b = { 1, db->T, db->ids + off, db->mask + off, db->doc + off };
	long nt;
	return ftk_model_forward(m, &b, NULL, loss, &nt, err);
}

/* The DPO reference losses of every sequence in d, from the model as it is now. */
static int dpo_reference(struct run *r, struct ftk_data *d, double **out, struct ftk_error *err)
{
	struct ftk_data_pos saved;
	ftk_data_get_pos(d, &saved);
	const struct ftk_shard_info *info = ftk_data_info(d);
	double *ref = xcalloc(info->sequences + 2, sizeof(double));
	struct ftk_data_batch db;
	ftk_data_batch_init(&db, d);
	/* one pass in file order, whatever the stream's mode */
	struct ftk_data_pos start = { 0, 0 };
	ftk_data_set_pos(d, &start);
	int rc = 0;
	for (uint64_t u = 0; u < ftk_data_units(d);) {
		int rows = ftk_data_next(d, &db);
		if (rows <= 0)
			break;
		for (int i = 0; i < rows; i++) {
			double l;
			if ((rc = row_loss(r->m, &db, i, &l, err)) < 0)
				goto out;
			ref[db.seq[i]] = l;
		}
		u += (uint64_t)rows / 2;
	}
out:
	ftk_data_batch_release(&db);
	ftk_data_set_pos(d, &saved);
	if (rc < 0) {
		free(ref);
		return rc;
	}
	*out = ref;
	return 0;
}

static double softplus(double x)
{
	return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static double sigmoid(double x)
{
	return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* DPO loss and margin sign of one pair from the four losses. */
static double dpo_pair(double beta, double lc, double lr, double rc, double rr, double *z)
{
	*z = beta * ((rc - lc) - (rr - lr));
	return softplus(-*z);
}

static int eval_val(struct run *r, double *val_loss, long *val_n, struct ftk_error *err)
{
	struct ftk_data_batch db;
	ftk_data_batch_init(&db, r->val);
	ftk_data_rewind(r->val);
	double sum = 0;
	long n = 0;
	int rc = 0, rows;
	while ((rows = ftk_data_next(r->val, &db)) > 0) {
		if (r->o->objective == FTK_OBJ_DPO) {
			for (int i = 0; i + 1 < rows; i += 2) {
				double lc, lr, z;
				if ((rc = row_loss(r->m, &db, i, &lc, err)) < 0 ||
				    (rc = row_loss(r->m, &db, i + 1, &lr, err)) < 0)
					goto out;
				sum += dpo_pair(r->o->beta, lc, lr, r->ref_val[db.seq[i]],
						r->ref_val[db.seq[i + 1]], &z);
				n++;
			}
		} else {
			double ls;
			long nt;
			if ((rc = ftk_model_forward(r->m, &db.b, NULL, &ls, &nt, err)) < 0)
				goto out;
			sum += ls;
			n += nt;
		}
	}
	*val_loss = n ? sum / (double)n : NAN;
	*val_n = n;
out:
	ftk_data_batch_release(&db);
	return rc;
}

/* One SFT step's forward/backward over the micro-batches: loss sum and targets. */
static int sft_grads(struct run *r, double *loss_sum, long *targets, struct ftk_error *err)
{
	long norm = 0;
	for (int k = 0; k < r->o->grad_accum; k++)
		norm += r->mb[k].targets;
	if (r->o->reduce_count) {
		int rc = r->o->reduce_count(r->o->reduce_ctx, &norm, err);
		if (rc < 0)
			return rc;
	}
	*loss_sum = 0;
	*targets = norm;
	for (int k = 0; k < r->o->grad_accum; k++) {
		double ls;
		long nt;
		int rc = ftk_model_forward_backward(r->m, &r->mb[k].b, (double)norm, &ls, &nt, err);
		if (rc < 0)
			return rc;
		*loss_sum += ls;
	}
	return 0;
}

int ftk_dpo_pairs(struct ftk_model *m, const struct ftk_batch *b, const double *ref, double beta,
		  double norm, float *scratch, double *loss_sum, long *right, struct ftk_error *err)
{
	size_t n;
	float *grads = ftk_model_lora_grad_flat(m, &n);
	struct ftk_backend *be = ftk_model_backend(m);
	size_t T = (size_t)b->T;
	for (int i = 0; i + 1 < b->B; i += 2) {
		struct ftk_batch bc = { 1, b->T, b->ids + i * T, b->mask ? b->mask + i * T : NULL,
					b->doc ? b->doc + i * T : NULL };
		struct ftk_batch br = { 1, b->T, b->ids + (i + 1) * T,
					b->mask ? b->mask + (i + 1) * T : NULL,
					b->doc ? b->doc + (i + 1) * T : NULL };
		double lc, lr, z, ls;
		long nt;
		int rc;
		if ((rc = ftk_model_forward(m, &bc, NULL, &lc, &nt, err)) < 0 ||
		    (rc = ftk_model_forward(m, &br, NULL, &lr, &nt, err)) < 0)
			return rc;
		*loss_sum += dpo_pair(beta, lc, lr, ref[i], ref[i + 1], &z);
		*right += z > 0;
		double w = beta * sigmoid(-z);
		if (!(w > 0))
			continue;
		/* grads += w/norm * d Lc */
		if ((rc = ftk_model_forward_backward(m, &bc, norm / w, &ls, &nt, err)) < 0)
			return rc;
		/* grads -= w/norm * d Lr, through a scratch copy, on the backend
		 * (scratch - g is exactly -g + scratch) */
		be->ops->copy(be, scratch, grads, n * sizeof(float));
		ftk_model_zero_grad(m);
		if ((rc = ftk_model_forward_backward(m, &br, norm / w, &ls, &nt, err)) < 0)
			return rc;
		if (be->ops->scale) {
			be->ops->scale(be, grads, -1.0f, n);
			be->ops->add(be, grads, scratch, n);
		} else {
			for (size_t j = 0; j < n; j++)
				grads[j] = scratch[j] - grads[j];
		}
	}
	return 0;
}

/*
 * The data-parallel sum of the gradients (train.h's reduce_grads): in place
 * when the hook takes backend memory (NCCL), else through a host copy,
 * downloaded and uploaded whole (MPI_Allreduce reads host memory: Debian's
 * OpenMPI is not built CUDA-aware, so device pointers are not assumed).
 * The copies are exact, so the sums are the same bits either way.
 */
static int reduce_grads(struct run *r, double *loss_sum, struct ftk_error *err)
{
	const struct ftk_train_opts *o = r->o;
	if (o->reduce_grads_device)
		return o->reduce_grads(o->reduce_ctx, r->grads, r->n, loss_sum, err);
	if (!r->host_grads)
		r->host_grads = xmalloc(r->n * sizeof(float) + 1);
	ftk_model_lora_grad_download(r->m, r->host_grads);
	int rc = o->reduce_grads(o->reduce_ctx, r->host_grads, r->n, loss_sum, err);
	if (rc == 0) {
		struct ftk_backend *be = ftk_model_backend(r->m);
		be->ops->upload(be, r->grads, r->host_grads, r->n * sizeof(float));
	}
	return rc;
}

/* One DPO step: loss sum over pairs, pair count in *pairs, margin accuracy. */
static int dpo_grads(struct run *r, double *loss_sum, long *pairs, double *acc,
		     struct ftk_error *err)
{
	long P = 0, right = 0, local = 0;
	for (int k = 0; k < r->o->grad_accum; k++)
		local += r->mb[k].b.B / 2;
	P = local;
	if (r->o->reduce_count) {
		int rc = r->o->reduce_count(r->o->reduce_ctx, &P, err);
		if (rc < 0)
			return rc;
	}
	*loss_sum = 0;
	*pairs = P;
	double *ref = xmalloc((size_t)r->mb[0].rows * sizeof(double));
	int rc = 0;
	for (int k = 0; k < r->o->grad_accum && rc == 0; k++) {
		struct ftk_data_batch *db = &r->mb[k];
		for (int i = 0; i < db->b.B; i++)
			ref[i] = r->ref_train[db->seq[i]];
		rc = ftk_dpo_pairs(r->m, &db->b, ref, r->o->beta, (double)P, r->scratch, loss_sum,
				   &right, err);
	}
	free(ref);
	/* the accuracy of the global batch: every rank's right answers over P */
	if (rc == 0 && r->o->reduce_count)
		rc = r->o->reduce_count(r->o->reduce_ctx, &right, err);
	*acc = P ? (double)right / (double)P : 0;
	return rc;
}

static int run_threads(const struct ftk_train_opts *o)
{
	return o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
}

static void add_state(struct run *r, cJSON *st)
{
	struct ftk_data_pos pos;
	struct ftk_model_rng rng;
	char buf[32];
	ftk_data_get_pos(r->train, &pos);
	ftk_model_rng_get(r->m, &rng);
	cJSON_AddNumberToObject(st, "step", (double)r->step);
	cJSON_AddNumberToObject(st, "total_steps", (double)r->total);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)pos.epoch);
	cJSON_AddStringToObject(st, "data_epoch", buf);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)pos.cursor);
	cJSON_AddStringToObject(st, "data_cursor", buf);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)rng.seed);
	cJSON_AddStringToObject(st, "rng_seed", buf);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)rng.counter);
	cJSON_AddStringToObject(st, "rng_counter", buf);
	cJSON_AddNumberToObject(st, "optimizer_step", (double)r->opt.t);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)ftk_data_units(r->train));
	cJSON_AddStringToObject(st, "data_units", buf);
	off_t bytes = lseek(r->metrics_fd, 0, SEEK_END);
	cJSON_AddNumberToObject(st, "metrics_bytes", (double)bytes);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)r->tokens_total);
	cJSON_AddStringToObject(st, "tokens", buf);
	cJSON_AddNumberToObject(st, "elapsed", r->elapsed_before + (ftk_now() - r->t0));
	/* what the numbers were computed with: exact resume holds under the same */
	struct ftk_blas_id bi;
	ftk_blas_identify(&bi);
	cJSON *c = cJSON_AddObjectToObject(st, "compute");
	cJSON_AddStringToObject(c, "device", r->o->backend ? r->o->backend->ops->name : "cpu");
	cJSON_AddStringToObject(c, "blas", bi.library);
	cJSON_AddStringToObject(c, "blas_core", bi.core);
	cJSON_AddNumberToObject(c, "threads", run_threads(r->o));
	if (isnan(r->first_val))
		cJSON_AddNullToObject(st, "first_val_loss");
	else
		cJSON_AddNumberToObject(st, "first_val_loss", r->first_val);
}

static int save_ckpt(struct run *r, struct ftk_error *err)
{
	if (!r->writer)
		return 0;
	if (fsync(r->metrics_fd) < 0)
		return ftk_error_set(err, FTK_EIO, "metrics.jsonl", 0, NULL, "cannot fsync: %s",
				     strerror(errno));
	cJSON *st = cJSON_CreateObject();
	add_state(r, st);
	int rc = ftk_ckpt_save(r->o->out, r->step, r->m, r->o->model, &r->opt, st, r->config_json,
			       r->o->keep, err);
	cJSON_Delete(st);
	return rc;
}

static uint64_t state_u64(const cJSON *st, const char *key, int *bad)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(st, key);
	if (!cJSON_IsString(x)) {
		*bad = 1;
		return 0;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(x->valuestring, &end, 10);
	if (*end || errno)
		*bad = 1;
	return v;
}

static double state_num(const cJSON *st, const char *key, int *bad)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(st, key);
	if (!cJSON_IsNumber(x)) {
		*bad = 1;
		return 0;
	}
	return x->valuedouble;
}

/*
 * Exact resume means: the same binary, device, BLAS kernel family and thread
 * count give the numbers the uninterrupted run would have given, bit for bit.
 * Another kernel or thread count rounds the products differently (model/blas.h),
 * so the continuation is a correct run but not that one: say so, and go on.
 */
static void compute_note(struct run *r, const cJSON *was)
{
	if (!r->o->on_note || !r->writer)
		return;
	struct strbuf sb = STRBUF_INIT;
	if (!cJSON_IsObject(was)) {
		strbuf_addstr(&sb, "the checkpoint does not record the BLAS kernel and thread "
				   "count it was computed with (an older ftk), so this continuation "
				   "may not be bit-identical to an uninterrupted run");
		r->o->on_note(r->o->on_note_ctx, sb.buf);
		strbuf_release(&sb);
		return;
	}
	struct ftk_blas_id bi;
	ftk_blas_identify(&bi);
	const char *dev = r->o->backend ? r->o->backend->ops->name : "cpu";
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(was, "device");
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(was, "blas");
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(was, "blas_core");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(was, "threads");
	if (cJSON_IsString(d) && strcmp(d->valuestring, dev))
		strbuf_addf(&sb, "%sdevice %s, now %s", sb.len ? "; " : "", d->valuestring, dev);
	if (cJSON_IsString(k) && strcmp(k->valuestring, bi.core))	/* the usual case */
		strbuf_addf(&sb, "%sBLAS kernels %s, now %s", sb.len ? "; " : "", k->valuestring,
			    bi.core);
	else if (cJSON_IsString(b) && strcmp(b->valuestring, bi.library))
		strbuf_addf(&sb, "%sBLAS '%s', now '%s'", sb.len ? "; " : "", b->valuestring,
			    bi.library);
	int tw = cJSON_IsNumber(t) ? (int)t->valuedouble : 0, tn = run_threads(r->o);
	if (cJSON_IsNumber(t) && tw != tn)
		strbuf_addf(&sb, "%s%d thread%s, now %d", sb.len ? "; " : "", tw, tw == 1 ? "" : "s",
			    tn);
	if (sb.len) {
		struct strbuf msg = STRBUF_INIT;
		strbuf_addf(&msg, "the checkpoint was computed with %s: the continuation is "
				  "correct but not bit-identical to an uninterrupted run",
			    sb.buf);
		r->o->on_note(r->o->on_note_ctx, msg.buf);
		strbuf_release(&msg);
	}
	strbuf_release(&sb);
}

/*
 * Say what the pick passed over and what it resumes from unverified, and
 * set the damaged checkpoints aside (rank 0 only: the others pick the same
 * way from the same files, or find `latest` already moved).
 */
static int pick_notes(struct run *r, const struct ftk_ckpt_pick *p, struct ftk_error *err)
{
	if (!r->writer)
		return 0;
	struct strbuf sb = STRBUF_INIT;
	for (int i = 0; i < p->n_damaged; i++) {
		strbuf_reset(&sb);
		strbuf_addf(&sb, "checkpoint step-%ld is damaged (kept as checkpoints/damaged-step-%ld): "
				 "%s: %s", p->damaged[i].step, p->damaged[i].step,
			    p->damaged[i].err.file, p->damaged[i].err.msg);
		if (r->o->on_note)
			r->o->on_note(r->o->on_note_ctx, sb.buf);
	}
	if (p->n_damaged) {
		strbuf_reset(&sb);
		strbuf_addf(&sb, "resuming from step-%ld, the newest intact checkpoint", p->step);
		if (r->o->on_note)
			r->o->on_note(r->o->on_note_ctx, sb.buf);
	}
	if (p->unverified && r->o->on_note) {
		strbuf_reset(&sb);
		strbuf_addf(&sb, "checkpoint step-%ld has no checksums (an older ftk wrote it): "
				 "resuming from it unverified", p->step);
		r->o->on_note(r->o->on_note_ctx, sb.buf);
	}
	strbuf_release(&sb);
	return ftk_ckpt_set_aside(r->o->out, p, err);
}

static int restore(struct run *r, const char *ckpt, struct ftk_error *err)
{
	cJSON *st;
	int rc = ftk_ckpt_load(ckpt, r->m, &r->o->lora, &r->opt, &st, err);
	if (rc < 0)
		return rc;
	int bad = 0;
	struct ftk_data_pos pos;
	struct ftk_model_rng rng;
	r->step = (long)state_num(st, "step", &bad);
	pos.epoch = state_u64(st, "data_epoch", &bad);
	pos.cursor = state_u64(st, "data_cursor", &bad);
	rng.seed = state_u64(st, "rng_seed", &bad);
	rng.counter = state_u64(st, "rng_counter", &bad);
	double mb = state_num(st, "metrics_bytes", &bad);
	uint64_t units = state_u64(st, "data_units", &bad);
	r->tokens_total = state_u64(st, "tokens", &bad);
	r->elapsed_before = state_num(st, "elapsed", &bad);
	const cJSON *fv = cJSON_GetObjectItemCaseSensitive(st, "first_val_loss");
	r->first_val = cJSON_IsNumber(fv) ? fv->valuedouble : NAN;
	compute_note(r, cJSON_GetObjectItemCaseSensitive(st, "compute"));
	cJSON_Delete(st);
	if (bad || r->step < 0)
		return ftk_error_set(err, FTK_EDATA, ckpt, 0, "state.json",
				     "checkpoint state is incomplete");
	if (units != ftk_data_units(r->train) || pos.cursor > units)
		return ftk_error_set(err, FTK_EMISMATCH, ckpt, 0, "state.json",
				     "the checkpoint was made with %llu training sequences, '%s' now "
				     "has %llu: the shards changed, so the run cannot continue exactly",
				     (unsigned long long)units, r->o->data,
				     (unsigned long long)ftk_data_units(r->train));
	ftk_data_set_pos(r->train, &pos);
	ftk_model_rng_set(r->m, &rng);
	if (!r->writer)
		return 0;
	/* the metrics file must still hold what the checkpoint saw */
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/metrics.jsonl", r->o->out);
	struct stat sb;
	if (stat(p.buf, &sb) < 0 || (double)sb.st_size < mb) {
		rc = ftk_error_set(err, FTK_EDATA, p.buf, 0, NULL,
				   "shorter than the checkpoint recorded (%.0f bytes): was it edited?",
				   mb);
		strbuf_release(&p);
		return rc;
	}
	strbuf_release(&p);
	return open_metrics(r, (off_t)mb, err);
}

static int mkdir_p(const char *dir, struct ftk_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, dir);
	for (char *p = sb.buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(sb.buf, 0777) < 0 && errno != EEXIST)
			break;
		*p = '/';
	}
	int rc = 0;
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		rc = ftk_error_set(err, FTK_EIO, dir, 0, NULL, "cannot create directory: %s",
				   strerror(errno));
	strbuf_release(&sb);
	return rc;
}

static void release(struct run *r)
{
	if (r->mb) {
		for (int k = 0; k < r->o->grad_accum; k++)
			ftk_data_batch_release(&r->mb[k]);
		free(r->mb);
	}
	if (r->discard.ids)
		ftk_data_batch_release(&r->discard);
	ftk_data_free(r->train);
	ftk_data_free(r->val);
	ftk_adamw_release(&r->opt);
	if (r->scratch) {
		struct ftk_backend *be = ftk_model_backend(r->m);
		be->ops->free(be, r->scratch);
	}
	free(r->host_grads);
	ftk_model_free(r->m);
	if (r->metrics_fd >= 0)
		close(r->metrics_fd);
	free(r->config_json);
	free(r->ref_train);
	free(r->ref_val);
}

int ftk_train_run(const struct ftk_train_opts *o, int resume, struct ftk_train_result *res,
		  struct ftk_error *err)
{
	struct run R, *r = &R;
	struct strbuf p = STRBUF_INIT;
	int rc;

	memset(r, 0, sizeof(*r));
	memset(res, 0, sizeof(*res));
	res->first_val_loss = res->last_val_loss = NAN;
	r->o = o;
	r->metrics_fd = -1;
	r->world = o->world > 1 ? o->world : 1;
	r->writer = o->rank == 0;
	r->first_val = NAN;
	r->t0 = ftk_now();
	if ((rc = ftk_train_opts_check(o, err)) < 0)
		return rc;

	/* the run directory */
	strbuf_addf(&p, "%s/train_config.json", o->out);
	struct stat sb;
	if (!resume && r->writer && (stat(p.buf, &sb) == 0)) {
		rc = ftk_error_set(err, FTK_EUSAGE, o->out, 0, NULL,
				   "already holds a run: continue it with --resume, or choose "
				   "another --out");
		goto out;
	}
	r->config_json = ftk_train_opts_json(o);

	/* the model and its LoRA; an adapter directory given as the model is the
	 * unmerged-adapter case, said plainly rather than as a missing config */
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/adapter_config.json", o->model);
	if (stat(p.buf, &sb) == 0) {
		rc = ftk_error_set(err, FTK_EUSAGE, o->model, 0, NULL,
				   "this is a LoRA adapter, not a model: merge it into its base "
				   "first (ftk-merge --model BASE --adapter %s --out MERGED), or use "
				   "--model BASE --init-adapter %s%s",
				   o->model, o->model,
				   o->objective == FTK_OBJ_DPO ? " (not for DPO)" : "");
		goto out;
	}
	struct ftk_load_opts lo = { o->quant, o->backend, o->threads, o->seq_len };
	if ((rc = ftk_model_load(&r->m, o->model, &lo, err)) < 0)
		goto out;
	ftk_model_set_checkpointing(r->m, o->checkpoint_activations);
	if ((rc = ftk_model_set_precision(r->m, o->precision, err)) < 0)
		goto out;
	if ((rc = ftk_model_set_attention(r->m, o->attention, err)) < 0)
		goto out;
	const struct ftk_model_config *cfg = ftk_model_config(r->m);
	struct ftk_lora_opts lora = o->lora;
	lora.seed = o->seed;
	if (o->init_adapter[0]) {
		struct ftk_adapter *a;
		if ((rc = ftk_adapter_load(o->init_adapter, &a, err)) < 0)
			goto out;
		rc = ftk_adapter_apply(r->m, a, &lora, err);
		ftk_adapter_free(a);
		if (rc < 0)
			goto out;
	} else if ((rc = ftk_model_lora_init(r->m, &lora, err)) < 0) {
		goto out;
	}
	ftk_model_lora_flat(r->m, &r->n);

	/* the data */
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/tokenizer.json", o->model);
	int kind = o->objective == FTK_OBJ_DPO ? FTK_SHARD_PREFERENCE : FTK_SHARD_SFT;
	struct ftk_data_opts dop = { o->data, p.buf, (uint32_t)cfg->vocab_size, kind,
				     o->seq_len, o->batch, o->seed, 1 };
	if ((rc = ftk_data_open(&r->train, &dop, err)) < 0)
		goto out;
	if (o->val[0]) {
		dop.dir = o->val;
		dop.shuffle = 0;
		if ((rc = ftk_data_open(&r->val, &dop, err)) < 0)
			goto out;
	}
	res->truncated = ftk_data_truncated(r->train);
	res->skipped = ftk_data_skipped(r->train);
	r->mb = xcalloc((size_t)o->grad_accum, sizeof(*r->mb));
	for (int k = 0; k < o->grad_accum; k++)
		ftk_data_batch_init(&r->mb[k], r->train);
	if (r->world > 1)
		ftk_data_batch_init(&r->discard, r->train);

	/* the schedule */
	uint64_t per_step = (uint64_t)o->batch * (uint64_t)o->grad_accum * (uint64_t)r->world;
	uint64_t per_epoch = o->objective == FTK_OBJ_DPO ? ftk_data_units(r->train)
							 : ftk_data_rows_per_epoch(r->train);
	uint64_t steps_epoch = (per_epoch + per_step - 1) / per_step;
	r->total = o->max_steps > 0 ? o->max_steps : (long)(steps_epoch * (uint64_t)o->epochs);
	r->sched = o->sched;
	r->sched.lr = o->lr;
	r->sched.total = r->total;
	/* the model's own instance (o->backend may be NULL: a CPU one the model
	 * made), so AdamW and clipping run as its ops on its memory */
	if ((rc = ftk_adamw_init_on(&r->opt, r->n, &o->adamw, ftk_model_backend(r->m), err)) < 0)
		goto out;

	/* everything loaded: only now does the run directory get its config, so
	 * a run refused above leaves nothing that looks like a run */
	if (r->writer && (rc = mkdir_p(o->out, err)) < 0)
		goto out;
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/train_config.json", o->out);
	if (!resume && r->writer &&
	    (rc = ftk_write_file_atomic(p.buf, r->config_json, strlen(r->config_json), err)) < 0)
		goto out;
	if (!resume && r->writer) {
		/* the same, as the YAML a --config file takes: what this run really used */
		cJSON *cj = cJSON_Parse(r->config_json);
		/* as options: the process count comes from the launch, and an empty
		 * path is an option not given */
		cJSON_DeleteItemFromObjectCaseSensitive(cj, "world");
		for (cJSON *m = cj ? cj->child : NULL, *next; m; m = next) {
			next = m->next;
			if (cJSON_IsString(m) && !*m->valuestring)
				cJSON_Delete(cJSON_DetachItemViaPointer(cj, m));
		}
		struct strbuf y = STRBUF_INIT;
		strbuf_addstr(&y, "# the effective options of this run (ftk train --config takes this file)\n");
		ftk_yaml_write(cj, &y);
		cJSON_Delete(cj);
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/train_config.yaml", o->out);
		rc = ftk_write_file_atomic(p.buf, y.buf, y.len, err);
		strbuf_release(&y);
		if (rc < 0)
			goto out;
	}

	/* DPO's reference: the model as initialised, before any checkpoint is loaded */
	if (o->objective == FTK_OBJ_DPO) {
		struct ftk_backend *be = ftk_model_backend(r->m);
		r->scratch = be->ops->alloc(be, r->n * sizeof(float) + 1);
		if ((rc = dpo_reference(r, r->train, &r->ref_train, err)) < 0)
			goto out;
		if (r->val && (rc = dpo_reference(r, r->val, &r->ref_val, err)) < 0)
			goto out;
	}

	/* where to start: the newest checkpoint whose files verify */
	struct ftk_ckpt_pick pick = { .step = -1 };
	int have = FTK_ENOTFOUND;
	if (resume) {
		have = ftk_ckpt_pick(o->out, o->strict_resume, &pick, err);
		if (have == 0)
			have = pick_notes(r, &pick, err);
		ftk_ckpt_pick_release(&pick);
	}
	if (have == 0) {
		if ((rc = restore(r, pick.dir, err)) < 0)
			goto out;
		res->resumed = 1;
	} else if (have != FTK_ENOTFOUND) {
		rc = have;
		goto out;
	} else if (r->writer && (rc = open_metrics(r, 0, err)) < 0) {
		goto out;
	}
	ftk_error_clear(err);
	/* only now: loading a checkpoint re-creates the model's LoRA arrays */
	r->params = ftk_model_lora_flat(r->m, &r->n);
	r->grads = ftk_model_lora_grad_flat(r->m, &r->n);
	res->start_step = r->step;
	res->total_steps = r->total;

	struct strbuf line = STRBUF_INIT;
	/* the starting point's validation loss, the baseline the run is judged by */
	if (r->val && r->writer && r->step == 0) {
		double vl;
		long vn;
		if ((rc = eval_val(r, &vl, &vn, err)) < 0) {
			strbuf_release(&line);
			goto out;
		}
		r->first_val = vl;
		strbuf_addf(&line, "{\"step\":0,\"val_loss\":%.9g,\"val_%s\":%ld}\n", vl,
			    o->objective == FTK_OBJ_DPO ? "pairs" : "targets", vn);
		if ((rc = write_metrics(r, &line, err)) < 0) {
			strbuf_release(&line);
			goto out;
		}
	}
	while (r->step < r->total) {
		double t_step = ftk_now(), loss_sum = 0, acc = 0;
		long targets = 0;
		uint64_t step_tokens = 0;
		uint64_t own_tokens = 0;
		for (int k = 0; k < o->grad_accum * r->world; k++) {
			int mine = k % r->world == o->rank;
			struct ftk_data_batch *db = mine ? &r->mb[k / r->world] : &r->discard;
			ftk_data_next(r->train, db);
			step_tokens += (uint64_t)db->tokens;
			own_tokens += mine ? (uint64_t)db->tokens : 0;
		}
		ftk_model_zero_grad(r->m);
		if (o->objective == FTK_OBJ_DPO)
			rc = dpo_grads(r, &loss_sum, &targets, &acc, err);
		else
			rc = sft_grads(r, &loss_sum, &targets, err);
		if (rc == 0 && o->reduce_grads)
			rc = reduce_grads(r, &loss_sum, err);
		if (rc < 0) {
			strbuf_release(&line);
			goto out;
		}
		double gnorm = ftk_clip_grad_norm_on(ftk_model_backend(r->m), r->grads, r->n,
						     o->max_grad_norm);
		double lr = ftk_sched_lr(&r->sched, r->step);
		ftk_adamw_step(&r->opt, r->params, r->grads, lr);
		r->step++;
		r->tokens_total += step_tokens;
		res->tokens += own_tokens;
		res->last_loss = targets ? loss_sum / (double)targets : NAN;

		double now = ftk_now();
		struct ftk_data_pos pos;
		ftk_data_get_pos(r->train, &pos);
		strbuf_reset(&line);
		strbuf_addf(&line, "{\"step\":%ld,\"epoch\":%.4f,\"loss\":%.9g,", r->step,
			    (double)pos.epoch + (double)pos.cursor / (double)ftk_data_units(r->train),
			    res->last_loss);
		if (o->objective == FTK_OBJ_DPO)
			strbuf_addf(&line, "\"reward_accuracy\":%.4f,", acc);
		strbuf_addf(&line,
			    "\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%llu,\"tokens_per_s\":%.1f,"
			    "\"elapsed\":%.3f}\n",
			    lr, gnorm, (unsigned long long)r->tokens_total,
			    (double)step_tokens / fmax(now - t_step, 1e-9),
			    r->elapsed_before + (now - r->t0));
		if ((rc = write_metrics(r, &line, err)) < 0) {
			strbuf_release(&line);
			goto out;
		}
		if (r->val && r->writer && ((o->eval_every > 0 && r->step % o->eval_every == 0) ||
			       r->step == r->total)) {
			double vl;
			long vn;
			if ((rc = eval_val(r, &vl, &vn, err)) < 0) {
				strbuf_release(&line);
				goto out;
			}
			if (isnan(r->first_val))
				r->first_val = vl;
			res->last_val_loss = vl;
			strbuf_reset(&line);
			strbuf_addf(&line, "{\"step\":%ld,\"val_loss\":%.9g,\"val_%s\":%ld}\n", r->step,
				    vl, o->objective == FTK_OBJ_DPO ? "pairs" : "targets", vn);
			if ((rc = write_metrics(r, &line, err)) < 0) {
				strbuf_release(&line);
				goto out;
			}
		}
		int stopping = o->stop && *o->stop;
		if (o->reduce_max && (rc = o->reduce_max(o->reduce_ctx, &stopping, err)) < 0) {
			strbuf_release(&line);
			goto out;
		}
		if ((o->ckpt_every > 0 && r->step % o->ckpt_every == 0) || r->step == r->total ||
		    stopping) {
			if ((rc = save_ckpt(r, err)) < 0) {
				strbuf_release(&line);
				goto out;
			}
			if (o->on_checkpoint && r->writer) {
				strbuf_reset(&p);
				strbuf_addf(&p, "%s/checkpoints/step-%ld", o->out, r->step);
				strbuf_reset(&line);
				if ((rc = o->on_checkpoint(o->on_checkpoint_ctx, r->step, p.buf, &line,
							   err)) < 0 ||
				    (line.len && (strbuf_addch(&line, '\n'),
						  (rc = write_metrics(r, &line, err)) < 0))) {
					strbuf_release(&line);
					goto out;
				}
			}
		}
		if (stopping && r->step < r->total) {
			res->interrupted = 1;
			break;
		}
	}
	strbuf_release(&line);
	if (!res->interrupted && r->writer) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/adapter", o->out);
		if ((rc = ftk_adapter_save_model(r->m, o->model, p.buf, err)) < 0)
			goto out;
	}
	res->steps = r->step;
	res->first_val_loss = r->first_val;
	rc = 0;
out:
	res->seconds = ftk_now() - r->t0;
	res->threads = run_threads(o);
	snprintf(res->device, sizeof(res->device), "%s",
		 o->backend ? o->backend->ops->name : "cpu");
	release(r);
	strbuf_release(&p);
	return rc;
}
