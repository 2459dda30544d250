/*
 * pii.c: PII and secret detectors (see pii.h).
 *
 * Every detector is a pattern plus a check.  The pattern is written to find
 * the candidate with its natural boundaries (lookarounds keep "a1234" or
 * "x.192.168.0.1" from matching inside a longer token); the check does what a
 * regular expression cannot: Luhn and issuer prefixes for cards, mod-97 and
 * the country length for IBANs, inet_pton for addresses, the SSA's rules for
 * SSNs, base64url-decoding a JWT header.  A detector whose key characters do
 * not occur in the text ('@' for e-mail, "://" for URLs, "-----BEGIN" for
 * keys) is not run at all, which is most of what keeps ftk-scrub fast on
 * ordinary prose.
 *
 * Overlaps are settled by a fixed priority (pii.h) and then by length.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "prep/pii.h"

static const char *const type_names[FTK_PII_NTYPES] = {
	"EMAIL", "PHONE", "IPV4", "IPV6", "CREDIT_CARD", "IBAN", "SSN", "PRIVATE_KEY", "JWT",
	"AWS_KEY", "GITHUB_TOKEN", "SLACK_TOKEN", "URL_CREDENTIALS",
};

/* Higher wins an overlap. */
static const int priority[FTK_PII_NTYPES] = {
	[FTK_PII_PRIVATE_KEY] = 13, [FTK_PII_JWT] = 12, [FTK_PII_URL_CREDENTIALS] = 11,
	[FTK_PII_GITHUB_TOKEN] = 10, [FTK_PII_SLACK_TOKEN] = 10, [FTK_PII_AWS_KEY] = 10,
	[FTK_PII_EMAIL] = 9, [FTK_PII_IBAN] = 8, [FTK_PII_CREDIT_CARD] = 7, [FTK_PII_IPV6] = 6,
	[FTK_PII_SSN] = 5, [FTK_PII_IPV4] = 4, [FTK_PII_PHONE] = 3,
};

const char *ftk_pii_type_name(int type)
{
	return type >= 0 && type < FTK_PII_NTYPES ? type_names[type] : "UNKNOWN";
}

int ftk_pii_type_parse(const char *name)
{
	for (int i = 0; i < FTK_PII_NTYPES; i++)
		if (!strcasecmp(name, type_names[i]))
			return i;
	return -1;
}

/* ------------------------------------------------------------ patterns */

enum check {
	CK_NONE, CK_EMAIL, CK_PHONE, CK_IPV4, CK_IPV6, CK_CARD, CK_IBAN, CK_SSN, CK_JWT,
	CK_URL, CK_DIGITS_LABEL,
};

struct pattern {
	int type;
	enum check check;
	int group;		/* capture group that is the span (0: whole match) */
	const char *prefilter;	/* strings one of which must occur, '|' between (NULL: none) */
	int prefilter_ci;	/* 1: compare the prefilter case-insensitively; 2: has_aws_prefix */
	const char *re;
};

