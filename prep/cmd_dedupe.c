/*
 * cmd_dedupe.c: ftk-dedupe, exact and near-duplicate removal.
 * summary: remove exact and near-duplicate records, saying which record each duplicates
 *
 * The program is a driver over prep/dedupe.h.  Its passes:
 *
 *   sign     every input line is read through the common tool layer (bad
 *            UTF-8 and bad JSON go to the rejects there), parsed and signed
 *            by -j worker threads in batches, and handed back in input order;
 *   resolve  the engine finds the duplicates (near mode, and exact mode
 *            when the survivor is not simply the first);
 *   apply    a second read of the inputs writes the survivors as their
 *            original bytes and the duplicates to the rejects.  Nothing but
 *            band hashes and a few numbers per record is held between the
 *            passes; standard input is spooled to a temporary file so that
 *            it can be read twice.
 *
 * Exact mode keeping the first record needs no second pass: a table of
 * 128-bit hashes decides each record as it arrives.
 *
 * The sharded mode runs the passes as separate commands: --signatures
 * (sign one shard into a file), --merge (resolve all signature files into
 * the list of records to remove), --apply LIST (filter a shard).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <xxhash.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "lib/json.h"
#include "lib/record.h"
#include "lib/normalize.h"
#include "dedupe.h"
#include "minhash.h"

static const char *const usage[] = {
	"ftk-dedupe [options] [FILE...]",
	"ftk-dedupe --signatures -o SIGFILE [options] SHARD...",
	"ftk-dedupe --merge [-o LIST] [--clusters FILE] SIGFILE...",
	"ftk-dedupe --apply LIST [options] SHARD...",
	"",
	"Remove duplicate records.  Several FILEs are deduplicated together; the",
	"survivors go out in input order as their original bytes, and each removed",
	"record goes to --rejects with \"of\" (the file and line of the kept record)",
	"and its similarity to it.  The reason is \"duplicate\" for an exact copy (after",
	"--normalize; with --near, similarity 1) and \"near-duplicate\" otherwise.", NULL,
};

/* the sharded steps (ctx.sharded) */
enum { SHARD_SIGNATURES = 1, SHARD_MERGE, SHARD_APPLY };

/* Drop counts for one file or one source value. */
struct tally {
	char *name;
	uint64_t in, dropped;
};

struct tallies {
	struct tally *v;
	size_t n, alloc;
	uint32_t *tab;
	size_t tab_size;
};

static struct tally *tally_get(struct tallies *ts, const char *name, size_t len)
{
	if (ts->n * 2 >= ts->tab_size) {
		size_t ns = ts->tab_size ? ts->tab_size * 2 : 64;
		free(ts->tab);
		ts->tab = xmalloc(sizeof(uint32_t) * ns);
		for (size_t i = 0; i < ns; i++)
			ts->tab[i] = UINT32_MAX;
		for (size_t i = 0; i < ts->n; i++) {
			size_t h = XXH3_64bits(ts->v[i].name, strlen(ts->v[i].name)) & (ns - 1);
			while (ts->tab[h] != UINT32_MAX)
				h = (h + 1) & (ns - 1);
			ts->tab[h] = (uint32_t)i;
		}
		ts->tab_size = ns;
	}
	size_t h = XXH3_64bits(name, len) & (ts->tab_size - 1);
	while (ts->tab[h] != UINT32_MAX) {
		struct tally *t = &ts->v[ts->tab[h]];
		if (strlen(t->name) == len && !memcmp(t->name, name, len))
			return t;
		h = (h + 1) & (ts->tab_size - 1);
	}
	FTK_ALLOC_GROW(ts->v, ts->n + 1, ts->alloc);
	ts->v[ts->n] = (struct tally){ xstrndup(name, len), 0, 0 };
	ts->tab[h] = (uint32_t)ts->n;
	return &ts->v[ts->n++];
}

static void tallies_release(struct tallies *ts)
{
	for (size_t i = 0; i < ts->n; i++)
		free(ts->v[i].name);
	free(ts->v);
	free(ts->tab);
}

/* One line of a batch, and what a worker made of it. */
#define BORROWED SIZE_MAX	/* item.off of a line used where the reader holds it */

struct item {
	struct ftk_line line;
	size_t off;		/* data offset in the batch buffer, or BORROWED */
	int input;		/* input index */
	int parsed;		/* 1 a JSON object, 0 not (the main thread rejects it) */
	struct ftk_dd_sig sig;	/* with the record's origin (ftk_record_origin's JSON) */
};

struct ctx {
	struct ftk_tool t;
	struct ftk_dd_params p;
	struct ftk_dd_key *key;
	struct ftk_minhash mh;
	int threads;
	double threshold;
	int threshold_given;
	enum ftk_dd_keep keep;
	const char *clusters_path;
	const char *against;
	int against_mode;
	uint64_t mem_cap;	/* --mem-cap */
	int sharded;		/* 0, SHARD_SIGNATURES, SHARD_MERGE, SHARD_APPLY */
	const char *apply_list;

	/* batches */
	struct item *items;
	size_t n_items, cap_items;
	struct strbuf buf;
	struct ftk_dd_signer *signers;

	/* stdin spooled to a temporary file, or -1 */
	int spool_fd;

	/* counts */
	struct tallies by_file, by_source;
	uint64_t no_key;

	/* the general path */
	struct ftk_dd_index *ix;
	FILE *sigtmp;
	uint64_t sigoff;
	uint32_t *input_file_ix;	/* input index -> index file id */
	uint32_t against_file_ix;

	/* exact streaming: where the kept records came from (lib/record.h
	 * ftk_record_origin), for "of": NUL-terminated texts in one arena,
	 * found by offset + 1 (0: none).  The index keeps them in its
	 * signature files instead (ftk_dd_index_origin). */
	struct strbuf origins;
	struct strbuf scratch;	/* an origin read back from the index */

