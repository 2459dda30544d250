/*
 * cmd_convert.c: ftk-convert, from the formats people have to the canonical
 * records every other tool reads.
 * summary: convert Alpaca, ShareGPT, OpenAI, v1 and prompt/completion data to chat records
 *
 * Input is JSONL or a JSON array file (the form LLaMA-Factory and many hubs
 * ship), told apart by the first non-blank character, so `ftk convert
 * data.json` just works.  An array is read whole and split into its elements
 * without parsing it twice; each element is then a record with the line it
 * starts on.  Records that cannot be converted go to --rejects with the reason.
 *
 * A converted record is new JSON, written by cJSON.  cJSON keeps numbers as
 * doubles, so an integer past 2^53 in a field we carry over would change
 * silently; such records are rejected ("number-precision") instead.  Text
 * records pass through as their original bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/tool.h"
#include "lib/json.h"
#include "prep/convert.h"
#include "prep/provenance.h"

static const char *const usage[] = {
	"ftk-convert [options] [FILE...]", "",
	"Convert records to the canonical chat or preference format. Files may be JSONL",
	"or JSON arrays (zstd detected).", NULL,
};

static void from_cb(const struct ftk_option *opt, const char *arg)
{
	int from = ftk_conv_from_parse(arg);
	if (from < 0)
		ftk_usage_error("--%s needs one of auto|alpaca|sharegpt|openai|prompt-completion|text|"
				"preference, not '%s'", opt->long_name, arg);
	*(int *)opt->value = from;
}

/* Integers that a double cannot hold exactly, outside strings. */
static int has_imprecise_number(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '"') {
			i = ftk_json_string_end(s, n, i);
		} else if (c >= '0' && c <= '9') {
			size_t b = i, digits = 0;
			while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
				digits += s[i++] != '.';
			int expo = i < n && (s[i] == 'e' || s[i] == 'E');
			while (i < n && (s[i] == 'e' || s[i] == 'E' || s[i] == '+' || s[i] == '-' ||
					 (s[i] >= '0' && s[i] <= '9')))
				i++;
			/* skip leading zeros of a fraction like 0.000123 */
			for (size_t k = b; k < i && (s[k] == '0' || s[k] == '.'); k++)
				digits -= s[k] == '0';
			if (digits > 15 && !expo)
				return 1;
			i--;
		}
	}
	return 0;
}

/* --no-provenance clears it */
static int provenance = 1;

static void convert_one(struct ftk_tool *t, struct ftk_line *line, int from, struct strbuf *sb)
{
	cJSON *rec = ftk_tool_parse(t, line);
	if (!rec)
		return;
	const char *kind = NULL;
	char msg[512];
	cJSON *out = ftk_convert_record(rec, from, &kind, msg, sizeof(msg));
	/* an element of a pretty-printed array spans lines: its bytes cannot be
	 * one JSONL line, so it is written anew like a converted record */
	int multiline = out == rec && memchr(line->data, '\n', line->len) != NULL;
	if (multiline)
		out = ftk_json_share(rec);
	if (out == rec) {
		ftk_tool_count(t, "passed-through", 1);
		if (provenance && ftk_provenance_add(line->data, line->len, rec, line->file,
						     line->lineno, sb))
			ftk_tool_emit_raw(t, sb->buf, sb->len);
		else
			ftk_tool_emit(t, line);
	} else if (!out) {
		cJSON *x = cJSON_CreateObject();
		cJSON_AddStringToObject(x, "error", msg);
		ftk_tool_reject(t, line, kind, x);
	} else if (has_imprecise_number(line->data, line->len)) {
		cJSON *x = cJSON_CreateObject();
		cJSON_AddStringToObject(x, "error",
					"a number with more than 15 significant digits would change when re-serialized");
		ftk_tool_reject(t, line, "number-precision", x);
		cJSON_Delete(out);
	} else {
		if (provenance && ftk_provenance_wanted(out, line->file))
			ftk_provenance_add_tree(out, line->file, line->lineno);
		strbuf_reset(sb);
		ftk_json_print(sb, out);
		ftk_tool_emit_raw(t, sb->buf, sb->len);
		cJSON_Delete(out);
	}
	cJSON_Delete(rec);
}

