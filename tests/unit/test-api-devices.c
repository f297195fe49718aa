/*
 * Enrollment through the API (handlers-devices.c, handlers-devices-csv.c): the CSV parser as
 * data, every refusal with its status and message, and what reaches the provider. The
 * provider here records calls the way test-api.c's does; the fleet behind the real one is
 * tested in test-fleet-enroll.c and end to end in tests/fleet-it/test_enroll.py.
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
#include "util.h"

#define TOKEN "0123456789abcdef-test-token"
#define BEARER "Bearer " TOKEN

struct rec {
	int r;
	size_t calls, n;
	struct fgw_api_enrollment e[4];
	char text[4][4][64]; /* address, board, group, label */
	char forgot[64];
};

static int rec_enroll(void *ud, const struct fgw_api_enrollment *e, size_t n)
{
	struct rec *c = ud;

	c->calls++;
	c->n = n;
	for (size_t i = 0; i < n && i < 4; i++) {
		c->e[i] = e[i];
		snprintf(c->text[i][0], 64, "%s", e[i].address);
		snprintf(c->text[i][1], 64, "%s", e[i].board ? e[i].board : "(null)");
		snprintf(c->text[i][2], 64, "%s", e[i].group ? e[i].group : "(null)");
		snprintf(c->text[i][3], 64, "%s", e[i].label ? e[i].label : "(null)");
	}
	return c->r;
}

static int rec_forget(void *ud, const char *address)
{
	struct rec *c = ud;

	c->calls++;
	snprintf(c->forgot, sizeof(c->forgot), "%s", address);
	return c->r;
}

struct fx {
	struct fgw_api api;
	struct rec rec;
};

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	x->api = (struct fgw_api){.token = TOKEN, .token_len = strlen(TOKEN)};
	x->api.prov = (struct fgw_api_provider){
	    .user_data = &x->rec, .enroll = rec_enroll, .forget = rec_forget};
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

/* Runs one request; returns the parsed body after checking the status. */
static cJSON *call(struct fx *x, const char *method, const char *path, const char *auth,
		   const char *body, unsigned want_status)
{
	struct api_request req = {
	    .method = method,
	    .path = path,
	    .authorization = auth,
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	    .peer = "test",
	};
	struct api_response resp = {0};
	cJSON *j;

	fgw_api__handle(&x->api, &req, &resp);
	if (resp.status != want_status)
		fail_msg("%s %s: status %u, want %u: %s", method, path, resp.status, want_status,
			 resp.body);
	j = cJSON_Parse(resp.body);
	assert_non_null(j);
	api_response_done(&resp);
	return j;
}

static const char *str(const cJSON *j, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, key);

	return cJSON_IsString(it) ? it->valuestring : "";
}

static void test_enroll(void **state)
{
	struct fx *x = *state;
	cJSON *j;
	char *text;

	j = call(x, "POST", "/v1/devices/c0:00:00:00:00:01/enroll", BEARER,
		 "{\"passkey\":\"012345\",\"board\":\"b\",\"group\":\"g\",\"label\":\"l\"}", 200);
	assert_string_equal(str(j, "address"), "C0:00:00:00:00:01");
	text = cJSON_PrintUnformatted(j);
	assert_null(strstr(text, "012345")); /* never answered */
	free(text);
	cJSON_Delete(j);
	assert_int_equal(x->rec.n, 1);
	assert_string_equal(x->rec.text[0][0], "C0:00:00:00:00:01");
	assert_true(x->rec.e[0].has_passkey);
	assert_int_equal(x->rec.e[0].passkey, 12345); /* leading zero kept as a digit */
	assert_string_equal(x->rec.text[0][1], "b");
	assert_string_equal(x->rec.text[0][2], "g");
	assert_string_equal(x->rec.text[0][3], "l");
	/* no body: enrolled without passkey or fields */
	cJSON_Delete(call(x, "POST", "/v1/devices/udp:127.0.0.1:1337/enroll", BEARER, NULL, 200));
	assert_false(x->rec.e[0].has_passkey);
	assert_string_equal(x->rec.text[0][1], "");
}