	/* exact streaming */
	struct xslot *tab;
	size_t tab_size, tab_n;
	char **tab_files;	/* file names by number: inputs, then the reference */
};

struct xslot {
	uint64_t lo, hi;
	uint32_t file, line;	/* file UINT32_MAX: empty */
	uint64_t origin;	/* offset + 1 in ctx.origins, 0: none */
};

/* ---------------------------------------------------------------- options */

static void keep_cb(const struct ftk_option *opt, const char *arg)
{
	ftk_dd_settings_keep(opt->value, arg);
}

static void threshold_cb(const struct ftk_option *opt, const char *arg)
{
	struct ftk_dd_settings *s = opt->value;
	s->threshold = ftk_opt_parse_number_open("--threshold", arg, 0, 1);
	s->threshold_given = 1;
}

/* --signatures, --merge and --apply LIST: one of them */
static void sharded_cb(const struct ftk_option *opt, const char *arg)
{
	struct ctx *c = opt->value;
	int mode = !strcmp(opt->long_name, "signatures") ? SHARD_SIGNATURES
		   : !strcmp(opt->long_name, "merge")    ? SHARD_MERGE
							  : SHARD_APPLY;
	if (c->sharded && c->sharded != mode)
		ftk_usage_error("--signatures, --merge and --apply exclude each other");
	c->sharded = mode;
	if (arg)
		c->apply_list = arg;
}

/* ---------------------------------------------------------------- signing in batches */

struct job {
	struct ctx *c;
	size_t lo, hi;
	struct ftk_dd_signer *s;
};

static void *work(void *arg)
{
	struct job *j = arg;
	for (size_t i = j->lo; i < j->hi; i++) {
		struct item *it = &j->c->items[i];
		cJSON *rec = NULL;
		it->parsed = ftk_json_parse_record(it->line.data, it->line.len, &rec, NULL, NULL) == 0;
		it->sig.status = 0;
		strbuf_reset(&it->sig.origin);
		int keyed = 0;
		if (it->parsed)
			keyed = ftk_dd_sign_key(j->s, rec, &it->sig);
		/* the tree goes before the key text is normalized and shingled */
		cJSON_Delete(rec);
		if (keyed)
			ftk_dd_sign_text(j->s, &it->sig);
	}
	return NULL;
}

static void sign_batch(struct ctx *c)
{
	size_t n = c->n_items;
	int nt = c->threads;
	if (n < 64 || nt < 2)
		nt = 1;
	for (size_t i = 0; i < n; i++)
		if (c->items[i].off != BORROWED)
			c->items[i].line.data = c->buf.buf + c->items[i].off;
	struct job jobs[64];
	pthread_t tid[64];
	for (int k = 0; k < nt; k++)
		jobs[k] = (struct job){ c, n * k / nt, n * (k + 1) / nt, &c->signers[k] };
	for (int k = 1; k < nt; k++)
		if (pthread_create(&tid[k], NULL, work, &jobs[k]))
			die("cannot start a thread: %s", strerror(errno));
	work(&jobs[0]);
	for (int k = 1; k < nt; k++)
		pthread_join(tid[k], NULL);
}

typedef int (*next_fn)(struct ctx *c, struct ftk_line *line, int *input);
typedef void (*item_fn)(struct ctx *c, struct item *it);

#define BATCH 4096
#define BATCH_BYTES (2u << 20)	/* with the payloads, a few MB resident per batch */

/* Read all lines from next, sign them in batches, hand each to fn in order. */
static void sign_all(struct ctx *c, next_fn next, item_fn fn)
{
	struct ftk_line line;
	int input;
	int more = 1;
	while (more) {
		c->n_items = 0;
		strbuf_reset(&c->buf);
		while (c->n_items < BATCH && c->buf.len < BATCH_BYTES) {
			if (!next(c, &line, &input)) {
				more = 0;
				break;
			}
			if (c->n_items == c->cap_items) {
				size_t na = c->cap_items ? c->cap_items * 2 : 256;
				c->items = xrealloc(c->items, sizeof(*c->items) * na);
				for (size_t i = c->cap_items; i < na; i++)
					ftk_dd_sig_init(&c->items[i].sig, ftk_dd_nbands(&c->p));
				c->cap_items = na;
			}
			struct item *it = &c->items[c->n_items++];
			it->line = line;
			/* the reader (and its copy of the name) may be closed before the batch is handled */
			it->line.file = input >= 0 ? c->t.inputs[input] : c->against;
			it->input = input;
			if (line.len >= BATCH_BYTES) {
				/*
				 * A long line ends the batch and is not copied: the
				 * reader's line stays valid until the next read, which
				 * comes after the batch is handled.
				 */
				it->off = BORROWED;
				break;
			}
			it->off = c->buf.len;
			strbuf_add(&c->buf, line.data, line.len);
			strbuf_addch(&c->buf, 0);
		}
		if (!c->n_items)
			break;
		sign_batch(c);
		for (size_t i = 0; i < c->n_items; i++) {
			fn(c, &c->items[i]);
			/* a long record's shingles are on disk now: not kept for the next batch */
			if (c->items[i].sig.payload.alloc > BATCH_BYTES / sizeof(uint64_t))
				ftk_u64vec_release(&c->items[i].sig.payload);
		}
	}
}

static int next_input(struct ctx *c, struct ftk_line *line, int *input)
{
	if (!ftk_tool_next(&c->t, line))
		return 0;
	*input = c->t.cur_input;
	return 1;
}

/* The reference set (--against): read directly, problems are warnings. */
static struct ftk_reader *ref_reader;

static int next_ref(struct ctx *c, struct ftk_line *line, int *input)
{
	struct ftk_error err;
	for (;;) {
		ftk_error_clear(&err);
		int rc = ftk_reader_next(ref_reader, line, &err);
		if (rc < 0)
			die_at(&err);
		if (rc == 0)
			return 0;
		if (strspn(line->data, " \t\r") == line->len)
			continue;
		if (line->utf8_error >= 0) {
			warning("%s:%ld: invalid UTF-8 in the reference set, line skipped", line->file,
				line->lineno);
			continue;
		}
		*input = -1;
		return 1;
	}
}

