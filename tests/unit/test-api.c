/*
 * The REST API in-process: routing, auth and limits as data; every handler against a seeded
 * SQLite file and a scripted provider; the small pure pieces (tokens, cursors, addresses).
 * The real server over a socket is test-api-server.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "test-api-fixture.h"
#include "util.h"

/* ---- routing, auth, limits: cases as data ---- */

struct route_case {
	const char *method, *path, *query, *auth, *body;
	unsigned status;
	const char *error; /* expected "error" code, NULL for success */
	const char *allow;
};

#define BEARER "Bearer " TOKEN

static const struct route_case route_cases[] = {
    {"GET", "/v1/health", NULL, NULL, NULL, 200, NULL, NULL},
    {"HEAD", "/v1/health", NULL, NULL, NULL, 200, NULL, NULL},
    {"GET", "/v1/devices", NULL, NULL, NULL, 200, NULL, NULL},
    {"GET", "/v1/devices/AA:00:00:00:00:0A", NULL, NULL, NULL, 200, NULL, NULL},
    {"GET", "/v1/releases", NULL, NULL, NULL, 200, NULL, NULL},
    {"GET", "/v1/rollout", NULL, NULL, NULL, 200, NULL, NULL},
    {"GET", "/v1/nope", NULL, NULL, NULL, 404, "not_found", NULL},
    {"GET", "/index.html", NULL, NULL, NULL, 404, "not_found", NULL},
    {"POST", "/", NULL, BEARER, NULL, 405, "method_not_allowed", "GET, HEAD"},
    {"GET", "/v1/health/", NULL, NULL, NULL, 404, "not_found", NULL},
    {"GET", "/v1/devices/", NULL, NULL, NULL, 404, "not_found", NULL},
    {"GET", "/v1/devices/AA:00:00:00:00:99", NULL, NULL, NULL, 404, "not_found", NULL},
    {"GET", "/v1/devices/a%22b", NULL, NULL, NULL, 400, "bad_request", NULL},
    {"GET", "/v1/devices/AA:00:00:00:00:0A/x", NULL, NULL, NULL, 404, "not_found", NULL},
    {"POST", "/v1/health", NULL, BEARER, NULL, 405, "method_not_allowed", "GET, HEAD"},
    {"DELETE", "/v1/devices", NULL, NULL, NULL, 405, "method_not_allowed", "GET, HEAD"},
    {"GET", "/v1/rollout/pause", NULL, NULL, NULL, 405, "method_not_allowed", "POST"},
    {"PUT", "/v1/devices/AA:00:00:00:00:0A/retry", NULL, BEARER, NULL, 405, "method_not_allowed",
     "POST"},
    {"GET", "/v1/devices", "limit=0", NULL, NULL, 400, "bad_request", NULL},
    {"GET", "/v1/devices", "limit=1001", NULL, NULL, 400, "bad_request", NULL},
    {"GET", "/v1/devices", "limit=1000", NULL, NULL, 200, NULL, NULL},
    {"GET", "/v1/devices", "limit=ten", NULL, NULL, 400, "bad_request", NULL},
    {"GET", "/v1/devices", "cursor=zz", NULL, NULL, 400, "bad_request", NULL},
    {"GET", "/v1/devices", "cursor=d4", NULL, NULL, 400, "bad_request", NULL},
    {"GET", "/v1/devices", "state=bogus", NULL, NULL, 400, "bad_request", NULL},
    {"GET", "/v1/devices", "state=", NULL, NULL, 400, "bad_request", NULL},
    {"GET", "/v1/devices", "state=failed,idle", NULL, NULL, 200, NULL, NULL},
    {"POST", "/v1/rollout/pause", NULL, NULL, NULL, 401, "unauthorized", NULL},
    {"POST", "/v1/rollout/pause", NULL, "Bearer wrong", NULL, 401, "unauthorized", NULL},
    {"POST", "/v1/rollout/pause", NULL, "Bearer " TOKEN "x", NULL, 401, "unauthorized", NULL},
    {"POST", "/v1/rollout/pause", NULL, "Basic " TOKEN, NULL, 401, "unauthorized", NULL},
    {"POST", "/v1/rollout/resume", NULL, "Bearer ", NULL, 401, "unauthorized", NULL},
    {"POST", "/v1/devices/AA:00:00:00:00:0A/retry", NULL, NULL, NULL, 401, "unauthorized", NULL},
    {"POST", "/v1/rollout/pause", NULL, BEARER, "{", 400, "bad_request", NULL},
    {"POST", "/v1/rollout/pause", NULL, BEARER, "[]", 400, "bad_request", NULL},
    {"POST", "/v1/rollout/pause", NULL, BEARER, "{\"reason\":5}", 400, "bad_request", NULL},
    {"POST", "/v1/rollout/pause", NULL, BEARER, "{\"why\":\"x\"}", 400, "bad_request", NULL},
    {"POST", "/v1/rollout/pause", NULL, BEARER, "{} x", 400, "bad_request", NULL},
    {"POST", "/v1/rollout/pause", NULL, "bearer " TOKEN, "{\"reason\":\"lunch\"}", 200, NULL, NULL},
    {"POST", "/v1/rollout/resume", NULL, BEARER, NULL, 200, NULL, NULL},
    {"POST", "/v1/rollout/resume", NULL, BEARER, "{\"a\":1}", 400, "bad_request", NULL},
    {"POST", "/v1/devices/AA:00:00:00:00:0A/retry", NULL, BEARER, "", 202, NULL, NULL},
    {"POST", "/v1/devices/AA:00:00:00:00:99/retry", NULL, BEARER, NULL, 404, "not_found", NULL},
};