#define B_ALNUM "A-Za-z0-9"
static const struct pattern patterns[] = {
	{ FTK_PII_PRIVATE_KEY, CK_NONE, 0, "-----BEGIN", 0,
	  "-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[\\s\\S]*?"
	  "(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\\z)" },
	{ FTK_PII_JWT, CK_JWT, 0, "eyJ", 0,
	  "(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{16,}"
	  "(?![A-Za-z0-9_-])" },
	{ FTK_PII_URL_CREDENTIALS, CK_URL, 1, "://", 0,
	  "(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://"
	  "([^\\s/?#@:\"'<>]*:[^\\s/?#@\"'<>]+)@[A-Za-z0-9.\\[\\]:_-]+" },
	{ FTK_PII_GITHUB_TOKEN, CK_NONE, 0, "gh|hub_pat_", 0,
	  "(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,76}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})"
	  "(?![A-Za-z0-9_])" },
	{ FTK_PII_SLACK_TOKEN, CK_NONE, 0, "xox|xapp-", 0,
	  "(?<![A-Za-z0-9-])(?:xox[abposre]-[0-9]{6,15}-[A-Za-z0-9-]{8,250}[A-Za-z0-9]"
	  "|xapp-[0-9]-[A-Z0-9]{6,15}-[0-9]{6,15}-[a-f0-9]{20,80})(?![A-Za-z0-9-])" },
	{ FTK_PII_AWS_KEY, CK_NONE, 0, NULL, 2, /* has_aws_prefix */
	  "(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)"
	  "[A-Z2-7]{16}(?![A-Za-z0-9])" },
	{ FTK_PII_AWS_KEY, CK_NONE, 1, "ecret|ECRET", 0,
	  "(?i:aws[A-Za-z_ .-]{0,20}secret[A-Za-z_ .-]{0,20}?)[\\s\"':=]{1,6}"
	  "([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])" },
	{ FTK_PII_EMAIL, CK_EMAIL, 0, "@", 0,
	  "(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
	  "@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])" },
	{ FTK_PII_IBAN, CK_IBAN, 0, NULL, 0,
	  "(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])" },
	{ FTK_PII_CREDIT_CARD, CK_CARD, 0, NULL, 0,
	  "(?<![0-9A-Za-z.-])(?:[0-9]{4}([ -]?)[0-9]{4}\\1[0-9]{4}\\1[0-9]{1,7}"
	  "|3[47][0-9]{2}([ -]?)[0-9]{6}\\2[0-9]{5}"
	  "|3(?:0[0-5]|[689][0-9])[0-9]([ -]?)[0-9]{6}\\3[0-9]{4})"
	  "(?![0-9A-Za-z]|[.-][0-9])" },
	{ FTK_PII_IPV6, CK_IPV6, 0, ":", 0,
	  "(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{1,4}:|::?)(?:[0-9A-Fa-f]{0,4}:){1,7}"
	  "(?:(?:[0-9]{1,3}\\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?(?:%[A-Za-z0-9]{1,15})?"
	  "(?![A-Za-z0-9_:]|\\.[0-9])" },
	{ FTK_PII_SSN, CK_SSN, 0, NULL, 0,
	  "(?<![0-9A-Za-z.-])(?<![0-9][ -])[0-9]{3}([- ])[0-9]{2}\\1[0-9]{4}(?![0-9A-Za-z]|[.-][0-9])" },
	{ FTK_PII_SSN, CK_SSN, 1, "ssn|SSN|Ssn|ocial|OCIAL", 0,
	  "(?<![A-Za-z0-9_])(?i:ssn|social security(?: number| no\\.?)?)[\\s:#.]{1,4}([0-9]{9})(?![0-9A-Za-z])" },
	{ FTK_PII_IPV4, CK_IPV4, 0, ".", 0,
	  "(?<![A-Za-z0-9_.-])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}"
	  "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?![A-Za-z0-9_]|\\.[0-9])" },
	{ FTK_PII_PHONE, CK_PHONE, 0, NULL, 0,
	  "(?<![0-9A-Za-z+_./-])(?<![0-9][ .-])(?:"
	  /* international: +CC then groups */
	  "\\+[1-9][0-9]{0,2}(?:[ .-]?\\(0\\))?(?:[ .-]?\\(?[0-9]{1,4}\\)?)?(?:[ .-]?[0-9]{2,8}){1,5}"
	  "|(?:\\+?1[ .-]?)?(?:\\([2-9][0-9]{2}\\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}"
	  "|00[1-9][0-9]{0,2}(?:[ .-][0-9]{1,5}){2,5}"
	  "|\\(?0[1-9][0-9]{0,4}\\)?(?:[ -][0-9]{2,8}){1,4}"
	  ")(?![0-9A-Za-z_]|[.-][0-9])" },
	{ FTK_PII_PHONE, CK_DIGITS_LABEL, 1, NULL, 0,
	  "(?<![A-Za-z0-9_])(?i:phone|tel|telephone|mobile|cell|fax|call|whatsapp|sms)[\\s.:#]{1,4}"
	  "((?:\\+|00)?[0-9](?:[ .-]?[0-9]){6,14})(?![0-9A-Za-z])" },
};
#define N_PATTERNS FTK_ARRAY_SIZE(patterns)

struct ftk_pii {
	struct ftk_pii_opts opts;
	pcre2_code *re[N_PATTERNS];
	pcre2_match_data *md[N_PATTERNS];
	pcre2_jit_stack *jit_stack;	/* room for long texts (the default is 32 KiB) */
	pcre2_match_context *mctx;
	struct ftk_pii_span *cand, *out;
	size_t n_cand, alloc_cand, alloc_out;
};

