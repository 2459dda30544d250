/*
 * test_ledger.c: reading the ledger, dated rates, parameter counts and
 * estimates (ledger/cost.h), and the append path of lib/ledger.h seen from
 * the reader: a torn last line stays on its own and the next entry is whole.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"
#include "ledger/cost.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/shard.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "model/config.h"

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(s, 1, strlen(s), f), strlen(s));
	fclose(f);
}


START_TEST(time_parsing)
{
	double t;
	ck_assert_int_eq(ftk_cost_time_parse("2026-11-23T13:00:00Z", &t), 0);
	ck_assert_double_eq(t, 1795438800.0);	/* date -u -d 2026-11-23T13:00:00Z +%s */
	ck_assert_int_eq(ftk_cost_time_parse("2026-11-23T15:00:00+02:00", &t), 0);
	ck_assert_double_eq(t, 1795438800.0);
	ck_assert_int_eq(ftk_cost_time_parse("2026-11-23", &t), 0);
	ck_assert_double_eq(t, 1795392000.0);
	ck_assert_int_eq(ftk_cost_time_parse("2026-11-23T13:00:00.25Z", &t), 0);
	ck_assert_double_eq_tol(t, 1795438800.25, 1e-6);
	ck_assert_int_eq(ftk_cost_time_parse("2026-02-31", &t), FTK_EDATA);
	ck_assert_int_eq(ftk_cost_time_parse("2026-11-23T25:00:00Z", &t), FTK_EDATA);
	ck_assert_int_eq(ftk_cost_time_parse("2026-11-23T13:00:00Zjunk", &t), FTK_EDATA);
	ck_assert_int_eq(ftk_cost_time_parse("yesterday", &t), FTK_EDATA);
	char buf[16];
	ftk_cost_date_format(1795438800.0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2026-11-23");
}
END_TEST

START_TEST(entry_fields_checked)
{
	struct ftk_cost_entry e;
	struct ftk_error err;
	const char *good = "{\"ts\":\"2026-11-23T13:00:00Z\",\"run\":\"r\",\"stage\":\"train\","
			   "\"kind\":\"compute\",\"device\":\"A100-80GB\",\"gpus\":2,\"hours\":5,"
			   "\"tokens\":41000000,\"extra\":{\"kept\":true}}";
	ck_assert_int_eq(ftk_cost_entry_parse(good, strlen(good), &e, &err), 0);
	ck_assert_str_eq(e.run, "r");
	ck_assert_str_eq(ftk_cost_stages[e.stage], "train");
	ck_assert_str_eq(ftk_cost_kinds[e.kind], "compute");
	ck_assert_double_eq(e.gpus, 2);
	ck_assert_double_eq(e.hours, 5);
	ck_assert(isnan(e.usd));
	ck_assert_double_eq(e.tokens, 41000000);
	cJSON_Delete(e.json);

	static const struct { const char *line, *field, *msg; } bad[] = {
		{ "{\"stage\":\"prep\",\"kind\":\"human\"}", "ts", "missing" },
		{ "{\"ts\":\"soon\",\"stage\":\"prep\",\"kind\":\"human\"}", "ts", "not a date and time: 'soon'" },
		{ "{\"ts\":\"2026-11-23\",\"stage\":\"deploy\",\"kind\":\"human\"}", "stage",
		  "unknown stage 'deploy' (prep, train, eval, review, serve)" },
		{ "{\"ts\":\"2026-11-23\",\"stage\":\"prep\"}", "kind", "missing" },
		{ "{\"ts\":\"2026-11-23\",\"stage\":\"prep\",\"kind\":\"human\",\"hours\":\"3\"}", "hours",
		  "expected a number, found string" },
		{ "{\"ts\":\"2026-11-23\",\"stage\":\"prep\",\"kind\":\"human\",\"usd\":-1}", "usd",
		  "expected a number >= 0, found a negative number" },
		{ "{\"ts\":\"2026-11-23\",\"stage\":\"prep\",\"kind\":\"human\",\"run\":7}", "run",
		  "expected a string, found number" },
		{ "{\"ts\":\"2026-11-23\",\"stage\":\"pr", "", "invalid JSON at column 29" },
		{ "[1]", "", "not a JSON object: array" },
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(bad); i++) {
		ftk_error_clear(&err);
		ck_assert_int_eq(ftk_cost_entry_parse(bad[i].line, strlen(bad[i].line), &e, &err),
				 FTK_EDATA);
		ck_assert_str_eq(err.field, bad[i].field);
		ck_assert_str_eq(err.msg, bad[i].msg);
		ck_assert_ptr_null(e.json);
	}
}
END_TEST

