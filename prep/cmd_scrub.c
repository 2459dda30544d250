/*
 * cmd_scrub.c: ftk-scrub, mask personal data and secrets in string values.
 * summary: mask PII and secrets (e-mail, phone, IP, cards, IBAN, keys, tokens)
 *
 * Only string values are looked at (object keys are field names), and only
 * the fields asked for (--field, --skip-field).  A found span is replaced by
 * a typed placeholder ("<EMAIL>") or, with --pseudonymize SALT, by a keyed
 * hash of its value ("<EMAIL_3f9a0c12d4e5>"), the same for the same value in
 * every record and every run with that salt.
 *
 * The record is edited in its own bytes (prep/fields.h): a string that
 * changed is re-escaped in place and every other byte, numbers included, is
 * copied as it was, so a record stays valid JSON and a large integer id is
 * not rounded through a double.  An unchanged record is written as its
 * original line.
 *
 * --report changes nothing: it writes one line per span found, for a person
 * to review, instead of the records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "prep/fields.h"
#include "prep/pii.h"
#include "lib/stream.h"

static const char *const usage[] = {
	"ftk-scrub [options] [FILE...]", "",
	"Mask personal data and secrets found in string values.", NULL,
};

/* Fields that hold no person's text by default: ids, metadata, tool schemas. */
static const char *const default_skip[] = { "id", "meta", "tools", NULL };

struct scrub {
	struct ftk_tool *t;
	struct ftk_pii *pii;
	char **fields, **skip;
	size_t n_fields, n_skip, alloc_fields, alloc_skip;
	const char *salt;
	int report;
	const struct ftk_line *line;
	uint64_t found[FTK_PII_NTYPES];
	int builtin_allow;	/* leave documentation placeholders alone */
	char **allow;		/* --allow values, lowercased; "@domain" for a domain */
	size_t n_allow, alloc_allow;
	uint64_t kept;		/* spans left alone as allowed */
	struct strbuf rep;
};

static int allowed(const struct scrub *sc, int type, const char *s, size_t n)
{
	if (sc->builtin_allow && ftk_pii_is_placeholder(type, s, n))
		return 1;
	for (size_t i = 0; i < sc->n_allow; i++) {
		const char *a = sc->allow[i];
		if (a[0] == '@' && type == FTK_PII_EMAIL) {
			const char *at = memchr(s, '@', n);
			size_t al = strlen(a + 1);
			const char *end = s + n;
			if (at && (size_t)(end - at - 1) >= al && !strncasecmp(end - al, a + 1, al) &&
			    ((size_t)(end - at - 1) == al || end[-(long)al - 1] == '.'))
				return 1;
		} else if (strlen(a) == n && !strncasecmp(a, s, n)) {
			return 1;
		}
	}
	return 0;
}

static void load_allow(struct scrub *sc, const char *path)
{
	struct ftk_reader *r;
	struct ftk_line line;
	struct ftk_error err;
	int rc;
	if (ftk_reader_open(&r, path, &err) < 0)
		die("--allow: %s", err.msg);
	while ((rc = ftk_reader_next(r, &line, &err)) > 0) {
		char *v = line.data;
		size_t n = line.len;
		while (n && (*v == ' ' || *v == '\t'))
			v++, n--;
		while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
			n--;
		if (!n || *v == '#')
			continue;
		FTK_ALLOC_GROW(sc->allow, sc->n_allow + 1, sc->alloc_allow);
		sc->allow[sc->n_allow++] = xstrndup(v, n);
	}
	if (rc < 0)
		die("--allow: %s", err.msg);
	ftk_reader_close(r);
}

static int wanted(const struct scrub *sc, const char *path)
{
	for (size_t i = 0; i < sc->n_skip; i++)
		if (ftk_field_match(sc->skip[i], path))
			return 0;
	if (!sc->n_fields)
		return 1;
	for (size_t i = 0; i < sc->n_fields; i++)
		if (ftk_field_match(sc->fields[i], path))
			return 1;
	return 0;
}

/* Up to max bytes of context on one side, cut at a UTF-8 boundary. */
static void context(const char *s, size_t n, size_t st, size_t en, struct strbuf *out)
{
	size_t a = st > 40 ? st - 40 : 0, b = en + 40 < n ? en + 40 : n;
	while (a > 0 && ((unsigned char)s[a] & 0xC0) == 0x80)
		a--;
	while (b < n && ((unsigned char)s[b] & 0xC0) == 0x80)
		b++;
	strbuf_add(out, s + a, b - a);
}