int ftk_pii_new(struct ftk_pii **out, const struct ftk_pii_opts *opts, struct ftk_error *err)
{
	struct ftk_pii *p = xcalloc(1, sizeof(*p));
	if (opts)
		p->opts = *opts;
	for (size_t i = 0; i < N_PATTERNS; i++) {
		if (p->opts.types && !(p->opts.types & (1u << patterns[i].type)))
			continue;
		int ec;
		PCRE2_SIZE off;
		p->re[i] = pcre2_compile((PCRE2_SPTR)patterns[i].re, PCRE2_ZERO_TERMINATED,
					 PCRE2_UTF, &ec, &off, NULL);
		if (!p->re[i]) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(ec, msg, sizeof(msg));
			ftk_error_msg(err, FTK_EDATA, "pattern for %s does not compile at %zu: %s",
				      type_names[patterns[i].type], (size_t)off, (char *)msg);
			ftk_pii_free(p);
			return FTK_EDATA;
		}
		pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE);
		p->md[i] = pcre2_match_data_create_from_pattern(p->re[i], NULL);
	}
	p->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
	p->mctx = pcre2_match_context_create(NULL);
	if (p->jit_stack && p->mctx)
		pcre2_jit_stack_assign(p->mctx, NULL, p->jit_stack);
	*out = p;
	return 0;
}

void ftk_pii_free(struct ftk_pii *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < N_PATTERNS; i++) {
		pcre2_match_data_free(p->md[i]);
		pcre2_code_free(p->re[i]);
	}
	pcre2_match_context_free(p->mctx);
	pcre2_jit_stack_free(p->jit_stack);
	free(p->cand);
	free(p->out);
	free(p);
}

/* ------------------------------------------------------------ checks */

int ftk_pii_luhn(const char *s, size_t n)
{
	int sum = 0, dbl = 0, nd = 0;
	for (size_t i = n; i-- > 0;) {
		if (s[i] < '0' || s[i] > '9')
			continue;
		int d = s[i] - '0';
		if (dbl) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
		dbl = !dbl;
		nd++;
	}
	return nd > 1 && sum % 10 == 0;
}

static const struct {
	char cc[3];
	unsigned char len;
} iban_len[] = {
	{ "AD", 24 }, { "AE", 23 }, { "AL", 28 }, { "AT", 20 }, { "AZ", 28 }, { "BA", 20 },
	{ "BE", 16 }, { "BG", 22 }, { "BH", 22 }, { "BR", 29 }, { "BY", 28 }, { "CH", 21 },
	{ "CR", 22 }, { "CY", 28 }, { "CZ", 24 }, { "DE", 22 }, { "DK", 18 }, { "DO", 28 },
	{ "EE", 20 }, { "EG", 29 }, { "ES", 24 }, { "FI", 18 }, { "FO", 18 }, { "FR", 27 },
	{ "GB", 22 }, { "GE", 22 }, { "GI", 23 }, { "GL", 18 }, { "GR", 27 }, { "GT", 28 },
	{ "HR", 21 }, { "HU", 28 }, { "IE", 22 }, { "IL", 23 }, { "IQ", 23 }, { "IS", 26 },
	{ "IT", 27 }, { "JO", 30 }, { "KW", 30 }, { "KZ", 20 }, { "LB", 28 }, { "LC", 32 },
	{ "LI", 21 }, { "LT", 20 }, { "LU", 20 }, { "LV", 21 }, { "MC", 27 }, { "MD", 24 },
	{ "ME", 22 }, { "MK", 19 }, { "MR", 27 }, { "MT", 31 }, { "MU", 30 }, { "NL", 18 },
	{ "NO", 15 }, { "PK", 24 }, { "PL", 28 }, { "PS", 29 }, { "PT", 25 }, { "QA", 29 },
	{ "RO", 24 }, { "RS", 22 }, { "SA", 24 }, { "SC", 31 }, { "SE", 24 }, { "SI", 19 },
	{ "SK", 24 }, { "SM", 27 }, { "ST", 25 }, { "SV", 28 }, { "TL", 23 }, { "TN", 24 },
	{ "TR", 26 }, { "UA", 29 }, { "VA", 22 }, { "VG", 24 }, { "XK", 20 },
};

