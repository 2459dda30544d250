/*
 * test_err.c: a library error reaches the user whole.
 *
 * Programs print a struct ftk_error with error_at()/die_at() (cli/tool.h) or
 * FTK_ERROR_TEXT (lib/err.h).  They replaced about thirty copies of
 * `char b[1200]; error("%s", ftk_error_format(&e, b, sizeof(b)))`, whose
 * buffers were smaller than an error with its file, field and message at
 * their caps (255 + 255 + 767 bytes and the separators), so the end of the
 * message, usually the part that says what to do, was cut.  Here every part
 * is at its cap and the printed line must hold all of it.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"
#include "cli/tool.h"
#include "lib/err.h"

static void fill_to_cap(struct ftk_error *e)
{
	memset(e, 0, sizeof(*e));	/* every string ends at its last byte */
	e->code = FTK_EDATA;
	memset(e->file, 'f', sizeof(e->file) - 1);
	e->line = 9223372036854775807L;
	memset(e->field, 'd', sizeof(e->field) - 1);
	memset(e->msg, 'm', sizeof(e->msg) - 1);
	e->msg[sizeof(e->msg) - 2] = '!';	/* the last byte of the message */
}

/* file:line: field: msg, each part whole */
static size_t full_len(const struct ftk_error *e)
{
	char line[32];
	return strlen(e->file) + 1 + (size_t)snprintf(line, sizeof(line), "%ld", e->line) + 2 +
	       strlen(e->field) + 2 + strlen(e->msg);
}

START_TEST(text_holds_everything)
{
	struct ftk_error e;
	fill_to_cap(&e);
	const char *s = FTK_ERROR_TEXT(&e);
	printf("longest error: %zu bytes, FTK_ERROR_TEXT_MAX %zu\n", strlen(s), FTK_ERROR_TEXT_MAX);
	ck_assert_uint_eq(strlen(s), full_len(&e));
	ck_assert_uint_gt(full_len(&e), 1200);	/* what the old buffers cut */
	ck_assert_int_eq(s[strlen(s) - 1], '!');
	ck_assert(!strncmp(s + strlen(e.file), ":9223372036854775807: ", 22));
}
END_TEST

START_TEST(error_at_prints_it_whole)
{
	struct ftk_error e;
	fill_to_cap(&e);
	ftk_progname = "ftk-test";
	fflush(stderr);
	int saved = dup(2);
	FILE *cap = tmpfile();
	ck_assert_ptr_nonnull(cap);
	dup2(fileno(cap), 2);
	int rc = error_at(&e);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ck_assert_int_eq(rc, -1);
	char got[4096];
	rewind(cap);
	size_t n = fread(got, 1, sizeof(got) - 1, cap);
	fclose(cap);
	got[n] = 0;
	ck_assert_uint_eq(n, strlen("ftk-test: ") + full_len(&e) + 1);
	ck_assert(!strncmp(got, "ftk-test: fff", 13));
	ck_assert_str_eq(got + n - 3, "m!\n");
}
END_TEST

/* Parts that are unknown are left out, as ftk_error_format does. */
START_TEST(text_of_a_bare_message)
{
	struct ftk_error e;
	ftk_error_msg(&e, FTK_EUSAGE, "no input");
	ck_assert_str_eq(FTK_ERROR_TEXT(&e), "no input");
	ftk_error_set(&e, FTK_EDATA, "a.jsonl", 3, "messages[0].role", "unknown role 'bot'");
	ck_assert_str_eq(FTK_ERROR_TEXT(&e), "a.jsonl:3: messages[0].role: unknown role 'bot'");
}
END_TEST

static Suite *err_suite(void)
{
	Suite *s = suite_create("err");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, text_holds_everything);
	tcase_add_test(tc, error_at_prints_it_whole);
	tcase_add_test(tc, text_of_a_bare_message);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(err_suite)
