/*
 * test_http.c: the retrying HTTP client against tests/eval_server.py, a
 * loopback server that misbehaves on request.  Each request body carries its
 * own fault script ({"faults":["500","429","ok"]}), so every test knows
 * exactly how many attempts a request must take and what it must end as.
 */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include "testutil.h"
#include "lib/http.h"

struct server {
	pid_t pid;
	int port;
	char url[128];
	char dir[64];
};

/* Start the server with extra arguments (NULL-terminated); wait for its port. */
static void server_start(struct server *s, const char *const *extra)
{
	snprintf(s->dir, sizeof(s->dir), "/tmp/ftk-http-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(s->dir));
	char port_file[128], log_file[128];
	snprintf(port_file, sizeof(port_file), "%s/port", s->dir);
	snprintf(log_file, sizeof(log_file), "%s/log", s->dir);
	const char *argv[32];
	int n = 0;
	argv[n++] = "/usr/bin/python3";
	argv[n++] = src_path("tests/eval_server.py");
	argv[n++] = "--port-file";
	argv[n++] = port_file;
	argv[n++] = "--log";
	argv[n++] = log_file;
	argv[n++] = "--idle";
	argv[n++] = "30";
	argv[n++] = "--lifetime";
	argv[n++] = "60";
	for (int i = 0; extra && extra[i] && n < 30; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	s->pid = fork();
	ck_assert_int_ge(s->pid, 0);
	if (s->pid == 0) {
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {	/* at most 10 s */
		FILE *f = fopen(port_file, "r");
		if (f) {
			int ok = fscanf(f, "%d", &s->port) == 1;
			fclose(f);
			if (ok)
				break;
		}
		usleep(50000);
	}
	ck_assert_int_gt(s->port, 0);
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/v1/chat/completions", s->port);
}

static void server_stop(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", s->dir);
}

static struct server srv;

/* Requests the server received whose body had "tag": tag. */
static int server_count(const struct server *s, const char *tag)
{
	char path[128], line[512], want[128];
	snprintf(path, sizeof(path), "%s/log", s->dir);
	snprintf(want, sizeof(want), "\"tag\": \"%s\"", tag);
	FILE *f = fopen(path, "r");
	int n = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, want) != NULL;
	fclose(f);
	return n;
}

static void setup(void)
{
	setenv("no_proxy", "127.0.0.1", 1);	/* loopback: never through a proxy */
	setenv("NO_PROXY", "127.0.0.1", 1);
	static const char *const extra[] = { "--sleep", "1.5", "--retry-after", "1", NULL };
	server_start(&srv, extra);
}

static void teardown(void)
{
	server_stop(&srv);
}

static struct ftk_http_opts fast_opts(void)
{
	struct ftk_http_opts o;
	ftk_http_opts_init(&o);
	o.timeout_s = 0.7;
	o.backoff_base_s = 0.01;
	o.max_wait_s = 5;
	o.seed = 42;
	return o;
}

static int json_ok(const char *body, size_t len, void *ctx)
{
	(void)ctx;
	cJSON *v = cJSON_ParseWithLength(body, len);
	int bad = v == NULL;
	cJSON_Delete(v);
	return bad;
}

/* POST one scripted body; returns the result (caller releases). */
static struct ftk_http_result post(struct ftk_http_opts *o, const char *body)
{
	struct ftk_http_result r;
	struct ftk_error e;
	ftk_error_clear(&e);
	int rc = ftk_http_post(o, srv.url, body, strlen(body), &r, &e);
	ck_assert_msg(rc == 0, "post: %s", e.msg);
	return r;
}

START_TEST(backoff_grows_and_is_capped)
{
	struct ftk_http_opts o;
	ftk_http_opts_init(&o);
	o.backoff_base_s = 0.5;
	o.max_wait_s = 3;
	/* u = 0 gives the lower half, u -> 1 the full wait */
	ck_assert_double_eq_tol(ftk_http_backoff(&o, 1, 0.0), 0.25, 1e-12);
	ck_assert_double_eq_tol(ftk_http_backoff(&o, 2, 0.0), 0.5, 1e-12);
	ck_assert_double_eq_tol(ftk_http_backoff(&o, 3, 0.0), 1.0, 1e-12);
	ck_assert_double_eq_tol(ftk_http_backoff(&o, 3, 0.5), 1.5, 1e-12);
	ck_assert_double_eq_tol(ftk_http_backoff(&o, 10, 0.0), 1.5, 1e-12);	/* capped at 3 */
	ck_assert(ftk_http_backoff(&o, 10, 0.999) < 3.0);
}
END_TEST

START_TEST(retry_after_forms)
{
	ck_assert_double_eq(ftk_http_parse_retry_after("120", 0), 120);
	ck_assert_double_eq(ftk_http_parse_retry_after(" 2 \r\n", 0), 2);
	/* 2015-10-21 07:28:00 UTC is 1445412480 */
	ck_assert_double_eq(ftk_http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT",
							1445412480 - 60), 60);
	ck_assert_double_eq(ftk_http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT",
							1445412480 + 5), 0);
	ck_assert_double_eq(ftk_http_parse_retry_after("soon", 0), -1);
	ck_assert_double_eq(ftk_http_parse_retry_after("-3", 0), -1);
	ck_assert_double_eq(ftk_http_parse_retry_after("12abc", 0), -1);
}
END_TEST

