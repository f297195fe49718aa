/*
 * The release pipeline: one cycle at a time, one release at a time.
 *
 *   [start: queue cached verified releases (re-check) and pending ones]
 *   poll manifest -> fetch .sig -> check (pool) -> accept: insert/update release rows
 *   -> queue every pending release -> per release: download (or reuse the cached zip)
 *   -> verify (pool) -> verified | rejected -> ... -> prune (pool) -> idle
 *
 * What is pending lives in the releases table, so a restart, a failed download or a cut
 * connection simply leaves the row pending and the next cycle picks it up again.
 */
#define _GNU_SOURCE /* asprintf */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "release-source.h"
#include "store.h"
#include "util.h"

#define DEFAULT_POLL_INTERVAL_S 300
#define MAX_TRUSTED_KEYS 16

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
	struct fgw_bundle *bundle;
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
	unsigned poll_interval_s;
	uint64_t budget;
	struct fgw_key *keys[MAX_TRUSTED_KEYS];
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

	fgw_release_verified_cb_t verified_cb;
	void *verified_ud;
	fgw_release_cycle_cb_t cycle_cb;
	void *cycle_ud;
};

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

FGW_EXPORT const char *fgw_release_source_state_to_string(enum fgw_release_source_state s)
{
	if (s < 0 || s >= _FGW_RELEASE_SOURCE_STATE_MAX)
		return NULL;
	return state_names[s];
}

static void enter_state(struct fgw_release_source *s, enum fgw_release_source_state st)
{
	fgw_debug("release source: %s -> %s", state_names[s->state], state_names[st]);
	s->state = st;
}

static int64_t wall_ms(void)
{
	return fgw_wall_ms();
}

static void poll_begin(struct fgw_release_source *s);
static void process_next(struct fgw_release_source *s);
static void finish_free(struct fgw_release_source *s);

/* ---- items ---- */

static void item_free(struct item *it)
{
	if (it) {
		fgw_manifest_release_free(it->rel);
		free(it);
	}
}

static bool queued(struct fgw_release_source *s, const char *id)
{
	if (s->current && strcmp(s->current->rel->id, id) == 0)
		return true;
	for (struct item *it = s->queue; it; it = it->next)
		if (strcmp(it->rel->id, id) == 0)
			return true;
	return false;
}

static void enqueue(struct fgw_release_source *s, struct item *it)
{
	it->next = NULL;
	if (s->queue_tail)
		s->queue_tail->next = it;
	else
		s->queue = it;
	s->queue_tail = it;
}

static struct item *dequeue(struct fgw_release_source *s)
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

/*
 * A stored release back into a struct fgw_manifest_release, through the same validating
 * parser the manifest went through: what the store says is checked like anything else.
 */
static int release_from_row(const struct fgw_store_release *row, struct fgw_manifest_release **ret)
{
	cJSON *root = cJSON_CreateObject(), *rels, *rel, *bundle, *targets, *groups, *policy;
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;
	char *text = NULL;
	int r = -ENOMEM;

	if (!root)
		return -ENOMEM;
	if (!cJSON_AddNumberToObject(root, "schema", FGW_MANIFEST_SCHEMA) ||
	    !cJSON_AddNumberToObject(root, "sequence", (double) FGW_MAX(row->sequence, 1)) ||
	    !cJSON_AddStringToObject(root, "expires", "9999-12-31T23:59:59Z") ||
	    !(rels = cJSON_AddArrayToObject(root, "releases")) || !(rel = cJSON_CreateObject()))
		goto out;
	cJSON_AddItemToArray(rels, rel);
	if (!cJSON_AddStringToObject(rel, "id", row->id ? row->id : "") ||
	    !cJSON_AddStringToObject(rel, "version", row->version ? row->version : "") ||
	    !(bundle = cJSON_AddObjectToObject(rel, "bundle")) ||
	    !cJSON_AddStringToObject(bundle, "url", row->bundle_url ? row->bundle_url : "") ||
	    !cJSON_AddStringToObject(bundle, "sha256",
				     row->bundle_sha256 ? row->bundle_sha256 : "") ||
	    !cJSON_AddNumberToObject(bundle, "size", (double) row->bundle_size) ||
	    !(targets = cJSON_AddObjectToObject(rel, "targets")) ||
	    !cJSON_AddStringToObject(targets, "board", row->board ? row->board : ""))
		goto out;
	if (row->groups_json) {
		groups = cJSON_Parse(row->groups_json);
		if (groups)
			cJSON_AddItemToObject(targets, "groups", groups);
	}
	policy = row->policy_json ? cJSON_Parse(row->policy_json) : NULL;
	if (policy)
		cJSON_AddItemToObject(rel, "policy", policy);
	text = cJSON_PrintUnformatted(root);
	if (!text)
		goto out;
	r = fgw_manifest_parse(text, strlen(text), &m, &why);
	if (r == 0)
		r = m->n_releases == 1 ? fgw_manifest_release_dup(&m->releases[0], ret) : -EBADMSG;
out:
	fgw_manifest_free(m);
	free(text);
	cJSON_Delete(root);
	return r;
}

