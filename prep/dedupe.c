/*
 * dedupe.c: keys, signing, signature files and resolution (see dedupe.h).
 *
 * Resolution in near mode, step by step:
 *   1. for each band, sort the (band hash, record id) pairs by hash (a
 *      stable radix sort, so ids stay in order inside a run of equal
 *      hashes) and pair every record of a run with the run's first record:
 *      a star, not all pairs, since union-find makes clusters transitive
 *      anyway;
 *   2. sort and deduplicate the candidate pairs (a pair found in several
 *      bands is verified once);
 *   3. verify each pair from the payloads on disk, reading each record's
 *      payload once per run of pairs that share it;
 *   4. union the verified pairs, pick each cluster's survivor, and measure
 *      every removed record against its survivor, so the similarity in the
 *      rejects is the one to the record that was kept.
 * Exact mode is the same with one "band" of 128 bits and similarity 1.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include "dedupe.h"
#include "lib/json.h"
#include "lib/record.h"

/* ---------------------------------------------------------------- keys */

enum { K_TEXT, K_ROLE, K_PATH };

struct ftk_dd_key {
	int n;
	struct {
		int kind;
		char *arg;	/* role or path */
	} *item;
};

int ftk_dd_key_parse(const char *spec, struct ftk_dd_key **out, struct ftk_error *err)
{
	struct ftk_dd_key *k = xcalloc(1, sizeof(*k));
	const char *p = spec;
	if (!*spec) {
		free(k);
		return ftk_error_msg(err, FTK_EUSAGE, "empty key");
	}
	while (*p) {
		size_t n = strcspn(p, ",");
		char *it = xstrndup(p, n);
		int kind;
		char *arg = NULL;
		if (!strcmp(it, "@text")) {
			kind = K_TEXT;
		} else if (!strcmp(it, "@user") || !strcmp(it, "@assistant") || !strcmp(it, "@system")) {
			kind = K_ROLE;
			arg = xstrdup(it + 1);
		} else if (it[0] == '@' || !it[0]) {
			ftk_error_msg(err, FTK_EUSAGE,
				      "unknown key item '%s' (use @text, @user, @assistant, @system or a field path)",
				      it);
			free(it);
			ftk_dd_key_free(k);
			return FTK_EUSAGE;
		} else {
			kind = K_PATH;
			arg = xstrdup(it);
		}
		free(it);
		k->item = xrealloc(k->item, sizeof(*k->item) * (k->n + 1));
		k->item[k->n].kind = kind;
		k->item[k->n].arg = arg;
		k->n++;
		p += n;
		if (*p == ',')
			p++;
	}
	*out = k;
	return 0;
}

void ftk_dd_key_free(struct ftk_dd_key *k)
{
	if (!k)
		return;
	for (int i = 0; i < k->n; i++)
		free(k->item[i].arg);
	free(k->item);
	free(k);
}

const cJSON *ftk_dd_path(const cJSON *rec, const char *path)
{
	const cJSON *v = rec;
	const char *p = path;
	while (v && *p) {
		if (*p == '[') {
			char *end;
			long i = strtol(p + 1, &end, 10);
			if (*end != ']' || !cJSON_IsArray(v))
				return NULL;
			int n = cJSON_GetArraySize(v);
			if (i < 0)
				i += n;
			if (i < 0 || i >= n)
				return NULL;
			v = cJSON_GetArrayItem(v, (int)i);
			p = end + 1;
			if (*p == '.')
				p++;
			continue;
		}
		size_t n = strcspn(p, ".[");
		if (!cJSON_IsObject(v))
			return NULL;
		const cJSON *c = NULL;
		for (c = v->child; c; c = c->next)
			if (c->string && strlen(c->string) == n && !memcmp(c->string, p, n))
				break;
		v = c;
		p += n;
		if (*p == '.')
			p++;
	}
	return v;
}

/* Append a field value as text: strings as they are, content part lists as their text, the rest as JSON. */
static int value_text(const cJSON *v, struct strbuf *out)
{
	if (!v || cJSON_IsNull(v))
		return 0;
	if (cJSON_IsString(v)) {
		if (!*v->valuestring)
			return 0;
		strbuf_addstr(out, v->valuestring);
		return 1;
	}
	if (cJSON_IsArray(v)) {
		size_t before = out->len;
		if (ftk_content_text(v, out) > 0 && out->len > before)
			return 1;
		strbuf_setlen(out, before);
	}
	char *s = cJSON_PrintUnformatted(v);
	strbuf_addstr(out, s);
	cJSON_free(s);
	return 1;
}

int ftk_dd_key_text(const struct ftk_dd_key *k, const cJSON *rec, struct strbuf *out)
{
	int n = 0;
	for (int i = 0; i < k->n; i++) {
		size_t before = out->len;
		if (n)
			strbuf_addch(out, '\n');
		size_t mark = out->len;
		int got = 0;
		switch (k->item[i].kind) {
		case K_TEXT:
			got = ftk_record_text(rec, NULL, out) > 0;
			break;
		case K_ROLE:
			got = ftk_record_text(rec, k->item[i].arg, out) > 0;
			break;
		case K_PATH:
			got = value_text(ftk_dd_path(rec, k->item[i].arg), out);
			break;
		}
		if (got && out->len > mark)
			n++;
		else
			strbuf_setlen(out, before);
	}
	return n;
}

/* ---------------------------------------------------------------- signing */

int ftk_dd_nbands(const struct ftk_dd_params *p)
{
	return p->near ? p->bands : 2;
}

void ftk_dd_signer_init(struct ftk_dd_signer *s, const struct ftk_dd_params *p,
			const struct ftk_dd_key *key, const struct ftk_minhash *mh)
{
	memset(s, 0, sizeof(*s));
	s->p = p;
	s->key = key;
	s->mh = mh;
	strbuf_init(&s->raw, 0);
	strbuf_init(&s->norm, 0);
	ftk_words_init(&s->words);
	if (mh)
		s->sig = xmalloc(sizeof(uint64_t) * mh->k);
}

