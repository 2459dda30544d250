/*
 * safetensors.c: the safetensors reader (mmap) and writer.
 *
 * The reader keeps one mapping per file and an array of tensors sorted by
 * name across all files, so ftk_st_find is a binary search.  Every number
 * in the header is checked before it is used: offsets must lie inside the
 * data area, end >= begin, and the byte count must equal numel * width.
 * The writer sorts its entries by name and writes header and data through
 * one temporary file that is fsynced and renamed.
 */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "lib/json.h"
#include "lib/strbuf.h"

struct st_map {
	char *path;
	void *base;
	size_t size;
};

struct ftk_st {
	struct st_map *maps;
	size_t n_maps;
	struct ftk_st_tensor *t;
	size_t n, alloc;
	char **names;		/* owned copies, parallel to t */
	cJSON *meta;		/* first file's __metadata__ (owned) */
};

static const char *dtype_names[] = { "F32", "F16", "BF16", "U8", "I32", "I64" };
static const size_t dtype_sizes[] = { 4, 2, 2, 1, 4, 8 };

const char *ftk_dtype_name(enum ftk_dtype t)
{
	return (unsigned)t < FTK_ARRAY_SIZE(dtype_names) ? dtype_names[t] : "?";
}

size_t ftk_dtype_size(enum ftk_dtype t)
{
	return (unsigned)t < FTK_ARRAY_SIZE(dtype_sizes) ? dtype_sizes[t] : 0;
}

static enum ftk_dtype dtype_parse(const char *s)
{
	for (size_t i = 0; i < FTK_ARRAY_SIZE(dtype_names); i++)
		if (!strcmp(s, dtype_names[i]))
			return (enum ftk_dtype)i;
	return FTK_DTYPE_OTHER;
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const struct ftk_st_tensor *)a)->name, ((const struct ftk_st_tensor *)b)->name);
}

/* Map one file and append its tensors.  only: when not NULL, an index's weight_map check happens later. */
static int st_add_file(struct ftk_st *st, const char *path, struct ftk_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ftk_error_set(err, errno == ENOENT ? FTK_ENOTFOUND : FTK_EIO, path, 0, NULL,
				     "cannot open: %s", strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		close(fd);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot stat: %s", strerror(e));
	}
	size_t size = (size_t)sb.st_size;
	if (size < 8) {
		close(fd);
		return ftk_error_set(err, FTK_EDATA, path, 0, NULL,
				     "not a safetensors file: %zu bytes, too short for a header", size);
	}
	void *base = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (base == MAP_FAILED)
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot map: %s", strerror(e));
	st->maps = xrealloc(st->maps, (st->n_maps + 1) * sizeof(*st->maps));
	struct st_map *mp = &st->maps[st->n_maps++];
	mp->path = xstrdup(path);
	mp->base = base;
	mp->size = size;

	const uint8_t *b = base;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | b[i];
	if (hlen > size - 8 || hlen > (100u << 20))
		return ftk_error_set(err, FTK_EDATA, path, 0, NULL,
				     "not a safetensors file: header length %llu exceeds the file size %zu",
				     (unsigned long long)hlen, size);
	cJSON *h;
	struct ftk_error je;
	if (ftk_json_parse_object((const char *)b + 8, (size_t)hlen, &h, &je) < 0)
		return ftk_error_set(err, FTK_EDATA, path, 0, NULL, "bad safetensors header: %s", je.msg);
	const uint8_t *data = b + 8 + hlen;
	size_t data_size = size - 8 - (size_t)hlen;
	int rc = 0;
	cJSON *it;
	cJSON_ArrayForEach(it, h) {
		if (!strcmp(it->string, "__metadata__")) {
			if (!st->meta)
				st->meta = cJSON_Duplicate(it, 1);
			continue;
		}
		cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
		cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
		cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
		if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
		    cJSON_GetArraySize(off) != 2 || cJSON_GetArraySize(sh) > 8) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, it->string,
					   "tensor '%s' needs dtype, shape (at most 8 dims) and data_offsets [begin, end]",
					   it->string);
			break;
		}
		struct ftk_st_tensor t = { 0 };
		t.dtype = dtype_parse(dt->valuestring);
		t.ndim = cJSON_GetArraySize(sh);
		t.numel = 1;
		int bad = 0;
		for (int d = 0; d < t.ndim; d++) {
			cJSON *x = cJSON_GetArrayItem(sh, d);
			if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 1e15 ||
			    x->valuedouble != (double)(int64_t)x->valuedouble) {
				bad = 1;
				break;
			}
			t.shape[d] = (int64_t)x->valuedouble;
			/* each dimension is under 1e15 but their product may not be: checked */
			if (__builtin_mul_overflow(t.numel, t.shape[d], &t.numel) || t.numel > (int64_t)1e15) {
				bad = 1;
				break;
			}
		}
		const cJSON *jb = cJSON_GetArrayItem(off, 0), *jend = cJSON_GetArrayItem(off, 1);
		double ob = jb->valuedouble, oe = jend->valuedouble;
		if (!cJSON_IsNumber(jb) || !cJSON_IsNumber(jend) || ob != floor(ob) || oe != floor(oe))
			bad = 1;
		if (bad || ob < 0 || oe < ob || oe > (double)data_size) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, it->string,
					   "tensor '%s' has a bad shape or data_offsets [%.0f, %.0f] outside the %zu data bytes",
					   it->string, ob, oe, data_size);
			break;
		}
		t.nbytes = (size_t)(oe - ob);
		size_t w = ftk_dtype_size(t.dtype);
		if (w && t.nbytes != (size_t)t.numel * w) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, it->string,
					   "tensor '%s' holds %zu bytes, but %s of %lld elements needs %zu",
					   it->string, t.nbytes, dt->valuestring, (long long)t.numel,
					   (size_t)t.numel * w);
			break;
		}
		t.data = data + (size_t)ob;
		t.file = mp->path;
		FTK_ALLOC_GROW(st->t, st->n + 1, st->alloc);
		st->names = xrealloc(st->names, (st->n + 1) * sizeof(char *));
		st->names[st->n] = xstrdup(it->string);
		t.name = st->names[st->n];
		st->t[st->n++] = t;
	}
	cJSON_Delete(h);
	return rc;
}

