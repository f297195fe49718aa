/*
 * The bearer token file, in util so that both fotagwd and fotactl read it by the same rules
 * without fotactl linking the API server.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* Room for the longest token and generous trailing white space; a longer file is refused
 * whole rather than cut. */
#define TOKEN_FILE_MAX (FGW_TOKEN_MAX + 4096)

static bool trailing_space(char c)
{
	return c == '\n' || c == '\r' || c == ' ' || c == '\t';
}

FGW_EXPORT int fgw_token_parse(const char *buf, size_t len, char **ret)
{
	char *tok;

	while (len > 0 && trailing_space(buf[len - 1]))
		len--;
	if (len < FGW_TOKEN_MIN || len > FGW_TOKEN_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (buf[i] <= ' ' || buf[i] > '~')
			return -EINVAL;
	tok = strndup(buf, len);
	if (!tok)
		return -ENOMEM;
	*ret = tok;
	return 0;
}

FGW_EXPORT int fgw_token_read(const char *path, char **ret)
{
	char buf[TOKEN_FILE_MAX + 1];
	struct stat st;
	ssize_t got;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	/* The token grants every POST: a file others may read or replace is no secret. Checked
	 * on the open file, so a rename in between cannot slip another one in. */
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		close(fd);
		return -EPERM;
	}
	got = fgw_read_full(fd, buf, sizeof(buf));
	close(fd);
	if (got < 0)
		r = (int) got;
	else if (got > TOKEN_FILE_MAX)
		r = -EINVAL;
	else
		r = fgw_token_parse(buf, (size_t) got, ret);
	explicit_bzero(buf, sizeof(buf));
	return r;
}