static void convert_array(struct ftk_tool *t, const char *file, struct strbuf *all, long line0,
			  int from, struct strbuf *sb)
{
	size_t pos = 0, start, elen;
	long lineno = line0;
	size_t counted = 0;
	int rc;
	while ((rc = ftk_json_array_next(all->buf, all->len, &pos, &start, &elen)) == 1) {
		for (; counted < start; counted++)
			lineno += all->buf[counted] == '\n';
		struct ftk_line l = { all->buf + start, elen, lineno, file, -1, 0, 0, 0 };
		char saved = all->buf[start + elen];
		all->buf[start + elen] = '\0';
		t->n_in++;
		l.utf8_error = ftk_utf8_check(l.data, l.len);
		if (l.utf8_error >= 0) {
			cJSON *x = cJSON_CreateObject();
			char m[96];
			snprintf(m, sizeof(m), "invalid UTF-8 at byte %ld", l.utf8_error + 1);
			cJSON_AddStringToObject(x, "error", m);
			ftk_tool_reject(t, &l, "invalid-utf8", x);
		} else {
			convert_one(t, &l, from, sb);
		}
		all->buf[start + elen] = saved;
	}
	if (rc < 0) {
		for (; counted < pos && counted < all->len; counted++)
			lineno += all->buf[counted] == '\n';
		error("%s:%ld: not a well-formed JSON array (the records after this point are not read)",
		      file, lineno);
		t->failed = 1;
	} else {
		/* only whitespace may follow the closing bracket */
		while (pos < all->len && strchr(" \t\r\n", all->buf[pos]))
			pos++;
		if (pos < all->len) {
			error("%s: text after the end of the JSON array", file);
			t->failed = 1;
		}
	}
}

int cmd_convert(int argc, char **argv)
{
	struct ftk_tool t;
	struct strbuf sb = STRBUF_INIT, all = STRBUF_INIT;
	struct ftk_error err;
	int from = FTK_FROM_AUTO;
	static char *stdin_only[] = { "-" };

	ftk_tool_init(&t, "ftk-convert", NULL);
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_CALLBACK(0, "from", &from, "FMT", from_cb,
				 "auto (default, per record), alpaca, sharegpt, openai (also\n"
				 "LLaMA-Factory v1 messages), prompt-completion, text, preference"),
		FTK_OPT_SET_INT(0, "no-provenance", &provenance, 0,
				"do not write meta.source and meta.line (the file and line a\n"
				"record was read from) into records that have neither"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-convert", opts, usage);
	char **inputs = argv;
	int n_inputs = argc;
	if (n_inputs == 0) {
		inputs = stdin_only;
		n_inputs = 1;
	}
	ftk_tool_start(&t, n_inputs, inputs);
	for (int i = 0; i < n_inputs; i++) {
		struct ftk_reader *r;
		struct ftk_line line;
		int rc, array = 0;
		long first_line = 0;
		if (ftk_reader_open(&r, inputs[i], &err) < 0) {
			error("%s", err.msg);
			t.failed = 1;
			continue;
		}
		ftk_reader_keep_partial(r);
		ftk_reader_set_max_line(r, t.max_record_bytes);
		strbuf_reset(&all);
		while ((rc = ftk_reader_next(r, &line, &err)) == 1) {
			if (array) {
				strbuf_addch(&all, '\n');
				strbuf_add(&all, line.data, line.len);
				continue;
			}
			size_t k = strspn(line.data, " \t\r");
			if (k == line.len) {
				ftk_tool_count(&t, "blank-lines", 1);
				continue;
			}
			if (line.data[k] == '[' && !first_line) {
				if (line.oversize) {
					/* an array is read whole: its first line was not kept */
					error("%s:%ld: a JSON array whose first line is %llu bytes, more than "
					      "--max-record-bytes %llu: give a larger --max-record-bytes to "
					      "read it", inputs[i], line.lineno,
					      (unsigned long long)line.oversize,
					      (unsigned long long)t.max_record_bytes);
					t.failed = 1;
					break;
				}
				array = 1;
				first_line = line.lineno;
				ftk_reader_set_max_line(r, 0);
				strbuf_add(&all, line.data, line.len);
				continue;
			}
			first_line = line.lineno;
			t.n_in++;
			if (line.truncated) {
				ftk_tool_reject_truncated(&t, &line);
				continue;
			}
			if (ftk_tool_reject_oversize(&t, &line))
				continue;
			if (line.utf8_error >= 0) {
				cJSON *x = cJSON_CreateObject();
				char m[96];
				snprintf(m, sizeof(m), "invalid UTF-8 at byte %ld", line.utf8_error + 1);
				cJSON_AddStringToObject(x, "error", m);
				ftk_tool_reject(&t, &line, "invalid-utf8", x);
				continue;
			}
			convert_one(&t, &line, from, &sb);
		}
		if (rc < 0) {
			error_at(&err);
			t.failed = 1;
			if (rc == FTK_ETRUNC && !t.cut_rejected)
				ftk_tool_count(&t, "truncated-input", 1);
		}
		t.cut_rejected = 0;
		if (array)
			convert_array(&t, inputs[i], &all, first_line, from, &sb);
		t.bytes_done += ftk_reader_bytes_in(r);
		ftk_reader_close(r);
	}
	strbuf_release(&sb);
	strbuf_release(&all);
	return ftk_tool_finish(&t);
}
