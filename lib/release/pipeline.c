/*
 * One release at a time: reuse the cached bundle or download it (resuming), have it verified
 * in the thread pool, then record the verdict and hand the verified release, with its sealed
 * images, to the callback.
 *
 *   queue -> cached <sha>.zip ? verify : download -> verify -> verified | rejected | retry
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "release-private.h"

/* ---- items ---- */

void rsrc_item_free(struct item *it)
{
	if (it) {
		fgw_manifest_release_free(it->rel);
		free(it);
	}
}

bool rsrc_queued(struct fgw_release_source *s, const char *id)
{
	if (s->current && strcmp(s->current->rel->id, id) == 0)
		return true;
	for (struct item *it = s->queue; it; it = it->next)
		if (strcmp(it->rel->id, id) == 0)
			return true;
	return false;
}

void rsrc_enqueue(struct fgw_release_source *s, struct item *it)
{
	it->next = NULL;
	if (s->queue_tail)
		s->queue_tail->next = it;
	else
		s->queue = it;
	s->queue_tail = it;
}

struct item *rsrc_dequeue(struct fgw_release_source *s)
{
	struct item *it = s->queue;

	if (it) {
		s->queue = it->next;
		if (!s->queue)
			s->queue_tail = NULL;
		it->next = NULL;
	}
	return it;
}

static void verify_begin(struct fgw_release_source *s, struct item *it, char *path, bool from_part,
			 bool resumed)
{
	struct work *w = calloc(1, sizeof(*w));
	int r;

	rsrc_enter_state(s, FGW_RELEASE_SOURCE_STATE_VERIFYING);
	if (!w) {
		free(path);
		rsrc_item_free(it);
		rsrc_process_next(s);
		return;
	}
	w->kind = WORK_VERIFY;
	w->item = it;
	w->path = path;
	w->from_part = from_part;
	w->resumed = resumed;
	w->final_path = rsrc_cache_path(s, it->rel->bundle_sha256_hex, ".zip");
	if (!w->final_path || (r = rsrc_work_queue(s, w, rsrc_do_verify)) < 0) {
		fgw_error("Failed to start verifying release '%s'", it->rel->id);
		rsrc_work_free(w);
		rsrc_process_next(s);
	}
}

static void release_reject(struct fgw_release_source *s, const struct item *it,
			   const struct fgw_reject *why)
{
	char reason[256], img[24] = "";
	int r;

	if (why->image >= 0)
		snprintf(img, sizeof(img), ", image %d", why->image);
	snprintf(reason, sizeof(reason), "%s: %s%s", fgw_reject_reason_to_string(why->reason),
		 why->detail ? why->detail : "", img);
	fgw_warning("event: release-rejected, release: %s, version: %s, reason: %s, detail: "
		    "%s%s",
		    it->rel->id, it->rel->version, fgw_reject_reason_to_string(why->reason),
		    why->detail ? why->detail : "", img);
	r = fgw_store_release_set_state(s->store, it->rel->id, "rejected", reason, NULL,
					fgw_wall_ms());
	if (r < 0)
		fgw_log_errno(LOG_ERR, r, "Failed to record the rejection of '%s': %s", it->rel->id,
			      fgw_store_errmsg(s->store));
}

static void download_begin(struct fgw_release_source *s, struct item *it);

/* Records and announces a verified release. True when @s was freed by the callback. */
static bool verified(struct fgw_release_source *s, struct work *w, struct item *it)
{
	char sigs[64] = "not-checked";
	struct fgw_release_info info = {
	    .release = it->rel,
	    .sequence = it->sequence,
	    .bundle_path = w->final_path,
	    .images = w->images,
	    .n_images = w->n_images,
	    .restored = it->restore,
	};
	int r;

	if (s->mcuboot_key)
		snprintf(sigs, sizeof(sigs), "valid (%s)", fgw_key_id(s->mcuboot_key));
	if (!it->restore) {
		r = fgw_store_release_set_state(s->store, it->rel->id, "verified", NULL,
						w->final_path, fgw_wall_ms());
		if (r < 0) {
			fgw_log_errno(LOG_ERR, r, "Failed to record release '%s' as verified: %s",
				      it->rel->id, fgw_store_errmsg(s->store));
			return false;
		}
		r = fgw_store_releases_supersede(s->store, it->rel->id, it->rel->board,
						 fgw_wall_ms());
		if (r < 0)
			fgw_log_errno(LOG_WARNING, r, "Failed to mark older releases superseded");
	}
	for (size_t i = 0; i < w->n_images; i++)
		if (w->images[i].trailing)
			fgw_notice("release %s, image %d: %zu bytes after the TLV area are not "
				   "signed and will not be uploaded",
				   it->rel->id, w->images[i].index, w->images[i].trailing);
	fgw_notice("event: release-%s, release: %s, version: %s, sequence: %" PRId64
		   ", images: %zu, signatures: %s, bundle: %s",
		   it->restore ? "restored" : "verified", it->rel->id, it->rel->version,
		   it->sequence, w->n_images, sigs, it->rel->bundle_sha256_hex);
	if (!s->verified_cb)
		return false;
	s->cb_depth++;
	s->verified_cb(&info, s->verified_ud);
	return rsrc_after_callback(s);
}

