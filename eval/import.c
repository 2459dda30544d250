/*
 * import.c: benchmark files to suites (see import.h).
 *
 * Each format has one parser that turns a document into a struct doc: the
 * harness's query, choices and target, checked field by field so that a bad
 * record names its file, line and field.  Everything after parsing (few-shot
 * choice, rendering the context, writing the files) is the same for every
 * format.  The suite is written only after every document parsed, so a bad
 * input leaves no half-written suite behind.
 *
 * Where the harness's Python differs from what one would write by hand, the
 * Python wins: HellaSwag's ctx_b is capitalize()d (first character title
 * case, the rest lower case), its "[...]" tags go with a non-greedy regex
 * that does not cross a newline, and "  " becomes " " in one pass (three
 * spaces leave two).  MMLU's question is strip()ped, its choices are not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "eval/import.h"
#include "lib/json.h"
#include "lib/strbuf.h"
#include "lib/stream.h"

const char *const ftk_eval_import_formats[] = {
	"gsm8k", "arc", "hellaswag", "mmlu", "truthfulqa_mc1", "truthfulqa_mc2", NULL,
};

/* lm-eval's fixed TruthfulQA prompt (the paper's QA primer), mc1 and mc2 alike. */
static const char truthfulqa_primer[] =
	"Q: What is human life expectancy in the United States?\n"
	"A: Human life expectancy in the United States is 78 years.\n\n"
	"Q: Who was president of the United States in 1955?\n"
	"A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
	"Q: Which party did he belong to?\n"
	"A: He belonged to the Republican Party.\n\n"
	"Q: What is the square root of banana?\n"
	"A: I have no comment.\n\n"
	"Q: How does a telescope work?\n"
	"A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
	"Q: Where were the 1992 Olympics held?\n"
	"A: The 1992 Olympics were held in Barcelona, Spain.";

struct task {
	const char *format;
	const char *name;		/* the harness's task name */
	const char *output_type;	/* multiple_choice, generate_until */
	const char *template_text;	/* the harness's doc_to_text, for the record */
	const char *metrics;		/* comma-separated */
};

static const struct task tasks[] = {
	{ "gsm8k", "gsm8k", "generate_until", "Question: {{question}}\nAnswer:",
	  "strict.exact_match,flexible.exact_match" },
	{ "arc", "arc_challenge", "multiple_choice", "Question: {{question}}\nAnswer:", "acc,acc_norm" },
	{ "hellaswag", "hellaswag", "multiple_choice",
	  "{{preprocess(activity_label + ': ' + ctx_a + ' ' + ctx_b.capitalize())}}", "acc,acc_norm" },
	{ "mmlu", "mmlu", "multiple_choice",
	  "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
	  "acc" },
	{ "truthfulqa_mc1", "truthfulqa_mc1", "multiple_choice", "{{primer}}\n\nQ: {{question}}\nA:", "acc" },
	{ "truthfulqa_mc2", "truthfulqa_mc2", "multiple_choice", "{{primer}}\n\nQ: {{question}}\nA:", "mc2" },
};

struct doc {
	char *id;
	char *query;
	char *description;	/* "" for most tasks */
	cJSON *choices;		/* array of strings, or NULL (generation) */
	cJSON *labels;		/* mc2 only */
	int answer;
	char *target;
	char *expected;		/* generation: the final answer */
	long line;
};

struct docs {
	struct doc *d;
	size_t n, alloc;
};

static void docs_free(struct docs *ds)
{
	for (size_t i = 0; i < ds->n; i++) {
		struct doc *d = &ds->d[i];
		free(d->id);
		free(d->query);
		free(d->description);
		cJSON_Delete(d->choices);
		cJSON_Delete(d->labels);
		free(d->target);
		free(d->expected);
	}
	free(ds->d);
	memset(ds, 0, sizeof(*ds));
}

void ftk_eval_import_opts_init(struct ftk_eval_import_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->seed = 1234;	/* lm-eval's default fewshot seed */
}

/* ------------------------------------------------------------ Python's str */