static void test_enroll_refusals(void **state)
{
	static const struct {
		const char *path, *auth, *body;
		unsigned status;
		const char *error;
	} cases[] = {
	    {"/v1/devices/C0:00:00:00:00:01/enroll", NULL, "{}", 401, "unauthorized"},
	    {"/v1/devices/C0:00:00:00:00:01/enroll", "Bearer wrong-token-wrong-token", "{}", 401,
	     "unauthorized"},
	    {"/v1/devices/C0-00/enroll", BEARER, "{}", 400, "bad_request"},
	    {"/v1/devices/C0:00:00:00:00:01/enroll", BEARER, "{\"passkey\":\"12345\"}", 400,
	     "bad_request"},
	    {"/v1/devices/C0:00:00:00:00:01/enroll", BEARER, "{\"passkey\":123456}", 400,
	     "bad_request"},
	    {"/v1/devices/C0:00:00:00:00:01/enroll", BEARER, "{\"passkey\":\"12345a\"}", 400,
	     "bad_request"},
	    {"/v1/devices/C0:00:00:00:00:01/enroll", BEARER, "{\"color\":\"red\"}", 400,
	     "bad_request"},
	    {"/v1/devices/C0:00:00:00:00:01/enroll", BEARER, "{\"label\":\"a\\u0007b\"}", 400,
	     "bad_request"},
	    {"/v1/devices/C0:00:00:00:00:01/enroll", BEARER,
	     "{\"board\":\"0123456789012345678901234567890123456789012345678901234567890123\"}",
	     400, "bad_request"},
	    {"/v1/devices/C0:00:00:00:00:01/enroll", BEARER, "[1]", 400, "bad_request"},
	    {"/v1/devices/C0:00:00:00:00:01", NULL, NULL, 401, "unauthorized"},
	};
	struct fx *x = *state;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *method = strstr(cases[i].path, "enroll") ? "POST" : "DELETE";
		cJSON *j =
		    call(x, method, cases[i].path, cases[i].auth, cases[i].body, cases[i].status);
		assert_string_equal(str(j, "error"), cases[i].error);
		cJSON_Delete(j);
	}
	assert_int_equal(x->rec.calls, 0); /* none reached the fleet */
}

static void test_provider_answers(void **state)
{
	struct fx *x = *state;

	x->rec.r = -EBUSY;
	cJSON_Delete(call(x, "DELETE", "/v1/devices/C0:00:00:00:00:01", BEARER, NULL, 409));
	x->rec.r = -ENOENT;
	cJSON_Delete(call(x, "DELETE", "/v1/devices/C0:00:00:00:00:01", BEARER, NULL, 404));
	x->rec.r = 0;
	cJSON_Delete(call(x, "DELETE", "/v1/devices/c0:00:00:00:00:01", BEARER, NULL, 200));
	assert_string_equal(x->rec.forgot, "C0:00:00:00:00:01");
	x->rec.r = -EINVAL;
	cJSON_Delete(call(x, "POST", "/v1/devices/C0:00:00:00:00:01/enroll", BEARER, NULL, 400));
	x->api.prov.enroll = NULL;
	x->api.prov.forget = NULL;
	cJSON_Delete(call(x, "POST", "/v1/devices/C0:00:00:00:00:01/enroll", BEARER, NULL, 503));
	cJSON_Delete(
	    call(x, "POST", "/v1/devices/import", BEARER, "address\nC0:00:00:00:00:01\n", 503));
	cJSON_Delete(call(x, "DELETE", "/v1/devices/C0:00:00:00:00:01", BEARER, NULL, 503));
	/* GET on the same path still answers as before (not through these handlers) */
	cJSON_Delete(call(x, "PUT", "/v1/devices/C0:00:00:00:00:01", BEARER, NULL, 405));
}

