/*
 * test_checkpoint.c: checkpoints save everything, keep the last K, and
 * survive SIGKILL at any instant of a save; a damaged one (a flipped byte in
 * any of its files, a truncated or missing file) is found by its checksums,
 * and a resume picks the newest intact one.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "testutil.h"
#include "lib/strbuf.h"
#include "model/backend.h"
#include "trainer/checkpoint.h"

#define STORIES "datasets/models/stories260K"

static struct ftk_model *model_with_lora(uint64_t seed)
{
	struct ftk_model *m;
	struct ftk_error e;
	struct ftk_load_opts lo = { FTK_QUANT_NF4, NULL, 1, 0 };
	ck_assert_msg(ftk_model_load(&m, src_path(STORIES), &lo, &e) == 0, "%s", e.msg);
	struct ftk_lora_opts o = { FTK_LORA_ALL, 4, 8, 0, 0.1f, seed };
	ck_assert_int_eq(ftk_model_lora_init(m, &o, &e), 0);
	/* B is zero after init: give every parameter a distinct value (the
	 * arrays are backend memory: through a host copy) */
	size_t n;
	ftk_model_lora_flat(m, &n);
	float *p = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		p[i] = (float)sin((double)i + (double)seed);
	ftk_model_lora_upload(m, p);
	free(p);
	return m;
}

/* A host copy of n floats of backend memory (free it). */
static float *host_copy(struct ftk_backend *be, const float *x, size_t n)
{
	float *h = malloc(n * sizeof(float) + 1);
	be->ops->download(be, h, x, n * sizeof(float));
	return h;
}

static cJSON *state(long step)
{
	cJSON *s = cJSON_CreateObject();
	cJSON_AddNumberToObject(s, "step", (double)step);
	cJSON_AddStringToObject(s, "data_cursor", "12345678901234567");
	return s;
}

static const char config[] = "{\"rank\": 4}\n";

START_TEST(save_and_load_restores_everything)
{
	struct ftk_error e;
	struct ftk_model *m = model_with_lora(1);
	size_t n;
	float *p = ftk_model_lora_flat(m, &n);	/* backend memory, as the trainer steps it */
	struct ftk_backend *be = ftk_model_backend(m);
	struct ftk_adamw_opts ao = FTK_ADAMW_DEFAULTS;
	struct ftk_adamw opt, opt2;
	ck_assert_int_eq(ftk_adamw_init_on(&opt, n, &ao, be, &e), 0);
	float *hg = calloc(n, sizeof(float)), *g = be->ops->alloc(be, n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		hg[i] = (float)cos((double)i);
	be->ops->upload(be, g, hg, n * sizeof(float));
	ftk_adamw_step(&opt, p, g, 1e-3);
	ftk_adamw_step(&opt, p, g, 1e-3);
	cJSON *st = state(7);
	ck_assert_msg(ftk_ckpt_save("run1", 7, m, "stories260K", &opt, st, config, 3, &e) == 0, "%s",
		      e.msg);
	char dir[512];
	ck_assert_int_eq(ftk_ckpt_latest("run1", dir, sizeof(dir), &e), 7);
	ck_assert_str_eq(dir, "run1/checkpoints/step-7");

	struct ftk_model *m2 = model_with_lora(2);	/* different values everywhere */
	struct ftk_lora_opts lo = { 0, 0, 0, 0, 0.1f, 1 };
	cJSON *st2;
	ck_assert_int_eq(ftk_adamw_init_on(&opt2, n, &ao, ftk_model_backend(m2), &e), 0);
	ck_assert_msg(ftk_ckpt_load(dir, m2, &lo, &opt2, &st2, &e) == 0, "%s", e.msg);
	size_t n2;
	ftk_model_lora_flat(m2, &n2);
	ck_assert_uint_eq(n, n2);
	float *hp = malloc(n * sizeof(float)), *hp2 = malloc(n * sizeof(float));
	ftk_model_lora_download(m, hp);
	ftk_model_lora_download(m2, hp2);
	ck_assert_mem_eq(hp, hp2, n * sizeof(float));
	float *m1h = host_copy(be, opt.m, n), *m2h = host_copy(opt2.be, opt2.m, n);
	float *v1h = host_copy(be, opt.v, n), *v2h = host_copy(opt2.be, opt2.v, n);
	ck_assert_mem_eq(m1h, m2h, n * sizeof(float));
	ck_assert_mem_eq(v1h, v2h, n * sizeof(float));
	free(hp), free(hp2), free(m1h), free(m2h), free(v1h), free(v2h);
	ck_assert_int_eq(opt2.t, 2);
	char *a = cJSON_PrintUnformatted(st), *b = cJSON_PrintUnformatted(st2);
	ck_assert_str_eq(a, b);
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, "run1/checkpoints/step-7/train_config.json"), 0);
	ck_assert_str_eq(sb.buf, config);
	/* the checkpoint's adapter is a PEFT adapter in its own right */
	struct stat s;
	ck_assert_int_eq(stat("run1/checkpoints/step-7/adapter_config.json", &s), 0);
	ck_assert_int_eq(stat("run1/checkpoints/step-7/adapter_model.safetensors", &s), 0);
	strbuf_release(&sb);
	free(a);
	free(b);
	free(hg);
	be->ops->free(be, g);
	cJSON_Delete(st);
	cJSON_Delete(st2);
	ftk_adamw_release(&opt);
	ftk_adamw_release(&opt2);
	ftk_model_free(m);
	ftk_model_free(m2);
}
END_TEST

