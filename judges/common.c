/*
 * common.c: helpers the judges share: settings readers with messages that
 * name the setting, the case id, the answer text without a reasoning block,
 * and the judge-model request (jmodel_ask).
 *
 * jmodel_ask sends an OpenAI chat request through the env's chat function
 * with response_format {"type":"json_object"}, takes the first choice's
 * content, strips a ``` fence if the model wrapped its JSON in one, and
 * parses it.  Replies are cached as files named by the XXH64 of the request
 * body (which holds the model, prompts, temperature and the vote index as
 * "seed"), so re-scoring a run costs nothing and k votes stay k distinct
 * requests.  A cached reply is written to a temporary file and renamed, so
 * an interrupted run never leaves half a reply behind.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "judges/judges_int.h"
#include "lib/json.h"
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

static long num_field(const cJSON *o, const char *k)
{
	const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
	return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

static void cache_path(struct strbuf *sb, const char *dir, unsigned long long h)
{
	strbuf_addf(sb, "%s/judge-%016llx.json", dir, h);
}

int jmodel_ask(struct jmodel *m, const char *system, const char *user, int sample,
	       cJSON **reply, struct ftk_judge_usage *u, struct ftk_error *err)
{
	*reply = NULL;
	if (!m->env || !m->env->chat)
		return ftk_error_msg(err, FTK_EUSAGE, "no HTTP client for the judge model");
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "model", m->model);
	cJSON *msgs = cJSON_AddArrayToObject(req, "messages");
	cJSON *sm = cJSON_CreateObject();
	cJSON_AddStringToObject(sm, "role", "system");
	cJSON_AddStringToObject(sm, "content", system);
	cJSON_AddItemToArray(msgs, sm);
	cJSON *um = cJSON_CreateObject();
	cJSON_AddStringToObject(um, "role", "user");
	cJSON_AddStringToObject(um, "content", user);
	cJSON_AddItemToArray(msgs, um);
	cJSON_AddNumberToObject(req, "temperature", m->temperature);
	cJSON_AddNumberToObject(req, "max_tokens", m->max_tokens);
	cJSON_AddNumberToObject(req, "seed", sample);
	cJSON *rf = cJSON_AddObjectToObject(req, "response_format");
	cJSON_AddStringToObject(rf, "type", "json_object");

	char *body = cJSON_PrintUnformatted(req);
	unsigned long long h = XXH64(body, strlen(body), 0);
	free(body);
	struct strbuf path = STRBUF_INIT;
	int rc = 0;
	if (m->cache_dir) {
		cache_path(&path, m->cache_dir, h);
		struct strbuf sb = STRBUF_INIT;
		if (strbuf_read_file(&sb, path.buf) == 0) {
			cJSON *c = NULL;
			if (ftk_json_parse_object(sb.buf, sb.len, &c, NULL) == 0 &&
			    cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c, "reply"))) {
				*reply = cJSON_DetachItemFromObjectCaseSensitive(c, "reply");
				u->calls++;
				u->cache_hits++;
			}
			cJSON_Delete(c);
		}
		strbuf_release(&sb);
		if (*reply)
			goto out;
	}

	cJSON *resp = NULL;
	rc = m->env->chat(m->env->chat_ctx, req, &resp, err);
	if (rc < 0)
		goto out;
	const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "choices"), 0);
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(choice, "message");
	const char *content = ftk_json_get_str(msg, "content");
	const cJSON *usage = cJSON_GetObjectItemCaseSensitive(resp, "usage");
	u->calls++;
	u->prompt_tokens += num_field(usage, "prompt_tokens");
	u->completion_tokens += num_field(usage, "completion_tokens");
	*reply = content ? parse_content(content) : NULL;
	if (!*reply) {
		rc = ftk_error_msg(err, FTK_EDATA, "the judge model's reply is not a JSON object: '%.120s'",
				   content ? content : "(no content)");
		cJSON_Delete(resp);
		goto out;
	}
	cJSON_Delete(resp);
	if (m->cache_dir) {
		mkdir(m->cache_dir, 0777);
		cJSON *c = cJSON_CreateObject();
		cJSON_AddItemToObject(c, "reply", cJSON_Duplicate(*reply, 1));
		char *txt = cJSON_PrintUnformatted(c);
		cJSON_Delete(c);
		struct strbuf tmp = STRBUF_INIT;
		strbuf_addf(&tmp, "%s.tmp.%ld", path.buf, (long)getpid());
		FILE *f = fopen(tmp.buf, "wb");
		if (f) {
			int ok = fputs(txt, f) >= 0;
			ok &= fclose(f) == 0;
			if (!ok || rename(tmp.buf, path.buf) != 0)
				unlink(tmp.buf);
		}
		free(txt);
		strbuf_release(&tmp);
	}
out:
	strbuf_release(&path);
	cJSON_Delete(req);
	return rc;
}
