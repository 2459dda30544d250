/*
 * cmd_split.c: ftk-split, train/validation/test files by a hash of a key.
 * summary: split records into train/validation/test by a hash of a key or group
 *
 * A record's split depends only on its key and the seed: the key's 64-bit
 * xxHash (XXH3, seeded) is turned into a number u in [0, 1) and u falls into
 * one of the ratio intervals.  Nothing depends on the other records, on
 * their order or on the machine, so the same record lands in the same split
 * on every run, and adding records never moves the ones already there.
 *
 * The key is the record's line by default (so exact duplicates stay
 * together), a field with --key, or a group field with --group: every record
 * of a group (a conversation id, a source document, a user) then lands in
 * the same split, and a group cannot leak from train into test.  A string
 * key is hashed as its decoded text (so "\u00e9" and "é" agree); other
 * values as their JSON text.  A record without the group field is rejected:
 * it cannot be placed with its group.
 *
 * --shards N is the same placement with N equal parts, for spreading work
 * over the tasks of a cluster job (docs/scale.md): shard s holds the records
 * whose key hash h has floor(h * N / 2^64) == s, an integer computation, so
 * every machine agrees.  N may be large (thousands), so the open-file limit
 * is raised to what the system allows before the N files are opened.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <xxhash.h>
#include "cli/tool.h"
#include "prep/provenance.h"
#include "prep/fields.h"

static const char *const usage[] = {
	"ftk-split [options] [FILE...]", "",
	"Write each record to one of several files, chosen by a hash of its key.", NULL,
};

/* --key and --group fill one struct: one of them, once */
struct split_key {
	const char *key;
	int group;
};

static void key_cb(const struct ftk_option *opt, const char *arg)
{
	struct split_key *k = opt->value;
	if (k->key)
		ftk_usage_error("give one of --key and --group, once");
	k->key = arg;
	k->group = !strcmp(opt->long_name, "group");
}

#define MAX_SPLITS 16
#define MAX_SHARDS 65536

/* Room for n more open files: raise the soft limit toward the hard one. */
static void want_files(rlim_t n)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= n)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > n ? n : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static int split_list(char *s, char **out, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == max)
			return -1;
		out[n++] = tok;
	}
	return n;
}

/*
 * The seeded hash of a record's key: the whole line, or the --key/--group
 * field (a string as its decoded text).  Returns 0, or -1 when the record
 * went to the rejects (bad JSON, no such field).
 */
/* --provenance: a split that reads the raw data first (a cluster's shards)
 * is the pipeline's first stage; a split of finished data is not, and
 * passes records on byte for byte */
static int provenance;

/*
 * The record as it is written: its own bytes, or with meta.source and
 * meta.line added when it is read from a file and has neither
 * (prep/provenance.h).  The hash is always of the original bytes.
 */
static struct strbuf prov = STRBUF_INIT;

static int record_hash(struct ftk_tool *t, struct ftk_line *line, const char *key, int group,
		       uint64_t seed, struct strbuf *kbuf, uint64_t *h)
{
	struct ftk_error err;
	cJSON *rec = ftk_tool_parse(t, line);
	if (!rec)
		return -1;
	strbuf_reset(&prov);
	if (provenance)
		ftk_provenance_add(line->data, line->len, rec, line->file, line->lineno, &prov);
	cJSON_Delete(rec);
	const char *k = line->data;
	size_t kn = line->len;
	if (key) {
		const char *raw;
		size_t rn;
		int rc = ftk_fields_get_raw(line->data, line->len, key, &raw, &rn, &err);
		if (rc <= 0) {
			cJSON *x = cJSON_CreateObject();
			char msg[400];
			snprintf(msg, sizeof(msg), "no field '%s' to split by", key);
			cJSON_AddStringToObject(x, "error", msg);
			ftk_tool_reject(t, line, group ? "missing-group" : "missing-key", x);
			return -1;
		}
		k = raw;
		kn = rn;
		if (rn >= 2 && raw[0] == '"') {
			strbuf_reset(kbuf);
			if (ftk_json_unescape(raw, rn, kbuf) == 0) {
				k = kbuf->buf;
				kn = kbuf->len;
			}
		}
	}
	*h = XXH3_64bits_withSeed(k, kn, seed);
	return 0;
}

