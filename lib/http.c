/*
 * http.c: the retrying JSON POST client (see http.h for the contract).
 *
 * One curl multi handle drives every transfer in the caller's thread.  A
 * request lives in one of three lists: waiting (not started, or waiting out
 * a backoff until not_before), active (an easy handle inside the multi) and
 * done (a final answer, handed out by ftk_http_next in finishing order).
 * Each turn of the loop starts what may start, lets curl work, sorts what
 * finished into "retry later" or "done", and then sleeps in curl_multi_poll
 * until curl has something or the earliest backoff expires.  Nothing here
 * sleeps without a bound, so a dead server costs at most max_attempts
 * timeouts plus the waits between them.
 *
 * The key is read once from the named variable into the Authorization header
 * line; that line lives only in the shared curl_slist and in key_copy (used
 * to scrub a server's echo of it out of response bodies), and both are wiped
 * with explicit_bzero before they are freed.
 */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "http.h"
#include "strbuf.h"

#define RESPONSE_LIMIT (64u << 20)

enum { Q_WAITING, Q_ACTIVE, Q_DONE };

struct req {
	struct req *next;
	char *url;
	char *body;
	size_t len;
	CURL *easy;
	struct strbuf resp;
	int too_big;
	double not_before;
	struct ftk_http_result res;
};

struct ftk_http_client {
	struct ftk_http_opts o;
	CURLM *multi;
	struct curl_slist *headers;
	char *key_copy;
	size_t n_active;
	struct req *waiting, *active, *done_head, *done_tail;
	size_t n_pending;
	unsigned long long rng;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void ftk_http_opts_init(struct ftk_http_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_in_flight = 4;
	o->timeout_s = 120;
	o->connect_timeout_s = 10;
	o->max_attempts = 6;
	o->backoff_base_s = 1;
	o->max_wait_s = 60;
}

static void normalize_opts(struct ftk_http_opts *o)
{
	if (o->max_in_flight <= 0)
		o->max_in_flight = 4;
	if (o->timeout_s <= 0)
		o->timeout_s = 120;
	if (o->connect_timeout_s <= 0)
		o->connect_timeout_s = o->timeout_s < 10 ? o->timeout_s : 10;
	if (o->max_attempts <= 0)
		o->max_attempts = 6;
	if (o->backoff_base_s < 0)
		o->backoff_base_s = 1;
	if (o->max_wait_s <= 0)
		o->max_wait_s = 60;
}

double ftk_http_backoff(const struct ftk_http_opts *o, int attempt, double u)
{
	double base = o->backoff_base_s < 0 ? 1 : o->backoff_base_s;
	double cap = o->max_wait_s <= 0 ? 60 : o->max_wait_s;
	if (attempt < 1)
		attempt = 1;
	double w = base * ldexp(1.0, attempt > 60 ? 60 : attempt - 1);
	if (w > cap)
		w = cap;
	if (u < 0)
		u = 0;
	if (u >= 1)
		u = 0.999999;
	return w * (0.5 + 0.5 * u);
}

double ftk_http_parse_retry_after(const char *v, double now)
{
	if (!v)
		return -1;
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v >= '0' && *v <= '9') {
		char *end;
		errno = 0;
		double s = strtod(v, &end);
		while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
			end++;
		if (errno || *end || s < 0)
			return -1;
		return s;
	}
	/* IMF-fixdate, the form RFC 9110 requires senders to use */
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end)
		return -1;
	while (*end == ' ' || *end == '\r' || *end == '\n')
		end++;
	if (*end)
		return -1;
	double t = (double)timegm(&tm);
	return t > now ? t - now : 0;
}