/* A power cut mid-write: the torn line is a problem with its number, nothing else is lost. */
/* An entry over 64 KiB is refused whole, and the ledger is left as it was. */
START_TEST(long_entry_refused)
{
	struct ftk_error e = { 0 };
	char *big = malloc(FTK_LEDGER_MAX_ENTRY + 2);
	memset(big, 'x', FTK_LEDGER_MAX_ENTRY + 1);
	memcpy(big, "{\"note\":\"", 9);
	memcpy(big + FTK_LEDGER_MAX_ENTRY - 2, "\"}", 2);	/* exactly the limit: accepted */
	ck_assert_int_eq(ftk_ledger_append("big.jsonl", big, FTK_LEDGER_MAX_ENTRY, &e), 0);
	memcpy(big + FTK_LEDGER_MAX_ENTRY - 2, "x\"}", 3);	/* one byte more: refused */
	ck_assert_int_eq(ftk_ledger_append("big.jsonl", big, FTK_LEDGER_MAX_ENTRY + 1, &e), FTK_ELIMIT);
	ck_assert_ptr_nonnull(strstr(e.msg, "over the 65536-byte limit"));
	struct stat st;
	ck_assert_int_eq(stat("big.jsonl", &st), 0);
	ck_assert_int_eq(st.st_size, FTK_LEDGER_MAX_ENTRY + 1);	/* the first entry and its newline only */
	free(big);
}
END_TEST

START_TEST(torn_last_line_then_append)
{
	write_file("l.jsonl",
		   "{\"ts\":\"2026-11-20\",\"run\":\"a\",\"stage\":\"prep\",\"kind\":\"human\",\"hours\":1,\"usd\":50}\n"
		   "{\"ts\":\"2026-11-21\",\"run\":\"a\",\"stage\":\"train\",\"kind\":\"compute\",\"hours\":2,\"usd\":7}\n"
		   "{\"ts\":\"2026-11-22\",\"run\":\"a\",\"stage\":\"ev");
	struct ftk_cost_ledger L = { 0 };
	struct ftk_error err;
	ck_assert_int_eq(ftk_cost_ledger_load("l.jsonl", &L, &err), 1);
	ck_assert_uint_eq(L.n, 2);
	ck_assert_int_eq(L.unterminated, 1);
	ck_assert_int_eq(L.bad[0].line, 3);
	ck_assert_str_eq(L.bad[0].msg, "invalid JSON at column 39 (the last line has no "
				       "newline: a write was cut short)");
	ftk_cost_ledger_release(&L);

	/* the next append, through lib/ledger.h, starts on a fresh line */
	cJSON *e = ftk_ledger_entry_new("b", "eval", "api");
	cJSON_AddNumberToObject(e, "usd", 1.25);
	ck_assert_int_eq(ftk_ledger_append_entry("l.jsonl", e, &err), 0);
	cJSON_Delete(e);
	struct strbuf all = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&all, "l.jsonl"), 0);
	const char *third = strstr(all.buf, "{\"ts\":\"2026-11-22\"");
	ck_assert_ptr_nonnull(third);
	ck_assert(strncmp(third, "{\"ts\":\"2026-11-22\",\"run\":\"a\",\"stage\":\"ev\n{\"ts\":\"", 48) == 0);
	ck_assert_int_eq(all.buf[all.len - 1], '\n');
	strbuf_release(&all);

	ck_assert_int_eq(ftk_cost_ledger_load("l.jsonl", &L, &err), 1);
	ck_assert_uint_eq(L.n, 3);
	ck_assert_int_eq(L.unterminated, 0);
	ck_assert_int_eq(L.bad[0].line, 3);
	ck_assert_str_eq(L.bad[0].msg, "invalid JSON at column 39");
	ck_assert_str_eq(L.e[2].run, "b");
	ck_assert_int_eq(L.e[2].line, 4);
	ck_assert_double_eq(L.e[2].usd, 1.25);
	ftk_cost_ledger_release(&L);

	/* a good file stays free of problems, and blank lines are neither */
	write_file("g.jsonl", "{\"ts\":\"2026-11-20\",\"stage\":\"serve\",\"kind\":\"compute\"}\n\n");
	ck_assert_int_eq(ftk_cost_ledger_load("g.jsonl", &L, &err), 0);
	ck_assert_uint_eq(L.n, 1);
	ck_assert_str_eq(L.e[0].run, "");
	ftk_cost_ledger_release(&L);
	ck_assert_int_eq(ftk_cost_ledger_load("missing.jsonl", &L, &err), FTK_ENOTFOUND);
	ck_assert_str_eq(err.msg, "no ledger at 'missing.jsonl'");
}
END_TEST