void ftk_dd_signer_release(struct ftk_dd_signer *s)
{
	strbuf_release(&s->raw);
	strbuf_release(&s->norm);
	ftk_words_release(&s->words);
	ftk_u64vec_release(&s->shingles);
	free(s->sig);
	s->sig = NULL;
}

void ftk_dd_sig_init(struct ftk_dd_sig *g, int nbands)
{
	g->band = xcalloc(nbands > 2 ? nbands : 2, sizeof(uint64_t));
	g->status = 0;
	g->len = 0;
	g->field = -HUGE_VAL;
	strbuf_init(&g->source, 0);
	strbuf_init(&g->origin, 0);
	memset(&g->payload, 0, sizeof(g->payload));
}

void ftk_dd_sig_release(struct ftk_dd_sig *g)
{
	strbuf_release(&g->source);
	strbuf_release(&g->origin);
	ftk_u64vec_release(&g->payload);
	free(g->band);
	g->band = NULL;
}

static int near_sig(struct ftk_dd_signer *s, struct ftk_dd_sig *g);

int ftk_dd_sign(struct ftk_dd_signer *s, const cJSON *rec, struct ftk_dd_sig *g)
{
	const struct ftk_dd_params *p = s->p;
	g->status = 0;
	g->field = -HUGE_VAL;
	g->payload.n = 0;
	strbuf_reset(&g->source);
	strbuf_reset(&g->origin);
	ftk_record_origin(rec, &g->origin);
	if (p->source_field) {
		const cJSON *v = ftk_dd_path(rec, p->source_field);
		if (v && !cJSON_IsNull(v))
			value_text(v, &g->source);
	}
	if (p->keep_field) {
		const cJSON *v = ftk_dd_path(rec, p->keep_field);
		if (cJSON_IsNumber(v))
			g->field = v->valuedouble;
	}
	strbuf_reset(&s->raw);
	strbuf_reset(&s->norm);
	if (ftk_dd_key_text(s->key, rec, &s->raw) <= 0)
		return 0;
	g->len = (double)s->raw.len;
	if (p->near) {
		/* cJSON strings are valid UTF-8 after the reader's check */
		if (ftk_normalize_words(s->raw.buf, s->raw.len, p->norm, &s->words, NULL) < 0)
			ftk_words_split(&s->words, s->raw.buf, s->raw.len);
		if (!ftk_minhash_shingles(&s->words, p->ngram, p->seed, &s->shingles))
			return 0;
		return near_sig(s, g);
	}
	if (ftk_normalize(s->raw.buf, s->raw.len, p->norm, &s->norm, NULL) < 0)
		strbuf_add(&s->norm, s->raw.buf, s->raw.len);
	if (!s->norm.len)
		return 0;
	XXH128_hash_t h = XXH3_128bits(s->norm.buf, s->norm.len);
	g->band[0] = h.low64;
	g->band[1] = h.high64;
	g->status = 1;
	return 1;
}

/* The near-mode half of signing: signature, bands, payload. */
static int near_sig(struct ftk_dd_signer *s, struct ftk_dd_sig *g)
{
	const struct ftk_dd_params *p = s->p;
	ftk_minhash_signature(s->mh, s->shingles.v, s->shingles.n, s->sig);
	ftk_minhash_bands(s->mh, s->sig, g->band);
	if (p->fast) {
		FTK_ALLOC_GROW(g->payload.v, (size_t)s->mh->k, g->payload.alloc);
		memcpy(g->payload.v, s->sig, sizeof(uint64_t) * s->mh->k);
		g->payload.n = s->mh->k;
	} else {
		FTK_ALLOC_GROW(g->payload.v, s->shingles.n, g->payload.alloc);
		memcpy(g->payload.v, s->shingles.v, sizeof(uint64_t) * s->shingles.n);
		g->payload.n = s->shingles.n;
	}
	g->status = 1;
	return 1;
}

/* ---------------------------------------------------------------- signature files */

static const char sig_magic[] = "FTKSIG2\n";

static cJSON *params_json(const struct ftk_dd_params *p)
{
	char nb[64];
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "mode", p->near ? "near" : "exact");
	cJSON_AddBoolToObject(o, "fast", p->near && p->fast);
	cJSON_AddStringToObject(o, "key", p->key);
	cJSON_AddStringToObject(o, "normalize", ftk_normalize_name(p->norm, nb, sizeof(nb)));
	if (p->near) {
		cJSON_AddNumberToObject(o, "ngram", p->ngram);
		cJSON_AddNumberToObject(o, "bands", p->bands);
		cJSON_AddNumberToObject(o, "rows", p->rows);
		char seed[32];
		snprintf(seed, sizeof(seed), "%llu", (unsigned long long)p->seed);
		cJSON_AddStringToObject(o, "seed", seed);
	}
	if (p->keep_field)
		cJSON_AddStringToObject(o, "keep_field", p->keep_field);
	if (p->source_field)
		cJSON_AddStringToObject(o, "source_field", p->source_field);
	if (p->source_field && p->source_default)
		cJSON_AddBoolToObject(o, "source_default", 1);
	return o;
}

int ftk_dd_sigfile_header(FILE *f, const struct ftk_dd_params *p, char **files, int n_files,
			  struct ftk_error *err)
{
	cJSON *o = params_json(p);
	cJSON *fa = cJSON_AddArrayToObject(o, "files");
	for (int i = 0; i < n_files; i++)
		cJSON_AddItemToArray(fa, cJSON_CreateString(files[i]));
	char *s = cJSON_PrintUnformatted(o);
	int bad = fputs(sig_magic, f) < 0 || fputs(s, f) < 0 || fputc('\n', f) < 0;
	cJSON_free(s);
	cJSON_Delete(o);
	if (bad)
		return ftk_error_msg(err, FTK_EIO, "cannot write signatures: %s", strerror(errno));
	return 0;
}

