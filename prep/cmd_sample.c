/*
 * cmd_sample.c: ftk-sample, a reproducible sample of N records to read.
 * summary: a reproducible random sample of N records, optionally laid out for reading
 *
 * The sample is the N records with the smallest seeded hash of their bytes
 * (a bottom-k sample): every record has the same chance, the same seed
 * gives the same sample on any machine, the choice does not depend on the
 * order of the input, and adding records can only swap in records with
 * smaller hashes.  Memory is N records.  The chosen records are written in
 * input order.
 *
 * --pretty lays a record out for a person in a terminal: a header with the
 * place and format, then one block per message (role, content wrapped to
 * the terminal width, tool calls as name(arguments)), or the fields of the
 * other formats, in color when standard output is a terminal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <xxhash.h>
#include "cli/tool.h"
#include "lib/json.h"
#include "lib/record.h"

static const char *const usage[] = {
	"ftk-sample [options] [FILE...]", "",
	"Pick N records at random, the same ones for the same seed.", NULL,
};

struct pick {
	uint64_t h;
	uint64_t order;		/* position in the input */
	char *data;
	size_t len;
	char *file;
	long lineno;
};

/* Max-heap on h, so the largest of the N smallest is on top. */
static void sift_down(struct pick *a, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && a[l].h > a[m].h)
			m = l;
		if (r < n && a[r].h > a[m].h)
			m = r;
		if (m == i)
			return;
		struct pick tmp = a[i];
		a[i] = a[m];
		a[m] = tmp;
		i = m;
	}
}

static void sift_up(struct pick *a, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (a[p].h >= a[i].h)
			return;
		struct pick tmp = a[i];
		a[i] = a[p];
		a[p] = tmp;
		i = p;
	}
}

static int cmp_order(const void *x, const void *y)
{
	const struct pick *a = x, *b = y;
	return a->order < b->order ? -1 : a->order > b->order;
}

/* ------------------------------------------------------------ --pretty */

struct pretty {
	int width, color;
	struct strbuf out;
};

static const char *role_color(const char *role)
{
	if (!strcmp(role, "system")) return "\033[35m";
	if (!strcmp(role, "user") || !strcmp(role, "human")) return "\033[36m";
	if (!strcmp(role, "assistant") || !strcmp(role, "gpt")) return "\033[32m";
	if (!strcmp(role, "tool") || !strcmp(role, "function") || !strcmp(role, "observation"))
		return "\033[33m";
	return "\033[1m";
}

/* Append text under a label, wrapped at width, continuation lines indented. */
static void block(struct pretty *p, const char *label, const char *text, size_t n)
{
	const int lw = 11;
	int avail = p->width - lw - 3;
	if (avail < 20)
		avail = 20;
	if (p->color)
		strbuf_addf(&p->out, "%s%-*s\033[0m \xe2\x94\x82 ", role_color(label), lw, label);
	else
		strbuf_addf(&p->out, "%-*s \xe2\x94\x82 ", lw, label);
	size_t i = 0;
	int col = 0, first = 1;
	if (n == 0)
		strbuf_addstr(&p->out, p->color ? "\033[2m(empty)\033[0m" : "(empty)");
	while (i < n) {
		/* next word or newline */
		if (text[i] == '\n') {
			i++;
			col = 0;
			strbuf_addf(&p->out, "\n%-*s \xe2\x94\x82 ", lw, "");
			continue;
		}
		size_t j = i;
		while (j < n && text[j] != ' ' && text[j] != '\n')
			j++;
		int wchars = 0;
		for (size_t k = i; k < j; k++)
			wchars += ((unsigned char)text[k] & 0xC0) != 0x80;
		if (col > 0 && col + wchars > avail) {
			strbuf_addf(&p->out, "\n%-*s \xe2\x94\x82 ", lw, "");
			col = 0;
		}
		strbuf_add(&p->out, text + i, j - i);
		col += wchars;
		first = 0;
		if (j < n && text[j] == ' ') {
			if (col < avail)
				strbuf_addch(&p->out, ' ');
			col++;
			j++;
		}
		i = j;
	}
	(void)first;
	strbuf_addch(&p->out, '\n');
}

