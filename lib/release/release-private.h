/*
 * Inside the release part: the pipeline object, the queue of releases to fetch, and the work
 * items that run in the thread pool. One file per stage: source.c (lifetime, cycle, thread
 * pool), poll.c (manifest and signature), rows.c (the releases table), pipeline.c (download
 * and the verdict), verify.c (the one read: hash, parse, extract), image.c (sealed memfds),
 * cache.c (paths and pruning).
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "release.h"
#include "store.h"
#include "util.h"

#define RSRC_DEFAULT_POLL_INTERVAL_S 300

struct item {
	struct fgw_manifest_release *rel; /* owned; bundle_url absolute */
	int64_t sequence;
	bool restore;	  /* verified before this start: re-check the cached copy */
	bool fresh_tried; /* a from-scratch download after a bad resumed/cached one was tried */
	struct item *next;
};

enum work_kind {
	WORK_CHECK,
	WORK_VERIFY,
	WORK_PRUNE,
};

struct work {
	uv_work_t req;
	struct fgw_release_source *s;
	enum work_kind kind;
	int err;
	struct fgw_reject why;
	/* WORK_CHECK */
	uint8_t *json, *sig;
	size_t json_len, sig_len;
	struct fgw_manifest *manifest;
	const struct fgw_key *used_key;
	/* WORK_VERIFY */
	struct item *item;
	char *path;	  /* file verified: the .part download or the cached .zip */
	char *final_path; /* <sha>.zip */
	bool from_part, resumed;
	bool discarded; /* the file was removed because it can never verify */
	struct fgw_release_image images[FGW_BUNDLE_MAX_IMAGES];
	size_t n_images;
	/* WORK_PRUNE */
	char (*keep)[65];
	size_t n_keep;
	unsigned n_removed;
	uint64_t bytes_kept, bytes_protected;
};

struct fgw_release_source {
	uv_loop_t *loop;
	struct fgw_store *store;
	struct fgw_fetch *fetch;
	uv_timer_t timer;
	char *manifest_url, *sig_url, *cache_dir;
	/* the same, without userinfo, query or fragment: what logs and events show */
	char log_url[FGW_URL_LOG_MAX], log_sig_url[FGW_URL_LOG_MAX];
	unsigned poll_interval_s;
	uint64_t budget;
	struct fgw_key *keys[FGW_MANIFEST_MAX_KEYS];
	size_t n_keys;
	struct fgw_key *mcuboot_key;

	enum fgw_release_source_state state;
	struct item *queue, *queue_tail, *current;
	struct fgw_fetch_req *req;
	struct work *work;
	/* the manifest being checked */
	uint8_t *json;
	size_t json_len;
	char *etag;
	char result[160];
	bool started, poll_after_queue, poll_again;
	bool freeing, timer_closed;
	unsigned cb_depth;

	/* the manifest in force (this run): what freshness is judged on */
	int64_t clock_floor;
	char *channel;
	int64_t in_force_sequence, in_force_expires;
	enum fgw_manifest_freshness freshness;
	bool clock_warned;
	uint64_t polls[_FGW_POLL_RESULT_MAX];

	fgw_release_verified_cb_t verified_cb;
	void *verified_ud;
	fgw_release_cycle_cb_t cycle_cb;
	void *cycle_ud;
};

/* source.c */
void rsrc_enter_state(struct fgw_release_source *s, enum fgw_release_source_state st);
/* After a user callback: true when @s is being freed and the caller must return at once. */
bool rsrc_after_callback(struct fgw_release_source *s);
void rsrc_cycle_end(struct fgw_release_source *s);
void rsrc_set_result(struct fgw_release_source *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int rsrc_work_queue(struct fgw_release_source *s, struct work *w, uv_work_cb fn);
void rsrc_work_free(struct work *w);

/* poll.c */
void rsrc_poll_begin(struct fgw_release_source *s);
void rsrc_check_done(struct fgw_release_source *s, struct work *w);
void rsrc_do_check(uv_work_t *req);

/* freshness.c */
/* The manifest @m is the one in force now (accepted, or served again unchanged). */
void rsrc_in_force(struct fgw_release_source *s, const struct fgw_manifest *m);
/* Now, for expiry checks: INT64_MIN (expiry not judged) while the clock is before the floor. */
int64_t rsrc_judge_now(struct fgw_release_source *s);
int64_t rsrc_clock_floor_default(void);
/* Counts a poll's result and judges the manifest in force again. */
void rsrc_poll_end(struct fgw_release_source *s, enum fgw_poll_result result);

/* rows.c */
void rsrc_queue_from_store(struct fgw_release_source *s, bool include_verified);
bool rsrc_manifest_unchanged(struct fgw_release_source *s, const struct fgw_manifest *m);
void rsrc_accept_release(struct fgw_release_source *s, const struct fgw_manifest *m,
			 struct fgw_manifest_release *rel);

/* pipeline.c */
void rsrc_item_free(struct item *it);
struct item *rsrc_dequeue(struct fgw_release_source *s);
void rsrc_enqueue(struct fgw_release_source *s, struct item *it);
bool rsrc_queued(struct fgw_release_source *s, const char *id);
void rsrc_process_next(struct fgw_release_source *s);
void rsrc_verify_done(struct fgw_release_source *s, struct work *w);

/* verify.c: runs in the thread pool */
void rsrc_do_verify(uv_work_t *req);

/* image.c */
/*
 * Copies @len bytes of @data into a new memfd, hashing them as they are written, seals it
 * (write, grow, shrink, seal) and maps it read-only into @ret (fd, data, size, sha256).
 */
int rsrc_image_seal(const void *data, size_t len, const char *name, struct fgw_release_image *ret);
void rsrc_image_clear(struct fgw_release_image *img);

/* cache.c */
char *rsrc_cache_path(struct fgw_release_source *s, const char *sha_hex, const char *ext);
void rsrc_prune_begin(struct fgw_release_source *s);
void rsrc_prune_done(struct fgw_release_source *s, struct work *w);