/* Forked writers through lib/ledger.h: every entry present and whole. */
/* Under Slurm an entry says which job and array element wrote it; outside, nothing. */
START_TEST(slurm_ids_when_set)
{
	unsetenv("SLURM_JOB_ID");
	unsetenv("SLURM_ARRAY_JOB_ID");
	unsetenv("SLURM_ARRAY_TASK_ID");
	cJSON *e = ftk_ledger_entry_new("r", "prep", "compute");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(e, "slurm"));
	cJSON_Delete(e);

	/* a plain job: no array ids; an empty variable counts as unset */
	setenv("SLURM_JOB_ID", "41", 1);
	setenv("SLURM_ARRAY_TASK_ID", "", 1);
	e = ftk_ledger_entry_new("r", "train", "compute");
	char *s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(e, "slurm"));
	ck_assert_str_eq(s, "{\"job_id\":\"41\"}");
	cJSON_free(s);
	cJSON_Delete(e);

	/* element 3 of array job 40 runs as job 44 */
	setenv("SLURM_JOB_ID", "44", 1);
	setenv("SLURM_ARRAY_JOB_ID", "40", 1);
	setenv("SLURM_ARRAY_TASK_ID", "3", 1);
	e = ftk_ledger_entry_new("r", "prep", "compute");
	s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(e, "slurm"));
	ck_assert_str_eq(s, "{\"job_id\":\"44\",\"array_job_id\":\"40\",\"array_task_id\":\"3\"}");
	cJSON_free(s);
	cJSON_Delete(e);
	unsetenv("SLURM_JOB_ID");
	unsetenv("SLURM_ARRAY_JOB_ID");
	unsetenv("SLURM_ARRAY_TASK_ID");
}
END_TEST