static void test_route(void **state)
{
	struct fixture *f = *state;
	const struct route_case *c = f->param;
	struct api_response resp;
	cJSON *j;

	request(f, c->method, c->path, c->query, c->auth, c->body, &resp);
	if (resp.status != c->status)
		fail_msg("%s %s?%s: status %u, want %u: %s", c->method, c->path,
			 c->query ? c->query : "", resp.status, c->status, resp.body);
	if (c->allow)
		assert_string_equal(resp.allow, c->allow);
	if (strcmp(c->path, "/metrics") != 0) {
		j = cJSON_Parse(resp.body);
		assert_non_null(j);
		if (c->error) {
			assert_string_equal(str(j, "error"), c->error);
			assert_true(strlen(str(j, "message")) > 0);
		} else {
			assert_null(cJSON_GetObjectItemCaseSensitive(j, "error"));
		}
		cJSON_Delete(j);
	}
	api_response_done(&resp);
}

static void test_body_limit(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;
	char *body = malloc(API_MAX_BODY + 2);

	memset(body, ' ', API_MAX_BODY + 1);
	body[API_MAX_BODY + 1] = '\0';
	request(f, "POST", "/v1/rollout/pause", NULL, BEARER, body, &resp);
	assert_int_equal(resp.status, 413);
	api_response_done(&resp);
	/* Exactly at the cap is read (and refused as not JSON, not as too big). */
	body[API_MAX_BODY] = '\0';
	request(f, "POST", "/v1/rollout/pause", NULL, BEARER, body, &resp);
	assert_int_equal(resp.status, 400);
	api_response_done(&resp);
	free(body);
	assert_int_equal(f->fake.pauses, 0);
}

static void test_long_path(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;
	char *path = malloc(API_MAX_URL + 2);

	memset(path, 'a', API_MAX_URL + 1);
	path[0] = '/';
	path[API_MAX_URL + 1] = '\0';
	request(f, "GET", path, NULL, NULL, NULL, &resp);
	assert_int_equal(resp.status, 414);
	api_response_done(&resp);
	free(path);
}

/* ---- handlers ---- */