/* The path of the file for split name. */
static void split_path(struct strbuf *path, const char *outdir, const char *prefix,
		       const char *name, const char *suffix)
{
	strbuf_reset(path);
	if (prefix && prefix[0] == '/')
		strbuf_addf(path, "%s.%s%s", prefix, name, suffix);
	else if (prefix)
		strbuf_addf(path, "%s/%s.%s%s", outdir, prefix, name, suffix);
	else
		strbuf_addf(path, "%s/%s%s", outdir, name, suffix);
}

/* --shards N: N files named by zero-padded number, record to floor(h * N / 2^64). */
static int split_shards(struct ftk_tool *t, uint32_t n, const char *key, int group, uint64_t seed,
			const char *outdir, const char *prefix, const char *suffix, int argc,
			char **argv)
{
	struct ftk_writer **w = xcalloc(n, sizeof(*w));
	uint64_t *counts = xcalloc(n, sizeof(*counts));
	struct strbuf path = STRBUF_INIT, kbuf = STRBUF_INIT;
	struct ftk_line line;
	struct ftk_error err;
	char name[16];
	if (mkdir(outdir, 0777) < 0 && errno != EEXIST)
		die("cannot create '%s': %s", outdir, strerror(errno));
	want_files((rlim_t)n + 64);
	for (uint32_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%05u", i);
		split_path(&path, outdir, prefix, name, suffix);
		if (ftk_writer_open(&w[i], path.buf, 0, &err) < 0)
			die("%s (shard %u of %u)", err.msg, i, n);
	}
	ftk_tool_start(t, argc, argv);
	while (ftk_tool_next(t, &line)) {
		uint64_t h;
		if (record_hash(t, &line, key, group, seed, &kbuf, &h) < 0)
			continue;
		uint32_t s = (uint32_t)(((unsigned __int128)h * n) >> 64);
		if (prov.len ? ftk_writer_line(w[s], prov.buf, prov.len) < 0
			     : ftk_writer_line(w[s], line.data, line.len) < 0)
			t->failed = 1;
		counts[s]++;
		t->n_out++;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (ftk_writer_close(w[i], &err) < 0) {
			error("%s", err.msg);
			t->failed = 1;
		}
		/* counted per shard up to 16 shards: a closing line of thousands helps nobody */
		if (n <= MAX_SPLITS) {
			snprintf(name, sizeof(name), "%05u", i);
			ftk_tool_count(t, name, counts[i]);
		}
	}
	strbuf_release(&path);
	strbuf_release(&kbuf);
	strbuf_release(&prov);
	free(w);
	free(counts);
	return ftk_tool_finish(t);
}

