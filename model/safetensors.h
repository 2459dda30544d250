/*
 * safetensors.h: read and write the safetensors format.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]},...,
 *  "__metadata__":{...}}, then the data; offsets are relative to the end of
 * the header.  Reading maps the file (mmap, read-only, shared), so a 10 GB
 * checkpoint costs no memory until a tensor is touched, and a tensor's data
 * pointer points straight into the mapping.  A model split into shards is
 * read through model.safetensors.index.json ("weight_map": name -> file);
 * ftk_st_open_dir() opens either layout and presents one name space.
 *
 * Every offset and shape is checked against the file size and dtype width
 * when the header is parsed, so a truncated or lying file is an error at
 * open, never a read past the mapping.
 *
 * Writing collects (name, dtype, shape, borrowed data) entries and writes
 * the file in one go: header keys sorted by name, padded with spaces to a
 * multiple of 8 (as the reference implementation does), data in the same
 * order.  The write goes to a temporary file in the same directory which is
 * fsynced and renamed, so a crash leaves either the old file or the new one.
 */
#ifndef FTK_MODEL_SAFETENSORS_H
#define FTK_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "lib/err.h"

enum ftk_dtype { FTK_F32 = 0, FTK_F16, FTK_BF16, FTK_U8, FTK_I32, FTK_I64, FTK_DTYPE_OTHER };

struct ftk_st_tensor {
	const char *name;	/* borrowed from the ftk_st that owns it */
	enum ftk_dtype dtype;
	int ndim;
	int64_t shape[8];
	int64_t numel;
	const void *data;	/* points into the mapping; little-endian; may be unaligned for F16/BF16 */
	size_t nbytes;
	const char *file;	/* the shard it lives in */
};

struct ftk_st;	/* one file or a set of shards, opened */

/* Name of a dtype as safetensors writes it ("F32", "BF16", ...). */
const char *ftk_dtype_name(enum ftk_dtype t);
/* Bytes per element (0 for FTK_DTYPE_OTHER). */
size_t ftk_dtype_size(enum ftk_dtype t);

/*
 * Open one .safetensors file.  Returns 0 and *out, or FTK_ENOTFOUND/FTK_EIO
 * (cannot open or map), FTK_EDATA (a header that is not valid, offsets out
 * of range or overlapping the header, shapes that do not match the byte
 * count); err names the file and the tensor.  Free with ftk_st_close().
 */
int ftk_st_open(struct ftk_st **out, const char *path, struct ftk_error *err);

/*
 * Open a model directory: model.safetensors.index.json when present (every
 * shard it names is opened, every name in weight_map must exist in its
 * shard), else model.safetensors.  Same errors as ftk_st_open.
 */
int ftk_st_open_dir(struct ftk_st **out, const char *dir, struct ftk_error *err);

void ftk_st_close(struct ftk_st *st);

/* Number of tensors and the i-th (sorted by name).  Borrowed. */
size_t ftk_st_count(const struct ftk_st *st);
const struct ftk_st_tensor *ftk_st_at(const struct ftk_st *st, size_t i);
/* The tensor called name, or NULL.  Borrowed until ftk_st_close. */
const struct ftk_st_tensor *ftk_st_find(const struct ftk_st *st, const char *name);
/* __metadata__ value for key, or NULL (first file's).  Borrowed. */
const char *ftk_st_metadata(const struct ftk_st *st, const char *key);

/*
 * Convert a tensor's n = numel elements to float32 into dst (caller's
 * buffer of numel floats).  F32, F16 (IEEE half, subnormals included) and
 * BF16 are supported; other dtypes return FTK_EUNSUPPORTED.
 */
int ftk_st_to_f32(const struct ftk_st_tensor *t, float *dst, struct ftk_error *err);

/* Scalar conversions used above (exact; bf16 rounds to nearest even). */
float ftk_f16_to_f32(uint16_t h);
float ftk_bf16_to_f32(uint16_t h);
uint16_t ftk_f32_to_bf16(float f);
uint16_t ftk_f32_to_f16(float f);

/*
 * Check that a tensor exists and has the given shape (ndim entries);
 * otherwise FTK_ENOTFOUND ("missing tensor 'x' in DIR") or FTK_EMISMATCH
 * ("tensor 'x' has shape [a, b], expected [c, d]").
 */
int ftk_st_expect(const struct ftk_st *st, const char *name, int ndim, const int64_t *shape,
		  const struct ftk_st_tensor **out, struct ftk_error *err);

/* ---------------------------------------------------------------- writer */

struct ftk_st_writer;

struct ftk_st_writer *ftk_st_writer_new(void);
/*
 * Add a tensor.  name is copied; data (numel * dtype size bytes) is borrowed
 * until ftk_st_writer_save returns.  Duplicate names are an FTK_EUSAGE error
 * at save time.
 */
void ftk_st_writer_add(struct ftk_st_writer *w, const char *name, enum ftk_dtype dtype,
		       int ndim, const int64_t *shape, const void *data);
/* Add a __metadata__ string entry (both copied). */
void ftk_st_writer_meta(struct ftk_st_writer *w, const char *key, const char *value);
/*
 * Write the file atomically (temporary file, fsync, rename, fsync of the
 * directory).  Returns 0 or FTK_EIO / FTK_EUSAGE.
 */
int ftk_st_writer_save(struct ftk_st_writer *w, const char *path, struct ftk_error *err);
void ftk_st_writer_free(struct ftk_st_writer *w);

#endif
