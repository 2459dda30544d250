/*
 * attention.cu: causal attention forward and backward, the backend's
 * (T, T) kernels against its flash kernels (backend_cuda.cu's own code,
 * included below), on Llama 3 8B's shape (32 query heads on 8 kv heads of
 * 128) at growing T.  Validated three ways: a few query rows of the
 * forward against a host loop over ops.h's ftk_softmax_row, flash against
 * (T, T) on every output and gradient, and two documents per row so the
 * masks matter.  Prints milliseconds and the bytes each path keeps for
 * the backward pass.
 * Build: make -C dev/cuda; run: ./attention [T ...]  (default 512 2048 4096)
 */
#include "model/backend_cuda.cu"
#include "common.cuh"

/* out row (b, t, h) on the host: softmax of the scaled scores over t's document, times V. */
static void host_row(float *o, const float *q, const float *k, const float *v, const int32_t *doc,
		     int b, int t, int h, int T, int NH, int NKV, int hd)
{
	int g = h / (NH / NKV), s0 = t;
	while (s0 > 0 && doc[(size_t)b * T + s0 - 1] == doc[(size_t)b * T + t])
		s0--;
	float *p = (float *)malloc((size_t)(t - s0 + 1) * sizeof(float));
	const float *qr = q + (((size_t)b * T + t) * NH + h) * hd;
	for (int s = s0; s <= t; s++) {
		const float *kr = k + (((size_t)b * T + s) * NKV + g) * hd;
		float acc = 0;
		for (int i = 0; i < hd; i++)
			acc += qr[i] * kr[i];
		p[s - s0] = acc / sqrtf((float)hd);
	}
	ftk_softmax_row(p, t - s0 + 1);
	for (int i = 0; i < hd; i++) {
		float acc = 0;
		for (int s = s0; s <= t; s++)
			acc += p[s - s0] * v[(((size_t)b * T + s) * NKV + g) * hd + i];
		o[i] = acc;
	}
	free(p);
}

