/*
 * test_train.c: the training loop end to end on stories260K.
 *
 *   - finetune_learns_the_task: a short QLoRA fine-tune on a small task
 *     lowers the validation loss and moves greedy output toward the task.
 *   - sigkill_resume_is_exact / sigterm_*: the real ftk-train program
 *     (from PATH) is killed at a random step, resumed, and its metrics.jsonl
 *     (without the wall-clock fields) and final adapter bytes must equal
 *     those of an uninterrupted run.
 *   - grad_accum_equals_big_batch: two micro-batches of 2 rows give the same
 *     step as one of 4 (the loss normaliser spans the accumulation).
 *   - data: packing, document numbers, masks, shuffle and positions.
 */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "train_helpers.h"
#include "model/adapter.h"
#include "trainer/checkpoint.h"
#include "trainer/data.h"
#include "model/generate.h"
#include "trainer/train.h"
#include "lib/tokenizer.h"

/* Work in a fresh directory of its own (the suite's tests share a cwd). */
static void enter(const char *name)
{
	ck_assert_int_eq(mkdir(name, 0777), 0);
	ck_assert_int_eq(chdir(name), 0);
	setvbuf(stdout, NULL, _IONBF, 0);
}

static void base_opts(struct ftk_train_opts *o, const char *out)
{
	ftk_train_opts_default(o);
	strcpy(o->model, src_path(STORIES));
	strcpy(o->data, "train-shards");
	strcpy(o->out, out);
	o->seq_len = 64;
	o->batch = 4;
	o->lora.rank = 4;
	o->lora.alpha = 8;
	o->lr = 1e-2;
	o->threads = 1;
}

/* Greedy text from BOS, 40 tokens, with the model as it is. */
static void greedy(struct ftk_model *m, struct strbuf *out)
{
	struct ftk_tokenizer *tok;
	struct ftk_error e;
	ck_assert_int_eq(ftk_tokenizer_load(&tok, src_path(STORIES "/tokenizer.json"), &e), 0);
	struct ftk_gen_opts g;
	ftk_gen_opts_default(&g);
	g.max_tokens = 40;
	uint32_t bos = 1, ids[64];
	int n;
	ck_assert_msg(ftk_generate(m, &bos, 1, &g, ids, 64, &n, NULL, &e) == 0, "%s", e.msg);
	strbuf_reset(out);
	ck_assert_int_eq(ftk_tokenizer_decode(tok, ids, (size_t)n, 1, out, &e), 0);
	ftk_tokenizer_free(tok);
}