static void open_ref(struct ctx *c)
{
	struct ftk_error err;
	if (ftk_reader_open(&ref_reader, c->against, &err) < 0)
		die("%s", err.msg);
}

/* A signed item that is not a record: reject (inputs) or warn (reference). */
static int item_ok(struct ctx *c, struct item *it)
{
	if (!it->parsed) {
		if (it->input >= 0) {
			cJSON *v = ftk_tool_parse(&c->t, &it->line);
			cJSON_Delete(v);
		} else {
			warning("%s:%ld: not a JSON object in the reference set, line skipped",
				it->line.file, it->line.lineno);
		}
		return 0;
	}
	if (it->input >= 0) {
		struct tally *f = &c->by_file.v[it->input];
		f->in++;
		if (c->p.source_field)
			tally_get(&c->by_source, it->sig.source.buf, it->sig.source.len)->in++;
	}
	if (!it->sig.status) {
		if (it->input >= 0)
			c->no_key++;
		return 0;
	}
	return 1;
}

static void count_drop(struct ctx *c, int input, const char *src, size_t srclen)
{
	c->by_file.v[input].dropped++;
	if (c->p.source_field)
		tally_get(&c->by_source, src, srclen)->dropped++;
}

/*
 * The reason for a removed record: in near mode a copy whose word n-grams are
 * all the same as its survivor's (similarity 1, after normalization) is an
 * exact copy and is called what exact mode calls it, "duplicate"; the rest
 * are "near-duplicate".
 */
static const char *drop_reason(const struct ctx *c, double sim)
{
	return c->p.near && round(sim * 1e4) < 1e4 ? "near-duplicate" : "duplicate";
}

/* Keep an item's origin (exact streaming); returns its handle (0 when it has none). */
static uint64_t origin_keep(struct ctx *c, const struct item *it)
{
	if (!it->sig.origin.len)
		return 0;
	uint64_t h = c->origins.len + 1;
	strbuf_add(&c->origins, it->sig.origin.buf, it->sig.origin.len);
	strbuf_addch(&c->origins, '\0');
	return h;
}

/* "of" and "similarity" of a removed record; origin: the kept record's, or NULL. */
static cJSON *of_json(const char *file, uint32_t line, double sim, const char *origin)
{
	cJSON *x = cJSON_CreateObject();
	cJSON *of = cJSON_AddObjectToObject(x, "of");
	cJSON_AddStringToObject(of, "file", file);
	cJSON_AddNumberToObject(of, "line", line);
	if (origin) {
		cJSON *o = cJSON_Parse(origin);
		if (o)
			cJSON_AddItemToObject(of, "origin", o);
	}
	cJSON_AddNumberToObject(x, "similarity", round(sim * 1e4) / 1e4);
	return x;
}

/* The origin of index record id as a C string in c->scratch, or NULL without one. */
static const char *index_origin(struct ctx *c, uint32_t id)
{
	strbuf_reset(&c->scratch);
	int rc = ftk_dd_index_origin(c->ix, id, &c->scratch);
	if (rc < 0)
		die("cannot read back signatures: %s", strerror(errno));
	return rc ? c->scratch.buf : NULL;
}

/* ---------------------------------------------------------------- exact, first survives */

static struct xslot *xfind(struct ctx *c, uint64_t lo, uint64_t hi)
{
	size_t mask = c->tab_size - 1;
	size_t h = (size_t)lo & mask;
	while (c->tab[h].file != UINT32_MAX) {
		if (c->tab[h].lo == lo && c->tab[h].hi == hi)
			return &c->tab[h];
		h = (h + 1) & mask;
	}
	return &c->tab[h];
}

static void xgrow(struct ctx *c)
{
	size_t old = c->tab_size;
	struct xslot *ot = c->tab;
	c->tab_size = old ? old * 2 : 1 << 16;
	c->tab = xmalloc(sizeof(*c->tab) * c->tab_size);
	for (size_t i = 0; i < c->tab_size; i++)
		c->tab[i].file = UINT32_MAX;
	for (size_t i = 0; i < old; i++)
		if (ot[i].file != UINT32_MAX)
			*xfind(c, ot[i].lo, ot[i].hi) = ot[i];
	free(ot);
}

static void exact_item(struct ctx *c, struct item *it)
{
	if (!item_ok(c, it)) {
		if (it->parsed && it->input >= 0)
			ftk_tool_emit(&c->t, &it->line);
		return;
	}
	if ((c->tab_n + 1) * 10 > c->tab_size * 7)
		xgrow(c);
	struct xslot *s = xfind(c, it->sig.band[0], it->sig.band[1]);
	uint32_t file = it->input >= 0 ? (uint32_t)it->input : (uint32_t)c->t.n_inputs;
	if (it->input < 0) {	/* a reference record */
		if (s->file == UINT32_MAX) {
			*s = (struct xslot){ it->sig.band[0], it->sig.band[1], file,
					     (uint32_t)it->line.lineno, origin_keep(c, it) };
			c->tab_n++;
		}
		return;
	}
	if (s->file != UINT32_MAX) {
		ftk_tool_reject(&c->t, &it->line, "duplicate",
				of_json(c->tab_files[s->file], s->line, 1.0,
					s->origin ? c->origins.buf + s->origin - 1 : NULL));
		count_drop(c, it->input, it->sig.source.buf, it->sig.source.len);
		return;
	}
	if (!c->against_mode) {
		*s = (struct xslot){ it->sig.band[0], it->sig.band[1], file,
				     (uint32_t)it->line.lineno, origin_keep(c, it) };
		c->tab_n++;
	}
	ftk_tool_emit(&c->t, &it->line);
}

/* ---------------------------------------------------------------- the general path */

