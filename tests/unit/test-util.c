#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
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

static void test_enum_names(void **state)
{
	enum { A, B, GAP, C, MAX };
	static const char *const names[MAX] = {[A] = "a", [B] = "b", [C] = "c"};

	assert_string_equal(FGW_ENUM_NAME(names, A), "a");
	assert_string_equal(FGW_ENUM_NAME(names, C), "c");
	assert_null(FGW_ENUM_NAME(names, GAP));
	assert_null(FGW_ENUM_NAME(names, MAX));
	assert_null(FGW_ENUM_NAME(names, -22));
	assert_int_equal(FGW_ENUM_VALUE(names, "b"), B);
	assert_int_equal(FGW_ENUM_VALUE(names, "c"), C);
	assert_int_equal(FGW_ENUM_VALUE(names, "B"), -EINVAL);
	assert_int_equal(FGW_ENUM_VALUE(names, ""), -EINVAL);
	assert_int_equal(FGW_ENUM_VALUE(names, NULL), -EINVAL);
}

static void test_ble_addr(void **state)
{
	char a[FGW_BLE_ADDR_STRLEN];

	assert_int_equal(fgw_ble_addr_parse("c0:0a:bb:Cd:eF:09", a), 0);
	assert_string_equal(a, "C0:0A:BB:CD:EF:09");
	assert_int_equal(fgw_ble_addr_parse("C0:00:00:00:00:01", a), 0);
	assert_string_equal(a, "C0:00:00:00:00:01");
	/* one rule: ':' only, exactly six bytes, nothing around */
	assert_int_equal(fgw_ble_addr_parse("C0_00_00_00_00_01", a), -EINVAL);
	assert_int_equal(fgw_ble_addr_parse("C0:00:00:00:00:0", a), -EINVAL);
	assert_int_equal(fgw_ble_addr_parse("C0:00:00:00:00:001", a), -EINVAL);
	assert_int_equal(fgw_ble_addr_parse(" C0:00:00:00:00:01", a), -EINVAL);
	assert_int_equal(fgw_ble_addr_parse("C0:00:00:00:00:0G", a), -EINVAL);
	assert_int_equal(fgw_ble_addr_parse("C0:00:00:00:0:001", a), -EINVAL);
	assert_int_equal(fgw_ble_addr_parse("", a), -EINVAL);
	assert_int_equal(fgw_ble_addr_parse(NULL, a), -EINVAL);
	assert_string_equal(a, "C0:00:00:00:00:01"); /* untouched by a refusal */
}

static void test_fsync_path(void **state)
{
	char dir[] = "/tmp/fgw-test-util-XXXXXX", file[64];
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/f", dir);
	f = fopen(file, "w");
	assert_non_null(f);
	fputs("x", f);
	fclose(f);
	assert_int_equal(fgw_fsync_path(dir), 0);
	assert_int_equal(fgw_fsync_path(file), 0);
	assert_int_equal(unlink(file), 0);
	assert_int_equal(fgw_fsync_path(file), -ENOENT);
	assert_int_equal(rmdir(dir), 0);
}

static void test_buf_grow(void **state)
{
	char *buf = NULL;
	size_t cap = 0;

	assert_true(fgw_buf_grow(&buf, &cap, 10, 1 << 20));
	assert_non_null(buf);
	assert_int_equal(cap, 4096); /* at least 4 KiB */
	assert_true(fgw_buf_grow(&buf, &cap, 4096, 1 << 20));
	assert_int_equal(cap, 4096); /* enough already */
	assert_true(fgw_buf_grow(&buf, &cap, 4097, 1 << 20));
	assert_int_equal(cap, 8192); /* doubled */
	assert_true(fgw_buf_grow(&buf, &cap, 9000, 10000));
	assert_int_equal(cap, 10000); /* doubling stops at the cap */
	/* over the cap: refused, the buffer as it was */
	assert_false(fgw_buf_grow(&buf, &cap, 10001, 10000));
	assert_int_equal(cap, 10000);
	free(buf);
}

static void test_log_levels(void **state)
{
	assert_int_equal(fgw_log_level_from_string("debug"), LOG_DEBUG);
	assert_int_equal(fgw_log_level_from_string("WARNING"), LOG_WARNING);
	assert_int_equal(fgw_log_level_from_string("err"), LOG_ERR);
	assert_int_equal(fgw_log_level_from_string("loud"), -EINVAL);
	assert_int_equal(fgw_log_errno(LOG_DEBUG, -ENOENT, "x"), -ENOENT);
	assert_int_equal(fgw_log_errno(LOG_DEBUG, ENOENT, "x"), -ENOENT);
}