static int st_finish(struct ftk_st *st, struct ftk_error *err)
{
	if (st->n > 1)	/* a file may hold no tensor: st->t is NULL then, and qsort wants a pointer */
		qsort(st->t, st->n, sizeof(*st->t), cmp_tensor);
	for (size_t i = 1; i < st->n; i++)
		if (!strcmp(st->t[i].name, st->t[i - 1].name))
			return ftk_error_set(err, FTK_EDATA, st->t[i].file, 0, st->t[i].name,
					     "tensor '%s' appears twice (in '%s' and '%s')", st->t[i].name,
					     st->t[i - 1].file, st->t[i].file);
	return 0;
}

int ftk_st_open(struct ftk_st **out, const char *path, struct ftk_error *err)
{
	struct ftk_st *st = xcalloc(1, sizeof(*st));
	int rc = st_add_file(st, path, err);
	if (!rc)
		rc = st_finish(st, err);
	if (rc < 0) {
		ftk_st_close(st);
		*out = NULL;
		return rc;
	}
	*out = st;
	return 0;
}

int ftk_st_open_dir(struct ftk_st **out, const char *dir, struct ftk_error *err)
{
	char path[4096];
	struct strbuf sb = STRBUF_INIT;
	*out = NULL;
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	int r = strbuf_read_file(&sb, path);
	if (r == -ENOENT) {
		strbuf_release(&sb);
		snprintf(path, sizeof(path), "%s/model.safetensors", dir);
		return ftk_st_open(out, path, err);
	}
	if (r < 0) {
		strbuf_release(&sb);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot read: %s", strerror(-r));
	}
	cJSON *idx;
	struct ftk_error je;
	int rc = ftk_json_parse_object(sb.buf, sb.len, &idx, &je);
	strbuf_release(&sb);
	if (rc < 0)
		return ftk_error_set(err, FTK_EDATA, path, 0, NULL, "%s", je.msg);
	cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
	if (!cJSON_IsObject(wm)) {
		cJSON_Delete(idx);
		return ftk_error_set(err, FTK_EDATA, path, 0, "weight_map", "missing object 'weight_map'");
	}
	struct ftk_st *st = xcalloc(1, sizeof(*st));
	/* open each distinct shard once, in order of first mention */
	char **files = NULL;
	size_t nf = 0;
	cJSON *it;
	cJSON_ArrayForEach(it, wm) {
		if (!cJSON_IsString(it) || strchr(it->valuestring, '/')) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, it->string,
					   "weight_map entry '%s' must name a file in the same directory",
					   it->string);
			goto out;
		}
		size_t k;
		for (k = 0; k < nf; k++)
			if (!strcmp(files[k], it->valuestring))
				break;
		if (k == nf) {
			files = xrealloc(files, (nf + 1) * sizeof(char *));
			files[nf++] = it->valuestring;
			char sp[4096];
			snprintf(sp, sizeof(sp), "%s/%s", dir, it->valuestring);
			if ((rc = st_add_file(st, sp, err)) < 0)
				goto out;
		}
	}
	if ((rc = st_finish(st, err)) < 0)
		goto out;
	cJSON_ArrayForEach(it, wm) {
		const struct ftk_st_tensor *t = ftk_st_find(st, it->string);
		const char *base = t ? strrchr(t->file, '/') : NULL;
		if (!t || strcmp(base ? base + 1 : t->file, it->valuestring)) {
			rc = ftk_error_set(err, FTK_ENOTFOUND, path, 0, it->string,
					   "tensor '%s' is not in shard '%s'", it->string, it->valuestring);
			goto out;
		}
	}