static double next_random(struct ftk_http_client *c)
{
	/* xorshift64*: enough for jitter, reproducible with a seed */
	unsigned long long x = c->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	c->rng = x;
	return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

int ftk_http_client_new(struct ftk_http_client **out, const struct ftk_http_opts *opts,
			struct ftk_error *err)
{
	*out = NULL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return ftk_error_msg(err, FTK_EIO, "cannot initialize libcurl: %s",
				     curl_easy_strerror(curl_init_rc));
	struct ftk_http_client *c = xcalloc(1, sizeof(*c));
	if (opts)
		c->o = *opts;
	else
		ftk_http_opts_init(&c->o);
	normalize_opts(&c->o);
	c->rng = c->o.seed ? c->o.seed : (unsigned long long)(now_mono() * 1e9) ^ 0x9e3779b97f4a7c15ULL;
	if (!c->rng)
		c->rng = 1;

	c->headers = curl_slist_append(NULL, "Content-Type: application/json");
	c->headers = curl_slist_append(c->headers, "Accept: application/json");
	c->headers = curl_slist_append(c->headers, "Expect:");
	if (c->o.api_key_env && *c->o.api_key_env) {
		const char *key = getenv(c->o.api_key_env);
		if (!key || !*key) {
			curl_slist_free_all(c->headers);
			free(c);
			return ftk_error_msg(err, FTK_EUSAGE, "environment variable '%s' is not set",
					     opts->api_key_env);
		}
		if (strpbrk(key, "\r\n")) {
			curl_slist_free_all(c->headers);
			free(c);
			return ftk_error_msg(err, FTK_EUSAGE,
					     "environment variable '%s' holds a line break",
					     opts->api_key_env);
		}
		struct strbuf h = STRBUF_INIT;
		strbuf_addstr(&h, "Authorization: Bearer ");
		strbuf_addstr(&h, key);
		c->headers = curl_slist_append(c->headers, h.buf);
		explicit_bzero(h.buf, h.len);
		strbuf_release(&h);
		c->key_copy = xstrdup(key);
	}
	if (!c->headers) {
		free(c->key_copy);
		free(c);
		return ftk_error_msg(err, FTK_ENOMEM, "out of memory");
	}
	c->multi = curl_multi_init();
	if (!c->multi) {
		ftk_http_client_free(c);
		return ftk_error_msg(err, FTK_EIO, "cannot create a libcurl multi handle");
	}
	*out = c;
	return 0;
}

static void req_free(struct req *r)
{
	if (!r)
		return;
	free(r->url);
	free(r->body);
	strbuf_release(&r->resp);
	ftk_http_result_release(&r->res);
	free(r);
}

void ftk_http_result_release(struct ftk_http_result *res)
{
	if (!res)
		return;
	free(res->body);
	memset(res, 0, sizeof(*res));
}

static void free_list(struct ftk_http_client *c, struct req *r)
{
	while (r) {
		struct req *n = r->next;
		if (r->easy) {
			curl_multi_remove_handle(c->multi, r->easy);
			curl_easy_cleanup(r->easy);
		}
		req_free(r);
		r = n;
	}
}

void ftk_http_client_free(struct ftk_http_client *c)
{
	if (!c)
		return;
	free_list(c, c->waiting);
	free_list(c, c->active);
	free_list(c, c->done_head);
	if (c->multi)
		curl_multi_cleanup(c->multi);
	for (struct curl_slist *h = c->headers; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(c->headers);
	wipe_free(c->key_copy);
	free(c);
}

int ftk_http_submit(struct ftk_http_client *c, const char *url, const char *body, size_t len,
		    void *tag, struct ftk_error *err)
{
	if (!url || !*url)
		return ftk_error_msg(err, FTK_EUSAGE, "empty URL");
	struct req *r = xcalloc(1, sizeof(*r));
	r->url = xstrdup(url);
	r->body = xmalloc(len + 1);
	memcpy(r->body, body, len);
	r->body[len] = 0;
	r->len = len;
	strbuf_init(&r->resp, 0);
	r->res.tag = tag;
	/* append to the end of waiting, so requests start in submission order */
	struct req **p = &c->waiting;
	while (*p)
		p = &(*p)->next;
	*p = r;
	c->n_pending++;
	return 0;
}

size_t ftk_http_pending(const struct ftk_http_client *c)
{
	return c ? c->n_pending : 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct req *r = ud;
	size_t n = size * nmemb;
	if (r->resp.len + n > RESPONSE_LIMIT) {
		r->too_big = 1;
		return 0;	/* aborts the transfer with CURLE_WRITE_ERROR */
	}
	strbuf_add(&r->resp, ptr, n);
	return n;
}

static int start(struct ftk_http_client *c, struct req *r, struct ftk_error *err)
{
	CURL *e = curl_easy_init();
	if (!e)
		return ftk_error_msg(err, FTK_EIO, "cannot create a libcurl handle");
	strbuf_reset(&r->resp);
	r->too_big = 0;
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(c->o.timeout_s * 1000));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->o.connect_timeout_s * 1000));
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->o.user_agent ? c->o.user_agent : "ftk/0.1.0");
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLMcode mc = curl_multi_add_handle(c->multi, e);
	if (mc != CURLM_OK) {
		curl_easy_cleanup(e);
		return ftk_error_msg(err, FTK_EIO, "libcurl: %s", curl_multi_strerror(mc));
	}
	r->easy = e;
	if (!r->res.attempts)
		r->res.seconds = now_mono();	/* start time until the end */
	r->res.attempts++;
	c->n_active++;
	return 0;
}

static void unlink_req(struct req **list, struct req *r)
{
	for (struct req **p = list; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			r->next = NULL;
			return;
		}
}