struct load_ctx {
	struct fgw_release_source *s;
	bool include_verified;
};

static int load_row(const struct fgw_store_release *row, void *user_data)
{
	struct load_ctx *c = user_data;
	struct fgw_release_source *s = c->s;
	bool verified = row->state && strcmp(row->state, "verified") == 0;
	bool pending = row->state && strcmp(row->state, "pending") == 0;
	struct item *it;
	int r;

	if (!(pending || (verified && c->include_verified)) || !row->id || queued(s, row->id))
		return 0;
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	r = release_from_row(row, &it->rel);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "Stored release '%s' does not read back, ignoring",
			      row->id);
		free(it);
		return 0;
	}
	it->sequence = row->sequence;
	it->restore = verified;
	enqueue(s, it);
	return 0;
}

/* Queues every pending release (and at start every verified one), oldest sequence first. */
static void queue_from_store(struct fgw_release_source *s, bool include_verified)
{
	struct load_ctx c = {s, include_verified};
	struct item *newest_first, *it;
	int r;

	/* releases_foreach is newest first; collect, then reverse onto the queue */
	struct item *saved_q = s->queue, *saved_t = s->queue_tail;
	s->queue = s->queue_tail = NULL;
	r = fgw_store_releases_foreach(s->store, load_row, &c);
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "Failed to read releases from the store: %s",
			      fgw_store_errmsg(s->store));
	newest_first = s->queue;
	s->queue = saved_q;
	s->queue_tail = saved_t;
	{
		struct item *rev = NULL;
		while (newest_first) {
			it = newest_first;
			newest_first = it->next;
			it->next = rev;
			rev = it;
		}
		while (rev) {
			it = rev;
			rev = it->next;
			enqueue(s, it);
		}
	}
}

/* ---- paths ---- */

static char *cache_path(struct fgw_release_source *s, const char *sha_hex, const char *ext)
{
	char *p;

	return asprintf(&p, "%s/%s%s", s->cache_dir, sha_hex, ext) < 0 ? NULL : p;
}

/* Removes every "<sha>.*" file: the bundle, its download and anything derived from it. */
static void remove_bundle_files(const char *dir, const char *sha_hex)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, sha_hex, 64) == 0 && de->d_name[64] == '.')
			(void) unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

/* ---- cycle end and callbacks ---- */

static bool after_callback(struct fgw_release_source *s)
{
	s->cb_depth--;
	if (s->freeing && s->cb_depth == 0) {
		finish_free(s);
		return true;
	}
	return s->freeing;
}

static void cycle_end(struct fgw_release_source *s)
{
	enter_state(s, FGW_RELEASE_SOURCE_STATE_IDLE);
	if (s->cycle_cb) {
		s->cb_depth++;
		s->cycle_cb(s->result, s->cycle_ud);
		if (after_callback(s))
			return;
	}
	if (s->poll_again) {
		s->poll_again = false;
		poll_begin(s);
	}
}

static void set_result(struct fgw_release_source *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_result(struct fgw_release_source *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->result, sizeof(s->result), fmt, ap);
	va_end(ap);
}

/* ---- thread pool ---- */

static void work_free(struct work *w)
{
	if (!w)
		return;
	free(w->json);
	free(w->sig);
	fgw_manifest_free(w->manifest);
	item_free(w->item);
	free(w->path);
	free(w->final_path);
	fgw_bundle_free(w->bundle);
	free(w->keep);
	free(w);
}

static void on_work_done(uv_work_t *req, int status);

static int work_queue(struct fgw_release_source *s, struct work *w, uv_work_cb fn)
{
	int r;

	w->s = s;
	r = uv_queue_work(s->loop, &w->req, fn, on_work_done);
	if (r < 0)
		return r;
	s->work = w;
	return 0;
}

/* ---- prune ---- */

