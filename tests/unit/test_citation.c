/*
 * test_citation.c: the citation judge, its marker reader, sentence splitter
 * and offline entailment, and the ALCE reference check.
 *
 * The reference: ALCE's hand-written demonstration answers (ASQA, ELI5,
 * QAMPARI; datasets/alce/prompts) cite their retrieved documents.  With the
 * offline entailment, most of their sentences must be judged supported by
 * the documents they cite; the same answers with every citation moved to
 * another document (n -> n mod 5 + 1), or past the document list, must not.
 * The fractions are printed; the thresholds below leave a margin under what
 * was measured (92% of 50 sentences supported as cited, 9.5% once shifted;
 * see docs/judges.md for the sentences it misses and why).
 */
#include <string.h>
#include "testutil.h"
#include "judges/citation.h"
#include "judges/judge.h"
#include "judges/text.h"
#include "lib/json.h"
#include "lib/strbuf.h"

/* ---------------------------------------------------------------- markers */

static void markers_are(const char *s, const char *want_clean, const int *want, size_t nwant)
{
	struct strbuf clean = STRBUF_INIT;
	int *nums;
	size_t n = ftk_citation_markers(s, &nums, &clean);
	ck_assert_msg(n == nwant, "'%s': %zu markers, expected %zu", s, n, nwant);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(nums[i], want[i]);
	ck_assert_str_eq(clean.buf, want_clean);
	free(nums);
	strbuf_release(&clean);
}

START_TEST(marker_styles)
{
	markers_are("Paris is the capital [1].", "Paris is the capital.", (int[]){ 1 }, 1);
	markers_are("It rains [1][2][3].", "It rains.", (int[]){ 1, 2, 3 }, 3);
	markers_are("It rains [1, 2].", "It rains.", (int[]){ 1, 2 }, 2);
	markers_are("It rains [2-4] a lot.", "It rains a lot.", (int[]){ 2, 3, 4 }, 3);
	markers_are("It rains[^3].", "It rains.", (int[]){ 3 }, 1);
	markers_are("It rains \xe3\x80\x90" "2\xe3\x80\x91.", "It rains.", (int[]){ 2 }, 1);
	markers_are("It rains [Document 4].", "It rains.", (int[]){ 4 }, 1);
	markers_are("It rains\xc2\xb9\xc2\xb2 daily.", "It rains daily.", (int[]){ 12 }, 1);
	markers_are("It rains [1] [1].", "It rains.", (int[]){ 1 }, 1);
	/* not markers: a list in brackets, a year range in prose, an empty pair */
	markers_are("Use [x] or [].", "Use [x] or [].", NULL, 0);
	markers_are("The array a[i] grows.", "The array a[i] grows.", NULL, 0);
}
END_TEST

/* -------------------------------------------------------------- sentences */

static void sentences_are(const char *s, size_t want, const char *first)
{
	size_t *ss, *se;
	size_t n = ftk_text_sentences(s, &ss, &se);
	ck_assert_msg(n == want, "'%s': %zu sentences, expected %zu", s, n, want);
	if (first) {
		char *f = strndup(s + ss[0], se[0] - ss[0]);
		ck_assert_str_eq(f, first);
		free(f);
	}
	free(ss);
	free(se);
}

