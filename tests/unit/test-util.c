#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
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

/* Device text in a log line cannot forge another line or drive a terminal. */
static void test_log_escapes_controls(void **state)
{
	int fds[2], saved;
	char buf[256] = {0};
	ssize_t n;

	assert_int_equal(pipe(fds), 0);
	saved = dup(STDERR_FILENO);
	dup2(fds[1], STDERR_FILENO);
	fgw_log_set_level(LOG_INFO);
	fgw_notice("event: device-new, name: %s", "a\x1b[31mb\nevent: forged\x07\x7f\xc3\xa4");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	assert_true(n > 0);
	assert_string_equal(buf, "<5>event: device-new, name: a\\x1b[31mb\\x0aevent: "
				 "forged\\x07\\x7f\xc3\xa4\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hex),
	    cmocka_unit_test(test_parse_int),
	    cmocka_unit_test(test_parse_bool),
	    cmocka_unit_test(test_log_levels),
	    cmocka_unit_test(test_log_escapes_controls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
