/*
 * cmd_decontam.c: ftk-decontam, training records that overlap an eval set.
 * summary: remove (or --report) training records that share word 13-grams with eval cases
 *
 * A training record is contaminated when it shares one word n-gram (13 by
 * default, as lm-evaluation-harness's decontamination does) with an eval
 * case's prompt or answer, after normalization (lower case, punctuation
 * removed, white space collapsed: the same steps as the harness's janitor,
 * made explicit with --normalize).
 *
 * The eval side is read once into a table of 64-bit n-gram hashes (XXH3 of
 * the n words joined by single spaces), each remembering the first case it
 * came from.  Each training record's n-grams are then looked up; the first
 * hit names the case and the n-gram in the rejects line.  Memory is the
 * eval set's n-grams (16 bytes each), not the training data.
 *
 * Eval cases are DESIGN.md's: {"id", "messages", "expected": {"answer"}}.
 * Any record with text works too (a training-format JSONL as reference):
 * its text is lib/record.h's, and a case without "id" is named file:line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "lib/json.h"
#include "lib/normalize.h"
#include "lib/record.h"
#include "dedupe.h"

static const char *const usage[] = {
	"ftk-decontam --eval CASES [options] [FILE...]", "",
	"Remove training records that share a word n-gram with an eval set.  The",
	"rejects line of each removed record names the eval case and the n-gram.", NULL,
};

struct slot {
	uint64_t h;
	uint32_t cs;	/* case index + 1; 0 is empty */
};

struct decon {
	struct ftk_tool t;
	int ngram;
	unsigned norm;
	struct ftk_dd_key *key;
	int report;
	struct slot *tab;
	size_t tab_size, tab_n;
	char **cases;
	size_t n_cases, alloc_cases;
	uint64_t short_cases, grams;
	struct strbuf raw, nb;
	struct ftk_words ws;
};

static void grow(struct decon *d)
{
	size_t old = d->tab_size;
	struct slot *ot = d->tab;
	d->tab_size = old ? old * 2 : 1 << 12;
	d->tab = xcalloc(d->tab_size, sizeof(*d->tab));
	for (size_t i = 0; i < old; i++) {
		if (!ot[i].cs)
			continue;
		size_t h = ot[i].h & (d->tab_size - 1);
		while (d->tab[h].cs)
			h = (h + 1) & (d->tab_size - 1);
		d->tab[h] = ot[i];
	}
	free(ot);
}

static uint32_t lookup(const struct decon *d, uint64_t h)
{
	size_t i = h & (d->tab_size - 1);
	while (d->tab[i].cs) {
		if (d->tab[i].h == h)
			return d->tab[i].cs;
		i = (i + 1) & (d->tab_size - 1);
	}
	return 0;
}

static void insert(struct decon *d, uint64_t h, uint32_t cs)
{
	if ((d->tab_n + 1) * 2 > d->tab_size)
		grow(d);
	size_t i = h & (d->tab_size - 1);
	while (d->tab[i].cs) {
		if (d->tab[i].h == h)
			return;		/* the first case keeps it */
		i = (i + 1) & (d->tab_size - 1);
	}
	d->tab[i].h = h;
	d->tab[i].cs = cs;
	d->tab_n++;
}

/* Normalize text and split it into words (d->ws). */
static size_t words_of(struct decon *d, const char *s, size_t len)
{
	if (ftk_normalize_words(s, len, d->norm, &d->ws, NULL) < 0)
		ftk_words_split(&d->ws, s, len);
	return d->ws.n;
}

static uint64_t gram_hash(const struct ftk_words *ws, size_t i, int n)
{
	const struct ftk_word *a = &ws->w[i], *z = &ws->w[i + n - 1];
	return XXH3_64bits(ws->joined.buf + a->off, z->off + z->len - a->off);
}