int ftk_pii_iban(const char *s, size_t n)
{
	char c[40];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ')
			continue;
		if (!isalnum((unsigned char)s[i]) || k >= sizeof(c))
			return 0;
		c[k++] = (char)toupper((unsigned char)s[i]);
	}
	if (k < 5 || !isupper((unsigned char)c[0]) || !isupper((unsigned char)c[1]) ||
	    !isdigit((unsigned char)c[2]) || !isdigit((unsigned char)c[3]))
		return 0;
	size_t want = 0;
	for (size_t i = 0; i < FTK_ARRAY_SIZE(iban_len); i++)
		if (c[0] == iban_len[i].cc[0] && c[1] == iban_len[i].cc[1])
			want = iban_len[i].len;
	if (want != k)
		return 0;
	/* move the first four to the end, letters to 10..35, mod 97 digit by digit */
	unsigned rem = 0;
	for (size_t j = 0; j < k; j++) {
		char ch = c[(j + 4) % k];
		if (isdigit((unsigned char)ch))
			rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
		else
			rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
	}
	return rem == 1;
}

static size_t digits_of(const char *s, size_t n, char *out, size_t cap)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] >= '0' && s[i] <= '9') {
			if (k + 1 < cap)
				out[k] = s[i];
			k++;
		}
	if (cap)
		out[k < cap ? k : cap - 1] = 0;
	return k;
}

static int card_brand_ok(const char *d, size_t n)
{
	int p2 = (d[0] - '0') * 10 + (d[1] - '0');
	int p3 = p2 * 10 + (d[2] - '0');
	int p4 = p3 * 10 + (d[3] - '0');
	if (d[0] == '4')
		return n == 13 || n == 16 || n == 19;
	if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))
		return n == 16;
	if (p2 == 34 || p2 == 37)
		return n == 15;
	if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649))
		return n == 16 || n == 19;
	if (p4 >= 3528 && p4 <= 3589)
		return n >= 16 && n <= 19;
	if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39)
		return n >= 14 && n <= 19;
	if (p2 == 62)
		return n >= 16 && n <= 19;
	if (p2 == 50 || (p2 >= 56 && p2 <= 58) || p2 == 63 || p2 == 67)
		return n >= 12 && n <= 19;
	return 0;
}

/*
 * The word just before s[start], skipping separators and a "no"/"number"/
 * "#": is it a label that says the number is something else?
 */
static int labelled_other(const char *s, size_t start)
{
	static const char *const labels[] = {
		"order", "invoice", "tracking", "ref", "reference", "isbn", "isbn-10", "isbn-13",
		"issn", "serial", "version", "ver", "v", "build", "sku", "part", "ticket", "case",
		"po", "item", "model", "release", "doi", "patent", "batch", "lot", "receipt",
		"confirmation", "booking", "transaction", "txn", "id", "upc", "ean", "asin",
	};
	size_t i = start;
	int skipped_word = 0;
	for (;;) {
		while (i > 0 && (s[i - 1] == ' ' || s[i - 1] == ':' || s[i - 1] == '#' ||
				 s[i - 1] == '.' || s[i - 1] == '=' || s[i - 1] == '(' ||
				 s[i - 1] == '\t'))
			i--;
		size_t e = i;
		while (i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '-' ||
				 s[i - 1] == '_'))
			i--;
		size_t wl = e - i;
		if (wl == 0)
			return start > 0 && (s[start - 1] == '#' ||
					     (start > 1 && s[start - 1] == ' ' && s[start - 2] == '#'));
		char w[24];
		if (wl >= sizeof(w))
			return 0;
		for (size_t k = 0; k < wl; k++)
			w[k] = (char)tolower((unsigned char)s[i + k]);
		w[wl] = 0;
		if (!skipped_word && (!strcmp(w, "no") || !strcmp(w, "number") ||
				      !strcmp(w, "num") || !strcmp(w, "nr") || !strcmp(w, "code"))) {
			skipped_word = 1;
			continue;
		}
		for (size_t k = 0; k < FTK_ARRAY_SIZE(labels); k++)
			if (!strcmp(w, labels[k]))
				return 1;
		/* "v1.2.3.4": the v is glued to the number */
		return 0;
	}
}

static int ipv4_private(const unsigned char a[4])
{
	return a[0] == 10 || a[0] == 127 || a[0] == 0 || (a[0] == 172 && (a[1] & 0xF0) == 16) ||
	       (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254) ||
	       (a[0] == 100 && (a[1] & 0xC0) == 64) || a[0] >= 224;
}

