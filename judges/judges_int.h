/*
 * judges_int.h: what the judges share among themselves (not for eval).
 *
 * The ops tables of each judge for the registry, the small helpers that read
 * settings with a clear message naming the setting, and the judge-model
 * request helper (chat through the env, structured JSON out, cached on disk
 * by a hash of the request) that both the llm judge and the citation judge's
 * LLM entailment use.
 */
#ifndef FTK_JUDGES_INT_H
#define FTK_JUDGES_INT_H

#include <stdio.h>
#include <stdlib.h>
#include <cjson/cJSON.h>
#include "judges/judge.h"
#include "lib/err.h"

extern const struct ftk_judge_ops ftk_judge_citation_ops;
extern const struct ftk_judge_ops ftk_judge_toolcall_ops;
extern const struct ftk_judge_ops ftk_judge_match_ops;
extern const struct ftk_judge_ops ftk_judge_json_ops;
extern const struct ftk_judge_ops ftk_judge_regex_ops;
extern const struct ftk_judge_ops ftk_judge_llm_ops;
extern const struct ftk_judge_ops ftk_judge_extract_ops;

/*
 * Settings readers.  Each looks up key in settings (NULL settings: absent),
 * writes the default when absent, and returns 0; a present value of the wrong
 * type returns FTK_EDATA with err->field "settings.<key>".
 */
int jset_str(const cJSON *settings, const char *key, const char *def, const char **out,
	     struct ftk_error *err);
int jset_num(const cJSON *settings, const char *key, double def, double *out,
	     struct ftk_error *err);
int jset_bool(const cJSON *settings, const char *key, int def, int *out,
	      struct ftk_error *err);
/* Refuse keys not in the NULL-terminated list known (plus "label"). */
int jset_known(const cJSON *settings, const char *const *known, struct ftk_error *err);

/* The case's "id" as text for messages ("?" when absent). Borrowed or static. */
const char *jcase_id(const cJSON *kase);

/*
 * The model text with a leading "<think>...</think>" block removed, as a
 * pointer into text (never NULL).
 */
const char *jtext_answer(const struct ftk_judge_output *out);

/* Settings and state of one judge model (llm judge, LLM entailment). */
struct jmodel {
	const struct ftk_judge_env *env;	/* borrowed from create */
	char *model;				/* "model" setting */
	char *cache_dir;			/* env->cache_dir or "cache", or NULL */
	double temperature;
	int max_tokens;
};

/* Read "model", "cache", "temperature", "max_tokens" from settings. */
int jmodel_init(struct jmodel *m, const cJSON *settings, const struct ftk_judge_env *env,
		struct ftk_error *err);
void jmodel_release(struct jmodel *m);

/*
 * Ask the judge model: system and user prompts in, the reply's content parsed
 * as a JSON object out (*reply, caller frees).  sample is the vote index (it
 * goes into the cache key, and the request carries it as "seed").  Replies
 * are cached under cache_dir by a hash of the request; usage is added to *u.
 * Returns 0, FTK_EUSAGE when there is no chat function, FTK_ENET when the
 * request failed, FTK_EDATA when the reply is not a JSON object.
 */
int jmodel_ask(struct jmodel *m, const char *system, const char *user, int sample,
	       cJSON **reply, struct ftk_judge_usage *u, struct ftk_error *err);

#endif