static int hexval(int ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
	       : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/*
 * One character of the key, at s[0..n), in any form a body can carry it:
 * itself, "%XX", "\uXXXX" (with any number of backslashes: an escape
 * inside an escaped string), "\/" for '/'.  Returns the bytes it took, or 0.
 */
static size_t key_char_at(const unsigned char *s, size_t n, unsigned char want)
{
	if (n >= 1 && s[0] == want)
		return 1;
	if (n >= 3 && s[0] == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0 &&
	    hexval(s[1]) * 16 + hexval(s[2]) == want)
		return 3;
	size_t b = 0;
	while (b < n && s[b] == '\\')
		b++;
	if (b == 0)
		return 0;
	if (want == '/' && b < n && s[b] == '/')
		return b + 1;
	if (b + 5 <= n && s[b] == 'u') {
		int v = 0;
		for (int k = 1; k <= 4; k++) {
			int h = hexval(s[b + k]);
			if (h < 0)
				return 0;
			v = v * 16 + h;
		}
		return v == want ? b + 5 : 0;
	}
	return 0;
}

/* The length of the key in some form at s[0..n), or 0. */
static size_t key_at(const unsigned char *s, size_t n, const unsigned char *key, size_t kl)
{
	size_t at = 0;
	for (size_t i = 0; i < kl; i++) {
		size_t k = key_char_at(s + at, n - at, key[i]);
		if (!k)
			return 0;
		at += k;
	}
	return at;
}

/* Replace every echo of the key in the body (every form) with "***". */
static void scrub_key(struct ftk_http_client *c, struct strbuf *sb)
{
	if (!c->key_copy || !*c->key_copy || !sb->len)
		return;
	const unsigned char *key = (const unsigned char *)c->key_copy;
	size_t kl = strlen(c->key_copy);
	const unsigned char *s = (const unsigned char *)sb->buf;
	struct strbuf t = STRBUF_INIT;
	int hits = 0;
	for (size_t i = 0; i < sb->len;) {
		/* an echo starts with the key's first character in some form */
		size_t m = (s[i] == key[0] || s[i] == '%' || s[i] == '\\')
				   ? key_at(s + i, sb->len - i, key, kl) : 0;
		if (m) {
			strbuf_addstr(&t, "***");
			i += m;
			hits++;
		} else {
			strbuf_addch(&t, s[i]);
			i++;
		}
	}
	if (hits) {
		explicit_bzero(sb->buf, sb->len);
		strbuf_release(sb);
		*sb = t;
	} else {
		strbuf_release(&t);
	}
}

static void finish_done(struct ftk_http_client *c, struct req *r, int code)
{
	r->res.code = code;
	r->res.seconds = now_mono() - r->res.seconds;
	scrub_key(c, &r->resp);
	size_t n;
	r->res.body = strbuf_detach(&r->resp, &n);
	r->res.body_len = n;
	r->next = NULL;
	if (c->done_tail)
		c->done_tail->next = r;
	else
		c->done_head = r;
	c->done_tail = r;
}

static int conn_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_BAD_CONTENT_ENCODING:
		return 1;
	default:
		return 0;
	}
}