START_TEST(sentence_splitting)
{
	sentences_are("It is 3.5 km long. It rains.", 2, "It is 3.5 km long.");
	sentences_are("Dr. Smith met Mr. Jones in the U.S. capital. They talked.", 2,
		      "Dr. Smith met Mr. Jones in the U.S. capital.");
	sentences_are("J. R. R. Tolkien wrote it. It sold.", 2, "J. R. R. Tolkien wrote it.");
	sentences_are("He said \"Stop. Now.\" Then he left.", 2, "He said \"Stop. Now.\"");
	sentences_are("It was released in 1990 [1]. It sold well [2].", 2, "It was released in 1990 [1].");
	sentences_are("It was released in 1990.[1] It sold well.[2]", 2, "It was released in 1990.[1]");
	sentences_are("Is it? Yes! Fine.", 3, "Is it?");
	sentences_are("See e.g. the list. Done.", 2, "See e.g. the list.");
	sentences_are("First point\n\nSecond point", 2, "First point");
	sentences_are("", 0, NULL);
	/* 东京是日本的首都[1]。它很大[2]。 */
	sentences_are("\xe4\xb8\x9c\xe4\xba\xac\xe6\x98\xaf[1]\xe3\x80\x82\xe5\xae\x83\xe5\xbe\x88\xe5\xa4\xa7[2]\xe3\x80\x82",
		      2, "\xe4\xb8\x9c\xe4\xba\xac\xe6\x98\xaf[1]\xe3\x80\x82");
}
END_TEST

START_TEST(stemmer)
{
	/* words that must share a stem, and words that must not */
	static const char *const same[][2] = {
		{ "rains", "raining" }, { "rained", "rain" }, { "ponies", "pony" },
		{ "relational", "relate" }, { "hopeful", "hope" }, { "adjustment", "adjusts" },
		{ "controlling", "controlled" }, { "countries", "country" }, { "pok\xc3\xa9mon", "pok\xc3\xa9mons" },
	};
	static const char *const differ[][2] = {
		{ "rain", "train" }, { "colombia", "colombian" }, { "news", "new" },
	};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
		ftk_text_stem(same[i][0], &a);
		ftk_text_stem(same[i][1], &b);
		ck_assert_msg(!strcmp(a.buf, b.buf), "%s -> %s but %s -> %s", same[i][0], a.buf,
			      same[i][1], b.buf);
		strbuf_release(&a);
		strbuf_release(&b);
	}
	for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
		struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
		ftk_text_stem(differ[i][0], &a);
		ftk_text_stem(differ[i][1], &b);
		ck_assert_msg(strcmp(a.buf, b.buf), "%s and %s both -> %s", differ[i][0], differ[i][1], a.buf);
		strbuf_release(&a);
		strbuf_release(&b);
	}
}
END_TEST

/* ------------------------------------------------------------- entailment */

START_TEST(entailment_offline)
{
	const char *p = "Title: Mawsynram\nMawsynram is a town in Meghalaya, India. It receives "
			"an average annual rainfall of 11,872 millimetres. It is not the capital.";
	ck_assert_int_eq(ftk_entail_offline(p, "Mawsynram, India has an average annual rainfall of 11,872 mm.", NULL, NULL), 1);
	/* a number the passage does not hold */
	ck_assert_int_eq(ftk_entail_offline(p, "Mawsynram, India has an average annual rainfall of 12,872 mm.", NULL, NULL), 0);
	/* a name the passage does not hold */
	ck_assert_int_eq(ftk_entail_offline(p, "Cherrapunji receives an average annual rainfall of 11,872 millimetres.", NULL, NULL), 0);
	/* negation on one side only */
	ck_assert_int_eq(ftk_entail_offline(p, "Mawsynram does not receive an annual rainfall of 11,872 millimetres.", NULL, NULL), 0);
	/* the source denies what the claim asserts */
	ck_assert_int_eq(ftk_entail_offline(p, "Mawsynram is the capital of Meghalaya.", NULL, NULL), 0);
	/* a negation elsewhere in the source, about another word, does not refute */
	ck_assert_int_eq(ftk_entail_offline("His first novel was written in 1923, but not published until 1961.",
					    "His first novel was written in 1923.", NULL, NULL), 1);
	/* a title that starts with "No" is not a denial */
	ck_assert_int_eq(ftk_entail_offline("Nevil Shute wrote No Highway in 1948.", "Nevil Shute wrote No Highway.",
					    NULL, NULL), 1);
	/* inflection and nationality variants */
	ck_assert_int_eq(ftk_entail_offline(p, "The Indian town Mawsynram receives 11,872 millimetres of rain annually.", NULL, NULL), 1);
	/* nothing in common */
	ck_assert_int_eq(ftk_entail_offline(p, "Bagels were donated to a synagogue.", NULL, NULL), 0);
	cJSON *why = cJSON_CreateObject();
	ftk_entail_offline(p, "Mawsynram has 99 rainy days.", NULL, why);
	ck_assert_ptr_nonnull(cJSON_GetObjectItem(why, "missing_critical"));
	cJSON_Delete(why);
}
END_TEST


