/* File helpers the cache needs: hashing a file with a cap, atomic writes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle-private.h"
#include "util.h"

FGW_EXPORT int fgw_sha256_file(const char *path, uint64_t max_size, uint8_t ret_hash[32],
			       uint64_t *ret_size)
{
	_cleanup_free_ uint8_t *buf = NULL;
	EVP_MD_CTX *ctx = NULL;
	uint64_t total = 0;
	unsigned int n = 0;
	int fd, r = 0;

	buf = malloc(256 * 1024);
	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		r = -EIO;
		goto out;
	}
	for (;;) {
		ssize_t got = read(fd, buf, 256 * 1024);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			goto out;
		}
		if (got == 0)
			break;
		total += (uint64_t) got;
		if (total > max_size) {
			r = -EFBIG;
			goto out;
		}
		if (EVP_DigestUpdate(ctx, buf, (size_t) got) != 1) {
			r = -EIO;
			goto out;
		}
	}
	if (EVP_DigestFinal_ex(ctx, ret_hash, &n) != 1 || n != 32) {
		r = -EIO;
		goto out;
	}
	if (ret_size)
		*ret_size = total;
out:
	EVP_MD_CTX_free(ctx);
	close(fd);
	return r;
}

FGW_EXPORT int fgw_write_file_atomic(const char *path, const void *data, size_t len, int mode)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	const uint8_t *p = data;
	const char *slash;
	size_t done = 0;
	int fd, dfd, r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int) sizeof(tmp))
		return -ENAMETOOLONG;
	slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int) (slash - path), path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		done += (size_t) n;
	}
	if (r == 0 && fchmod(fd, (mode_t) mode) < 0)
		r = -errno;
	/* fsync before rename: after a crash the name points to the whole file or the old one */
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		(void) unlink(tmp);
		return r;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fsync(dfd) < 0)
		r = -errno;
	close(dfd);
	return r;
}
