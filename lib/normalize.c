/*
 * normalize.c: text normalization and word splitting (see normalize.h).
 *
 * Most training text is ASCII, and these functions run on every record of
 * a dedupe, so ASCII takes a table lookup per byte and only other code
 * points pay for utf8proc (decoding, the category lookup, case mapping).
 * NFC composition runs first, over the whole text, and only when the text
 * holds a non-ASCII byte: pure ASCII is already in NFC.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "normalize.h"
#include "stream.h"

enum { C_WORD = 0, C_SPACE = 1, C_PUNCT = 2 };

/* Class of an ASCII byte: white space and control characters, punctuation and symbols, the rest. */
static unsigned char ascii_class[128];
static int ascii_ready;

static void ascii_init(void)
{
	if (ascii_ready)
		return;
	for (int c = 0; c < 128; c++) {
		if (c < 0x20 || c == ' ' || c == 0x7f)
			ascii_class[c] = C_SPACE;
		else if ((c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
			 (c >= '{' && c <= '~'))
			ascii_class[c] = C_PUNCT;
		else
			ascii_class[c] = C_WORD;
	}
	ascii_ready = 1;
}

static int cp_class(utf8proc_int32_t cp)
{
	if (cp < 128)
		return ascii_class[cp];
	switch (utf8proc_category(cp)) {
	case UTF8PROC_CATEGORY_ZS:
	case UTF8PROC_CATEGORY_ZL:
	case UTF8PROC_CATEGORY_ZP:
	case UTF8PROC_CATEGORY_CC:
		return C_SPACE;
	case UTF8PROC_CATEGORY_PC:
	case UTF8PROC_CATEGORY_PD:
	case UTF8PROC_CATEGORY_PS:
	case UTF8PROC_CATEGORY_PE:
	case UTF8PROC_CATEGORY_PI:
	case UTF8PROC_CATEGORY_PF:
	case UTF8PROC_CATEGORY_PO:
	case UTF8PROC_CATEGORY_SM:
	case UTF8PROC_CATEGORY_SC:
	case UTF8PROC_CATEGORY_SK:
	case UTF8PROC_CATEGORY_SO:
		return C_PUNCT;
	default:
		return C_WORD;
	}
}

static const struct {
	const char *name;
	unsigned flag;
} steps[] = {
	{ "nfc", FTK_NORM_NFC },
	{ "case", FTK_NORM_CASE },
	{ "punct", FTK_NORM_PUNCT },
	{ "space", FTK_NORM_SPACE },
};

int ftk_normalize_parse(const char *spec, unsigned *flags, struct ftk_error *err)
{
	unsigned f = 0;
	const char *p = spec;
	if (!strcmp(spec, "none")) {
		*flags = 0;
		return 0;
	}
	if (!strcmp(spec, "all")) {
		*flags = FTK_NORM_ALL;
		return 0;
	}
	while (*p) {
		size_t n = strcspn(p, ",");
		size_t i;
		for (i = 0; i < FTK_ARRAY_SIZE(steps); i++)
			if (strlen(steps[i].name) == n && !strncmp(p, steps[i].name, n))
				break;
		if (i == FTK_ARRAY_SIZE(steps))
			return ftk_error_msg(err, FTK_EUSAGE,
					     "unknown normalization '%.*s' (known: nfc, case, punct, space, all, none)",
					     (int)n, p);
		f |= steps[i].flag;
		p += n;
		if (*p == ',')
			p++;
	}
	*flags = f;
	return 0;
}

char *ftk_normalize_name(unsigned flags, char *buf, size_t n)
{
	size_t used = 0;
	if (n)
		buf[0] = 0;
	for (size_t i = 0; i < FTK_ARRAY_SIZE(steps); i++) {
		if (!(flags & steps[i].flag))
			continue;
		int w = snprintf(buf + used, n > used ? n - used : 0, "%s%s", used ? "," : "",
				 steps[i].name);
		if (w > 0)
			used += (size_t)w;
	}
	if (!used)
		snprintf(buf, n, "none");
	return buf;
}

static int has_non_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 1;
	return 0;
}