/*
 * Issue 17.10: the classes of the offline judge's misses against ALCE's
 * human labels, each a few sentence/passage pairs in the manner of ALCE's
 * answers (the demonstrations in datasets/alce/prompts), with the verdict a
 * person gives.  The pairs marked 1 were refused before the fix (classes
 * 1-4) and those marked 0 accepted (class 5); the others guard the fix
 * against reaching too far and held before and after.
 */
struct pair {
	const char *premise, *claim;
	int want;
};

static void verdicts_are(const char *cls, const struct pair *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		cJSON *why = cJSON_CreateObject();
		int got = ftk_entail_offline(v[i].premise, v[i].claim, NULL, why);
		char *w = cJSON_PrintUnformatted(why);
		ck_assert_msg(got == v[i].want, "%s: '%s' judged %s by '%.60s...' (%s)", cls, v[i].claim,
			      got ? "supported" : "unsupported", v[i].premise, w);
		free(w);
		cJSON_Delete(why);
	}
}

/* 1. A capitalized ordinary word opening a sentence is not a name. */
START_TEST(entail_sentence_opener)
{
	static const struct pair v[] = {
		{ "Title: Sunni and Shia Islam\nSunni and Shia identities (the 2 main branches of Islam) first formed around a dispute over leadership succession.",
		  "Nowadays, Sunni and Shia are the main branches of Islam.", 1 },
		{ "The Treaty of Paris was signed September 3, 1783, formally ending the conflict.",
		  "Later, the Treaty of Paris was signed on September 3, 1783.", 1 },
		{ "In New York City, Mayor Bloomberg has banned citizens from donating food directly to homeless shelters.",
		  "Additionally, Bloomberg banned citizens from donating food directly to homeless shelters.", 1 },
		{ "Mawsynram receives one of the highest rainfalls in India.",
		  "Reportedly, Mawsynram receives one of the highest rainfalls in India.", 1 },
		{ "Gong Li won the Volpi Cup for Best Actress at Venice for The Story of Qiu Ju.",
		  "According to critics, Gong Li won the Volpi Cup for Best Actress at Venice.", 1 },
		/* a name that opens a sentence still has to be in the passage */
		{ "Mawsynram receives one of the highest rainfalls in India.",
		  "Cherrapunji receives one of the highest rainfalls in India.", 0 },
		{ "The Treaty of Paris was signed September 3, 1783, formally ending the conflict.",
		  "Versailles was signed September 3, 1783, formally ending the conflict.", 0 },
	};
	verdicts_are("sentence opener", v, sizeof(v) / sizeof(v[0]));
}
END_TEST

/* 2. Ordinals and digits: "16th" and "16", "first" and "1". */
START_TEST(entail_ordinals)
{
	static const struct pair v[] = {
		{ "The series was renewed for season 16 in May 2019.",
		  "The series was renewed for a 16th season in May 2019.", 1 },
		{ "The first season premiered on March 3, 2005.",
		  "Season 1 premiered on March 3, 2005.", 1 },
		{ "She finished second in the 2012 Boston Marathon.",
		  "She finished 2nd in the 2012 Boston Marathon.", 1 },
		{ "Louis XIV was 4 when he became king in 1643, the third Bourbon king.",
		  "Louis XIV was the 3rd Bourbon king.", 1 },
		/* another number is still another number */
		{ "The series was renewed for season 15 in May 2019.",
		  "The series was renewed for a 16th season in May 2019.", 0 },
		{ "The first season premiered on March 3, 2005.",
		  "Season 2 premiered on March 3, 2005.", 0 },
	};
	verdicts_are("ordinals", v, sizeof(v) / sizeof(v[0]));
}
END_TEST