static void index_item(struct ctx *c, struct item *it)
{
	struct ftk_error err;
	if (!item_ok(c, it))
		return;
	int ref = it->input < 0;
	uint32_t fix = ref ? c->against_file_ix : c->input_file_ix[it->input];
	uint32_t src = c->p.source_field
			       ? ftk_dd_index_source(c->ix, it->sig.source.buf, it->sig.source.len)
			       : UINT32_MAX;
	double metric = c->keep == FTK_DD_KEEP_FIELD ? it->sig.field : it->sig.len;
	if (it->line.lineno > UINT32_MAX)
		die("%s:%ld: line number too large", it->line.file, it->line.lineno);
	int64_t id = ftk_dd_index_add(c->ix, fix, (uint32_t)it->line.lineno, metric, src, ref,
				      it->sig.band, fileno(c->sigtmp), c->sigoff);
	if (id < 0)
		die("too many records (at most %u)", UINT32_MAX - 1);
	if (ftk_dd_sigfile_write(c->sigtmp, &c->p, fix, (uint32_t)it->line.lineno, &it->sig, &err) < 0)
		die("%s", err.msg);
	c->sigoff += ftk_dd_sigfile_reclen(&c->p, &it->sig);
}

static void signatures_item(struct ctx *c, struct item *it)
{
	struct ftk_error err;
	if (!item_ok(c, it))
		return;
	if (it->line.lineno > UINT32_MAX)
		die("%s:%ld: line number too large", it->line.file, it->line.lineno);
	if (ftk_dd_sigfile_write(c->sigtmp, &c->p, (uint32_t)it->input, (uint32_t)it->line.lineno,
				 &it->sig, &err) < 0)
		die("%s", err.msg);
	ftk_tool_count(&c->t, "signed", 1);
}

/* A reader over input i for the second pass (standard input from its spool). */
static int reopen_input(struct ctx *c, int i, struct ftk_reader **r, FILE **fpp)
{
	struct ftk_error err;
	const char *name = c->t.inputs[i];
	*fpp = NULL;
	if (!strcmp(name, "-")) {
		if (c->spool_fd < 0 || lseek(c->spool_fd, 0, SEEK_SET) < 0)
			return error("cannot read standard input again");
		FILE *fp = fdopen(dup(c->spool_fd), "rb");
		if (!fp)
			return error("cannot read standard input again");
		if (ftk_reader_open_fp(r, fp, "-", &err) < 0) {
			fclose(fp);
			return error("cannot read standard input again");
		}
		*fpp = fp;	/* the reader does not close it */
		return 0;
	}
	if (ftk_reader_open(r, name, &err) < 0)
		return error("%s", err.msg);
	return 0;
}

static int is_blank(const struct ftk_line *l)
{
	return strspn(l->data, " \t\r") >= l->len;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Write the clusters of a resolved index. */
static void write_clusters(struct ctx *c)
{
	struct ftk_error err;
	struct ftk_writer *w;
	struct ftk_dd_index *ix = c->ix;
	uint32_t n = ftk_dd_index_count(ix);
	if (ftk_writer_open(&w, c->clusters_path, 0, &err) < 0) {
		error("%s", err.msg);
		c->t.failed = 1;
		return;
	}
	/* members of each survivor, in id order: sort (of, id) */
	uint64_t *v = NULL;
	size_t nv = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t of = ftk_dd_index_of(ix, i, NULL);
		if (of != UINT32_MAX) {
			v = xrealloc(v, sizeof(*v) * (nv + 1));
			v[nv++] = (uint64_t)of << 32 | i;
		}
	}
	if (nv)
		qsort(v, nv, sizeof(*v), cmp_u64);
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < nv;) {
		uint32_t of = (uint32_t)(v[i] >> 32);
		const char *f;
		uint32_t line;
		ftk_dd_index_place(ix, of, &f, &line, NULL);
		strbuf_reset(&sb);
		strbuf_addstr(&sb, "{\"kept\":{\"file\":");
		strbuf_add_json_str(&sb, f, strlen(f));
		strbuf_addf(&sb, ",\"line\":%u}%s,\"removed\":[", line,
			    ftk_dd_index_is_ref(ix, of) ? ",\"reference\":true" : "");
		size_t j = i;
		for (; j < nv && (uint32_t)(v[j] >> 32) == of; j++) {
			double s;
			uint32_t id = (uint32_t)v[j];
			ftk_dd_index_of(ix, id, &s);
			ftk_dd_index_place(ix, id, &f, &line, NULL);
			strbuf_addf(&sb, "%s{\"file\":", j > i ? "," : "");
			strbuf_add_json_str(&sb, f, strlen(f));
			strbuf_addf(&sb, ",\"line\":%u,\"similarity\":%.4g}", line, round(s * 1e4) / 1e4);
		}
		strbuf_addf(&sb, "],\"size\":%zu}", j - i + 1);
		ftk_writer_line(w, sb.buf, sb.len);
		i = j;
	}
	strbuf_release(&sb);
	free(v);
	if (ftk_writer_close(w, &err) < 0) {
		error("%s", err.msg);
		c->t.failed = 1;
	}
}

static void resolve(struct ctx *c)
{
	struct ftk_error err;
	struct ftk_dd_stats st;
	ftk_error_clear(&err);
	if (ftk_dd_index_resolve(c->ix, c->threshold, c->keep, c->against_mode, &st, &err) < 0)
		die("%s", err.msg);
	if (c->p.near) {
		ftk_tool_count(&c->t, "candidate-pairs", st.candidates);
		ftk_tool_count(&c->t, "verified-pairs", st.verified);
	}
	if (!c->against_mode)
		ftk_tool_count(&c->t, "clusters", st.clusters);
	if (st.spilled)
		ftk_tool_count(&c->t, "spilled-to-disk", st.spilled);
	if (c->t.extra_stats) {
		cJSON *d = cJSON_AddObjectToObject(c->t.extra_stats, "dedupe");
		cJSON_AddNumberToObject(d, "candidates", (double)st.candidates);
		cJSON_AddNumberToObject(d, "verified", (double)st.verified);
		cJSON_AddNumberToObject(d, "clusters", (double)st.clusters);
		cJSON_AddNumberToObject(d, "removed", (double)st.removed);
	}
}

