/*
 * The release source's lifetime and its cycle: options and keys, the poll timer, the one
 * piece of work in the thread pool at a time, the end of a cycle, and freeing once nothing
 * can call back any more.
 *
 *   [start: queue cached verified releases (re-check) and pending ones]
 *   poll manifest -> fetch .sig -> check (pool) -> accept: insert/update release rows
 *   -> queue every pending release -> per release: download (or reuse the cached zip)
 *   -> verify and extract (pool) -> verified | rejected -> ... -> prune (pool) -> idle
 *
 * What is pending lives in the releases table, so a restart, a failed download or a cut
 * connection simply leaves the row pending and the next cycle picks it up again.
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "release-private.h"

/* For the debug log only: the state is not shown anywhere else. */
static const char *const state_names[_FGW_RELEASE_SOURCE_STATE_MAX] = {
    [FGW_RELEASE_SOURCE_STATE_IDLE] = "idle",
    [FGW_RELEASE_SOURCE_STATE_RESTORING] = "restoring",
    [FGW_RELEASE_SOURCE_STATE_POLLING] = "polling",
    [FGW_RELEASE_SOURCE_STATE_FETCHING_SIG] = "fetching-signature",
    [FGW_RELEASE_SOURCE_STATE_CHECKING] = "checking",
    [FGW_RELEASE_SOURCE_STATE_DOWNLOADING] = "downloading",
    [FGW_RELEASE_SOURCE_STATE_VERIFYING] = "verifying",
    [FGW_RELEASE_SOURCE_STATE_PRUNING] = "pruning",
};

void rsrc_enter_state(struct fgw_release_source *s, enum fgw_release_source_state st)
{
	fgw_debug("release source: %s -> %s", state_names[s->state], state_names[st]);
	s->state = st;
}

static void finish_free(struct fgw_release_source *s);

/* ---- cycle end and callbacks ---- */

bool rsrc_after_callback(struct fgw_release_source *s)
{
	s->cb_depth--;
	if (s->freeing && s->cb_depth == 0) {
		finish_free(s);
		return true;
	}
	return s->freeing;
}

void rsrc_cycle_end(struct fgw_release_source *s)
{
	rsrc_enter_state(s, FGW_RELEASE_SOURCE_STATE_IDLE);
	if (s->cycle_cb) {
		s->cb_depth++;
		s->cycle_cb(s->result, s->cycle_ud);
		if (rsrc_after_callback(s))
			return;
	}
	if (s->poll_again) {
		s->poll_again = false;
		rsrc_poll_begin(s);
	}
}

void rsrc_set_result(struct fgw_release_source *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->result, sizeof(s->result), fmt, ap);
	va_end(ap);
}

/* ---- thread pool ---- */

void rsrc_work_free(struct work *w)
{
	if (!w)
		return;
	free(w->json);
	free(w->sig);
	fgw_manifest_free(w->manifest);
	rsrc_item_free(w->item);
	free(w->path);
	free(w->final_path);
	for (size_t i = 0; i < w->n_images; i++)
		rsrc_image_clear(&w->images[i]);
	free(w->keep);
	free(w);
}

static void on_work_done(uv_work_t *req, int status);

int rsrc_work_queue(struct fgw_release_source *s, struct work *w, uv_work_cb fn)
{
	int r;

	w->s = s;
	r = uv_queue_work(s->loop, &w->req, fn, on_work_done);
	if (r < 0)
		return r;
	s->work = w;
	return 0;
}

static char *sig_url_for(const char *url)
{
	size_t n = strcspn(url, "?#");
	char *out;

	return asprintf(&out, "%.*s.sig%s", (int) n, url, url + n) < 0 ? NULL : out;
}

static void on_work_done(uv_work_t *req, int status)
{
	struct work *w = container_of(req, struct work, req);
	struct fgw_release_source *s = w->s;

	s->work = NULL;
	if (s->freeing || status == UV_ECANCELED) {
		rsrc_work_free(w);
		if (s->freeing && s->cb_depth == 0)
			finish_free(s);
		return;
	}
	switch (w->kind) {
	case WORK_CHECK:
		w->manifest = w->err == 0 ? w->manifest : NULL;
		rsrc_check_done(s, w);
		break;
	case WORK_VERIFY:
		rsrc_verify_done(s, w);
		break;
	case WORK_PRUNE:
		rsrc_prune_done(s, w);
		break;
	}
	/* check_done/verify_done/prune_done may have freed s (callbacks); w is ours */
	rsrc_work_free(w);
}

static void on_timer(uv_timer_t *t)
{
	struct fgw_release_source *s = t->data;

	if (s->state == FGW_RELEASE_SOURCE_STATE_IDLE)
		rsrc_poll_begin(s);
	else
		s->poll_again = true;
}

/* ---- lifetime ---- */

FGW_EXPORT int fgw_release_source_new(uv_loop_t *loop, struct fgw_store *store,
				      const struct fgw_release_source_options *o,
				      struct fgw_release_source **ret)
{
	struct fgw_release_source *s;
	int r;