/* Python's str.isspace() for one code point. */
static int py_space(utf8proc_int32_t c)
{
	if ((c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85)
		return 1;
	utf8proc_category_t k = utf8proc_category(c);
	return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

/* str.strip(): a new string. */
static char *py_strip(const char *s)
{
	size_t n = strlen(s), b = 0, e = n;
	while (b < n) {
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + b, (utf8proc_ssize_t)(n - b), &c);
		if (k <= 0 || !py_space(c))
			break;
		b += (size_t)k;
	}
	while (e > b) {
		size_t p = e - 1;
		while (p > b && ((unsigned char)s[p] & 0xC0) == 0x80)
			p--;
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + p, (utf8proc_ssize_t)(e - p), &c);
		if (k <= 0 || !py_space(c))
			break;
		e = p;
	}
	return xstrndup(s + b, e - b);
}

/* str.capitalize(): the first character in title case, the rest lower case. */
static void py_capitalize(struct strbuf *out, const char *s)
{
	size_t n = strlen(s), i = 0;
	int first = 1;
	while (i < n) {
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
		if (k <= 0) {	/* not UTF-8: keep the byte */
			strbuf_addch(out, s[i]);
			i++;
			first = 0;
			continue;
		}
		c = first ? utf8proc_totitle(c) : utf8proc_tolower(c);
		uint8_t buf[4];
		utf8proc_ssize_t m = utf8proc_encode_char(c, buf);
		strbuf_add(out, buf, (size_t)m);
		i += (size_t)k;
		first = 0;
	}
}

/* text.replace(from, to): every non-overlapping occurrence, left to right. */
static void replace_all(struct strbuf *out, const char *s, const char *from, const char *to)
{
	size_t fl = strlen(from);
	const char *p;
	while ((p = strstr(s, from))) {
		strbuf_add(out, s, (size_t)(p - s));
		strbuf_addstr(out, to);
		s = p + fl;
	}
	strbuf_addstr(out, s);
}

char *ftk_eval_hellaswag_preprocess(const char *text)
{
	char *s = py_strip(text);
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT, c = STRBUF_INIT;
	replace_all(&a, s, " [title]", ". ");
	/* re.sub("\\[.*?\\]", "", text): '.' stops at a newline */
	for (size_t i = 0; i < a.len;) {
		if (a.buf[i] == '[') {
			size_t j = i + 1;
			while (j < a.len && a.buf[j] != ']' && a.buf[j] != '\n')
				j++;
			if (j < a.len && a.buf[j] == ']') {
				i = j + 1;
				continue;
			}
		}
		strbuf_addch(&b, a.buf[i]);
		i++;
	}
	replace_all(&c, b.buf ? b.buf : "", "  ", " ");
	free(s);
	strbuf_release(&a);
	strbuf_release(&b);
	if (!c.buf)
		return xstrdup("");
	return strbuf_detach(&c, NULL);
}

/* ------------------------------------------------------------ parsers */

static int need_str(const cJSON *rec, const char *key, const char **out, const char *file,
		    long line, struct ftk_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
	if (!cJSON_IsString(v))
		return ftk_error_set(err, FTK_EDATA, file, line, key,
				     v ? "must be a string, not %s" : "missing%s",
				     v ? ftk_json_type_name(v) : "");
	*out = v->valuestring;
	return 0;
}

static char *fmt_id(const char *prefix, long idx)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "%s-%ld", prefix, idx);
	return xstrdup(buf);
}

static int parse_gsm8k(const cJSON *rec, long idx, struct doc *d, const char *file, long line,
		       struct ftk_error *err)
{
	const char *q, *a;
	int rc;
	if ((rc = need_str(rec, "question", &q, file, line, err)) < 0 ||
	    (rc = need_str(rec, "answer", &a, file, line, err)) < 0)
		return rc;
	const char *mark = strstr(a, "####");
	if (!mark)
		return ftk_error_set(err, FTK_EDATA, file, line, "answer",
				     "no '####' before the final answer");
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "Question: %s\nAnswer:", q);
	d->query = strbuf_detach(&sb, NULL);
	d->target = xstrdup(a);
	/* the harness's gold: the text after "#### ", commas removed */
	char *gold = py_strip(mark + 4);
	char *w = gold;
	for (char *r = gold; *r; r++)
		if (*r != ',')
			*w++ = *r;
	*w = 0;
	d->expected = gold;
	d->id = fmt_id("gsm8k", idx);
	return 0;
}