/*
 * Is s[st] inside an IBAN-like code ("NL09 PLIY 0305 8931 35", one whose
 * check failed)?  Then the digits there are not a phone or card number.
 */
static int iban_tail(const char *s, size_t st)
{
	size_t b = st;
	while (b > 0 && st - b < 34 && (isupper((unsigned char)s[b - 1]) ||
					isdigit((unsigned char)s[b - 1]) || s[b - 1] == ' '))
		b--;
	while (b < st && s[b] == ' ')
		b++;
	return st - b >= 4 && isupper((unsigned char)s[b]) && isupper((unsigned char)s[b + 1]) &&
	       isdigit((unsigned char)s[b + 2]) && isdigit((unsigned char)s[b + 3]);
}

static int check_ipv4(const struct ftk_pii *p, const char *s, size_t st, size_t en)
{
	char buf[20];
	unsigned char a[4];
	if (en - st >= sizeof(buf))
		return 0;
	memcpy(buf, s + st, en - st);
	buf[en - st] = 0;
	if (inet_pton(AF_INET, buf, a) != 1)
		return 0;
	if (st > 0 && (s[st - 1] == 'v' || s[st - 1] == 'V'))
		return 0;
	if (labelled_other(s, st))
		return 0;
	if (!p->opts.private_ip && ipv4_private(a))
		return 0;
	return 1;
}

static int check_ipv6(const struct ftk_pii *p, const char *s, size_t st, size_t en)
{
	char buf[64];
	unsigned char a[16];
	size_t n = en - st;
	const char *pct = memchr(s + st, '%', n);
	if (pct)
		n = (size_t)(pct - (s + st));
	if (n >= sizeof(buf) || n < 3)
		return 0;
	memcpy(buf, s + st, n);
	buf[n] = 0;
	if (!strpbrk(buf, "0123456789"))
		return 0; /* "dead::beef" in code, "add::" */
	if (inet_pton(AF_INET6, buf, a) != 1)
		return 0;
	if (!p->opts.private_ip) {
		static const unsigned char zero[16];
		int v4mapped = !memcmp(a, zero, 10) && a[10] == 0xFF && a[11] == 0xFF;
		if (!memcmp(a, zero, 15))	/* :: and ::1 */
			return 0;
		if ((a[0] & 0xFE) == 0xFC || (a[0] == 0xFE && (a[1] & 0xC0) == 0x80) || a[0] == 0xFF)
			return 0;
		if (v4mapped && ipv4_private(a + 12))
			return 0;
	}
	return 1;
}

static int check_email(const char *s, size_t n, size_t st, size_t en)
{
	/* scheme://user@host is a URL's user name, not an address */
	if (st >= 3 && !memcmp(s + st - 3, "://", 3))
		return 0;
	/* git@github.com:org/repo.git is an SSH remote, not an address */
	if (en + 1 < n && s[en] == ':' && (isalnum((unsigned char)s[en + 1]) || s[en + 1] == '~'))
		return 0;
	static const char *const not_tld[] = { "png", "jpg", "jpeg", "gif", "svg", "webp", "ico",
					       "bmp", "tif", "tiff", "js", "css", "map" };
	const char *dot = s + en;
	while (dot > s + st && dot[-1] != '.')
		dot--;
	size_t tl = (size_t)(s + en - dot);
	for (size_t k = 0; k < FTK_ARRAY_SIZE(not_tld); k++)
		if (strlen(not_tld[k]) == tl && !strncasecmp(dot, not_tld[k], tl))
			return 0;
	return 1;
}

static int check_phone(const char *s, size_t st, size_t en, int labelled)
{
	char d[32];
	size_t nd = digits_of(s + st, en - st, d, sizeof(d));
	if (nd < 7 || nd > 15)
		return 0;
	if (!labelled && s[st] == '+' && nd < 8)
		return 0;
	if (!labelled && s[st] == '0' && s[st + 1] != '0' && (nd < 9 || nd > 12))
		return 0;
	size_t same = 0;
	for (size_t i = 0; i < nd && i < sizeof(d) - 1; i++)
		same += d[i] == d[0];
	if (same == nd)
		return 0;
	if (!labelled && labelled_other(s, st))
		return 0;
	return !iban_tail(s, st);
}

