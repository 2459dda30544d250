/*
 * common.c: helpers the judges share: settings readers with messages that
 * name the setting, the case id, the answer text without a reasoning block,
 * and the judge-model request (jmodel_ask).
 *
 * jmodel_ask sends an OpenAI chat request (lib/openai.h builds it) through
 * the env's chat function with response_format {"type":"json_object"},
 * takes the first choice's content, strips a ``` fence if the model wrapped
 * its JSON in one, and parses it.  Replies go to lib/openai's reply cache,
 * keyed by the env's endpoint and the request body (which holds the model,
 * prompts, temperature and the vote index as "seed"), so re-scoring a run
 * costs nothing, k votes stay k distinct requests, and the same question to
 * another judge server or model is never answered from another's reply.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "judges/judges_int.h"
#include "lib/json.h"
#include "lib/openai.h"
#include "lib/strbuf.h"

static const cJSON *get(const cJSON *settings, const char *key)
{
	return settings ? cJSON_GetObjectItemCaseSensitive(settings, key) : NULL;
}

static int bad(struct ftk_error *err, const char *key, const char *want, const cJSON *v)
{
	char f[128];
	snprintf(f, sizeof(f), "settings.%s", key);
	return ftk_error_set(err, FTK_EDATA, NULL, 0, f, "'%s' must be %s, not %s", key, want,
			     ftk_json_type_name(v));
}

int jset_str(const cJSON *settings, const char *key, const char *def, const char **out,
	     struct ftk_error *err)
{
	const cJSON *v = get(settings, key);
	*out = def;
	if (!v)
		return 0;
	if (!cJSON_IsString(v))
		return bad(err, key, "a string", v);
	*out = v->valuestring;
	return 0;
}

int jset_num(const cJSON *settings, const char *key, double def, double *out,
	     struct ftk_error *err)
{
	const cJSON *v = get(settings, key);
	*out = def;
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v))
		return bad(err, key, "a number", v);
	*out = v->valuedouble;
	return 0;
}

int jset_bool(const cJSON *settings, const char *key, int def, int *out, struct ftk_error *err)
{
	const cJSON *v = get(settings, key);
	*out = def;
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return bad(err, key, "true or false", v);
	*out = cJSON_IsTrue(v);
	return 0;
}

int jset_known(const cJSON *settings, const char *const *known, struct ftk_error *err)
{
	const cJSON *e;
	if (!settings)
		return 0;
	cJSON_ArrayForEach(e, settings) {
		int ok = !strcmp(e->string, "label") || !strcmp(e->string, "compare_as");
		for (size_t i = 0; !ok && known[i]; i++)
			ok = !strcmp(e->string, known[i]);
		if (!ok) {
			char f[128];
			snprintf(f, sizeof(f), "settings.%s", e->string);
			return ftk_error_set(err, FTK_EDATA, NULL, 0, f, "unknown setting '%s'",
					     e->string);
		}
	}
	return 0;
}

const char *jcase_id(const cJSON *kase)
{
	const cJSON *id = kase ? cJSON_GetObjectItemCaseSensitive(kase, "id") : NULL;
	if (cJSON_IsString(id))
		return id->valuestring;
	return "?";
}

const char *jtext_answer(const struct ftk_judge_output *out)
{
	const char *t = out && out->text ? out->text : "";
	const char *s = t + strspn(t, " \t\r\n");
	if (!strncmp(s, "<think>", 7)) {
		const char *e = strstr(s, "</think>");
		if (e)
			return e + 8;
	}
	return t;
}

/* ------------------------------------------------------------ judge model */

int jmodel_init(struct jmodel *m, const cJSON *settings, const struct ftk_judge_env *env,
		struct ftk_error *err)
{
	const char *model, *cache;
	double temp, maxtok;
	memset(m, 0, sizeof(*m));
	m->env = env;
	int rc;
	if ((rc = jset_str(settings, "model", NULL, &model, err)) < 0 ||
	    (rc = jset_str(settings, "cache", NULL, &cache, err)) < 0 ||
	    (rc = jset_num(settings, "temperature", 0.0, &temp, err)) < 0 ||
	    (rc = jset_num(settings, "max_tokens", 512, &maxtok, err)) < 0)
		return rc;
	if (!env || !env->chat)
		return ftk_error_set(err, FTK_EUSAGE, NULL, 0, "settings.model",
				     "a judge model needs an HTTP client, and none was given");
	if (!model || !*model)
		return ftk_error_set(err, FTK_EUSAGE, NULL, 0, "settings.model",
				     "a judge model needs 'model' in the settings");
	if (maxtok < 1 || maxtok > 1e6)
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.max_tokens",
				     "'max_tokens' must be between 1 and 1000000");
	m->model = xstrdup(model);
	if (env->cache_dir)
		m->cache_dir = xstrdup(env->cache_dir);
	else if (cache)
		m->cache_dir = xstrdup(cache);
	m->temperature = temp;
	m->max_tokens = (int)maxtok;
	return 0;
}