/* The second pass of the single run: emit survivors, reject duplicates. */
static void apply_index(struct ctx *c)
{
	struct ftk_dd_index *ix = c->ix;
	uint32_t n = ftk_dd_index_count(ix), next = 0;
	while (next < n && ftk_dd_index_is_ref(ix, next))
		next++;
	for (int i = 0; i < c->t.n_inputs; i++) {
		struct ftk_reader *r = NULL;
		FILE *fp = NULL;
		struct ftk_error err;
		struct ftk_line line;
		int rc;
		/* an input that could not be read the first time was reported then */
		if (!c->by_file.v[i].in && strcmp(c->t.inputs[i], "-") && access(c->t.inputs[i], R_OK))
			continue;
		if (reopen_input(c, i, &r, &fp) < 0) {
			c->t.failed = 1;
			continue;
		}
		ftk_reader_set_max_line(r, c->t.max_record_bytes);
		while ((rc = ftk_reader_next(r, &line, &err)) > 0) {
			const char *f;
			uint32_t ln, fi;
			if (next < n) {
				ftk_dd_index_place(ix, next, &f, &ln, &fi);
				if (fi == c->input_file_ix[i] && ln == line.lineno) {
					double s;
					uint32_t of = ftk_dd_index_of(ix, next, &s);
					if (of == UINT32_MAX) {
						ftk_tool_emit(&c->t, &line);
					} else {
						const char *src = ftk_dd_index_source_name(ix, next);
						uint32_t ol;
						ftk_dd_index_place(ix, of, &f, &ol, NULL);
						ftk_tool_reject(&c->t, &line, drop_reason(c, s),
								of_json(f, ol, s, index_origin(c, of)));
						count_drop(c, i, src ? src : "", src ? strlen(src) : 0);
					}
					next++;
					continue;
				}
			}
			/* not indexed: blank or bad (already handled) or without a key (kept) */
			if (is_blank(&line) || line.utf8_error >= 0 || line.oversize ||
			    line.len > c->t.max_record_bytes)
				continue;
			cJSON *v = NULL;
			if (ftk_json_parse_record(line.data, line.len, &v, NULL, NULL) == 0)
				ftk_tool_emit(&c->t, &line);
			cJSON_Delete(v);
		}
		/* a cut stream was reported, and its last record rejected, by the first pass */
		if (rc < 0 && rc != FTK_ETRUNC) {
			error_at(&err);
			c->t.failed = 1;
		}
		ftk_reader_close(r);
		if (fp)
			fclose(fp);
	}
}

