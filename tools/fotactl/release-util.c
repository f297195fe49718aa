/*
 * What the `fotactl release` subcommands share: error messages in one style, and reading a
 * whole input file with a size limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"
#include "fotactl.h"
#include "release.h"
#include "util.h"

int rel_fail(int err, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fotactl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, ": %s", strerror(err < 0 ? -err : err));
	fputc('\n', stderr);
	return FOTACTL_EXIT_FAILED;
}

int rel_usage_error(const char *msg)
{
	fprintf(stderr, "fotactl: %s (fotactl release --help)\n", msg);
	return FOTACTL_EXIT_USAGE;
}

/* getopt has already named the option: only point at the usage. */
int rel_bad_option(char **argv)
{
	fprintf(stderr, "Usage: see %s --help\n", argv[0]);
	return FOTACTL_EXIT_USAGE;
}

/* A value an option does not accept: name both. */
int rel_bad_value(const char *opt, const char *value, const char *expected)
{
	fprintf(stderr, "fotactl: bad %s '%s' (%s)\n", opt, value, expected);
	return FOTACTL_EXIT_USAGE;
}

/* An operand too many. */
int rel_extra_operand(const char *arg)
{
	fprintf(stderr, "fotactl: unexpected argument '%s'\n", arg);
	return FOTACTL_EXIT_USAGE;
}

int rel_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
	struct stat st;
	uint8_t *buf;
	ssize_t got;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t) st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t) st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	got = fgw_read_full(fd, buf, (size_t) st.st_size);
	close(fd);
	if (got != st.st_size) {
		/* shorter than fstat said: it changed under us */
		r = got < 0 ? (int) got : -EIO;
		free(buf);
		return r;
	}
	buf[got] = '\0';
	*ret = buf;
	*ret_len = (size_t) got;
	return 0;
}

void rel_print_reject(const char *what, const struct fgw_reject *why)
{
	fprintf(stderr, "fotactl: %s refused: %s", what, fgw_reject_reason_to_string(why->reason));
	if (why->image >= 0)
		fprintf(stderr, ", image %d", why->image);
	if (why->detail)
		fprintf(stderr, " (%s)", why->detail);
	fputc('\n', stderr);
}