struct group {
	char sha[65];
	uint64_t bytes;
	time_t newest;
	bool keep;
};

static bool is_hex64_prefix(const char *name)
{
	for (int i = 0; i < 64; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return name[64] == '.';
}

static void do_prune(uv_work_t *req)
{
	struct work *w = container_of(req, struct work, req);
	struct fgw_release_source *s = w->s;
	struct group *groups = NULL;
	size_t n = 0, alloc = 0;
	uint64_t total = 0;
	struct dirent *de;
	DIR *d;

	d = opendir(s->cache_dir);
	if (!d) {
		w->err = -errno;
		return;
	}
	while ((de = readdir(d))) {
		struct stat st;
		struct group *g = NULL;

		if (strlen(de->d_name) < 65 || !is_hex64_prefix(de->d_name) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		for (size_t i = 0; i < n; i++)
			if (strncmp(groups[i].sha, de->d_name, 64) == 0)
				g = &groups[i];
		if (!g) {
			if (n == alloc) {
				struct group *ng =
				    realloc(groups, (alloc ? alloc * 2 : 16) * sizeof(*ng));
				if (!ng) {
					w->err = -ENOMEM;
					break;
				}
				groups = ng;
				alloc = alloc ? alloc * 2 : 16;
			}
			g = &groups[n++];
			memset(g, 0, sizeof(*g));
			memcpy(g->sha, de->d_name, 64);
			for (size_t k = 0; k < w->n_keep; k++)
				if (strcmp(w->keep[k], g->sha) == 0)
					g->keep = true;
		}
		/* a download nobody waits for any more is garbage, whatever the budget */
		if (!g->keep && strstr(de->d_name + 64, ".part")) {
			if (unlinkat(dirfd(d), de->d_name, 0) == 0)
				w->n_removed++;
			continue;
		}
		g->bytes += (uint64_t) st.st_blocks * 512;
		if (st.st_mtime > g->newest)
			g->newest = st.st_mtime;
		total += (uint64_t) st.st_blocks * 512;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++)
		if (groups[i].keep)
			w->bytes_protected += groups[i].bytes;
	/* over budget: drop the bundles not in force, least recently written first */
	while (s->budget > 0 && total > s->budget) {
		struct group *oldest = NULL;
		for (size_t i = 0; i < n; i++)
			if (!groups[i].keep && groups[i].bytes > 0 &&
			    (!oldest || groups[i].newest < oldest->newest))
				oldest = &groups[i];
		if (!oldest)
			break;
		remove_bundle_files(s->cache_dir, oldest->sha);
		total -= oldest->bytes;
		oldest->bytes = 0;
		w->n_removed++;
	}
	w->bytes_kept = total;
	free(groups);
}

static int collect_keep(const struct fgw_store_release *row, void *user_data)
{
	struct work *w = user_data;

	if (!row->bundle_sha256 || strlen(row->bundle_sha256) != 64 || !row->state ||
	    (strcmp(row->state, "verified") != 0 && strcmp(row->state, "pending") != 0))
		return 0;
	char(*nk)[65] = realloc(w->keep, (w->n_keep + 1) * sizeof(*nk));
	if (!nk)
		return -ENOMEM;
	w->keep = nk;
	memcpy(w->keep[w->n_keep++], row->bundle_sha256, 65);
	return 0;
}

static void prune_begin(struct fgw_release_source *s)
{
	struct work *w = calloc(1, sizeof(*w));
	int r;

	enter_state(s, FGW_RELEASE_SOURCE_STATE_PRUNING);
	if (!w) {
		cycle_end(s);
		return;
	}
	w->kind = WORK_PRUNE;
	r = fgw_store_releases_foreach(s->store, collect_keep, w);
	if (r < 0) {
		/* without knowing what is in force, deleting anything would be a guess */
		fgw_log_errno(LOG_WARNING, r, "Failed to list releases, not pruning the cache");
		work_free(w);
		cycle_end(s);
		return;
	}
	r = work_queue(s, w, do_prune);
	if (r < 0) {
		work_free(w);
		cycle_end(s);
	}
}

static void prune_done(struct fgw_release_source *s, struct work *w)
{
	if (w->err < 0)
		fgw_log_errno(LOG_WARNING, w->err, "Failed to prune the cache '%s'", s->cache_dir);
	else if (w->n_removed > 0)
		fgw_info("cache: removed %u file set(s), %" PRIu64 " bytes in use", w->n_removed,
			 w->bytes_kept);
	if (s->budget > 0 && w->bytes_protected > s->budget)
		fgw_warning("cache: releases in force take %" PRIu64 " bytes, over the budget of "
			    "%" PRIu64 "; keeping them",
			    w->bytes_protected, s->budget);
	cycle_end(s);
}

/* ---- verify ---- */

static bool board_matches(const char *target, const char *zip_board)
{
	size_t n = strlen(target);

	/* NCS names boards "nrf5340dk/nrf5340/cpuapp" (or "nrf5340dk_nrf5340_cpuapp"); a target
	 * may name the whole thing or just the board part before the SoC and core. */
	if (strcmp(target, zip_board) == 0)
		return true;
	return strncmp(target, zip_board, n) == 0 && (zip_board[n] == '/' || zip_board[n] == '_');
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

static void verify_reject(struct work *w, int err, enum fgw_reject_reason reason, int image,
			  const char *detail)
{
	w->err = err;
	w->why = (struct fgw_reject){reason, detail, image};
}

static void do_verify(uv_work_t *req)
{
	struct work *w = container_of(req, struct work, req);
	struct fgw_release_source *s = w->s;
	const struct fgw_manifest_release *rel = w->item->rel;
	const struct fgw_bundle_image *app;
	struct fgw_image_version v;
	uint8_t hash[32];
	uint64_t size = 0;
	int r, fd;

	r = fgw_sha256_file(w->path, rel->bundle_size, hash, &size);
	if (r == -EFBIG) {
		verify_reject(w, r, FGW_REJECT_OVERSIZE, -1, "the file is larger than declared");
		goto refused;
	}
	if (r < 0) {
		verify_reject(w, r, FGW_REJECT_IO, -1, "cannot read the downloaded bundle");
		return;
	}
	if (size != rel->bundle_size) {
		verify_reject(w, -EBADMSG, FGW_REJECT_SIZE_MISMATCH, -1,
			      "the file is smaller than declared");
		goto refused;
	}
	if (memcmp(hash, rel->bundle_sha256, 32) != 0) {
		verify_reject(w, -EBADMSG, FGW_REJECT_SHA_MISMATCH, -1,
			      "SHA-256 of the bundle differs from the manifest");
		goto refused;
	}
	r = fgw_bundle_open(w->path, s->mcuboot_key, &w->bundle, &w->why);
	if (r < 0) {
		w->err = r;
		if (w->why.reason == FGW_REJECT_IO || r == -ENOMEM)
			return;
		goto refused;
	}
	app = fgw_bundle_find_image(w->bundle, 0);
	v = rel->image_version;
	if (!strchr(rel->version, '+'))
		v.build = app->img.version.build; /* "1.2.3" says nothing about the build */
	if (fgw_image_version_compare(&v, &app->img.version) != 0) {
		verify_reject(w, -EBADMSG, FGW_REJECT_VERSION_MISMATCH, 0,
			      "the app image version differs from the release version");
		goto refused;
	}
	if (app->board && !board_matches(rel->board, app->board)) {
		verify_reject(w, -EBADMSG, FGW_REJECT_BOARD_MISMATCH, 0,
			      "the app image is built for another board than the release targets");
		goto refused;
	}
	if (w->from_part) {
		/* make the bytes durable before the name says "verified" */
		fd = open(w->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0) {
			r = -errno;
			if (fd >= 0)
				close(fd);
			verify_reject(w, r, FGW_REJECT_IO, -1, "cannot sync the bundle to disk");
			return;
		}
		close(fd);
		if (rename(w->path, w->final_path) < 0 || fsync_dir(s->cache_dir) < 0) {
			verify_reject(w, -errno, FGW_REJECT_IO, -1,
				      "cannot move the bundle into place");
			return;
		}
	}
	w->err = 0;
	return;
refused:
	fgw_bundle_free(w->bundle);
	w->bundle = NULL;
	/* a download that can never verify goes; a cached zip may be another release's */
	if (w->from_part) {
		(void) unlink(w->path);
		w->discarded = true;
	}
}

static void verify_begin(struct fgw_release_source *s, struct item *it, char *path, bool from_part,
			 bool resumed)
{
	struct work *w = calloc(1, sizeof(*w));
	int r;

	enter_state(s, FGW_RELEASE_SOURCE_STATE_VERIFYING);
	if (!w) {
		free(path);
		item_free(it);
		process_next(s);
		return;
	}
	w->kind = WORK_VERIFY;
	w->item = it;
	w->path = path;
	w->from_part = from_part;
	w->resumed = resumed;
	w->final_path = cache_path(s, it->rel->bundle_sha256_hex, ".zip");
	if (!w->final_path || (r = work_queue(s, w, do_verify)) < 0) {
		fgw_error("Failed to start verifying release '%s'", it->rel->id);
		work_free(w);
		process_next(s);
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
	r = fgw_store_release_set_state(s->store, it->rel->id, "rejected", reason, NULL, wall_ms());
	if (r < 0)
		fgw_log_errno(LOG_ERR, r, "Failed to record the rejection of '%s': %s", it->rel->id,
			      fgw_store_errmsg(s->store));
}

static void download_begin(struct fgw_release_source *s, struct item *it);

static void verify_done(struct fgw_release_source *s, struct work *w)
{
	struct item *it = TAKE_PTR(w->item);
	const struct fgw_reject *why = &w->why;
	int r;

	if (w->err == 0) {
		char sigs[64] = "not-checked";
		struct fgw_release_info info = {
		    .release = it->rel,
		    .sequence = it->sequence,
		    .bundle_path = w->final_path,
		    .bundle = w->bundle,
		    .restored = it->restore,
		};
		if (s->mcuboot_key)
			snprintf(sigs, sizeof(sigs), "valid (%s)", fgw_key_id(s->mcuboot_key));
		if (!it->restore) {
			r = fgw_store_release_set_state(s->store, it->rel->id, "verified", NULL,
							w->final_path, wall_ms());
			if (r < 0) {
				fgw_log_errno(LOG_ERR, r,
					      "Failed to record release '%s' as verified: %s",
					      it->rel->id, fgw_store_errmsg(s->store));
				item_free(it);
				process_next(s);
				return;
			}
			r = fgw_store_releases_supersede(s->store, it->rel->id, it->rel->board,
							 wall_ms());
			if (r < 0)
				fgw_log_errno(LOG_WARNING, r,
					      "Failed to mark older releases superseded");
		}
		fgw_notice("event: release-%s, release: %s, version: %s, sequence: %" PRId64
			   ", images: %zu, signatures: %s, bundle: %s",
			   it->restore ? "restored" : "verified", it->rel->id, it->rel->version,
			   it->sequence, w->bundle->n_images, sigs, it->rel->bundle_sha256_hex);
		if (s->verified_cb) {
			s->cb_depth++;
			s->verified_cb(&info, s->verified_ud);
			if (after_callback(s)) {
				item_free(it);
				return;
			}
		}
		item_free(it);
		process_next(s);
		return;
	}

	if (why->reason == FGW_REJECT_IO || why->reason == FGW_REJECT_NONE) {
		fgw_log_errno(LOG_WARNING, w->err,
			      "event: release-verify-failed, release: %s, detail: %s; will retry",
			      it->rel->id, why->detail ? why->detail : "");
		item_free(it);
		process_next(s);
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
							   wall_ms());
		}
		download_begin(s, it);
		return;
	}
	release_reject(s, it, why);
	item_free(it);
	process_next(s);
}

/* ---- download ---- */

static void on_download(int err, const struct fgw_fetch_result *res, void *user_data)
{
	struct fgw_release_source *s = user_data;
	struct item *it = TAKE_PTR(s->current);
	char *part;

	s->req = NULL;
	if (err == -ECANCELED || s->freeing) {
		item_free(it);
		return;
	}
	part = cache_path(s, it->rel->bundle_sha256_hex, ".part");
	if (!part) {
		item_free(it);
		process_next(s);
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
		item_free(it);
		process_next(s);
		return;
	}
	/* transient: the partial file stays for the next attempt to resume */
	fgw_warning(
	    "event: release-download-failed, release: %s, url: %s, status: %ld, error: %s%s%s;"
	    " will retry",
	    it->rel->id, it->rel->bundle_url, res ? res->status : 0L, strerror(-err),
	    res && res->error && *res->error ? ", " : "", res ? res->error : "");
	free(part);
	item_free(it);
	process_next(s);
}

static void download_begin(struct fgw_release_source *s, struct item *it)
{
	char *part = cache_path(s, it->rel->bundle_sha256_hex, ".part");
	int r;

	enter_state(s, FGW_RELEASE_SOURCE_STATE_DOWNLOADING);
	if (!part) {
		item_free(it);
		process_next(s);
		return;
	}
	s->current = it;
	r = fgw_fetch_download(s->fetch, it->rel->bundle_url, part, it->rel->bundle_size,
			       on_download, s, NULL, &s->req);
	free(part);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "Failed to start downloading release '%s' from '%s'",
			      it->rel->id, it->rel->bundle_url);
		s->current = NULL;
		item_free(it);
		process_next(s);
	}
}

