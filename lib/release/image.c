/*
 * Sealed images: each verified MCUboot image is copied once into its own memfd, hashed while
 * it is written, then sealed so that no one (this process included) can write, grow or shrink
 * it, nor lift the seals. The fleet maps the memfd read-only; a byte changed in the cache
 * after verification never reaches a device, and no per-upload re-hash is needed.
 */
#define _GNU_SOURCE /* memfd_create, F_ADD_SEALS */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "release-private.h"

#define SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)
#define WRITE_CHUNK (64 * 1024)

static int write_hashing(int fd, const uint8_t *p, size_t len, uint8_t ret_sha[32])
{
	struct fgw_sha256_ctx *ctx;
	size_t done = 0;
	int r;

	r = fgw_sha256_begin(&ctx);
	if (r < 0)
		return r;
	while (done < len) {
		size_t n = FGW_MIN(len - done, (size_t) WRITE_CHUNK);
		ssize_t w = write(fd, p + done, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			(void) fgw_sha256_end(ctx, NULL);
			return w < 0 ? -errno : -EIO;
		}
		/* the digest covers exactly the bytes the kernel accepted */
		r = fgw_sha256_update(ctx, p + done, (size_t) w);
		if (r < 0) {
			(void) fgw_sha256_end(ctx, NULL);
			return r;
		}
		done += (size_t) w;
	}
	return fgw_sha256_end(ctx, ret_sha);
}

int rsrc_image_seal(const void *data, size_t len, const char *name, struct fgw_release_image *ret)
{
	void *map;
	int fd, r;

	if (len == 0)
		return -EINVAL;
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	r = write_hashing(fd, data, len, ret->sha256);
	/* F_SEAL_WRITE is refused while a writable shared mapping exists: there is none */
	if (r == 0 && fcntl(fd, F_ADD_SEALS, SEALS) < 0)
		r = -errno;
	if (r == 0) {
		map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			r = -errno;
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	ret->fd = fd;
	ret->data = map;
	ret->size = len;
	return 0;
}

void rsrc_image_clear(struct fgw_release_image *img)
{
	if (img->data)
		munmap((void *) img->data, img->size);
	if (img->fd >= 0)
		close(img->fd);
	*img = (struct fgw_release_image){.fd = -1};
}
