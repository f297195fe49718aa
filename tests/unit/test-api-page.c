/*
 * The status page (GET /), its compiled-in files, GET /v1/events and the metrics the alert
 * rules use, against a seeded SQLite file, in-process. The page in a real browser is
 * tests/web-it; here: what the server renders and escapes, byte for byte.
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

#include "api-private.h"
#include "store.h"
#include "store-tmp.h"
#include "test-api-seed.h"
#include "util.h"

struct fixture {
	char dir[64];
	char path[128];
	struct fgw_store *s;
	struct fgw_api api;
	const char *adapter;
};

static int fake_health(void *ud, struct fgw_api_health *ret)
{
	struct fixture *f = ud;

	*ret = (struct fgw_api_health){
	    .version = "9.9.9", .uptime_ms = 61000, .adapter_state = f->adapter};
	return 0;
}

static int fake_progress(void *ud, const char *address, struct fgw_api_progress *ret)
{
	if (strcmp(address, "AA:00:00:00:00:0A") != 0)
		return -ENOENT;
	*ret = (struct fgw_api_progress){
	    .image = 1, .bytes = 4096, .total = 8192, .rate_bps = 2048, .eta_s = 125};
	return 0;
}

static int fake_images(void *ud, const char *release_id, struct fgw_api_image ret[2])
{
	if (strcmp(release_id, "r2") != 0)
		return -ENOENT;
	ret[0] = (struct fgw_api_image){.present = true, .version = "1.1.0", .size = 12345};
	memset(ret[0].hash, 'a', 64);
	ret[1] = (struct fgw_api_image){.present = false};
	return 0;
}

static int exec_sql(struct fixture *f, const char *sql)
{
	return tmp_store_exec(f->path, sql);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (tmp_store_open("fgw-test-page", f->dir, f->path, api_seed_sql, &f->s) < 0)
		return -1;
	f->adapter = "on";
	f->api = (struct fgw_api){.store = f->s};
	f->api.prov = (struct fgw_api_provider){.user_data = f,
						.health = fake_health,
						.progress = fake_progress,
						.release_images = fake_images};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tmp_store_remove(f->s, f->dir);
	free(f);
	return 0;
}

static const char *query_arg(void *ctx, const char *key)
{
	static char value[64];
	const char *q = ctx;
	size_t klen = strlen(key);

	if (!q || strncmp(q, key, klen) != 0 || q[klen] != '=')
		return NULL;
	snprintf(value, sizeof(value), "%s", q + klen + 1);
	return value;
}

static void request(struct fixture *f, const char *path, const char *query,
		    struct api_response *resp)
{
	struct api_request req = {.method = "GET",
				  .path = path,
				  .arg = query_arg,
				  .arg_ctx = (void *) query,
				  .peer = "test"};

	fgw_api__handle(&f->api, &req, resp);
	assert_non_null(resp->body);
	assert_int_equal(resp->len, strlen(resp->body));
}

static void must_have(const char *body, const char *want)
{
	if (!strstr(body, want))
		fail_msg("missing '%s' in:\n%s", want, body);
}

static char *escaped(const char *in)
{
	struct api_html h = {0};

	api_html_text(&h, in);
	assert_false(h.failed);
	return h.buf ? h.buf : strdup("");
}

/* ---- escaping ---- */

static void test_escape(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"plain dev-1", "plain dev-1"},
	    {"<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"},
	    {"a&b\"c'd", "a&amp;b&quot;c&#39;d"},
	    /* ESC, BEL, newline, DEL: shown as U+241B, U+2407, U+240A, U+2421 */
	    {"\x1b[31m\x07\n\x7f", "\xe2\x90\x9b[31m\xe2\x90\x87\xe2\x90\x8a\xe2\x90\xa1"},
	    /* C1 control U+0085 and RIGHT-TO-LEFT OVERRIDE U+202E, isolate U+2066 */
	    {"x\xc2\x85y\xe2\x80\xaez\xe2\x81\xa6", "x\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd"},
	    /* broken UTF-8: lone continuation, truncated, overlong '/', surrogate, > U+10FFFF */
	    {"\x80|\xe2\x82|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80",
	     "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf"
	     "\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	    /* ordinary non-ASCII text stays */
	    {"Gerät \xe2\x82\xac \xf0\x9f\x94\x8b", "Gerät \xe2\x82\xac \xf0\x9f\x94\x8b"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *out = escaped(cases[i].in);
		if (strcmp(out, cases[i].out) != 0)
			fail_msg("case %zu: got '%s', want '%s'", i, out, cases[i].out);
		free(out);
	}
}

/* ---- the page ---- */

