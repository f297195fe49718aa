#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "util.h"

static void test_hex(void **state)
{
	const uint8_t in[] = {0x00, 0x7f, 0xa5, 0xff};
	uint8_t out[4];
	char s[9];

	fgw_hex_encode(in, sizeof(in), s);
	assert_string_equal(s, "007fa5ff");
	assert_int_equal(fgw_hex_decode("007FA5ff", out, 4), 0);
	assert_memory_equal(in, out, 4);
	assert_int_equal(fgw_hex_decode("007fa5f", out, 4), -EINVAL);
	assert_int_equal(fgw_hex_decode("007fa5fg", out, 4), -EINVAL);
	assert_int_equal(fgw_hex_decode(NULL, out, 4), -EINVAL);
}

static void test_parse_int(void **state)
{
	int64_t v = 99;

	assert_int_equal(fgw_parse_int64("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(fgw_parse_int64("-5", -10, 10, &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(fgw_parse_int64("101", 0, 100, &v), -ERANGE);
	assert_int_equal(fgw_parse_int64("4x", 0, 100, &v), -EINVAL);
	assert_int_equal(fgw_parse_int64("", 0, 100, &v), -EINVAL);
	assert_int_equal(fgw_parse_int64("99999999999999999999999", 0, 100, &v), -ERANGE);
	assert_int_equal(v, -5); /* untouched on failure */
}

static void test_parse_bool(void **state)
{
	bool b = false;

	assert_int_equal(fgw_parse_bool("Yes", &b), 0);
	assert_true(b);
	assert_int_equal(fgw_parse_bool("off", &b), 0);
	assert_false(b);
	assert_int_equal(fgw_parse_bool("maybe", &b), -EINVAL);
}

static void test_url_redact(void **state)
{
	static const char *const cases[][2] = {
	    {"https://u:pw@r.example/m.json?token=s3cret#x", "https://r.example/m.json"},
	    {"https://u@x:p@w@r.example:8443/a@b/m.json", "https://r.example:8443/a@b/m.json"},
	    {"http://r.example/b.zip?X-Amz-Signature=abc", "http://r.example/b.zip"},
	    {"file:///srv/rel/manifest.json", "file:///srv/rel/manifest.json"},
	    {"https://r.example?q=@x", "https://r.example"},
	    {"not a url?secret", "not a url"},
	};
	char buf[128];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		assert_string_equal(fgw_url_redact(cases[i][0], buf, sizeof(buf)), cases[i][1]);
	assert_string_equal(fgw_url_redact("https://u:p@h/x", buf, 6), "https");
}

static void test_log_levels(void **state)
{
	assert_int_equal(fgw_log_level_from_string("debug"), LOG_DEBUG);
	assert_int_equal(fgw_log_level_from_string("WARNING"), LOG_WARNING);
	assert_int_equal(fgw_log_level_from_string("err"), LOG_ERR);
	assert_int_equal(fgw_log_level_from_string("loud"), -EINVAL);
	assert_string_equal(fgw_log_level_to_string(LOG_NOTICE), "notice");
	assert_int_equal(fgw_log_errno(LOG_DEBUG, -ENOENT, "x"), -ENOENT);
	assert_int_equal(fgw_log_errno(LOG_DEBUG, ENOENT, "x"), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hex),	       cmocka_unit_test(test_parse_int),
	    cmocka_unit_test(test_parse_bool), cmocka_unit_test(test_log_levels),
	    cmocka_unit_test(test_url_redact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