	if (!o->manifest_url || !*o->manifest_url || !o->cache_dir || !*o->cache_dir ||
	    o->n_trusted_keys == 0 || o->n_trusted_keys > FGW_MANIFEST_MAX_KEYS)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->store = store;
	s->poll_interval_s = o->poll_interval_s ? o->poll_interval_s : RSRC_DEFAULT_POLL_INTERVAL_S;
	s->budget = o->cache_budget_bytes;
	s->manifest_url = strdup(o->manifest_url);
	s->sig_url = sig_url_for(o->manifest_url);
	s->cache_dir = strdup(o->cache_dir);
	fgw_url_redact(o->manifest_url, s->log_url, sizeof(s->log_url));
	if (s->sig_url)
		fgw_url_redact(s->sig_url, s->log_sig_url, sizeof(s->log_sig_url));
	s->channel = strdup(o->channel ? o->channel : "");
	s->clock_floor = o->clock_floor_s ? o->clock_floor_s : rsrc_clock_floor_default();
	if (!s->manifest_url || !s->sig_url || !s->cache_dir || !s->channel) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < o->n_trusted_keys; i++) {
		r = fgw_key_load_file(o->trusted_keys[i], &s->keys[s->n_keys]);
		if (r < 0) {
			fgw_log_errno(LOG_ERR, r, "Failed to load trusted key '%s'",
				      o->trusted_keys[i]);
			goto fail;
		}
		s->n_keys++;
		if (fgw_key_get_type(s->keys[s->n_keys - 1]) != FGW_KEY_TYPE_ED25519) {
			fgw_error("Trusted key '%s' is not an Ed25519 key", o->trusted_keys[i]);
			r = -EINVAL;
			goto fail;
		}
	}
	if (o->mcuboot_key && *o->mcuboot_key) {
		r = fgw_key_load_file(o->mcuboot_key, &s->mcuboot_key);
		if (r < 0) {
			fgw_log_errno(LOG_ERR, r, "Failed to load MCUboot key '%s'",
				      o->mcuboot_key);
			goto fail;
		}
	}
	if (mkdir(s->cache_dir, 0750) < 0 && errno != EEXIST) {
		r = fgw_log_errno(LOG_ERR, -errno, "Failed to create cache directory '%s'",
				  s->cache_dir);
		goto fail;
	}
	r = fgw_fetch_new(loop, &o->fetch, &s->fetch);
	if (r < 0)
		goto fail;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	s->state = FGW_RELEASE_SOURCE_STATE_IDLE;
	*ret = s;
	return 0;
fail:
	for (size_t i = 0; i < s->n_keys; i++)
		fgw_key_free(s->keys[i]);
	fgw_key_free(s->mcuboot_key);
	free(s->manifest_url);
	free(s->sig_url);
	free(s->cache_dir);
	free(s->channel);
	free(s);
	return r;
}

FGW_EXPORT void fgw_release_source_set_verified_cb(struct fgw_release_source *s,
						   fgw_release_verified_cb_t cb, void *user_data)
{
	s->verified_cb = cb;
	s->verified_ud = user_data;
}

FGW_EXPORT void fgw_release_source_set_cycle_cb(struct fgw_release_source *s,
						fgw_release_cycle_cb_t cb, void *user_data)
{
	s->cycle_cb = cb;
	s->cycle_ud = user_data;
}

FGW_EXPORT int fgw_release_source_start(struct fgw_release_source *s)
{
	uint64_t ms = (uint64_t) s->poll_interval_s * 1000;

	if (s->started)
		return -EALREADY;
	s->started = true;
	uv_timer_start(&s->timer, on_timer, ms, ms);
	rsrc_enter_state(s, FGW_RELEASE_SOURCE_STATE_RESTORING);
	rsrc_queue_from_store(s, true);
	s->poll_after_queue = true;
	rsrc_process_next(s);
	return 0;
}

FGW_EXPORT void fgw_release_source_poll_now(struct fgw_release_source *s)
{
	if (!s->started || s->freeing)
		return;
	if (s->state == FGW_RELEASE_SOURCE_STATE_IDLE)
		rsrc_poll_begin(s);
	else
		s->poll_again = true;
}

FGW_EXPORT enum fgw_release_source_state fgw_release_source_get_state(struct fgw_release_source *s)
{
	return s->state;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct fgw_release_source *s = h->data;

	s->timer_closed = true;
	finish_free(s);
}

/* Frees once nothing can call back any more: timer closed, no work in the pool. */
static void finish_free(struct fgw_release_source *s)
{
	if (!s->timer_closed || s->work || s->cb_depth > 0)
		return;
	while (s->queue)
		rsrc_item_free(rsrc_dequeue(s));
	rsrc_item_free(s->current);
	for (size_t i = 0; i < s->n_keys; i++)
		fgw_key_free(s->keys[i]);
	fgw_key_free(s->mcuboot_key);
	free(s->json);
	free(s->etag);
	free(s->manifest_url);
	free(s->sig_url);
	free(s->cache_dir);
	free(s->channel);
	free(s);
}

FGW_EXPORT struct fgw_release_source *fgw_release_source_free(struct fgw_release_source *s)
{
	if (!s || s->freeing)
		return NULL;
	s->freeing = true;
	/* cancels the transfer in flight; its callback sees s->freeing and returns */
	s->fetch = fgw_fetch_free(s->fetch);
	if (s->work)
		(void) uv_cancel((uv_req_t *) &s->work->req);
	uv_close((uv_handle_t *) &s->timer, on_timer_closed);
	return NULL;
}