/* Sort a finished transfer into done or back to waiting. */
static void finished(struct ftk_http_client *c, struct req *r, CURLcode rc)
{
	long status = 0;
	double retry_after = -1;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc == CURLE_OK && (status == 429 || status == 503)) {
		struct curl_header *h;
		if (curl_easy_header(r->easy, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
			retry_after = ftk_http_parse_retry_after(h->value, (double)time(NULL));
	}
	curl_multi_remove_handle(c->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
	c->n_active--;
	unlink_req(&c->active, r);
	if (status)
		r->res.status = status;

	int retry = 0;
	char why[200];
	why[0] = 0;
	if (rc == CURLE_OK) {
		if (status >= 200 && status < 300) {
			if (c->o.validate && c->o.validate(r->resp.buf, r->resp.len, c->o.validate_ctx)) {
				retry = 1;
				r->res.retries_invalid++;
				r->res.outcome = FTK_HTTP_INVALID;
				snprintf(why, sizeof(why), "invalid response (HTTP %ld)", status);
			} else {
				r->res.error[0] = 0;
				r->res.outcome = FTK_HTTP_OK;
				finish_done(c, r, 0);
				return;
			}
		} else if (status == 408 || status == 429 || status >= 500) {
			retry = 1;
			r->res.outcome = FTK_HTTP_STATUS;
			if (status == 429)
				r->res.retries_429++;
			else
				r->res.retries_5xx++;
			snprintf(why, sizeof(why), "HTTP %ld", status);
		} else {
			snprintf(r->res.error, sizeof(r->res.error), "HTTP %ld", status);
			r->res.outcome = FTK_HTTP_STATUS;
			finish_done(c, r, FTK_ENET);
			return;
		}
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		retry = 1;
		r->res.retries_timeout++;
		r->res.outcome = FTK_HTTP_TIMEOUT;
		snprintf(why, sizeof(why), "timeout after %g s", c->o.timeout_s);
	} else if (conn_error(rc)) {
		retry = 1;
		r->res.retries_conn++;
		r->res.outcome = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
					 rc == CURLE_COULDNT_RESOLVE_PROXY
				 ? FTK_HTTP_CONNECT : FTK_HTTP_CONN;
		snprintf(why, sizeof(why), "connection error: %s", curl_easy_strerror(rc));
	} else if (r->too_big) {
		snprintf(r->res.error, sizeof(r->res.error), "response larger than %u MiB",
			 RESPONSE_LIMIT >> 20);
		r->res.outcome = FTK_HTTP_OTHER;
		finish_done(c, r, FTK_ENET);
		return;
	} else {
		snprintf(r->res.error, sizeof(r->res.error), "%s", curl_easy_strerror(rc));
		r->res.outcome = FTK_HTTP_OTHER;
		finish_done(c, r, FTK_ENET);
		return;
	}
	(void)retry;
	if (r->res.attempts >= c->o.max_attempts) {
		snprintf(r->res.error, sizeof(r->res.error), "%s (gave up after %d attempts)", why,
			 r->res.attempts);
		finish_done(c, r, FTK_ENET);
		return;
	}
	double wait = ftk_http_backoff(&c->o, r->res.attempts, next_random(c));
	if (retry_after > wait)
		wait = retry_after > c->o.max_wait_s ? c->o.max_wait_s : retry_after;
	r->not_before = now_mono() + wait;
	/* back to the front of waiting: a retried request goes before new ones */
	r->next = c->waiting;
	c->waiting = r;
}

/* Start waiting requests whose backoff has expired, while slots are free. */
static int start_ready(struct ftk_http_client *c, double now, struct ftk_error *err)
{
	struct req **p = &c->waiting;
	while (*p && c->n_active < (size_t)c->o.max_in_flight) {
		struct req *r = *p;
		if (r->not_before > now) {
			p = &r->next;
			continue;
		}
		*p = r->next;
		int rc = start(c, r, err);
		if (rc < 0) {
			r->next = *p;
			*p = r;
			return rc;
		}
		r->next = c->active;
		c->active = r;
	}
	return 0;
}

int ftk_http_next(struct ftk_http_client *c, struct ftk_http_result *res, struct ftk_error *err)
{
	for (;;) {
		if (c->done_head) {
			struct req *r = c->done_head;
			c->done_head = r->next;
			if (!c->done_head)
				c->done_tail = NULL;
			*res = r->res;
			memset(&r->res, 0, sizeof(r->res));
			req_free(r);
			c->n_pending--;
			return 1;
		}
		if (!c->waiting && !c->active)
			return 0;
		double now = now_mono();
		int rc = start_ready(c, now, err);
		if (rc < 0)
			return rc;
		int running = 0;
		CURLMcode mc = curl_multi_perform(c->multi, &running);
		if (mc != CURLM_OK)
			return ftk_error_msg(err, FTK_EIO, "libcurl: %s", curl_multi_strerror(mc));
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(c->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct req *r = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
			finished(c, r, m->data.result);
		}
		if (c->done_head)
			continue;
		/* sleep until curl has work or the earliest backoff ends */
		long timeout_ms = 1000;
		now = now_mono();
		for (struct req *r = c->waiting; r; r = r->next) {
			if (c->n_active >= (size_t)c->o.max_in_flight)
				break;
			double d = (r->not_before - now) * 1000;
			long ms = d <= 0 ? 0 : (long)d + 1;
			if (ms < timeout_ms)
				timeout_ms = ms;
		}
		if (timeout_ms > 0 || c->n_active) {
			mc = curl_multi_poll(c->multi, NULL, 0, (int)timeout_ms, NULL);
			if (mc != CURLM_OK)
				return ftk_error_msg(err, FTK_EIO, "libcurl: %s",
						     curl_multi_strerror(mc));
		}
	}
}

int ftk_http_post(const struct ftk_http_opts *opts, const char *url, const char *body,
		  size_t len, struct ftk_http_result *res, struct ftk_error *err)
{
	struct ftk_http_client *c;
	memset(res, 0, sizeof(*res));
	int rc = ftk_http_client_new(&c, opts, err);
	if (rc < 0)
		return rc;
	rc = ftk_http_submit(c, url, body, len, NULL, err);
	if (rc == 0) {
		rc = ftk_http_next(c, res, err);
		if (rc == 1)
			rc = 0;
		else if (rc == 0)
			rc = ftk_error_msg(err, FTK_EIO, "request vanished from the queue");
	}
	ftk_http_client_free(c);
	return rc;
}
