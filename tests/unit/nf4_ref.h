/*
 * nf4_ref.h: reading bitsandbytes' NF4 reference for stories260K
 * (datasets/models/stories260K/nf4_reference.json, how it was made is in
 * that folder's README), shared by test_nf4 (our quantizer against it) and
 * test_nf4_kernels (the CUDA kernels' bodies fed its bytes).
 */
#ifndef FTK_TEST_NF4_REF_H
#define FTK_TEST_NF4_REF_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "testutil.h"
#include "lib/json.h"
#include "lib/strbuf.h"

/* The parsed reference (free with cJSON_Delete). */
static inline cJSON *nf4_ref_load(void)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, src_path("datasets/models/stories260K/nf4_reference.json")), 0);
	cJSON *j = NULL;
	ck_assert_int_eq(ftk_json_parse(sb.buf, sb.len, &j, NULL), 0);
	strbuf_release(&sb);
	return j;
}

/* Decode a hex string into out (at most cap bytes); returns the byte count. */
static inline size_t nf4_ref_hex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex) / 2;
	ck_assert_uint_le(n, cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

#endif
