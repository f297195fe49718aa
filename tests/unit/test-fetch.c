/*
 * fetch on a real libuv loop with file:// URLs (HTTP against nginx is in tests/release-it):
 * caps, resume, cancel and free at any point, the callback contract, URL resolution.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fetch.h"

struct fix {
	char dir[64];
	char src[128], url[160], dst[128];
	uint8_t *data;
	size_t len;
	uv_loop_t loop;
	struct fgw_fetch *f;
};

struct outcome {
	int calls, destroys;
	int err;
	struct fgw_fetch_result res;
	char body[256];
	struct fix *fix;
	bool free_in_cb;
};

static void write_all(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/fgw-test-fetch-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->src, sizeof(f->src), "%s/src.bin", f->dir);
	snprintf(f->url, sizeof(f->url), "file://%s", f->src);
	snprintf(f->dst, sizeof(f->dst), "%s/dst.part", f->dir);
	f->len = 300000;
	f->data = malloc(f->len);
	for (size_t i = 0; i < f->len; i++)
		f->data[i] = (uint8_t) (i * 131 + (i >> 9));
	write_all(f->src, f->data, f->len);
	uv_loop_init(&f->loop);
	if (fgw_fetch_new(&f->loop, NULL, &f->f) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	char cmd[128];

	fgw_fetch_free(f->f);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	/* every handle closed: nothing leaked on the loop */
	assert_int_equal(uv_loop_close(&f->loop), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	(void) !system(cmd);
	free(f->data);
	free(f);
	return 0;
}

static void on_done(int err, const struct fgw_fetch_result *res, void *user_data)
{
	struct outcome *o = user_data;

	o->calls++;
	o->err = err;
	if (res) {
		o->res = *res;
		if (res->body)
			snprintf(o->body, sizeof(o->body), "%.*s", (int) FGW_MIN(res->len, 200),
				 (const char *) res->body);
		o->res.body = NULL; /* not valid after the call */
		o->res.url = o->res.error = o->res.etag = NULL;
	}
	if (o->free_in_cb)
		o->fix->f = fgw_fetch_free(o->fix->f);
}

static void on_destroy(void *user_data)
{
	((struct outcome *) user_data)->destroys++;
}