static void tool_calls(struct pretty *p, const cJSON *tcs)
{
	const cJSON *tc;
	cJSON_ArrayForEach(tc, tcs) {
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
		const cJSON *src = fn ? fn : tc;
		const char *name = ftk_json_get_str(src, "name");
		const cJSON *args = cJSON_GetObjectItemCaseSensitive(src, "arguments");
		struct strbuf sb = STRBUF_INIT;
		strbuf_addf(&sb, "\xe2\x86\x92 %s(", name ? name : "?");
		if (cJSON_IsString(args))
			strbuf_addstr(&sb, args->valuestring);
		else if (args)
			ftk_json_print(&sb, args);
		strbuf_addch(&sb, ')');
		block(p, "  tool call", sb.buf, sb.len);
		strbuf_release(&sb);
	}
}

/* Parts of a content list that are not text (reasoning, tool calls, images), after it. */
static void other_parts(struct pretty *p, const cJSON *content)
{
	const cJSON *part;
	if (!cJSON_IsArray(content))
		return;
	cJSON_ArrayForEach(part, content) {
		const char *type = ftk_json_get_str(part, "type");
		if (!type || !strcmp(type, "text"))
			continue;
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(part, "value");
		if (!v)
			v = cJSON_GetObjectItemCaseSensitive(part, type);
		struct strbuf sb = STRBUF_INIT, label = STRBUF_INIT;
		if (cJSON_IsString(v))
			strbuf_addstr(&sb, v->valuestring);
		else if (v)
			ftk_json_print(&sb, v);
		strbuf_addf(&label, "  %s", type);
		block(p, label.buf, sb.buf, sb.len);
		strbuf_release(&sb);
		strbuf_release(&label);
	}
}

static void messages(struct pretty *p, const cJSON *msgs, const char *role_key,
		     const char *content_key)
{
	const cJSON *m;
	struct strbuf text = STRBUF_INIT;
	cJSON_ArrayForEach(m, msgs) {
		const char *role = ftk_json_get_str(m, role_key);
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, content_key);
		strbuf_reset(&text);
		ftk_content_text(content, &text);
		block(p, role ? role : "?", text.buf, text.len);
		other_parts(p, content);
		const cJSON *tcs = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
		if (cJSON_IsArray(tcs))
			tool_calls(p, tcs);
	}
	strbuf_release(&text);
}

static void field(struct pretty *p, const cJSON *rec, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
	if (!v)
		return;
	if (cJSON_IsString(v)) {
		block(p, key, v->valuestring, strlen(v->valuestring));
	} else if (cJSON_IsArray(v)) {
		strbuf_addf(&p->out, "%s-- %s --%s\n", p->color ? "\033[2m" : "", key,
			    p->color ? "\033[0m" : "");
		messages(p, v, "role", "content");
	} else {
		struct strbuf sb = STRBUF_INIT;
		ftk_json_print(&sb, v);
		block(p, key, sb.buf, sb.len);
		strbuf_release(&sb);
	}
}