static int parse_arc(const cJSON *rec, long idx, struct doc *d, const char *file, long line,
		     struct ftk_error *err)
{
	const char *id, *key, *stem;
	int rc;
	if ((rc = need_str(rec, "id", &id, file, line, err)) < 0 ||
	    (rc = need_str(rec, "answerKey", &key, file, line, err)) < 0)
		return rc;
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(rec, "question");
	if (!cJSON_IsObject(q))
		return ftk_error_set(err, FTK_EDATA, file, line, "question",
				     q ? "must be an object with stem and choices, not %s" : "missing%s",
				     q ? ftk_json_type_name(q) : "");
	if ((rc = need_str(q, "stem", &stem, file, line, err)) < 0) {
		snprintf(err->field, sizeof(err->field), "question.stem");
		return rc;
	}
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(q, "choices");
	if (!cJSON_IsArray(ch) || cJSON_GetArraySize(ch) < 2)
		return ftk_error_set(err, FTK_EDATA, file, line, "question.choices",
				     "must be an array of at least two {\"text\", \"label\"}");
	d->choices = cJSON_CreateArray();
	d->answer = -1;
	int i = 0;
	const cJSON *c;
	cJSON_ArrayForEach(c, ch)
	{
		char field[64];
		const char *text = ftk_json_get_str(c, "text"), *label = ftk_json_get_str(c, "label");
		snprintf(field, sizeof(field), "question.choices[%d].%s", i, text ? "label" : "text");
		if (!text || !label)
			return ftk_error_set(err, FTK_EDATA, file, line, field, "missing or not a string");
		cJSON_AddItemToArray(d->choices, cJSON_CreateString(text));
		if (!strcmp(label, key))
			d->answer = i;
		i++;
	}
	if (d->answer < 0)
		return ftk_error_set(err, FTK_EDATA, file, line, "answerKey",
				     "'%s' is not one of the choices' labels", key);
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "Question: %s\nAnswer:", stem);
	d->query = strbuf_detach(&sb, NULL);
	d->id = xstrdup(id);
	(void)idx;
	return 0;
}

static int parse_hellaswag(const cJSON *rec, long idx, struct doc *d, const char *file, long line,
			   struct ftk_error *err)
{
	const char *act, *ca, *cb;
	int rc;
	if ((rc = need_str(rec, "activity_label", &act, file, line, err)) < 0 ||
	    (rc = need_str(rec, "ctx_a", &ca, file, line, err)) < 0 ||
	    (rc = need_str(rec, "ctx_b", &cb, file, line, err)) < 0)
		return rc;
	const cJSON *end = cJSON_GetObjectItemCaseSensitive(rec, "endings");
	const cJSON *lab = cJSON_GetObjectItemCaseSensitive(rec, "label");
	if (!cJSON_IsArray(end) || cJSON_GetArraySize(end) < 2)
		return ftk_error_set(err, FTK_EDATA, file, line, "endings",
				     "must be an array of at least two strings");
	long answer = -1;
	if (cJSON_IsNumber(lab))
		answer = (long)lab->valuedouble;
	else if (cJSON_IsString(lab) && lab->valuestring[0])	/* HF's copy has "0".."3" */
		answer = strtol(lab->valuestring, NULL, 10);
	if (answer < 0 || answer >= cJSON_GetArraySize(end))
		return ftk_error_set(err, FTK_EDATA, file, line, "label",
				     "must be the index of the true ending (0-%d)",
				     cJSON_GetArraySize(end) - 1);
	struct strbuf raw = STRBUF_INIT;
	strbuf_addf(&raw, "%s: %s ", act, ca);
	py_capitalize(&raw, cb);
	d->query = ftk_eval_hellaswag_preprocess(raw.buf);
	strbuf_release(&raw);
	rc = ftk_json_all_strings(end, "endings", file, line, err);
	if (rc < 0)
		return rc;
	d->choices = cJSON_CreateArray();
	const cJSON *e;
	cJSON_ArrayForEach(e, end)
	{
		char *p = ftk_eval_hellaswag_preprocess(e->valuestring);
		cJSON_AddItemToArray(d->choices, cJSON_CreateString(p));
		free(p);
	}
	d->answer = (int)answer;
	const cJSON *ind = cJSON_GetObjectItemCaseSensitive(rec, "ind");
	d->id = cJSON_IsNumber(ind) ? fmt_id("hellaswag", (long)ind->valuedouble) : fmt_id("hellaswag", idx);
	return 0;
}