/* 3. A negation refutes only a claim that covers what it negates. */
START_TEST(entail_negation_scope)
{
	static const struct pair v[] = {
		{ "The film was not released in theaters but was shown on television in 1995.",
		  "The film was released on television in 1995.", 1 },
		{ "Shute did not publish Marazan under his full name; the novel appeared in 1926.",
		  "Shute published Marazan in 1926.", 1 },
		{ "Gong Li never worked with Chen Kaige before Farewell My Concubine, which won the Palme d'Or in 1993.",
		  "Gong Li worked on Farewell My Concubine, which won the Palme d'Or in 1993.", 1 },
		/* a negation of what the claim says still refutes it */
		{ "The film was not released in theaters.", "The film was released in theaters.", 0 },
		{ "Gong Li was not awarded the Oscar for Best Actress in 1993.",
		  "Gong Li was awarded the Oscar for Best Actress.", 0 },
		{ "Mawsynram is not the capital of Meghalaya.", "Mawsynram is the capital of Meghalaya.", 0 },
	};
	verdicts_are("negation scope", v, sizeof(v) / sizeof(v[0]));
}
END_TEST

/* 4. One-letter spelling variants of long names. */
START_TEST(entail_name_variants)
{
	static const struct pair v[] = {
		{ "The ideological practice of the Sunni branch strictly follows Prophet Muhammad and his teachings.",
		  "The Sunni branch strictly follows Prophet Mohammad and his teachings.", 1 },
		{ "Fyodor Dostoevsky wrote Crime and Punishment in 1866.",
		  "Crime and Punishment was written by Fyodor Dostoyevsky in 1866.", 1 },
		{ "Libya was ruled by Muammar Gaddafi from 1969 until 2011.",
		  "Muammar Qaddafi ruled Libya from 1969 until 2011.", 1 },
		/* two letters, a short name, a number: not variants */
		{ "Sydney is the largest city in Australia.", "Sydney is the largest city in Austria.", 0 },
		{ "Mali is a country in West Africa.", "Bali is a country in West Africa.", 0 },
		{ "The Treaty of Paris was signed in 1783.", "The Treaty of Paris was signed in 1784.", 0 },
	};
	verdicts_are("name variants", v, sizeof(v) / sizeof(v[0]));
}
END_TEST

/* 5. A number in the passage that belongs to another fact. */
START_TEST(entail_number_of_another_fact)
{
	static const struct pair v[] = {
		{ "Lloró, Colombia reported an average annual rainfall of 12,717 mm between 1952 and 1989. "
		  "Mawsynram, India has an average annual rainfall of 11,872 mm.",
		  "Mawsynram has an average annual rainfall of 12,717 mm.", 0 },
		{ "Gong Li won the Volpi Cup in 1992. In 1993, Zhang Yimou's film won the Golden Bear.",
		  "Gong Li won the Volpi Cup in 1993.", 0 },
		{ "The Treaty of Paris was signed on September 3, 1783. The Battle of Yorktown ended in 1781.",
		  "The Treaty of Paris was signed in 1781.", 0 },
		/* the number's own fact, named or referred to by a pronoun */
		{ "Lloró, Colombia reported an average annual rainfall of 12,717 mm between 1952 and 1989. "
		  "Mawsynram, India has an average annual rainfall of 11,872 mm.",
		  "Lloró, Colombia reported an average annual rainfall of 12,717 mm.", 1 },
		{ "Title: Mawsynram\nMawsynram is a village in Meghalaya, India. It receives an average annual "
		  "rainfall of 11,872 millimetres.",
		  "Mawsynram has an average annual rainfall of 11,872 millimetres.", 1 },
		{ "Gong Li won the Volpi Cup in 1992. In 1993, Zhang Yimou's film won the Golden Bear.",
		  "Gong Li won the Volpi Cup in 1992.", 1 },
	};
	verdicts_are("number of another fact", v, sizeof(v) / sizeof(v[0]));
}
END_TEST