START_TEST(parallel_appends_through_lib)
{
	enum { PROCS = 4, EACH = 500 };
	for (int p = 0; p < PROCS; p++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			char line[256];
			for (int i = 0; i < EACH; i++) {
				int n = snprintf(line, sizeof(line),
						 "{\"ts\":\"2026-11-23T00:00:00Z\",\"run\":\"p%d\",\"stage\":"
						 "\"prep\",\"kind\":\"compute\",\"hours\":0.001,\"i\":%d}", p, i);
				if (ftk_ledger_append("par.jsonl", line, (size_t)n, NULL) < 0)
					_exit(1);
			}
			_exit(0);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int st;
		ck_assert_int_gt(wait(&st), 0);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	struct ftk_cost_ledger L = { 0 };
	ck_assert_int_eq(ftk_cost_ledger_load("par.jsonl", &L, NULL), 0);
	ck_assert_uint_eq(L.n, PROCS * EACH);
	int seen[PROCS][EACH];
	memset(seen, 0, sizeof(seen));
	for (size_t k = 0; k < L.n; k++) {
		int p = L.e[k].run[1] - '0';
		int i = (int)cJSON_GetObjectItem(L.e[k].json, "i")->valuedouble;
		seen[p][i]++;
	}
	for (int p = 0; p < PROCS; p++)
		for (int i = 0; i < EACH; i++)
			ck_assert_int_eq(seen[p][i], 1);
	ftk_cost_ledger_release(&L);
}
END_TEST

START_TEST(rates_apply_from_their_date)
{
	write_file("r.jsonl",
		   "{\"type\":\"person\",\"name\":\"Alice\",\"from\":\"2026-01-01\",\"usd_per_hour\":50}\n"
		   "{\"type\":\"person\",\"name\":\"alice\",\"from\":\"2026-06-01\",\"usd_per_hour\":80}\n"
		   "{\"type\":\"person\",\"name\":\"alice\",\"from\":\"2026-06-01\",\"usd_per_hour\":85}\n"
		   "{\"type\":\"person\",\"name\":\"default\",\"from\":\"2026-01-01\",\"usd_per_hour\":40}\n"
		   "{\"type\":\"device\",\"name\":\"A100-80GB\",\"from\":\"2026-01-01\",\"usd_per_hour\":3.67}\n"
		   "{\"type\":\"api\",\"name\":\"m\",\"from\":\"2026-01-01\",\"usd_per_mtok_in\":0.5,\"usd_per_mtok_out\":2}\n");
	struct ftk_rates R;
	struct ftk_error err;
	double t;
	ck_assert_int_eq(ftk_rates_load("r.jsonl", &R, &err), 0);
	ck_assert_uint_eq(R.n, 6);
	ftk_cost_time_parse("2026-03-01", &t);
	ck_assert_double_eq(ftk_rates_find(&R, FTK_RATE_PERSON, "alice", t)->usd_per_hour, 50);
	ftk_cost_time_parse("2026-06-01", &t);	/* inclusive; the later of two same-day rows wins */
	ck_assert_double_eq(ftk_rates_find(&R, FTK_RATE_PERSON, "ALICE", t)->usd_per_hour, 85);
	ftk_cost_time_parse("2025-12-31T23:59:59Z", &t);
	ck_assert_ptr_null(ftk_rates_find(&R, FTK_RATE_PERSON, "alice", t));
	ck_assert_ptr_null(ftk_rates_find(&R, FTK_RATE_DEVICE, "alice", 2e9));

	/* pricing entries that carry no usd, by their own date */
	const char *lines[] = {
		"{\"ts\":\"2026-03-01\",\"stage\":\"prep\",\"kind\":\"human\",\"who\":\"alice\",\"hours\":2}",
		"{\"ts\":\"2026-07-01\",\"stage\":\"prep\",\"kind\":\"human\",\"who\":\"alice\",\"hours\":2}",
		"{\"ts\":\"2026-07-01\",\"stage\":\"prep\",\"kind\":\"human\",\"who\":\"zed\",\"hours\":2}",
		"{\"ts\":\"2026-07-01\",\"stage\":\"train\",\"kind\":\"compute\",\"device\":\"a100-80gb\",\"gpus\":2,\"hours\":5}",
		"{\"ts\":\"2026-07-01\",\"stage\":\"eval\",\"kind\":\"api\",\"model\":\"m\",\"tokens_in\":2000000,\"tokens_out\":500000}",
		"{\"ts\":\"2026-07-01\",\"stage\":\"train\",\"kind\":\"compute\",\"device\":\"TPU\",\"hours\":5}",
	};
	const double want[] = { 100, 170, 80, 36.7, 2.0, -1 };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(lines); i++) {
		struct ftk_cost_entry e;
		double usd;
		ck_assert_int_eq(ftk_cost_entry_parse(lines[i], strlen(lines[i]), &e, &err), 0);
		if (want[i] < 0) {
			ck_assert_int_eq(ftk_rates_price_entry(&R, &e, &usd, &err), FTK_ENOTFOUND);
			ck_assert_str_eq(err.msg, "no rate for device 'TPU' on 2026-07-01");
		} else {
			ck_assert_int_eq(ftk_rates_price_entry(&R, &e, &usd, &err), 0);
			ck_assert_double_eq_tol(usd, want[i], 1e-9);
		}
		cJSON_Delete(e.json);
	}
	ftk_rates_release(&R);

	/* a bad row is an error with its place, not a silently wrong price */
	write_file("bad.jsonl", "{\"type\":\"device\",\"name\":\"x\",\"from\":\"2026-01-01\",\"usd_per_hour\":1}\n"
				"{\"type\":\"device\",\"name\":\"y\",\"from\":\"2026-13-01\",\"usd_per_hour\":1}\n");
	ck_assert_int_eq(ftk_rates_load("bad.jsonl", &R, &err), FTK_EDATA);
	char m[2048];
	ck_assert_str_eq(ftk_error_format(&err, m, sizeof(m)),
			 "bad.jsonl:2: from: not a date: '2026-13-01'");
	ck_assert_uint_eq(R.n, 0);
}
END_TEST