int ftk_dd_sigfile_write(FILE *f, const struct ftk_dd_params *p, uint32_t file, uint32_t line,
			 const struct ftk_dd_sig *g, struct ftk_error *err)
{
	static const char zeros[8];
	struct ftk_dd_sighdr h = { file, line, g->len, g->field, (uint32_t)g->source.len,
				   (uint32_t)g->payload.n, (uint32_t)g->origin.len, 0 };
	size_t pad = (8 - g->source.len % 8) % 8;
	size_t opad = (8 - g->origin.len % 8) % 8;
	int nb = ftk_dd_nbands(p);
	if (fwrite(&h, sizeof(h), 1, f) != 1 || fwrite(g->band, sizeof(uint64_t), nb, f) != (size_t)nb ||
	    (g->source.len && fwrite(g->source.buf, 1, g->source.len, f) != g->source.len) ||
	    (pad && fwrite(zeros, 1, pad, f) != pad) ||
	    (g->origin.len && fwrite(g->origin.buf, 1, g->origin.len, f) != g->origin.len) ||
	    (opad && fwrite(zeros, 1, opad, f) != opad) ||
	    (g->payload.n && fwrite(g->payload.v, sizeof(uint64_t), g->payload.n, f) != g->payload.n))
		return ftk_error_msg(err, FTK_EIO, "cannot write signatures: %s", strerror(errno));
	return 0;
}

uint64_t ftk_dd_sigfile_reclen(const struct ftk_dd_params *p, const struct ftk_dd_sig *g)
{
	return sizeof(struct ftk_dd_sighdr) + sizeof(uint64_t) * (uint64_t)ftk_dd_nbands(p) +
	       (g->source.len + 7) / 8 * 8 + (g->origin.len + 7) / 8 * 8 +
	       sizeof(uint64_t) * (uint64_t)g->payload.n;
}

/* Where a record's payload starts, from its start and header. */
static uint64_t payload_off(const struct ftk_dd_params *p, uint64_t start, const struct ftk_dd_sighdr *h)
{
	return start + sizeof(*h) + sizeof(uint64_t) * (uint64_t)ftk_dd_nbands(p) +
	       ((uint64_t)h->src_len + 7) / 8 * 8 + ((uint64_t)h->origin_len + 7) / 8 * 8;
}

/* ---------------------------------------------------------------- the index */

struct meta {
	uint64_t off;		/* signature record start in its file */
	double metric;
	uint32_t line, file, source;
	int32_t fd;
	uint8_t ref;
};

struct __attribute__((packed)) bent {	/* a band entry */
	uint64_t h;
	uint32_t id;
};
struct __attribute__((packed)) xent {	/* an exact-mode entry */
	uint64_t lo, hi;
	uint32_t id;
};

/*
 * Band entries are kept in fixed chunks rather than one array grown by
 * realloc: no slack of a growth factor and no copy at each growth, which
 * would both count against the bytes per record.
 */
#define CHUNK_MAX 16384
#define CHUNK (x->chunk)
struct chunks {
	unsigned char **c;
	size_t n, alloc;
};

struct ftk_dd_index {
	struct ftk_dd_params p;
	int nb;			/* band arrays: bands (near) or 1 (exact) */
	size_t esize;		/* bytes per entry */
	size_t mem_cap;
	struct meta *m;
	size_t n, alloc;
	char **files;
	uint32_t n_files, alloc_files;
	char **sources;
	uint32_t n_sources, alloc_sources;
	struct chunks *band;	/* (nb) entries in memory, in chunks of CHUNK */
	size_t band_n;		/* entries in memory per band */
	size_t chunk;		/* entries per chunk: CHUNK_MAX, less under a small memory cap */
	FILE **spill;		/* (nb) spill files, NULL until needed */
	uint64_t *spilled;	/* (nb) entries spilled */
	uint32_t *of;		/* after resolve */
	float *sim;
	/* the hash table over source names */
	uint32_t *src_tab;
	size_t src_tab_size;
};

struct ftk_dd_index *ftk_dd_index_new(const struct ftk_dd_params *p, size_t mem_cap)
{
	struct ftk_dd_index *x = xcalloc(1, sizeof(*x));
	x->p = *p;
	x->nb = p->near ? p->bands : 1;
	x->esize = p->near ? sizeof(struct bent) : sizeof(struct xent);
	x->mem_cap = mem_cap;
	x->chunk = CHUNK_MAX;
	if (mem_cap && mem_cap / (x->esize * x->nb) < CHUNK_MAX)
		x->chunk = mem_cap / (x->esize * x->nb) > 16 ? mem_cap / (x->esize * x->nb) : 16;
	x->band = xcalloc(x->nb, sizeof(*x->band));
	x->spill = xcalloc(x->nb, sizeof(*x->spill));
	x->spilled = xcalloc(x->nb, sizeof(*x->spilled));
	return x;
}

void ftk_dd_index_free(struct ftk_dd_index *x)
{
	if (!x)
		return;
	for (int b = 0; b < x->nb; b++) {
		for (size_t c = 0; c < x->band[b].n; c++)
			free(x->band[b].c[c]);
		free(x->band[b].c);
		if (x->spill[b])
			fclose(x->spill[b]);
	}
	free(x->band);
	free(x->spill);
	free(x->spilled);
	free(x->m);
	for (uint32_t i = 0; i < x->n_files; i++)
		free(x->files[i]);
	free(x->files);
	for (uint32_t i = 0; i < x->n_sources; i++)
		free(x->sources[i]);
	free(x->sources);
	free(x->src_tab);
	free(x->of);
	free(x->sim);
	free(x);
}

uint32_t ftk_dd_index_file(struct ftk_dd_index *x, const char *name)
{
	for (uint32_t i = 0; i < x->n_files; i++)
		if (!strcmp(x->files[i], name))
			return i;
	FTK_ALLOC_GROW(x->files, x->n_files + 1, x->alloc_files);
	x->files[x->n_files] = xstrdup(name);
	return x->n_files++;
}