/* ---------------------------------------------------------------- judging */

struct scores {
	double recall, precision, marker_rate, supported;
	size_t sentences, fabricated_flags, unsupported_flags;
};

static struct scores judge_text(struct ftk_judge *j, const cJSON *kase, const char *text)
{
	struct ftk_judge_output out = { text, NULL, "stop" };
	struct ftk_judge_result r;
	struct ftk_error e;
	struct scores s = { 0 };
	ftk_judge_result_init(&r);
	ck_assert_msg(ftk_judge_score(j, kase, &out, &r, &e) == 0, "%s", e.msg);
	s.recall = ftk_judge_find_metric(&r, "citation.recall")->value;
	s.precision = ftk_judge_find_metric(&r, "citation.precision")->value;
	s.marker_rate = ftk_judge_find_metric(&r, "citation.marker_rate")->value;
	s.supported = ftk_judge_find_metric(&r, "citation.supported")->value;
	ck_assert_int_eq(ftk_judge_find_metric(&r, "citation.marker_rate")->kind, FTK_METRIC_SURFACE);
	ck_assert_str_eq(ftk_judge_find_metric(&r, "citation.marker_rate")->twin, "citation.recall");
	s.sentences = (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(r.detail, "sentences"));
	for (size_t i = 0; i < r.nflags; i++) {
		s.fabricated_flags += !strcmp(r.flags[i].kind, "fabricated_citation");
		s.unsupported_flags += !strcmp(r.flags[i].kind, "marker_unsupported");
	}
	ftk_judge_result_release(&r);
	return s;
}

static struct ftk_judge *new_judge(const char *settings)
{
	struct ftk_judge *j;
	struct ftk_error e;
	cJSON *s = settings ? cJSON_Parse(settings) : NULL;
	ck_assert_msg(ftk_judge_create(&j, "citation", s, NULL, &e) == 0, "%s", e.msg);
	cJSON_Delete(s);
	return j;
}

START_TEST(alce_precision_definition)
{
	cJSON *kase = cJSON_Parse(
		"{\"id\":\"p\",\"sources\":["
		"{\"title\":\"Eiffel Tower\",\"text\":\"The Eiffel Tower in Paris was completed in 1889.\"},"
		"{\"title\":\"Bagels\",\"text\":\"Bagels are boiled before they are baked.\"},"
		"{\"title\":\"Gustave Eiffel\",\"text\":\"Gustave Eiffel's company built the tower.\"}]}");
	struct ftk_judge *j = new_judge(NULL);
	/* supported by [1]; [2] is irrelevant: recall 1, precision 1/2 */
	struct scores s = judge_text(j, kase, "The Eiffel Tower in Paris was completed in 1889 [1][2].");
	ck_assert_double_eq(s.recall, 1);
	ck_assert_double_eq(s.precision, 0.5);
	/* needs both [1] and [3]: neither alone, both precise */
	s = judge_text(j, kase, "The Eiffel Tower in Paris, built by Gustave Eiffel's company, was completed in 1889 [1][3].");
	ck_assert_double_eq(s.recall, 1);
	ck_assert_double_eq(s.precision, 1);
	/* cited the wrong source: marker present, not supported, flagged */
	s = judge_text(j, kase, "The Eiffel Tower was completed in 1889 [2].");
	ck_assert_double_eq(s.recall, 0);
	ck_assert_double_eq(s.marker_rate, 1);
	ck_assert_uint_eq(s.unsupported_flags, 1);
	/* no marker at all: recall 0, marker rate 0, precision 0 (ALCE) */
	s = judge_text(j, kase, "The Eiffel Tower was completed in 1889.");
	ck_assert_double_eq(s.recall, 0);
	ck_assert_double_eq(s.marker_rate, 0);
	/* footnote style, with the definitions at the end: they are not claims */
	s = judge_text(j, kase, "The Eiffel Tower in Paris was completed in 1889[^1].\n\n[^1]: Eiffel Tower\n[^2]: Bagels\n");
	ck_assert_uint_eq(s.sentences, 1);
	ck_assert_double_eq(s.recall, 1);
	/* past the list */
	s = judge_text(j, kase, "The Eiffel Tower was completed in 1889 [7].");
	ck_assert_double_eq(s.recall, 0);
	ck_assert_uint_eq(s.fabricated_flags, 1);
	ftk_judge_destroy(j);
	cJSON_Delete(kase);
}
END_TEST


