/*
 * nf4.c: bitsandbytes-exact NF4 quantization with double quantization.
 *
 * The steps and their rounding follow bitsandbytes' pure-PyTorch backend
 * (see nf4.h and datasets/models/stories260K/README.md); the unit test
 * compares every byte and float with the stored bitsandbytes output.
 * Nearest-code search uses the float32 midpoints of neighbouring table
 * entries and counts the midpoints strictly below the value, which is what
 * torch.bucketize(right=False) does, so a value on a midpoint goes low.
 */
#include "model/nf4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lib/err.h"
#include "model/ops.h"

/* bitsandbytes get_4bit_type("nf4"), as stored in nf4_reference.json. */
const float ftk_nf4_code[16] = {
	-1.0f, -0.696192801f, -0.525073051f, -0.394917488f, -0.284441382f, -0.18477343f,
	-0.0910500363f, 0.0f, 0.0795802996f, 0.160930201f, 0.246112302f, 0.337915242f,
	0.440709829f, 0.562617004f, 0.722956836f, 1.0f,
};

/*
 * bitsandbytes create_dynamic_map(signed=True) as torch 1.13's AVX2 path
 * computes it (the `nested_quant_map` bitsandbytes stores with a model).
 */
const float ftk_dynamic_map[256] = {
	-0.992968738f, -0.978906214f, -0.96484375f, -0.950781226f,
	-0.936718702f, -0.922656238f, -0.908593774f, -0.89453125f,
	-0.880468726f, -0.866406202f, -0.852343738f, -0.838281214f,
	-0.82421875f, -0.810156226f, -0.796093702f, -0.782031238f,
	-0.767968774f, -0.75390625f, -0.739843786f, -0.725781262f,
	-0.711718798f, -0.697656274f, -0.68359375f, -0.669531286f,
	-0.655468762f, -0.641406238f, -0.627343774f, -0.61328125f,
	-0.599218726f, -0.585156262f, -0.571093798f, -0.557031274f,
	-0.54296875f, -0.528906226f, -0.514843762f, -0.500781238f,
	-0.486718774f, -0.47265625f, -0.458593726f, -0.444531262f,
	-0.430468738f, -0.416406214f, -0.40234375f, -0.388281226f,
	-0.374218762f, -0.360156238f, -0.346093714f, -0.33203125f,
	-0.317968726f, -0.303906262f, -0.289843738f, -0.275781274f,
	-0.26171875f, -0.247656256f, -0.233593762f, -0.219531253f,
	-0.205468744f, -0.19140625f, -0.177343741f, -0.163281247f,
	-0.149218753f, -0.135156244f, -0.12109375f, -0.107031256f,
	-0.0985937491f, -0.0957812443f, -0.0929687545f, -0.0901562497f,
	-0.0873437524f, -0.0845312476f, -0.0817187428f, -0.078906253f,
	-0.0760937482f, -0.0732812509f, -0.0704687461f, -0.0676562563f,
	-0.0648437515f, -0.0620312467f, -0.0592187531f, -0.0564062484f,
	-0.053593751f, -0.05078125f, -0.047968749f, -0.0451562516f,
	-0.0423437469f, -0.0395312496f, -0.0367187522f, -0.0339062475f,
	-0.0310937501f, -0.0282812472f, -0.0254687499f, -0.0226562507f,
	-0.0198437497f, -0.0170312505f, -0.0142187504f, -0.0114062503f,
	-0.00971874967f, -0.00915624946f, -0.00859375019f, -0.00803124998f,
	-0.00746874977f, -0.00690625003f, -0.00634374982f, -0.00578125007f,
	-0.00521875033f, -0.00465624966f, -0.00409374991f, -0.00353124971f,
	-0.00296874996f, -0.00240624999f, -0.00184375001f, -0.00128124992f,
	-0.000943750085f, -0.000831249985f, -0.00071875006f, -0.000606250076f,
	-0.000493750034f, -0.000381250022f, -0.000268750038f, -0.000156250011f,
	-8.87499991e-05f, -6.62500024e-05f, -4.37499984e-05f, -2.12499981e-05f,
	-7.7499999e-06f, -3.25000019e-06f, -5.50000038e-07f, 0.0f,
	5.50000038e-07f, 3.25000019e-06f, 7.7499999e-06f, 2.12499981e-05f,
	4.37499984e-05f, 6.62500024e-05f, 8.87499991e-05f, 0.000156250011f,
	0.000268750038f, 0.000381250022f, 0.000493750034f, 0.000606250076f,
	0.00071875006f, 0.000831249985f, 0.000943750085f, 0.00128124992f,
	0.00184375001f, 0.00240624999f, 0.00296874996f, 0.00353124971f,
	0.00409374991f, 0.00465624966f, 0.00521875033f, 0.00578125007f,
	0.00634374982f, 0.00690625003f, 0.00746874977f, 0.00803124998f,
	0.00859375019f, 0.00915624946f, 0.00971874967f, 0.0114062503f,
	0.0142187504f, 0.0170312505f, 0.0198437497f, 0.0226562507f,
	0.0254687499f, 0.0282812472f, 0.0310937501f, 0.0339062475f,
	0.0367187522f, 0.0395312496f, 0.0423437469f, 0.0451562516f,
	0.047968749f, 0.05078125f, 0.053593751f, 0.0564062484f,
	0.0592187531f, 0.0620312467f, 0.0648437515f, 0.0676562563f,
	0.0704687461f, 0.0732812509f, 0.0760937482f, 0.078906253f,
	0.0817187428f, 0.0845312476f, 0.0873437524f, 0.0901562497f,
	0.0929687545f, 0.0957812443f, 0.0985937491f, 0.107031256f,
	0.12109375f, 0.135156244f, 0.149218753f, 0.163281247f,
	0.177343741f, 0.19140625f, 0.205468744f, 0.219531253f,
	0.233593762f, 0.247656256f, 0.26171875f, 0.275781274f,
	0.289843738f, 0.303906262f, 0.317968726f, 0.33203125f,
	0.346093714f, 0.360156238f, 0.374218762f, 0.388281226f,
	0.40234375f, 0.416406214f, 0.430468738f, 0.444531262f,
	0.458593726f, 0.47265625f, 0.486718774f, 0.500781238f,
	0.514843762f, 0.528906226f, 0.54296875f, 0.557031274f,
	0.571093798f, 0.585156262f, 0.599218726f, 0.61328125f,
	0.627343774f, 0.641406238f, 0.655468762f, 0.669531286f,
	0.68359375f, 0.697656274f, 0.711718798f, 0.725781262f,
	0.739843786f, 0.75390625f, 0.767968774f, 0.782031238f,
	0.796093702f, 0.810156226f, 0.82421875f, 0.838281214f,
	0.852343738f, 0.866406202f, 0.880468726f, 0.89453125f,
	0.908593774f, 0.922656238f, 0.936718702f, 0.950781226f,
	0.96484375f, 0.978906214f, 0.992968738f, 1.0f,
};

