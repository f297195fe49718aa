/*
 * The bearer token file fotagwd and fotactl read: content rule, modes, limits, real files;
 * and fgw_read_full() under it.
 */
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

#include "util.h"

#define TOK16 "0123456789abcdef"

struct dir {
	char path[64];
	char file[96];
};

static int setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	snprintf(d->path, sizeof(d->path), "/tmp/fgw-token-XXXXXX");
	if (!mkdtemp(d->path)) {
		free(d);
		return -1;
	}
	snprintf(d->file, sizeof(d->file), "%s/token", d->path);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dir *d = *state;

	unlink(d->file);
	rmdir(d->path);
	free(d);
	return 0;
}

/* Writes @len bytes of @content with @mode (set after creation, so the umask cannot mask it). */
static const char *put(struct dir *d, const void *content, size_t len, mode_t mode)
{
	int fd;

	unlink(d->file);
	fd = open(d->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t) len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return d->file;
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void test_modes(void **state)
{
	struct dir *d = *state;
	char *tok = NULL;

	/* 0600 and 0640 (a systemd credential's group) pass; any bit for others is refused. */
	static const mode_t ok[] = {0600, 0640, 0400, 0660};
	static const mode_t refused[] = {0644, 0604, 0602, 0606, 0666};

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		assert_int_equal(fgw_token_read(put(d, TOK16 "\n", 17, ok[i]), &tok), 0);
		assert_string_equal(tok, TOK16);
		free(tok);
		tok = NULL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
		assert_int_equal(fgw_token_read(put(d, TOK16, 16, refused[i]), &tok), -EPERM);
		assert_null(tok); /* untouched */
	}
}

static void test_content(void **state)
{
	static const struct {
		const char *text;
		int r;
		const char *tok;
	} cases[] = {
	    {TOK16, 0, TOK16},
	    {TOK16 "\r\n", 0, TOK16},
	    {TOK16 " \t\n\n", 0, TOK16},
	    {TOK16 "-more_chars.\r\n\n", 0, TOK16 "-more_chars."},
	    {TOK16 "\n0123\n", -EINVAL, NULL}, /* two lines */
	    {"~!\"#$%&'()*+,-./", 0, "~!\"#$%&'()*+,-./"},
	    {"0123456789abcde\n", -EINVAL, NULL}, /* 15 characters */
	    {"", -EINVAL, NULL},
	    {"\n\n\n", -EINVAL, NULL},
	    {"0123456789 abcdef", -EINVAL, NULL}, /* inner space */
	    {" " TOK16, -EINVAL, NULL},		  /* leading white space is not trimmed */
	    {"0123456789abcdef\x7f", -EINVAL, NULL},
	    {"0123456789abcdef\xc3\xa9", -EINVAL, NULL},
	    {"01234567\n89abcdef", -EINVAL, NULL},
	};
	struct dir *d = *state;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *tok = NULL;
		size_t len = strlen(cases[i].text);

		assert_int_equal(fgw_token_read(put(d, cases[i].text, len, 0600), &tok),
				 cases[i].r);
		if (cases[i].tok)
			assert_string_equal(tok, cases[i].tok);
		else
			assert_null(tok);
		free(tok);
		tok = NULL;
		/* The parser alone gives the same answer. */
		assert_int_equal(fgw_token_parse(cases[i].text, len, &tok), cases[i].r);
		free(tok);
	}
}

static void test_nul_byte(void **state)
{
	struct dir *d = *state;
	char *tok = NULL;

	assert_int_equal(fgw_token_read(put(d, TOK16 "\0x", 18, 0600), &tok), -EINVAL);
	assert_null(tok);
}

static void test_lengths(void **state)
{
	struct dir *d = *state;
	char *max = repeat('a', FGW_TOKEN_MAX), *over = repeat('a', FGW_TOKEN_MAX + 1);
	char *tok = NULL, *padded;
	size_t n;

	assert_int_equal(fgw_token_read(put(d, max, FGW_TOKEN_MAX, 0600), &tok), 0);
	assert_int_equal(strlen(tok), FGW_TOKEN_MAX);
	free(tok);
	tok = NULL;
	assert_int_equal(fgw_token_read(put(d, over, FGW_TOKEN_MAX + 1, 0600), &tok), -EINVAL);
	assert_null(tok);

	/* The longest token with 4096 bytes of trailing white space still passes; one byte of
	 * white space more makes the file too long, and it is refused whole, not cut. */
	n = FGW_TOKEN_MAX + 4096;
	padded = repeat('\n', n + 1);
	memcpy(padded, max, FGW_TOKEN_MAX);
	assert_int_equal(fgw_token_read(put(d, padded, n, 0600), &tok), 0);
	assert_int_equal(strlen(tok), FGW_TOKEN_MAX);
	free(tok);
	tok = NULL;
	assert_int_equal(fgw_token_read(put(d, padded, n + 1, 0600), &tok), -EINVAL);
	assert_null(tok);

	/* The longest token, a newline and more text: the whole file is the token, so no. */
	free(padded);
	padded = repeat('c', FGW_TOKEN_MAX + 6);
	padded[FGW_TOKEN_MAX] = '\n';
	assert_int_equal(fgw_token_read(put(d, padded, FGW_TOKEN_MAX + 6, 0600), &tok), -EINVAL);
	assert_null(tok);

	/* A token, a newline, then more text beyond the read limit: never the first line alone. */
	free(padded);
	padded = repeat('b', n + 100);
	memcpy(padded, TOK16 "\n", 17);
	assert_int_equal(fgw_token_read(put(d, padded, n + 100, 0600), &tok), -EINVAL);
	assert_null(tok);
	free(padded);
	free(max);
	free(over);
}

static void test_not_a_file(void **state)
{
	struct dir *d = *state;
	char *tok = NULL, missing[128];

	snprintf(missing, sizeof(missing), "%s/missing", d->path);
	assert_int_equal(fgw_token_read(missing, &tok), -ENOENT);
	assert_int_equal(chmod(d->path, 0700), 0);
	assert_int_equal(fgw_token_read(d->path, &tok), -EISDIR);
	assert_null(tok);
}

/* Short reads (a pipe hands over what was written so far) add up; the end stops early. */
static void test_read_full(void **state)
{
	char buf[8] = {0};
	int p[2];

	(void) state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "abc", 3), 3);
	assert_int_equal(write(p[1], "def", 3), 3);
	assert_int_equal(fgw_read_full(p[0], buf, 4), 4);
	assert_memory_equal(buf, "abcd", 4);
	close(p[1]);
	assert_int_equal(fgw_read_full(p[0], buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "ef", 2);
	assert_int_equal(fgw_read_full(p[0], buf, sizeof(buf)), 0);
	close(p[0]);
	assert_int_equal(fgw_read_full(p[0], buf, sizeof(buf)), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_content, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nul_byte, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lengths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_a_file, setup, teardown),
	    cmocka_unit_test(test_read_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
