/*
 * citation.c: placeholder while the citation judge is written; it refuses to
 * start, so no suite can mistake it for a working judge.
 */
#include "judges/judges_int.h"

static int create(void **state, const cJSON *s, const struct ftk_judge_env *env,
		  struct ftk_error *err)
{
	return ftk_error_msg(err, FTK_EUNSUPPORTED, "the citation judge is not built yet");
}

static int score(void *state, const cJSON *kase, const struct ftk_judge_output *out,
		 struct ftk_judge_result *res, struct ftk_error *err)
{
	return FTK_EUNSUPPORTED;
}

static void destroy(void *state)
{
}

const struct ftk_judge_ops ftk_judge_citation_ops = {
	"citation", "not built yet", create, score, destroy,
};