static void test_devices_pages(void **state)
{
	struct fixture *f = *state;
	static const char *const want[] = {"AA:00:00:00:00:0A", "AA:00:00:00:00:0B",
					   "AA:00:00:00:00:0C", "AA:00:00:00:00:0D",
					   "AA:00:00:00:00:0E", "AA:00:00:00:00:0F"};
	char query[160] = "limit=4";
	size_t n = 0;
	int pages = 0;

	for (;;) {
		cJSON *j = get_json(f, "GET", "/v1/devices", query, NULL, NULL, 200);
		const cJSON *d, *next = at(j, "next_cursor");

		assert_string_equal(str(j, "release"), "r2");
		cJSON_ArrayForEach(d, at(j, "devices"))
		{
			assert_true(n < ARRAY_SIZE(want));
			assert_string_equal(str(d, "address"), want[n]);
			n++;
		}
		pages++;
		if (cJSON_IsNull(next)) {
			cJSON_Delete(j);
			break;
		}
		snprintf(query, sizeof(query), "limit=4&cursor=%s", next->valuestring);
		cJSON_Delete(j);
	}
	assert_int_equal(n, ARRAY_SIZE(want));
	assert_int_equal(pages, 2);
}

static void test_devices_filters(void **state)
{
	struct fixture *f = *state;
	cJSON *j;
	const cJSON *d;

	j = get_json(f, "GET", "/v1/devices", "state=failed,reverted&group=field", NULL, NULL, 200);
	assert_int_equal(cJSON_GetArraySize(at(j, "devices")), 2);
	d = cJSON_GetArrayItem(at(j, "devices"), 0);
	assert_string_equal(str(d, "address"), "AA:00:00:00:00:0C");
	assert_string_equal(str(d, "state"), "failed");
	assert_string_equal(str(at(d, "job"), "reason"), "image rejected");
	assert_string_equal(str(d, "group"), "field");
	cJSON_Delete(j);

	/* A release in view: only devices with a job for it, state of that job. */
	j = get_json(f, "GET", "/v1/devices", "release=r1", NULL, NULL, 200);
	assert_int_equal(cJSON_GetArraySize(at(j, "devices")), 1);
	assert_string_equal(str(cJSON_GetArrayItem(at(j, "devices"), 0), "state"), "done");
	assert_string_equal(str(j, "release"), "r1");
	cJSON_Delete(j);

	j = get_json(f, "GET", "/v1/devices", "state=idle", NULL, NULL, 200);
	d = cJSON_GetArrayItem(at(j, "devices"), 0);
	assert_int_equal(cJSON_GetArraySize(at(j, "devices")), 1);
	assert_true(cJSON_IsNull(at(d, "job")));
	assert_true(cJSON_IsNull(at(d, "rssi")));
	cJSON_Delete(j);
}

static void test_device_detail(void **state)
{
	struct fixture *f = *state;
	cJSON *j = get_json(f, "GET", "/v1/devices/AA:00:00:00:00:0A", NULL, NULL, NULL, 200);
	const cJSON *job = at(j, "job"), *p = at(job, "progress"), *img, *ev;

	assert_string_equal(str(j, "state"), "uploading");
	assert_true(num(j, "rssi") == -40);
	assert_int_equal(num(job, "offset"), 4096);
	assert_true(cJSON_IsTrue(at(job, "canary")));
	assert_int_equal(num(p, "bytes"), 4096);
	assert_int_equal(num(p, "total"), 8192);
	assert_true(num(p, "percent") == 50.0);
	assert_int_equal(num(p, "eta_s"), 4);
	assert_int_equal(cJSON_GetArraySize(at(j, "images")), 3);
	img = cJSON_GetArrayItem(at(j, "images"), 0);
	assert_string_equal(str(img, "hash"), "aa00");
	assert_true(cJSON_IsTrue(at(at(img, "flags"), "active")));
	assert_true(cJSON_IsTrue(at(at(img, "flags"), "confirmed")));
	assert_true(cJSON_IsFalse(at(at(img, "flags"), "pending")));
	assert_int_equal(cJSON_GetArraySize(at(j, "events")), 3);
	ev = cJSON_GetArrayItem(at(j, "events"), 0);
	assert_string_equal(str(ev, "to"), "uploading"); /* newest first */
	cJSON_Delete(j);

	/* A finished job has no live progress even when the provider could give some. */
	j = get_json(f, "GET", "/v1/devices/AA:00:00:00:00:0E", NULL, NULL, NULL, 200);
	assert_null(cJSON_GetObjectItemCaseSensitive(at(j, "job"), "progress"));
	assert_int_equal(cJSON_GetArraySize(at(j, "images")), 0);
	cJSON_Delete(j);
}

