/*
 * backend_outputs.c: the outputs backend, answers that already exist.
 *
 * An outputs JSONL (or another run's results.jsonl) is read whole; each line
 * is found by (id, sample) and read as a whole chat completion ("choices"),
 * a chat message ("message"), or a flat record ("output", "content",
 * "response" or "completion", with "tool_calls", "finish_reason", "usage").
 * A unit with no line becomes an error result.  No model is asked.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "lib/json.h"
#include "lib/strbuf.h"
#include "run_int.h"

int outputs_samples(const char *path, const struct ftk_eval_suite *s, int *K, struct ftk_error *err)
{
	cJSON *outs;
	int rc = ftk_eval_results_load(path, &outs, NULL, err);
	if (rc < 0)
		return rc;
	long most = 0;
	const cJSON *o;
	cJSON_ArrayForEach(o, outs)
		if (ftk_eval_suite_find(s, ftk_json_get_str(o, "id")) >= 0 && json_long(o, "sample", 0) + 1 > most)
			most = json_long(o, "sample", 0) + 1;
	cJSON_Delete(outs);
	*K = most > 0 ? (int)(most < 10000 ? most : 10000) : 1;
	return 0;
}

int eval_run_outputs(struct ctx *c, struct ftk_error *err)
{
	cJSON *outs;
	long bad = 0;
	int rc = ftk_eval_results_load(c->o->outputs_path, &outs, &bad, err);
	if (rc < 0)
		return rc;
	c->st->outputs_skipped = bad;
	struct smap by_key = { 0 };
	long i = 0;
	const cJSON *o;
	cJSON_ArrayForEach(o, outs)
	{
		char key[1024];
		unit_key(key, sizeof(key), ftk_json_get_str(o, "id"), json_long(o, "sample", 0));
		smap_put(&by_key, key, i++);
	}
	for (long u = 0; u < c->n_units && rc == 0; u++) {
		if (c->done[u])
			continue;
		const struct ftk_eval_case *k = &c->suite->cases[u / c->K];
		char key[1024], msg[1200];
		unit_key(key, sizeof(key), k->id, u % c->K);
		long at = smap_get(&by_key, key, -1);
		struct answer a;
		answer_init(&a);
		a.cached = 1;	/* nothing was spent on it now */
		if (at < 0) {
			snprintf(msg, sizeof(msg), "no output for this case in '%s'", c->o->outputs_path);
			a.error = msg;
			a.error_kind = "no_output";
		} else {
			cJSON *line = cJSON_GetArrayItem(outs, (int)at);
			a.invalid_utf8 = answer_repair_utf8(line->child);
			o = line;
			/* an ftk result repaired before keeps its defect */
			const cJSON *d;
			cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(o, "defects"))
			{
				const char *dk = ftk_json_get_str(d, "kind");
				if (dk && !strcmp(dk, "invalid_utf8") && !a.invalid_utf8)
					a.invalid_utf8 = 1;
			}
			const char *e = ftk_json_get_str(o, "error");
			const cJSON *msgobj = cJSON_GetObjectItemCaseSensitive(o, "message");
			const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
			if (e) {
				a.error = e;
				a.error_kind = ftk_json_get_str(o, "error_kind");
				a.transient = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "transient"));
			} else if (cJSON_IsArray(ch)) {
				answer_from_chat(&a, o);	/* a whole chat completion */
			} else if (cJSON_IsObject(msgobj)) {
				answer_from_message(&a, msgobj);
			} else {
				/* "output" (ftk results), else "content", "response", "completion" */
				static const char *const names[] = { "output", "content", "response",
								     "completion" };
				for (size_t n = 0; n < FTK_ARRAY_SIZE(names) && !a.text; n++) {
					const char *t = ftk_json_get_str(o, names[n]);
					if (t) {
						strbuf_addstr(&a.text_buf, t);
						a.text = a.text_buf.buf;
					}
				}
				answer_set_tool_calls(&a, cJSON_GetObjectItemCaseSensitive(o, "tool_calls"));
				a.finish_reason = ftk_json_get_str(o, "finish_reason");
				const cJSON *u2 = cJSON_GetObjectItemCaseSensitive(o, "usage");
				a.prompt_tokens = json_long(u2, "prompt_tokens", -1);
				a.completion_tokens = json_long(u2, "completion_tokens", -1);
			}
		}
		rc = eval_finish_unit(c, u, &a, err);
		answer_release(&a);
	}
	smap_free(&by_key);
	cJSON_Delete(outs);
	return rc;
}
