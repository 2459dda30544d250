/*
 * llm.c: a rubric graded by a judge model.
 *
 * Some answers can only be judged by reading them.  This judge sends the
 * question, the answer and the case's rubric to a judge model and asks for a
 * JSON verdict: {"score": s, "pass": true|false, "reason": "..."} with s in
 * [0, 1].  It asks k times ("votes", default 3, odd so there is a majority)
 * with the vote index as the request's seed, so each vote is its own cached
 * request.  The case passes when most votes pass; a split vote (any vote on
 * the other side) is flagged for a person, because a verdict the judge model
 * itself is unsure of is exactly what a reviewer should read.  Token usage
 * is reported so eval can put the judging spend in the ledger.
 *
 * Settings: "model" (required), "votes" (1 to 15), "temperature" (default
 * 0.7 when votes > 1, so the votes can differ; else 0), "max_tokens",
 * "cache" (a directory; the env's cache_dir wins), "rubric" (used when the
 * case has none), "threshold" (score at or above which a vote passes when
 * the reply has no "pass", default 0.5).
 * Metrics: "pass" (semantic, the majority verdict), "score" (semantic, the
 * mean score), "agreement" (the fraction of votes on the majority side).
 * Detail: {"votes":[{"score","pass","reason"}]}.
 *
 * The request goes through struct ftk_judge_env's chat function (eval's HTTP
 * client); a judge created without one refuses to start.
 */
#include <string.h>
#include "judges/judges_int.h"
#include "lib/json.h"
#include "lib/strbuf.h"

struct llm {
	struct jmodel m;
	int votes;
	double threshold;
	char *rubric;
};

static const char system_prompt[] =
	"You grade one answer against a rubric. Read the conversation, the answer and the "
	"rubric. Reply with a JSON object only: {\"score\": <number from 0 to 1>, \"pass\": "
	"<true or false>, \"reason\": \"<one sentence>\"}. Judge what the answer says, not "
	"how it is formatted.";

static int create(void **state, const cJSON *s, const struct ftk_judge_env *env,
		  struct ftk_error *err)
{
	static const char *const known[] = { "model", "votes", "temperature", "max_tokens",
					     "cache", "rubric", "threshold", NULL };
	double votes, thr;
	const char *rubric;
	int rc;
	if ((rc = jset_known(s, known, err)) < 0 ||
	    (rc = jset_num(s, "votes", 3, &votes, err)) < 0 ||
	    (rc = jset_num(s, "threshold", 0.5, &thr, err)) < 0 ||
	    (rc = jset_str(s, "rubric", NULL, &rubric, err)) < 0)
		return rc;
	if (votes < 1 || votes > 15 || votes != (int)votes)
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.votes",
				     "'votes' must be a whole number from 1 to 15");
	struct llm *l = xcalloc(1, sizeof(*l));
	if ((rc = jmodel_init(&l->m, s, env, err)) < 0) {
		free(l);
		return rc;
	}
	if (!cJSON_GetObjectItemCaseSensitive(s, "temperature") && votes > 1)
		l->m.temperature = 0.7;
	l->votes = (int)votes;
	l->threshold = thr;
	l->rubric = rubric ? xstrdup(rubric) : NULL;
	*state = l;
	return 0;
}

static void destroy(void *state)
{
	struct llm *l = state;
	if (!l)
		return;
	jmodel_release(&l->m);
	free(l->rubric);
	free(l);
}

/* The conversation as "role: content" lines; content parts give their text. */
static void render_messages(const cJSON *msgs, struct strbuf *sb)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, msgs) {
		const char *role = ftk_json_get_str(m, "role");
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
		if (!role)
			continue;
		if (cJSON_IsString(content)) {
			strbuf_addf(sb, "%s: %s\n", role, content->valuestring);
		} else if (cJSON_IsArray(content)) {
			strbuf_addf(sb, "%s:", role);
			const cJSON *part;
			cJSON_ArrayForEach(part, content) {
				const char *t = ftk_json_get_str(part, "text");
				if (t)
					strbuf_addf(sb, " %s", t);
			}
			strbuf_addch(sb, '\n');
		}
	}
}

static int score(void *state, const cJSON *kase, const struct ftk_judge_output *out,
		 struct ftk_judge_result *res, struct ftk_error *err)
{
	struct llm *l = state;
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(kase, "rubric");
	const char *rubric = cJSON_IsString(r) ? r->valuestring : l->rubric;
	if (!rubric)
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "rubric",
				     "case '%s': the llm judge needs a 'rubric' (in the case or the settings)",
				     jcase_id(kase));
	struct strbuf user = STRBUF_INIT;
	strbuf_addstr(&user, "Conversation:\n");
	render_messages(cJSON_GetObjectItemCaseSensitive(kase, "messages"), &user);
	strbuf_addf(&user, "\nAnswer:\n%s\n\nRubric:\n%s\n", jtext_answer(out), rubric);
	int npass = 0;
	double sum = 0;
	cJSON *votes = cJSON_AddArrayToObject(res->detail, "votes");
	int rc = 0;
	for (int v = 0; v < l->votes; v++) {
		cJSON *reply = NULL;
		rc = jmodel_ask(&l->m, system_prompt, user.buf, v, &reply, &res->usage, err);
		if (rc < 0)
			break;
		const cJSON *sc = cJSON_GetObjectItemCaseSensitive(reply, "score");
		const cJSON *ps = cJSON_GetObjectItemCaseSensitive(reply, "pass");
		double s = cJSON_IsNumber(sc) ? sc->valuedouble : cJSON_IsTrue(ps) ? 1 : 0;
		if (s < 0)
			s = 0;
		if (s > 1)
			s = s <= 10 ? s / 10 : 1;	/* a judge that answered on a 0-10 scale */
		int pass = cJSON_IsBool(ps) ? cJSON_IsTrue(ps) : s >= l->threshold;
		npass += pass;
		sum += s;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "score", s);
		cJSON_AddBoolToObject(o, "pass", pass);
		const char *why = ftk_json_get_str(reply, "reason");
		cJSON_AddStringToObject(o, "reason", why ? why : "");
		cJSON_AddItemToArray(votes, o);
		cJSON_Delete(reply);
	}
	strbuf_release(&user);
	if (rc < 0)
		return rc;
	int majority = 2 * npass > l->votes;
	int agree = majority ? npass : l->votes - npass;
	res->primary = (int)ftk_judge_add_metric(res, "pass", majority, FTK_METRIC_SEMANTIC, 1, NULL);
	ftk_judge_add_metric(res, "score", sum / l->votes, FTK_METRIC_SEMANTIC, 0, NULL);
	ftk_judge_add_metric(res, "agreement", (double)agree / l->votes, FTK_METRIC_SEMANTIC, 0, NULL);
	if (agree < l->votes)
		ftk_judge_add_flag(res, "split_vote", "the judge model's votes split %d to %d", agree,
				   l->votes - agree);
	if (!majority)
		ftk_judge_add_failure(res, "rubric_not_met", "%d of %d votes found the rubric met",
				      npass, l->votes);
	return 0;
}

const struct ftk_judge_ops ftk_judge_llm_ops = {
	/* .name    = */ "llm",
	/* .summary = */ "a judge model grades the answer against a rubric, k votes, split votes flagged",
	/* .create  = */ create,
	/* .score   = */ score,
	/* .destroy = */ destroy,
	/* .check   = */ NULL,
};