static void test_rollout(void **state)
{
	struct fixture *f = *state;
	cJSON *j = get_json(f, "GET", "/v1/rollout", NULL, NULL, NULL, 200);
	const cJSON *counts = at(j, "counts"), *canary = at(j, "canary");
	const cJSON *reasons = at(j, "failure_reasons"), *failures = at(j, "failures");

	assert_string_equal(str(at(j, "release"), "id"), "r2");
	assert_true(cJSON_IsTrue(at(j, "halted")));
	assert_string_equal(str(j, "halted_by"), "operator");
	assert_string_equal(str(j, "halted_reason"), "lunch");
	assert_int_equal(num(j, "total_devices"), 6);
	assert_int_equal(num(counts, "failed"), 2);
	assert_int_equal(num(counts, "reverted"), 1);
	assert_int_equal(num(counts, "uploading"), 1);
	assert_int_equal(num(counts, "idle"), 1);
	assert_int_equal(num(counts, "queued"), 0);
	assert_int_equal(num(j, "in_progress"), 1);
	assert_true(num(j, "failure_rate") == 0.75);
	assert_true(num(j, "max_failure_rate") == 0.2);
	assert_int_equal(num(canary, "total"), 2);
	assert_int_equal(num(canary, "failed"), 1);
	assert_int_equal(num(canary, "in_progress"), 1);
	assert_string_equal(str(canary, "status"), "failed");
	assert_string_equal(str(cJSON_GetArrayItem(reasons, 0), "reason"), "image rejected");
	assert_int_equal(num(cJSON_GetArrayItem(reasons, 0), "count"), 2);
	assert_int_equal(cJSON_GetArraySize(failures), 3);
	assert_string_equal(str(cJSON_GetArrayItem(failures, 0), "address"), "AA:00:00:00:00:0D");
	assert_int_equal(num(cJSON_GetArrayItem(failures, 0), "at"), 80);
	cJSON_Delete(j);
}

static void test_rollout_empty(void **state)
{
	struct fixture *f = *state;
	cJSON *j = get_json(f, "GET", "/v1/rollout", NULL, NULL, NULL, 200);

	assert_true(cJSON_IsNull(at(j, "release")));
	assert_true(cJSON_IsNull(at(j, "failure_rate")));
	assert_true(cJSON_IsFalse(at(j, "halted")));
	assert_true(cJSON_IsNull(at(j, "halted_by")));
	assert_int_equal(num(j, "total_devices"), 0);
	assert_string_equal(str(at(j, "canary"), "status"), "none");
	cJSON_Delete(j);
	j = get_json(f, "GET", "/v1/devices", NULL, NULL, NULL, 200);
	assert_int_equal(cJSON_GetArraySize(at(j, "devices")), 0);
	assert_true(cJSON_IsNull(at(j, "release")));
	assert_true(cJSON_IsNull(at(j, "next_cursor")));
	cJSON_Delete(j);
	j = get_json(f, "GET", "/v1/health", NULL, NULL, NULL, 200);
	assert_true(cJSON_IsNull(at(j, "release")));
	cJSON_Delete(j);
}

static void test_health(void **state)
{
	struct fixture *f = *state;
	cJSON *j = get_json(f, "GET", "/v1/health", NULL, NULL, NULL, 200);

	assert_string_equal(str(j, "status"), "ok");
	assert_string_equal(str(j, "version"), "9.9.9");
	assert_true(num(j, "uptime_s") == 1.5);
	assert_string_equal(str(j, "adapter_state"), "powered");
	assert_string_equal(str(at(j, "database"), "state"), "ok");
	assert_true(num(at(j, "database"), "schema_version") >= 2);
	assert_string_equal(str(at(j, "release"), "id"), "r2");
	assert_true(cJSON_IsTrue(at(j, "rollout_halted")));
	cJSON_Delete(j);

	/* The provider cannot answer: degraded, 503, and nothing made up in its place. */
	f->fake.health_r = -EIO;
	j = get_json(f, "GET", "/v1/health", NULL, NULL, NULL, 503);
	assert_string_equal(str(j, "status"), "degraded");
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "version"));
	assert_true(cJSON_IsNull(at(j, "adapter_state")));
	cJSON_Delete(j);
}

