/*
 * normalize.c: text normalization and word splitting (see normalize.h).
 *
 * Most training text is ASCII, and these functions run on every record of
 * a dedupe, so ASCII takes a table lookup per byte and only other code
 * points pay for utf8proc (decoding, the category lookup, case mapping).
 * NFC composition runs first, over the whole text, and only when the text
 * holds a non-ASCII byte: pure ASCII is already in NFC.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "normalize.h"
#include "stream.h"

enum { C_WORD = 0, C_SPACE = 1, C_PUNCT = 2 };

/* Class of an ASCII byte: white space and control characters, punctuation and symbols, the rest. */
static unsigned char ascii_class[128];
static pthread_once_t ascii_once = PTHREAD_ONCE_INIT;

static void ascii_fill(void)
{
	for (int c = 0; c < 128; c++) {
		if (c < 0x20 || c == ' ' || c == 0x7f)
			ascii_class[c] = C_SPACE;
		else if ((c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
			 (c >= '{' && c <= '~'))
			ascii_class[c] = C_PUNCT;
		else
			ascii_class[c] = C_WORD;
	}
}

/* Threads sign records in parallel: fill the table exactly once. */
static void ascii_init(void)
{
	pthread_once(&ascii_once, ascii_fill);
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

/*
 * NFC of s into a new buffer, composing only around non-ASCII bytes: an
 * ASCII character is a starter that nothing before it composes with, so
 * each run of non-ASCII bytes, together with the one ASCII character before
 * it (a combining mark may compose with it), is a segment that can be
 * normalized alone.  Most text is ASCII with a few curly quotes; this keeps
 * it from paying utf8proc's price on every character.
 */
static int nfc(const char *s, size_t len, struct strbuf *out)
{
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		while (j < len && (unsigned char)s[j] < 0x80)
			j++;
		if (j == len) {
			strbuf_add(out, s + i, j - i);
			break;
		}
		/* s[j] starts a non-ASCII run; keep the ASCII character before it with it */
		size_t seg = j > i ? j - 1 : j;
		strbuf_add(out, s + i, seg - i);
		size_t k = j;
		while (k < len && (unsigned char)s[k] >= 0x80)
			k++;
		utf8proc_uint8_t *dst = NULL;
		utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s + seg,
						  (utf8proc_ssize_t)(k - seg), &dst,
						  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
		if (n < 0)
			return (int)n;
		strbuf_add(out, dst, (size_t)n);
		free(dst);
		i = k;
	}
	return 0;
}

/*
 * Open a word at the output position (ws may be NULL).  With the space step
 * every separator is one ' ' written just before the next word, so words
 * can be recorded as they are written.
 */
#define WORD_START()                                                                \
	do {                                                                        \
		if (ws) {                                                           \
			FTK_ALLOC_GROW(ws->w, ws->n + 1, ws->alloc);                \
			ws->w[ws->n].off = (uint32_t)(o - o0);                      \
			ws->w[ws->n].len = 0;                                       \
			ws->n++;                                                    \
		}                                                                   \
	} while (0)
#define WORD_END()                                                                  \
	do {                                                                        \
		if (ws && ws->n)                                                    \
			ws->w[ws->n - 1].len = (uint32_t)((o - o0) - ws->w[ws->n - 1].off); \
	} while (0)

static int normalize(const char *s, size_t len, unsigned flags, struct strbuf *out,
		     struct ftk_words *ws, struct ftk_error *err)
{
	struct strbuf composed = STRBUF_INIT;
	const unsigned char *p = (const unsigned char *)s, *end;
	int pending_space = 0;
	size_t start = out->len;

	ascii_init();
	long bad = ftk_utf8_check(s, len);
	if (bad >= 0)
		return ftk_error_msg(err, FTK_EUTF8, "invalid UTF-8 at byte %ld", bad + 1);
	if ((flags & FTK_NORM_NFC) && has_non_ascii(s, len)) {
		int rc = nfc(s, len, &composed);
		if (rc < 0) {
			strbuf_release(&composed);
			return ftk_error_msg(err, FTK_EUTF8, "cannot normalize text: %s",
					     utf8proc_errmsg(rc));
		}
		p = (const unsigned char *)composed.buf;
		len = composed.len;
	}
	end = p + len;
	/* lower-casing may turn a 2-byte character into 3 bytes: room for twice the input */
	strbuf_grow(out, 2 * len + 4);
	unsigned char *o = (unsigned char *)out->buf + out->len;
	const unsigned char *o0 = (const unsigned char *)out->buf + start;
	const int lower = flags & FTK_NORM_CASE, punct = flags & FTK_NORM_PUNCT,
		  space = flags & FTK_NORM_SPACE;
	/* ASCII under these flags: the byte to write, or 0 for a separator */
	unsigned char fast[128];
	for (int c = 0; c < 128; c++) {
		int cls = ascii_class[c];
		if (cls == C_PUNCT && !punct)
			cls = C_WORD;
		fast[c] = cls != C_WORD ? 0 : lower && c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32)
									    : (unsigned char)c;
	}
	while (p < end) {
		utf8proc_int32_t cp;
		int cls;
		const unsigned char *cstart = p;
		if (space && !ws && *p < 0x80) {
			/*
			 * Runs of ASCII with space collapsing and no words to record
			 * (exact keys): branch-free, since word boundaries every few
			 * bytes would mispredict.  A space is written (and kept)
			 * before a word character that follows a separator once
			 * something has been written; the byte itself is written and
			 * kept when it is a word character.
			 */
			unsigned started = o > o0, pend = (unsigned)pending_space;
			do {
				unsigned char m = fast[*p++];
				unsigned w = m != 0;
				*o = ' ';
				o += w & pend & started;
				*o = m;
				o += w;
				started |= w;
				pend = !w;
			} while (p < end && *p < 0x80);
			pending_space = (int)pend;
			continue;
		}
		if (*p < 0x80 && fast[*p]) {
			/* a run of ASCII word characters, the common case */
			if (pending_space && o > o0) {
				WORD_END();
				*o++ = ' ';
				WORD_START();
			} else if (o == o0) {
				WORD_START();
			}
			pending_space = 0;
			do
				*o++ = fast[*p++];
			while (p < end && *p < 0x80 && fast[*p]);
			continue;
		}
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
		if (cls == C_PUNCT && !punct)
			cls = C_WORD;
		if (cls != C_WORD) {
			if (space) {
				pending_space = 1;
			} else if (cls == C_PUNCT) {
				*o++ = ' ';	/* removed punctuation still separates words */
			} else {
				memcpy(o, cstart, (size_t)(p - cstart));
				o += p - cstart;
			}
			continue;
		}
		if (pending_space && o > o0) {
			WORD_END();
			*o++ = ' ';
			WORD_START();
		} else if (o == o0) {
			WORD_START();
		}
		pending_space = 0;
		if (lower) {
			o += utf8proc_encode_char(utf8proc_tolower(cp), o);
		} else {
			memcpy(o, cstart, (size_t)(p - cstart));
			o += p - cstart;
		}
	}
	WORD_END();
	strbuf_setlen(out, (size_t)(o - (unsigned char *)out->buf));
	strbuf_release(&composed);
	return 0;
}

