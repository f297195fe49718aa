/*
 * One poll: GET the manifest (If-None-Match), GET its signature, check both in the thread
 * pool (the signature before anything parses the bytes), then judge sequence and expiry
 * against the store and record what the manifest lists.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "release-private.h"

struct stored_manifest {
	int64_t sequence;
	char etag[257];
	bool has_etag;
};

static int read_manifest_row(const struct fgw_store_manifest_state *m, void *user_data)
{
	struct stored_manifest *sm = user_data;

	sm->sequence = m->sequence;
	sm->has_etag = m->etag != NULL;
	snprintf(sm->etag, sizeof(sm->etag), "%s", m->etag ? m->etag : "");
	return 0;
}

static void manifest_rejected(struct fgw_release_source *s, const struct fgw_reject *why,
			      int64_t sequence)
{
	const char *reason = fgw_reject_reason_to_string(why->reason);

	if (sequence > 0)
		fgw_warning("event: manifest-rejected, url: %s, sequence: %" PRId64
			    ", reason: %s, detail: %s",
			    s->log_url, sequence, reason, why->detail ? why->detail : "");
	else
		fgw_warning("event: manifest-rejected, url: %s, reason: %s, detail: %s", s->log_url,
			    reason, why->detail ? why->detail : "");
	rsrc_set_result(s, "rejected: %s", reason);
	(void) fgw_store_manifest_polled(s->store, s->result, fgw_wall_ms());
}

/* The manifest against the store and the clock: accepted, unchanged or rejected. */
static enum fgw_poll_result judge(struct fgw_release_source *s, struct work *w,
				  const struct stored_manifest *sm)
{
	struct fgw_manifest *m = w->manifest;
	struct fgw_reject why;
	int r;

	/* first: a manifest for another audience is refused even if it is the one in force */
	r = fgw_manifest_check_channel(m, s->channel, &why);
	if (r == 0 && m->sequence == sm->sequence && rsrc_manifest_unchanged(s, m)) {
		/* the same manifest again (no ETag support, or a restart): nothing to do */
		rsrc_set_result(s, "unchanged");
		(void) fgw_store_manifest_accept(s->store, m->sequence, s->etag, s->result,
						 fgw_wall_ms());
		rsrc_in_force(s, m);
		return FGW_POLL_RESULT_UNCHANGED;
	}
	if (r == 0)
		r = fgw_manifest_check(m, sm->sequence, rsrc_judge_now(s), &why);
	if (r < 0) {
		manifest_rejected(s, &why, m->sequence);
		return FGW_POLL_RESULT_REJECTED;
	}
	fgw_notice("event: manifest-accepted, url: %s, sequence: %" PRId64
		   ", releases: %zu, key: %s",
		   s->log_url, m->sequence, m->n_releases, fgw_key_id(w->used_key));
	for (size_t i = 0; i < m->n_releases; i++)
		rsrc_accept_release(s, m, &m->releases[i]);
	rsrc_set_result(s, "accepted");
	r = fgw_store_manifest_accept(s->store, m->sequence, s->etag, s->result, fgw_wall_ms());
	if (r < 0)
		fgw_log_errno(LOG_ERR, r, "Failed to record manifest sequence %" PRId64 ": %s",
			      m->sequence, fgw_store_errmsg(s->store));
	rsrc_in_force(s, m);
	return FGW_POLL_RESULT_ACCEPTED;
}

void rsrc_check_done(struct fgw_release_source *s, struct work *w)
{
	struct stored_manifest sm = {0};
	enum fgw_poll_result result;
	int r;

	if (w->err < 0) {
		manifest_rejected(s, &w->why, 0);
		result = FGW_POLL_RESULT_REJECTED;
	} else if ((r = fgw_store_manifest_state_get(s->store, read_manifest_row, &sm)) < 0) {
		fgw_log_errno(LOG_ERR, r, "Failed to read the manifest state: %s",
			      fgw_store_errmsg(s->store));
		rsrc_set_result(s, "error: store");
		result = FGW_POLL_RESULT_ERROR;
	} else {
		result = judge(s, w, &sm);
	}
	free(TAKE_PTR(s->etag));
	rsrc_poll_end(s, result);
	rsrc_queue_from_store(s, false);
	rsrc_process_next(s);
}

void rsrc_do_check(uv_work_t *req)
{
	struct work *w = container_of(req, struct work, req);
	struct fgw_release_source *s = w->s;

	/* the signature first: nothing unauthenticated reaches the parser */
	w->err = fgw_manifest_verify_signature(w->json, w->json_len, w->sig, w->sig_len, s->keys,
					       s->n_keys, &w->used_key, &w->why);
	if (w->err == 0)
		w->err = fgw_manifest_parse(w->json, w->json_len, &w->manifest, &w->why);
	fgw_bundle_thread_done();
}

