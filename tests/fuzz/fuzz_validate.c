/*
 * fuzz_validate.c: libFuzzer target for the record checks: each input line is
 * parsed and validated, and converted, as ftk-validate and ftk-convert would.
 * Anything but a clean return (a crash, a sanitizer report, a leak) is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lib/json.h"
#include "lib/stream.h"
#include "prep/convert.h"
#include "prep/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	struct ftk_validate_opts o;
	struct ftk_verrors errs = { 0 };
	ftk_validate_opts_init(&o);
	cJSON *rec = NULL;
	if (ftk_utf8_check(s, size) < 0 && ftk_json_parse_object(s, size, &rec, NULL) == 0) {
		ftk_validate_raw(s, size, &errs);
		ftk_validate_record(rec, &o, &errs);
		const char *kind;
		char msg[256];
		cJSON *out = ftk_convert_record(rec, 0, &kind, msg, sizeof(msg));
		if (out && out != rec) {
			/* what convert makes must parse again */
			char *t = cJSON_PrintUnformatted(out);
			cJSON *back = NULL;
			if (ftk_json_parse(t, strlen(t), &back, NULL) != 0)
				abort();
			cJSON_Delete(back);
			cJSON_free(t);
			cJSON_Delete(out);
		}
		cJSON_Delete(rec);
	}
	size_t pos = 0, st, el;
	while (ftk_json_array_next(s, size, &pos, &st, &el) == 1)
		if (st + el > size)
			abort();
	ftk_verrors_release(&errs);
	free(s);
	return 0;
}
