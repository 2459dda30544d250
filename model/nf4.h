/*
 * nf4.h: 4-bit NormalFloat quantization with double quantization, exactly as
 * bitsandbytes' quantize_4bit(quant_type="nf4", blocksize=64,
 * compress_statistics=True) computes it, so our bytes can be compared with
 * its bytes (datasets/models/stories260K/README.md lists every fact).
 *
 *   - The weight is flattened row-major and cut into blocks of 64.
 *   - absmax of each block, clamped below at 1e-38; each element is scaled
 *     in float32 (multiplied by the float32 reciprocal in a full block,
 *     divided in the trailing partial block) and clamped to [-1, 1].
 *   - The code is the index of the nearest of 16 NF4 values, found with the
 *     float32 midpoints; a value exactly on a midpoint takes the lower index.
 *   - Element 2k goes in the high nibble of byte k, element 2k+1 in the low.
 *   - Double quantization: offset = float32 mean of all absmax; the
 *     differences are quantized 8-bit blockwise in groups of 256 with the
 *     signed dynamic map (again nearest by midpoints, ties low, reciprocal
 *     multiply for full groups); each group keeps its own absmax.
 *   - Recovery: absmax_i = dynmap[q_i] * nested_absmax[i/256] + offset, and
 *     value = nf4[code] * absmax_i, all float32.
 *
 * The two tables are data, not code: bitsandbytes builds the dynamic map
 * with torch.linspace whose last bits depend on the CPU's vector path, so
 * we embed the table it stores (`nested_quant_map`) from the AVX2 path.
 *
 * The decode arithmetic itself lives in ops.h (ftk_nf4_decode) so that the
 * CUDA kernels run the very same expression.
 */
#ifndef FTK_MODEL_NF4_H
#define FTK_MODEL_NF4_H

#include <stddef.h>
#include <stdint.h>

#define FTK_NF4_BLOCK 64
#define FTK_NF4_NESTED_BLOCK 256

extern const float ftk_nf4_code[16];		/* sorted; [7] = 0, [15] = 1 */
extern const float ftk_dynamic_map[256];	/* sorted; [127] = 0, [255] = 1 */

/*
 * A quantized tensor of n elements.  Memory: one allocation owned by the
 * struct (ftk_nf4_free releases it); the pointers below point into it.
 */
struct ftk_nf4 {
	size_t n;		/* elements */
	size_t n_blocks;	/* ceil(n / 64) */
	size_t n_nested;	/* ceil(n_blocks / 256) */
	uint8_t *packed;	/* (ceil(n/2),)   two codes per byte, even element high */
	uint8_t *qabsmax;	/* (n_blocks,)    dynamic-map index of absmax - offset */
	float *nested_absmax;	/* (n_nested,)    per group of 256 blocks */
	float offset;		/* mean of the unquantized absmax values */
	float *absmax;		/* (n_blocks,)    recovered scales, cached for decoding */
	void *mem;
};

/*
 * Quantize w[0..n) into *q (which this allocates; free with ftk_nf4_free).
 * offset_override: when not NULL, use that offset instead of computing the
 * float32 mean (torch's reduction order decides its last bit; tests pass the
 * reference's).  Never fails (n = 0 gives an empty tensor).
 */
void ftk_nf4_quantize(struct ftk_nf4 *q, const float *w, size_t n, const float *offset_override);

/* The float32 mean of x the way we compute it (pairwise sums in double, rounded once). */
float ftk_nf4_mean(const float *x, size_t n);

/* Dequantize elements [start, start+count) into out (count floats). */
void ftk_nf4_dequant(const struct ftk_nf4 *q, size_t start, size_t count, float *out);

/* Code (0..15) of one scaled value in [-1, 1]: the nearest NF4 value, ties low. */
int ftk_nf4_code_of(float x);
/* Index (0..255) in the dynamic map of one scaled value, ties low. */
int ftk_dynamic_index_of(float x);

void ftk_nf4_free(struct ftk_nf4 *q);

/* Bytes the quantized tensor occupies (packed + qabsmax + nested + the cached scales). */
size_t ftk_nf4_bytes(size_t n);

#endif