/* Insert the n-grams of one text of case cs (1-based). */
static void add_text(struct decon *d, const char *s, size_t len, uint32_t cs, int *any)
{
	size_t nw = words_of(d, s, len);
	if (nw < (size_t)d->ngram)
		return;
	*any = 1;
	for (size_t i = 0; i + d->ngram <= nw; i++)
		insert(d, gram_hash(&d->ws, i, d->ngram), cs);
}

/*
 * The texts of an eval case: its messages (or any record text), and its
 * expected answer, or each accepted answer of a list separately so that no
 * n-gram spans two of them.
 */
static int add_case(struct decon *d, const cJSON *c, uint32_t cs)
{
	int any = 0;
	strbuf_reset(&d->raw);
	ftk_record_text(c, NULL, &d->raw);
	add_text(d, d->raw.buf, d->raw.len, cs, &any);
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
	const cJSON *ans = exp ? cJSON_GetObjectItemCaseSensitive(exp, "answer") : NULL, *a;
	if (cJSON_IsString(ans))
		add_text(d, ans->valuestring, strlen(ans->valuestring), cs, &any);
	if (cJSON_IsArray(ans))
		cJSON_ArrayForEach(a, ans)
			if (cJSON_IsString(a))
				add_text(d, a->valuestring, strlen(a->valuestring), cs, &any);
	return any;
}

static void load_eval(struct decon *d, const char *path)
{
	struct ftk_reader *r;
	struct ftk_error err;
	struct ftk_line line;
	int rc;
	if (ftk_reader_open(&r, path, &err) < 0)
		die("%s", err.msg);
	while ((rc = ftk_reader_next(r, &line, &err)) > 0) {
		cJSON *c = NULL;
		if (strspn(line.data, " \t\r") >= line.len)
			continue;
		if (line.utf8_error >= 0)
			die("%s:%ld: invalid UTF-8 at byte %ld", path, line.lineno, line.utf8_error + 1);
		if (ftk_json_parse_record(line.data, line.len, &c, &err, NULL) < 0)
			die("%s:%ld: %s", path, line.lineno, err.msg);
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
		char name[512];
		if (cJSON_IsString(id))
			snprintf(name, sizeof(name), "%s", id->valuestring);
		else if (cJSON_IsNumber(id))
			snprintf(name, sizeof(name), "%.17g", id->valuedouble);
		else
			snprintf(name, sizeof(name), "%s:%ld", path, line.lineno);
		FTK_ALLOC_GROW(d->cases, d->n_cases + 1, d->alloc_cases);
		d->cases[d->n_cases++] = xstrdup(name);
		if (!add_case(d, c, (uint32_t)d->n_cases))
			d->short_cases++;
		cJSON_Delete(c);
	}
	if (rc < 0)
		die_at(&err);
	ftk_reader_close(r);
}

