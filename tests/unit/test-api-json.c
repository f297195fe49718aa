/*
 * The streaming JSON writer (lib/api/json-writer.c) against cJSON_PrintUnformatted(): the
 * same values must give the same bytes, because clients compare the answers of the big reads
 * that now use the writer. Values with every byte value, integers at the int64 edges,
 * doubles that need 15 or 17 digits, nesting, and the failure path.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "handlers.h"

/* Writes the object {key: value, ...} both ways and compares. */
static void same_as_cjson(struct api_jw *w, cJSON *root)
{
	char *want = cJSON_PrintUnformatted(root);

	assert_non_null(want);
	assert_false(w->failed);
	assert_string_equal(w->buf, want);
	assert_int_equal(w->len, strlen(want));
	free(want);
	cJSON_Delete(root);
	api_jw_done(w);
}

static void test_strings(void **state)
{
	char all[256], key[8], val[2] = "";
	struct api_jw w = {0};
	cJSON *root = cJSON_CreateObject();

	/* every byte value 1..255 (controls, quote, backslash, DEL, bytes of UTF-8 and not) */
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char) i;
	all[255] = '\0';
	api_jw_open(&w, NULL, '{');
	api_jw_str(&w, "all", all);
	cJSON_AddStringToObject(root, "all", all);
	api_jw_str(&w, "", "");
	cJSON_AddStringToObject(root, "", "");
	api_jw_str(&w, "q", "\"\\/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9\xff");
	cJSON_AddStringToObject(root, "q", "\"\\/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9\xff");
	/* keys are the handlers' literals; values may hold any byte */
	for (int i = 1; i < 32; i++) {
		snprintf(key, sizeof(key), "k%02d", i);
		val[0] = (char) i;
		api_jw_str(&w, key, val);
		cJSON_AddStringToObject(root, key, val);
	}
	api_jw_str(&w, "none", NULL);
	cJSON_AddNullToObject(root, "none");
	api_jw_close(&w, '}');
	same_as_cjson(&w, root);
}

static void test_integers(void **state)
{
	static const int64_t v[] = {0,		1,
				    -1,		9,
				    10,		-10,
				    2147483647, -2147483648,
				    1LL << 53,	(1LL << 53) + 1,
				    INT64_MAX,	INT64_MIN + 1};
	struct api_jw w = {0};
	cJSON *root = cJSON_CreateArray();
	char text[32];

	api_jw_open(&w, NULL, '[');
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		api_jw_int(&w, NULL, v[i]);
		snprintf(text, sizeof(text), "%lld", (long long) v[i]);
		cJSON_AddItemToArray(root, cJSON_CreateRaw(text));
	}
	/* the store's NULL marker is JSON null */
	api_jw_int(&w, NULL, FGW_STORE_NULL);
	cJSON_AddItemToArray(root, cJSON_CreateNull());
	api_jw_close(&w, ']');
	same_as_cjson(&w, root);
}

/* One number both ways; each on its own so a mismatch names the value. */
static void same_number(double d)
{
	struct api_jw w = {0};
	cJSON *n = cJSON_CreateNumber(d);
	char *want = cJSON_PrintUnformatted(n);

	api_jw_num(&w, NULL, d);
	if (!w.buf || strcmp(w.buf, want) != 0)
		fail_msg("%a: writer '%s', cJSON '%s'", d, w.buf ? w.buf : "(null)", want);
	free(want);
	cJSON_Delete(n);
	api_jw_done(&w);
}

static void test_doubles(void **state)
{
	static const double v[] = {0.0,
				   -0.0,
				   1.0,
				   -1.0,
				   50.0,
				   99.9,
				   33.3,
				   0.1,
				   1.0 / 3.0,
				   2.0 / 3.0,
				   1e300,
				   -1e-300,
				   1e15,
				   1e16,
				   1e17,
				   2147483647,
				   2147483648,
				   -2147483648.0,
				   -2147483649.0,
				   4096.5,
				   123456.789,
				   5e-324,
				   1.7976931348623157e308,
				   NAN,
				   INFINITY};
	uint64_t x = 88172645463325252ULL;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		same_number(v[i]);
	/* rates and percentages as the handlers compute them, and random bit patterns */
	for (int i = 0; i < 20000; i++) {
		double d;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (i % 2) {
			d = floor(1000.0 * (double) (x % 100000) / 100000.0) / 10.0;
		} else {
			memcpy(&d, &x, sizeof(d));
			if (!isfinite(d))
				continue;
		}
		same_number(d);
	}
}

static void test_nesting(void **state)
{
	struct api_jw w = {0};
	cJSON *root = cJSON_CreateObject(), *a, *o;

	api_jw_open(&w, NULL, '{');
	api_jw_open(&w, "empty", '[');
	api_jw_close(&w, ']');
	cJSON_AddArrayToObject(root, "empty");
	api_jw_open(&w, "eo", '{');
	api_jw_close(&w, '}');
	cJSON_AddObjectToObject(root, "eo");
	api_jw_open(&w, "list", '[');
	a = cJSON_AddArrayToObject(root, "list");
	for (int i = 0; i < 3; i++) {
		api_jw_open(&w, NULL, '{');
		api_jw_bool(&w, "t", true);
		api_jw_bool(&w, "f", false);
		api_jw_null(&w, "n");
		api_jw_open(&w, "in", '[');
		api_jw_open(&w, NULL, '[');
		api_jw_close(&w, ']');
		api_jw_close(&w, ']');
		api_jw_close(&w, '}');
		o = cJSON_CreateObject();
		cJSON_AddTrueToObject(o, "t");
		cJSON_AddFalseToObject(o, "f");
		cJSON_AddNullToObject(o, "n");
		cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "in"), cJSON_CreateArray());
		cJSON_AddItemToArray(a, o);
	}
	api_jw_close(&w, ']');
	api_jw_str(&w, "end", "x");
	cJSON_AddStringToObject(root, "end", "x");
	api_jw_close(&w, '}');
	same_as_cjson(&w, root);
}

/* After a failure nothing more is written and the reply is a 500, not a truncated body. */
static void test_failure(void **state)
{
	struct api_jw w = {0};
	struct api_response resp = {0};
	char *big = malloc(8u * 1024 * 1024);

	assert_non_null(big);
	memset(big, '\x01', 8u * 1024 * 1024 - 1);
	big[8u * 1024 * 1024 - 1] = '\0';
	api_jw_open(&w, NULL, '[');
	/* \u0001 is 6 bytes per input byte: 48 MiB, over the writer's cap */
	api_jw_str(&w, NULL, big);
	assert_true(w.failed);
	api_jw_int(&w, NULL, 1);
	api_jw_close(&w, ']');
	api_jw_reply(&w, &resp, 200);
	assert_int_equal(resp.status, 500);
	assert_non_null(strstr(resp.body, "\"internal\""));
	assert_null(w.buf);
	api_response_done(&resp);
	free(big);

	/* and a good body becomes the response as is */
	api_jw_open(&w, NULL, '{');
	api_jw_int(&w, "a", 1);
	api_jw_close(&w, '}');
	api_jw_reply(&w, &resp, 201);
	assert_int_equal(resp.status, 201);
	assert_string_equal(resp.body, "{\"a\":1}");
	assert_int_equal(resp.len, 7);
	assert_string_equal(resp.content_type, "application/json");
	api_response_done(&resp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strings), cmocka_unit_test(test_integers),
	    cmocka_unit_test(test_doubles), cmocka_unit_test(test_nesting),
	    cmocka_unit_test(test_failure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