static void test_page(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;

	assert_int_equal(exec_sql(f, "UPDATE devices SET name = '<img src=x onerror=alert(1)>' "
				     "|| char(27) || '[31m&\"' WHERE address = 'AA:00:00:00:00:0C';"
				     "UPDATE jobs SET reason = '<script>x()</script>' WHERE "
				     "address = 'AA:00:00:00:00:0D' AND release_id = 'r2';"),
			 0);
	request(f, "/", NULL, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.content_type, "text/html; charset=utf-8");
	assert_non_null(resp.csp);
	must_have(resp.csp, "default-src 'none'");
	assert_null(strstr(resp.csp, "unsafe"));
	/* Rollout summary from /v1/rollout: r2, halted by the operator, 3 of 4 finished failed. */
	must_have(resp.body, "<dd id=\"s-release\">r2 (version 1.1.0)</dd>");
	must_have(resp.body, "<strong>halted</strong> by operator: lunch");
	must_have(resp.body, "75.0 % (policy: at most 20.0 %)");
	must_have(resp.body, "Bluetooth adapter on");
	must_have(resp.body, "up 1m 01s");
	/* One row per device, in address order; the live upload with its bar, rate and ETA. */
	must_have(resp.body, "<tr><th scope=\"row\">a</th><td class=\"mono\">AA:00:00:00:00:0A");
	must_have(resp.body, "<progress max=\"100\" value=\"50.0\">50.0 %</progress> <span>50.0 % "
			     "net core</span></td><td class=\"num\">2.0</td><td class=\"num\">"
			     "2m 05s</td>");
	must_have(resp.body, "<td class=\"mono\">AA:00:00:00:00:0E</td><td><span class=\"state\" "
			     "data-state=\"done\">done</span></td><td><progress max=\"100\" "
			     "value=\"100\">");
	/* Device text is text: the hostile name and reason arrive escaped, controls visible. */
	must_have(resp.body, "&lt;img src=x onerror=alert(1)&gt;\xe2\x90\x9b[31m&amp;&quot;");
	must_have(resp.body, "&lt;script&gt;x()&lt;/script&gt;");
	assert_null(strstr(resp.body, "<img"));
	assert_null(strstr(resp.body, "<script>"));
	assert_null(strstr(resp.body, "\x1b"));
	/* Releases and events. */
	must_have(resp.body, "<th scope=\"row\">r2 <strong>(current)</strong></th>");
	must_have(resp.body, "max failure rate 20.0 %");
	must_have(resp.body, "<td>app core 1.1.0, 12.1 KiB, <span class=\"mono\">aaaaaaaaaaaaaaaa"
			     "</span></td>");
	must_have(resp.body, "<td>job-state</td><td>uploading \xe2\x86\x92 failed</td>");
	/* Nothing is loaded from elsewhere: the only references are to this origin. */
	assert_null(strstr(resp.body, "http://"));
	assert_null(strstr(resp.body, "https://"));
	must_have(resp.body, "<script src=\"/ui/status.js\" defer></script>");
	assert_null(strstr(resp.body, " style="));
	api_response_done(&resp);
}

static void test_page_files(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;

	request(f, "/ui/status.js", NULL, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.content_type, "text/javascript; charset=utf-8");
	assert_int_equal(resp.len, fgw_page_js_len);
	must_have(resp.body, "textContent");
	/* The page's script never builds markup from strings. */
	assert_null(strstr(resp.body, "innerHTML"));
	assert_null(strstr(resp.body, "insertAdjacentHTML"));
	assert_null(strstr(resp.body, "eval("));
	api_response_done(&resp);
	request(f, "/ui/status.css", NULL, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.content_type, "text/css; charset=utf-8");
	assert_int_equal(resp.len, fgw_page_css_len);
	api_response_done(&resp);
	request(f, "/ui/icon.svg", NULL, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.content_type, "image/svg+xml");
	must_have(resp.body, "<svg");
	api_response_done(&resp);
	request(f, "/ui/other.js", NULL, &resp);
	assert_int_equal(resp.status, 404);
	api_response_done(&resp);
}

/* A database that fails every query: the page still answers and says what is missing. */
static void test_page_database_broken(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;

	assert_int_equal(exec_sql(f, "DROP TABLE events; DROP TABLE rollout;"), 0);
	request(f, "/", NULL, &resp);
	assert_int_equal(resp.status, 200);
	must_have(resp.body, "The event list could not be read");
	must_have(resp.body, "The rollout could not be read");
	api_response_done(&resp);
	request(f, "/v1/events", NULL, &resp);
	assert_int_equal(resp.status, 500);
	api_response_done(&resp);
	request(f, "/metrics", NULL, &resp);
	assert_int_equal(resp.status, 200);
	must_have(resp.body, "fotagw_database_up 0\n");
	/* events (page), rollout (page), events (API), this scrape */
	must_have(resp.body, "fotagw_database_errors_total 4\n");
	must_have(resp.body, "fotagw_build_info{version=\"9.9.9\"} 1\n");
	assert_null(strstr(resp.body, "fotagw_devices{"));
	api_response_done(&resp);
}