int cmd_decontam(int argc, char **argv)
{
	static struct decon dd;
	struct decon *d = &dd;
	struct ftk_error err;
	struct ftk_line line;
	struct ftk_strlist evals = { 0 };
	const char *key = "@text", *norm = "all";

	memset(d, 0, sizeof(*d));
	ftk_tool_init(&d->t, "ftk-decontam", NULL);
	d->ngram = 13;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING_LIST('e', "eval", &evals, "FILE",
				    "eval cases (JSONL: id, messages, expected.answer),\n"
				    "or any JSONL with text; may be given more than once"),
		FTK_OPT_STRING_LIST(0, "against", &evals, "FILE", "the same as --eval"),
		FTK_OPT_INT(0, "ngram", &d->ngram, "N", 1, 1000, "words per n-gram (default 13)"),
		FTK_OPT_STRING(0, "key", &key, "SPEC",
			       "what of a training record to check (default @text;\n"
			       "see ftk-dedupe --key)"),
		FTK_OPT_STRING(0, "normalize", &norm, "LIST", "nfc,case,punct,space (default all), or none"),
		FTK_OPT_FLAG(0, "report", &d->report, "remove nothing: write one JSON line per\n"
						       "contaminated record (file, line, case, ngram) to\n"
						       "the output instead of the records"),
		FTK_OPT_TOOL_COMMON(&d->t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-decontam", opts, usage);
	int n_evals = (int)evals.n;
	if (!n_evals)
		ftk_tool_usage_error(&d->t, "--eval CASES is required");
	if (ftk_normalize_parse(norm, &d->norm, &err) < 0)
		ftk_tool_usage_error(&d->t, "%s", err.msg);
	if (ftk_dd_key_parse(key, &d->key, &err) < 0)
		ftk_tool_usage_error(&d->t, "%s", err.msg);
	strbuf_init(&d->raw, 0);
	strbuf_init(&d->nb, 0);
	ftk_words_init(&d->ws);
	grow(d);
	ftk_tool_start(&d->t, argc, argv);
	for (int i = 0; i < n_evals; i++)
		load_eval(d, evals.v[i]);
	if (d->short_cases)
		warning("%llu of %zu eval cases have fewer than %d words and cannot match",
			(unsigned long long)d->short_cases, d->n_cases, d->ngram);

	uint64_t contaminated = 0;
	while (ftk_tool_next(&d->t, &line)) {
		cJSON *rec = ftk_tool_parse(&d->t, &line);
		if (!rec)
			continue;
		strbuf_reset(&d->raw);
		ftk_dd_key_text(d->key, rec, &d->raw);
		cJSON_Delete(rec);
		size_t nw = words_of(d, d->raw.buf, d->raw.len);
		uint32_t hit = 0;
		size_t at = 0, matches = 0;
		for (size_t i = 0; i + d->ngram <= nw; i++) {
			uint32_t cs = lookup(d, gram_hash(&d->ws, i, d->ngram));
			if (cs) {
				if (!hit) {
					hit = cs;
					at = i;
				}
				matches++;
			}
		}
		if (!hit) {
			if (!d->report)
				ftk_tool_emit(&d->t, &line);
			continue;
		}
		contaminated++;
		const struct ftk_word *a = &d->ws.w[at], *z = &d->ws.w[at + d->ngram - 1];
		cJSON *x = cJSON_CreateObject();
		cJSON_AddStringToObject(x, "case", d->cases[hit - 1]);
		char *g = xstrndup(d->ws.joined.buf + a->off, z->off + z->len - a->off);
		cJSON_AddStringToObject(x, "ngram", g);
		free(g);
		cJSON_AddNumberToObject(x, "ngrams_matched", (double)matches);
		if (d->report) {
			struct strbuf sb = STRBUF_INIT;
			strbuf_addstr(&sb, "{\"file\":");
			strbuf_add_json_str(&sb, line.file, strlen(line.file));
			strbuf_addf(&sb, ",\"line\":%ld", line.lineno);
			for (cJSON *m = x->child; m; m = m->next) {
				char *s = cJSON_PrintUnformatted(m);
				strbuf_addch(&sb, ',');
				strbuf_add_json_str(&sb, m->string, strlen(m->string));
				strbuf_addf(&sb, ":%s", s);
				cJSON_free(s);
			}
			strbuf_addch(&sb, '}');
			ftk_tool_emit_raw(&d->t, sb.buf, sb.len);
			strbuf_release(&sb);
			cJSON_Delete(x);
		} else {
			ftk_tool_reject(&d->t, &line, "contaminated", x);
		}
	}
	ftk_tool_count(&d->t, "eval-cases", d->n_cases);
	ftk_tool_count(&d->t, "eval-ngrams", d->tab_n);
	if (d->report)
		ftk_tool_count(&d->t, "contaminated", contaminated);
	for (size_t i = 0; i < d->n_cases; i++)
		free(d->cases[i]);
	free(d->cases);
	free(d->tab);
	strbuf_release(&d->raw);
	strbuf_release(&d->nb);
	ftk_words_release(&d->ws);
	ftk_dd_key_free(d->key);
	ftk_strlist_release(&evals);
	return ftk_tool_finish(&d->t);
}