static void process_next(struct fgw_release_source *s)
{
	struct item *it;
	char *zip;

	if (s->freeing)
		return;
	it = dequeue(s);
	if (!it) {
		if (s->poll_after_queue) {
			s->poll_after_queue = false;
			poll_begin(s);
		} else {
			prune_begin(s);
		}
		return;
	}
	zip = cache_path(s, it->rel->bundle_sha256_hex, ".zip");
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
						   wall_ms());
	}
	download_begin(s, it);
}

/* ---- manifest ---- */

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
			    s->manifest_url, sequence, reason, why->detail ? why->detail : "");
	else
		fgw_warning("event: manifest-rejected, url: %s, reason: %s, detail: %s",
			    s->manifest_url, reason, why->detail ? why->detail : "");
	set_result(s, "rejected: %s", reason);
	(void) fgw_store_manifest_polled(s->store, s->result, wall_ms());
}

struct same_ctx {
	const struct fgw_manifest_release *rel;
	bool same;
};

static int same_row(const struct fgw_store_release *row, void *user_data)
{
	struct same_ctx *c = user_data;

	c->same = row->bundle_sha256 &&
		  strcmp(row->bundle_sha256, c->rel->bundle_sha256_hex) == 0 &&
		  (uint64_t) row->bundle_size == c->rel->bundle_size;
	return 0;
}