START_TEST(keeps_last_k_and_moves_latest)
{
	struct ftk_error e;
	struct ftk_model *m = model_with_lora(1);
	size_t n;
	ftk_model_lora_flat(m, &n);
	struct ftk_adamw_opts ao = FTK_ADAMW_DEFAULTS;
	struct ftk_adamw opt;
	ck_assert_int_eq(ftk_adamw_init(&opt, n, &ao, &e), 0);
	char dir[512];
	ck_assert_int_eq(ftk_ckpt_latest("run2", dir, sizeof(dir), &e), FTK_ENOTFOUND);
	for (long s = 1; s <= 5; s++) {
		cJSON *st = state(s);
		ck_assert_int_eq(ftk_ckpt_save("run2", s, m, NULL, &opt, st, config, 2, &e), 0);
		cJSON_Delete(st);
		ck_assert_int_eq(ftk_ckpt_latest("run2", dir, sizeof(dir), &e), s);
	}
	long *steps;
	ck_assert_int_eq(ftk_ckpt_list("run2", &steps, &e), 2);
	ck_assert_int_eq(steps[0], 4);
	ck_assert_int_eq(steps[1], 5);
	free(steps);
	/* saving a step again replaces it; a crash's leftover temp dir is cleared */
	ck_assert_int_eq(mkdir("run2/checkpoints/.tmp-step-5", 0777), 0);
	cJSON *st = state(5);
	ck_assert_int_eq(ftk_ckpt_save("run2", 5, m, NULL, &opt, st, config, 2, &e), 0);
	cJSON_Delete(st);
	struct stat sb;
	ck_assert_int_ne(stat("run2/checkpoints/.tmp-step-5", &sb), 0);
	ck_assert_int_ne(stat("run2/checkpoints/.old-step-5", &sb), 0);
	ck_assert_int_eq(ftk_ckpt_list("run2", &steps, &e), 2);
	free(steps);
	/* latest pointing somewhere odd is an error, not a guess */
	ck_assert_int_eq(unlink("run2/checkpoints/latest"), 0);
	ck_assert_int_eq(symlink("/etc", "run2/checkpoints/latest"), 0);
	ck_assert_int_eq(ftk_ckpt_latest("run2", dir, sizeof(dir), &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "the latest pointer names '/etc', not a step-N checkpoint");
	ftk_adamw_release(&opt);
	ftk_model_free(m);
}
END_TEST

/* Flip one bit of the byte at offset `at` (-1: the middle) of a file. */
static void flip_byte(const char *path, long at)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, path), 0);
	ck_assert_uint_gt(sb.len, 0);
	size_t i = at < 0 ? sb.len / 2 : (size_t)at;
	sb.buf[i] ^= 0x04;
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(sb.buf, 1, sb.len, f), sb.len);
	fclose(f);
	strbuf_release(&sb);
}

