/*
 * pii.h: find personal data and secrets in text.
 *
 * Each kind has a PCRE2 pattern (JIT-compiled) that finds candidates and a
 * check that only a real instance passes:
 *
 *   EMAIL            local@domain.tld (not an image name such as logo@2x.png)
 *   PHONE            +CC international numbers, North American (NXX) NXX-XXXX,
 *                    national numbers with a trunk 0, and digits after a label
 *                    such as "tel:"; 7 to 15 digits (E.164)
 *   IPV4, IPV6       parsed with inet_pton; loopback, private, link-local and
 *                    unique-local addresses are kept unless asked for
 *   CREDIT_CARD      13 to 19 digits, a known issuer prefix and length, and
 *                    the Luhn check digit
 *   IBAN             the country's IBAN length and the ISO 7064 mod-97 check
 *   SSN              AAA-GG-SSSS with the numbers the SSA never issues
 *                    (area 000, 666, 9xx; group 00; serial 0000) rejected
 *   PRIVATE_KEY      PEM "-----BEGIN ... PRIVATE KEY-----" blocks
 *   JWT              header.payload.signature whose header decodes to JSON
 *   AWS_KEY          access key ids (AKIA..., ASIA..., 20 characters) and
 *                    40-character secret keys labelled as AWS secrets
 *   GITHUB_TOKEN     ghp_/gho_/ghu_/ghs_/ghr_ tokens and github_pat_ tokens
 *   SLACK_TOKEN      xoxb-/xoxp-/xoxa-/xoxr-/xoxs- and xapp- tokens
 *   URL_CREDENTIALS  the user:password part of scheme://user:password@host
 *
 * Numbers that are labelled as something else ("order #", "ISBN", "invoice",
 * "tracking", "version", ...) right before them are not phone numbers, card
 * numbers, SSNs or addresses.  Where spans overlap, the more specific kind
 * wins (a key block over anything inside it, a URL's credentials over the
 * e-mail-like text they contain, a card over a phone number).
 *
 * A detector object holds compiled patterns and match buffers: one per
 * thread.
 */
#ifndef FTK_PII_H
#define FTK_PII_H

#include <stddef.h>
#include "lib/err.h"
#include "lib/strbuf.h"

enum ftk_pii_type {
	FTK_PII_EMAIL,
	FTK_PII_PHONE,
	FTK_PII_IPV4,
	FTK_PII_IPV6,
	FTK_PII_CREDIT_CARD,
	FTK_PII_IBAN,
	FTK_PII_SSN,
	FTK_PII_PRIVATE_KEY,
	FTK_PII_JWT,
	FTK_PII_AWS_KEY,
	FTK_PII_GITHUB_TOKEN,
	FTK_PII_SLACK_TOKEN,
	FTK_PII_URL_CREDENTIALS,
	FTK_PII_NTYPES
};

/* "EMAIL", "PHONE", ... (the placeholder is "<" name ">"). */
const char *ftk_pii_type_name(int type);
/* The type for a name (case-insensitive), or -1. */
int ftk_pii_type_parse(const char *name);

struct ftk_pii_span {
	size_t start, end;	/* bytes of the text, [start, end) */
	int type;
};

struct ftk_pii_opts {
	unsigned types;		/* bit (1u << type) per kind to look for; 0 means all */
	int private_ip;		/* also report private, loopback and link-local addresses */
};

struct ftk_pii;

/*
 * Compile the detectors.  opts may be NULL (all kinds, public addresses
 * only).  Returns 0 and *out (free with ftk_pii_free), or FTK_EDATA when a
 * pattern does not compile (a bug; the message names it).
 */
int ftk_pii_new(struct ftk_pii **out, const struct ftk_pii_opts *opts, struct ftk_error *err);
void ftk_pii_free(struct ftk_pii *p);

/*
 * Find the spans in s[0..n) (valid UTF-8).  Returns how many, sorted by start
 * and never overlapping, and points *spans at them (owned by p, valid until
 * the next call).
 */
size_t ftk_pii_find(struct ftk_pii *p, const char *s, size_t n, const struct ftk_pii_span **spans);

/*
 * Is s[0..n), found as type, a documentation placeholder rather than
 * anyone's data?  E-mail at example.com/.net/.org (and subdomains), the
 * reserved TLDs .example .test .invalid .localhost, or a "yourdomain"-style
 * domain (your/my + domain, company, site, email...: yourdomain.com,
 * my-company.org); IPv4 in the RFC 5737 ranges (192.0.2.0/24,
 * 198.51.100.0/24, 203.0.113.0/24); IPv6 in 2001:db8::/32 (RFC 3849); phone
 * numbers ending in 555-01XX, the North American fictional range.
 * Returns 1 or 0.
 */
int ftk_pii_is_placeholder(int type, const char *s, size_t n);

/* Luhn check over the digits of s[0..n) (other bytes skipped): 1 when valid. */
int ftk_pii_luhn(const char *s, size_t n);

/*
 * IBAN check of s[0..n) (spaces skipped, letters in either case): the
 * country's length and mod 97 == 1.  Returns 1 when valid.
 */
int ftk_pii_iban(const char *s, size_t n);

/*
 * Append the pseudonym of a span to out: "<EMAIL_" + 12 hex digits of
 * HMAC-SHA256(salt, type ":" normalized value) + ">".  The value is
 * normalized first (e-mail lowercased, digits only for phone, card and SSN,
 * IBAN without spaces in upper case, IPv6 in canonical form) so that the
 * same address written two ways gets the same token.
 */
void ftk_pii_pseudonym(const char *salt, int type, const char *s, size_t n, struct strbuf *out);

#endif