/* The release's images come from the fleet, for the release it runs only. */
static void test_release_images(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;
	cJSON *j, *rel, *img;

	request(f, "/v1/releases", NULL, &resp);
	assert_int_equal(resp.status, 200);
	j = cJSON_Parse(resp.body);
	cJSON_ArrayForEach(rel, cJSON_GetObjectItemCaseSensitive(j, "releases"))
	{
		const char *id = cJSON_GetObjectItemCaseSensitive(rel, "id")->valuestring;
		cJSON *images = cJSON_GetObjectItemCaseSensitive(rel, "images");

		if (strcmp(id, "r2") != 0) {
			assert_null(images);
			continue;
		}
		assert_int_equal(cJSON_GetArraySize(images), 1);
		img = cJSON_GetArrayItem(images, 0);
		assert_int_equal(cJSON_GetObjectItemCaseSensitive(img, "image")->valueint, 0);
		assert_string_equal(cJSON_GetObjectItemCaseSensitive(img, "core")->valuestring,
				    "app");
		assert_string_equal(cJSON_GetObjectItemCaseSensitive(img, "version")->valuestring,
				    "1.1.0");
		assert_true(cJSON_GetObjectItemCaseSensitive(img, "size")->valuedouble == 12345);
		assert_int_equal(strlen(cJSON_GetObjectItemCaseSensitive(img, "hash")->valuestring),
				 64);
	}
	cJSON_Delete(j);
	api_response_done(&resp);
	/* Without a fleet: no images, never made up. */
	f->api.prov.release_images = NULL;
	request(f, "/v1/releases", NULL, &resp);
	assert_null(strstr(resp.body, "\"images\""));
	api_response_done(&resp);
}

/* ---- /v1/events ---- */

static void test_events(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;
	cJSON *j, *arr;

	request(f, "/v1/events", NULL, &resp);
	assert_int_equal(resp.status, 200);
	j = cJSON_Parse(resp.body);
	arr = cJSON_GetObjectItemCaseSensitive(j, "events");
	assert_int_equal(cJSON_GetArraySize(arr), 4);
	assert_string_equal(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arr, 0), "to")->valuestring,
	    "failed");
	assert_true(
	    cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arr, 0), "job_id")));
	assert_true(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arr, 3), "at")->valuedouble == 1);
	cJSON_Delete(j);
	api_response_done(&resp);

	request(f, "/v1/events", "limit=2", &resp);
	assert_int_equal(resp.status, 200);
	j = cJSON_Parse(resp.body);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "events")), 2);
	cJSON_Delete(j);
	api_response_done(&resp);

	for (const char *const *q = (const char *const[]){"limit=0", "limit=1001", "limit=x", NULL};
	     *q; q++) {
		request(f, "/v1/events", *q, &resp);
		assert_int_equal(resp.status, 400);
		api_response_done(&resp);
	}
}

/* ---- metrics the alert rules need ---- */

static void test_metrics(void **state)
{
	struct fixture *f = *state;
	struct api_response resp;
	char *p;
	double age;

	request(f, "/metrics", NULL, &resp);
	assert_int_equal(resp.status, 200);
	must_have(resp.body, "fotagw_rollout_max_failure_rate 0.2\n");
	must_have(resp.body, "fotagw_ble_adapter_up 1\n");
	must_have(resp.body, "fotagw_database_up 1\n");
	must_have(resp.body, "fotagw_database_errors_total 0\n");
	must_have(resp.body, "fotagw_jobs_stalled_seconds{state=\"queued\"} 0\n");
	/* The uploading job was last updated at 5 ms after the epoch: decades ago. */
	p = strstr(resp.body, "fotagw_jobs_stalled_seconds{state=\"uploading\"} ");
	assert_non_null(p);
	age = strtod(p + strlen("fotagw_jobs_stalled_seconds{state=\"uploading\"} "), NULL);
	assert_true(age > 1.5e9);
	/* Finished jobs are not stalled. */
	assert_null(strstr(resp.body, "fotagw_jobs_stalled_seconds{state=\"failed\"}"));
	api_response_done(&resp);

	f->adapter = "absent";
	request(f, "/metrics", NULL, &resp);
	must_have(resp.body, "fotagw_ble_adapter_up 0\n");
	api_response_done(&resp);
	f->adapter = "disabled";
	request(f, "/metrics", NULL, &resp);
	assert_null(strstr(resp.body, "fotagw_ble_adapter_up"));
	api_response_done(&resp);

	/* A release without a policy threshold has no max series (no alert on a guess). */
	assert_int_equal(exec_sql(f, "UPDATE releases SET policy_json = NULL WHERE id = 'r2';"), 0);
	request(f, "/metrics", NULL, &resp);
	assert_null(strstr(resp.body, "fotagw_rollout_max_failure_rate"));
	api_response_done(&resp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test_setup_teardown(test_page, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_page_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_page_database_broken, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_events, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_release_images, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