static void pretty_record(struct pretty *p, const struct pick *pk, const cJSON *rec)
{
	enum ftk_format f = ftk_record_format(rec);
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec, "messages");
	strbuf_addf(&p->out, "%s\xe2\x94\x80\xe2\x94\x80 %s:%ld \xe2\x94\x80\xe2\x94\x80 %s",
		    p->color ? "\033[1m" : "", pk->file, pk->lineno, ftk_format_name(f));
	if (f == FTK_FMT_CHAT && cJSON_IsArray(msgs))
		strbuf_addf(&p->out, ", %d messages", cJSON_GetArraySize(msgs));
	const cJSON *tools = cJSON_GetObjectItemCaseSensitive(rec, "tools");
	if (cJSON_IsArray(tools))
		strbuf_addf(&p->out, ", %d tools", cJSON_GetArraySize(tools));
	strbuf_addf(&p->out, "%s\n", p->color ? "\033[0m" : "");
	switch (f) {
	case FTK_FMT_CHAT: messages(p, msgs, "role", "content"); break;
	case FTK_FMT_SHAREGPT:
		messages(p, cJSON_GetObjectItemCaseSensitive(rec, "conversations"), "from", "value");
		break;
	case FTK_FMT_PREFERENCE:
		field(p, rec, "prompt");
		field(p, rec, "chosen");
		field(p, rec, "rejected");
		field(p, rec, "chosen_messages");
		field(p, rec, "rejected_messages");
		break;
	case FTK_FMT_ALPACA:
		field(p, rec, "system");
		field(p, rec, "instruction");
		field(p, rec, "input");
		field(p, rec, "output");
		break;
	case FTK_FMT_PROMPT_COMPLETION:
		field(p, rec, "prompt");
		field(p, rec, "completion");
		break;
	case FTK_FMT_TEXT: field(p, rec, "text"); break;
	default: {
		const cJSON *m;
		cJSON_ArrayForEach(m, rec) field(p, rec, m->string);
	}
	}
	strbuf_addch(&p->out, '\n');
}

int cmd_sample(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_line line;
	struct pretty p = { 100, 0, STRBUF_INIT };
	long count = 10, width = 0;
	uint64_t seed = 0, order = 0;
	int pretty = 0;

	ftk_tool_init(&t, "ftk-sample", NULL);
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_LONG('n', "count", &count, "N", 0, LONG_MAX, "how many records (default 10)"),
		FTK_OPT_UINT64(0, "seed", &seed, "N", "seed of the choice (default 0)"),
		FTK_OPT_FLAG(0, "pretty", &pretty, "lay records out for reading (roles, turns, tool calls)"),
		FTK_OPT_LONG(0, "width", &width, "N", 30, 1000,
			     "wrap --pretty text at N columns (default: the terminal's, or 100)"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-sample", opts, usage);
	if (pretty) {
		int to_tty = !t.out_path && isatty(1);
		struct winsize ws;
		p.color = to_tty && !getenv("NO_COLOR");
		if (width)
			p.width = (int)width;
		else if (to_tty && ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 30)
			p.width = ws.ws_col;
	}

	struct pick *heap = xcalloc((size_t)count + 1, sizeof(*heap));
	size_t n = 0;
	ftk_tool_start(&t, argc, argv);
	while (ftk_tool_next(&t, &line)) {
		cJSON *rec = ftk_tool_parse(&t, &line);
		if (!rec)
			continue;
		cJSON_Delete(rec);
		uint64_t h = XXH3_64bits_withSeed(line.data, line.len, seed);
		order++;
		if ((size_t)count == 0 || (n == (size_t)count && h >= heap[0].h))
			continue;
		struct pick pk = { h, order, xstrndup(line.data, line.len), line.len,
				   xstrdup(line.file), line.lineno };
		if (n < (size_t)count) {
			heap[n] = pk;
			sift_up(heap, n++);
		} else {
			free(heap[0].data);
			free(heap[0].file);
			heap[0] = pk;
			sift_down(heap, n, 0);
		}
	}
	qsort(heap, n, sizeof(*heap), cmp_order);
	for (size_t i = 0; i < n; i++) {
		if (!pretty) {
			ftk_tool_emit_raw(&t, heap[i].data, heap[i].len);
		} else {
			cJSON *rec = NULL;
			ftk_json_parse(heap[i].data, heap[i].len, &rec, NULL);
			strbuf_reset(&p.out);
			pretty_record(&p, &heap[i], rec);
			cJSON_Delete(rec);
			if (ftk_writer_write(t.out, p.out.buf, p.out.len) < 0)
				t.failed = 1;
			t.n_out++;
		}
		free(heap[i].data);
		free(heap[i].file);
	}
	free(heap);
	strbuf_release(&p.out);
	ftk_tool_count(&t, "not-sampled", t.n_in - t.n_rejected - t.n_out);
	return ftk_tool_finish(&t);
}