/* Spool standard input to a temporary file that stands in for it. */
static void spool_stdin(struct ctx *c)
{
	char path[] = "/tmp/ftk-dedupe-stdin.XXXXXX";
	const char *tmpdir = getenv("TMPDIR");
	char buf[1 << 16];
	int fd;
	if (tmpdir && *tmpdir) {
		char p2[4096];
		snprintf(p2, sizeof(p2), "%s/ftk-dedupe-stdin.XXXXXX", tmpdir);
		fd = mkstemp(p2);
		if (fd >= 0)
			unlink(p2);
	} else {
		fd = mkstemp(path);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0)
		die("cannot create a temporary file for standard input: %s", strerror(errno));
	for (;;) {
		ssize_t r = read(0, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("cannot read standard input: %s", strerror(errno));
		if (r == 0)
			break;
		for (ssize_t o = 0; o < r;) {
			ssize_t w = write(fd, buf + o, (size_t)(r - o));
			if (w < 0)
				die("cannot spool standard input: %s", strerror(errno));
			o += w;
		}
	}
	if (lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0)
		die("cannot spool standard input: %s", strerror(errno));
	c->spool_fd = fd;
}

static FILE *temp_file(void)
{
	FILE *f = ftk_dd_tmpfile();
	if (!f)
		die("cannot create a temporary file: %s", strerror(errno));
	return f;
}

/* Free the batch buffers and the signers' scratch (safe to call twice). */
static void release_batches(struct ctx *c)
{
	for (int k = 0; c->signers && k < c->threads; k++)
		ftk_dd_signer_release(&c->signers[k]);
	free(c->signers);
	c->signers = NULL;
	for (size_t i = 0; i < c->cap_items; i++)
		ftk_dd_sig_release(&c->items[i].sig);
	free(c->items);
	c->items = NULL;
	c->cap_items = c->n_items = 0;
	strbuf_release(&c->buf);
}

/* ---------------------------------------------------------------- sharded: merge, apply */

static void merge(struct ctx *c)
{
	struct ftk_error err;
	int n = c->t.n_inputs;
	int *fds = xmalloc(sizeof(int) * (n ? n : 1));
	if (n == 0 || (n == 1 && !strcmp(c->t.inputs[0], "-")))
		ftk_tool_usage_error(&c->t, "--merge needs signature files");
	for (int i = 0; i < n; i++) {
		fds[i] = open(c->t.inputs[i], O_RDONLY);
		if (fds[i] < 0)
			die("cannot open '%s': %s", c->t.inputs[i], strerror(errno));
		if (i == 0) {
			/* the signing parameters come from the files; --keep and --threshold from here */
			const char *want_field = c->keep == FTK_DD_KEEP_FIELD ? c->p.keep_field : NULL;
			if (ftk_dd_sigfile_params(fds[0], c->t.inputs[0], &c->p, &err) < 0)
				die_at(&err);
			if (want_field && (!c->p.keep_field || strcmp(want_field, c->p.keep_field)))
				die("--keep %s needs signatures made with --keep %s", want_field, want_field);
			if (!c->p.near && c->threshold_given)
				ftk_tool_usage_error(&c->t, "--threshold needs signatures made with --mode near");
			c->ix = ftk_dd_index_new(&c->p, c->mem_cap);
		}
		ftk_error_clear(&err);
		int64_t k = ftk_dd_index_load(c->ix, fds[i], c->t.inputs[i], &err);
		if (k < 0)
			die_at(&err);
		c->t.n_in += (uint64_t)k;
	}
	resolve(c);
	uint32_t nr = ftk_dd_index_count(c->ix);
	struct strbuf sb = STRBUF_INIT;
	/* the counts per shard file and source, as a single run would give them */
	tallies_release(&c->by_file);
	memset(&c->by_file, 0, sizeof(c->by_file));
	for (uint32_t i = 0; i < ftk_dd_index_nfiles(c->ix); i++) {
		const char *f = ftk_dd_index_file_name(c->ix, i);
		tally_get(&c->by_file, f, strlen(f));
	}
	for (uint32_t i = 0; i < nr; i++) {
		double s;
		uint32_t of = ftk_dd_index_of(c->ix, i, &s), fi;
		const char *src = ftk_dd_index_source_name(c->ix, i);
		ftk_dd_index_place(c->ix, i, NULL, NULL, &fi);
		c->by_file.v[fi].in++;
		if (src)
			tally_get(&c->by_source, src, strlen(src))->in++;
		if (of == UINT32_MAX)
			continue;
		c->by_file.v[fi].dropped++;
		if (src)
			tally_get(&c->by_source, src, strlen(src))->dropped++;
		const char *f, *of_f;
		uint32_t line, of_line;
		ftk_dd_index_place(c->ix, i, &f, &line, NULL);
		ftk_dd_index_place(c->ix, of, &of_f, &of_line, NULL);
		strbuf_reset(&sb);
		strbuf_addstr(&sb, "{\"file\":");
		strbuf_add_json_str(&sb, f, strlen(f));
		strbuf_addf(&sb, ",\"line\":%u,\"reason\":\"%s\",\"of\":{\"file\":", line, drop_reason(c, s));
		strbuf_add_json_str(&sb, of_f, strlen(of_f));
		strbuf_addf(&sb, ",\"line\":%u", of_line);
		/* the kept record's origin, as the single run's "of" carries it */
		const char *origin = index_origin(c, of);
		if (origin) {
			strbuf_addstr(&sb, ",\"origin\":");
			strbuf_addstr(&sb, origin);
		}
		strbuf_addf(&sb, "},\"similarity\":%.4g}", round(s * 1e4) / 1e4);
		ftk_tool_emit_raw(&c->t, sb.buf, sb.len);
	}
	strbuf_release(&sb);
	ftk_tool_count(&c->t, "to-remove", c->t.n_out);
	if (c->clusters_path)
		write_clusters(c);
	ftk_dd_index_free(c->ix);
	c->ix = NULL;
	for (int i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
}

struct listent {
	char *file;
	long line;
	char *reason;
	cJSON *extra;
};

static int cmp_listent(const void *a, const void *b)
{
	const struct listent *x = a, *y = b;
	int r = strcmp(x->file, y->file);
	if (r)
		return r;
	return x->line < y->line ? -1 : x->line > y->line;
}

static void apply_list(struct ctx *c)
{
	struct ftk_reader *r;
	struct ftk_error err;
	struct ftk_line line;
	struct listent *v = NULL;
	size_t n = 0, alloc = 0;
	int rc;
	if (ftk_reader_open(&r, c->apply_list, &err) < 0)
		die("%s", err.msg);
	while ((rc = ftk_reader_next(r, &line, &err)) > 0) {
		cJSON *o = NULL;
		if (is_blank(&line))
			continue;
		if (ftk_json_parse_object(line.data, line.len, &o, &err) < 0)
			die("%s:%ld: %s", c->apply_list, line.lineno, err.msg);
		const char *f = ftk_json_get_str(o, "file");
		cJSON *ln = cJSON_GetObjectItem(o, "line");
		if (!f || !cJSON_IsNumber(ln))
			die("%s:%ld: a list entry needs \"file\" and \"line\"", c->apply_list, line.lineno);
		FTK_ALLOC_GROW(v, n + 1, alloc);
		const char *reason = ftk_json_get_str(o, "reason");
		v[n].file = xstrdup(f);
		v[n].line = (long)ln->valuedouble;
		v[n].reason = xstrdup(reason ? reason : "duplicate");
		v[n].extra = cJSON_CreateObject();
		cJSON *of = cJSON_GetObjectItem(o, "of"), *sim = cJSON_GetObjectItem(o, "similarity");
		if (of)
			cJSON_AddItemToObject(v[n].extra, "of", cJSON_Duplicate(of, 1));
		if (sim)
			cJSON_AddItemToObject(v[n].extra, "similarity", cJSON_Duplicate(sim, 1));
		n++;
		cJSON_Delete(o);
	}
	if (rc < 0)
		die_at(&err);
	ftk_reader_close(r);
	if (n)
		qsort(v, n, sizeof(*v), cmp_listent);
	while (ftk_tool_next(&c->t, &line)) {
		cJSON *rec = ftk_tool_parse(&c->t, &line);
		if (!rec)
			continue;
		cJSON_Delete(rec);
		struct listent key = { (char *)line.file, line.lineno, NULL, NULL };
		struct listent *e = n ? bsearch(&key, v, n, sizeof(*v), cmp_listent) : NULL;
		c->by_file.v[c->t.cur_input].in++;
		if (e && e->extra) {
			ftk_tool_reject(&c->t, &line, e->reason, e->extra);
			e->extra = NULL;
			c->by_file.v[c->t.cur_input].dropped++;
		} else {
			ftk_tool_emit(&c->t, &line);
		}
	}
	for (size_t i = 0; i < n; i++) {
		free(v[i].file);
		free(v[i].reason);
		cJSON_Delete(v[i].extra);
	}
	free(v);
}

/* ---------------------------------------------------------------- summary */

/*
 * skip_none: the counts are by meta.source without --source-field, so the
 * records without one are not a source (and with no source at all there is
 * nothing to report).
 */
static void report_tallies(struct ctx *c, struct tallies *ts, const char *what, int list,
			   int skip_none)
{
	cJSON *o = NULL;
	if (skip_none) {
		size_t named = 0;
		for (size_t i = 0; i < ts->n; i++)
			named += ts->v[i].name[0] != '\0';
		if (!named)
			return;
	}
	if (c->t.extra_stats)
		o = cJSON_AddObjectToObject(c->t.extra_stats, what);
	for (size_t i = 0; i < ts->n; i++) {
		struct tally *t = &ts->v[i];
		if (skip_none && !t->name[0])
			continue;
		if (o) {
			cJSON *e = cJSON_AddObjectToObject(o, t->name);
			cJSON_AddNumberToObject(e, "in", (double)t->in);
			cJSON_AddNumberToObject(e, "dropped", (double)t->dropped);
		}
		if (list && !c->t.quiet)
			fprintf(stderr, "%s: %s '%s': %llu of %llu removed\n", c->t.name,
				!strcmp(what, "by_file") ? "file" : "source", t->name,
				(unsigned long long)t->dropped, (unsigned long long)t->in);
		if (t->in && t->dropped * 2 > t->in)
			warning("%s '%s' lost more than half its records (%llu of %llu)",
				!strcmp(what, "by_file") ? "file" : "source", t->name,
				(unsigned long long)t->dropped, (unsigned long long)t->in);
	}
}

/* ---------------------------------------------------------------- main */

int cmd_dedupe(int argc, char **argv)
{
	static struct ctx cx;
	struct ctx *c = &cx;
	struct ftk_error err;
	struct ftk_dd_settings s;

	memset(c, 0, sizeof(*c));
	ftk_tool_init(&c->t, "ftk-dedupe", NULL);
	ftk_dd_settings_init(&s);
	c->mem_cap = (uint64_t)4 << 30;
	c->spool_fd = -1;
	strbuf_init(&c->origins, 0);
	strbuf_init(&c->scratch, 0);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	c->threads = ncpu > 0 ? (int)(ncpu > 64 ? 64 : ncpu) : 1;

	struct ftk_option opts[] = {
		FTK_OPT_GROUP("What is compared"),
		FTK_OPT_STRING(0, "key", &s.p.key, "SPEC",
			       "comma-separated items joined by newlines: @text (the\n"
			       "record's text, default), @user, @assistant, @system,\n"
			       "or field paths (instruction, messages[0].content)"),
		FTK_OPT_STRING(0, "normalize", &s.normalize, "LIST", "nfc,case,punct,space (default all), or none"),
		FTK_OPT_GROUP("Modes"),
		FTK_OPT_CHOICE(0, "mode", &s.p.near, NULL, "exact|near",
			       "exact: XXH3-128 of the normalized key (default);\n"
			       "near: MinHash of word n-gram shingles with LSH"),
		FTK_OPT_FLAG(0, "near", &s.p.near, "the same as --mode near"),
		FTK_OPT_INT(0, "ngram", &s.p.ngram, "N", 1, 1000, "words per shingle (default 5)"),
		FTK_OPT_CALLBACK(0, "threshold", &s, "J", threshold_cb,
				 "Jaccard similarity that makes a near-duplicate,\n"
				 "above 0 and below 1 (default 0.8); also chooses\n"
				 "bands and rows unless they are given"),
		FTK_OPT_INT(0, "bands", &s.bands, "B", 1, FTK_MINHASH_MAX_PERM,
			    "LSH bands (default 14 x 8 rows, as datatrove)"),
		FTK_OPT_INT(0, "rows", &s.rows, "R", 1, FTK_MINHASH_MAX_PERM, "LSH rows per band"),
		FTK_OPT_FLAG(0, "fast", &s.p.fast, "verify candidates by the signature estimate instead\n"
						  "of the true Jaccard of the shingle sets"),
		FTK_OPT_UINT64(0, "seed", &s.p.seed, "N", "hash seed (default 1)"),
		FTK_OPT_GROUP("Which record survives, and reports"),
		FTK_OPT_CALLBACK(0, "keep", &s, "first|longest|FIELD", keep_cb,
				 "the first in input order (default), the\n"
				 "longest key, or the largest number in FIELD"),
		FTK_OPT_STRING(0, "clusters", &s.clusters, "FILE",
			       "write each cluster (kept and removed) as a JSON line"),
		FTK_OPT_STRING(0, "source-field", &s.p.source_field, "F",
			       "count drops per value of field F (e.g. meta.source)"),
		FTK_OPT_STRING(0, "against", &s.against, "FILE",
			       "remove records that duplicate a record of FILE (the\n"
			       "reference set is not deduplicated nor written, and\n"
			       "the inputs are not deduplicated among themselves)"),
		FTK_OPT_GROUP("Resources"),
		FTK_OPT_INT('j', "threads", &c->threads, "N", 1, 64,
			    "threads that sign records (default: all cores)"),
		FTK_OPT_SIZE(0, "mem-cap", &c->mem_cap, "SIZE", 0, UINT64_MAX,
			     "band hashes held in memory before spilling to\n"
			     "temporary files (default 4G; 0: never spill)"),
		FTK_OPT_GROUP("Sharded mode"),
		FTK_OPT_CALLBACK_NOARG(0, "signatures", c, sharded_cb,
				       "write the inputs' signatures to -o FILE"),
		FTK_OPT_CALLBACK_NOARG(0, "merge", c, sharded_cb,
				       "read signature files, write the list of records to\n"
				       "remove (JSON lines) to -o"),
		FTK_OPT_CALLBACK(0, "apply", c, "LIST", sharded_cb, "filter the inputs by a list from --merge"),
		FTK_OPT_TOOL_COMMON(&c->t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-dedupe", opts, usage);
	s.stage = c->sharded == SHARD_SIGNATURES ? FTK_DD_SIGNATURES
		  : c->sharded == SHARD_MERGE    ? FTK_DD_MERGE
		  : c->sharded == SHARD_APPLY    ? FTK_DD_APPLY
					       : FTK_DD_WHOLE;
	s.out = c->t.out_path;
	/* a run counts drops per meta.source (the first stage's provenance, or
	 * the data's own labels) unless told another field; the sharded steps
	 * as the single run does: the signatures carry the source (and that it
	 * was the default) to the merge, which counts */
	if (!s.p.source_field && (s.stage == FTK_DD_WHOLE || s.stage == FTK_DD_SIGNATURES)) {
		s.p.source_field = "meta.source";
		s.p.source_default = 1;
	}
	if (ftk_dd_settings_check(&s, &c->key, &c->mh, &err) < 0)
		ftk_tool_usage_error(&c->t, "%s", err.msg);
	c->p = s.p;
	c->keep = s.keep;
	c->threshold = s.threshold;
	c->threshold_given = s.threshold_given;
	c->clusters_path = s.clusters;
	c->against = s.against;
	c->against_mode = s.against != NULL;

	int n_inputs = argc;
	char **inputs = argv;
	if (c->sharded == SHARD_SIGNATURES) {
		/* the signatures go to -o; the tool's output stays closed */
		const char *sigpath = c->t.out_path;
		c->t.out_path = NULL;
		ftk_tool_start(&c->t, n_inputs, inputs);
		c->sigtmp = fopen(sigpath, "wb");
		if (!c->sigtmp)
			die("cannot open '%s': %s", sigpath, strerror(errno));
		if (ftk_dd_sigfile_header(c->sigtmp, &c->p, c->t.inputs, c->t.n_inputs, &err) < 0)
			die("%s", err.msg);
	} else {
		ftk_tool_start(&c->t, n_inputs, inputs);
	}
	if (c->t.stats_path && !c->t.extra_stats)
		c->t.extra_stats = cJSON_CreateObject();
	for (int i = 0; i < c->t.n_inputs; i++) {
		for (int j = 0; j < i; j++)
			if (!strcmp(c->t.inputs[i], c->t.inputs[j]))
				ftk_tool_usage_error(&c->t, "input '%s' is given twice", c->t.inputs[i]);
		tally_get(&c->by_file, c->t.inputs[i], strlen(c->t.inputs[i]));
	}

	if (c->sharded == SHARD_MERGE) {
		merge(c);
		goto finish;
	}
	if (c->sharded == SHARD_APPLY) {
		apply_list(c);
		goto finish;
	}

	c->signers = xcalloc(c->threads, sizeof(*c->signers));
	for (int k = 0; k < c->threads; k++)
		ftk_dd_signer_init(&c->signers[k], &c->p, c->key, c->p.near ? &c->mh : NULL);
	strbuf_init(&c->buf, 0);

	if (c->sharded == SHARD_SIGNATURES) {
		sign_all(c, next_input, signatures_item);
		if (fclose(c->sigtmp) != 0) {
			error("cannot write signatures: %s", strerror(errno));
			c->t.failed = 1;
		}
		c->sigtmp = NULL;
	} else if (ftk_dd_settings_streaming(&s)) {
		/* exact, first survives: one streaming pass */
		c->tab_files = xmalloc(sizeof(char *) * (c->t.n_inputs + 1));
		for (int i = 0; i < c->t.n_inputs; i++)
			c->tab_files[i] = c->t.inputs[i];
		c->tab_files[c->t.n_inputs] = (char *)c->against;
		xgrow(c);
		if (c->against) {
			open_ref(c);
			sign_all(c, next_ref, exact_item);
			ftk_reader_close(ref_reader);
		}
		sign_all(c, next_input, exact_item);
		free(c->tab);
		free(c->tab_files);
	} else {
		for (int i = 0; i < c->t.n_inputs; i++)
			if (!strcmp(c->t.inputs[i], "-"))
				spool_stdin(c);
		c->ix = ftk_dd_index_new(&c->p, c->mem_cap);
		c->sigtmp = temp_file();
		c->input_file_ix = xmalloc(sizeof(uint32_t) * c->t.n_inputs);
		if (c->against) {
			c->against_file_ix = ftk_dd_index_file(c->ix, c->against);
			open_ref(c);
			sign_all(c, next_ref, index_item);
			ftk_reader_close(ref_reader);
		}
		for (int i = 0; i < c->t.n_inputs; i++)
			c->input_file_ix[i] = ftk_dd_index_file(c->ix, c->t.inputs[i]);
		sign_all(c, next_input, index_item);
		if (fflush(c->sigtmp) != 0)
			die("cannot write temporary signatures: %s", strerror(errno));
		release_batches(c);	/* before resolve, the memory peak */
		resolve(c);
		apply_index(c);
		if (c->clusters_path)
			write_clusters(c);
		fclose(c->sigtmp);
		ftk_dd_index_free(c->ix);
		free(c->input_file_ix);
	}
	if (c->no_key)
		ftk_tool_count(&c->t, "no-key (kept)", c->no_key);
	release_batches(c);
finish:
	if (c->sharded == SHARD_MERGE)
		report_tallies(c, &c->by_file, "by_file", c->by_file.n > 1, 0);
	else if (c->sharded != SHARD_SIGNATURES)
		report_tallies(c, &c->by_file, "by_file", c->t.n_inputs > 1, 0);
	if (c->p.source_field && c->sharded != SHARD_SIGNATURES)
		report_tallies(c, &c->by_source, "by_source", 1, c->p.source_default);
	tallies_release(&c->by_file);
	tallies_release(&c->by_source);
	strbuf_release(&c->origins);
	strbuf_release(&c->scratch);
	ftk_dd_key_free(c->key);
	ftk_minhash_release(&c->mh);
	if (c->spool_fd >= 0)
		close(c->spool_fd);
	return ftk_tool_finish(&c->t);
}