out:
	free(files);
	cJSON_Delete(idx);
	if (rc < 0) {
		ftk_st_close(st);
		return rc;
	}
	*out = st;
	return 0;
}

void ftk_st_close(struct ftk_st *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n_maps; i++) {
		munmap(st->maps[i].base, st->maps[i].size);
		free(st->maps[i].path);
	}
	for (size_t i = 0; i < st->n; i++)
		free(st->names[i]);
	free(st->names);
	free(st->maps);
	free(st->t);
	cJSON_Delete(st->meta);
	free(st);
}

size_t ftk_st_count(const struct ftk_st *st)
{
	return st->n;
}

const struct ftk_st_tensor *ftk_st_at(const struct ftk_st *st, size_t i)
{
	return i < st->n ? &st->t[i] : NULL;
}

const struct ftk_st_tensor *ftk_st_find(const struct ftk_st *st, const char *name)
{
	size_t lo = 0, hi = st->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(st->t[mid].name, name);
		if (!c)
			return &st->t[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const char *ftk_st_metadata(const struct ftk_st *st, const char *key)
{
	return st->meta ? ftk_json_get_str(st->meta, key) : NULL;
}

float ftk_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0) {
		if (!man) {
			bits = sign;
		} else {	/* subnormal: normalise */
			int e = -1;
			do {
				e++;
				man <<= 1;
			} while (!(man & 0x400));
			bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
		}
	} else if (exp == 31) {
		bits = sign | 0x7f800000u | man << 13;
	} else {
		bits = sign | (exp + 112) << 23 | man << 13;
	}
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

float ftk_bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t ftk_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);	/* quiet NaN */
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

uint16_t ftk_f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return sign | 0x7e00;
	if (a >= 0x477ff000u)	/* rounds to >= 65520: inf */
		return sign | 0x7c00;
	if (a < 0x38800000u) {	/* subnormal or zero in half */
		float af;
		memcpy(&af, &a, 4);
		/* value / 2^-24, rounded to nearest even */
		float q = af * 16777216.0f;
		return sign | (uint16_t)lrintf(q);
	}
	uint32_t r = a + 0xfffu + ((a >> 13) & 1);
	return sign | (uint16_t)((r - (112u << 23)) >> 13);
}

int ftk_st_to_f32(const struct ftk_st_tensor *t, float *dst, struct ftk_error *err)
{
	const uint8_t *p = t->data;
	size_t n = (size_t)t->numel;
	switch (t->dtype) {
	case FTK_F32:
		memcpy(dst, p, n * 4);
		return 0;
	case FTK_F16:
	case FTK_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
			dst[i] = t->dtype == FTK_F16 ? ftk_f16_to_f32(h) : ftk_bf16_to_f32(h);
		}
		return 0;
	default:
		return ftk_error_set(err, FTK_EUNSUPPORTED, t->file, 0, t->name,
				     "tensor '%s' has dtype %s; only F32, F16 and BF16 are supported",
				     t->name, ftk_dtype_name(t->dtype));
	}
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
	size_t k = (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < ndim && k < n; i++)
		k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
}