void rsrc_verify_done(struct fgw_release_source *s, struct work *w)
{
	struct item *it = TAKE_PTR(w->item);
	const struct fgw_reject *why = &w->why;

	if (w->err == 0) {
		bool gone = verified(s, w, it);
		rsrc_item_free(it);
		if (!gone)
			rsrc_process_next(s);
		return;
	}
	if (why->reason == FGW_REJECT_IO || why->reason == FGW_REJECT_NONE) {
		fgw_log_errno(LOG_WARNING, w->err,
			      "event: release-verify-failed, release: %s, detail: %s; will retry",
			      it->rel->id, why->detail ? why->detail : "");
		rsrc_item_free(it);
		rsrc_process_next(s);
		return;
	}
	/*
	 * A resumed download may have joined two versions of the file, and a cached bundle may
	 * have rotted on disk: neither is the server's fault. One fresh download first.
	 */
	bool rotten =
	    !w->from_part && it->restore &&
	    (why->reason == FGW_REJECT_SHA_MISMATCH || why->reason == FGW_REJECT_SIZE_MISMATCH ||
	     why->reason == FGW_REJECT_OVERSIZE);
	if ((w->resumed || rotten) && !it->fresh_tried) {
		fgw_notice("release '%s': %s after %s, downloading it again from the start",
			   it->rel->id, fgw_reject_reason_to_string(why->reason),
			   w->resumed ? "a resumed download" : "reading the cached copy");
		it->fresh_tried = true;
		if (!w->discarded)
			(void) unlink(w->path);
		if (it->restore) {
			it->restore = false;
			(void) fgw_store_release_set_state(s->store, it->rel->id, "pending",
							   "cached copy failed verification", NULL,
							   fgw_wall_ms());
		}
		download_begin(s, it);
		return;
	}
	release_reject(s, it, why);
	rsrc_item_free(it);
	rsrc_process_next(s);
}

/* ---- download ---- */

static void on_download(int err, const struct fgw_fetch_result *res, void *user_data)
{
	char url[FGW_URL_LOG_MAX];
	struct fgw_release_source *s = user_data;
	struct item *it = TAKE_PTR(s->current);
	char *part;

	s->req = NULL;
	if (err == -ECANCELED || s->freeing) {
		rsrc_item_free(it);
		return;
	}
	part = rsrc_cache_path(s, it->rel->bundle_sha256_hex, ".part");
	if (!part) {
		rsrc_item_free(it);
		rsrc_process_next(s);
		return;
	}
	if (err == 0) {
		if (res->resumed_from > 0)
			fgw_info("release '%s': download resumed at byte %" PRIu64 " of %" PRIu64,
				 it->rel->id, res->resumed_from, res->size);
		verify_begin(s, it, part, true, res->resumed_from > 0);
		return;
	}
	if (err == -EFBIG || err == -ENODATA) {
		struct fgw_reject why = {
		    err == -EFBIG ? FGW_REJECT_OVERSIZE : FGW_REJECT_SIZE_MISMATCH,
		    err == -EFBIG ? "the server sent more than the declared size"
				  : "the download ended before the declared size",
		    -1};
		(void) unlink(part);
		free(part);
		release_reject(s, it, &why);
		rsrc_item_free(it);
		rsrc_process_next(s);
		return;
	}
	/* transient: the partial file stays for the next attempt to resume */
	fgw_warning(
	    "event: release-download-failed, release: %s, url: %s, status: %ld, error: %s%s%s;"
	    " will retry",
	    it->rel->id, fgw_url_redact(it->rel->bundle_url, url, sizeof(url)),
	    res ? res->status : 0L, strerror(-err), res && res->error && *res->error ? ", " : "",
	    res ? res->error : "");
	free(part);
	rsrc_item_free(it);
	rsrc_process_next(s);
}

static void download_begin(struct fgw_release_source *s, struct item *it)
{
	char *part = rsrc_cache_path(s, it->rel->bundle_sha256_hex, ".part");
	int r;

	rsrc_enter_state(s, FGW_RELEASE_SOURCE_STATE_DOWNLOADING);
	if (!part) {
		rsrc_item_free(it);
		rsrc_process_next(s);
		return;
	}
	s->current = it;
	r = fgw_fetch_download(s->fetch, it->rel->bundle_url, part, it->rel->bundle_size,
			       on_download, s, NULL, &s->req);
	free(part);
	if (r < 0) {
		char url[FGW_URL_LOG_MAX];
		fgw_log_errno(LOG_WARNING, r, "Failed to start downloading release '%s' from '%s'",
			      it->rel->id, fgw_url_redact(it->rel->bundle_url, url, sizeof(url)));
		s->current = NULL;
		rsrc_item_free(it);
		rsrc_process_next(s);
	}
}

void rsrc_process_next(struct fgw_release_source *s)
{
	struct item *it;
	char *zip;

	if (s->freeing)
		return;
	it = rsrc_dequeue(s);
	if (!it) {
		if (s->poll_after_queue) {
			s->poll_after_queue = false;
			rsrc_poll_begin(s);
		} else {
			rsrc_prune_begin(s);
		}
		return;
	}
	zip = rsrc_cache_path(s, it->rel->bundle_sha256_hex, ".zip");
	if (zip && access(zip, F_OK) == 0) {
		/* already in the cache (a restart, or another id with the same bundle) */
		verify_begin(s, it, zip, false, false);
		return;
	}
	free(zip);
	if (it->restore) {
		fgw_notice("release '%s' is verified but its bundle left the cache; downloading it "
			   "again",
			   it->rel->id);
		it->restore = false;
		(void) fgw_store_release_set_state(s->store, it->rel->id, "pending",
						   "bundle missing from the cache", NULL,
						   fgw_wall_ms());
	}
	download_begin(s, it);
}