START_TEST(finetune_learns_the_task)
{
	enter("finetune_learns_the_task");
	char **tr = task_texts(0, 40), **va = task_texts(40, 8);
	make_shards("train-shards", (const char *const *)tr, 40, FTK_SHARD_SFT);
	make_shards("val-shards", (const char *const *)va, 8, FTK_SHARD_SFT);
	free_texts(tr, 40);
	free_texts(va, 8);

	struct ftk_train_opts o;
	base_opts(&o, "run-ft");
	strcpy(o.val, "val-shards");
	o.max_steps = 30;
	o.sched.warmup = 3;
	struct ftk_train_result res;
	struct ftk_error e;
	ck_assert_msg(ftk_train_run(&o, 0, &res, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(res.steps, 30);
	ck_assert(!res.interrupted);

	/* greedy output of the base model and of base + the trained adapter */
	struct ftk_model *m;
	struct ftk_load_opts lo = { FTK_QUANT_NF4, NULL, 1, 0 };
	ck_assert_int_eq(ftk_model_load(&m, o.model, &lo, &e), 0);
	struct strbuf before = STRBUF_INIT, after = STRBUF_INIT;
	greedy(m, &before);
	struct ftk_adapter *a;
	ck_assert_msg(ftk_adapter_load("run-ft/adapter", &a, &e) == 0, "%s", e.msg);
	ck_assert_msg(ftk_adapter_apply(m, a, NULL, &e) == 0, "%s", e.msg);
	greedy(m, &after);
	printf("fine-tune: val loss %.4f -> %.4f; greedy before: \"%s\"; after: \"%s\"\n",
	       res.first_val_loss, res.last_val_loss, before.buf, after.buf);
	ck_assert_double_lt(res.last_val_loss, 0.6 * res.first_val_loss);
	ck_assert_ptr_null(strstr(before.buf, "liked to sing"));
	ck_assert_ptr_nonnull(strstr(after.buf, "liked to sing"));
	ck_assert_ptr_nonnull(strstr(after.buf, "Once upon a time, there was a"));
	strbuf_release(&before);
	strbuf_release(&after);
	ftk_adapter_free(a);
	ftk_model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- resume */

static pid_t spawn(char *const argv[], const char *err_path)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;
	if (!f)
		return 0;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* metrics.jsonl without the wall-clock fields, one compact line per record. */
static void metrics_canon(const char *path, struct strbuf *out)
{
	struct strbuf sb = STRBUF_INIT;
	read_all(path, &sb);
	strbuf_reset(out);
	char *save = NULL;
	for (char *line = strtok_r(sb.buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cJSON *j = cJSON_Parse(line);
		ck_assert_msg(j != NULL, "bad metrics line '%s'", line);
		cJSON_DeleteItemFromObject(j, "tokens_per_s");
		cJSON_DeleteItemFromObject(j, "elapsed");
		char *s = cJSON_PrintUnformatted(j);
		strbuf_addstr(out, s);
		strbuf_addch(out, '\n');
		free(s);
		cJSON_Delete(j);
	}
	strbuf_release(&sb);
}

/* Fail naming the first line where two texts differ. */
static void first_difference(const char *a, const char *b)
{
	int line = 1;
	const char *la = a, *lb = b;
	while (*a && *a == *b) {
		if (*a == '\n') {
			line++;
			la = a + 1;
			lb = b + 1;
		}
		a++, b++;
	}
	ck_assert_msg(*a == *b, "metrics differ at line %d:\n  reference: %.200s\n  this run:  %.200s",
		      line, la, lb);
}

static void train_args(char **argv, const char *out)
{
	int i = 0;
	static char model[4096];
	strcpy(model, src_path(STORIES));
	argv[i++] = "ftk-train";
	argv[i++] = "--model";
	argv[i++] = model;
	argv[i++] = "--data";
	argv[i++] = "train-shards";
	argv[i++] = "--val";
	argv[i++] = "val-shards";
	argv[i++] = "--out";
	argv[i++] = (char *)out;
	argv[i++] = "--seq-len";
	argv[i++] = "128";
	argv[i++] = "--batch";
	argv[i++] = "2";
	argv[i++] = "--grad-accum";
	argv[i++] = "2";
	argv[i++] = "--rank";
	argv[i++] = "4";
	argv[i++] = "--dropout";
	argv[i++] = "0.1";
	argv[i++] = "--lr";
	argv[i++] = "5e-3";
	argv[i++] = "--warmup";
	argv[i++] = "4";
	argv[i++] = "--max-steps";
	argv[i++] = "30";
	argv[i++] = "--eval-every";
	argv[i++] = "5";
	argv[i++] = "--ckpt-every";
	argv[i++] = "3";
	argv[i++] = "--keep";
	argv[i++] = "2";
	argv[i++] = "--threads";
	argv[i++] = "2";
	argv[i++] = "--checkpoint-activations";
	argv[i++] = "-q";
	argv[i] = NULL;
}

static int wait_rc(pid_t pid)
{
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void interrupted_equals_uninterrupted(int sig)
{
	char **tr = task_texts(0, 30), **va = task_texts(40, 4);
	make_shards("train-shards", (const char *const *)tr, 30, FTK_SHARD_SFT);
	make_shards("val-shards", (const char *const *)va, 4, FTK_SHARD_SFT);
	free_texts(tr, 30);
	free_texts(va, 4);
	char *argv[64];

	train_args(argv, "run-a");
	ck_assert_int_eq(wait_rc(spawn(argv, "a.err")), 0);
	int total = count_lines("run-a/metrics.jsonl");
	ck_assert_int_gt(total, 20);

	/*
	 * Signal the same run when metrics.jsonl has k lines (k random).  On a
	 * busy machine the run may reach its end before the signal lands; then
	 * it is tried again with a smaller k, so that what is tested is always
	 * an interrupted run.
	 */
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	int k = 2 + rand() % (total - 8), rc = -1, tries = 0;
	for (;; tries++) {
		ck_assert_msg(tries < 6, "the run always ended before the signal");
		system("rm -rf run-b");
		train_args(argv, "run-b");
		pid_t pid = spawn(argv, "b.err");
		int ended = 0;
		while (!ended && count_lines("run-b/metrics.jsonl") < k) {
			int st;
			ended = waitpid(pid, &st, WNOHANG) == pid;
			usleep(200);
		}
		if (ended) {
			k = k / 2 > 2 ? k / 2 : 2;
			continue;
		}
		kill(pid, sig);
		rc = wait_rc(pid);
		struct strbuf e = STRBUF_INIT;
		read_all("b.err", &e);
		int stopped = strstr(e.buf, "checkpoint saved; continue with: ftk-train --resume run-b") != NULL;
		strbuf_release(&e);
		if (sig == SIGKILL ? rc == 128 + SIGKILL : stopped)
			break;
		ck_assert_int_eq(rc, 0);	/* finished before the signal landed: again */
		k = k / 2 > 2 ? k / 2 : 2;
	}
	int at = count_lines("run-b/metrics.jsonl");
	printf("signal %d after %d of %d metrics lines (exit %d, %d lines written, %d retries)\n",
	       sig, k, total, rc, at, tries);
	ck_assert_int_eq(rc, sig == SIGKILL ? 128 + SIGKILL : 0);
	struct stat st;
	ck_assert_int_ne(stat("run-b/adapter/adapter_model.safetensors", &st), 0);

	char *rargv[] = { "ftk-train", "--resume", "run-b", "-q", NULL };
	ck_assert_int_eq(wait_rc(spawn(rargv, "c.err")), 0);

	struct strbuf ma = STRBUF_INIT, mb = STRBUF_INIT, fa = STRBUF_INIT, fb = STRBUF_INIT;
	metrics_canon("run-a/metrics.jsonl", &ma);
	metrics_canon("run-b/metrics.jsonl", &mb);
	first_difference(ma.buf, mb.buf);
	read_all("run-a/adapter/adapter_model.safetensors", &fa);
	read_all("run-b/adapter/adapter_model.safetensors", &fb);
	ck_assert_uint_eq(fa.len, fb.len);
	ck_assert_msg(!memcmp(fa.buf, fb.buf, fa.len), "final adapters differ");
	read_all("run-a/adapter/adapter_config.json", &fa);
	read_all("run-b/adapter/adapter_config.json", &fb);
	ck_assert_str_eq(fa.buf, fb.buf);
	/* --keep 2 */
	long *steps;
	ck_assert_int_eq(ftk_ckpt_list("run-b", &steps, NULL), 2);
	free(steps);
	strbuf_release(&ma);
	strbuf_release(&mb);
	strbuf_release(&fa);
	strbuf_release(&fb);
}

START_TEST(sigkill_resume_is_exact)
{
	enter("sigkill_resume_is_exact");
	interrupted_equals_uninterrupted(SIGKILL);
}
END_TEST

START_TEST(sigterm_saves_and_resume_is_exact)
{
	enter("sigterm_saves_and_resume_is_exact");
	interrupted_equals_uninterrupted(SIGTERM);
}
END_TEST

/*
 * A run killed before its first checkpoint starts again from step 0 on
 * --resume, replacing whatever metrics lines the dead process left; a
 * checkpoint made from other shards is refused.
 */
START_TEST(resume_without_checkpoint_and_changed_shards)
{
	enter("resume_without_checkpoint_and_changed_shards");
	char **tr = task_texts(0, 12);
	make_shards("train-shards", (const char *const *)tr, 12, FTK_SHARD_SFT);
	struct ftk_train_opts o;
	struct ftk_train_result r;
	struct ftk_error e;
	base_opts(&o, "run-a");
	o.max_steps = 4;
	ck_assert_msg(ftk_train_run(&o, 0, &r, &e) == 0, "%s", e.msg);
	/* run-b: a config and the half-written metrics of a process that died early */
	ck_assert_int_eq(mkdir("run-b", 0777), 0);
	char *cfg = ftk_train_opts_json(&o);
	FILE *f = fopen("run-b/train_config.json", "w");
	fputs(cfg, f);
	fclose(f);
	free(cfg);
	f = fopen("run-b/metrics.jsonl", "w");
	fputs("{\"step\":1,\"loss\":9.9}\n{\"step\":2,\"lo", f);
	fclose(f);
	base_opts(&o, "run-b");
	o.max_steps = 4;
	ck_assert_msg(ftk_train_run(&o, 1, &r, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(r.resumed, 0);
	ck_assert_int_eq(r.steps, 4);
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	metrics_canon("run-a/metrics.jsonl", &a);
	metrics_canon("run-b/metrics.jsonl", &b);
	first_difference(a.buf, b.buf);
	/* now the shards change under a run that has a checkpoint */
	make_shards("train-shards", (const char *const *)tr, 10, FTK_SHARD_SFT);
	free_texts(tr, 12);
	ck_assert_int_eq(ftk_train_run(&o, 1, &r, &e), FTK_EMISMATCH);
	ck_assert_ptr_nonnull(strstr(e.msg, "the checkpoint was made with 12 training sequences"));
	strbuf_release(&a);
	strbuf_release(&b);
}
END_TEST

/* --epochs: the run is as many steps as the epochs' rows need, and ends near epoch N. */
START_TEST(epochs_set_the_length)
{
	enter("epochs_set_the_length");
	char **tr = task_texts(0, 12);
	make_shards("train-shards", (const char *const *)tr, 12, FTK_SHARD_SFT);
	free_texts(tr, 12);
	struct ftk_data *d;
	struct ftk_error e;
	char tj[4096];
	snprintf(tj, sizeof(tj), "%s", src_path(STORIES "/tokenizer.json"));
	struct ftk_data_opts dop = { "train-shards", tj, 512, FTK_SHARD_SFT, 64, 2, 42, 1 };
	ck_assert_int_eq(ftk_data_open(&d, &dop, &e), 0);
	long rows = (long)ftk_data_rows_per_epoch(d);
	ftk_data_free(d);
	struct ftk_train_opts o;
	struct ftk_train_result r;
	base_opts(&o, "run");
	o.batch = 2;
	o.epochs = 3;
	ck_assert_msg(ftk_train_run(&o, 0, &r, &e) == 0, "%s", e.msg);
	printf("epochs: %ld rows per epoch, batch 2, 3 epochs -> %ld steps\n", rows, r.total_steps);
	ck_assert_int_eq(r.total_steps, 3 * ((rows + 1) / 2));
	ck_assert_int_eq(r.steps, r.total_steps);
	struct strbuf sb = STRBUF_INIT;
	read_all("run/metrics.jsonl", &sb);
	const char *last = strrchr(sb.buf, '{');
	cJSON *j = cJSON_Parse(last);
	double ep = cJSON_GetObjectItem(j, "epoch")->valuedouble;
	ck_assert_msg(ep > 2.7 && ep < 3.3, "ended at epoch %g", ep);
	cJSON_Delete(j);
	strbuf_release(&sb);
}
END_TEST

/* One step of batch 4 equals one step of 2 micro-batches of 2. */
START_TEST(grad_accum_equals_big_batch)
{
	enter("grad_accum_equals_big_batch");
	char **tr = task_texts(0, 12);
	make_shards("train-shards", (const char *const *)tr, 12, FTK_SHARD_SFT);
	free_texts(tr, 12);
	struct ftk_train_opts o;
	struct ftk_train_result ra, rb;
	struct ftk_error e;
	base_opts(&o, "run-big");
	o.max_steps = 1;
	o.seq_len = 32;	/* one story per row, so both runs see the same rows */
	ck_assert_msg(ftk_train_run(&o, 0, &ra, &e) == 0, "%s", e.msg);
	base_opts(&o, "run-accum");
	o.max_steps = 1;
	o.seq_len = 32;
	o.batch = 2;
	o.grad_accum = 2;
	ck_assert_msg(ftk_train_run(&o, 0, &rb, &e) == 0, "%s", e.msg);
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	read_all("run-big/metrics.jsonl", &a);
	read_all("run-accum/metrics.jsonl", &b);
	cJSON *ja = cJSON_Parse(a.buf), *jb = cJSON_Parse(b.buf);
	double la = cJSON_GetObjectItem(ja, "loss")->valuedouble;
	double lb = cJSON_GetObjectItem(jb, "loss")->valuedouble;
	double ga = cJSON_GetObjectItem(ja, "grad_norm")->valuedouble;
	double gb = cJSON_GetObjectItem(jb, "grad_norm")->valuedouble;
	printf("accumulation: loss %.9g vs %.9g, grad norm %.9g vs %.9g\n", la, lb, ga, gb);
	ck_assert_double_eq_tol(la, lb, 1e-5 * la);
	ck_assert_double_eq_tol(ga, gb, 1e-4 * ga);
	ck_assert_int_eq(cJSON_GetObjectItem(ja, "tokens")->valueint,
			 cJSON_GetObjectItem(jb, "tokens")->valueint);
	cJSON_Delete(ja);
	cJSON_Delete(jb);
	strbuf_release(&a);
	strbuf_release(&b);
}
END_TEST

START_TEST(refuses_existing_run_and_dpo_from_adapter)
{
	enter("refuses_existing_run_and_dpo_from_adapter");
	char **tr = task_texts(0, 4);
	make_shards("train-shards", (const char *const *)tr, 4, FTK_SHARD_SFT);
	free_texts(tr, 4);
	struct ftk_train_opts o;
	struct ftk_train_result r;
	struct ftk_error e;
	base_opts(&o, "run-x");
	o.max_steps = 1;
	ck_assert_msg(ftk_train_run(&o, 0, &r, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(ftk_train_run(&o, 0, &r, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "already holds a run: continue it with --resume, or choose another --out");
	base_opts(&o, "run-y");
	o.objective = FTK_OBJ_DPO;
	strcpy(o.init_adapter, "run-x/adapter");
	ck_assert_int_eq(ftk_train_run(&o, 0, &r, &e), FTK_EUSAGE);
	ck_assert_ptr_nonnull(strstr(e.msg, "DPO cannot start from an unmerged adapter"));
	ck_assert_ptr_nonnull(strstr(e.msg, "merge it first"));
	/* SFT shards for DPO are refused by kind */
	o.init_adapter[0] = 0;
	ck_assert_int_eq(ftk_train_run(&o, 0, &r, &e), FTK_EMISMATCH);
	ck_assert_str_eq(e.msg, "these are SFT shards; --objective dpo needs preference shards");
}
END_TEST

/* DPO on preference pairs raises the margin of chosen over rejected. */
START_TEST(dpo_prefers_chosen)
{
	enter("dpo_prefers_chosen");
	char **good = task_texts(0, 16);
	const char *pairs[32];
	char *bad[16];
	for (int i = 0; i < 16; i++) {
		struct strbuf sb = STRBUF_INIT;
		strbuf_addstr(&sb, good[i]);
		char *p = strstr(sb.buf, "liked to sing");
		memcpy(p, "hated to run ", 13);
		bad[i] = strbuf_detach(&sb, NULL);
		pairs[2 * i] = good[i];
		pairs[2 * i + 1] = bad[i];
	}
	make_shards("pref-shards", pairs, 32, FTK_SHARD_PREFERENCE);
	make_shards("pref-val", pairs, 8, FTK_SHARD_PREFERENCE);
	struct ftk_train_opts o;
	struct ftk_train_result r;
	struct ftk_error e;
	base_opts(&o, "run-dpo");
	strcpy(o.data, "pref-shards");
	strcpy(o.val, "pref-val");
	o.objective = FTK_OBJ_DPO;
	o.beta = 0.5;
	o.batch = 2;
	o.max_steps = 12;
	o.lr = 5e-3;
	ck_assert_msg(ftk_train_run(&o, 0, &r, &e) == 0, "%s", e.msg);
	printf("dpo: val loss %.4f -> %.4f (log 2 = %.4f at the start)\n", r.first_val_loss,
	       r.last_val_loss, log(2.0));
	/* the reference is the start point: the first DPO loss is exactly log 2 */
	ck_assert_double_eq_tol(r.first_val_loss, log(2.0), 1e-9);
	ck_assert_double_lt(r.last_val_loss, 0.5 * log(2.0));
	for (int i = 0; i < 16; i++)
		free(bad[i]);
	free_texts(good, 16);
}
END_TEST

/* The DPO objective of rows (pairs) by forward passes only. */
static double dpo_value(struct ftk_model *m, const uint32_t *ids, const uint8_t *mask,
			const uint32_t *doc, int rows, int T, const double *ref, double beta,
			double norm)
{
	double f = 0, L[8];
	for (int i = 0; i < rows; i++) {
		struct ftk_batch b = { 1, T, ids + i * T, mask + i * T, doc + i * T };
		long nt;
		ck_assert_int_eq(ftk_model_forward(m, &b, NULL, &L[i], &nt, NULL), 0);
	}
	for (int i = 0; i < rows; i += 2) {
		double z = beta * ((ref[i] - L[i]) - (ref[i + 1] - L[i + 1]));
		f += (z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z))) / norm;
	}
	return f;
}

/*
 * ftk_dpo_pairs' gradient against central finite differences of the DPO
 * objective along the gradient's own direction (the derivative there is the
 * gradient's norm).
 */
START_TEST(dpo_gradient_matches_finite_differences)
{
	enter("dpo_gradient_matches_finite_differences");
	struct ftk_model *m;
	struct ftk_error e;
	struct ftk_load_opts lo = { FTK_QUANT_NONE, NULL, 1, 0 };
	ck_assert_int_eq(ftk_model_load(&m, src_path(STORIES), &lo, &e), 0);
	struct ftk_lora_opts lora = { FTK_LORA_ALL, 4, 8, 0, 0, 1 };
	ck_assert_int_eq(ftk_model_lora_init(m, &lora, &e), 0);
	/* the LoRA arrays are backend memory: set B through a host copy */
	size_t n;
	ftk_model_lora_flat(m, &n);
	float *p = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
	ftk_model_lora_download(m, p);
	for (size_t i = 0; i < ftk_model_lora_count(m); i++) {
		const struct ftk_lora_tensor *t = ftk_model_lora_tensor(m, i);
		if (t->is_b)
			for (int k = 0; k < t->rows * t->cols; k++)
				p[t->offset + k] = 0.05f * (float)sin(k * 0.7 + (double)i);
	}
	ftk_model_lora_upload(m, p);
	/* two pairs, one story per row */
	enum { T = 32, ROWS = 4 };
	char **good = task_texts(0, 2);
	const char *texts[ROWS] = { good[0], "Once upon a time, there was a cat named Lily. The cat hated to run.",
				    good[1], "Once upon a time, there was a dog named Tom. The dog was sad." };
	struct ftk_tokenizer *tok;
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	ck_assert_int_eq(ftk_tokenizer_load(&tok, src_path(STORIES "/tokenizer.json"), &e), 0);
	uint32_t ids[ROWS * T], doc[ROWS * T];
	uint8_t mask[ROWS * T];
	for (int r = 0; r < ROWS; r++) {
		long k = ftk_tokenizer_encode(tok, texts[r], strlen(texts[r]), FTK_TOK_ADD_SPECIAL, &tk, &e);
		ck_assert(k > 1 && k <= T);
		for (int t = 0; t < T; t++) {
			ids[r * T + t] = t < k ? tk.ids[t] : 0;
			mask[r * T + t] = t > 0 && t < k;
			doc[r * T + t] = t < k ? 0 : 1;
		}
	}
	ftk_tokens_release(&tk);
	ftk_tokenizer_free(tok);
	free_texts(good, 2);

	/* references away from the current losses, so that z is not 0 */
	double ref[ROWS], beta = 0.7, norm = 2;
	for (int r = 0; r < ROWS; r++) {
		struct ftk_batch b = { 1, T, ids + r * T, mask + r * T, doc + r * T };
		long nt;
		ck_assert_int_eq(ftk_model_forward(m, &b, NULL, &ref[r], &nt, &e), 0);
	}
	ref[0] += 0.5, ref[1] -= 0.3, ref[2] -= 0.2, ref[3] += 0.4;

	struct ftk_backend *be = ftk_model_backend(m);
	float *scratch = be->ops->alloc(be, n * sizeof(float)), *d = malloc(n * sizeof(float));
	float *p0 = malloc(n * sizeof(float));
	ftk_model_zero_grad(m);
	struct ftk_batch b = { ROWS, T, ids, mask, doc };
	double loss = 0;
	long right = 0;
	ck_assert_int_eq(ftk_dpo_pairs(m, &b, ref, beta, norm, scratch, &loss, &right, &e), 0);
	ftk_model_lora_grad_download(m, g);
	double gn = 0;
	for (size_t i = 0; i < n; i++)
		gn += (double)g[i] * g[i];
	gn = sqrt(gn);
	for (size_t i = 0; i < n; i++)
		d[i] = (float)(g[i] / gn);
	memcpy(p0, p, n * sizeof(float));
	double f0 = dpo_value(m, ids, mask, doc, ROWS, T, ref, beta, norm);
	double eps = 1e-2, fp, fm;
	for (size_t i = 0; i < n; i++)
		p[i] = p0[i] + (float)eps * d[i];
	ftk_model_lora_upload(m, p);
	fp = dpo_value(m, ids, mask, doc, ROWS, T, ref, beta, norm);
	for (size_t i = 0; i < n; i++)
		p[i] = p0[i] - (float)eps * d[i];
	ftk_model_lora_upload(m, p);
	fm = dpo_value(m, ids, mask, doc, ROWS, T, ref, beta, norm);
	double fd = (fp - fm) / (2 * eps);
	printf("dpo gradient: loss %.6f (from the step %.6f), |g| %.6g, finite difference %.6g, "
	       "rel diff %.3g (tolerance 1e-2)\n", f0, loss / norm, gn, fd, fabs(fd - gn) / gn);
	ck_assert_double_eq_tol(f0, loss / norm, 1e-9);
	ck_assert_double_gt(gn, 1e-3);
	ck_assert_double_le(fabs(fd - gn) / gn, 1e-2);
	be->ops->free(be, scratch);
	free(d), free(p0), free(p), free(g);
	ftk_model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- data */

static void write_ids(const char *dir, const uint32_t *lens, int n, int kind, const char *tj)
{
	struct ftk_shard_info info;
	struct ftk_error e;
	memset(&info, 0, sizeof(info));
	info.kind = (uint32_t)kind;
	info.vocab_size = 512;
	ck_assert_int_eq(ftk_file_hash(tj, info.tokenizer_hash, &e), 0);
	strcpy(info.template_name, "raw");
	struct ftk_shard_writer *w;
	ck_assert_int_eq(ftk_shard_writer_open(&w, dir, &info, 0, &e), 0);
	uint32_t id = 10;
	for (int s = 0; s < n; s++) {
		uint32_t ids[64];
		uint8_t mask[64];
		for (uint32_t i = 0; i < lens[s]; i++) {
			ids[i] = id++;
			mask[i] = 1;
		}
		ck_assert_int_eq(ftk_shard_write(w, ids, mask, lens[s], &e), 0);
	}
	ck_assert_int_eq(ftk_shard_writer_close(w, &e), 0);
}

START_TEST(data_packs_documents)
{
	enter("data_packs_documents");
	const char *tj = src_path(STORIES "/tokenizer.json");
	uint32_t lens[] = { 5, 3, 7, 2, 12 };
	write_ids("d", lens, 5, FTK_SHARD_SFT, tj);
	struct ftk_data *d;
	struct ftk_error e;
	struct ftk_data_opts o = { "d", tj, 512, FTK_SHARD_SFT, 8, 2, 1, 0 };
	ck_assert_msg(ftk_data_open(&d, &o, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ftk_data_truncated(d), 1);
	ck_assert_uint_eq(ftk_data_rows_per_epoch(d), 4);
	struct ftk_data_batch b;
	ftk_data_batch_init(&b, d);
	ck_assert_int_eq(ftk_data_next(d, &b), 2);
	/* row 0: seq0 (ids 10..14) + seq1 (15..17); row 1: seq2 (18..24) + pad */
	uint32_t want_ids[16] = { 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 0 };
	uint8_t want_mask[16] = { 0, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0 };
	uint32_t want_doc[16] = { 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1 };
	ck_assert_mem_eq(b.ids, want_ids, sizeof(want_ids));
	ck_assert_mem_eq(b.mask, want_mask, sizeof(want_mask));
	ck_assert_mem_eq(b.doc, want_doc, sizeof(want_doc));
	ck_assert_int_eq(b.targets, 12);
	ck_assert_int_eq(b.tokens, 15);
	/* row 2: seq3 + pad; row 3: seq4 cut to 8; then the pass is over */
	ck_assert_int_eq(ftk_data_next(d, &b), 2);
	ck_assert_uint_eq(b.ids[8], 27);
	ck_assert_uint_eq(b.ids[15], 34);
	ck_assert_int_eq(ftk_data_next(d, &b), 0);
	ftk_data_batch_release(&b);
	ftk_data_free(d);
}
END_TEST

START_TEST(data_shuffle_is_a_function_of_seed_and_position)
{
	enter("data_shuffle_is_a_function_of_seed_and_position");
	const char *tj = src_path(STORIES "/tokenizer.json");
	uint32_t lens[40];
	for (int i = 0; i < 40; i++)
		lens[i] = 2 + (uint32_t)(i % 5);
	write_ids("d", lens, 40, FTK_SHARD_SFT, tj);
	struct ftk_data *a, *b;
	struct ftk_error e;
	struct ftk_data_opts o = { "d", tj, 512, FTK_SHARD_SFT, 16, 3, 7, 1 };
	ck_assert_int_eq(ftk_data_open(&a, &o, &e), 0);
	ck_assert_int_eq(ftk_data_open(&b, &o, &e), 0);
	struct ftk_data_batch x, y;
	ftk_data_batch_init(&x, a);
	ftk_data_batch_init(&y, b);
	/* run a for 9 batches (past an epoch), remembering batch 5's position */
	struct ftk_data_pos pos5;
	uint32_t ids5[48];
	int differs_from_file_order = 0;
	for (int i = 0; i < 9; i++) {
		if (i == 5)
			ftk_data_get_pos(a, &pos5);
		ck_assert_int_eq(ftk_data_next(a, &x), 3);
		if (i == 0)
			differs_from_file_order = x.ids[0] != 10;
		if (i == 5)
			memcpy(ids5, x.ids, sizeof(ids5));
	}
	struct ftk_data_pos end;
	ftk_data_get_pos(a, &end);
	ck_assert_uint_ge(end.epoch, 1);
	ck_assert(differs_from_file_order);
	ftk_data_set_pos(b, &pos5);
	ck_assert_int_eq(ftk_data_next(b, &y), 3);
	ck_assert_mem_eq(y.ids, ids5, sizeof(ids5));
	ftk_data_batch_release(&x);
	ftk_data_batch_release(&y);
	ftk_data_free(a);
	ftk_data_free(b);
}
END_TEST

/* A pair whose answers differ only past --seq-len teaches nothing: skipped. */
START_TEST(data_skips_pairs_equal_within_seq_len)
{
	enter("data_skips_pairs_equal_within_seq_len");
	const char *tj = src_path(STORIES "/tokenizer.json");
	struct ftk_shard_info info;
	struct ftk_error e;
	memset(&info, 0, sizeof(info));
	info.kind = FTK_SHARD_PREFERENCE;
	info.vocab_size = 512;
	ck_assert_int_eq(ftk_file_hash(tj, info.tokenizer_hash, &e), 0);
	struct ftk_shard_writer *w;
	ck_assert_int_eq(ftk_shard_writer_open(&w, "p", &info, 0, &e), 0);
	/* pair 0 differs at token 3, pair 1 only at token 9 */
	uint32_t c0[6] = { 1, 5, 6, 7, 8, 9 }, r0[6] = { 1, 5, 6, 17, 18, 19 };
	uint32_t c1[10] = { 1, 5, 6, 7, 8, 9, 10, 11, 12, 13 }, r1[10] = { 1, 5, 6, 7, 8, 9, 10, 11, 12, 99 };
	uint8_t m[10] = { 0, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
	ck_assert_int_eq(ftk_shard_write(w, c0, m, 6, &e), 0);
	ck_assert_int_eq(ftk_shard_write(w, r0, m, 6, &e), 0);
	ck_assert_int_eq(ftk_shard_write(w, c1, m, 10, &e), 0);
	ck_assert_int_eq(ftk_shard_write(w, r1, m, 10, &e), 0);
	ck_assert_int_eq(ftk_shard_writer_close(w, &e), 0);
	struct ftk_data *d;
	struct ftk_data_opts o = { "p", tj, 512, FTK_SHARD_PREFERENCE, 8, 1, 1, 0 };
	ck_assert_int_eq(ftk_data_open(&d, &o, &e), 0);
	ck_assert_uint_eq(ftk_data_units(d), 1);
	ck_assert_uint_eq(ftk_data_skipped(d), 1);
	ck_assert_uint_eq(ftk_data_truncated(d), 2);
	ftk_data_free(d);
	o.seq_len = 10;
	ck_assert_int_eq(ftk_data_open(&d, &o, &e), 0);
	ck_assert_uint_eq(ftk_data_units(d), 2);
	ftk_data_free(d);
	o.seq_len = 3;
	ck_assert_int_eq(ftk_data_open(&d, &o, &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "no preference pair has a token to learn in which chosen and "
				"rejected differ within the first 3 tokens: raise --seq-len");
}
END_TEST

START_TEST(data_refuses_other_tokenizer)
{
	enter("data_refuses_other_tokenizer");
	const char *tj = src_path(STORIES "/tokenizer.json");
	uint32_t lens[] = { 5 };
	write_ids("d", lens, 1, FTK_SHARD_SFT, tj);
	struct ftk_data *d;
	struct ftk_error e;
	const char *other = src_path("tests/fixtures/tokenizers/llama2/tokenizer.json");
	struct ftk_data_opts o = { "d", other, 512, FTK_SHARD_SFT, 8, 1, 1, 1 };
	ck_assert_int_eq(ftk_data_open(&d, &o, &e), FTK_EMISMATCH);
	ck_assert_str_eq(e.field, "tokenizer_hash");
	ck_assert_ptr_nonnull(strstr(e.msg, "run ftk-tokenize again with this model's tokenizer"));
	o.tokenizer_json = tj;
	o.vocab_size = 20;	/* ids go up to 14 */
	ck_assert_int_eq(ftk_data_open(&d, &o, &e), 0);
	ftk_data_free(d);
	o.vocab_size = 12;
	ck_assert_int_eq(ftk_data_open(&d, &o, &e), FTK_EMISMATCH);
	ck_assert_str_eq(e.msg, "sequence 0: token id 12 is outside the model's vocabulary of 12");
}
END_TEST

/*
 * The data-parallel hooks (issue 9), played by one process as two identical
 * ranks: the summed target count doubles, the summed gradients and loss
 * double, and the run must be bit for bit the single-process run.
 */
static int twice_count(void *ctx, long *n, struct ftk_error *err)
{
	(*(int *)ctx)++;
	*n *= 2;
	return 0;
}

static int twice_grads(void *ctx, float *g, size_t n, double *loss, struct ftk_error *err)
{
	for (size_t i = 0; i < n; i++)
		g[i] *= 2.0f;
	*loss *= 2;
	return 0;
}

START_TEST(reduce_hooks_two_identical_ranks)
{
	enter("reduce_hooks_two_identical_ranks");
	char **tr = task_texts(0, 12);
	make_shards("train-shards", (const char *const *)tr, 12, FTK_SHARD_SFT);
	free_texts(tr, 12);
	struct ftk_train_opts o;
	struct ftk_train_result r;
	struct ftk_error e;
	base_opts(&o, "single");
	o.max_steps = 6;
	o.lora.dropout = 0.1f;
	ck_assert_msg(ftk_train_run(&o, 0, &r, &e) == 0, "%s", e.msg);
	int calls = 0;
	base_opts(&o, "ranks");
	o.max_steps = 6;
	o.lora.dropout = 0.1f;
	o.reduce_count = twice_count;
	o.reduce_grads = twice_grads;
	o.reduce_ctx = &calls;
	ck_assert_msg(ftk_train_run(&o, 0, &r, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(calls, 6);
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	metrics_canon("single/metrics.jsonl", &a);
	metrics_canon("ranks/metrics.jsonl", &b);
	first_difference(a.buf, b.buf);
	read_all("single/adapter/adapter_model.safetensors", &a);
	read_all("ranks/adapter/adapter_model.safetensors", &b);
	ck_assert_uint_eq(a.len, b.len);
	ck_assert_msg(!memcmp(a.buf, b.buf, a.len), "adapters differ");
	strbuf_release(&a);
	strbuf_release(&b);
}
END_TEST

/* A two-process all-reduce over a socketpair: rank 0 sends first, rank 1
 * receives first (no deadlock on full buffers), and both add in rank order so
 * that the ranks hold the same bits. */
struct pair_ctx {
	int fd, rank;
};

static void xfer(int fd, void *buf, size_t n, int send)
{
	char *p = buf;
	while (n) {
		ssize_t k = send ? write(fd, p, n) : read(fd, p, n);
		ck_assert_int_gt(k, 0);
		p += k;
		n -= (size_t)k;
	}
}

static void exchange(struct pair_ctx *c, void *mine, void *theirs, size_t n)
{
	if (c->rank == 0) {
		xfer(c->fd, mine, n, 1);
		xfer(c->fd, theirs, n, 0);
	} else {
		xfer(c->fd, theirs, n, 0);
		xfer(c->fd, mine, n, 1);
	}
}

static int pair_count(void *ctx, long *n, struct ftk_error *err)
{
	long other;
	exchange(ctx, n, &other, sizeof(long));
	*n += other;
	return 0;
}

static int pair_grads(void *ctx, float *g, size_t n, double *loss, struct ftk_error *err)
{
	struct pair_ctx *c = ctx;
	float *other = malloc(n * sizeof(float));
	double ol;
	exchange(c, g, other, n * sizeof(float));
	exchange(c, loss, &ol, sizeof(double));
	for (size_t i = 0; i < n; i++)
		g[i] = c->rank == 0 ? g[i] + other[i] : other[i] + g[i];
	*loss = c->rank == 0 ? *loss + ol : ol + *loss;
	free(other);
	return 0;
}

/*
 * Data parallel over two processes (the CPU path issue 9 builds on): batch 2
 * on each of two ranks gives the losses of batch 4 on one process, within
 * rounding (the gradient sums run in another order), and only rank 0 writes.
 */
START_TEST(two_ranks_equal_one_process)
{
	enter("two_ranks_equal_one_process");
	char **tr = task_texts(0, 16);
	make_shards("train-shards", (const char *const *)tr, 16, FTK_SHARD_SFT);
	free_texts(tr, 16);
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid_t pids[2];
	for (int rank = 0; rank < 2; rank++) {
		pids[rank] = fork();
		ck_assert_int_ge(pids[rank], 0);
		if (pids[rank] == 0) {
			struct pair_ctx c = { sv[rank], rank };
			struct ftk_train_opts o;
			struct ftk_train_result r;
			struct ftk_error e;
			base_opts(&o, rank == 0 ? "ranks" : "rank1-out");
			o.batch = 2;
			o.seq_len = 32;
			o.max_steps = 6;
			o.rank = rank;
			o.world = 2;
			o.reduce_count = pair_count;
			o.reduce_grads = pair_grads;
			o.reduce_ctx = &c;
			_exit(ftk_train_run(&o, 0, &r, &e) == 0 ? 0 : 1);
		}
	}
	for (int rank = 0; rank < 2; rank++) {
		int st;
		ck_assert_int_eq(waitpid(pids[rank], &st, 0), pids[rank]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rank %d failed", rank);
	}
	struct stat sb;
	ck_assert_int_ne(stat("rank1-out", &sb), 0);
	struct ftk_train_opts o;
	struct ftk_train_result r;
	struct ftk_error e;
	base_opts(&o, "single");
	o.seq_len = 32;
	o.max_steps = 6;
	ck_assert_msg(ftk_train_run(&o, 0, &r, &e) == 0, "%s", e.msg);
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	read_all("single/metrics.jsonl", &a);
	read_all("ranks/metrics.jsonl", &b);
	char *sa = NULL, *sb2 = NULL;
	char *la = strtok_r(a.buf, "\n", &sa), *lb = strtok_r(b.buf, "\n", &sb2);
	double worst_loss = 0, worst_norm = 0;
	int lines = 0;
	for (; la && lb; la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb2), lines++) {
		cJSON *ja = cJSON_Parse(la), *jb = cJSON_Parse(lb);
		double x = cJSON_GetObjectItem(ja, "loss")->valuedouble;
		double y = cJSON_GetObjectItem(jb, "loss")->valuedouble;
		worst_loss = fmax(worst_loss, fabs(x - y) / x);
		x = cJSON_GetObjectItem(ja, "grad_norm")->valuedouble;
		y = cJSON_GetObjectItem(jb, "grad_norm")->valuedouble;
		worst_norm = fmax(worst_norm, fabs(x - y) / x);
		ck_assert_int_eq(cJSON_GetObjectItem(ja, "tokens")->valueint,
				 cJSON_GetObjectItem(jb, "tokens")->valueint);
		cJSON_Delete(ja);
		cJSON_Delete(jb);
	}
	printf("two ranks vs one process: %d steps, max rel diff loss %.3g, grad norm %.3g "
	       "(tolerance 1e-4)\n", lines, worst_loss, worst_norm);
	ck_assert_int_eq(lines, 6);
	ck_assert_ptr_null(la);
	ck_assert_ptr_null(lb);
	ck_assert_double_le(worst_loss, 1e-4);
	ck_assert_double_le(worst_norm, 1e-4);
	strbuf_release(&a);
	strbuf_release(&b);
}
END_TEST

/*
 * The CLI cases train on committed shards (tests/fixtures/trainer/shards-task)
 * so that they do not depend on ftk-tokenize.  They are this file's task
 * texts; this test checks that they still are, and FTK_WRITE_FIXTURES=1
 * rewrites them (FTK_WRITE_FIXTURES=1 make check T=test_train).
 */
START_TEST(fixture_shards_are_the_task)
{
	enter("fixture_shards_are_the_task");
	const char *dirs[2] = { "train", "val" };
	int from[2] = { 0, 40 }, n[2] = { 40, 8 };
	int write = getenv("FTK_WRITE_FIXTURES") && !strcmp(getenv("FTK_WRITE_FIXTURES"), "1");
	for (int k = 0; k < 2; k++) {
		char **t = task_texts(from[k], n[k]);
		struct strbuf fix = STRBUF_INIT;
		strbuf_addf(&fix, "tests/fixtures/trainer/shards-task/%s", dirs[k]);
		make_shards(write ? src_path(fix.buf) : dirs[k], (const char *const *)t, n[k],
			    FTK_SHARD_SFT);
		free_texts(t, n[k]);
		struct ftk_shard_info ia, ib;
		uint32_t *ida, *idb;
		uint8_t *ma, *mb;
		uint64_t *oa, *ob, na, nb;
		struct ftk_error e;
		ck_assert_msg(ftk_shard_load_all(src_path(fix.buf), &ia, &ida, &ma, &oa, &na, &e) == 0,
			      "%s", e.msg);
		ck_assert_int_eq(ftk_shard_load_all(write ? src_path(fix.buf) : dirs[k], &ib, &idb, &mb,
						    &ob, &nb, &e), 0);
		ck_assert_uint_eq(na, nb);
		ck_assert_str_eq(ia.tokenizer_hash, ib.tokenizer_hash);
		ck_assert_mem_eq(oa, ob, (na + 1) * sizeof(uint64_t));
		ck_assert_mem_eq(ida, idb, oa[na] * sizeof(uint32_t));
		ck_assert_mem_eq(ma, mb, oa[na]);
		free(ida), free(idb), free(ma), free(mb), free(oa), free(ob);
		strbuf_release(&fix);
	}
}
END_TEST

static Suite *train_suite(void)
{
	Suite *s = suite_create("train");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, fixture_shards_are_the_task);
	tcase_add_test(tc, data_packs_documents);
	tcase_add_test(tc, data_shuffle_is_a_function_of_seed_and_position);
	tcase_add_test(tc, data_refuses_other_tokenizer);
	tcase_add_test(tc, data_skips_pairs_equal_within_seq_len);
	tcase_add_test(tc, finetune_learns_the_task);
	tcase_add_test(tc, grad_accum_equals_big_batch);
	tcase_add_test(tc, epochs_set_the_length);
	tcase_add_test(tc, resume_without_checkpoint_and_changed_shards);
	tcase_add_test(tc, reduce_hooks_two_identical_ranks);
	tcase_add_test(tc, two_ranks_equal_one_process);
	tcase_add_test(tc, refuses_existing_run_and_dpo_from_adapter);
	tcase_add_test(tc, dpo_prefers_chosen);
	tcase_add_test(tc, dpo_gradient_matches_finite_differences);
	tcase_add_test(tc, sigkill_resume_is_exact);
	tcase_add_test(tc, sigterm_saves_and_resume_is_exact);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN_GUARDED(train_suite)