static void test_adapters(void **state)
{
	struct fixture *f = *state;
	cJSON *j = get_json(f, "GET", "/v1/adapters", NULL, NULL, NULL, 200), *a;

	assert_int_equal(cJSON_GetArraySize(at(j, "adapters")), 2);
	a = cJSON_GetArrayItem(at(j, "adapters"), 0);
	assert_string_equal(str(a, "name"), "hci0");
	assert_string_equal(str(a, "state"), "on");
	assert_true(num(a, "links") == 3 && num(a, "ready_links") == 2);
	assert_true(num(a, "upload_limit") == 3);
	assert_true(num(a, "goodput_bytes_per_second") == 87500);
	assert_true(num(a, "ceiling_share") == 0.5);
	assert_string_equal(str(a, "ceiling_source"), "configured");
	assert_true(num(a, "connect_busy_total") == 4);
	a = cJSON_GetArrayItem(at(j, "adapters"), 1);
	assert_string_equal(str(a, "state"), "off");
	assert_true(num(a, "ceiling_share") == 0 && num(a, "links_refused_total") == 1);
	cJSON_Delete(j);
	j = get_json(f, "POST", "/v1/adapters", NULL, BEARER, NULL, 405);
	cJSON_Delete(j);
}

static void test_no_provider(void **state)
{
	struct fixture *f = *state;
	cJSON *j = get_json(f, "GET", "/v1/health", NULL, NULL, NULL, 200);
	struct api_response resp;

	assert_null(cJSON_GetObjectItemCaseSensitive(j, "version"));
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "uptime_s"));
	assert_true(cJSON_IsNull(at(j, "adapter_state")));
	cJSON_Delete(j);
	j = get_json(f, "GET", "/v1/adapters", NULL, NULL, NULL, 200);
	assert_int_equal(cJSON_GetArraySize(at(j, "adapters")), 0);
	cJSON_Delete(j);
	j = get_json(f, "GET", "/v1/devices/AA:00:00:00:00:0A", NULL, NULL, NULL, 200);
	assert_null(cJSON_GetObjectItemCaseSensitive(at(j, "job"), "progress"));
	cJSON_Delete(j);
	j = get_json(f, "POST", "/v1/rollout/pause", NULL, BEARER, NULL, 503);
	assert_string_equal(str(j, "error"), "unavailable");
	cJSON_Delete(j);
	j = get_json(f, "POST", "/v1/rollout/resume", NULL, BEARER, NULL, 503);
	cJSON_Delete(j);
	j = get_json(f, "POST", "/v1/devices/AA:00:00:00:00:0B/retry", NULL, BEARER, NULL, 503);
	cJSON_Delete(j);
	/* Auth still comes first. */
	j = get_json(f, "POST", "/v1/rollout/pause", NULL, NULL, NULL, 401);
	cJSON_Delete(j);
	request(f, "GET", "/metrics", NULL, NULL, NULL, &resp);
	assert_int_equal(resp.status, 200);
	assert_null(strstr(resp.body, "fotagw_build_info"));
	assert_non_null(strstr(resp.body, "fotagw_devices{state=\"failed\"} 2\n"));
	api_response_done(&resp);
}

static void test_no_token(void **state)
{
	struct fixture *f = *state;
	cJSON *j;

	f->api.token = NULL;
	f->api.token_len = 0;
	j = get_json(f, "POST", "/v1/rollout/pause", NULL, BEARER, NULL, 401);
	assert_non_null(strstr(str(j, "message"), "no API token"));
	cJSON_Delete(j);
	assert_int_equal(f->fake.pauses, 0);
	assert_int_equal(f->api.stats.unauthorized, 1);
}