static void report_span(struct scrub *sc, const char *path, const char *val, size_t len,
			const struct ftk_pii_span *sp)
{
	struct strbuf *r = &sc->rep, ctx = STRBUF_INIT;
	strbuf_reset(r);
	strbuf_addstr(r, "{\"file\":");
	strbuf_add_json_str(r, sc->line->file, strlen(sc->line->file));
	strbuf_addf(r, ",\"line\":%ld,\"field\":", sc->line->lineno);
	strbuf_add_json_str(r, path, strlen(path));
	strbuf_addf(r, ",\"type\":\"%s\",\"start\":%zu,\"end\":%zu,\"text\":",
		    ftk_pii_type_name(sp->type), sp->start, sp->end);
	strbuf_add_json_str(r, val + sp->start, sp->end - sp->start);
	strbuf_addstr(r, ",\"context\":");
	context(val, len, sp->start, sp->end, &ctx);
	strbuf_add_json_str(r, ctx.buf, ctx.len);
	strbuf_addch(r, '}');
	ftk_tool_emit_raw(sc->t, r->buf, r->len);
	strbuf_release(&ctx);
}

static int visit(void *ctx, const char *path, const char *val, size_t len, struct strbuf *repl)
{
	struct scrub *sc = ctx;
	const struct ftk_pii_span *sp;
	if (!wanted(sc, path))
		return 0;
	size_t n = ftk_pii_find(sc->pii, val, len, &sp);
	if (!n)
		return 0;
	size_t at = 0;
	int any = 0;
	for (size_t i = 0; i < n; i++) {
		if (allowed(sc, sp[i].type, val + sp[i].start, sp[i].end - sp[i].start)) {
			sc->kept++;
			continue;
		}
		any = 1;
		sc->found[sp[i].type]++;
		if (sc->report) {
			report_span(sc, path, val, len, &sp[i]);
			continue;
		}
		strbuf_add(repl, val + at, sp[i].start - at);
		if (sc->salt)
			ftk_pii_pseudonym(sc->salt, sp[i].type, val + sp[i].start,
					  sp[i].end - sp[i].start, repl);
		else
			strbuf_addf(repl, "<%s>", ftk_pii_type_name(sp[i].type));
		at = sp[i].end;
	}
	if (sc->report || !any)
		return 0;
	strbuf_add(repl, val + at, len - at);
	return 1;
}

/* --types LIST */
static void types_cb(const struct ftk_option *opt, const char *arg)
{
	unsigned mask = 0;
	char *dup = xstrdup(arg), *save = NULL;
	for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int ty = ftk_pii_type_parse(tok);
		if (ty < 0)
			ftk_usage_error("unknown type '%s' for --types", tok); /* exits */
		mask |= 1u << ty;
	}
	free(dup);
	if (!mask)
		ftk_usage_error("--types wants at least one type");
	*(unsigned *)opt->value = mask;
}

/* --field and --skip-field, repeatable */
static void field_cb(const struct ftk_option *opt, const char *arg)
{
	struct scrub *sc = opt->value;
	if (!strcmp(opt->long_name, "field")) {
		FTK_ALLOC_GROW(sc->fields, sc->n_fields + 1, sc->alloc_fields);
		sc->fields[sc->n_fields++] = (char *)arg;
	} else {
		FTK_ALLOC_GROW(sc->skip, sc->n_skip + 1, sc->alloc_skip);
		sc->skip[sc->n_skip++] = (char *)arg;
	}
}

static void salt_cb(const struct ftk_option *opt, const char *arg)
{
	if (!*arg)
		ftk_usage_error("--pseudonymize wants a non-empty salt");
	*(const char **)opt->value = arg;
}

static void allow_cb(const struct ftk_option *opt, const char *arg)
{
	load_allow(opt->value, arg);
}