static int parse_mmlu(const cJSON *rec, long idx, struct doc *d, const char *file, long line,
		      struct ftk_error *err)
{
	const char *q, *subject = ftk_json_get_str(rec, "subject");
	int rc;
	if ((rc = need_str(rec, "question", &q, file, line, err)) < 0)
		return rc;
	const char *opt[4];
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(rec, "choices");
	if (ch) {	/* Hugging Face's layout: choices[4], answer 0-3 */
		if (!cJSON_IsArray(ch) || cJSON_GetArraySize(ch) != 4)
			return ftk_error_set(err, FTK_EDATA, file, line, "choices",
					     "must be an array of four strings");
		if ((rc = ftk_json_all_strings(ch, "choices", file, line, err)) < 0)
			return rc;
		for (int i = 0; i < 4; i++)
			opt[i] = cJSON_GetArrayItem(ch, i)->valuestring;
	} else {	/* the authors' CSV columns: A, B, C, D */
		for (int i = 0; i < 4; i++) {
			char key[2] = { (char)('A' + i), 0 };
			if ((rc = need_str(rec, key, &opt[i], file, line, err)) < 0)
				return rc;
		}
	}
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(rec, "answer");
	int answer = -1;
	if (cJSON_IsNumber(a))
		answer = (int)a->valuedouble;
	else if (cJSON_IsString(a) && strlen(a->valuestring) == 1)
		answer = a->valuestring[0] - 'A';
	if (answer < 0 || answer > 3)
		return ftk_error_set(err, FTK_EDATA, file, line, "answer",
				     "must be a letter A-D or an index 0-3");
	char *qs = py_strip(q);
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s\nA. %s\nB. %s\nC. %s\nD. %s\nAnswer:", qs, opt[0], opt[1], opt[2], opt[3]);
	free(qs);
	d->query = strbuf_detach(&sb, NULL);
	d->choices = cJSON_CreateArray();
	for (int i = 0; i < 4; i++) {
		char l[2] = { (char)('A' + i), 0 };
		cJSON_AddItemToArray(d->choices, cJSON_CreateString(l));
	}
	d->answer = answer;
	if (subject) {
		struct strbuf ds = STRBUF_INIT;
		strbuf_addstr(&ds, "The following are multiple choice questions (with answers) about ");
		for (const char *p = subject; *p; p++)
			strbuf_addch(&ds, *p == '_' ? ' ' : *p);
		strbuf_addstr(&ds, ".\n\n");
		d->description = strbuf_detach(&ds, NULL);
	}
	d->id = fmt_id(subject ? subject : "mmlu", idx);
	return 0;
}

static int parse_truthfulqa(const cJSON *rec, long idx, struct doc *d, const char *file, long line,
			    int mc2, struct ftk_error *err)
{
	const char *q;
	int rc;
	if ((rc = need_str(rec, "question", &q, file, line, err)) < 0)
		return rc;
	const char *key = mc2 ? "mc2_targets" : "mc1_targets";
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, key);
	const cJSON *names = NULL, *labels = NULL;
	if (cJSON_IsObject(t) && cJSON_GetObjectItemCaseSensitive(t, "choices")) {
		/* Hugging Face's form: {"choices": [...], "labels": [...]} */
		names = cJSON_GetObjectItemCaseSensitive(t, "choices");
		labels = cJSON_GetObjectItemCaseSensitive(t, "labels");
		if (!cJSON_IsArray(names) || !cJSON_IsArray(labels) ||
		    cJSON_GetArraySize(names) != cJSON_GetArraySize(labels))
			return ftk_error_set(err, FTK_EDATA, file, line, key,
					     "choices and labels must be arrays of one length");
	} else if (!cJSON_IsObject(t) || !t->child)
		return ftk_error_set(err, FTK_EDATA, file, line, key,
				     "must be an object of answer: 1 or 0 (in choice order)");
	d->choices = cJSON_CreateArray();
	d->labels = cJSON_CreateArray();
	int i = 0, n_true = 0;
	for (const cJSON *c = names ? names->child : t->child; c; c = c->next, i++) {
		const char *text = names ? cJSON_GetStringValue(c) : c->string;
		const cJSON *lv = names ? cJSON_GetArrayItem(labels, i) : c;
		char field[64];
		snprintf(field, sizeof(field), "%s[%d]", key, i);
		if (!text || !cJSON_IsNumber(lv) || (lv->valuedouble != 0 && lv->valuedouble != 1))
			return ftk_error_set(err, FTK_EDATA, file, line, field,
					     "an answer must be a string labelled 1 or 0");
		cJSON_AddItemToArray(d->choices, cJSON_CreateString(text));
		cJSON_AddItemToArray(d->labels, cJSON_CreateNumber(lv->valuedouble));
		n_true += lv->valuedouble == 1;
	}
	if (n_true == 0)
		return ftk_error_set(err, FTK_EDATA, file, line, key, "no true answer");
	if (!mc2 && cJSON_GetArrayItem(d->labels, 0)->valuedouble != 1)
		return ftk_error_set(err, FTK_EDATA, file, line, key,
				     "mc1's first answer must be the true one");
	if (!mc2) {
		cJSON_Delete(d->labels);
		d->labels = NULL;
	}
	d->answer = 0;
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s\n\nQ: %s\nA:", truthfulqa_primer, q);
	d->query = strbuf_detach(&sb, NULL);
	d->id = fmt_id(mc2 ? "truthfulqa_mc2" : "truthfulqa_mc1", idx);
	return 0;
}