static void test_get(void **state)
{
	struct fix *f = *state;
	struct outcome o = {0};
	char path[128], url[160];

	snprintf(path, sizeof(path), "%s/m.json", f->dir);
	snprintf(url, sizeof(url), "file://%s", path);
	write_all(path, "{\"a\": 1}", 8);
	assert_int_equal(fgw_fetch_get(f->f, url, NULL, 1024, on_done, &o, on_destroy, NULL), 0);
	assert_int_equal(o.calls, 0); /* never before the call returned */
	assert_int_equal(fgw_fetch_active(f->f), 1);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.destroys, 1);
	assert_int_equal(o.err, 0);
	assert_int_equal(o.res.len, 8);
	assert_string_equal(o.body, "{\"a\": 1}");
	assert_false(o.res.not_modified);
	assert_int_equal(fgw_fetch_active(f->f), 0);

	/* the cap: one byte less than the file */
	o = (struct outcome){0};
	assert_int_equal(fgw_fetch_get(f->f, url, NULL, 7, on_done, &o, NULL, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.err, -EFBIG);

	/* missing file */
	o = (struct outcome){0};
	snprintf(url, sizeof(url), "file://%s/nope.json", f->dir);
	assert_int_equal(fgw_fetch_get(f->f, url, NULL, 1024, on_done, &o, NULL, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.err, -ENOENT);

	/* an ETag with a line break would inject a header */
	assert_int_equal(
	    fgw_fetch_get(f->f, url, "\"x\"\r\nX-Evil: 1", 1024, on_done, &o, NULL, NULL), -EINVAL);
}

static void check_dst(struct fix *f)
{
	struct stat st;
	uint8_t *buf;
	FILE *fp;

	assert_int_equal(stat(f->dst, &st), 0);
	assert_int_equal(st.st_size, f->len);
	buf = malloc(f->len);
	fp = fopen(f->dst, "rb");
	assert_int_equal(fread(buf, 1, f->len, fp), f->len);
	fclose(fp);
	assert_memory_equal(buf, f->data, f->len);
	free(buf);
}

static void test_download(void **state)
{
	struct fix *f = *state;
	struct outcome o = {0};

	assert_int_equal(
	    fgw_fetch_download(f->f, f->url, f->dst, f->len, on_done, &o, on_destroy, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.err, 0);
	assert_int_equal(o.destroys, 1);
	assert_int_equal(o.res.size, f->len);
	assert_int_equal(o.res.resumed_from, 0);
	check_dst(f);
}

static void test_resume(void **state)
{
	struct fix *f = *state;
	struct outcome o = {0};

	/* what an interrupted download leaves behind: a correct prefix */
	write_all(f->dst, f->data, 123457);
	assert_int_equal(fgw_fetch_download(f->f, f->url, f->dst, f->len, on_done, &o, NULL, NULL),
			 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.err, 0);
	assert_int_equal(o.res.resumed_from, 123457);
	assert_int_equal(o.res.size, f->len);
	check_dst(f);

	/* leftovers as long as the file (or longer) are not trusted: a fresh download */
	o = (struct outcome){0};
	write_all(f->dst, f->data, f->len);
	assert_int_equal(fgw_fetch_download(f->f, f->url, f->dst, f->len, on_done, &o, NULL, NULL),
			 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.err, 0);
	assert_int_equal(o.res.resumed_from, 0);
	check_dst(f);
}

static void test_size_caps(void **state)
{
	struct fix *f = *state;
	struct outcome o = {0};
	struct stat st;

	/* declared smaller than what comes: stopped at the cap */
	assert_int_equal(
	    fgw_fetch_download(f->f, f->url, f->dst, f->len - 1, on_done, &o, NULL, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.err, -EFBIG);
	assert_int_equal(stat(f->dst, &st), 0);
	assert_true((size_t) st.st_size <= f->len - 1);

	/* declared larger: ends short */
	unlink(f->dst);
	o = (struct outcome){0};
	assert_int_equal(
	    fgw_fetch_download(f->f, f->url, f->dst, f->len + 10, on_done, &o, NULL, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.err, -ENODATA);
	assert_int_equal(o.res.size, f->len);

	assert_int_equal(fgw_fetch_download(f->f, f->url, f->dst, 0, on_done, &o, NULL, NULL),
			 -EINVAL);
	assert_int_equal(
	    fgw_fetch_download(f->f, f->url, "/nonexistent/dir/x", 10, on_done, &o, NULL, NULL),
	    -ENOENT);
}

static void test_cancel(void **state)
{
	struct fix *f = *state;
	struct outcome o = {0};
	struct fgw_fetch_req *req = NULL;

	assert_int_equal(
	    fgw_fetch_download(f->f, f->url, f->dst, f->len, on_done, &o, on_destroy, &req), 0);
	fgw_fetch_cancel(req);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.err, -ECANCELED);
	assert_int_equal(o.destroys, 1);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.calls, 1); /* exactly once */
}

static void test_free_with_transfers(void **state)
{
	struct fix *f = *state;
	struct outcome a = {0}, b = {0};

	assert_int_equal(
	    fgw_fetch_download(f->f, f->url, f->dst, f->len, on_done, &a, on_destroy, NULL), 0);
	assert_int_equal(fgw_fetch_get(f->f, f->url, NULL, f->len, on_done, &b, on_destroy, NULL),
			 0);
	f->f = fgw_fetch_free(f->f);
	assert_int_equal(a.err, -ECANCELED);
	assert_int_equal(b.err, -ECANCELED);
	assert_int_equal(a.destroys + b.destroys, 2);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(a.calls + b.calls, 2);
}

static void test_free_in_callback(void **state)
{
	struct fix *f = *state;
	struct outcome a = {.fix = f, .free_in_cb = true}, b = {0}, c = {0};
	char url[160];

	/* three transfers that finish in the same dispatch; the first frees the fetcher */
	snprintf(url, sizeof(url), "file://%s/nope", f->dir);
	assert_int_equal(fgw_fetch_get(f->f, url, NULL, 10, on_done, &a, on_destroy, NULL), 0);
	assert_int_equal(fgw_fetch_get(f->f, url, NULL, 10, on_done, &b, on_destroy, NULL), 0);
	assert_int_equal(fgw_fetch_get(f->f, url, NULL, 10, on_done, &c, on_destroy, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(c.calls, 1);
	assert_int_equal(a.destroys + b.destroys + c.destroys, 3);
	assert_null(f->f);
}

static void test_network_errors(void **state)
{
	struct fix *f = *state;
	struct outcome o = {0};
	int r;

	/* nothing listens on port 1 of loopback */
	assert_int_equal(
	    fgw_fetch_get(f->f, "http://127.0.0.1:1/m.json", NULL, 10, on_done, &o, NULL, NULL), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(o.err, -ECONNREFUSED);

	o = (struct outcome){0};
	r = fgw_fetch_get(f->f, "ftp://127.0.0.1/m.json", NULL, 10, on_done, &o, NULL, NULL);
	if (r == 0) {
		uv_run(&f->loop, UV_RUN_DEFAULT);
		assert_int_equal(o.err, -EPROTONOSUPPORT);
	} else {
		assert_int_equal(r, -EINVAL);
	}
}

struct url_case {
	const char *base, *ref, *want;
	int err;
};

static const struct url_case url_cases[] = {
    {"https://h.example/r/manifest.json", "b.zip", "https://h.example/r/b.zip", 0},
    {"https://h.example/r/manifest.json", "../b/b.zip", "https://h.example/b/b.zip", 0},
    {"https://h.example/r/manifest.json", "/x/b.zip", "https://h.example/x/b.zip", 0},
    {"https://h.example/r/manifest.json", "http://o.example:8080/b.zip", NULL, -EPERM},
    {"HTTPS://h.example/r/manifest.json", "file:///srv/b.zip", NULL, -EPERM},
    {"http://h.example/r/manifest.json", "http://o.example:8080/b.zip",
     "http://o.example:8080/b.zip", 0},
    {"http://h.example/r/manifest.json", "https://o.example/b.zip", "https://o.example/b.zip",
     0},
    {"https://h.example/r/manifest.json?t=1", "b.zip", "https://h.example/r/b.zip", 0},
    {"file:///srv/rel/manifest.json", "bundles/b.zip", "file:///srv/rel/bundles/b.zip", 0},
    {"https://h.example/r/manifest.json", "ftp://h.example/b.zip", NULL, -EPROTONOSUPPORT},
    {"https://h.example/r/manifest.json", "gopher://h/b", NULL, -EPROTONOSUPPORT},
    {"not a url", "b.zip", NULL, -EINVAL},
};

static void test_resolve(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(url_cases); i++) {
		char *out = NULL;
		int r = fgw_fetch_resolve_url(url_cases[i].base, url_cases[i].ref, &out);

		if (r != url_cases[i].err)
			fail_msg("%s + %s: %d", url_cases[i].base, url_cases[i].ref, r);
		if (r == 0)
			assert_string_equal(out, url_cases[i].want);
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_download, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_size_caps, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_with_transfers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_network_errors, setup, teardown),
	    cmocka_unit_test(test_resolve),
	};
	fgw_log_set_level(LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
