/*
 * The REST API's real libmicrohttpd server on a libuv loop, spoken to over a loopback socket
 * by a client thread, and the Host header check against DNS rebinding.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "test-api-fixture.h"
#include "util.h"

/* ---- the real server over a socket ---- */

struct client {
	uint16_t port;
	uv_async_t done;
	int failures;
	char log[4096];
};

/* One request on a fresh connection; returns the status and copies the body. */
static int http(uint16_t port, const char *raw, size_t raw_len, char *body, size_t body_size)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timeval tv = {.tv_sec = 10};
	char buf[16384];
	size_t got = 0;
	ssize_t n;
	int fd, status = -1;
	const char *b;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	/* The server may answer before the whole body is sent (413): send errors are fine. */
	for (size_t off = 0; off < raw_len; off += (size_t) n) {
		n = send(fd, raw + off, raw_len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
	}
	while (got < sizeof(buf) - 1 && (n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0)
		got += (size_t) n;
	close(fd);
	buf[got] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	b = strstr(buf, "\r\n\r\n");
	snprintf(body, body_size, "%s", b ? b + 4 : "");
	if (strstr(buf, "WWW-Authenticate: Bearer"))
		status += 10000; /* tells the caller the challenge header was there */
	return status;
}

static int http_s(uint16_t port, const char *raw, char *body, size_t body_size)
{
	return http(port, raw, strlen(raw), body, body_size);
}

static void check(struct client *c, bool ok, const char *what, const char *body)
{
	if (!ok) {
		c->failures++;
		snprintf(c->log + strlen(c->log), sizeof(c->log) - strlen(c->log), "%s: %.200s\n",
			 what, body);
	}
}

#define AUTH "Authorization: Bearer " TOKEN "\r\n"
#define CLOSE "Host: 127.0.0.1\r\nConnection: close\r\n"

/* Reads whose query and path need percent-decoding. */
static void client_reads(struct client *c, char *body, size_t size)
{
	int st;

	st = http_s(c->port, "GET /v1/health HTTP/1.1\r\n" CLOSE "\r\n", body, size);
	check(c, st == 200 && strstr(body, "\"database\""), "health", body);

	st = http_s(c->port,
		    "GET /v1/devices?limit=2&state=failed%2Creverted HTTP/1.1\r\n" CLOSE "\r\n",
		    body, size);
	check(c,
	      st == 200 && strstr(body, "AA:00:00:00:00:0B") && strstr(body, "next_cursor\":\"d"),
	      "devices query decoding", body);

	st =
	    http_s(c->port, "GET /v1/devices/AA%3A00%3A00%3A00%3A00%3A0A HTTP/1.1\r\n" CLOSE "\r\n",
		   body, size);
	check(c, st == 200 && strstr(body, "\"images\""), "device path decoding", body);
}

static void client_auth(struct client *c, char *body, size_t size)
{
	int st;

	st =
	    http_s(c->port, "POST /v1/rollout/pause HTTP/1.1\r\nContent-Length: 0\r\n" CLOSE "\r\n",
		   body, size);
	check(c, st == 10401 && strstr(body, "\"unauthorized\""), "401 with challenge", body);

	st = http_s(c->port,
		    "POST /v1/rollout/pause HTTP/1.1\r\n" AUTH "Content-Length: 18\r\n"
		    "Content-Type: application/json\r\n" CLOSE "\r\n{\"reason\":\"tests\"}",
		    body, size);
	check(c, st == 200 && strstr(body, "\"halted\":true"), "pause", body);
}

static void client_body_caps(struct client *c, char *body, size_t size)
{
	size_t big_len, off;
	char *big;
	int st;

	/* Content-Length over the cap: refused from the headers, body never read. */
	st = http_s(c->port,
		    "POST /v1/rollout/pause HTTP/1.1\r\n" AUTH "Content-Length: 70000\r\n" CLOSE
		    "\r\n",
		    body, size);
	check(c, st == 413 && strstr(body, "payload_too_large"), "413 by length", body);

	/* Chunked body over the cap: read, dropped, then refused. */
	big_len = 256 + 3 * (API_MAX_BODY / 2 + 16);
	big = malloc(big_len);
	off = (size_t) sprintf(big, "POST /v1/rollout/pause HTTP/1.1\r\n" AUTH
				    "Transfer-Encoding: chunked\r\n" CLOSE "\r\n");
	for (int i = 0; i < 3; i++) {
		off += (size_t) sprintf(big + off, "%x\r\n", API_MAX_BODY / 2);
		memset(big + off, ' ', API_MAX_BODY / 2);
		off += API_MAX_BODY / 2;
		off += (size_t) sprintf(big + off, "\r\n");
	}
	off += (size_t) sprintf(big + off, "0\r\n\r\n");
	st = http(c->port, big, off, body, size);
	free(big);
	check(c, st == 413 && strstr(body, "payload_too_large"), "413 chunked", body);
}

static void client_refusals(struct client *c, char *body, size_t size)
{
	char req[4096];
	size_t o;
	int st;

	st = http_s(c->port, "DELETE /v1/devices HTTP/1.1\r\n" CLOSE "\r\n", body, size);
	check(c, st == 405 && strstr(body, "method_not_allowed"), "405", body);

	st = http_s(c->port, "GET /nope HTTP/1.1\r\n" CLOSE "\r\n", body, size);
	check(c, st == 404 && strstr(body, "not_found"), "404", body);

	/* Too many header fields: refused with a JSON body of our own. */
	o = (size_t) sprintf(req, "GET /v1/health HTTP/1.1\r\n" CLOSE);
	for (int i = 0; i < API_MAX_HEADERS + 1; i++)
		o += (size_t) sprintf(req + o, "X-H%d: v\r\n", i);
	sprintf(req + o, "\r\n");
	st = http_s(c->port, req, body, size);
	check(c, st == 431 && strstr(body, "headers_too_large"), "431", body);

	/* Through libmicrohttpd: the Host header is the one that is checked. */
	st = http_s(c->port,
		    "GET /v1/health HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n",
		    body, size);
	check(c, st == 421 && strstr(body, "misdirected_request"), "421 foreign Host", body);
}

/* The steps run in this order: the metrics count the 401 and the 421 above. */
static void *client_main(void *arg)
{
	struct client *c = arg;
	char body[8192];
	int st;

	client_reads(c, body, sizeof(body));
	client_auth(c, body, sizeof(body));
	client_body_caps(c, body, sizeof(body));
	client_refusals(c, body, sizeof(body));

	st = http_s(c->port, "GET /metrics HTTP/1.1\r\n" CLOSE "\r\n", body, sizeof(body));
	check(c, st == 200 && strstr(body, "fotagw_api_unauthorized_total 1"), "metrics", body);
	check(c, strstr(body, "fotagw_api_misdirected_total 1") != NULL, "misdirected counted",
	      body);

	uv_async_send(&c->done);
	return NULL;
}

static void on_client_done(uv_async_t *a)
{
	struct fgw_api **api = a->data;

	*api = fgw_api_free(*api);
	uv_close((uv_handle_t *) a, NULL);
}

static void test_server(void **state)
{
	struct fixture *f = *state;
	struct fgw_api_options o = {.listen = "127.0.0.1", .token = TOKEN};
	struct client c = {0};
	struct fgw_api *api = NULL;
	uv_loop_t loop;
	pthread_t th;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(fgw_api_new(&loop, f->s, &o, &f->api.prov, &api), 0);
	c.port = fgw_api_port(api);
	assert_true(c.port > 0);
	uv_async_init(&loop, &c.done, on_client_done);
	c.done.data = &api;
	assert_int_equal(pthread_create(&th, NULL, client_main, &c), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	if (c.failures)
		fail_msg("%d failed:\n%s", c.failures, c.log);
	assert_int_equal(f->fake.pauses, 1);
	assert_string_equal(f->fake.last_reason, "tests");
	/* Every handle closed: the loop closes cleanly. */
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_server_errors(void **state)
{
	struct fixture *f = *state;
	struct fgw_api_options o = {.listen = "not-an-address"};
	struct fgw_api *api = NULL, *api2 = NULL;
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(fgw_api_new(&loop, f->s, &o, NULL, &api), -EINVAL);
	o.listen = "::1";
	o.token = "";
	assert_int_equal(fgw_api_new(&loop, f->s, &o, NULL, &api), -EINVAL);
	o.token = NULL;
	o.listen = "127.0.0.1";
	assert_int_equal(fgw_api_new(&loop, f->s, &o, NULL, &api), 0);
	/* The same port twice: the second one says why. */
	o.port = fgw_api_port(api);
	assert_int_equal(fgw_api_new(&loop, f->s, &o, NULL, &api2), -EADDRINUSE);
	fgw_api_free(api);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_host_allowed(void **state)
{
	/* IP literals and localhost, with or without a port, are always this gateway. */
	assert_true(api_host_allowed(NULL, NULL));
	assert_true(api_host_allowed(NULL, "127.0.0.1"));
	assert_true(api_host_allowed(NULL, "192.0.2.7:8370"));
	assert_true(api_host_allowed(NULL, "[::1]:8370"));
	assert_true(api_host_allowed(NULL, "[fe80::1]"));
	assert_true(api_host_allowed(NULL, "LOCALHOST:8370"));
	/* Names are not, unless configured (case-insensitive, trailing dot ignored). */
	assert_false(api_host_allowed(NULL, "rebind.example"));
	assert_false(api_host_allowed("", "rebind.example:8370"));
	assert_true(api_host_allowed("gw1.site.example  gw1", "GW1.site.example.:8370"));
	assert_true(api_host_allowed("gw1.site.example gw1", "gw1"));
	assert_false(api_host_allowed("gw1.site.example", "gw1.site.example.evil"));
	assert_false(api_host_allowed("gw1.site.example", "site.example"));
	/* Malformed: bad ports, unbalanced brackets, empty, a name posing as an address. */
	assert_false(api_host_allowed(NULL, ""));
	assert_false(api_host_allowed(NULL, ":8370"));
	assert_false(api_host_allowed(NULL, "127.0.0.1:"));
	assert_false(api_host_allowed(NULL, "127.0.0.1:80a"));
	assert_false(api_host_allowed(NULL, "127.0.0.1:123456"));
	assert_false(api_host_allowed(NULL, "[::1"));
	assert_false(api_host_allowed(NULL, "[::1]x"));
	assert_false(api_host_allowed(NULL, "[rebind.example]"));
	assert_false(api_host_allowed(NULL, "127.0.0.1.rebind.example"));
}

/* DNS rebinding: every route refuses a foreign Host with 421 before anything else runs. */
static void test_host_header(void **state)
{
	struct fixture *f = *state;
	const char *paths[] = {"/v1/health", "/v1/devices", "/metrics", "/v1/rollout"};
	struct api_response resp;

	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		struct api_request req = {.method = "GET",
					  .path = paths[i],
					  .arg = query_arg,
					  .host = "rebind.example:8370",
					  .peer = "test"};
		fgw_api__handle(&f->api, &req, &resp);
		assert_int_equal(resp.status, 421);
		assert_non_null(strstr(resp.body, "misdirected_request"));
		api_response_done(&resp);
		req.host = "127.0.0.1:8370";
		fgw_api__handle(&f->api, &req, &resp);
		assert_int_equal(resp.status, 200);
		api_response_done(&resp);
	}
	/* A POST with a valid token but a foreign Host is refused too. */
	struct api_request post = {.method = "POST",
				   .path = "/v1/rollout/pause",
				   .arg = query_arg,
				   .authorization = "Bearer " TOKEN,
				   .host = "rebind.example",
				   .peer = "test"};
	fgw_api__handle(&f->api, &post, &resp);
	assert_int_equal(resp.status, 421);
	api_response_done(&resp);
	assert_int_equal(f->api.stats.misdirected, 5);
	/* A configured name passes. */
	f->api.allowed_hosts = (char *) "gw.site.example";
	struct api_request named = {.method = "GET",
				    .path = "/v1/health",
				    .arg = query_arg,
				    .host = "gw.site.example:8370",
				    .peer = "test"};
	fgw_api__handle(&f->api, &named, &resp);
	assert_int_equal(resp.status, 200);
	api_response_done(&resp);
	f->api.allowed_hosts = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_host_allowed),
	    T(test_host_header, setup, NULL),
	    T(test_server, setup, NULL),
	    T(test_server_errors, setup_bare, NULL),
	};

	return cmocka_run_group_tests_name("api-server", tests, NULL, NULL);
}