/* Save checkpoints `from`..`to` of run (all kept). */
static void save_steps(const char *run, long from, long to)
{
	struct ftk_error e;
	struct ftk_model *m = model_with_lora(3);
	size_t n;
	ftk_model_lora_flat(m, &n);
	struct ftk_adamw_opts ao = FTK_ADAMW_DEFAULTS;
	struct ftk_adamw opt;
	ck_assert_int_eq(ftk_adamw_init(&opt, n, &ao, &e), 0);
	for (long s = from; s <= to; s++) {
		cJSON *st = state(s);
		ck_assert_msg(ftk_ckpt_save(run, s, m, NULL, &opt, st, config, 0, &e) == 0, "%s",
			      e.msg);
		cJSON_Delete(st);
	}
	ftk_adamw_release(&opt);
	ftk_model_free(m);
}

/* Every file of a checkpoint is checked: a flipped byte in each is damage, named. */
START_TEST(verify_finds_a_flipped_byte_in_every_file)
{
	static const char *const files[] = { "adapter_model.safetensors", "adapter_config.json",
					     "optimizer.safetensors", "train_config.json",
					     "state.json" };
	struct ftk_error e;
	char run[64], dir[128], path[256];
	for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
		snprintf(run, sizeof(run), "flip%zu", i);
		save_steps(run, 4, 4);
		snprintf(dir, sizeof(dir), "%s/checkpoints/step-4", run);
		ck_assert_msg(ftk_ckpt_verify(dir, &e) == 0, "%s", e.msg);
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		flip_byte(path, -1);
		ck_assert_int_eq(ftk_ckpt_verify(dir, &e), FTK_EDATA);
		ck_assert_str_eq(e.file, path);
		printf("%s: %s\n", files[i], e.msg);
	}
	/* a change that leaves state.json valid JSON, and a sensible one: step 4 -> 5 */
	save_steps("flipstate", 4, 4);
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, "flipstate/checkpoints/step-4/state.json"), 0);
	char *at = strstr(sb.buf, "\"step\":\t4");
	ck_assert_ptr_nonnull(at);
	flip_byte("flipstate/checkpoints/step-4/state.json", at - sb.buf + 8);	/* '4' ^ 4 = '0' */
	strbuf_release(&sb);
	ck_assert_int_eq(ftk_ckpt_verify("flipstate/checkpoints/step-4", &e), FTK_EDATA);
	ck_assert_str_eq(e.file, "flipstate/checkpoints/step-4/state.json");
	ck_assert_msg(strstr(e.msg, "checksum mismatch"), "%s", e.msg);
}
END_TEST

START_TEST(verify_finds_truncated_and_missing_files)
{
	struct ftk_error e;
	save_steps("cut", 2, 2);
	const char *opt = "cut/checkpoints/step-2/optimizer.safetensors";
	struct stat st;
	ck_assert_int_eq(stat(opt, &st), 0);
	ck_assert_int_eq(truncate(opt, st.st_size - 1), 0);
	ck_assert_int_eq(ftk_ckpt_verify("cut/checkpoints/step-2", &e), FTK_EDATA);
	ck_assert_str_eq(e.file, opt);
	char want[128];
	snprintf(want, sizeof(want), "%lld bytes, written as %lld: damaged since it was written",
		 (long long)st.st_size - 1, (long long)st.st_size);
	ck_assert_str_eq(e.msg, want);

	save_steps("gone", 2, 2);
	ck_assert_int_eq(unlink("gone/checkpoints/step-2/adapter_model.safetensors"), 0);
	ck_assert_int_eq(ftk_ckpt_verify("gone/checkpoints/step-2", &e), FTK_EDATA);
	ck_assert_str_eq(e.file, "gone/checkpoints/step-2/adapter_model.safetensors");
	ck_assert_str_eq(e.msg, "missing");
	ck_assert_int_eq(unlink("gone/checkpoints/step-2/state.json"), 0);
	ck_assert_int_eq(ftk_ckpt_verify("gone/checkpoints/step-2", &e), FTK_EDATA);
	ck_assert_str_eq(e.file, "gone/checkpoints/step-2/state.json");
	ck_assert_str_eq(e.msg, "missing");
}
END_TEST