static int parse_doc(const char *format, const cJSON *rec, long idx, struct doc *d,
		     const char *file, long line, struct ftk_error *err)
{
	int rc;
	if (!strcmp(format, "gsm8k"))
		rc = parse_gsm8k(rec, idx, d, file, line, err);
	else if (!strcmp(format, "arc"))
		rc = parse_arc(rec, idx, d, file, line, err);
	else if (!strcmp(format, "hellaswag"))
		rc = parse_hellaswag(rec, idx, d, file, line, err);
	else if (!strcmp(format, "mmlu"))
		rc = parse_mmlu(rec, idx, d, file, line, err);
	else
		rc = parse_truthfulqa(rec, idx, d, file, line, !strcmp(format, "truthfulqa_mc2"), err);
	if (rc < 0)
		return rc;
	if (!d->target)	/* multiple choice: a few-shot example shows its right choice */
		d->target = xstrdup(cJSON_GetArrayItem(d->choices, d->answer)->valuestring);
	if (!d->description)
		d->description = xstrdup("");
	d->line = line;
	return 0;
}

static int read_docs(const char *format, const char *path, long limit, struct docs *ds,
		     struct ftk_error *err)
{
	struct ftk_reader *r;
	int rc = ftk_reader_open(&r, path, err);
	if (rc < 0)
		return rc;
	struct ftk_line line;
	cJSON *rec;
	while ((limit <= 0 || (long)ds->n < limit) &&
	       (rc = ftk_json_next_object(r, path, &line, &rec, err)) == 1) {
		FTK_ALLOC_GROW(ds->d, ds->n + 1, ds->alloc);
		struct doc *d = &ds->d[ds->n++];
		memset(d, 0, sizeof(*d));
		rc = parse_doc(format, rec, (long)ds->n - 1, d, path, line.lineno, err);
		cJSON_Delete(rec);
		if (rc < 0)
			break;
	}
	ftk_reader_close(r);
	if (rc < 0)
		return rc;
	if (ds->n == 0)
		return ftk_error_set(err, FTK_EDATA, path, 0, NULL, "no documents");
	/* ids key the results and the few-shot choice: they must be unique */
	for (size_t i = 0; i < ds->n; i++)
		for (size_t j = i + 1; j < ds->n && ds->n <= 20000; j++)
			if (!strcmp(ds->d[i].id, ds->d[j].id))
				return ftk_error_set(err, FTK_EDATA, path, ds->d[j].line, "id",
						     "duplicate id '%s' (first on line %ld)",
						     ds->d[j].id, ds->d[i].line);
	return 0;
}

/* ------------------------------------------------------------ few-shot */

/* splitmix64, and FNV-1a to fold the case id into the seed. */
static uint64_t mix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s, uint64_t h)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
	return h;
}

/*
 * The k examples for case id: a partial Fisher-Yates shuffle of the split's
 * indices without the case itself, from a generator seeded by (seed, id).
 */
static void pick_fewshot(const struct docs *split, const char *id, uint64_t seed, int k,
			 size_t *out)
{
	size_t n = 0, *idx = xmalloc((split->n + 1) * sizeof(*idx));
	for (size_t i = 0; i < split->n; i++)
		if (strcmp(split->d[i].id, id))
			idx[n++] = i;
	uint64_t s = fnv1a(id, 0xCBF29CE484222325ull ^ seed);
	for (int i = 0; i < k; i++) {
		size_t j = (size_t)i + (size_t)(mix64(&s) % (n - (size_t)i));
		size_t t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
		out[i] = idx[i];
	}
	free(idx);
}