struct row_state {
	char state[16];
	char sha[65];
	int64_t size;
};

static int read_row_state(const struct fgw_store_release *row, void *user_data)
{
	struct row_state *rs = user_data;

	snprintf(rs->state, sizeof(rs->state), "%s", row->state ? row->state : "");
	snprintf(rs->sha, sizeof(rs->sha), "%s", row->bundle_sha256 ? row->bundle_sha256 : "");
	rs->size = row->bundle_size;
	return 0;
}

/* Same sequence as the one accepted: fine only if it lists exactly the known releases. */
static bool manifest_unchanged(struct fgw_release_source *s, const struct fgw_manifest *m)
{
	for (size_t i = 0; i < m->n_releases; i++) {
		struct same_ctx c = {&m->releases[i], false};
		if (fgw_store_release_get(s->store, m->releases[i].id, same_row, &c) < 0 || !c.same)
			return false;
	}
	return true;
}

static void accept_release(struct fgw_release_source *s, const struct fgw_manifest *m,
			   struct fgw_manifest_release *rel)
{
	struct row_state rs = {0};
	char *url = NULL;
	int r;

	r = fgw_fetch_resolve_url(s->manifest_url, rel->bundle_url, &url);
	if (r < 0) {
		fgw_warning("event: release-rejected, release: %s, reason: %s, detail: bundle.url "
			    "'%s' does not resolve to an http, https or file URL",
			    rel->id, fgw_reject_reason_to_string(FGW_REJECT_MALFORMED_MANIFEST),
			    rel->bundle_url);
		return;
	}
	free(rel->bundle_url);
	rel->bundle_url = url;