/* A checkpoint written before checksums existed: nothing to verify, said as 1. */
START_TEST(verify_older_checkpoint_without_checksums)
{
	struct ftk_error e;
	save_steps("old", 1, 1);
	const char *p = "old/checkpoints/step-1/state.json";
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, p), 0);
	cJSON *st = cJSON_Parse(sb.buf);
	cJSON_DeleteItemFromObject(st, "files");
	cJSON_DeleteItemFromObject(st, "state_xxh3");
	char *js = cJSON_Print(st);
	FILE *f = fopen(p, "w");
	fputs(js, f);
	fclose(f);
	ck_assert_int_eq(ftk_ckpt_verify("old/checkpoints/step-1", &e), 1);
	struct ftk_ckpt_pick pk;
	ck_assert_int_eq(ftk_ckpt_pick("old", 1, &pk, &e), 0);
	ck_assert_int_eq(pk.step, 1);
	ck_assert_int_eq(pk.unverified, 1);
	ftk_ckpt_pick_release(&pk);
	/* but one with only half of the checksum keys is damage, not age */
	cJSON_AddStringToObject(st, "state_xxh3", "0123456789abcdef0123456789abcdef");
	free(js);
	js = cJSON_Print(st);
	f = fopen(p, "w");
	fputs(js, f);
	fclose(f);
	ck_assert_int_eq(ftk_ckpt_verify("old/checkpoints/step-1", &e), FTK_EDATA);
	free(js);
	cJSON_Delete(st);
	strbuf_release(&sb);
}
END_TEST

