/*
 * fuzz-sources: model/safetensors.c
 *
 * fuzz_safetensors.c: libFuzzer target for safetensors headers (model
 * downloads).  The input is written as a .safetensors file and opened;
 * every tensor that loads must lie inside the file and hold exactly its
 * shape's bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/ftk-fuzz-st.%d.safetensors", (int)getpid());
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct ftk_st *st = NULL;
	struct ftk_error e;
	if (ftk_st_open(&st, path, &e) == 0) {
		for (size_t i = 0; i < ftk_st_count(st); i++) {
			const struct ftk_st_tensor *t = ftk_st_at(st, i);
			size_t w = ftk_dtype_size(t->dtype);
			if (t->numel < 0 || (w && t->nbytes != (size_t)t->numel * w) || t->nbytes > size)
				abort();
			volatile uint8_t sum = 0;	/* touch every byte: ASan sees one outside the map */
			for (size_t k = 0; k < t->nbytes; k++)
				sum += ((const uint8_t *)t->data)[k];
			(void)sum;
		}
		ftk_st_close(st);
	}
	unlink(path);
	return 0;
}