	struct fgw_store_release row = {
	    .id = rel->id,
	    .sequence = m->sequence,
	    .version = rel->version,
	    .board = rel->board,
	    .groups_json = rel->groups_json,
	    .policy_json = rel->policy_json,
	    .bundle_url = rel->bundle_url,
	    .bundle_sha256 = rel->bundle_sha256_hex,
	    .bundle_size = (int64_t) rel->bundle_size,
	};
	r = fgw_store_release_get(s->store, rel->id, read_row_state, &rs);
	if (r == -ENOENT) {
		r = fgw_store_release_insert(s->store, &row, wall_ms());
		if (r < 0)
			fgw_log_errno(LOG_ERR, r, "Failed to record release '%s': %s", rel->id,
				      fgw_store_errmsg(s->store));
		else
			fgw_notice("event: release-new, release: %s, version: %s, size: %" PRIu64
				   ", bundle: %s",
				   rel->id, rel->version, rel->bundle_size, rel->bundle_sha256_hex);
		return;
	}
	if (r < 0) {
		fgw_log_errno(LOG_ERR, r, "Failed to read release '%s': %s", rel->id,
			      fgw_store_errmsg(s->store));
		return;
	}
	if (strcmp(rs.sha, rel->bundle_sha256_hex) != 0 || (uint64_t) rs.size != rel->bundle_size) {
		/* an id names one bundle forever; the release known under it stays as it is */
		fgw_warning("event: release-rejected, release: %s, reason: %s, detail: the id is "
			    "known with bundle %.16s..., the manifest now says %.16s...",
			    rel->id, fgw_reject_reason_to_string(FGW_REJECT_ID_REUSED), rs.sha,
			    rel->bundle_sha256_hex);
		(void) fgw_store_event_add(s->store, NULL, 0, "release",
					   "manifest reuses a release id for another bundle",
					   wall_ms());
		return;
	}
	r = fgw_store_release_update(s->store, &row, wall_ms());
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "Failed to update release '%s'", rel->id);
	/* listed again by a newer manifest: a rejected one gets another chance, a superseded
	 * one comes back (re-checked from the cache) */
	if (strcmp(rs.state, "rejected") == 0 || strcmp(rs.state, "superseded") == 0)
		(void) fgw_store_release_set_state(s->store, rel->id, "pending",
						   "listed again by a newer manifest", NULL,
						   wall_ms());
}