int cmd_scrub(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_line line;
	struct scrub sc;
	struct ftk_pii_opts po = { 0, 0 };
	struct ftk_error err;
	struct strbuf out = STRBUF_INIT;

	int default_skip_on = 1;
	memset(&sc, 0, sizeof(sc));
	sc.t = &t;
	sc.builtin_allow = 1;
	strbuf_init(&sc.rep, 0);
	ftk_tool_init(&t, "ftk-scrub", NULL);
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_CALLBACK(0, "types", &po.types, "LIST", types_cb,
				 "kinds to look for, comma-separated (default all):\n"
				 "EMAIL PHONE IPV4 IPV6 CREDIT_CARD IBAN SSN PRIVATE_KEY\n"
				 "JWT AWS_KEY GITHUB_TOKEN SLACK_TOKEN URL_CREDENTIALS"),
		FTK_OPT_CALLBACK(0, "field", &sc, "PATTERN", field_cb,
				 "look only in these fields (repeatable), e.g.\n"
				 "messages[*].content; default every string value"),
		FTK_OPT_CALLBACK(0, "skip-field", &sc, "PATTERN", field_cb,
				 "never look in these fields (repeatable); added to the\n"
				 "defaults: id, meta, tools (tool definitions)"),
		FTK_OPT_SET_INT(0, "no-default-skip", &default_skip_on, 0, "look in id, meta and tools too"),
		FTK_OPT_CALLBACK(0, "allow", &sc, "FILE", allow_cb,
				 "leave these values alone: one per line, compared\n"
				 "without case; a line @DOMAIN allows every e-mail\n"
				 "address at DOMAIN and its subdomains (repeatable)"),
		FTK_OPT_SET_INT(0, "no-allowlist", &sc.builtin_allow, 0,
				"mask documentation placeholders too: by default\n"
				"e-mail at example.com/.org/.net, .example, .test,\n"
				".invalid and yourdomain-style domains, IPs in\n"
				"192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and\n"
				"2001:db8::/32, and phone numbers 555-0100 to 555-0199\n"
				"are left as they are"),
		FTK_OPT_FLAG(0, "private-ip", &po.private_ip,
			     "also mask private, loopback and link-local addresses"),
		FTK_OPT_CALLBACK(0, "pseudonymize", &sc.salt, "SALT", salt_cb,
				 "replace with <TYPE_hash> tokens (HMAC-SHA256 with SALT)\n"
				 "instead of <TYPE>; the same value gets the same token"),
		FTK_OPT_FLAG(0, "report", &sc.report,
			     "change nothing: write one JSON line per span found\n"
			     "(file, line, field, type, byte offsets, text, context)"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-scrub", opts, usage);
	for (int i = 0; default_skip_on && default_skip[i]; i++) {
		FTK_ALLOC_GROW(sc.skip, sc.n_skip + 1, sc.alloc_skip);
		sc.skip[sc.n_skip++] = (char *)default_skip[i];
	}
	if (sc.report && sc.salt)
		ftk_tool_usage_error(&t, "--report changes nothing: --pseudonymize has no use with it");
	if (ftk_pii_new(&sc.pii, &po, &err) < 0)
		die("%s", err.msg);

	ftk_tool_start(&t, argc, argv);
	uint64_t changed = 0;
	while (ftk_tool_next(&t, &line)) {
		cJSON *rec = ftk_tool_parse(&t, &line);
		if (!rec)
			continue;
		cJSON_Delete(rec);
		sc.line = &line;
		strbuf_reset(&out);
		uint64_t before = 0, after = 0;
		for (int i = 0; i < FTK_PII_NTYPES; i++)
			before += sc.found[i];
		int rc = ftk_fields_walk(line.data, line.len, visit, &sc, sc.report ? NULL : &out,
					 &err);
		if (rc < 0) {
			/* the line parsed as JSON, so this is a bug; keep the record out */
			cJSON *x = cJSON_CreateObject();
			cJSON_AddStringToObject(x, "error", err.msg);
			ftk_tool_reject(&t, &line, "unreadable", x);
			continue;
		}
		for (int i = 0; i < FTK_PII_NTYPES; i++)
			after += sc.found[i];
		changed += after > before;
		if (sc.report)
			continue;
		if (rc > 0) {
			ftk_tool_emit_raw(&t, out.buf, out.len);
		} else {
			ftk_tool_emit(&t, &line);
		}
	}
	if (sc.report)
		t.n_out = 0; /* the output is the report, not records */
	ftk_tool_count(&t, sc.report ? "records-with-pii" : "records-changed", changed);
	for (int i = 0; i < FTK_PII_NTYPES; i++)
		if (sc.found[i])
			ftk_tool_count(&t, ftk_pii_type_name(i), sc.found[i]);
	if (sc.kept)
		ftk_tool_count(&t, "allowed-kept", sc.kept);
	int ret = ftk_tool_finish(&t);
	for (size_t i = 0; i < sc.n_allow; i++)
		free(sc.allow[i]);
	free(sc.allow);
	ftk_pii_free(sc.pii);
	free(sc.fields);
	free(sc.skip);
	strbuf_release(&out);
	strbuf_release(&sc.rep);
	return ret;
}