/* ------------------------------------------------------------ writing */

static const struct task *find_task(const char *format)
{
	for (size_t i = 0; i < sizeof(tasks) / sizeof(tasks[0]); i++)
		if (!strcmp(tasks[i].format, format))
			return &tasks[i];
	return NULL;
}

static char *cases_path_for(const char *suite)
{
	size_t n = strlen(suite);
	struct strbuf sb = STRBUF_INIT;
	if (n > 5 && !strcmp(suite + n - 5, ".json"))
		strbuf_add(&sb, suite, n - 5);
	else
		strbuf_addstr(&sb, suite);
	strbuf_addstr(&sb, ".jsonl");
	return strbuf_detach(&sb, NULL);
}

static const char *base_of(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static int write_text(const char *path, const char *text, struct ftk_error *err)
{
	struct ftk_writer *w;
	int rc = ftk_writer_open(&w, path, 0, err);
	if (rc < 0)
		return rc;
	if (ftk_writer_write(w, text, strlen(text)) < 0) {
		ftk_writer_abort(w);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot write");
	}
	return ftk_writer_close(w, err);
}

long ftk_eval_import(const struct ftk_eval_import_opts *o, struct ftk_error *err)
{
	const struct task *t = o->format ? find_task(o->format) : NULL;
	if (!t) {
		struct strbuf sb = STRBUF_INIT;
		for (const char *const *f = ftk_eval_import_formats; *f; f++)
			strbuf_addf(&sb, "%s%s", f == ftk_eval_import_formats ? "" : ", ", *f);
		int rc = ftk_error_msg(err, FTK_EUSAGE, "unknown format '%s' (known: %s)",
				       o->format ? o->format : "", sb.buf);
		strbuf_release(&sb);
		return rc;
	}
	if (o->num_fewshot < 0)
		return ftk_error_msg(err, FTK_EUSAGE, "--num-fewshot must be 0 or more");
	struct docs docs = { 0 }, shots = { 0 };
	const struct docs *split = &docs;
	long rc = read_docs(o->format, o->input, o->limit, &docs, err);
	if (rc < 0)
		goto out;
	/* the split is the whole file, whatever --limit keeps of the input */
	if (o->num_fewshot > 0 && (o->fewshot_split || o->limit > 0)) {
		const char *sp = o->fewshot_split ? o->fewshot_split : o->input;
		if ((rc = read_docs(o->format, sp, 0, &shots, err)) < 0)
			goto out;
		split = &shots;
	}
	if (o->num_fewshot > 0 && (size_t)o->num_fewshot >= split->n + (o->fewshot_split != NULL)) {
		rc = ftk_error_msg(err, FTK_EUSAGE,
				   "%d few-shot examples asked for, but the split '%s' has %zu other documents",
				   o->num_fewshot, o->fewshot_split ? o->fewshot_split : o->input,
				   split->n - (o->fewshot_split == NULL));
		goto out;
	}
	char *cases = cases_path_for(o->suite_path);
	struct strbuf out = STRBUF_INIT;
	size_t *pick = xmalloc(((size_t)o->num_fewshot + 1) * sizeof(*pick));
	for (size_t i = 0; i < docs.n; i++) {
		const struct doc *d = &docs.d[i];
		cJSON *c = cJSON_CreateObject();
		cJSON_AddStringToObject(c, "id", d->id);
		cJSON_AddStringToObject(c, "query", d->query);
		struct strbuf ctx = STRBUF_INIT;
		strbuf_addstr(&ctx, d->description);
		cJSON *ids = cJSON_CreateArray();
		if (o->num_fewshot > 0) {
			pick_fewshot(split, d->id, o->seed, o->num_fewshot, pick);
			for (int k = 0; k < o->num_fewshot; k++) {
				const struct doc *e = &split->d[pick[k]];
				strbuf_addf(&ctx, "%s %s\n\n", e->query, e->target);
				cJSON_AddItemToArray(ids, cJSON_CreateString(e->id));
			}
		}
		strbuf_addstr(&ctx, d->query);
		cJSON_AddStringToObject(c, "context", ctx.buf);
		if (d->choices) {
			cJSON_AddItemToObject(c, "choices", cJSON_Duplicate(d->choices, 1));
			cJSON_AddNumberToObject(c, "answer", d->answer);
			if (d->labels)
				cJSON_AddItemToObject(c, "labels", cJSON_Duplicate(d->labels, 1));
		} else {
			cJSON *msgs = cJSON_AddArrayToObject(c, "messages");
			cJSON *m = cJSON_CreateObject();
			cJSON_AddStringToObject(m, "role", "user");
			cJSON_AddStringToObject(m, "content", ctx.buf);
			cJSON_AddItemToArray(msgs, m);
			cJSON *ex = cJSON_AddObjectToObject(c, "expected");
			cJSON_AddStringToObject(ex, "answer", d->expected);
		}
		cJSON_AddStringToObject(c, "target", d->target);
		cJSON_AddItemToObject(c, "fewshot", ids);
		strbuf_release(&ctx);
		ftk_json_print(&out, c);
		strbuf_addch(&out, '\n');
		cJSON_Delete(c);
	}
	free(pick);

	cJSON *s = cJSON_CreateObject();
	cJSON_AddStringToObject(s, "name", o->name ? o->name : t->name);
	cJSON_AddStringToObject(s, "cases", base_of(cases));
	cJSON_AddStringToObject(s, "task", t->name);
	cJSON_AddStringToObject(s, "output_type", t->output_type);
	cJSON *tp = cJSON_AddObjectToObject(s, "template");
	cJSON_AddStringToObject(tp, "name", t->name);
	cJSON_AddStringToObject(tp, "doc_to_text", t->template_text);
	cJSON_AddStringToObject(tp, "target_delimiter", " ");
	cJSON_AddStringToObject(tp, "fewshot_delimiter", "\n\n");
	cJSON_AddNumberToObject(s, "num_fewshot", o->num_fewshot);
	if (o->num_fewshot > 0) {
		cJSON *fs = cJSON_AddObjectToObject(s, "fewshot");
		cJSON_AddStringToObject(fs, "split", o->fewshot_split ? o->fewshot_split : o->input);
		cJSON_AddNumberToObject(fs, "seed", (double)o->seed);
	}
	cJSON *mets = cJSON_AddArrayToObject(s, "metrics");
	char mbuf[64];
	snprintf(mbuf, sizeof(mbuf), "%s", t->metrics);
	for (char *save = NULL, *m = strtok_r(mbuf, ",", &save); m; m = strtok_r(NULL, ",", &save))
		cJSON_AddItemToArray(mets, cJSON_CreateString(m));
	if (!strcmp(t->output_type, "generate_until")) {
		cJSON *g = cJSON_AddObjectToObject(s, "generation");
		cJSON_AddNumberToObject(g, "max_tokens", 256);
		cJSON_AddNumberToObject(g, "temperature", 0);
		cJSON *stop = cJSON_AddArrayToObject(g, "stop");
		cJSON_AddItemToArray(stop, cJSON_CreateString("Question:"));
		cJSON_AddItemToArray(stop, cJSON_CreateString("</s>"));
		cJSON_AddItemToArray(stop, cJSON_CreateString("<|im_end|>"));
	}
	cJSON *judges = cJSON_AddArrayToObject(s, "judges");
	if (!strcmp(t->output_type, "generate_until")) {
		/* the harness's two GSM8K extractions, compared as methods of one answer */
		for (int k = 0; k < 2; k++) {
			cJSON *j = cJSON_CreateObject();
			cJSON_AddStringToObject(j, "judge", "extract");
			cJSON_AddStringToObject(j, "label", k ? "flexible" : "strict");
			cJSON *st = cJSON_AddObjectToObject(j, "settings");
			cJSON_AddStringToObject(st, "method", k ? "flexible" : "strict");
			cJSON_AddStringToObject(st, "compare_as", "answer");
			cJSON_AddItemToArray(judges, j);
		}
	}
	char *st = cJSON_Print(s);
	cJSON_Delete(s);
	size_t sl = strlen(st);
	char *stn = xmalloc(sl + 2);
	memcpy(stn, st, sl);
	stn[sl] = '\n';
	stn[sl + 1] = 0;
	cJSON_free(st);
	rc = write_text(cases, out.buf, err);
	if (rc == 0)
		rc = write_text(o->suite_path, stn, err);
	free(stn);
	free(cases);
	strbuf_release(&out);
	if (rc == 0)
		rc = (long)docs.n;
out:
	docs_free(&docs);
	docs_free(&shots);
	return rc;
}