int cmd_split(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_line line;
	struct ftk_error err;
	const char *ratios_arg = NULL, *names_arg = NULL;
	const char *outdir = ".", *suffix = ".jsonl", *prefix = NULL;
	struct split_key sk = { NULL, 0 };
	uint64_t seed = 0;
	long shards = 0;

	ftk_tool_init(&t, "ftk-split", NULL);
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "ratios", &ratios_arg, "LIST", "fractions that sum to 1 (default 0.9,0.05,0.05)"),
		FTK_OPT_LONG(0, "shards", &shards, "N", 1, MAX_SHARDS,
			     "N equal parts named 00000, 00001, ... (up to 65536)"),
		FTK_OPT_FLAG(0, "provenance", &provenance,
			     "write meta.source and meta.line (the file and line a record\n"
			     "was read from) into records that have neither, as the first\n"
			     "stage of a pipeline does (ftk-convert does it by default)"),
		FTK_OPT_STRING(0, "names", &names_arg, "LIST",
			       "file names for the splits (default train,validation,test;\n"
			       "train,test for two ratios; split0,split1,... otherwise)"),
		FTK_OPT_UINT64(0, "seed", &seed, "N", "hash seed (default 0): another seed, another split"),
		FTK_OPT_CALLBACK(0, "key", &sk, "FIELD", key_cb, "hash this field instead of the whole record"),
		FTK_OPT_CALLBACK(0, "group", &sk, "FIELD", key_cb,
				 "keep records with the same FIELD value in one split\n"
				 "(records without it are rejected)"),
		FTK_OPT_STRING(0, "outdir", &outdir, "DIR", "where to write NAME.jsonl (default .)"),
		FTK_OPT_STRING(0, "prefix", &prefix, "P", "name the files P.NAME.jsonl (P may hold a directory)"),
		FTK_OPT_STRING(0, "suffix", &suffix, "SUF", "file suffix (default .jsonl; .jsonl.zst compresses)"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_TEXT("(-o is not used: each split has its own file.)\n"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-split", opts, usage);
	const char *key = sk.key;
	int group = sk.group;
	if (t.out_path)
		ftk_tool_usage_error(&t, "-o has no use here: each split has its own file (--outdir)");
	if (shards && (ratios_arg || names_arg))
		ftk_tool_usage_error(&t, "--shards makes equal parts: give it without --ratios and --names");
	if (shards)
		return split_shards(&t, (uint32_t)shards, key, group, seed, outdir, prefix, suffix,
				    argc, argv);

	char *rbuf = xstrdup(ratios_arg ? ratios_arg : "0.9,0.05,0.05");
	char *nbuf = names_arg ? xstrdup(names_arg) : NULL;
	char *rstr[MAX_SPLITS], *names[MAX_SPLITS];
	char defname[MAX_SPLITS][16];
	double ratio[MAX_SPLITS], cum[MAX_SPLITS], sum = 0;
	int n = split_list(rbuf, rstr, MAX_SPLITS);
	if (n < 1)
		ftk_tool_usage_error(&t, "--ratios wants 1 to %d numbers", MAX_SPLITS);
	for (int i = 0; i < n; i++) {
		char *end;
		ratio[i] = strtod(rstr[i], &end);
		if (*end || end == rstr[i] || !(ratio[i] >= 0) || ratio[i] > 1)
			ftk_tool_usage_error(&t, "bad ratio '%s': want a number in [0, 1]", rstr[i]);
		sum += ratio[i];
		cum[i] = sum;
	}
	if (fabs(sum - 1.0) > 1e-6)
		ftk_tool_usage_error(&t, "--ratios must sum to 1, not %g", sum);
	cum[n - 1] = 1.0;
	if (nbuf) {
		if (split_list(nbuf, names, MAX_SPLITS) != n)
			ftk_tool_usage_error(&t, "--names wants %d names, one per ratio", n);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < i; j++)
				if (!strcmp(names[i], names[j]))
					ftk_tool_usage_error(&t, "split name '%s' given twice", names[i]);
	} else {
		static const char *const three[] = { "train", "validation", "test" };
		static const char *const two[] = { "train", "test" };
		for (int i = 0; i < n; i++) {
			snprintf(defname[i], sizeof(defname[i]), "%s",
				 n == 3 ? three[i] : n == 2 ? two[i] : "");
			if (n != 2 && n != 3)
				snprintf(defname[i], sizeof(defname[i]), "split%d", i);
			names[i] = defname[i];
		}
	}

	struct ftk_writer *w[MAX_SPLITS];
	uint64_t counts[MAX_SPLITS] = { 0 };
	struct strbuf path = STRBUF_INIT, kbuf = STRBUF_INIT;
	if (mkdir(outdir, 0777) < 0 && errno != EEXIST)
		die("cannot create '%s': %s", outdir, strerror(errno));
	for (int i = 0; i < n; i++) {
		split_path(&path, outdir, prefix, names[i], suffix);
		if (ftk_writer_open(&w[i], path.buf, 0, &err) < 0)
			die("%s", err.msg);
	}

	ftk_tool_start(&t, argc, argv);
	while (ftk_tool_next(&t, &line)) {
		uint64_t h;
		if (record_hash(&t, &line, key, group, seed, &kbuf, &h) < 0)
			continue;
		double u = (double)(h >> 11) * 0x1.0p-53;
		int s = 0;
		while (s < n - 1 && u >= cum[s])
			s++;
		if (prov.len ? ftk_writer_line(w[s], prov.buf, prov.len) < 0
			     : ftk_writer_line(w[s], line.data, line.len) < 0)
			t.failed = 1;
		counts[s]++;
		t.n_out++;
	}
	for (int i = 0; i < n; i++) {
		if (ftk_writer_close(w[i], &err) < 0) {
			error("%s", err.msg);
			t.failed = 1;
		}
		ftk_tool_count(&t, names[i], counts[i]);
	}
	strbuf_release(&path);
	strbuf_release(&kbuf);
	strbuf_release(&prov);
	free(rbuf);
	free(nbuf);
	return ftk_tool_finish(&t);
}
