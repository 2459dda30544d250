/*
 * test_pii.c: each detector finds its kind and passes over look-alikes;
 * Luhn and IBAN checks against published examples; overlaps; pseudonyms.
 */
#include <string.h>
#include "testutil.h"
#include "prep/pii.h"

static struct ftk_pii *det(int private_ip)
{
	struct ftk_pii *p;
	struct ftk_pii_opts o = { 0, private_ip };
	ck_assert_int_eq(ftk_pii_new(&p, &o, NULL), 0);
	return p;
}

/*
 * The spans found in text, as "TYPE:text|TYPE:text" (empty when none), into
 * a static buffer.
 */
static const char *find(struct ftk_pii *p, const char *text)
{
	static char out[4096];
	const struct ftk_pii_span *sp;
	size_t n = ftk_pii_find(p, text, strlen(text), &sp);
	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(out);
		snprintf(out + k, sizeof(out) - k, "%s%s:%.*s", i ? "|" : "",
			 ftk_pii_type_name(sp[i].type), (int)(sp[i].end - sp[i].start),
			 text + sp[i].start);
	}
	return out;
}

START_TEST(luhn_published_numbers)
{
	/* the card networks' published test numbers */
	ck_assert(ftk_pii_luhn("4111111111111111", 16));
	ck_assert(ftk_pii_luhn("5500 0000 0000 0004", 19));
	ck_assert(ftk_pii_luhn("340000000000009", 15));
	ck_assert(ftk_pii_luhn("6011000000000004", 16));
	ck_assert(ftk_pii_luhn("79927398713", 11)); /* the example in ISO/IEC 7812 texts */
	ck_assert(!ftk_pii_luhn("4111111111111112", 16));
	ck_assert(!ftk_pii_luhn("79927398710", 11));
}
END_TEST

START_TEST(iban_published_examples)
{
	/* examples published by the European Committee for Banking Standards */
	ck_assert(ftk_pii_iban("GB82 WEST 1234 5698 7654 32", 27));
	ck_assert(ftk_pii_iban("DE89370400440532013000", 22));
	ck_assert(ftk_pii_iban("FR14 2004 1010 0505 0001 3M02 606", 33));
	ck_assert(ftk_pii_iban("NL91ABNA0417164300", 18));
	ck_assert(ftk_pii_iban("be68539007547034", 16)); /* case does not matter */
	ck_assert(!ftk_pii_iban("GB82 WEST 1234 5698 7654 33", 27)); /* check fails */
	ck_assert(!ftk_pii_iban("DE8937040044053201300", 21));	   /* too short for DE */
	ck_assert(!ftk_pii_iban("XX89370400440532013000", 22));	   /* no such country */
}
END_TEST