static void test_actions(void **state)
{
	struct fixture *f = *state;
	cJSON *j;

	j = get_json(f, "POST", "/v1/rollout/pause", NULL, BEARER, "{\"reason\":\"storm\"}", 200);
	assert_true(cJSON_IsTrue(at(j, "halted")));
	assert_true(cJSON_IsTrue(at(j, "changed")));
	assert_string_equal(f->fake.last_reason, "storm");
	cJSON_Delete(j);

	f->fake.pause_r = -EALREADY;
	j = get_json(f, "POST", "/v1/rollout/pause", NULL, BEARER, NULL, 200);
	assert_true(cJSON_IsFalse(at(j, "changed")));
	assert_string_equal(f->fake.last_reason, "(null)");
	cJSON_Delete(j);

	f->fake.resume_r = -ENOENT;
	cJSON_Delete(get_json(f, "POST", "/v1/rollout/resume", NULL, BEARER, NULL, 409));
	f->fake.resume_r = -EIO;
	cJSON_Delete(get_json(f, "POST", "/v1/rollout/resume", NULL, BEARER, NULL, 500));

	j = get_json(f, "POST", "/v1/devices/AA:00:00:00:00:0B/retry", NULL, BEARER, NULL, 202);
	assert_string_equal(str(j, "address"), "AA:00:00:00:00:0B");
	assert_string_equal(f->fake.last_retry, "AA:00:00:00:00:0B");
	cJSON_Delete(j);
	f->fake.retry_r = -EBUSY;
	cJSON_Delete(
	    get_json(f, "POST", "/v1/devices/AA:00:00:00:00:0A/retry", NULL, BEARER, NULL, 409));
	f->fake.retry_r = -EALREADY;
	cJSON_Delete(
	    get_json(f, "POST", "/v1/devices/AA:00:00:00:00:0E/retry", NULL, BEARER, NULL, 409));
	/* Unknown devices never reach the provider. */
	cJSON_Delete(
	    get_json(f, "POST", "/v1/devices/AA:00:00:00:00:77/retry", NULL, BEARER, NULL, 404));
	assert_int_equal(f->fake.retries, 3);
	assert_int_equal(f->fake.pauses, 2);
	assert_int_equal(f->fake.resumes, 2);
}

static void test_releases(void **state)
{
	struct fixture *f = *state;
	cJSON *j = get_json(f, "GET", "/v1/releases", NULL, NULL, NULL, 200);
	const cJSON *list = at(j, "releases"), *r2 = cJSON_GetArrayItem(list, 1);

	assert_string_equal(str(j, "current"), "r2");
	assert_int_equal(cJSON_GetArraySize(list), 4);
	assert_string_equal(str(cJSON_GetArrayItem(list, 0), "id"), "r3");
	/* served without a token: no userinfo, no query (issue 18 item 5) */
	assert_string_equal(str(at(cJSON_GetArrayItem(list, 0), "bundle"), "url"),
			    "http://x/3.zip");
	assert_string_equal(str(r2, "id"), "r2");
	assert_true(cJSON_IsTrue(at(r2, "current")));
	assert_true(cJSON_IsFalse(at(cJSON_GetArrayItem(list, 0), "current")));
	assert_true(num(at(r2, "policy"), "max_failure_rate") == 0.2);
	assert_string_equal(str(at(r2, "bundle"), "sha256"), "bb");
	assert_true(cJSON_IsNull(at(r2, "groups")));
	cJSON_Delete(j);
}