uint32_t ftk_dd_index_source(struct ftk_dd_index *x, const char *name, size_t len)
{
	if (x->n_sources * 2 >= x->src_tab_size) {
		size_t ns = x->src_tab_size ? x->src_tab_size * 2 : 64;
		uint32_t *t = xmalloc(sizeof(uint32_t) * ns);
		for (size_t i = 0; i < ns; i++)
			t[i] = UINT32_MAX;
		for (uint32_t i = 0; i < x->n_sources; i++) {
			size_t h = XXH3_64bits(x->sources[i], strlen(x->sources[i])) & (ns - 1);
			while (t[h] != UINT32_MAX)
				h = (h + 1) & (ns - 1);
			t[h] = i;
		}
		free(x->src_tab);
		x->src_tab = t;
		x->src_tab_size = ns;
	}
	size_t h = XXH3_64bits(name, len) & (x->src_tab_size - 1);
	while (x->src_tab[h] != UINT32_MAX) {
		const char *s = x->sources[x->src_tab[h]];
		if (strlen(s) == len && !memcmp(s, name, len))
			return x->src_tab[h];
		h = (h + 1) & (x->src_tab_size - 1);
	}
	FTK_ALLOC_GROW(x->sources, x->n_sources + 1, x->alloc_sources);
	x->sources[x->n_sources] = xstrndup(name, len);
	x->src_tab[h] = x->n_sources;
	return x->n_sources++;
}

FILE *ftk_dd_tmpfile(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/ftk-dedupe.XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	unlink(path);
	FILE *f = fdopen(fd, "w+b");
	if (!f)
		close(fd);
	return f;
}

static void free_chunks(struct chunks *ch)
{
	for (size_t c = 0; c < ch->n; c++)
		free(ch->c[c]);
	free(ch->c);
	memset(ch, 0, sizeof(*ch));
}

static int spill_all(struct ftk_dd_index *x)
{
	for (int b = 0; b < x->nb; b++) {
		struct chunks *ch = &x->band[b];
		if (!x->spill[b] && !(x->spill[b] = ftk_dd_tmpfile()))
			return -1;
		for (size_t c = 0; c < ch->n; c++) {
			size_t k = c + 1 < ch->n ? CHUNK : x->band_n - c * CHUNK;
			if (fwrite(ch->c[c], x->esize, k, x->spill[b]) != k)
				return -1;
		}
		x->spilled[b] += x->band_n;
		free_chunks(ch);
	}
	x->band_n = 0;
	return 0;
}

int64_t ftk_dd_index_add(struct ftk_dd_index *x, uint32_t file, uint32_t line, double metric,
			 uint32_t source, int ref, const uint64_t *band, int sigfd, uint64_t off)
{
	if (x->n >= UINT32_MAX - 1)
		return FTK_ELIMIT;
	FTK_ALLOC_GROW(x->m, x->n + 1, x->alloc);
	uint32_t id = (uint32_t)x->n++;
	x->m[id] = (struct meta){ off, metric, line, file, source, sigfd, (uint8_t)(ref != 0) };
	if (x->band_n % CHUNK == 0) {
		if (x->mem_cap && x->band_n && (uint64_t)(x->band_n + CHUNK) * x->esize * x->nb > x->mem_cap) {
			/* the next chunk would pass the cap: everything so far goes to disk */
			if (spill_all(x) < 0)
				return FTK_EIO;
		}
		for (int b = 0; b < x->nb; b++) {
			struct chunks *ch = &x->band[b];
			FTK_ALLOC_GROW(ch->c, ch->n + 1, ch->alloc);
			ch->c[ch->n++] = xmalloc(CHUNK * x->esize);
		}
	}
	size_t c = x->band_n / CHUNK, at = x->band_n % CHUNK;
	for (int b = 0; b < x->nb; b++) {
		unsigned char *e = x->band[b].c[c] + at * x->esize;
		if (x->p.near) {
			struct bent be = { band[b], id };
			memcpy(e, &be, sizeof(be));
		} else {
			struct xent xe = { band[0], band[1], id };
			memcpy(e, &xe, sizeof(xe));
		}
	}
	x->band_n++;
	return id;
}

uint32_t ftk_dd_index_count(const struct ftk_dd_index *x)
{
	return (uint32_t)x->n;
}