static int check_card(const char *s, size_t st, size_t en)
{
	char d[32];
	size_t nd = digits_of(s + st, en - st, d, sizeof(d));
	if (nd < 12 || nd > 19)
		return 0;
	if (!card_brand_ok(d, nd) || !ftk_pii_luhn(d, nd))
		return 0;
	return !labelled_other(s, st) && !iban_tail(s, st);
}

static int check_ssn(const char *s, size_t st, size_t en)
{
	char d[16];
	if (digits_of(s + st, en - st, d, sizeof(d)) != 9)
		return 0;
	int area = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
	if (area == 0 || area == 666 || area >= 900)
		return 0;
	if (d[3] == '0' && d[4] == '0')
		return 0;
	if (!memcmp(d + 5, "0000", 4))
		return 0;
	return !labelled_other(s, st);
}

static int b64url_val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-' || c == '_')
		return c == '-' ? 62 : 63;
	return -1;
}

static int check_jwt(const char *s, size_t st, size_t en)
{
	char hdr[96];
	size_t k = 0;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = st; i < en && s[i] != '.' && k + 1 < sizeof(hdr); i++) {
		int v = b64url_val((unsigned char)s[i]);
		if (v < 0)
			return 0;
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			hdr[k++] = (char)(acc >> bits & 0xFF);
		}
	}
	hdr[k] = 0;
	return hdr[0] == '{' && (strstr(hdr, "\"alg\"") || strstr(hdr, "\"typ\""));
}

static int check_iban(const char *s, size_t st, size_t *en)
{
	/* the pattern may run into a following word: try the country's exact length */
	size_t want = 0;
	for (size_t i = 0; i < FTK_ARRAY_SIZE(iban_len); i++)
		if (s[st] == iban_len[i].cc[0] && s[st + 1] == iban_len[i].cc[1])
			want = iban_len[i].len;
	if (!want)
		return 0;
	size_t k = 0, i = st;
	while (i < *en && k < want) {
		if (s[i] != ' ')
			k++;
		i++;
	}
	if (k != want || !ftk_pii_iban(s + st, i - st))
		return 0;
	/* what follows must not be glued on: the next char is a space or the end */
	if (i < *en && s[i] != ' ')
		return 0;
	*en = i;
	return 1;
}

/* Does one of the '|'-separated strings in pats occur in s[0..n)? */
static int has_str(const char *s, size_t n, const char *pats, int ci)
{
	while (*pats) {
		const char *bar = strchr(pats, '|');
		size_t m = bar ? (size_t)(bar - pats) : strlen(pats);
		if (!ci) {
			if (memmem(s, n, pats, m))
				return 1;
		} else {
			for (size_t i = 0; i + m <= n; i++)
				if (!strncasecmp(s + i, pats, m))
					return 1;
		}
		if (!bar)
			break;
		pats = bar + 1;
	}
	return 0;
}

/* One memchr pass for the AWS key id prefixes, instead of twelve memmem. */
static int has_aws_prefix(const char *s, size_t n)
{
	static const char pre[][4] = { "KIA", "SIA", "BIA", "CCA", "GPA", "IDA", "IPA", "NPA",
					"NVA", "PKA", "ROA", "SCA" };
	const char *p = s, *end = s + n;
	while (end - p >= 20 && (p = memchr(p, 'A', (size_t)(end - p - 19)))) {
		for (size_t k = 0; k < FTK_ARRAY_SIZE(pre); k++)
			if (p[1] == pre[k][0] && p[2] == pre[k][1] && p[3] == pre[k][2])
				return 1;
		p++;
	}
	return 0;
}

/* The kinds that are made of digits: none can be in a text without one. */
static int needs_digit(int type)
{
	return type == FTK_PII_PHONE || type == FTK_PII_IPV4 || type == FTK_PII_CREDIT_CARD ||
	       type == FTK_PII_IBAN || type == FTK_PII_SSN;
}

static void add_cand(struct ftk_pii *p, size_t st, size_t en, int type)
{
	FTK_ALLOC_GROW(p->cand, p->n_cand + 1, p->alloc_cand);
	p->cand[p->n_cand].start = st;
	p->cand[p->n_cand].end = en;
	p->cand[p->n_cand].type = type;
	p->n_cand++;
}