START_TEST(clean_request)
{
	struct ftk_http_opts o = fast_opts();
	struct ftk_http_result r =
		post(&o, "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}");
	ck_assert_int_eq(r.code, 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.attempts, 1);
	ck_assert_ptr_nonnull(strstr(r.body, "echo: hello"));
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(retries_429_5xx_and_connection_drops)
{
	struct ftk_http_opts o = fast_opts();
	o.max_wait_s = 0.05;	/* caps Retry-After too, so this stays fast */
	struct ftk_http_result r =
		post(&o, "{\"faults\":[\"500\",\"429\",\"503\",\"drop\",\"partial\",\"ok\"],"
			 "\"tag\":\"mixed\"}");
	ck_assert_msg(r.code == 0, "error: %s", r.error);
	ck_assert_int_eq(r.retries_5xx, 2);
	ck_assert_int_eq(r.retries_429, 1);
	/*
	 * A connection dropped before any answer on a reused keep-alive
	 * connection is re-sent by libcurl itself, so the drop may cost us no
	 * attempt; the partial body always does.  The server saw all six.
	 */
	ck_assert(r.retries_conn >= 1 && r.retries_conn <= 2);
	ck_assert_int_eq(r.attempts, 4 + r.retries_conn);
	ck_assert_int_eq(server_count(&srv, "mixed"), 6);
	ck_assert_int_eq(r.status, 200);
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(retries_timeout)
{
	struct ftk_http_opts o = fast_opts();
	struct ftk_http_result r = post(&o, "{\"faults\":[\"timeout\"],\"x\":2}");
	ck_assert_msg(r.code == 0, "error: %s", r.error);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_int_eq(r.retries_timeout, 1);
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(validator_rejects_malformed_json)
{
	struct ftk_http_opts o = fast_opts();
	o.validate = json_ok;
	struct ftk_http_result r = post(&o, "{\"faults\":[\"malformed\",\"malformed\"],\"x\":3}");
	ck_assert_msg(r.code == 0, "error: %s", r.error);
	ck_assert_int_eq(r.attempts, 3);
	ck_assert_int_eq(r.retries_invalid, 2);
	ftk_http_result_release(&r);

	/* without a validator the malformed body is the answer */
	o.validate = NULL;
	r = post(&o, "{\"faults\":[\"malformed\"],\"x\":4}");
	ck_assert_int_eq(r.code, 0);
	ck_assert_int_eq(r.attempts, 1);
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(request_timeout_408_is_retried)
{
	struct ftk_http_opts o = fast_opts();
	struct ftk_http_result r = post(&o, "{\"faults\":[\"status:408\"],\"x\":9}");
	ck_assert_msg(r.code == 0, "error: %s", r.error);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_int_eq(r.retries_5xx, 1);
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(client_error_is_final)
{
	struct ftk_http_opts o = fast_opts();
	struct ftk_http_result r = post(&o, "{\"faults\":[\"status:404\"],\"x\":5}");
	ck_assert_int_eq(r.code, FTK_ENET);
	ck_assert_int_eq(r.status, 404);
	ck_assert_int_eq(r.attempts, 1);
	ck_assert_str_eq(r.error, "HTTP 404");
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(gives_up_after_max_attempts)
{
	struct ftk_http_opts o = fast_opts();
	o.max_attempts = 3;
	struct ftk_http_result r = post(&o, "{\"faults\":[\"500\",\"500\",\"500\",\"500\"],\"x\":6}");
	ck_assert_int_eq(r.code, FTK_ENET);
	ck_assert_int_eq(r.attempts, 3);
	ck_assert_str_eq(r.error, "HTTP 500 (gave up after 3 attempts)");
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(honours_retry_after)
{
	struct ftk_http_opts o = fast_opts();	/* backoff alone would wait ~10 ms */
	struct ftk_http_result r = post(&o, "{\"faults\":[\"429\"],\"x\":7}");
	ck_assert_int_eq(r.code, 0);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_msg(r.seconds >= 0.95, "waited only %.3f s despite Retry-After: 1", r.seconds);
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(many_in_flight)
{
	struct ftk_http_opts o = fast_opts();
	o.max_in_flight = 4;
	o.validate = json_ok;
	struct ftk_http_client *c;
	struct ftk_error e;
	ck_assert_int_eq(ftk_http_client_new(&c, &o, &e), 0);
	int seen[24] = { 0 };
	for (long i = 0; i < 24; i++) {
		char body[128];
		/* every third one fails once first */
		snprintf(body, sizeof(body), "{\"faults\":[\"%s\"],\"i\":%ld}",
			 i % 3 == 0 ? "500" : "ok", i);
		ck_assert_int_eq(ftk_http_submit(c, srv.url, body, strlen(body), (void *)i, &e), 0);
	}
	ck_assert_uint_eq(ftk_http_pending(c), 24);
	struct ftk_http_result r;
	int got = 0, rc;
	while ((rc = ftk_http_next(c, &r, &e)) == 1) {
		long i = (long)r.tag;
		ck_assert(i >= 0 && i < 24);
		ck_assert_msg(r.code == 0, "request %ld: %s", i, r.error);
		ck_assert_int_eq(r.attempts, i % 3 == 0 ? 2 : 1);
		seen[i]++;
		got++;
		ftk_http_result_release(&r);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(got, 24);
	for (int i = 0; i < 24; i++)
		ck_assert_int_eq(seen[i], 1);
	ck_assert_uint_eq(ftk_http_pending(c), 0);
	ftk_http_client_free(c);
}
END_TEST

/* The most requests the server saw being answered at once (its log). */
static int server_max_inflight(const struct server *s, const char *tag)
{
	char path[128], line[512], want[128];
	snprintf(path, sizeof(path), "%s/log", s->dir);
	snprintf(want, sizeof(want), "\"tag\": \"%s\"", tag);
	FILE *f = fopen(path, "r");
	int mx = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "\"inflight\": ");
		if (strstr(line, want) && p && atoi(p + 12) > mx)
			mx = atoi(p + 12);
	}
	fclose(f);
	return mx;
}

START_TEST(in_flight_limit_is_kept)
{
	/* 12 slow requests (the server holds each 0.3 s) at most 3 at a time */
	struct ftk_http_opts o = fast_opts();
	o.max_in_flight = 3;
	o.timeout_s = 10;
	struct ftk_http_client *c;
	struct ftk_error e;
	ck_assert_int_eq(ftk_http_client_new(&c, &o, &e), 0);
	for (long i = 0; i < 12; i++) {
		char body[128];
		snprintf(body, sizeof(body), "{\"faults\":[\"slow\"],\"tag\":\"window\",\"i\":%ld}", i);
		ck_assert_int_eq(ftk_http_submit(c, srv.url, body, strlen(body), NULL, &e), 0);
	}
	struct ftk_http_result r;
	int got = 0;
	while (ftk_http_next(c, &r, &e) == 1) {
		ck_assert_msg(r.code == 0, "error: %s", r.error);
		got++;
		ftk_http_result_release(&r);
	}
	ftk_http_client_free(c);
	ck_assert_int_eq(got, 12);
	ck_assert_int_eq(server_count(&srv, "window"), 12);
	/* never more than 3 at once, and the window was used (not one by one) */
	ck_assert_int_eq(server_max_inflight(&srv, "window"), 3);
}
END_TEST

START_TEST(connection_refused_is_retried_then_fails)
{
	/* a port nobody listens on: bind, read the port, close */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t al = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", ntohs(a.sin_port));
	struct ftk_http_opts o = fast_opts();
	o.max_attempts = 2;
	struct ftk_http_result r;
	struct ftk_error e;
	ck_assert_int_eq(ftk_http_post(&o, url, "{}", 2, &r, &e), 0);
	ck_assert_int_eq(r.code, FTK_ENET);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_int_eq(r.retries_conn, 2);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.error, "connection error"));
	ftk_http_result_release(&r);
}
END_TEST

START_TEST(api_key_from_environment_never_leaks)
{
	const char *key = "sk-test-0123456789abcdef";
	setenv("FTK_TEST_HTTP_KEY", key, 1);
	static const char *const extra[] = { "--require-key-env", "FTK_TEST_HTTP_KEY", NULL };
	struct server ks = { 0 };
	server_start(&ks, extra);

	struct ftk_http_opts o = fast_opts();
	o.api_key_env = "FTK_TEST_HTTP_KEY";
	struct ftk_http_result r;
	struct ftk_error e;
	/* the server echoes the user's text, which holds the key: it must be scrubbed */
	char body[256];
	snprintf(body, sizeof(body), "{\"messages\":[{\"role\":\"user\",\"content\":\"say %s\"}]}",
		 key);
	ck_assert_int_eq(ftk_http_post(&o, ks.url, body, strlen(body), &r, &e), 0);
	ck_assert_msg(r.code == 0, "error: %s", r.error);
	ck_assert_ptr_null(strstr(r.body, key));
	ck_assert_ptr_nonnull(strstr(r.body, "echo: say ***"));
	ftk_http_result_release(&r);
	/*
	 * Issue 17.7: the echo in other forms.  The user's text holds the key
	 * JSON-escaped (\u0073k-..., \u002D in upper case) and URL-encoded
	 * (%73k%2d...); the server echoes the text, JSON-escaping its
	 * backslashes, so the body holds "\\u0073k-..." and "%73k%2d...": a
	 * JSON reader decoding twice, or a URL decoder, would get the key back.
	 */
	snprintf(body, sizeof(body),
		 "{\"messages\":[{\"role\":\"user\",\"content\":\"a \\\\u0073k\\\\u002Dtest-0123456789abcdef "
		 "b %%73k%%2dtest-0123456789ABCDEF c %%73k%%2dtest-0123456789abcdef\"}]}");
	ck_assert_int_eq(ftk_http_post(&o, ks.url, body, strlen(body), &r, &e), 0);
	ck_assert_msg(r.code == 0, "error: %s", r.error);
	ck_assert_msg(strstr(r.body, "echo: a *** b %73k%2dtest-0123456789ABCDEF c ***"), "%s", r.body);
	ftk_http_result_release(&r);

	/* a wrong key: 401, final, and the message holds no key */
	setenv("FTK_TEST_HTTP_KEY2", "sk-wrong-key-value", 1);
	o.api_key_env = "FTK_TEST_HTTP_KEY2";
	ck_assert_int_eq(ftk_http_post(&o, ks.url, "{}", 2, &r, &e), 0);
	ck_assert_int_eq(r.code, FTK_ENET);
	ck_assert_int_eq(r.status, 401);
	ck_assert_int_eq(r.attempts, 1);
	ck_assert_ptr_null(strstr(r.error, "sk-wrong"));
	ftk_http_result_release(&r);

	/* an unset variable: named in the message, nothing sent */
	unsetenv("FTK_TEST_HTTP_KEY3");
	o.api_key_env = "FTK_TEST_HTTP_KEY3";
	ftk_error_clear(&e);
	ck_assert_int_eq(ftk_http_post(&o, ks.url, "{}", 2, &r, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "environment variable 'FTK_TEST_HTTP_KEY3' is not set");
	server_stop(&ks);
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *pure = tcase_create("pure");
	tcase_add_test(pure, backoff_grows_and_is_capped);
	tcase_add_test(pure, retry_after_forms);
	suite_add_tcase(s, pure);

	TCase *net = tcase_create("server");
	tcase_set_timeout(net, 60);
	tcase_add_unchecked_fixture(net, setup, teardown);
	tcase_add_test(net, clean_request);
	tcase_add_test(net, retries_429_5xx_and_connection_drops);
	tcase_add_test(net, retries_timeout);
	tcase_add_test(net, validator_rejects_malformed_json);
	tcase_add_test(net, client_error_is_final);
	tcase_add_test(net, request_timeout_408_is_retried);
	tcase_add_test(net, gives_up_after_max_attempts);
	tcase_add_test(net, honours_retry_after);
	tcase_add_test(net, many_in_flight);
	tcase_add_test(net, in_flight_limit_is_kept);
	tcase_add_test(net, connection_refused_is_retried_then_fails);
	tcase_add_test(net, api_key_from_environment_never_leaks);
	suite_add_tcase(s, net);
	return s;
}

FTK_TEST_MAIN(http_suite)