int ftk_normalize(const char *s, size_t len, unsigned flags, struct strbuf *out,
		  struct ftk_error *err)
{
	utf8proc_uint8_t *composed = NULL;
	const unsigned char *p = (const unsigned char *)s, *end;
	int pending_space = 0;
	size_t start = out->len;

	ascii_init();
	long bad = ftk_utf8_check(s, len);
	if (bad >= 0)
		return ftk_error_msg(err, FTK_EUTF8, "invalid UTF-8 at byte %ld", bad + 1);
	if ((flags & FTK_NORM_NFC) && has_non_ascii(s, len)) {
		utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len,
						  &composed, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
		if (n < 0)
			return ftk_error_msg(err, FTK_EUTF8, "cannot normalize text: %s",
					     utf8proc_errmsg(n));
		p = composed;
		len = (size_t)n;
	}
	end = p + len;
	strbuf_grow(out, len);
	while (p < end) {
		utf8proc_int32_t cp;
		int cls;
		const unsigned char *cstart = p;
		if (*p < 0x80) {
			cp = *p++;
			cls = ascii_class[cp];
		} else {
			utf8proc_ssize_t k = utf8proc_iterate(p, end - p, &cp);
			if (k <= 0) {	/* cannot happen after the check; be safe */
				cp = 0xFFFD;
				k = 1;
			}
			p += k;
			cls = cp_class(cp);
		}
		if (cls == C_PUNCT && !(flags & FTK_NORM_PUNCT))
			cls = C_WORD;
		if (cls != C_WORD) {
			if (flags & FTK_NORM_SPACE)
				pending_space = 1;
			else if (cls == C_PUNCT)
				strbuf_addch(out, ' ');	/* removed punctuation still separates words */
			else
				strbuf_add(out, cstart, p - cstart);
			continue;
		}
		if (pending_space && out->len > start)
			strbuf_addch(out, ' ');
		pending_space = 0;
		if (flags & FTK_NORM_CASE) {
			if (cp < 128) {
				strbuf_addch(out, cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
			} else {
				utf8proc_uint8_t enc[4];
				utf8proc_ssize_t k = utf8proc_encode_char(utf8proc_tolower(cp), enc);
				strbuf_add(out, enc, (size_t)k);
			}
		} else {
			strbuf_add(out, cstart, p - cstart);
		}
	}
	free(composed);
	return 0;
}

void ftk_words_init(struct ftk_words *ws)
{
	memset(ws, 0, sizeof(*ws));
	strbuf_init(&ws->joined, 0);
}

void ftk_words_release(struct ftk_words *ws)
{
	if (!ws)
		return;
	free(ws->w);
	strbuf_release(&ws->joined);
	memset(ws, 0, sizeof(*ws));
}

size_t ftk_words_split(struct ftk_words *ws, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	const unsigned char *wstart = NULL;

	ascii_init();
	ws->n = 0;
	strbuf_reset(&ws->joined);
	strbuf_grow(&ws->joined, len + 1);
	for (;;) {
		int space = 1;
		const unsigned char *cstart = p;
		if (p < end) {
			if (*p < 0x80) {
				space = ascii_class[*p] == C_SPACE;
				p++;
			} else {
				utf8proc_int32_t cp;
				utf8proc_ssize_t k = utf8proc_iterate(p, end - p, &cp);
				if (k <= 0) {
					k = 1;
					space = 0;
				} else {
					space = cp_class(cp) == C_SPACE;
				}
				p += k;
			}
		}
		if (!space && !wstart)
			wstart = cstart;
		if (space && wstart) {
			size_t wl = (size_t)(cstart - wstart);
			if (ws->joined.len + wl + 1 > UINT32_MAX)
				break;
			if (ws->n)
				strbuf_addch(&ws->joined, ' ');
			FTK_ALLOC_GROW(ws->w, ws->n + 1, ws->alloc);
			ws->w[ws->n].off = (uint32_t)ws->joined.len;
			ws->w[ws->n].len = (uint32_t)wl;
			strbuf_add(&ws->joined, wstart, wl);
			ws->n++;
			wstart = NULL;
		}
		if (cstart >= end)
			break;
	}
	return ws->n;
}