static int cmp_prio(const void *a, const void *b)
{
	const struct ftk_pii_span *x = a, *y = b;
	if (priority[x->type] != priority[y->type])
		return priority[y->type] - priority[x->type];
	size_t lx = x->end - x->start, ly = y->end - y->start;
	if (lx != ly)
		return lx < ly ? 1 : -1;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int cmp_start(const void *a, const void *b)
{
	const struct ftk_pii_span *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

size_t ftk_pii_find(struct ftk_pii *p, const char *s, size_t n, const struct ftk_pii_span **spans)
{
	p->n_cand = 0;
	int digit = 0;
	for (size_t i = 0; i < n && !digit; i++)
		digit = s[i] >= '0' && s[i] <= '9';
	for (size_t pi = 0; pi < N_PATTERNS; pi++) {
		const struct pattern *pt = &patterns[pi];
		if (!p->re[pi] || (!digit && needs_digit(pt->type)))
			continue;
		if (pt->prefilter_ci == 2 && !has_aws_prefix(s, n))
			continue;
		if (pt->prefilter && !has_str(s, n, pt->prefilter, pt->prefilter_ci))
			continue;
		PCRE2_SIZE at = 0;
		while (at <= n) {
			int rc = pcre2_match(p->re[pi], (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK,
					     p->md[pi], p->mctx);
			if (rc < 0)
				break;
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md[pi]);
			size_t ms = ov[0], me = ov[1];
			size_t st = ov[2 * pt->group], en = ov[2 * pt->group + 1];
			int ok = 1;
			switch (pt->check) {
			case CK_NONE: break;
			case CK_URL: break;
			case CK_EMAIL: ok = check_email(s, n, st, en); break;
			case CK_PHONE: ok = check_phone(s, st, en, 0); break;
			case CK_DIGITS_LABEL: ok = check_phone(s, st, en, 1); break;
			case CK_IPV4: ok = check_ipv4(p, s, st, en); break;
			case CK_IPV6: ok = check_ipv6(p, s, st, en); break;
			case CK_CARD: ok = check_card(s, st, en); break;
			case CK_IBAN: ok = check_iban(s, st, &en); break;
			case CK_SSN: ok = check_ssn(s, st, en); break;
			case CK_JWT: ok = check_jwt(s, st, en); break;
			}
			if (ok && en > st)
				add_cand(p, st, en, pt->type);
			/* on a failed check, retry one character on: a shorter candidate may pass */
			at = ok ? (me > ms ? me : ms + 1) : ms + 1;
			while (at < n && ((unsigned char)s[at] & 0xC0) == 0x80)
				at++;
		}
	}
	*spans = p->out;
	if (!p->n_cand)
		return 0;
	/* settle overlaps: by priority, then length */
	qsort(p->cand, p->n_cand, sizeof(*p->cand), cmp_prio);
	FTK_ALLOC_GROW(p->out, p->n_cand, p->alloc_out);
	size_t k = 0;
	for (size_t i = 0; i < p->n_cand; i++) {
		const struct ftk_pii_span *c = &p->cand[i];
		int clash = 0;
		for (size_t j = 0; j < k && !clash; j++)
			clash = c->start < p->out[j].end && p->out[j].start < c->end;
		if (!clash)
			p->out[k++] = *c;
	}
	qsort(p->out, k, sizeof(*p->out), cmp_start);
	*spans = p->out;
	return k;
}

void ftk_pii_pseudonym(const char *salt, int type, const char *s, size_t n, struct strbuf *out)
{
	struct strbuf norm = STRBUF_INIT;
	strbuf_addstr(&norm, ftk_pii_type_name(type));
	strbuf_addch(&norm, ':');
	switch (type) {
	case FTK_PII_EMAIL:
		for (size_t i = 0; i < n; i++)
			strbuf_addch(&norm, tolower((unsigned char)s[i]));
		break;
	case FTK_PII_PHONE:
	case FTK_PII_CREDIT_CARD:
	case FTK_PII_SSN:
		for (size_t i = 0; i < n; i++)
			if (isdigit((unsigned char)s[i]))
				strbuf_addch(&norm, s[i]);
		break;
	case FTK_PII_IBAN:
		for (size_t i = 0; i < n; i++)
			if (s[i] != ' ')
				strbuf_addch(&norm, toupper((unsigned char)s[i]));
		break;
	case FTK_PII_IPV6: {
		char buf[64], txt[INET6_ADDRSTRLEN];
		unsigned char a[16];
		size_t m = n < sizeof(buf) - 1 ? n : sizeof(buf) - 1;
		memcpy(buf, s, m);
		buf[m] = 0;
		char *pct = strchr(buf, '%');
		if (pct)
			*pct = 0;
		if (inet_pton(AF_INET6, buf, a) == 1 && inet_ntop(AF_INET6, a, txt, sizeof(txt)))
			strbuf_addstr(&norm, txt);
		else
			strbuf_add(&norm, s, n);
		break;
	}
	default:
		strbuf_add(&norm, s, n);
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	HMAC(EVP_sha256(), salt, (int)strlen(salt), (const unsigned char *)norm.buf, norm.len, md,
	     &mdlen);
	strbuf_addf(out, "<%s_", ftk_pii_type_name(type));
	for (int i = 0; i < 6; i++)
		strbuf_addf(out, "%02x", md[i]);
	strbuf_addch(out, '>');
	strbuf_release(&norm);
}

/* ------------------------------------------------------------ placeholders */

static int label_is_placeholder(const char *s, size_t n)
{
	/* yourdomain, your-domain, mydomain, yourcompany, example, domain ... */
	static const char *const heads[] = { "your", "my", "some", "the", "" };
	static const char *const tails[] = { "domain", "company", "site", "website", "email",
					     "mail", "org", "business", "server", "host", NULL };
	char low[64];
	if (n == 0 || n >= sizeof(low))
		return 0;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)s[i]);
	low[n] = '\0';
	if (!strcmp(low, "example") || !strcmp(low, "domain"))
		return 1;
	for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
		size_t hl = strlen(heads[h]);
		if (strncmp(low, heads[h], hl))
			continue;
		const char *r = low + hl;
		if (*r == '-' || *r == '_')
			r++;
		for (size_t t = 0; tails[t]; t++)
			if (hl && !strcmp(r, tails[t]))
				return 1;
	}
	return 0;
}