int ftk_normalize(const char *s, size_t len, unsigned flags, struct strbuf *out,
		  struct ftk_error *err)
{
	return normalize(s, len, flags, out, NULL, err);
}

long ftk_normalize_words(const char *s, size_t len, unsigned flags, struct ftk_words *ws,
			 struct ftk_error *err)
{
	ws->n = 0;
	strbuf_reset(&ws->joined);
	if (!(flags & FTK_NORM_SPACE)) {
		struct strbuf tmp = STRBUF_INIT;
		int rc = normalize(s, len, flags, &tmp, NULL, err);
		if (rc == 0)
			ftk_words_split(ws, tmp.buf, tmp.len);
		strbuf_release(&tmp);
		return rc < 0 ? rc : (long)ws->n;
	}
	if (len > UINT32_MAX / 2)
		return ftk_error_msg(err, FTK_ELIMIT, "text of %zu bytes is too long to split", len);
	int rc = normalize(s, len, flags, &ws->joined, ws, err);
	return rc < 0 ? rc : (long)ws->n;
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

/* Is the character at p (before end) white space?  *k gets its length. */
static int space_at(const unsigned char *p, const unsigned char *end, size_t *k)
{
	if (*p < 0x80) {
		*k = 1;
		return ascii_class[*p] == C_SPACE;
	}
	utf8proc_int32_t cp;
	utf8proc_ssize_t n = utf8proc_iterate(p, end - p, &cp);
	if (n <= 0) {
		*k = 1;
		return 0;	/* invalid bytes count as word characters */
	}
	*k = (size_t)n;
	return cp_class(cp) == C_SPACE;
}

size_t ftk_words_split(struct ftk_words *ws, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	size_t k;

	ascii_init();
	ws->n = 0;
	strbuf_reset(&ws->joined);
	strbuf_grow(&ws->joined, len + 1);
	char *o = ws->joined.buf;	/* the joined form is never longer than the text */
	for (;;) {
		while (p < end && space_at(p, end, &k))
			p += k;
		if (p >= end)
			break;
		const unsigned char *w = p;
		while (p < end) {
			if (*p < 0x80) {
				if (ascii_class[*p] == C_SPACE)
					break;
				p++;
			} else if (space_at(p, end, &k)) {
				break;
			} else {
				p += k;
			}
		}
		size_t wl = (size_t)(p - w), off = (size_t)(o - ws->joined.buf) + (ws->n ? 1 : 0);
		if (off + wl > UINT32_MAX)
			break;
		if (ws->n)
			*o++ = ' ';
		FTK_ALLOC_GROW(ws->w, ws->n + 1, ws->alloc);
		ws->w[ws->n].off = (uint32_t)off;
		ws->w[ws->n].len = (uint32_t)wl;
		memcpy(o, w, wl);
		o += wl;
		ws->n++;
	}
	strbuf_setlen(&ws->joined, (size_t)(o - ws->joined.buf));
	return ws->n;
}