void jmodel_release(struct jmodel *m)
{
	if (!m)
		return;
	free(m->model);
	free(m->cache_dir);
	memset(m, 0, sizeof(*m));
}

/* The reply content as a JSON object: plain, or inside a ``` fence. */
static cJSON *parse_content(const char *s)
{
	const char *a = strchr(s, '{'), *b = strrchr(s, '}');
	if (!a || !b || b < a)
		return NULL;
	cJSON *v = NULL;
	if (ftk_json_parse(a, (size_t)(b - a + 1), &v, NULL) < 0)
		return NULL;
	if (!cJSON_IsObject(v)) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

int jmodel_ask(struct jmodel *m, const char *system, const char *user, int sample,
	       cJSON **reply, struct ftk_judge_usage *u, struct ftk_error *err)
{
	*reply = NULL;
	if (!m->env || !m->env->chat)
		return ftk_error_msg(err, FTK_EUSAGE, "no HTTP client for the judge model");
	cJSON *msgs = cJSON_CreateArray();
	cJSON *sm = cJSON_CreateObject();
	cJSON_AddStringToObject(sm, "role", "system");
	cJSON_AddStringToObject(sm, "content", system);
	cJSON_AddItemToArray(msgs, sm);
	cJSON *um = cJSON_CreateObject();
	cJSON_AddStringToObject(um, "role", "user");
	cJSON_AddStringToObject(um, "content", user);
	cJSON_AddItemToArray(msgs, um);
	cJSON *params = cJSON_CreateObject();
	cJSON_AddNumberToObject(params, "temperature", m->temperature);
	cJSON_AddNumberToObject(params, "max_tokens", m->max_tokens);
	cJSON_AddNumberToObject(params, "seed", sample);
	cJSON *rf = cJSON_AddObjectToObject(params, "response_format");
	cJSON_AddStringToObject(rf, "type", "json_object");
	char *body = ftk_openai_chat_request(m->model, msgs, NULL, params, 0);
	cJSON_Delete(msgs);
	cJSON_Delete(params);

	const char *where = m->env->endpoint ? m->env->endpoint : "";
	int rc = 0;
	cJSON *resp = NULL;
	char *hit = ftk_openai_cache_get(m->cache_dir, where, body, 0);
	if (hit) {
		resp = cJSON_Parse(hit);
		free(hit);
		u->calls++;
		u->cache_hits++;
	} else {
		cJSON *req = cJSON_Parse(body);
		rc = m->env->chat(m->env->chat_ctx, req, &resp, err);
		cJSON_Delete(req);
		if (rc < 0)
			goto out;
		u->calls++;
	}
	struct ftk_openai_reply r;
	int bad_reply = ftk_openai_reply_read(resp, &r) < 0;
	if (!hit) {
		if (r.prompt_tokens > 0)
			u->prompt_tokens += r.prompt_tokens;
		if (r.completion_tokens > 0)
			u->completion_tokens += r.completion_tokens;
	}
	*reply = !bad_reply && r.text ? parse_content(r.text) : NULL;
	if (!*reply) {
		/* the judge model's fault, not the case's: a network-side failure */
		rc = ftk_error_msg(err, FTK_ENET, "the judge model's reply is not a JSON object: '%.120s'",
				   r.text ? r.text : "(no content)");
	} else if (!hit && m->cache_dir) {
		char *s = cJSON_PrintUnformatted(resp);
		ftk_openai_cache_put(m->cache_dir, where, body, 0, s, strlen(s));
		cJSON_free(s);
	}
	ftk_openai_reply_release(&r);
out:
	cJSON_Delete(resp);
	free(body);
	return rc;
}