static int read_full(int fd, void *buf, size_t n, uint64_t off)
{
	unsigned char *p = buf;
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* Read a header line from fd at *off into sb. */
static int read_line_at(int fd, uint64_t *off, struct strbuf *sb)
{
	char c;
	strbuf_reset(sb);
	for (;;) {
		ssize_t r = pread(fd, &c, 1, (off_t)*off);
		if (r <= 0)
			return -1;
		(*off)++;
		if (c == '\n')
			return 0;
		strbuf_addch(sb, c);
		if (sb->len > (1 << 24))
			return -1;
	}
}

static int read_header(int fd, const char *name, cJSON **out, uint64_t *off,
		       struct ftk_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	*off = 0;
	if (read_line_at(fd, off, &sb) < 0 || strcmp(sb.buf, "FTKSIG2")) {
		int old = sb.buf && !strcmp(sb.buf, "FTKSIG1");
		strbuf_release(&sb);
		if (old)
			return ftk_error_set(err, FTK_EDATA, name, 0, NULL,
					     "a signature file of an older ftk-dedupe (FTKSIG1, without "
					     "the records' origins): sign the shard again");
		return ftk_error_set(err, FTK_EDATA, name, 0, NULL, "not an ftk-dedupe signature file");
	}
	cJSON *o = NULL;
	if (read_line_at(fd, off, &sb) < 0 || ftk_json_parse_object(sb.buf, sb.len, &o, NULL) < 0) {
		strbuf_release(&sb);
		return ftk_error_set(err, FTK_EDATA, name, 0, NULL, "bad signature file header");
	}
	strbuf_release(&sb);
	*out = o;
	return 0;
}

int ftk_dd_sigfile_params(int fd, const char *name, struct ftk_dd_params *p,
			  struct ftk_error *err)
{
	cJSON *o;
	uint64_t off;
	int rc = read_header(fd, name, &o, &off, err);
	if (rc < 0)
		return rc;
	memset(p, 0, sizeof(*p));
	const char *mode = ftk_json_get_str(o, "mode");
	p->near = mode && !strcmp(mode, "near");
	p->fast = cJSON_IsTrue(cJSON_GetObjectItem(o, "fast"));
	const char *s;
	p->key = xstrdup((s = ftk_json_get_str(o, "key")) ? s : "@text");
	if (ftk_normalize_parse((s = ftk_json_get_str(o, "normalize")) ? s : "none", &p->norm, NULL) < 0)
		p->norm = 0;
	if (p->near) {
		p->ngram = cJSON_GetObjectItem(o, "ngram") ? cJSON_GetObjectItem(o, "ngram")->valueint : 5;
		p->bands = cJSON_GetObjectItem(o, "bands") ? cJSON_GetObjectItem(o, "bands")->valueint : 14;
		p->rows = cJSON_GetObjectItem(o, "rows") ? cJSON_GetObjectItem(o, "rows")->valueint : 8;
		s = ftk_json_get_str(o, "seed");
		p->seed = s ? strtoull(s, NULL, 10) : 0;
		if (p->bands < 1 || p->rows < 1 || p->bands * p->rows > FTK_MINHASH_MAX_PERM) {
			cJSON_Delete(o);
			return ftk_error_set(err, FTK_EDATA, name, 0, NULL, "bad bands or rows in signature file");
		}
	}
	if ((s = ftk_json_get_str(o, "keep_field")))
		p->keep_field = xstrdup(s);
	if ((s = ftk_json_get_str(o, "source_field")))
		p->source_field = xstrdup(s);
	p->source_default = p->source_field && cJSON_IsTrue(cJSON_GetObjectItem(o, "source_default"));
	cJSON_Delete(o);
	return 0;
}

int64_t ftk_dd_index_load(struct ftk_dd_index *x, int fd, const char *name,
			  struct ftk_error *err)
{
	cJSON *o;
	uint64_t off;
	int rc = read_header(fd, name, &o, &off, err);
	if (rc < 0)
		return rc;
	cJSON *mine = params_json(&x->p);
	cJSON *files = cJSON_DetachItemFromObject(o, "files");
	if (!cJSON_Compare(mine, o, 1)) {
		char *a = cJSON_PrintUnformatted(o), *b = cJSON_PrintUnformatted(mine);
		ftk_error_set(err, FTK_EMISMATCH, name, 0, NULL,
			      "signed with other parameters than the first signature file: %s, not %s", a, b);
		cJSON_free(a);
		cJSON_free(b);
		cJSON_Delete(o);
		cJSON_Delete(mine);
		cJSON_Delete(files);
		return FTK_EMISMATCH;
	}
	cJSON_Delete(o);
	cJSON_Delete(mine);
	uint32_t nf = 0, *fmap = NULL;
	cJSON *f;
	cJSON_ArrayForEach(f, files) {
		fmap = xrealloc(fmap, sizeof(uint32_t) * (nf + 1));
		fmap[nf++] = ftk_dd_index_file(x, cJSON_IsString(f) ? f->valuestring : "?");
	}
	cJSON_Delete(files);

	/* The records, read sequentially with a buffer. */
	FILE *fp = fdopen(dup(fd), "rb");
	if (!fp || fseeko(fp, (off_t)off, SEEK_SET) < 0) {
		if (fp)
			fclose(fp);
		free(fmap);
		return ftk_error_set(err, FTK_EIO, name, 0, NULL, "cannot read: %s", strerror(errno));
	}
	int nb = ftk_dd_nbands(&x->p);
	uint64_t band[FTK_MINHASH_MAX_PERM];
	struct strbuf src = STRBUF_INIT;
	int64_t count = 0;
	for (;;) {
		struct ftk_dd_sighdr h;
		uint64_t start = off;
		size_t r = fread(&h, 1, sizeof(h), fp);
		if (r == 0)
			break;
		if (r != sizeof(h) || fread(band, sizeof(uint64_t), nb, fp) != (size_t)nb ||
		    h.file >= nf) {
			rc = ftk_error_set(err, FTK_ETRUNC, name, 0, NULL,
					   "signature file is truncated or corrupt at byte %llu",
					   (unsigned long long)start);
			goto out;
		}
		size_t padded = (h.src_len + 7) / 8 * 8;
		strbuf_reset(&src);
		strbuf_grow(&src, padded);
		if (fread(src.buf, 1, padded, fp) != padded) {
			rc = ftk_error_set(err, FTK_ETRUNC, name, 0, NULL,
					   "signature file is truncated at byte %llu",
					   (unsigned long long)start);
			goto out;
		}
		strbuf_setlen(&src, h.src_len);
		off = payload_off(&x->p, start, &h) + sizeof(uint64_t) * (uint64_t)h.payload_n;
		if (fseeko(fp, (off_t)off, SEEK_SET) < 0) {
			rc = ftk_error_set(err, FTK_EIO, name, 0, NULL, "cannot read: %s", strerror(errno));
			goto out;
		}
		uint32_t source = x->p.source_field ? ftk_dd_index_source(x, src.buf, src.len) : UINT32_MAX;
		double metric = x->p.keep_field ? h.field : h.len;
		int64_t id = ftk_dd_index_add(x, fmap[h.file], h.line, metric, source, 0, band, fd, start);
		if (id < 0) {
			rc = ftk_error_set(err, (int)id, name, 0, NULL, "too many records");
			goto out;
		}
		count++;
	}
	/* a payload cut short shows as a seek past the end */
	if (fseeko(fp, 0, SEEK_END) == 0 && (uint64_t)ftello(fp) < off)
		rc = ftk_error_set(err, FTK_ETRUNC, name, 0, NULL, "signature file is truncated");
out:
	fclose(fp);
	free(fmap);
	strbuf_release(&src);
	return rc < 0 ? rc : count;
}

/* Radix sort entries of esize bytes by their first 8 (near) or 16 (exact) bytes, stably. */
static void radix_entries(unsigned char *a, size_t n, size_t esize, int keybytes)
{
	unsigned char *tmp = xmalloc(n * esize + 1);
	size_t *count = xmalloc(sizeof(size_t) * 65536);
	for (int pass = 0; pass < keybytes / 2; pass++) {
		size_t byteoff = (size_t)pass * 2;
		memset(count, 0, sizeof(size_t) * 65536);
		for (size_t i = 0; i < n; i++) {
			uint16_t d;
			memcpy(&d, a + i * esize + byteoff, 2);
			count[d]++;
		}
		size_t sum = 0;
		for (size_t i = 0; i < 65536; i++) {
			size_t c = count[i];
			count[i] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++) {
			uint16_t d;
			memcpy(&d, a + i * esize + byteoff, 2);
			memcpy(tmp + count[d]++ * esize, a + i * esize, esize);
		}
		memcpy(a, tmp, n * esize);
	}
	free(count);
	free(tmp);
}

struct pair {
	uint32_t a, b;	/* a < b */
};

static int cmp_pair(const void *p, const void *q)
{
	const struct pair *x = p, *y = q;
	if (x->a != y->a)
		return x->a < y->a ? -1 : 1;
	return x->b < y->b ? -1 : x->b > y->b;
}

/* A record's payload, read back from its signature file. */
static int load_payload(struct ftk_dd_index *x, uint32_t id, struct ftk_u64vec *out)
{
	struct meta *m = &x->m[id];
	struct ftk_dd_sighdr h;
	if (read_full(m->fd, &h, sizeof(h), m->off) < 0)
		return -1;
	uint64_t off = payload_off(&x->p, m->off, &h);
	FTK_ALLOC_GROW(out->v, h.payload_n ? h.payload_n : 1, out->alloc);
	out->n = h.payload_n;
	if (read_full(m->fd, out->v, sizeof(uint64_t) * h.payload_n, off) < 0)
		return -1;
	if (x->p.near && !x->p.fast)
		ftk_minhash_set(out);	/* shingles are stored in text order */
	return 0;
}

static double similarity(struct ftk_dd_index *x, const struct ftk_u64vec *a,
			 const struct ftk_u64vec *b)
{
	if (!x->p.near)
		return 1.0;
	if (x->p.fast) {
		if (a->n != b->n || !a->n)
			return 0.0;
		return ftk_minhash_estimate(a->v, b->v, (int)a->n);
	}
	return ftk_minhash_jaccard(a->v, a->n, b->v, b->n);
}

/* Load band b (spilled part and in-memory part) into one array. */
static unsigned char *load_band(struct ftk_dd_index *x, int b, size_t *n)
{
	size_t total = x->spilled[b] + x->band_n;
	unsigned char *a = xmalloc(total * x->esize + 1);
	if (x->spill[b]) {
		rewind(x->spill[b]);
		if (fread(a, x->esize, x->spilled[b], x->spill[b]) != x->spilled[b]) {
			free(a);
			return NULL;
		}
		fclose(x->spill[b]);
		x->spill[b] = NULL;
	}
	struct chunks *ch = &x->band[b];
	for (size_t c = 0; c < ch->n; c++) {
		size_t k = c + 1 < ch->n ? CHUNK : x->band_n - c * CHUNK;
		memcpy(a + (x->spilled[b] + c * CHUNK) * x->esize, ch->c[c], k * x->esize);
		free(ch->c[c]);	/* as it is copied, so the band is never held twice */
		ch->c[c] = NULL;
	}
	free_chunks(ch);
	*n = total;
	return a;
}

/* qsort has no context argument: resolve sets these before sorting */
static struct ftk_uf *sort_ctx_uf;
static struct ftk_dd_index *sort_ctx_x;
static enum ftk_dd_keep sort_ctx_keep;

/* Cluster by cluster (by root), and in each the best survivor first. */
static int cmp_keep_order(const void *p, const void *q)
{
	uint32_t i = *(const uint32_t *)p, j = *(const uint32_t *)q;
	uint32_t ri = ftk_uf_find(sort_ctx_uf, i), rj = ftk_uf_find(sort_ctx_uf, j);
	if (ri != rj)
		return ri < rj ? -1 : 1;
	const struct meta *m = sort_ctx_x->m;
	if (sort_ctx_keep != FTK_DD_KEEP_FIRST && m[i].metric != m[j].metric)
		return m[i].metric > m[j].metric ? -1 : 1;
	return i < j ? -1 : i > j;
}

int ftk_dd_index_resolve(struct ftk_dd_index *x, double threshold, enum ftk_dd_keep keep,
			 int against, struct ftk_dd_stats *st, struct ftk_error *err)
{
	struct pair *pairs = NULL;
	size_t np = 0, ap = 0;
	struct ftk_u64vec pa = { 0 }, pb = { 0 };
	int rc = 0;
	memset(st, 0, sizeof(*st));
	st->spilled = x->spilled[0];

	/* 1. candidates */
	for (int b = 0; b < x->nb; b++) {
		size_t n;
		unsigned char *a = load_band(x, b, &n);
		if (!a)
			return ftk_error_msg(err, FTK_EIO, "cannot read spilled band hashes: %s",
					     strerror(errno));
		int keybytes = x->p.near ? 8 : 16;
		radix_entries(a, n, x->esize, keybytes);
		size_t s = 0;
		while (s < n) {
			size_t e = s + 1;
			while (e < n && !memcmp(a + e * x->esize, a + s * x->esize, keybytes))
				e++;
			if (e - s >= 2) {
				uint32_t head = UINT32_MAX;
				for (size_t i = s; i < e; i++) {
					uint32_t id;
					memcpy(&id, a + i * x->esize + keybytes, 4);
					if (!against || x->m[id].ref) {
						head = id;
						break;
					}
				}
				for (size_t i = s; head != UINT32_MAX && i < e; i++) {
					uint32_t id;
					memcpy(&id, a + i * x->esize + keybytes, 4);
					if (id == head || (against && x->m[id].ref))
						continue;
					FTK_ALLOC_GROW(pairs, np + 1, ap);
					pairs[np].a = head < id ? head : id;
					pairs[np].b = head < id ? id : head;
					np++;
				}
			}
			s = e;
		}
		free(a);
	}
	x->band_n = 0;

	/* 2. distinct pairs */
	if (np)
		qsort(pairs, np, sizeof(*pairs), cmp_pair);
	size_t k = 0;
	for (size_t i = 0; i < np; i++)
		if (!k || pairs[i].a != pairs[k - 1].a || pairs[i].b != pairs[k - 1].b)
			pairs[k++] = pairs[i];
	np = k;
	st->candidates = np;

	/* 3. verify; 4. cluster */
	struct ftk_uf uf;
	ftk_uf_init(&uf, x->n);
	x->of = xmalloc(sizeof(uint32_t) * (x->n ? x->n : 1));
	x->sim = xmalloc(sizeof(float) * (x->n ? x->n : 1));
	for (size_t i = 0; i < x->n; i++) {
		x->of[i] = UINT32_MAX;
		x->sim[i] = 0;
	}
	uint32_t loaded = UINT32_MAX;
	for (size_t i = 0; i < np; i++) {
		double s = 1.0;
		if (x->p.near) {
			if (pairs[i].a != loaded) {
				if (load_payload(x, pairs[i].a, &pa) < 0)
					goto ioerr;
				loaded = pairs[i].a;
			}
			if (load_payload(x, pairs[i].b, &pb) < 0)
				goto ioerr;
			s = similarity(x, &pa, &pb);
		}
		if (s < threshold)
			continue;
		st->verified++;
		if (against) {
			/* a is the reference (refs are added first, so have lower ids) */
			uint32_t r = x->m[pairs[i].a].ref ? pairs[i].a : pairs[i].b;
			uint32_t t = r == pairs[i].a ? pairs[i].b : pairs[i].a;
			if (x->of[t] == UINT32_MAX || s > x->sim[t] ||
			    (s == x->sim[t] && r < x->of[t])) {
				x->of[t] = r;
				x->sim[t] = (float)s;
			}
		} else {
			ftk_uf_union(&uf, pairs[i].a, pairs[i].b);
		}
	}
	free(pairs);
	pairs = NULL;
	if (against) {
		for (size_t i = 0; i < x->n; i++)
			st->removed += x->of[i] != UINT32_MAX;
		goto done;
	}
	/*
	 * Survivors.  Union-find makes clusters transitive: A ~ B and B ~ C
	 * put A and C together even when A and C are not similar.  So each
	 * cluster is walked in keep order (the best survivor first) and a
	 * member is removed only when it reaches the threshold with a record
	 * already kept from that cluster; otherwise it is kept too.  A removed
	 * record is therefore always similar enough to the record named in its
	 * "of".  Exact clusters are identical throughout: the first one kept
	 * covers them all.
	 */
	uint32_t *ord = xmalloc(sizeof(uint32_t) * (x->n ? x->n : 1));
	size_t no = 0;
	for (uint32_t i = 0; i < x->n; i++)
		if (uf.size[ftk_uf_find(&uf, i)] >= 2)
			ord[no++] = i;
	sort_ctx_uf = &uf;
	sort_ctx_x = x;
	sort_ctx_keep = keep;
	if (no)
		qsort(ord, no, sizeof(*ord), cmp_keep_order);
	struct ftk_u64vec *kept = NULL;	/* payloads of the records kept so far in this cluster */
	uint32_t *kept_id = NULL;
	size_t nkept = 0, akept = 0;
	for (size_t s0 = 0; s0 < no;) {
		uint32_t root = ftk_uf_find(&uf, ord[s0]);
		size_t e0 = s0;
		while (e0 < no && ftk_uf_find(&uf, ord[e0]) == root)
			e0++;
		st->clusters++;
		nkept = 0;
		for (size_t q = s0; q < e0; q++) {
			uint32_t id = ord[q];
			if (!x->p.near) {
				if (q > s0) {
					x->of[id] = ord[s0];
					x->sim[id] = 1.0f;
					st->removed++;
				}
				continue;
			}
			if (load_payload(x, id, &pb) < 0)
				goto ioerr_kept;
			double bs = -1;
			uint32_t bid = UINT32_MAX;
			for (size_t u = 0; u < nkept; u++) {
				double sv = similarity(x, &kept[u], &pb);
				if (sv >= threshold) {
					bs = sv;
					bid = kept_id[u];
					break;
				}
			}
			if (bid != UINT32_MAX) {
				x->of[id] = bid;
				x->sim[id] = (float)bs;
				st->removed++;
				continue;
			}
			if (nkept == akept) {
				size_t na = akept ? akept * 2 : 8;
				kept = xrealloc(kept, sizeof(*kept) * na);
				kept_id = xrealloc(kept_id, sizeof(*kept_id) * na);
				memset(kept + akept, 0, sizeof(*kept) * (na - akept));
				akept = na;
			}
			struct ftk_u64vec t = kept[nkept];
			kept[nkept] = pb;
			pb = t;
			kept_id[nkept++] = id;
		}
		s0 = e0;
	}
	for (size_t u = 0; u < akept; u++)
		ftk_u64vec_release(&kept[u]);
	free(kept);
	free(kept_id);
	free(ord);
done:
	ftk_uf_release(&uf);
	ftk_u64vec_release(&pa);
	ftk_u64vec_release(&pb);
	return rc;
ioerr_kept:
	for (size_t u = 0; u < akept; u++)
		ftk_u64vec_release(&kept[u]);
	free(kept);
	free(kept_id);
	free(ord);
ioerr:
	rc = ftk_error_msg(err, FTK_EIO, "cannot read signatures back: %s", strerror(errno));
	free(pairs);
	pairs = NULL;
	goto done;
}

uint32_t ftk_dd_index_of(const struct ftk_dd_index *x, uint32_t id, double *similarity_out)
{
	if (!x->of)
		return UINT32_MAX;
	if (similarity_out)
		*similarity_out = x->sim[id];
	return x->of[id];
}

void ftk_dd_index_place(const struct ftk_dd_index *x, uint32_t id, const char **file,
			uint32_t *line, uint32_t *file_index)
{
	if (file)
		*file = x->files[x->m[id].file];
	if (line)
		*line = x->m[id].line;
	if (file_index)
		*file_index = x->m[id].file;
}

int ftk_dd_index_origin(const struct ftk_dd_index *x, uint32_t id, struct strbuf *out)
{
	const struct meta *m = &x->m[id];
	struct ftk_dd_sighdr h;
	if (read_full(m->fd, &h, sizeof(h), m->off) < 0)
		return FTK_EIO;
	if (!h.origin_len)
		return 0;
	uint64_t off = m->off + sizeof(h) + sizeof(uint64_t) * (uint64_t)ftk_dd_nbands(&x->p) +
		       ((uint64_t)h.src_len + 7) / 8 * 8;
	strbuf_grow(out, h.origin_len);
	if (read_full(m->fd, out->buf + out->len, h.origin_len, off) < 0)
		return FTK_EIO;
	strbuf_setlen(out, out->len + h.origin_len);
	return 1;
}

const char *ftk_dd_index_source_name(const struct ftk_dd_index *x, uint32_t id)
{
	uint32_t s = x->m[id].source;
	return s == UINT32_MAX ? NULL : x->sources[s];
}

int ftk_dd_index_is_ref(const struct ftk_dd_index *x, uint32_t id)
{
	return x->m[id].ref;
}

uint32_t ftk_dd_index_nfiles(const struct ftk_dd_index *x)
{
	return x->n_files;
}

const char *ftk_dd_index_file_name(const struct ftk_dd_index *x, uint32_t i)
{
	return x->files[i];
}

/* ---------------------------------------------------------------- a run's settings */

void ftk_dd_settings_init(struct ftk_dd_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->p.ngram = 5;
	s->p.seed = 1;
	s->p.key = "@text";
	s->normalize = "all";
	s->keep = FTK_DD_KEEP_FIRST;
	s->threshold = 0.8;
}

void ftk_dd_settings_keep(struct ftk_dd_settings *s, const char *arg)
{
	s->p.keep_field = NULL;
	if (!strcmp(arg, "first")) {
		s->keep = FTK_DD_KEEP_FIRST;
	} else if (!strcmp(arg, "longest")) {
		s->keep = FTK_DD_KEEP_LONGEST;
	} else {
		s->keep = FTK_DD_KEEP_FIELD;
		s->p.keep_field = arg;
	}
}

int ftk_dd_settings_check(struct ftk_dd_settings *s, struct ftk_dd_key **key,
			  struct ftk_minhash *mh, struct ftk_error *err)
{
	*key = NULL;
	memset(mh, 0, sizeof(*mh));
	if (ftk_normalize_parse(s->normalize, &s->p.norm, err) < 0 ||
	    ftk_dd_key_parse(s->p.key, key, err) < 0)
		goto usage;
	if (!s->p.near && s->stage != FTK_DD_MERGE &&
	    (s->bands || s->rows || s->p.fast || s->threshold_given)) {
		ftk_error_msg(err, FTK_EUSAGE, "--threshold, --bands, --rows and --fast need --mode near");
		goto usage;
	}
	if (s->p.near) {
		s->p.bands = 14;
		s->p.rows = 8;
		if (s->threshold_given && !s->bands && !s->rows &&
		    ftk_minhash_lsh_params(s->threshold, 112, &s->p.bands, &s->p.rows, err) < 0)
			goto usage;
		if (s->bands)
			s->p.bands = s->bands;
		if (s->rows)
			s->p.rows = s->rows;
		if (ftk_minhash_init(mh, s->p.ngram, s->p.bands, s->p.rows, s->p.seed, err) < 0)
			goto usage;
	}
	const char *msg = NULL;
	size_t ol = s->out ? strlen(s->out) : 0;
	if (s->stage != FTK_DD_WHOLE && s->against)
		msg = "--against does not combine with the sharded mode";
	else if (s->stage == FTK_DD_SIGNATURES && (!s->out || !strcmp(s->out, "-")))
		msg = "--signatures needs -o FILE";
	else if (s->stage == FTK_DD_SIGNATURES && ol > 4 && !strcmp(s->out + ol - 4, ".zst"))
		msg = "signature files cannot be compressed";
	else if (s->stage == FTK_DD_SIGNATURES && s->clusters)
		msg = "--clusters belongs to --merge";
	if (msg) {
		ftk_error_msg(err, FTK_EUSAGE, "%s", msg);
		goto usage;
	}
	return 0;
usage:
	ftk_dd_key_free(*key);
	*key = NULL;
	ftk_minhash_release(mh);
	memset(mh, 0, sizeof(*mh));
	if (err)
		err->code = FTK_EUSAGE;
	return FTK_EUSAGE;
}

int ftk_dd_settings_streaming(const struct ftk_dd_settings *s)
{
	return s->stage == FTK_DD_WHOLE && !s->p.near && s->keep == FTK_DD_KEEP_FIRST &&
	       !s->clusters;
}