static void test_import(void **state)
{
	struct fx *x = *state;
	cJSON *j, *errs;
	char *text;

	j = call(x, "POST", "/v1/devices/import", BEARER,
		 "label,address,passkey\r\n"
		 "\"kitchen, left\",c0:00:00:00:00:01,000001\r\n"
		 "\r\n"
		 "  ,udp:192.0.2.1:1337,\r\n",
		 200);
	assert_int_equal((int) cJSON_GetObjectItem(j, "enrolled")->valuedouble, 2);
	cJSON_Delete(j);
	assert_int_equal(x->rec.n, 2);
	assert_string_equal(x->rec.text[0][0], "C0:00:00:00:00:01");
	assert_string_equal(x->rec.text[0][3], "kitchen, left");
	assert_int_equal(x->rec.e[0].passkey, 1);
	assert_false(x->rec.e[1].has_passkey);
	assert_string_equal(x->rec.text[1][0], "udp:192.0.2.1:1337");

	x->rec.calls = 0;
	j = call(x, "POST", "/v1/devices/import", BEARER,
		 "address,passkey\n"
		 "C0:00:00:00:00:01,999999\n"
		 "C0:00:00:00:00:02,99999\n"
		 "C0:00:00:00:00:03,x\n",
		 400);
	errs = cJSON_GetObjectItem(j, "errors");
	assert_int_equal(cJSON_GetArraySize(errs), 2);
	assert_string_equal(cJSON_GetArrayItem(errs, 0)->valuestring,
			    "line 3: passkey must be six digits");
	assert_string_equal(cJSON_GetArrayItem(errs, 1)->valuestring,
			    "line 4: passkey must be six digits");
	text = cJSON_PrintUnformatted(j);
	assert_null(strstr(text, "99999")); /* no value echoed */
	free(text);
	cJSON_Delete(j);
	assert_int_equal(x->rec.calls, 0); /* all or nothing */
	cJSON_Delete(call(x, "POST", "/v1/devices/import", NULL, "address\n", 401));
}

/* The parser as data: input → errors (joined with '|') or the number of rows. */
static void test_csv(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"", "line 1: empty file: a header line (address,passkey,...) is needed"},
	    {"address\n", "line 1: no device after the header"},
	    {"passkey\n1\n", "line 1: the header has no 'address' column"},
	    {"address,address\n", "line 1: column 'address' named twice in the header"},
	    {"address,colour\n", "line 1: column 2 of the header is not one of address, passkey, "
				 "board, group, label"},
	    {"\"address\n", "line 1: a quoted field is not closed on its line"},
	    {"address\nAA:BB:CC:DD:EE:FF,x\n", "line 2: 2 fields, the header has 1"},
	    {"address\nAA:BB:CC:DD:EE:FG\n", "line 2: address is neither a BLE address "
					     "(AA:BB:CC:DD:EE:FF) nor udp:HOST:PORT"},
	    {"address\nudp:host:0\n", "line 2: address is neither a BLE address "
				      "(AA:BB:CC:DD:EE:FF) nor udp:HOST:PORT"},
	    {"address,label\nAA:BB:CC:DD:EE:FF,a\"b\n", "line 2: a quote inside an unquoted field"},
	    {"address,label\nAA:BB:CC:DD:EE:FF,\"a\"b\n", "line 2: text after a quoted field"},
	    {"address,label\nAA:BB:CC:DD:EE:FF,\x1b[31m\n",
	     "line 2: label has control or non-UTF-8 characters"},
	    {"address,label\nAA:BB:CC:DD:EE:FF,"
	     "01234567890123456789012345678901234567890123456789012345678901234\n",
	     "line 2: a field is longer than 63 bytes"},
	    {"address\nAA:BB:CC:DD:EE:FF\naa:bb:cc:dd:ee:ff\n",
	     "line 3: the same address as line 2"},
	    {"ADDRESS , Passkey\n AA:BB:CC:DD:EE:FF , 123456 \n", "1"},
	    {"address,label\nAA:BB:CC:DD:EE:FF,\"say \"\"hi\"\"\"\n", "1"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct api_csv_result res;
		char got[512] = "";
		int r = api_enroll_csv_parse(cases[i].in, strlen(cases[i].in), &res);

		if (r == 0)
			snprintf(got, sizeof(got), "%zu", res.n);
		for (size_t k = 0; r < 0 && k < res.n_errors; k++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", k ? "|" : "",
				 res.errors[k]);
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu: got '%s', want '%s'", i, got, cases[i].want);
		api_csv_result_done(&res);
	}
}

/* At most API_CSV_MAX_ERRORS messages, but every bad line counted. */
static void test_csv_many_errors(void **state)
{
	char buf[4096] = "address\n";
	struct api_csv_result res;

	for (int i = 0; i < 30; i++)
		strcat(buf, "nope\n");
	assert_int_equal(api_enroll_csv_parse(buf, strlen(buf), &res), -EINVAL);
	assert_int_equal(res.n_errors, API_CSV_MAX_ERRORS);
	assert_int_equal(res.total_errors, 30);
	api_csv_result_done(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_enroll, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_enroll_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_provider_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_import, setup, teardown),
	    cmocka_unit_test(test_csv),
	    cmocka_unit_test(test_csv_many_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