START_TEST(builtin_examples_parse_and_say_so)
{
	struct ftk_rates R;
	ck_assert_int_eq(ftk_rates_load(NULL, &R, NULL), 0);
	ck_assert_uint_ge(R.n, 6);
	for (size_t i = 0; i < R.n; i++) {
		ck_assert(R.r[i].example);
		ck_assert(strncmp(ftk_json_get_str(R.r[i].json, "source"), "example: ", 9) == 0);
	}
	const char *dev[] = { "H100-80GB", "A100-80GB", "L40S", "cpu" };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(dev); i++) {
		const struct ftk_rate *r = ftk_rates_find(&R, FTK_RATE_DEVICE, dev[i], 2e9);
		ck_assert_ptr_nonnull(r);
		ck_assert(r->peak_flops > 0 && r->mfu > 0);
	}
	ck_assert_double_eq(ftk_rates_find(&R, FTK_RATE_DEVICE, "L40S", 2e9)->usd_per_hour, 1.57);
	ck_assert_double_eq(ftk_rates_find(&R, FTK_RATE_DEVICE, "A100-80GB", 2e9)->usd_per_hour, 3.67);
	ftk_rates_release(&R);
}
END_TEST

/* Sum the element counts of every tensor in a safetensors file's header. */
static long long safetensors_count(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint64_t n = 0;
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(&n, 8, 1, f), 1);	/* little-endian u64, as on x86 */
	char *h = malloc(n + 1);
	ck_assert_uint_eq(fread(h, 1, n, f), n);
	h[n] = 0;
	fclose(f);
	cJSON *o = cJSON_Parse(h);
	free(h);
	ck_assert_ptr_nonnull(o);
	long long total = 0;
	for (cJSON *t = o->child; t; t = t->next) {
		const cJSON *shape = cJSON_GetObjectItem(t, "shape");
		if (!shape)
			continue;
		long long p = 1;
		for (cJSON *d = shape->child; d; d = d->next)
			p *= (long long)d->valuedouble;
		total += p;
	}
	cJSON_Delete(o);
	return total;
}

START_TEST(param_counts_match_the_weights)
{
	struct ftk_cost_model m;
	struct ftk_error err;
	ck_assert_int_eq(ftk_cost_model_load(src_path("datasets/models/stories260K"), &m, &err), 0);
	long long ref = safetensors_count(src_path("datasets/models/stories260K/model.safetensors"));
	printf("stories260K: config %lld, safetensors %lld\n", m.n_params, ref);
	ck_assert_int_eq(m.n_params, ref);
	ck_assert_int_eq(ref, 260032);

	static const struct { const char *cfg; long long want; } pub[] = {
		{ "tests/fixtures/ledger/llama3-8b.config.json", 8030261248LL },
		{ "tests/fixtures/ledger/qwen2.5-0.5b.config.json", 494032768LL },
		{ "tests/fixtures/ledger/qwen3-0.6b.config.json", 596049920LL },
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(pub); i++) {
		ck_assert_int_eq(ftk_cost_model_load(src_path(pub[i].cfg), &m, &err), 0);
		ck_assert_int_eq(m.n_params, pub[i].want);
	}
	/* PEFT's print_trainable_parameters() for Llama 3 8B, r=16 on all linear layers:
	 * "trainable params: 41,943,040 || all params: 8,072,204,288" */
	ck_assert_int_eq(ftk_cost_model_load(src_path(pub[0].cfg), &m, &err), 0);
	ck_assert_int_eq(ftk_cost_lora_params(&m, 16, "all-linear"), 41943040LL);
	ck_assert_int_eq(m.n_params + ftk_cost_lora_params(&m, 16, "all-linear"), 8072204288LL);
	/* the matmul count of stories260K: 5 layers of attention and MLP, plus the (tied) head */
	ck_assert_int_eq(ftk_cost_model_load(src_path("datasets/models/stories260K/config.json"), &m,
					      &err), 0);
	ck_assert_int_eq(m.n_matmul, 5 * (64 * 64 * 2 + 2 * 64 * 32 + 3 * 64 * 172) + 512 * 64);

	/* no tie_word_embeddings: untied, as transformers' Qwen2Config and ftk-train read it */
	write_file("untied.json", "{\"model_type\":\"qwen2\",\"vocab_size\":512,\"hidden_size\":64,"
				  "\"intermediate_size\":172,\"num_hidden_layers\":2,\"num_attention_heads\":8}");
	struct ftk_model_config cfg;
	ck_assert_int_eq(ftk_config_load("untied.json", &cfg, &err), 0);
	ck_assert_int_eq(ftk_cost_model_load("untied.json", &m, &err), 0);
	ck_assert(!m.tied && !cfg.tie_embeddings);
	ck_assert_int_eq(m.n_params, ftk_config_n_params(&cfg));
	/* embedding + untied head + final norm + 2 layers of (q,k,v,o with q/k/v biases, MLP, 2 norms) */
	ck_assert_int_eq(m.n_params, 2 * 512 * 64 + 64 + 2 * (4 * 64 * 64 + 3 * 64 + 3 * 64 * 172 + 2 * 64));
	write_file("moe.json", "{\"model_type\":\"mixtral\",\"num_local_experts\":8}");
	ck_assert_int_eq(ftk_cost_model_load("moe.json", &m, &err), FTK_EUNSUPPORTED);
	write_file("bad.json", "{\"model_type\":\"llama\",\"vocab_size\":512,\"hidden_size\":\"64\"}");
	ck_assert_int_eq(ftk_cost_model_load("bad.json", &m, &err), FTK_EDATA);
	char msg[2048];
	ck_assert_str_eq(ftk_error_format(&err, msg, sizeof(msg)),
			 "bad.json: hidden_size: field 'hidden_size' must be a non-negative integer");
}
END_TEST