/* Issue #18 item 6: free-text failure reasons never become label values. */
static void test_metrics_failures_bounded(void **state)
{
	static const char *const stages[] = {"connecting", "uploading", "marking", "verifying"};
	struct fixture *f = *state;
	struct api_response resp;
	sqlite3 *db;
	char sql[640], line[256];
	size_t series = 0;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	for (int i = 0; i < 50; i++) {
		snprintf(sql, sizeof(sql),
			 "INSERT INTO devices (address, created_at, enrolled) VALUES "
			 "('BB:00:00:00:00:%02X', 1, 1);"
			 "INSERT INTO jobs (address, release_id, state, reason, created_at, "
			 "updated_at) VALUES ('BB:00:00:00:00:%02X', 'r2', '%s', "
			 "'device said rsn %d at offset %d', 1, 1);"
			 "INSERT INTO events (at, address, job_id, kind, from_state, to_state) "
			 "VALUES (2, 'BB:00:00:00:00:%02X', last_insert_rowid(), 'job-state', "
			 "'%s', '%s');",
			 i, i, i % 5 ? "failed" : "reverted", i, i * 4096, i,
			 stages[i % ARRAY_SIZE(stages)], i % 5 ? "failed" : "reverted");
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	}
	sqlite3_close(db);
	request(f, "GET", "/metrics", NULL, NULL, NULL, &resp);
	assert_int_equal(resp.status, 200);
	for (const char *p = resp.body; (p = strstr(p, "\nfotagw_job_failures{")); p++) {
		snprintf(line, sizeof(line), "%.*s", (int) strcspn(p + 1, "\n"), p + 1);
		if (strstr(line, "rsn") || strstr(line, "reason="))
			fail_msg("free text in a label: %s", line);
		series++;
	}
	/* 50 reasons, yet at most outcomes x stages: the seed's 2, and 2 x 4 new ones. */
	if (series != 10)
		fail_msg("%zu fotagw_job_failures series:\n%s", series, resp.body);
	api_response_done(&resp);
}

static void test_metrics(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;
	static const char *const want[] = {
	    "# TYPE fotagw_devices gauge\n",
	    "fotagw_devices{state=\"failed\"} 2\n",
	    "fotagw_devices{state=\"idle\"} 1\n",
	    "fotagw_devices{state=\"queued\"} 0\n",
	    "fotagw_canary_devices{state=\"uploading\"} 1\n",
	    "fotagw_rollout_halted 1\n",
	    "fotagw_rollout_failure_rate 0.75\n",
	    /* the seed's events name no job: the stage is not known */
	    "fotagw_job_failures{outcome=\"failed\",stage=\"unknown\"} 2\n",
	    "fotagw_job_failures{outcome=\"reverted\",stage=\"unknown\"} 1\n",
	    "fotagw_releases{state=\"verified\"} 2\n",
	    "fotagw_manifest_sequence 3\n",
	    "fotagw_manifest_last_result{result=\"not-modified\"} 1\n",
	    "fotagw_build_info{version=\"9.9.9\"} 1\n",
	    "fotagw_current_release_info{release=\"r2\",version=\"1.1.0\"} 1\n",
	    "fotagw_upload_bytes_total 123456\n",
	    "fotagw_job_duration_seconds_bucket{le=\"10\"} 1\n",
	    "fotagw_job_duration_seconds_bucket{le=\"60\"} 3\n",
	    "fotagw_job_duration_seconds_bucket{le=\"+Inf\"} 6\n",
	    "fotagw_job_duration_seconds_sum 400.5\n",
	    "fotagw_job_duration_seconds_count 6\n",
	    "fotagw_api_requests_total{code=\"2xx\"} 0\n",
	};

	request(f, "GET", "/metrics", NULL, NULL, NULL, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.content_type, "text/plain; version=0.0.4; charset=utf-8");
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (!strstr(resp.body, want[i]))
			fail_msg("metrics lack '%s':\n%s", want[i], resp.body);
	api_response_done(&resp);
	/* The scrape itself is counted for the next one. */
	request(f, "GET", "/metrics", NULL, NULL, NULL, &resp);
	assert_non_null(strstr(resp.body, "fotagw_api_requests_total{code=\"2xx\"} 1\n"));
	api_response_done(&resp);
}

/* ---- small pure pieces ---- */

static void awkward_metrics(void *ud, struct fgw_prom *w)
{
	const char *labels[] = {"reason", "a\"b\\c\nd", "x", "y", NULL};

	fgw_prom_family(w, "t_metric", "counter", "help with \\ and\nnewline");
	fgw_prom_sample(w, "t_metric", labels, 1.25);
	fgw_prom_sample(w, "t_nan", NULL, 0.0 / 0.0);
	fgw_prom_sample(w, "t_inf", NULL, 1.0 / 0.0);
}

