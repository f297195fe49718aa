/*
 * Verification, in the thread pool, done once: the bundle file is read once, and those same
 * bytes are measured against the manifest (size, SHA-256), parsed and checked (NCS zip,
 * MCUboot images, signatures, version, board), and each image is extracted into a sealed
 * memfd. Nothing is reopened by path after the hash.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "release-private.h"

static bool board_matches(const char *target, const char *zip_board)
{
	size_t n = strlen(target);

	/* NCS names boards "nrf5340dk/nrf5340/cpuapp" (or "nrf5340dk_nrf5340_cpuapp"); a target
	 * may name the whole thing or just the board part before the SoC and core. */
	if (strcmp(target, zip_board) == 0)
		return true;
	return strncmp(target, zip_board, n) == 0 && (zip_board[n] == '/' || zip_board[n] == '_');
}

static int reject(struct work *w, int err, enum fgw_reject_reason reason, int image,
		  const char *detail)
{
	w->err = err;
	w->why = (struct fgw_reject){reason, detail, image};
	return err;
}

/* The bytes against the manifest: size and SHA-256. 1: refused, 0: fine, <0: I/O. */
static int measure(struct work *w, uint8_t **data, size_t *len)
{
	const struct fgw_manifest_release *rel = w->item->rel;
	uint8_t hash[32];
	int r;

	r = fgw_file_load_sha256(w->path, rel->bundle_size, data, len, hash);
	if (r == -EFBIG) {
		reject(w, r, FGW_REJECT_OVERSIZE, -1, "the file is larger than declared");
		return 1;
	}
	if (r < 0)
		return reject(w, r, FGW_REJECT_IO, -1, "cannot read the downloaded bundle");
	if (*len != rel->bundle_size) {
		reject(w, -EBADMSG, FGW_REJECT_SIZE_MISMATCH, -1,
		       "the file is smaller than declared");
		return 1;
	}
	if (memcmp(hash, rel->bundle_sha256, 32) != 0) {
		reject(w, -EBADMSG, FGW_REJECT_SHA_MISMATCH, -1,
		       "SHA-256 of the bundle differs from the manifest");
		return 1;
	}
	return 0;
}

/* What the manifest says about the release against the app image. 1: refused, 0: fine. */
static int check_release(struct work *w, const struct fgw_bundle *b)
{
	const struct fgw_manifest_release *rel = w->item->rel;
	const struct fgw_bundle_image *app = fgw_bundle_find_image(b, 0);
	struct fgw_image_version v = rel->image_version;

	if (!app) {
		reject(w, -EBADMSG, FGW_REJECT_MISSING_IMAGE, 0,
		       "the bundle has no app core image");
		return 1;
	}
	if (!strchr(rel->version, '+'))
		v.build = app->img.version.build; /* "1.2.3" says nothing about the build */
	if (fgw_image_version_compare(&v, &app->img.version) != 0) {
		reject(w, -EBADMSG, FGW_REJECT_VERSION_MISMATCH, 0,
		       "the app image version differs from the release version");
		return 1;
	}
	if (app->board && !board_matches(rel->board, app->board)) {
		reject(w, -EBADMSG, FGW_REJECT_BOARD_MISMATCH, 0,
		       "the app image is built for another board than the release targets");
		return 1;
	}
	return 0;
}

/* Every image into its sealed memfd, up to the end of its TLV area. */
static int extract(struct work *w, const struct fgw_bundle *b)
{
	for (size_t i = 0; i < b->n_images; i++) {
		const struct fgw_bundle_image *bi = &b->images[i];
		struct fgw_release_image *ri = &w->images[w->n_images];
		char name[96];
		int r;

		*ri = (struct fgw_release_image){.index = bi->index, .fd = -1};
		snprintf(name, sizeof(name), "fotagw-%.16s-image%d",
			 w->item->rel->bundle_sha256_hex, bi->index);
		r = rsrc_image_seal(bi->data, bi->img.tlv_end, name, ri);
		if (r < 0)
			return reject(w, r, FGW_REJECT_IO, bi->index,
				      "cannot extract the image into sealed memory");
		ri->trailing = bi->len - bi->img.tlv_end;
		memcpy(ri->hash, bi->img.hash, 32);
		ri->version = bi->img.version;
		w->n_images++;
	}
	return 0;
}

/* Makes the bytes durable before the name says "verified". */
static int move_into_place(struct work *w)
{
	int r = fgw_fsync_path(w->path);

	if (r < 0)
		return reject(w, r, FGW_REJECT_IO, -1, "cannot sync the bundle to disk");
	if (rename(w->path, w->final_path) < 0)
		return reject(w, -errno, FGW_REJECT_IO, -1, "cannot move the bundle into place");
	r = fgw_fsync_path(w->s->cache_dir);
	if (r < 0)
		return reject(w, r, FGW_REJECT_IO, -1, "cannot sync the bundle's directory");
	return 0;
}

static void release_images(struct work *w)
{
	for (size_t i = 0; i < w->n_images; i++)
		rsrc_image_clear(&w->images[i]);
	w->n_images = 0;
}

void rsrc_do_verify(uv_work_t *req)
{
	struct work *w = container_of(req, struct work, req);
	struct fgw_bundle *b = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	int r;

	r = measure(w, &data, &len);
	if (r == 0) {
		r = fgw_bundle_open_buffer(data, len, w->s->mcuboot_key, &b, &w->why);
		if (r < 0) {
			w->err = r;
			r = w->why.reason == FGW_REJECT_IO || r == -ENOMEM ? r : 1;
		}
	}
	if (r == 0)
		r = check_release(w, b);
	if (r == 0)
		r = extract(w, b);
	if (r == 0 && w->from_part)
		r = move_into_place(w);
	fgw_bundle_free(b);
	free(data);
	fgw_bundle_thread_done();
	if (r == 0) {
		w->err = 0;
		return;
	}
	release_images(w);
	/* a download that can never verify goes; a cached zip may be another release's */
	if (r > 0 && w->from_part) {
		(void) unlink(w->path);
		w->discarded = true;
	}
}
