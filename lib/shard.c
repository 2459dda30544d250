/*
 * shard.c: token shard directories (format in shard.h).
 *
 * The reader decompresses one shard at a time into memory and walks it; a
 * shard is bounded by the writer's tokens_per_shard, so memory stays bounded
 * too.  Every length read from a file is checked against what is left of the
 * buffer before it is used: a truncated or corrupt shard is an error naming
 * the file and the sequence, never a read past the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "json.h"
#include "shard.h"
#include "stream.h"
#include "strbuf.h"

#define DEFAULT_SHARD_TOKENS (16u << 20)

struct shard_count {
	uint64_t sequences, tokens;
};

struct ftk_shard_writer {
	char *dir;
	struct ftk_shard_info info;
	uint64_t per_shard;
	struct ftk_writer *w;
	uint64_t cur_tokens;
	struct shard_count *counts;
	size_t n_shards, alloc_shards;
	int failed;		/* a write failed: no more shards, no manifest */
};

static void shard_name(char *buf, size_t n, const char *dir, size_t i)
{
	snprintf(buf, n, "%s/shard-%05zu.ftks.zst", dir, i);
}

static void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void make_header(unsigned char h[FTK_SHARD_HEADER_SIZE], const struct ftk_shard_info *info)
{
	memset(h, 0, FTK_SHARD_HEADER_SIZE);
	memcpy(h, FTK_SHARD_MAGIC, 8);
	put_u32(h + 8, FTK_SHARD_VERSION);
	put_u32(h + 12, info->kind);
	put_u32(h + 16, info->vocab_size);
	memcpy(h + 24, info->tokenizer_hash, 32);
	size_t tl = strnlen(info->template_name, 63);
	memcpy(h + 57, info->template_name, tl);
}

static int start_shard(struct ftk_shard_writer *w, struct ftk_error *err)
{
	char path[4096];
	unsigned char h[FTK_SHARD_HEADER_SIZE];
	shard_name(path, sizeof(path), w->dir, w->n_shards);
	int rc = ftk_writer_open(&w->w, path, 0, err);
	if (rc < 0)
		return rc;
	FTK_ALLOC_GROW(w->counts, w->n_shards + 1, w->alloc_shards);
	memset(&w->counts[w->n_shards], 0, sizeof(w->counts[0]));
	w->n_shards++;
	w->cur_tokens = 0;
	make_header(h, &w->info);
	return ftk_writer_write(w->w, h, sizeof(h));
}

static int finish_shard(struct ftk_shard_writer *w, struct ftk_error *err)
{
	if (w->failed)
		return ftk_error_set(err, FTK_EIO, w->dir, 0, NULL,
				     "the shards in '%s' are incomplete: a write failed", w->dir);
	int rc = ftk_writer_close(w->w, err);
	w->w = NULL;
	return rc;
}

/* mkdir -p: the folders above the shard directory are made too. */
static int make_dirs(const char *dir)
{
	char *p = xstrdup(dir);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			free(p);
			return -1;
		}
		*s = '/';
	}
	int rc = mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
	free(p);
	return rc;
}