static void test_prom_awkward(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;

	f->api.prov.metrics = awkward_metrics;
	request(f, "GET", "/metrics", NULL, NULL, NULL, &resp);
	assert_non_null(strstr(resp.body, "# HELP t_metric help with \\\\ and\\nnewline\n"));
	assert_non_null(strstr(resp.body, "t_metric{reason=\"a\\\"b\\\\c\\nd\",x=\"y\"} 1.25\n"));
	assert_non_null(strstr(resp.body, "t_nan NaN\n"));
	assert_non_null(strstr(resp.body, "t_inf +Inf\n"));
	api_response_done(&resp);
}

static void test_token_equal(void **state)
{
	assert_true(api_token_equal("abcdef", 6, "abcdef", 6));
	assert_false(api_token_equal("abcdef", 6, "abcdeg", 6));
	assert_false(api_token_equal("abcdef", 6, "abcde", 5));
	assert_false(api_token_equal("abcdef", 6, "abcdefg", 7));
	assert_false(api_token_equal("abcdef", 6, "", 0));
	/* A presented token with a NUL inside is not a prefix match. */
	assert_false(api_token_equal("abc", 3, "abc\0", 4));
}

static void test_cursor(void **state)
{
	static const char *const bad[] = {
	    "",
	    "d",
	    "x41",
	    "d4",
	    "d4g",
	    "d00",
	    "d2241",
	    "d"
	    "4141414141414141414141414141414141414141414141414141414141414141"
	    "4141414141414141414141414141414141414141414141414141414141414141"
	    "41"};
	char *c, *addr;

	assert_int_equal(api_cursor_encode("AA:00:00:00:00:0A", &c), 0);
	assert_int_equal(api_cursor_decode(c, &addr), 0);
	assert_string_equal(addr, "AA:00:00:00:00:0A");
	free(addr);
	free(c);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (api_cursor_decode(bad[i], &addr) != -EINVAL)
			fail_msg("cursor '%s' accepted", bad[i]);
}

static void test_address_valid(void **state)
{
	assert_true(api_address_valid("AA:BB:CC:DD:EE:FF", 17));
	assert_true(api_address_valid("udp:127.0.0.1:1337", 18));
	assert_true(api_address_valid("udp:[::1]:1337", 14));
	assert_false(api_address_valid("", 0));
	assert_false(api_address_valid("a b", 3));
	assert_false(api_address_valid("a/b", 3));
	assert_false(api_address_valid("a%00", 4));
}

int main(void)
{
	struct CMUnitTest tests[ARRAY_SIZE(route_cases) + 32];
	size_t n = 0;
	const struct CMUnitTest fixed[] = {
	    T(test_body_limit, setup, NULL),
	    T(test_long_path, setup, NULL),
	    T(test_devices_pages, setup, NULL),
	    T(test_devices_filters, setup, NULL),
	    T(test_device_detail, setup, NULL),
	    T(test_rollout, setup, NULL),
	    T(test_rollout_empty, setup_empty, NULL),
	    T(test_health, setup, NULL),
	    T(test_adapters, setup, NULL),
	    T(test_no_provider, setup_bare, NULL),
	    T(test_no_token, setup, NULL),
	    T(test_actions, setup, NULL),
	    T(test_releases, setup, NULL),
	    T(test_metrics, setup, NULL),
	    T(test_metrics_failures_bounded, setup, NULL),
	    T(test_prom_awkward, setup, NULL),
	    cmocka_unit_test(test_token_equal),
	    cmocka_unit_test(test_cursor),
	    cmocka_unit_test(test_address_valid),
	};

	/* One test per routing case, named by method and path. */
	static char names[ARRAY_SIZE(route_cases)][160];
	for (size_t i = 0; i < ARRAY_SIZE(route_cases); i++) {
		snprintf(names[i], sizeof(names[i]), "route %s %s%s%s%s", route_cases[i].method,
			 route_cases[i].path, route_cases[i].query ? "?" : "",
			 route_cases[i].query ? route_cases[i].query : "",
			 route_cases[i].auth ? " (auth)" : "");
		tests[n++] = (struct CMUnitTest){names[i], test_route, setup, teardown,
						 (void *) &route_cases[i]};
	}
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		tests[n++] = fixed[i];
	return _cmocka_run_group_tests("api", tests, n, NULL, NULL);
}