/*
 * Issue 17.11: each sentence and each citation marker carry their place in
 * the output, in code points (what Python's str indexes: output[start:end]),
 * and each citation its verdict by ALCE's precision rule.  The offsets below
 * were computed with Python's str.index on the same text; the em dashes and
 * 【】 are 3 bytes but one code point each, so byte offsets would differ.
 */
static const cJSON *cited_of(const cJSON *sent, int source)
{
	const cJSON *c;
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(sent, "cited"))
		if (cJSON_GetObjectItem(c, "source")->valueint == source)
			return c;
	return NULL;
}

static void cite_is(const cJSON *sent, int source, long start, long end, const char *verdict,
		    int relevant, int counted)
{
	const cJSON *c = cited_of(sent, source);
	ck_assert_msg(c != NULL, "no citation of %d", source);
	ck_assert_int_eq(cJSON_GetObjectItem(c, "start")->valueint, start);
	ck_assert_int_eq(cJSON_GetObjectItem(c, "end")->valueint, end);
	ck_assert_str_eq(cJSON_GetObjectItem(c, "verdict")->valuestring, verdict);
	ck_assert_int_eq(cJSON_IsTrue(cJSON_GetObjectItem(c, "relevant")), relevant);
	ck_assert_int_eq(cJSON_IsTrue(cJSON_GetObjectItem(c, "counted")), counted);
	ck_assert(strlen(cJSON_GetObjectItem(c, "reason")->valuestring) > 10);
}