int ftk_shard_writer_open(struct ftk_shard_writer **out, const char *dir,
			  const struct ftk_shard_info *info, uint64_t tokens_per_shard,
			  struct ftk_error *err)
{
	*out = NULL;
	if (make_dirs(dir) < 0)
		return ftk_error_set(err, FTK_EIO, dir, 0, NULL, "cannot create '%s': %s", dir,
				     strerror(errno));
	struct ftk_shard_writer *w = xcalloc(1, sizeof(*w));
	w->dir = xstrdup(dir);
	w->info = *info;
	w->info.sequences = w->info.tokens = w->info.masked_tokens = 0;
	w->per_shard = tokens_per_shard ? tokens_per_shard : DEFAULT_SHARD_TOKENS;
	/* an old manifest would describe shards we are about to replace */
	char path[4096];
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	unlink(path);
	int rc = start_shard(w, err);
	if (rc < 0) {
		free(w->dir);
		free(w->counts);
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int ftk_shard_write(struct ftk_shard_writer *w, const uint32_t *ids, const uint8_t *mask,
		    uint32_t len, struct ftk_error *err)
{
	int rc;
	if (w->failed)
		return finish_shard(w, err);
	if (w->cur_tokens && w->cur_tokens + len > w->per_shard &&
	    !(w->info.kind == FTK_SHARD_PREFERENCE && w->info.sequences % 2)) {
		if ((rc = finish_shard(w, err)) < 0 || (rc = start_shard(w, err)) < 0) {
			w->failed = 1;
			return rc;
		}
	}
	unsigned char lb[4];
	put_u32(lb, len);
	rc = ftk_writer_write(w->w, lb, 4);
	/* ids are written little-endian; convert only on big-endian hosts */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (!rc)
		rc = ftk_writer_write(w->w, ids, (size_t)len * 4);
#else
	for (uint32_t i = 0; !rc && i < len; i++) {
		put_u32(lb, ids[i]);
		rc = ftk_writer_write(w->w, lb, 4);
	}
#endif
	if (!rc)
		rc = ftk_writer_write(w->w, mask, len);
	if (rc) {
		/* closing gives the cause ("cannot write 'dir/shard-00000.ftks.zst':
		 * No space left on device") and removes the partial shard */
		rc = finish_shard(w, err);
		w->failed = 1;
		return rc < 0 ? rc : ftk_error_set(err, FTK_EIO, w->dir, 0, NULL,
						   "cannot write shard in '%s'", w->dir);
	}
	uint64_t m = 0;
	for (uint32_t i = 0; i < len; i++)
		m += mask[i] != 0;
	w->cur_tokens += len;
	w->counts[w->n_shards - 1].sequences++;
	w->counts[w->n_shards - 1].tokens += len;
	w->info.sequences++;
	w->info.tokens += len;
	w->info.masked_tokens += m;
	return 0;
}

int ftk_shard_writer_close(struct ftk_shard_writer *w, struct ftk_error *err)
{
	int rc = finish_shard(w, err);
	if (rc == 0) {
		cJSON *m = cJSON_CreateObject();
		cJSON_AddStringToObject(m, "format", "ftk-shards");
		cJSON_AddNumberToObject(m, "version", FTK_SHARD_VERSION);
		cJSON_AddStringToObject(m, "kind", w->info.kind == FTK_SHARD_PREFERENCE ? "preference" : "sft");
		cJSON_AddNumberToObject(m, "vocab_size", w->info.vocab_size);
		cJSON_AddStringToObject(m, "tokenizer_hash", w->info.tokenizer_hash);
		cJSON_AddStringToObject(m, "template", w->info.template_name);
		cJSON_AddNumberToObject(m, "sequences", (double)w->info.sequences);
		cJSON_AddNumberToObject(m, "tokens", (double)w->info.tokens);
		cJSON_AddNumberToObject(m, "masked_tokens", (double)w->info.masked_tokens);
		cJSON *arr = cJSON_AddArrayToObject(m, "shards");
		for (size_t i = 0; i < w->n_shards; i++) {
			char name[64];
			snprintf(name, sizeof(name), "shard-%05zu.ftks.zst", i);
			cJSON *s = cJSON_CreateObject();
			cJSON_AddStringToObject(s, "file", name);
			cJSON_AddNumberToObject(s, "sequences", (double)w->counts[i].sequences);
			cJSON_AddNumberToObject(s, "tokens", (double)w->counts[i].tokens);
			cJSON_AddItemToArray(arr, s);
		}
		char path[4096];
		char *text = cJSON_Print(m);
		struct ftk_writer *mw;
		snprintf(path, sizeof(path), "%s/manifest.json", w->dir);
		rc = ftk_writer_open(&mw, path, 0, err);
		if (!rc) {
			ftk_writer_line(mw, text, strlen(text));
			rc = ftk_writer_close(mw, err);
		}
		cJSON_free(text);
		cJSON_Delete(m);
	}
	free(w->dir);
	free(w->counts);
	free(w);
	return rc;
}

/* ------------------------------------------------------------------ reader */

struct ftk_shard_reader {
	char *dir;
	struct ftk_shard_info info;
	char **files;
	uint64_t *file_seqs;
	uint32_t cur;		/* index of the loaded shard, n_shards when none */
	unsigned char *buf;
	size_t len, pos;
	uint64_t index;
	uint32_t *ids;		/* aligned copy of the current sequence's ids */
	size_t ids_cap;
};

static int load_shard(struct ftk_shard_reader *r, uint32_t i, struct ftk_error *err)
{
	char path[4096];
	char *data;
	size_t len;
	free(r->buf);
	r->buf = NULL;
	r->len = r->pos = 0;
	snprintf(path, sizeof(path), "%s/%s", r->dir, r->files[i]);
	int rc = ftk_read_all(path, &data, &len, err);
	if (rc < 0)
		return rc;
	r->buf = (unsigned char *)data;
	r->len = len;
	r->cur = i;
	if (len < FTK_SHARD_HEADER_SIZE || memcmp(data, FTK_SHARD_MAGIC, 8) != 0)
		return ftk_error_set(err, FTK_EDATA, path, 0, NULL, "not an ftk token shard");
	uint32_t version = get_u32(r->buf + 8), kind = get_u32(r->buf + 12),
		 vocab = get_u32(r->buf + 16);
	if (version != FTK_SHARD_VERSION)
		return ftk_error_set(err, FTK_EUNSUPPORTED, path, 0, NULL,
				     "shard version %u is not supported (expected %d)", version,
				     FTK_SHARD_VERSION);
	if (kind != r->info.kind || vocab != r->info.vocab_size ||
	    memcmp(r->buf + 24, r->info.tokenizer_hash, 32) != 0)
		return ftk_error_set(err, FTK_EMISMATCH, path, 0, NULL,
				     "shard header does not match manifest.json (kind, vocabulary or tokenizer hash)");
	r->pos = FTK_SHARD_HEADER_SIZE;
	return 0;
}

static int manifest_error(struct ftk_error *err, const char *path, const char *what)
{
	return ftk_error_set(err, FTK_EDATA, path, 0, what, "missing or wrong type in manifest");
}

int ftk_shard_read_manifest(const char *dir, cJSON **out, struct ftk_error *err)
{
	char path[4096];
	char *text;
	size_t len;
	*out = NULL;
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	if (access(path, F_OK) != 0)
		return ftk_error_set(err, FTK_ENOTFOUND, dir, 0, NULL,
				     "'%s' is not a shard directory, or ftk-tokenize did not finish (no manifest.json)",
				     dir);
	int rc = ftk_read_all(path, &text, &len, err);
	if (rc < 0)
		return rc;
	rc = ftk_json_parse_object(text, len, out, err);
	free(text);
	if (rc < 0)
		ftk_error_place(err, path, 0);
	return rc;
}

int ftk_shard_open(struct ftk_shard_reader **out, const char *dir, struct ftk_error *err)
{
	char path[4096];
	cJSON *m = NULL;
	*out = NULL;
	int rc = ftk_shard_read_manifest(dir, &m, err);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	struct ftk_shard_reader *r = xcalloc(1, sizeof(*r));
	r->dir = xstrdup(dir);
	const char *fmt = ftk_json_get_str(m, "format"), *kind = ftk_json_get_str(m, "kind");
	const char *hash = ftk_json_get_str(m, "tokenizer_hash"), *tmpl = ftk_json_get_str(m, "template");
	cJSON *vs = cJSON_GetObjectItemCaseSensitive(m, "vocab_size");
	cJSON *shards = cJSON_GetObjectItemCaseSensitive(m, "shards");
	rc = 0;
	if (!fmt || strcmp(fmt, "ftk-shards"))
		rc = manifest_error(err, path, "format");
	else if (!kind || (strcmp(kind, "sft") && strcmp(kind, "preference")))
		rc = manifest_error(err, path, "kind");
	else if (!hash || strlen(hash) != 32)
		rc = manifest_error(err, path, "tokenizer_hash");
	else if (!cJSON_IsNumber(vs) || vs->valuedouble < 1)
		rc = manifest_error(err, path, "vocab_size");
	else if (!cJSON_IsArray(shards) || cJSON_GetArraySize(shards) < 1)
		rc = manifest_error(err, path, "shards");
	if (!rc) {
		r->info.kind = strcmp(kind, "sft") ? FTK_SHARD_PREFERENCE : FTK_SHARD_SFT;
		r->info.vocab_size = (uint32_t)vs->valuedouble;
		memcpy(r->info.tokenizer_hash, hash, 33);
		snprintf(r->info.template_name, sizeof(r->info.template_name), "%s", tmpl ? tmpl : "");
		cJSON *v;
		if ((v = cJSON_GetObjectItemCaseSensitive(m, "sequences")) && cJSON_IsNumber(v))
			r->info.sequences = (uint64_t)v->valuedouble;
		if ((v = cJSON_GetObjectItemCaseSensitive(m, "tokens")) && cJSON_IsNumber(v))
			r->info.tokens = (uint64_t)v->valuedouble;
		if ((v = cJSON_GetObjectItemCaseSensitive(m, "masked_tokens")) && cJSON_IsNumber(v))
			r->info.masked_tokens = (uint64_t)v->valuedouble;
		r->info.n_shards = (uint32_t)cJSON_GetArraySize(shards);
		r->files = xcalloc(r->info.n_shards, sizeof(*r->files));
		r->file_seqs = xcalloc(r->info.n_shards, sizeof(*r->file_seqs));
		uint32_t i = 0;
		cJSON *s;
		cJSON_ArrayForEach(s, shards) {
			const char *f = ftk_json_get_str(s, "file");
			if (!f || strchr(f, '/')) {
				rc = manifest_error(err, path, "shards[].file");
				break;
			}
			r->files[i] = xstrdup(f);
			cJSON *ns = cJSON_GetObjectItemCaseSensitive(s, "sequences");
			r->file_seqs[i++] = cJSON_IsNumber(ns) ? (uint64_t)ns->valuedouble : 0;
		}
	}
	cJSON_Delete(m);
	if (!rc)
		rc = load_shard(r, 0, err);
	if (rc < 0) {
		ftk_shard_close(r);
		return rc;
	}
	*out = r;
	return 0;
}

const struct ftk_shard_info *ftk_shard_info(const struct ftk_shard_reader *r)
{
	return &r->info;
}

int ftk_shard_next(struct ftk_shard_reader *r, struct ftk_seq *seq, struct ftk_error *err)
{
	char path[4096];
	while (r->pos >= r->len) {
		if (r->cur + 1 >= r->info.n_shards)
			return 0;
		int rc = load_shard(r, r->cur + 1, err);
		if (rc < 0)
			return rc;
	}
	snprintf(path, sizeof(path), "%s/%s", r->dir, r->files[r->cur]);
	if (r->len - r->pos < 4)
		return ftk_error_set(err, FTK_ETRUNC, path, 0, NULL,
				     "shard ends inside sequence %llu", (unsigned long long)r->index);
	uint32_t n = get_u32(r->buf + r->pos);
	if ((r->len - r->pos - 4) / 5 < n)
		return ftk_error_set(err, FTK_ETRUNC, path, 0, NULL,
				     "shard ends inside sequence %llu (length %u)",
				     (unsigned long long)r->index, n);
	r->pos += 4;
	if (n > r->ids_cap) {
		r->ids_cap = n;
		r->ids = xrealloc(r->ids, (size_t)n * 4);
	}
	for (uint32_t i = 0; i < n; i++) {
		r->ids[i] = get_u32(r->buf + r->pos + 4 * (size_t)i);
		if (r->ids[i] >= r->info.vocab_size)
			return ftk_error_set(err, FTK_EDATA, path, 0, NULL,
					     "sequence %llu: token id %u is outside the vocabulary of %u",
					     (unsigned long long)r->index, r->ids[i], r->info.vocab_size);
	}
	const unsigned char *mask = r->buf + r->pos + 4 * (size_t)n;
	for (uint32_t i = 0; i < n; i++)	/* the trainer sums the mask to count its targets */
		if (mask[i] > 1)
			return ftk_error_set(err, FTK_EDATA, path, 0, NULL,
					     "sequence %llu: loss mask byte %u is %u, not 0 or 1",
					     (unsigned long long)r->index, i, mask[i]);
	seq->ids = r->ids;
	seq->mask = mask;
	seq->len = n;
	seq->index = r->index++;
	r->pos += 5 * (size_t)n;
	return 1;
}

int ftk_shard_rewind(struct ftk_shard_reader *r, struct ftk_error *err)
{
	r->index = 0;
	return load_shard(r, 0, err);
}

void ftk_shard_close(struct ftk_shard_reader *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; r->files && i < r->info.n_shards; i++)
		free(r->files[i]);
	free(r->files);
	free(r->file_seqs);
	free(r->buf);
	free(r->ids);
	free(r->dir);
	free(r);
}

int ftk_shard_load_all(const char *dir, struct ftk_shard_info *info, uint32_t **ids,
		       uint8_t **mask, uint64_t **offsets, uint64_t *n_seqs,
		       struct ftk_error *err)
{
	struct ftk_shard_reader *r;
	struct ftk_seq s;
	int rc = ftk_shard_open(&r, dir, err);
	*ids = NULL;
	*mask = NULL;
	*offsets = NULL;
	*n_seqs = 0;
	if (rc < 0)
		return rc;
	size_t cap_t = 0, cap_s = 0, nt = 0, ns = 0;
	uint32_t *I = NULL;
	uint8_t *M = NULL;
	uint64_t *O = NULL;
	FTK_ALLOC_GROW(O, 1, cap_s);
	O[0] = 0;
	while ((rc = ftk_shard_next(r, &s, err)) == 1) {
		size_t want = nt + s.len, cap_m = cap_t;
		FTK_ALLOC_GROW(I, want, cap_t);
		if (cap_m != cap_t)
			M = xrealloc(M, cap_t);
		if (s.len) {	/* a zero-length sequence may come with NULL ids (memcpy's arguments must not be NULL) */
			memcpy(I + nt, s.ids, (size_t)s.len * 4);
			memcpy(M + nt, s.mask, s.len);
		}
		nt = want;
		FTK_ALLOC_GROW(O, ns + 2, cap_s);
		O[++ns] = nt;
	}
	if (rc < 0) {
		free(I);
		free(M);
		free(O);
		ftk_shard_close(r);
		return rc;
	}
	if (info)
		*info = r->info;
	if (r->info.sequences && r->info.sequences != ns) {
		rc = ftk_error_set(err, FTK_EDATA, dir, 0, NULL,
				   "manifest.json says %llu sequences but the shards hold %zu",
				   (unsigned long long)r->info.sequences, ns);
		free(I);
		free(M);
		free(O);
		ftk_shard_close(r);
		return rc;
	}
	ftk_shard_close(r);
	if (!I) {
		I = xmalloc(4);
		M = xmalloc(1);
	}
	*ids = I;
	*mask = M;
	*offsets = O;
	*n_seqs = ns;
	return 0;
}

int ftk_file_hash(const char *path, char out[33], struct ftk_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot open '%s': %s", path,
				     strerror(errno));
	XXH3_state_t *st = XXH3_createState();
	XXH3_128bits_reset(st);
	char buf[1 << 16];
	ssize_t k;
	while ((k = read(fd, buf, sizeof(buf))) > 0)
		XXH3_128bits_update(st, buf, (size_t)k);
	int e = errno;
	close(fd);
	XXH128_hash_t h = XXH3_128bits_digest(st);
	XXH3_freeState(st);
	if (k < 0)
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot read '%s': %s", path,
				     strerror(e));
	snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
	return 0;
}