START_TEST(each_kind)
{
	struct ftk_pii *p = det(0);
	ck_assert_str_eq(find(p, "write to Jane.Doe+news@mail.example.co.uk today"),
			 "EMAIL:Jane.Doe+news@mail.example.co.uk");
	ck_assert_str_eq(find(p, "call (415) 555-2671 or +44 20 7946 0958."),
			 "PHONE:(415) 555-2671|PHONE:+44 20 7946 0958");
	ck_assert_str_eq(find(p, "Tel: 4155552671"), "PHONE:4155552671");
	ck_assert_str_eq(find(p, "from 8.8.8.8:53 and 203.0.113.7"),
			 "IPV4:8.8.8.8|IPV4:203.0.113.7");
	ck_assert_str_eq(find(p, "host 2001:db8:85a3::8a2e:370:7334 up"),
			 "IPV6:2001:db8:85a3::8a2e:370:7334");
	ck_assert_str_eq(find(p, "card 4111-1111-1111-1111 exp 12/29"),
			 "CREDIT_CARD:4111-1111-1111-1111");
	ck_assert_str_eq(find(p, "amex 3400 000000 00009"), "CREDIT_CARD:3400 000000 00009");
	ck_assert_str_eq(find(p, "IBAN GB82 WEST 1234 5698 7654 32 please"),
			 "IBAN:GB82 WEST 1234 5698 7654 32");
	ck_assert_str_eq(find(p, "SSN 219-09-9999"), "SSN:219-09-9999");
	ck_assert_str_eq(find(p, "social security number 219099999."), "SSN:219099999");
	const char *key = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----";
	char buf[512], want[512];
	snprintf(buf, sizeof(buf), "key:\n%s\nthanks", key);
	snprintf(want, sizeof(want), "PRIVATE_KEY:%s", key);
	ck_assert_str_eq(find(p, buf), want);
	ck_assert_str_eq(
		find(p, "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
		"JWT:eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U");
	ck_assert_str_eq(find(p, "id AKIAIOSFODNN7EXAMPLE"), "AWS_KEY:AKIAIOSFODNN7EXAMPLE");
	ck_assert_str_eq(find(p, "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"),
			 "AWS_KEY:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
	ck_assert_str_eq(find(p, "token ghp_16C7e42F292c6912E7710c838347Ae178B4a ok"),
			 "GITHUB_TOKEN:ghp_16C7e42F292c6912E7710c838347Ae178B4a");
	ck_assert_str_eq(find(p, "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
			 "SLACK_TOKEN:xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx");
	ck_assert_str_eq(find(p, "postgres://app:s3cr3t@db.example.com:5432/x"),
			 "URL_CREDENTIALS:app:s3cr3t");
	ck_assert_str_eq(find(p, "redis://:pw123@cache:6379"), "URL_CREDENTIALS::pw123");
	ftk_pii_free(p);
}
END_TEST

START_TEST(look_alikes)
{
	struct ftk_pii *p = det(0);
	static const char *const neg[] = {
		"ISBN 978-3-16-148410-0", "version 1.2.3.4", "v10.0.19041.1", "on 2023-05-12",
		"at 12:30:45", "Order #4111111111111111", "4111 1111 1111 1112",
		"GB82 WEST 1234 5698 7654 33", "SSN 666-12-3456", "000-12-3456", "900-12-3456",
		"sha1 3f786850e387550fdab836ed7e6dc881de23001b", "logo@2x.png",
		"lodash@4.17.21", "git@github.com:org/repo.git", "mac 00:1a:2b:3c:4d:5e",
		"uuid 123e4567-e89b-12d3-a456-426614174000", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
		"xoxb-your-token-here", "ghp_short", "AKIA1234", "https://user@example.com/",
		"http://example.com:8080/path", "tracking no. 1Z999AA10123456784",
		"price $1,234.56", "coordinates 40.7128, -74.0060", "std::vector<int>",
		"eyJhbGciOi.eyJzdWIiOiIx.notreallyasignaturebutlong",
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(neg); i++)
		ck_assert_msg(!*find(p, neg[i]), "'%s' gave %s", neg[i], find(p, neg[i]));
	ftk_pii_free(p);
}
END_TEST

START_TEST(private_addresses)
{
	struct ftk_pii *p = det(0);
	ck_assert_str_eq(find(p, "lan 192.168.1.10, 10.0.0.1, 172.16.5.4, 127.0.0.1, ::1, fe80::1, fd00::5"),
			 "");
	ck_assert_str_eq(find(p, "172.32.0.1"), "IPV4:172.32.0.1"); /* just outside 172.16/12 */
	ftk_pii_free(p);
	p = det(1);
	ck_assert_str_eq(find(p, "lan 192.168.1.10 and fe80::1"),
			 "IPV4:192.168.1.10|IPV6:fe80::1");
	ftk_pii_free(p);
}
END_TEST

START_TEST(overlaps_and_types)
{
	struct ftk_pii *p = det(0);
	/* the URL's credentials win over the e-mail-like text inside them */
	ck_assert_str_eq(find(p, "https://bob:pw@mail.example.com/"), "URL_CREDENTIALS:bob:pw");
	ftk_pii_free(p);
	struct ftk_pii_opts o = { 1u << FTK_PII_EMAIL, 0 };
	ck_assert_int_eq(ftk_pii_new(&p, &o, NULL), 0);
	ck_assert_str_eq(find(p, "a@b.example.org 8.8.8.8 4111111111111111"),
			 "EMAIL:a@b.example.org");
	ftk_pii_free(p);
	ck_assert_int_eq(ftk_pii_type_parse("credit_card"), FTK_PII_CREDIT_CARD);
	ck_assert_int_eq(ftk_pii_type_parse("nope"), -1);
}
END_TEST

START_TEST(pseudonyms)
{
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT, c = STRBUF_INIT;
	ftk_pii_pseudonym("salt", FTK_PII_EMAIL, "Jane@Example.org", 16, &a);
	ftk_pii_pseudonym("salt", FTK_PII_EMAIL, "jane@example.org", 16, &b);
	ftk_pii_pseudonym("pepper", FTK_PII_EMAIL, "jane@example.org", 16, &c);
	ck_assert_str_eq(a.buf, b.buf);
	ck_assert_str_ne(b.buf, c.buf);
	ck_assert_uint_eq(a.len, strlen("<EMAIL_>") + 12);
	strbuf_reset(&a);
	strbuf_reset(&b);
	ftk_pii_pseudonym("salt", FTK_PII_PHONE, "+1 (415) 555-2671", 17, &a);
	ftk_pii_pseudonym("salt", FTK_PII_PHONE, "+1-415-555-2671", 15, &b);
	ck_assert_str_eq(a.buf, b.buf);
	strbuf_reset(&a);
	strbuf_reset(&b);
	ftk_pii_pseudonym("salt", FTK_PII_IPV6, "2001:DB8:0:0::1", 15, &a);
	ftk_pii_pseudonym("salt", FTK_PII_IPV6, "2001:db8::1", 11, &b);
	ck_assert_str_eq(a.buf, b.buf);
	/*
	 * The token is HMAC-SHA256(salt, "TYPE:value") as the openssl command
	 * line computes it: printf 'EMAIL:x@y.zz' | openssl dgst -sha256 -hmac key
	 */
	strbuf_reset(&a);
	ftk_pii_pseudonym("key", FTK_PII_EMAIL, "x@y.zz", 6, &a);
	ck_assert_str_eq(a.buf, "<EMAIL_9e9b0917a954>");
	strbuf_release(&a);
	strbuf_release(&b);
	strbuf_release(&c);
}
END_TEST

static Suite *pii_suite(void)
{
	Suite *s = suite_create("pii");
	TCase *tc = tcase_create("detect");
	tcase_add_test(tc, luhn_published_numbers);
	tcase_add_test(tc, iban_published_examples);
	tcase_add_test(tc, each_kind);
	tcase_add_test(tc, look_alikes);
	tcase_add_test(tc, private_addresses);
	tcase_add_test(tc, overlaps_and_types);
	tcase_add_test(tc, pseudonyms);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(pii_suite)