START_TEST(sentence_detail_offsets_and_verdicts)
{
	cJSON *kase = cJSON_Parse(
		"{\"id\":\"o\",\"sources\":["
		"{\"title\":\"Eiffel Tower\",\"text\":\"The Eiffel Tower in Paris was completed in 1889.\"},"
		"{\"title\":\"Bagels\",\"text\":\"Bagels are boiled before they are baked.\"},"
		"{\"title\":\"Gustave Eiffel\",\"text\":\"Gustave Eiffel's company built the tower.\"}]}");
	struct ftk_judge *j = new_judge(NULL);
	const char *text = "<think>x</think>The Eiffel Tower \xe2\x80\x94 in Paris \xe2\x80\x94 was completed in 1889 [1][2]. "
			   "Bagels are boiled before they are baked\xe3\x80\x90" "2\xe3\x80\x91. "
			   "Gustave Eiffel's company built the tower [3][9].";
	struct ftk_judge_output out = { text, NULL, "stop" };
	struct ftk_judge_result r;
	struct ftk_error e;
	ftk_judge_result_init(&r);
	ck_assert_int_eq(ftk_judge_score(j, kase, &out, &r, &e), 0);
	const cJSON *sents = cJSON_GetObjectItem(r.detail, "sentences");
	ck_assert_int_eq(cJSON_GetArraySize(sents), 3);
	const cJSON *s0 = cJSON_GetArrayItem(sents, 0), *s1 = cJSON_GetArrayItem(sents, 1),
		    *s2 = cJSON_GetArrayItem(sents, 2);
	ck_assert_int_eq(cJSON_GetObjectItem(s0, "start")->valueint, 16);
	ck_assert_int_eq(cJSON_GetObjectItem(s0, "end")->valueint, 75);
	ck_assert_int_eq(cJSON_GetObjectItem(s1, "start")->valueint, 76);
	ck_assert_int_eq(cJSON_GetObjectItem(s1, "end")->valueint, 119);
	ck_assert_int_eq(cJSON_GetObjectItem(s2, "start")->valueint, 120);
	ck_assert_int_eq(cJSON_GetObjectItem(s2, "end")->valueint, 168);
	/* [1] supports the sentence alone; [2] does not, and [1] does without it */
	cite_is(s0, 1, 68, 71, "relevant", 1, 1);
	cite_is(s0, 2, 71, 74, "irrelevant", 0, 1);
	cite_is(s1, 2, 115, 118, "relevant", 1, 1);
	/* a source past the list: the sentence is unsupported, nothing counted (ALCE) */
	cite_is(s2, 3, 161, 164, "unsupported", 0, 0);
	cite_is(s2, 9, 164, 167, "fabricated", 0, 0);
	/* precision is what the verdicts say: relevant / counted = 2 / 3 */
	ck_assert_double_eq_tol(ftk_judge_find_metric(&r, "citation.precision")->value, 2.0 / 3, 1e-12);
	ftk_judge_result_release(&r);

	/* needed together; the wrong source; past max_citations */
	ftk_judge_destroy(j);
	j = new_judge("{\"max_citations\":2}");
	out.text = "The Eiffel Tower in Paris, built by Gustave Eiffel's company, was completed in 1889 [1][3][2]. "
		   "The Eiffel Tower was completed in 1889 [2].";
	ftk_judge_result_init(&r);
	ck_assert_int_eq(ftk_judge_score(j, kase, &out, &r, &e), 0);
	sents = cJSON_GetObjectItem(r.detail, "sentences");
	s0 = cJSON_GetArrayItem(sents, 0);
	s1 = cJSON_GetArrayItem(sents, 1);
	cite_is(s0, 1, 84, 87, "relevant", 1, 1);
	cite_is(s0, 3, 87, 90, "relevant", 1, 1);
	cite_is(s0, 2, 90, 93, "not_checked", 0, 0);
	ck_assert_int_eq(cJSON_GetObjectItem(s1, "start")->valueint, 95);
	cite_is(s1, 2, 134, 137, "unsupported", 0, 1);
	ftk_judge_result_release(&r);
	ftk_judge_destroy(j);
	cJSON_Delete(kase);
}
END_TEST

/* Rewrite every [n] in s through map (n -> map(n)). */
static char *remap(const char *s, int shift, int ndocs, int past)
{
	struct strbuf sb = STRBUF_INIT;
	for (const char *p = s; *p;) {
		if (*p == '[' && p[1] >= '0' && p[1] <= '9') {
			char *e;
			long n = strtol(p + 1, &e, 10);
			if (*e == ']') {
				long m = past ? n + ndocs : (n - 1 + shift) % ndocs + 1;
				strbuf_addf(&sb, "[%ld]", m);
				p = e + 1;
				continue;
			}
		}
		strbuf_addch(&sb, *p++);
	}
	return strbuf_detach(&sb, NULL);
}