static void check_done(struct fgw_release_source *s, struct work *w)
{
	struct stored_manifest sm = {0};
	struct fgw_manifest *m = w->manifest;
	struct fgw_reject why;
	int r;

	if (w->err < 0) {
		manifest_rejected(s, &w->why, 0);
		goto queue;
	}
	r = fgw_store_manifest_state_get(s->store, read_manifest_row, &sm);
	if (r < 0) {
		fgw_log_errno(LOG_ERR, r, "Failed to read the manifest state: %s",
			      fgw_store_errmsg(s->store));
		set_result(s, "error: store");
		goto queue;
	}
	if (m->sequence == sm.sequence && manifest_unchanged(s, m)) {
		/* the same manifest again (no ETag support, or a restart): nothing to do */
		set_result(s, "unchanged");
		(void) fgw_store_manifest_accept(s->store, m->sequence, s->etag, s->result,
						 wall_ms());
		goto queue;
	}
	r = fgw_manifest_check(m, sm.sequence, (int64_t) time(NULL), &why);
	if (r < 0) {
		manifest_rejected(s, &why, m->sequence);
		goto queue;
	}
	fgw_notice("event: manifest-accepted, url: %s, sequence: %" PRId64
		   ", releases: %zu, key: %s",
		   s->manifest_url, m->sequence, m->n_releases, fgw_key_id(w->used_key));
	for (size_t i = 0; i < m->n_releases; i++)
		accept_release(s, m, &m->releases[i]);
	set_result(s, "accepted");
	r = fgw_store_manifest_accept(s->store, m->sequence, s->etag, s->result, wall_ms());
	if (r < 0)
		fgw_log_errno(LOG_ERR, r, "Failed to record manifest sequence %" PRId64 ": %s",
			      m->sequence, fgw_store_errmsg(s->store));
queue:
	free(TAKE_PTR(s->etag));
	queue_from_store(s, false);
	process_next(s);
}

static void do_check(uv_work_t *req)
{
	struct work *w = container_of(req, struct work, req);
	struct fgw_release_source *s = w->s;

	/* the signature first: nothing unauthenticated reaches the parser */
	w->err = fgw_manifest_verify_signature(w->json, w->json_len, w->sig, w->sig_len, s->keys,
					       s->n_keys, &w->used_key, &w->why);
	if (w->err == 0)
		w->err = fgw_manifest_parse(w->json, w->json_len, &w->manifest, &w->why);
}

static void poll_failed(struct fgw_release_source *s, const char *what, int err,
			const struct fgw_fetch_result *res)
{
	fgw_warning("Failed to fetch %s '%s': %s%s%s (HTTP %ld), will retry", what,
		    what[0] == 'm' ? s->manifest_url : s->sig_url, strerror(-err),
		    res && res->error && *res->error ? ": " : "",
		    res && res->error ? res->error : "", res ? res->status : 0L);
	set_result(s, "error: %s: %s", what, strerror(-err));
	(void) fgw_store_manifest_polled(s->store, s->result, wall_ms());
	free(TAKE_PTR(s->json));
	free(TAKE_PTR(s->etag));
	/* pending releases from an earlier manifest still get their retry */
	queue_from_store(s, false);
	process_next(s);
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
	enter_state(s, FGW_RELEASE_SOURCE_STATE_CHECKING);
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
	r = work_queue(s, w, do_check);
	if (r < 0) {
		work_free(w);
		poll_failed(s, "signature", r, NULL);
	}
}