static void test_escape(void **state)
{
	char buf[64];

	/* journald's record separator and priority prefix, ESC sequences, DEL, C1 CSI. */
	assert_int_equal(fgw_escape_text(buf, sizeof(buf), "x\n<0>y", 6), 9);
	assert_string_equal(buf, "x\\x0a<0>y");
	fgw_escape_text(buf, sizeof(buf), "\x1b]0;pwned\x07\x7f", 11);
	assert_string_equal(buf, "\\x1b]0;pwned\\x07\\x7f");
	fgw_escape_text(buf, sizeof(buf),
			"a\xc2\x9b"
			"2J",
			5);
	assert_string_equal(buf, "a\\xc2\\x9b2J");
	/* Printable UTF-8 stays; invalid and overlong forms and surrogates do not. */
	fgw_escape_text(buf, sizeof(buf), "caf\xc3\xa9 \xe2\x86\x92", 9);
	assert_string_equal(buf, "caf\xc3\xa9 \xe2\x86\x92");
	fgw_escape_text(buf, sizeof(buf), "\xc0\xaf\xed\xa0\x80\xff", 6);
	assert_string_equal(buf, "\\xc0\\xaf\\xed\\xa0\\x80\\xff");
	/* The backslash is escaped too, so "\x0a" typed by a device stays distinguishable. */
	fgw_escape_text(buf, sizeof(buf), "\\x0a", 4);
	assert_string_equal(buf, "\\\\x0a");
	/* A NUL inside the given length is escaped, not a terminator. */
	fgw_escape_text(buf, sizeof(buf), "a\0b", 3);
	assert_string_equal(buf, "a\\x00b");
	assert_true(fgw_text_is_clean("plain text", 10));
	assert_false(fgw_text_is_clean("tab\there", 8));
}

static void test_escape_truncates_whole_pieces(void **state)
{
	char buf[8];

	/* "ab" fits, "\x1b" (4 bytes) would not fit whole after it with the NUL: stop at "ab". */
	assert_int_equal(fgw_escape_text(buf, 7,
					 "ab\x1b"
					 "cd",
					 5),
			 8);
	assert_string_equal(buf, "ab\\x1b");
	assert_int_equal(fgw_escape_text(buf, 6,
					 "ab\x1b"
					 "cd",
					 5),
			 8);
	assert_string_equal(buf, "ab");
	/* A two-byte UTF-8 letter is never cut in half. */
	assert_int_equal(fgw_escape_text(buf, 4, "ab\xc3\xa9", 4), 4);
	assert_string_equal(buf, "ab");
	assert_int_equal(fgw_escape_text(NULL, 0, "\x01", 1), 4);

	char *d = fgw_escape_dup("x\ny");
	assert_non_null(d);
	assert_string_equal(d, "x\\x0ay");
	free(d);
	d = fgw_escape_dup(NULL);
	assert_string_equal(d, "");
	free(d);
}

/* A device named "x\n<0>event: ..." must not forge an emergency-level journal record. */
static void test_log_escapes_messages(void **state)
{
	int fds[2], saved;
	char out[512];
	ssize_t n;

	assert_int_equal(pipe(fds), 0);
	saved = dup(STDERR_FILENO);
	dup2(fds[1], STDERR_FILENO);
	fgw_log(LOG_ERR, "device %s seen", "x\n<0>event: rollout-halted, by: operator");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fds[1]);
	n = read(fds[0], out, sizeof(out) - 1);
	close(fds[0]);
	assert_true(n > 0);
	out[n] = '\0';
	assert_string_equal(out, "<3>device x\\x0a<0>event: rollout-halted, by: operator seen\n");
	/* Exactly one line: one journald record. */
	assert_ptr_equal(strchr(out, '\n'), out + n - 1);
}

/* The shared packet buffer: writable by its only holder, sized once, freed with the last. */
static void test_buf(void **state)
{
	struct fgw_buf *b = fgw_buf_new(16), *r;

	assert_null(fgw_buf_new(SIZE_MAX)); /* out of memory is NULL, not a wrapped size */
	assert_non_null(b);
	assert_int_equal(fgw_buf_len(b), 0);
	assert_int_equal(fgw_buf_capacity(b), 16);
	assert_false(fgw_buf_shared(b));
	assert_int_equal(fgw_buf_set_len(b, 17), -EMSGSIZE);
	assert_int_equal(fgw_buf_set_len(b, 16), 0);
	memset(fgw_buf_data(b), 0xab, 16);
	r = fgw_buf_ref(b);
	assert_ptr_equal(r, b);
	assert_true(fgw_buf_shared(b));
	assert_null(fgw_buf_unref(r));
	assert_false(fgw_buf_shared(b));
	assert_int_equal(fgw_buf_data(b)[15], 0xab);
	assert_null(fgw_buf_unref(b)); /* ASan: freed here, once */
	assert_null(fgw_buf_unref(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hex),
	    cmocka_unit_test(test_buf),
	    cmocka_unit_test(test_parse_int),
	    cmocka_unit_test(test_parse_bool),
	    cmocka_unit_test(test_log_levels),
	    cmocka_unit_test(test_enum_names),
	    cmocka_unit_test(test_ble_addr),
	    cmocka_unit_test(test_fsync_path),
	    cmocka_unit_test(test_buf_grow),
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test(test_escape_truncates_whole_pieces),
	    cmocka_unit_test(test_log_escapes_messages),
	    cmocka_unit_test(test_url_redact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