int main(int argc, char **argv)
{
	int B = 1, NH = 32, NKV = 8, hd = 128, ok = 1;
	float code[16] = { 0 };
	struct ftk_backend *be = ftk_cuda_backend_new(code);
	int Ts[16], nT = 0;
	for (int i = 1; i < argc && nT < 16; i++)
		Ts[nT++] = atoi(argv[i]);
	if (!nT && dev_quick())
		Ts[0] = 512, nT = 1;
	if (!nT)
		Ts[0] = 512, Ts[1] = 2048, Ts[2] = 4096, nT = 3;
	for (int ti = 0; ti < nT; ti++) {
		int T = Ts[ti];
		size_t nq = (size_t)B * T * NH * hd, nk = (size_t)B * T * NKV * hd;
		float *q = rand_host(nq, 1.0f, 1), *k = rand_host(nk, 1.0f, 2), *v = rand_host(nk, 1.0f, 3);
		float *dout = rand_host(nq, 1.0f, 4);
		int32_t *doc = (int32_t *)malloc((size_t)B * T * sizeof(int32_t));
		for (int t = 0; t < T; t++)
			doc[t] = t < T / 3 ? 0 : 1;	/* two documents in the row */
		float *dq_ = to_device(q, nq), *dk_ = to_device(k, nk), *dv_ = to_device(v, nk);
		float *ddout = to_device(dout, nq), *o1, *o2, *att, *lse, *g[6];
		int32_t *ddoc;
		CK(cudaMalloc((void **)&ddoc, (size_t)B * T * sizeof(int32_t)));
		CK(cudaMemcpy(ddoc, doc, (size_t)B * T * sizeof(int32_t), cudaMemcpyHostToDevice));
		size_t att_bytes = (size_t)B * NH * T * T * sizeof(float);
		size_t lse_bytes = (size_t)B * NH * T * sizeof(float);
		CK(cudaMalloc((void **)&o1, nq * sizeof(float)));
		CK(cudaMalloc((void **)&o2, nq * sizeof(float)));
		CK(cudaMalloc((void **)&att, att_bytes));
		CK(cudaMalloc((void **)&lse, lse_bytes));
		for (int i = 0; i < 6; i++)
			CK(cudaMalloc((void **)&g[i], (i % 3 == 0 ? nq : nk) * sizeof(float)));
		be->ops->attn_fwd(be, o1, att, dq_, dk_, dv_, ddoc, B, T, NH, NKV, hd);
		be->ops->attn_fwd_flash(be, o2, lse, dq_, dk_, dv_, ddoc, B, T, NH, NKV, hd);
		/* a few rows on the host, in both documents */
		float *h1 = (float *)malloc(nq * sizeof(float));
		CK(cudaMemcpy(h1, o1, nq * sizeof(float), cudaMemcpyDeviceToHost));
		float row[256];
		double worst = 0;
		int rows[] = { 0, T / 3 - 1, T / 3, T - 1 };
		for (int r = 0; r < 4; r++)
			for (int h = 0; h < NH; h += NH - 1) {
				host_row(row, q, k, v, doc, 0, rows[r], h, T, NH, NKV, hd);
				for (int i = 0; i < hd; i++)
					worst = fmax(worst, fabs(row[i] - h1[(((size_t)rows[r]) * NH + h) * hd + i]));
			}
		printf("T=%d: (T, T) forward against the host on 8 rows: max_abs %.2e  %s\n", T, worst,
		       worst < 1e-4 ? "ok" : "FAIL");
		ok &= worst < 1e-4;
		ok &= validate("flash fwd against (T, T)", h1, o2, nq, 1e-4);
		be->ops->attn_bwd(be, g[0], g[1], g[2], ddout, att, dq_, dk_, dv_, B, T, NH, NKV, hd);
		be->ops->attn_bwd_flash(be, g[3], g[4], g[5], ddout, o2, lse, dq_, dk_, dv_, ddoc, B, T, NH, NKV,
				   hd);
		for (int i = 0; i < 3; i++) {
			size_t len = i == 0 ? nq : nk;
			float *ref = (float *)malloc(len * sizeof(float));
			CK(cudaMemcpy(ref, g[i], len * sizeof(float), cudaMemcpyDeviceToHost));
			ok &= validate(i == 0 ? "flash dq against (T, T)" : i == 1 ? "flash dk" : "flash dv",
				       ref, g[i + 3], len, 1e-4);
			free(ref);
		}
		float tf1 = time_ms([&] { be->ops->attn_fwd(be, o1, att, dq_, dk_, dv_, ddoc, B, T, NH, NKV, hd); }, 5);
		float tf2 = time_ms([&] { be->ops->attn_fwd_flash(be, o2, lse, dq_, dk_, dv_, ddoc, B, T, NH, NKV, hd); }, 5);
		float tb1 = time_ms([&] { be->ops->attn_bwd(be, g[0], g[1], g[2], ddout, att, dq_, dk_, dv_, B, T, NH, NKV, hd); }, 5);
		float tb2 = time_ms([&] { be->ops->attn_bwd_flash(be, g[3], g[4], g[5], ddout, o2, lse, dq_, dk_, dv_, ddoc, B, T, NH, NKV, hd); }, 5);
		printf("  (T, T): fwd %8.3f ms  bwd %8.3f ms  keeps %8.1f MiB\n", tf1, tb1,
		       att_bytes / 1048576.0);
		printf("  flash:  fwd %8.3f ms  bwd %8.3f ms  keeps %8.3f MiB\n", tf2, tb2,
		       lse_bytes / 1048576.0);
		CK(cudaFree(dq_));
		CK(cudaFree(dk_));
		CK(cudaFree(dv_));
		CK(cudaFree(ddout));
		CK(cudaFree(ddoc));
		CK(cudaFree(o1));
		CK(cudaFree(o2));
		CK(cudaFree(att));
		CK(cudaFree(lse));
		for (int i = 0; i < 6; i++)
			CK(cudaFree(g[i]));
		free(q), free(k), free(v), free(dout), free(doc), free(h1);
	}
	return ok ? 0 : 1;
}
