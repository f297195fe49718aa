/* File helpers the cache needs: hashing a file with a cap, atomic writes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

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
	int fd, r = 0;

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
	return fgw_fsync_path(dir);
}

FGW_EXPORT int fgw_sha256_begin(struct fgw_sha256_ctx **ret)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -EIO;
	}
	*ret = (struct fgw_sha256_ctx *) ctx;
	return 0;
}

FGW_EXPORT int fgw_sha256_update(struct fgw_sha256_ctx *c, const void *data, size_t len)
{
	return EVP_DigestUpdate((EVP_MD_CTX *) c, data, len) == 1 ? 0 : -EIO;
}

FGW_EXPORT int fgw_sha256_end(struct fgw_sha256_ctx *c, uint8_t ret_hash[32])
{
	unsigned int n = 0;
	int r = 0;

	if (ret_hash && (EVP_DigestFinal_ex((EVP_MD_CTX *) c, ret_hash, &n) != 1 || n != 32))
		r = -EIO;
	EVP_MD_CTX_free((EVP_MD_CTX *) c);
	return r;
}

/* One byte of room past @max_size in @cap tells "too big" from "exactly full". */
static int read_hashing(int fd, uint64_t max_size, uint8_t *buf, size_t cap, size_t *len,
			struct fgw_sha256_ctx *ctx)
{
	ssize_t got = fgw_read_full(fd, buf, cap);

	if (got < 0)
		return (int) got;
	if ((uint64_t) got > max_size)
		return -EFBIG;
	if (fgw_sha256_update(ctx, buf, (size_t) got) < 0)
		return -EIO;
	*len = (size_t) got;
	return 0;
}

FGW_EXPORT int fgw_file_load_sha256(const char *path, uint64_t max_size, uint8_t **ret_data,
				    size_t *ret_len, uint8_t ret_hash[32])
{
	struct fgw_sha256_ctx *ctx = NULL;
	uint8_t *buf = NULL;
	struct stat st;
	size_t cap, len = 0;
	int fd, r;

	if (max_size >= SIZE_MAX)
		max_size = SIZE_MAX - 1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if ((uint64_t) st.st_size > max_size) {
		r = -EFBIG;
		goto out;
	}
	/* the size may change while reading; the cap holds whatever the file does */
	cap = (size_t) max_size + 1;
	if (cap > (size_t) st.st_size + 1)
		cap = (size_t) st.st_size + 1;
	buf = malloc(cap);
	r = buf ? fgw_sha256_begin(&ctx) : -ENOMEM;
	if (r == 0)
		r = read_hashing(fd, max_size, buf, cap, &len, ctx);
	if (r == 0 && len == cap)
		r = -EFBIG; /* grew while read: not the file that was measured */
	if (r == 0)
		r = fgw_sha256_end(TAKE_PTR(ctx), ret_hash);
out:
	if (ctx)
		(void) fgw_sha256_end(ctx, NULL);
	close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret_data = buf;
	*ret_len = len;
	return 0;
}

FGW_EXPORT void fgw_bundle_thread_done(void)
{
	OPENSSL_thread_stop();
}