int ftk_st_expect(const struct ftk_st *st, const char *name, int ndim, const int64_t *shape,
		  const struct ftk_st_tensor **out, struct ftk_error *err)
{
	const struct ftk_st_tensor *t = ftk_st_find(st, name);
	if (out)
		*out = t;
	if (!t)
		return ftk_error_set(err, FTK_ENOTFOUND, st->n_maps ? st->maps[0].path : NULL, 0, name,
				     "missing tensor '%s'", name);
	int ok = t->ndim == ndim;
	for (int i = 0; ok && i < ndim; i++)
		ok = t->shape[i] == shape[i];
	if (!ok) {
		char a[128], b[128];
		shape_str(a, sizeof(a), t->ndim, t->shape);
		shape_str(b, sizeof(b), ndim, shape);
		return ftk_error_set(err, FTK_EMISMATCH, t->file, 0, name,
				     "tensor '%s' has shape %s, expected %s", name, a, b);
	}
	if (t->dtype != FTK_F32 && t->dtype != FTK_F16 && t->dtype != FTK_BF16)
		return ftk_error_set(err, FTK_EUNSUPPORTED, t->file, 0, name,
				     "tensor '%s' has dtype %s; only F32, F16 and BF16 are supported",
				     name, ftk_dtype_name(t->dtype));
	return 0;
}

/* ---------------------------------------------------------------- writer */

struct w_entry {
	char *name;
	enum ftk_dtype dtype;
	int ndim;
	int64_t shape[8];
	const void *data;
	size_t nbytes;
};

struct ftk_st_writer {
	struct w_entry *e;
	size_t n, alloc;
	cJSON *meta;
};

struct ftk_st_writer *ftk_st_writer_new(void)
{
	return xcalloc(1, sizeof(struct ftk_st_writer));
}

void ftk_st_writer_add(struct ftk_st_writer *w, const char *name, enum ftk_dtype dtype, int ndim,
		       const int64_t *shape, const void *data)
{
	FTK_ALLOC_GROW(w->e, w->n + 1, w->alloc);
	struct w_entry *e = &w->e[w->n++];
	memset(e, 0, sizeof(*e));
	e->name = xstrdup(name);
	e->dtype = dtype;
	e->ndim = ndim > 8 ? 8 : ndim;
	size_t numel = 1;
	for (int i = 0; i < e->ndim; i++) {
		e->shape[i] = shape[i];
		numel *= (size_t)shape[i];
	}
	e->data = data;
	e->nbytes = numel * ftk_dtype_size(dtype);
}

void ftk_st_writer_meta(struct ftk_st_writer *w, const char *key, const char *value)
{
	if (!w->meta)
		w->meta = cJSON_CreateObject();
	cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
	cJSON_AddStringToObject(w->meta, key, value);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct w_entry *)a)->name, ((const struct w_entry *)b)->name);
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

int ftk_st_writer_save(struct ftk_st_writer *w, const char *path, struct ftk_error *err)
{
	qsort(w->e, w->n, sizeof(*w->e), cmp_entry);
	for (size_t i = 1; i < w->n; i++)
		if (!strcmp(w->e[i].name, w->e[i - 1].name))
			return ftk_error_set(err, FTK_EUSAGE, path, 0, w->e[i].name,
					     "tensor '%s' added twice", w->e[i].name);
	/* Header: __metadata__ first (sorted order puts "__" after capitals but
	 * before lowercase; position does not matter to readers), then tensors. */
	struct strbuf h = STRBUF_INIT;
	strbuf_addch(&h, '{');
	int first = 1;
	if (w->meta) {
		strbuf_addstr(&h, "\"__metadata__\":");
		ftk_json_print(&h, w->meta);
		first = 0;
	}
	size_t off = 0;
	for (size_t i = 0; i < w->n; i++) {
		struct w_entry *e = &w->e[i];
		if (!first)
			strbuf_addch(&h, ',');
		first = 0;
		strbuf_add_json_str(&h, e->name, strlen(e->name));
		strbuf_addf(&h, ":{\"dtype\":\"%s\",\"shape\":[", ftk_dtype_name(e->dtype));
		for (int d = 0; d < e->ndim; d++)
			strbuf_addf(&h, "%s%lld", d ? "," : "", (long long)e->shape[d]);
		strbuf_addf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + e->nbytes);
		off += e->nbytes;
	}
	strbuf_addch(&h, '}');
	while (h.len % 8)
		strbuf_addch(&h, ' ');

	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		strbuf_release(&h);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot create: %s", strerror(errno));
	}
	uint8_t len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
	int bad = write_all(fd, len8, 8) || write_all(fd, h.buf, h.len);
	for (size_t i = 0; !bad && i < w->n; i++)
		bad = write_all(fd, w->e[i].data, w->e[i].nbytes);
	strbuf_release(&h);
	if (bad || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot write: %s", strerror(e));
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot rename '%s' to '%s': %s", tmp,
				     path, strerror(e));
	}
	/* make the rename durable */
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

void ftk_st_writer_free(struct ftk_st_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		free(w->e[i].name);
	free(w->e);
	cJSON_Delete(w->meta);
	free(w);
}