START_TEST(alce_demonstrations)
{
	static const char *const files[] = { "asqa_default.json", "eli5_default.json",
					     "qampari_default.json" };
	double sup_orig = 0, sup_shuf = 0, n_sent = 0, n_shuf = 0;
	double prec_orig = 0, n_ans = 0;
	size_t fabricated_answers = 0, past_recall_zero = 0;
	for (size_t f = 0; f < 3; f++) {
		char rel[128];
		snprintf(rel, sizeof(rel), "datasets/alce/prompts/%s", files[f]);
		struct strbuf sb = STRBUF_INIT;
		ck_assert_int_eq(strbuf_read_file(&sb, src_path(rel)), 0);
		cJSON *doc = NULL;
		ck_assert_int_eq(ftk_json_parse(sb.buf, sb.len, &doc, NULL), 0);
		strbuf_release(&sb);
		int list = f == 2;
		struct ftk_judge *j = new_judge(list ? "{\"split\":\"list\"}" : NULL);
		const cJSON *demo;
		int k = 0;
		cJSON_ArrayForEach(demo, cJSON_GetObjectItem(doc, "demos")) {
			cJSON *kase = cJSON_CreateObject();
			char id[64];
			snprintf(id, sizeof(id), "%s#%d", files[f], k++);
			cJSON_AddStringToObject(kase, "id", id);
			cJSON_AddStringToObject(kase, "question", ftk_json_get_str(demo, "question"));
			cJSON_AddItemToObject(kase, "sources", cJSON_Duplicate(cJSON_GetObjectItem(demo, "docs"), 1));
			int ndocs = cJSON_GetArraySize(cJSON_GetObjectItem(demo, "docs"));
			const char *answer = ftk_json_get_str(demo, "answer");
			struct scores s = judge_text(j, kase, answer);
			printf("%-24s recall %.2f precision %.2f markers %.2f (%zu sentences)\n", id,
			       s.recall, s.precision, s.marker_rate, s.sentences);
			sup_orig += s.recall * (double)s.sentences;
			n_sent += (double)s.sentences;
			prec_orig += s.precision;
			n_ans++;
			/* every sentence of a demonstration carries a marker */
			ck_assert_double_eq(s.marker_rate, 1);
			for (int shift = 1; shift < ndocs; shift++) {
				char *sh = remap(answer, shift, ndocs, 0);
				struct scores t = judge_text(j, kase, sh);
				sup_shuf += t.recall * (double)t.sentences;
				n_shuf += (double)t.sentences;
				ck_assert_double_eq(t.marker_rate, 1);	/* the surface number cannot tell */
				free(sh);
			}
			char *past = remap(answer, 0, ndocs, 1);
			struct scores t = judge_text(j, kase, past);
			fabricated_answers += t.fabricated_flags > 0;
			past_recall_zero += t.recall == 0;
			free(past);
			cJSON_Delete(kase);
		}
		ftk_judge_destroy(j);
		cJSON_Delete(doc);
	}
	double fo = sup_orig / n_sent, fs = sup_shuf / n_shuf;
	printf("ALCE demonstrations: %.0f sentences, %.1f%% supported as cited, %.1f%% with citations shifted "
	       "to other documents; mean precision %.2f; %zu/%.0f answers citing past the list flagged, recall 0 in %zu\n",
	       n_sent, 100 * fo, 100 * fs, prec_orig / n_ans, fabricated_answers, n_ans, past_recall_zero);
	/* Thresholds: see docs/judges.md for the measured numbers. */
	ck_assert_msg(fo >= 0.85, "only %.1f%% of the demonstration sentences supported", 100 * fo);
	ck_assert_msg(fs <= 0.15, "%.1f%% of the shifted citations still judged supported", 100 * fs);
	ck_assert_uint_eq(fabricated_answers, (size_t)n_ans);
	ck_assert_uint_eq(past_recall_zero, (size_t)n_ans);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("citation");
	TCase *t = tcase_create("citation");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, marker_styles);
	tcase_add_test(t, sentence_splitting);
	tcase_add_test(t, stemmer);
	tcase_add_test(t, entailment_offline);
	tcase_add_test(t, entail_sentence_opener);
	tcase_add_test(t, entail_ordinals);
	tcase_add_test(t, entail_negation_scope);
	tcase_add_test(t, entail_name_variants);
	tcase_add_test(t, entail_number_of_another_fact);
	tcase_add_test(t, alce_precision_definition);
	tcase_add_test(t, sentence_detail_offsets_and_verdicts);
	tcase_add_test(t, alce_demonstrations);
	suite_add_tcase(s, t);
	return s;
}

FTK_TEST_MAIN(suite)