int ftk_pii_is_placeholder(int type, const char *s, size_t n)
{
	char buf[128];
	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (type == FTK_PII_EMAIL) {
		const char *at = strrchr(buf, '@');
		if (!at)
			return 0;
		const char *dom = at + 1, *end = dom + strlen(dom);
		/* RFC 2606 / 6761: example.com/.net/.org and the reserved TLDs */
		static const char *const reserved[] = { "example.com", "example.net", "example.org",
							"localhost", NULL };
		static const char *const tlds[] = { ".example", ".test", ".invalid", ".localhost", NULL };
		for (int i = 0; reserved[i]; i++) {
			size_t rl = strlen(reserved[i]), dl = (size_t)(end - dom);
			if (dl >= rl && !strcasecmp(end - rl, reserved[i]) &&
			    (dl == rl || end[-(long)rl - 1] == '.'))
				return 1;
		}
		for (int i = 0; tlds[i]; i++) {
			size_t tl = strlen(tlds[i]);
			if ((size_t)(end - dom) > tl && !strcasecmp(end - tl, tlds[i]))
				return 1;
		}
		/* yourdomain.com and the like: the label before the TLD */
		const char *dot = strrchr(dom, '.');
		if (!dot)
			return 0;
		const char *lab = dot;
		while (lab > dom && lab[-1] != '.')
			lab--;
		return label_is_placeholder(lab, (size_t)(dot - lab));
	}
	if (type == FTK_PII_IPV4) {
		/* RFC 5737 documentation ranges */
		return !strncmp(buf, "192.0.2.", 8) || !strncmp(buf, "198.51.100.", 11) ||
		       !strncmp(buf, "203.0.113.", 10);
	}
	if (type == FTK_PII_IPV6) {
		/* RFC 3849: 2001:db8::/32 */
		return !strncasecmp(buf, "2001:db8:", 9) || !strncasecmp(buf, "2001:0db8:", 10);
	}
	if (type == FTK_PII_PHONE) {
		/* the North American fictional range 555-0100 to 555-0199 */
		char d[32];
		size_t k = 0;
		for (size_t i = 0; i < n && k < sizeof(d) - 1; i++)
			if (isdigit((unsigned char)buf[i]))
				d[k++] = buf[i];
		d[k] = '\0';
		return k >= 7 && !strncmp(d + k - 7, "55501", 5);
	}
	return 0;
}