/* A resume skips damaged checkpoints for the newest intact one, or refuses when strict. */
START_TEST(pick_falls_back_to_the_newest_intact)
{
	struct ftk_error e;
	struct ftk_ckpt_pick pk;
	save_steps("fb", 1, 3);
	ck_assert_int_eq(ftk_ckpt_pick("fb", 0, &pk, &e), 0);
	ck_assert_int_eq(pk.step, 3);
	ck_assert_int_eq(pk.n_damaged, 0);
	ck_assert_int_eq(pk.unverified, 0);
	ck_assert_str_eq(pk.dir, "fb/checkpoints/step-3");
	ftk_ckpt_pick_release(&pk);

	flip_byte("fb/checkpoints/step-3/optimizer.safetensors", -1);
	ck_assert_int_eq(ftk_ckpt_pick("fb", 1, &pk, &e), FTK_EDATA);
	ck_assert_str_eq(e.file, "fb/checkpoints/step-3/optimizer.safetensors");
	ck_assert_msg(!strncmp(e.msg, "checkpoint step-3 is damaged: checksum mismatch", 47), "%s",
		      e.msg);
	ck_assert_msg(strstr(e.msg, "--strict"), "%s", e.msg);
	ftk_ckpt_pick_release(&pk);

	flip_byte("fb/checkpoints/step-2/adapter_model.safetensors", 100);
	ck_assert_int_eq(ftk_ckpt_pick("fb", 0, &pk, &e), 0);
	ck_assert_int_eq(pk.step, 1);
	ck_assert_str_eq(pk.dir, "fb/checkpoints/step-1");
	ck_assert_int_eq(pk.n_damaged, 2);
	ck_assert_int_eq(pk.damaged[0].step, 3);
	ck_assert_int_eq(pk.damaged[1].step, 2);
	ck_assert_str_eq(pk.damaged[1].err.file, "fb/checkpoints/step-2/adapter_model.safetensors");

	/* set aside: renamed, latest moved, no longer listed */
	ck_assert_int_eq(ftk_ckpt_set_aside("fb", &pk, &e), 0);
	ftk_ckpt_pick_release(&pk);
	char dir[512];
	ck_assert_int_eq(ftk_ckpt_latest("fb", dir, sizeof(dir), &e), 1);
	struct stat st;
	ck_assert_int_eq(stat("fb/checkpoints/damaged-step-3/optimizer.safetensors", &st), 0);
	ck_assert_int_eq(stat("fb/checkpoints/damaged-step-2/state.json", &st), 0);
	long *steps;
	ck_assert_int_eq(ftk_ckpt_list("fb", &steps, &e), 1);
	free(steps);
	ck_assert_int_eq(ftk_ckpt_pick("fb", 1, &pk, &e), 0);	/* now latest is intact */
	ck_assert_int_eq(pk.step, 1);
	ftk_ckpt_pick_release(&pk);

	/* nothing intact: an error naming the newest damage */
	ck_assert_int_eq(unlink("fb/checkpoints/step-1/train_config.json"), 0);
	ck_assert_int_eq(ftk_ckpt_pick("fb", 0, &pk, &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "checkpoint step-1 is damaged: missing; and no older checkpoint "
				"of 'fb' is intact");
	ck_assert_str_eq(e.file, "fb/checkpoints/step-1/train_config.json");
	ftk_ckpt_pick_release(&pk);
	ck_assert_int_eq(ftk_ckpt_pick("nothing-here", 0, &pk, &e), FTK_ENOTFOUND);
	ftk_ckpt_pick_release(&pk);
}
END_TEST

/*
 * A child saves checkpoints in a loop and is killed with SIGKILL at a random
 * moment, five times over; each time `latest` must name a checkpoint that
 * loads completely.
 */
START_TEST(survives_sigkill_during_save)
{
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	long next = 1;
	for (int round = 0; round < 5; round++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct ftk_error e;
			struct ftk_model *m = model_with_lora(1);
			size_t n;
			ftk_model_lora_flat(m, &n);
			struct ftk_adamw_opts ao = FTK_ADAMW_DEFAULTS;
			struct ftk_adamw opt;
			ftk_adamw_init(&opt, n, &ao, &e);
			for (long s = next;; s++) {
				cJSON *st = state(s);
				if (ftk_ckpt_save("run3", s, m, NULL, &opt, st, config, 2, &e) < 0)
					_exit(3);
				cJSON_Delete(st);
			}
		}
		/* once this child has saved one, kill it at a random later moment */
		char probe[512];
		for (int waited = 0; ftk_ckpt_latest("run3", probe, sizeof(probe), NULL) < next;
		     waited++) {
			ck_assert_msg(waited < 20000, "the child saved nothing in 20 s");
			usleep(1000);
		}
		usleep((useconds_t)(rand() % 30000));
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		ck_assert(WIFSIGNALED(status));
		char dir[512];
		struct ftk_error e;
		long s = ftk_ckpt_latest("run3", dir, sizeof(dir), &e);
		ck_assert_msg(s >= 1, "round %d: no checkpoint (%s)", round, e.msg);
		/* what latest names verifies: the checksums were written with it, atomically */
		ck_assert_msg(ftk_ckpt_verify(dir, &e) == 0, "round %d: %s: %s", round, e.file, e.msg);
		struct ftk_model *m = model_with_lora(9);
		size_t n;
		ftk_model_lora_flat(m, &n);
		struct ftk_adamw_opts ao = FTK_ADAMW_DEFAULTS;
		struct ftk_adamw opt;
		ftk_adamw_init(&opt, n, &ao, &e);
		struct ftk_lora_opts lo = { 0, 0, 0, 0, 0, 1 };
		cJSON *st;
		ck_assert_msg(ftk_ckpt_load(dir, m, &lo, &opt, &st, &e) == 0, "round %d: %s: %s", round,
			      dir, e.msg);
		ck_assert_int_eq(cJSON_GetObjectItem(st, "step")->valueint, s);
		printf("round %d: killed after checkpoint %ld, which loads\n", round, s);
		next = s + 1;
		cJSON_Delete(st);
		ftk_adamw_release(&opt);
		ftk_model_free(m);
	}
}
END_TEST

static Suite *checkpoint_suite(void)
{
	Suite *s = suite_create("checkpoint");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, save_and_load_restores_everything);
	tcase_add_test(tc, keeps_last_k_and_moves_latest);
	tcase_add_test(tc, verify_finds_a_flipped_byte_in_every_file);
	tcase_add_test(tc, verify_finds_truncated_and_missing_files);
	tcase_add_test(tc, verify_older_checkpoint_without_checksums);
	tcase_add_test(tc, pick_falls_back_to_the_newest_intact);
	tcase_add_test(tc, survives_sigkill_during_save);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN_GUARDED(checkpoint_suite)
