/*
 * fuzz_reader.c: libFuzzer target for the JSONL reader.  The input is written
 * to a file (plain, or as-is when it starts with the zstd magic) and read back
 * line by line; every line must be NUL-terminated at its length, carry a line
 * number that grows by one, and the reader must end cleanly or with an error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lib/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/ftk-fuzz-reader.%d", (int)getpid());
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct ftk_reader *r;
	struct ftk_line l;
	struct ftk_error e;
	if (ftk_reader_open(&r, path, &e) == 0) {
		long prev = 0;
		int rc;
		while ((rc = ftk_reader_next(r, &l, &e)) == 1) {
			if (l.data[l.len] != '\0' || l.lineno != prev + 1)
				abort();
			if (l.utf8_error >= (long)l.len)
				abort();
			prev = l.lineno;
		}
		ftk_reader_close(r);
	}
	unlink(path);
	return 0;
}