START_TEST(lora_and_flops)
{
	struct ftk_cost_model m;
	ck_assert_int_eq(ftk_cost_model_load(src_path("datasets/models/stories260K"), &m, NULL), 0);
	/* r·(in+out) per adapted matrix, per layer */
	long long per_layer = 16 * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64) + 3 * (64 + 172));
	ck_assert_int_eq(ftk_cost_lora_params(&m, 16, "all-linear"), 5 * per_layer);
	ck_assert_int_eq(ftk_cost_lora_params(&m, 8, "q_proj,v_proj"), 5 * 8 * (128 + 96));
	ck_assert_int_eq(ftk_cost_lora_params(&m, 8, "q_proj,w_proj"), -1);
	/* ftk-train's short names and groups name the same modules, each adapted once */
	ck_assert_int_eq(ftk_cost_lora_params(&m, 16, "q,k,v,o,gate,up,down"), 5 * per_layer);
	ck_assert_int_eq(ftk_cost_lora_params(&m, 16, "attn,mlp"), 5 * per_layer);
	ck_assert_int_eq(ftk_cost_lora_params(&m, 8, "q,q_proj,v"), 5 * 8 * (128 + 96));
	double D = 1e6, N = (double)m.n_matmul, NL = (double)(5 * per_layer);
	ck_assert_double_eq_tol(ftk_cost_train_flops(&m, 0, D, 1), 6 * N * D, 1);
	ck_assert_double_eq_tol(ftk_cost_train_flops(&m, 5 * per_layer, D, 0), 4 * N * D + 6 * NL * D, 1);
}
END_TEST