/* Midpoints in float32, built once (16 and 256 tables are tiny). */
static float nf4_mid[15];
static float dyn_mid[255];
static int mids_ready;

static void build_mids(void)
{
	if (mids_ready)
		return;
	for (int i = 0; i < 15; i++)
		nf4_mid[i] = (ftk_nf4_code[i] + ftk_nf4_code[i + 1]) / 2.0f;
	for (int i = 0; i < 255; i++)
		dyn_mid[i] = (ftk_dynamic_map[i] + ftk_dynamic_map[i + 1]) / 2.0f;
	__atomic_store_n(&mids_ready, 1, __ATOMIC_RELEASE);
}

/* Number of boundaries strictly below x (torch.bucketize, right=False). */
static int bucket(const float *mid, int n, float x)
{
	int lo = 0, hi = n;
	while (lo < hi) {
		int m = (lo + hi) / 2;
		if (mid[m] < x)
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

int ftk_nf4_code_of(float x)
{
	build_mids();
	return bucket(nf4_mid, 15, x);
}

int ftk_dynamic_index_of(float x)
{
	build_mids();
	return bucket(dyn_mid, 255, x);
}

static float clampf(float x, float lo, float hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

float ftk_nf4_mean(const float *x, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += x[i];
	return n ? (float)(s / (double)n) : 0.0f;
}

size_t ftk_nf4_bytes(size_t n)
{
	size_t nb = (n + FTK_NF4_BLOCK - 1) / FTK_NF4_BLOCK;
	size_t nn = (nb + FTK_NF4_NESTED_BLOCK - 1) / FTK_NF4_NESTED_BLOCK;
	return (n + 1) / 2 + nb + nn * sizeof(float) + nb * sizeof(float);
}

/*
 * Blockwise quantization of x[0..n) against a sorted table (by its
 * midpoints): absmax per block (clamped at 1e-38), full blocks multiplied by
 * the float32 reciprocal, the partial tail divided, values clamped to [-1,1].
 */
static void quant_blocks(const float *x, size_t n, size_t bs, const float *mid, int nmid,
			 uint8_t *codes, float *absmax)
{
	size_t full = n / bs;
	size_t nb = (n + bs - 1) / bs;
	for (size_t b = 0; b < nb; b++) {
		size_t s = b * bs, e = s + bs < n ? s + bs : n;
		float am = 0.0f;
		for (size_t i = s; i < e; i++)
			am = fabsf(x[i]) > am ? fabsf(x[i]) : am;
		absmax[b] = am;
		float amc = am < 1e-38f ? 1e-38f : am;
		float rec = 1.0f / amc;
		for (size_t i = s; i < e; i++) {
			float v = b < full ? x[i] * rec : x[i] / amc;
			codes[i] = (uint8_t)bucket(mid, nmid, clampf(v, -1.0f, 1.0f));
		}
	}
}

void ftk_nf4_quantize(struct ftk_nf4 *q, const float *w, size_t n, const float *offset_override)
{
	build_mids();
	memset(q, 0, sizeof(*q));
	q->n = n;
	q->n_blocks = (n + FTK_NF4_BLOCK - 1) / FTK_NF4_BLOCK;
	q->n_nested = (q->n_blocks + FTK_NF4_NESTED_BLOCK - 1) / FTK_NF4_NESTED_BLOCK;
	size_t packed_n = (n + 1) / 2;
	/* one allocation: scales (floats) first for alignment, then the bytes */
	q->mem = xcalloc(1, q->n_blocks * sizeof(float) + q->n_nested * sizeof(float) + packed_n +
				   q->n_blocks + 1);
	q->absmax = q->mem;
	q->nested_absmax = q->absmax + q->n_blocks;
	q->packed = (uint8_t *)(q->nested_absmax + q->n_nested);
	q->qabsmax = q->packed + packed_n;

	uint8_t *codes = xmalloc(n ? n : 1);
	float *am = xmalloc((q->n_blocks ? q->n_blocks : 1) * sizeof(float));
	quant_blocks(w, n, FTK_NF4_BLOCK, nf4_mid, 15, codes, am);
	for (size_t i = 0; i < n; i += 2) {
		uint8_t lo = i + 1 < n ? codes[i + 1] : 0;
		q->packed[i / 2] = (uint8_t)(codes[i] << 4 | lo);
	}
	/* double quantization of the scales */
	q->offset = offset_override ? *offset_override : ftk_nf4_mean(am, q->n_blocks);
	for (size_t b = 0; b < q->n_blocks; b++)
		am[b] -= q->offset;
	quant_blocks(am, q->n_blocks, FTK_NF4_NESTED_BLOCK, dyn_mid, 255, q->qabsmax, q->nested_absmax);
	for (size_t b = 0; b < q->n_blocks; b++)
		q->absmax[b] = ftk_nf4_absmax(q->qabsmax, q->nested_absmax, ftk_dynamic_map, q->offset, b);
	free(am);
	free(codes);
}

void ftk_nf4_dequant(const struct ftk_nf4 *q, size_t start, size_t count, float *out)
{
	size_t i = 0;
	/* up to an even, block-aligned start element by element (ops.h's decode) */
	while (i < count && ((start + i) % FTK_NF4_BLOCK || (start + i) & 1)) {
		out[i] = ftk_nf4_decode(q->packed, q->absmax, ftk_nf4_code, start + i);
		i++;
	}
	/* whole blocks: one scale, two codes per byte */
	for (; i + FTK_NF4_BLOCK <= count; i += FTK_NF4_BLOCK) {
		size_t e = start + i;
		float am = q->absmax[e / FTK_NF4_BLOCK];
		const uint8_t *p = q->packed + e / 2;
		float *o = out + i;
		for (int k = 0; k < FTK_NF4_BLOCK / 2; k++) {
			o[2 * k] = ftk_nf4_code[p[k] >> 4] * am;
			o[2 * k + 1] = ftk_nf4_code[p[k] & 15] * am;
		}
	}
	for (; i < count; i++)
		out[i] = ftk_nf4_decode(q->packed, q->absmax, ftk_nf4_code, start + i);
}

void ftk_nf4_free(struct ftk_nf4 *q)
{
	if (!q)
		return;
	free(q->mem);
	memset(q, 0, sizeof(*q));
}