static char *sig_url_for(const char *url)
{
	size_t n = strcspn(url, "?#");
	char *out;

	return asprintf(&out, "%.*s.sig%s", (int) n, url, url + n) < 0 ? NULL : out;
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
		fgw_debug("manifest '%s' not modified", s->manifest_url);
		set_result(s, "not-modified");
		(void) fgw_store_manifest_polled(s->store, s->result, wall_ms());
		queue_from_store(s, false);
		process_next(s);
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
	enter_state(s, FGW_RELEASE_SOURCE_STATE_FETCHING_SIG);
	r = fgw_fetch_get(s->fetch, s->sig_url, NULL, FGW_MANIFEST_SIG_MAX_BYTES, on_sig, s, NULL,
			  &s->req);
	if (r < 0)
		poll_failed(s, "signature", r, NULL);
}

static void poll_begin(struct fgw_release_source *s)
{
	struct stored_manifest sm = {0};
	int r;

	enter_state(s, FGW_RELEASE_SOURCE_STATE_POLLING);
	/* an ETag is only kept for a manifest that was accepted (see check_done) */
	(void) fgw_store_manifest_state_get(s->store, read_manifest_row, &sm);
	r = fgw_fetch_get(s->fetch, s->manifest_url, sm.has_etag && sm.etag[0] ? sm.etag : NULL,
			  FGW_MANIFEST_MAX_BYTES, on_manifest, s, NULL, &s->req);
	if (r < 0)
		poll_failed(s, "manifest", r, NULL);
}

static void on_work_done(uv_work_t *req, int status)
{
	struct work *w = container_of(req, struct work, req);
	struct fgw_release_source *s = w->s;

	s->work = NULL;
	if (s->freeing || status == UV_ECANCELED) {
		work_free(w);
		if (s->freeing && s->cb_depth == 0)
			finish_free(s);
		return;
	}
	switch (w->kind) {
	case WORK_CHECK:
		w->manifest = w->err == 0 ? w->manifest : NULL;
		check_done(s, w);
		break;
	case WORK_VERIFY:
		verify_done(s, w);
		break;
	case WORK_PRUNE:
		prune_done(s, w);
		break;
	}
	/* check_done/verify_done/prune_done may have freed s (callbacks); w is ours */
	work_free(w);
}

static void on_timer(uv_timer_t *t)
{
	struct fgw_release_source *s = t->data;

	if (s->state == FGW_RELEASE_SOURCE_STATE_IDLE)
		poll_begin(s);
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
	    o->n_trusted_keys == 0 || o->n_trusted_keys > MAX_TRUSTED_KEYS)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->store = store;
	s->poll_interval_s = o->poll_interval_s ? o->poll_interval_s : DEFAULT_POLL_INTERVAL_S;
	s->budget = o->cache_budget_bytes;
	s->manifest_url = strdup(o->manifest_url);
	s->sig_url = sig_url_for(o->manifest_url);
	s->cache_dir = strdup(o->cache_dir);
	if (!s->manifest_url || !s->sig_url || !s->cache_dir) {
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
	enter_state(s, FGW_RELEASE_SOURCE_STATE_RESTORING);
	queue_from_store(s, true);
	s->poll_after_queue = true;
	process_next(s);
	return 0;
}

FGW_EXPORT void fgw_release_source_poll_now(struct fgw_release_source *s)
{
	if (!s->started || s->freeing)
		return;
	if (s->state == FGW_RELEASE_SOURCE_STATE_IDLE)
		poll_begin(s);
	else
		s->poll_again = true;
}

FGW_EXPORT enum fgw_release_source_state fgw_release_source_get_state(struct fgw_release_source *s)
{
	return s->state;
}

FGW_EXPORT const struct fgw_key *fgw_release_source_mcuboot_key(struct fgw_release_source *s)
{
	return s->mcuboot_key;
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
		item_free(dequeue(s));
	item_free(s->current);
	for (size_t i = 0; i < s->n_keys; i++)
		fgw_key_free(s->keys[i]);
	fgw_key_free(s->mcuboot_key);
	free(s->json);
	free(s->etag);
	free(s->manifest_url);
	free(s->sig_url);
	free(s->cache_dir);
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