/* Tokens as ftk-train will see them: sequences longer than seq_len are cut. */
START_TEST(shard_tokens_after_cut)
{
	struct ftk_shard_info info;
	struct ftk_shard_writer *w;
	struct ftk_error err;
	memset(&info, 0, sizeof(info));
	info.kind = FTK_SHARD_SFT;
	info.vocab_size = 512;
	memcpy(info.tokenizer_hash, "0123456789abcdef0123456789abcdef", 33);
	snprintf(info.template_name, sizeof(info.template_name), "raw");
	ck_assert_int_eq(ftk_shard_writer_open(&w, "sh", &info, 0, &err), 0);
	static uint32_t ids[700];
	static uint8_t mask[700];
	for (int i = 0; i < 700; i++) {
		ids[i] = 3 + i % 500;
		mask[i] = 1;
	}
	const uint32_t lens[] = { 10, 600, 512, 700 };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(lens); i++)
		ck_assert_int_eq(ftk_shard_write(w, ids, mask, lens[i], &err), 0);
	ck_assert_int_eq(ftk_shard_writer_close(w, &err), 0);
	double all, kept;
	long cut;
	ck_assert_int_eq(ftk_cost_shard_tokens("sh", 512, &all, &kept, &cut, &err), 0);
	ck_assert_double_eq(all, 1822);
	ck_assert_double_eq(kept, 10 + 512 + 512 + 512);
	ck_assert_int_eq(cut, 2);
	ck_assert_int_eq(ftk_cost_shard_tokens("sh", 0, &all, &kept, &cut, &err), 0);
	ck_assert_double_eq(kept, 1822);
	ck_assert_int_eq(cut, 0);
	ck_assert_int_lt(ftk_cost_shard_tokens("nope", 512, &all, &kept, &cut, &err), 0);
}
END_TEST

START_TEST(calibration_from_metrics)
{
	mkdir("run", 0755);
	/* first step is warm-up; median of the rest is 1000; a torn last line is tolerated */
	write_file("run/metrics.jsonl", "{\"step\":1,\"tokens_per_s\":10}\n{\"step\":2,\"tokens_per_s\":900}\n"
					"{\"step\":3,\"tokens_per_s\":1000}\n{\"step\":4,\"tokens_per_s\":1100}\n"
					"{\"step\":5,\"tokens_per");
	double tps;
	int steps;
	struct ftk_error err;
	ck_assert_int_eq(ftk_cost_calibrate_tps("run", &tps, &steps, &err), 0);
	ck_assert_double_eq(tps, 1000);
	ck_assert_int_eq(steps, 3);
	/* cumulative tokens over cumulative elapsed seconds, as ftk-train writes them */
	write_file("m2.jsonl", "{\"step\":1,\"tokens\":512,\"elapsed\":2.0}\n{\"step\":2,\"tokens\":1024,\"elapsed\":2.5}\n"
			       "{\"step\":3,\"tokens\":1536,\"elapsed\":3.0}\n{\"step\":4,\"tokens\":2048,\"elapsed\":3.25}\n");
	ck_assert_int_eq(ftk_cost_calibrate_tps("m2.jsonl", &tps, &steps, &err), 0);
	ck_assert_double_eq(tps, 1228.8);	/* (2048 - 512) / (3.25 - 2.0): step 1 left out */
	ck_assert_int_eq(steps, 3);
	/* the cumulative figures win over the steps' own tokens_per_s, which miss
	 * the time between steps */
	write_file("m4.jsonl", "{\"step\":1,\"tokens\":100,\"tokens_per_s\":50,\"elapsed\":2}\n"
			       "{\"step\":2,\"tokens\":200,\"tokens_per_s\":200,\"elapsed\":3}\n"
			       "{\"step\":3,\"tokens\":300,\"tokens_per_s\":200,\"elapsed\":4}\n");
	ck_assert_int_eq(ftk_cost_calibrate_tps("m4.jsonl", &tps, &steps, &err), 0);
	ck_assert_double_eq(tps, 100);
	write_file("m3.jsonl", "{\"step\":1,\"loss\":2.5}\n");
	ck_assert_int_eq(ftk_cost_calibrate_tps("m3.jsonl", &tps, &steps, &err), FTK_EDATA);
	ck_assert_int_eq(ftk_cost_calibrate_tps("nothing", &tps, &steps, &err), FTK_ENOTFOUND);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("ledger");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, time_parsing);
	tcase_add_test(tc, entry_fields_checked);
	tcase_add_test(tc, torn_last_line_then_append);
	tcase_add_test(tc, slurm_ids_when_set);
	tcase_add_test(tc, long_entry_refused);
	tcase_add_test(tc, parallel_appends_through_lib);
	tcase_add_test(tc, rates_apply_from_their_date);
	tcase_add_test(tc, builtin_examples_parse_and_say_so);
	tcase_add_test(tc, param_counts_match_the_weights);
	tcase_add_test(tc, lora_and_flops);
	tcase_add_test(tc, shard_tokens_after_cut);
	tcase_add_test(tc, calibration_from_metrics);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(suite)
