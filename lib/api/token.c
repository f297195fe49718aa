/* The bearer token file, apart from the server so fotactl can read it without libmicrohttpd. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "util.h"

FGW_EXPORT int fgw_api_token_read(const char *path, char **ret)
{
	char buf[4097 + 1];
	size_t got = 0, len;
	struct stat st = {0};
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	/* The token grants every POST: a file others may read or replace is no secret. Checked
	 * on the open file, so a rename in between cannot slip another one in. */
	if (fstat(fd, &st) < 0 || (st.st_mode & (S_IROTH | S_IWOTH))) {
		int e = (st.st_mode & (S_IROTH | S_IWOTH)) ? -EPERM : -errno;
		close(fd);
		return e;
	}
	while (got < sizeof(buf) - 1) {
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;
			close(fd);
			return e;
		}
		if (n == 0)
			break;
		got += (size_t) n;
	}
	close(fd);
	buf[got] = '\0';
	len = got;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
			   buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (buf[i] <= ' ' || buf[i] > '~')
			len = 0; /* not a token; refused below */
	if (len < 16 || len > 4096) {
		explicit_bzero(buf, sizeof(buf));
		return -EINVAL;
	}
	*ret = strndup(buf, len);
	explicit_bzero(buf, sizeof(buf));
	return *ret ? 0 : -ENOMEM;
}
