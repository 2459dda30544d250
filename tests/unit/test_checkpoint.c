/*
 * test_checkpoint.c: checkpoints save everything, keep the last K, and
 * survive SIGKILL at any instant of a save.
 */
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
	/* B is zero after init: give every parameter a distinct value */
	size_t n;
	float *p = ftk_model_lora_flat(m, &n);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)sin((double)i + (double)seed);
	return m;
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
	float *p = ftk_model_lora_flat(m, &n);
	struct ftk_adamw_opts ao = FTK_ADAMW_DEFAULTS;
	struct ftk_adamw opt, opt2;
	ck_assert_int_eq(ftk_adamw_init(&opt, n, &ao, &e), 0);
	float *g = calloc(n, sizeof(float));
	for (size_t i = 0; i < n; i++)
		g[i] = (float)cos((double)i);
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
	ck_assert_int_eq(ftk_adamw_init(&opt2, n, &ao, &e), 0);
	ck_assert_msg(ftk_ckpt_load(dir, m2, &lo, &opt2, &st2, &e) == 0, "%s", e.msg);
	size_t n2;
	float *p2 = ftk_model_lora_flat(m2, &n2);
	ck_assert_uint_eq(n, n2);
	ck_assert_mem_eq(p, p2, n * sizeof(float));
	ck_assert_mem_eq(opt.m, opt2.m, n * sizeof(float));
	ck_assert_mem_eq(opt.v, opt2.v, n * sizeof(float));
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
	free(g);
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
	tcase_add_test(tc, survives_sigkill_during_save);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(checkpoint_suite)