static void poll_failed(struct fgw_release_source *s, const char *what, int err,
			const struct fgw_fetch_result *res)
{
	fgw_warning("Failed to fetch %s '%s': %s%s%s (HTTP %ld), will retry", what,
		    what[0] == 'm' ? s->log_url : s->log_sig_url, strerror(-err),
		    res && res->error && *res->error ? ": " : "",
		    res && res->error ? res->error : "", res ? res->status : 0L);
	rsrc_set_result(s, "error: %s: %s", what, strerror(-err));
	(void) fgw_store_manifest_polled(s->store, s->result, fgw_wall_ms());
	free(TAKE_PTR(s->json));
	free(TAKE_PTR(s->etag));
	rsrc_poll_end(s, FGW_POLL_RESULT_ERROR);
	/* pending releases from an earlier manifest still get their retry */
	rsrc_queue_from_store(s, false);
	rsrc_process_next(s);
}

static void on_sig(int err, const struct fgw_fetch_result *res, void *user_data)
{
	struct fgw_release_source *s = user_data;
	struct work *w;
	int r;

	s->req = NULL;
	if (err == -ECANCELED || s->freeing)
		return;
	if (err < 0) {
		poll_failed(s, "signature", err, res);
		return;
	}
	rsrc_enter_state(s, FGW_RELEASE_SOURCE_STATE_CHECKING);
	w = calloc(1, sizeof(*w));
	if (!w || !(w->sig = malloc(res->len + 1))) {
		free(w);
		poll_failed(s, "signature", -ENOMEM, NULL);
		return;
	}
	memcpy(w->sig, res->body, res->len);
	w->sig_len = res->len;
	w->kind = WORK_CHECK;
	w->json = TAKE_PTR(s->json);
	w->json_len = s->json_len;
	r = rsrc_work_queue(s, w, rsrc_do_check);
	if (r < 0) {
		rsrc_work_free(w);
		poll_failed(s, "signature", r, NULL);
	}
}

static void on_manifest(int err, const struct fgw_fetch_result *res, void *user_data)
{
	struct fgw_release_source *s = user_data;
	int r;

	s->req = NULL;
	if (err == -ECANCELED || s->freeing)
		return;
	if (err < 0) {
		poll_failed(s, "manifest", err, res);
		return;
	}
	if (res->not_modified) {
		fgw_debug("manifest '%s' not modified", s->log_url);
		rsrc_set_result(s, "not-modified");
		(void) fgw_store_manifest_polled(s->store, s->result, fgw_wall_ms());
		rsrc_poll_end(s, FGW_POLL_RESULT_NOT_MODIFIED);
		rsrc_queue_from_store(s, false);
		rsrc_process_next(s);
		return;
	}
	s->json = malloc(res->len + 1);
	if (!s->json) {
		poll_failed(s, "manifest", -ENOMEM, res);
		return;
	}
	memcpy(s->json, res->body, res->len);
	s->json_len = res->len;
	free(s->etag);
	s->etag = res->etag ? strdup(res->etag) : NULL;
	rsrc_enter_state(s, FGW_RELEASE_SOURCE_STATE_FETCHING_SIG);
	r = fgw_fetch_get(s->fetch, s->sig_url, NULL, FGW_MANIFEST_SIG_MAX_BYTES, on_sig, s, NULL,
			  &s->req);
	if (r < 0)
		poll_failed(s, "signature", r, NULL);
}

void rsrc_poll_begin(struct fgw_release_source *s)
{
	struct stored_manifest sm = {0};
	int r;

	rsrc_enter_state(s, FGW_RELEASE_SOURCE_STATE_POLLING);
	/*
	 * An ETag is only kept for a manifest that was accepted (see judge()), and only sent once
	 * this run has seen that manifest: a 304 must not hide its `expires` after a restart.
	 */
	(void) fgw_store_manifest_state_get(s->store, read_manifest_row, &sm);
	if (s->in_force_sequence != sm.sequence)
		sm.has_etag = false;
	r = fgw_fetch_get(s->fetch, s->manifest_url, sm.has_etag && sm.etag[0] ? sm.etag : NULL,
			  FGW_MANIFEST_MAX_BYTES, on_manifest, s, NULL, &s->req);
	if (r < 0)
		poll_failed(s, "manifest", r, NULL);
}
