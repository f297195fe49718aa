/*
 * Read-only queries for the REST API. Each is one prepared statement stepped to the end, so
 * it holds a read snapshot only for as long as it takes to read a page, never a write lock.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store-private.h"
#include "util.h"

static const char *const device_states[] = {
    "queued",	 "connecting", "probing",    "uploading",  "marking", "resetting",
    "rebooting", "verifying",  "confirming", "done",	   "skipped", "reverted",
    "failed",	 "superseded", "idle",	     "unenrolled", NULL,
};

FGW_EXPORT const char *const *fgw_store_device_states(void)
{
	return device_states;
}

static int bind_text(struct fgw_store *s, sqlite3_stmt *st, int idx, const char *v)
{
	int rc = v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, idx);

	return rc == SQLITE_OK ? 0 : fgw_store__fail(s, rc);
}

static int bind_int(struct fgw_store *s, sqlite3_stmt *st, int idx, int64_t v)
{
	int rc = sqlite3_bind_int64(st, idx, v);

	return rc == SQLITE_OK ? 0 : fgw_store__fail(s, rc);
}

/*
 * Steps @st to the end, handing each row to @row (which calls the user's callback). Returns
 * the number of rows, the callback's error, or the SQLite error as -errno. Finalizes @st.
 */
static int step_all(struct fgw_store *s, sqlite3_stmt *st,
		    int (*row)(sqlite3_stmt *st, void *cb, void *user_data), void *cb,
		    void *user_data)
{
	int rc, r, n = 0;

	for (;;) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			r = fgw_store__fail(s, rc);
			fgw_store__finish(s, st);
			return r < 0 ? r : -EIO;
		}
		r = row(st, cb, user_data);
		if (r < 0) {
			fgw_store__finish(s, st);
			return r;
		}
		n++;
	}
	fgw_store__finish(s, st);
	return n;
}

/* ---- devices ---- */

/* A device's state: its job's, else "idle" when enrolled and "unenrolled" when not. */
#define DEVICE_STATE_SQL "COALESCE(j.state, CASE WHEN d.enrolled THEN 'idle' ELSE 'unenrolled' END)"

/* The columns every device query selects, in the order read_device() reads them. */
#define DEVICE_COLUMNS                                                                             \
	"d.address, d.transport, d.name, d.rssi, d.last_seen, d.board, d.grp, "                    \
	"d.bootloader_mode, d.created_at, " DEVICE_STATE_SQL ", "                                  \
	"j.id, j.release_id, j.state, j.image, j.offset, j.attempts, j.next_attempt_at, "          \
	"j.reason, j.canary, j.images_mask, j.app_result, j.net_result, j.created_at, "            \
	"j.updated_at, j.started_at, j.finished_at, d.enrolled, d.label, d.enrolled_board "

/* The newest verified release: what "current" means everywhere. */
#define CURRENT_RELEASE_SQL                                                                        \
	"(SELECT id FROM releases WHERE state = 'verified' "                                       \
	"ORDER BY sequence DESC, created_at DESC, id LIMIT 1)"

static void read_device(sqlite3_stmt *st, struct fgw_store_device *d)
{
	struct fgw_store_job *j = &d->job;

	*d = (struct fgw_store_device){
	    .address = fgw_store__col_str(st, 0),
	    .transport = fgw_store__col_str(st, 1),
	    .name = fgw_store__col_str(st, 2),
	    .rssi = fgw_store__col_int(st, 3),
	    .last_seen = fgw_store__col_int(st, 4),
	    .board = fgw_store__col_str(st, 5),
	    .group = fgw_store__col_str(st, 6),
	    .bootloader_mode = fgw_store__col_int(st, 7),
	    .created_at = fgw_store__col_int(st, 8),
	    .state = fgw_store__col_str(st, 9),
	};
	j->id = fgw_store__col_int(st, 10);
	j->release_id = fgw_store__col_str(st, 11);
	j->state = fgw_store__col_str(st, 12);
	j->image = fgw_store__col_int(st, 13);
	j->offset = fgw_store__col_int(st, 14);
	j->attempts = fgw_store__col_int(st, 15);
	j->next_attempt_at = fgw_store__col_int(st, 16);
	j->reason = fgw_store__col_str(st, 17);
	j->canary = fgw_store__col_int(st, 18);
	j->images_mask = fgw_store__col_int(st, 19);
	j->app_result = fgw_store__col_str(st, 20);
	j->net_result = fgw_store__col_str(st, 21);
	j->created_at = fgw_store__col_int(st, 22);
	j->updated_at = fgw_store__col_int(st, 23);
	j->started_at = fgw_store__col_int(st, 24);
	j->finished_at = fgw_store__col_int(st, 25);
	d->enrolled = fgw_store__col_int(st, 26) == 1;
	d->label = fgw_store__col_str(st, 27);
	d->enrolled_board = fgw_store__col_str(st, 28);
	if (!d->state)
		d->state = "idle";
}

static int device_row(sqlite3_stmt *st, void *cb, void *user_data)
{
	struct fgw_store_device d;

	read_device(st, &d);
	return ((fgw_store_device_cb_t) cb)(&d, user_data);
}

/* Matches the states filter: a ",a,b," list searched for ",state,". */
static int states_list(const char *const *states, size_t n, char **ret)
{
	size_t len = 2;
	char *list, *p;

	for (size_t i = 0; i < n; i++) {
		if (!states[i] || !*states[i] || strchr(states[i], ','))
			return -EINVAL;
		len += strlen(states[i]) + 1;
	}
	list = malloc(len);
	if (!list)
		return -ENOMEM;
	p = list;
	*p++ = ',';
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s,", states[i]);
	*p = '\0';
	*ret = list;
	return 0;
}

FGW_EXPORT int fgw_store_devices_query(struct fgw_store *s, const struct fgw_store_device_filter *f,
				       fgw_store_device_cb_t cb, void *user_data)
{
	static const char sql[] =
	    "SELECT " DEVICE_COLUMNS "FROM devices d "
	    "LEFT JOIN jobs j ON j.address = d.address "
	    "AND j.release_id = COALESCE(?1, " CURRENT_RELEASE_SQL ") "
	    "WHERE d.address > ?2 "
	    "AND (?1 IS NULL OR j.id IS NOT NULL) "
	    "AND (?3 IS NULL OR d.grp = ?3) "
	    "AND (?4 IS NULL OR instr(?4, ',' || " DEVICE_STATE_SQL " || ',') > 0) "
	    "ORDER BY d.address LIMIT ?5";
	_cleanup_free_ char *states = NULL;
	sqlite3_stmt *st;
	int r;

	if (f->n_states > 0) {
		r = states_list(f->states, f->n_states, &states);
		if (r < 0)
			return r;
	}
	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if ((r = bind_text(s, st, 1, f->release_id)) < 0 ||
	    (r = bind_text(s, st, 2, f->after ? f->after : "")) < 0 ||
	    (r = bind_text(s, st, 3, f->group)) < 0 || (r = bind_text(s, st, 4, states)) < 0 ||
	    (r = bind_int(s, st, 5, f->limit > 0 ? (int64_t) f->limit : -1)) < 0) {
		fgw_store__finish(s, st);
		return r;
	}
	return step_all(s, st, device_row, (void *) cb, user_data);
}

FGW_EXPORT int fgw_store_device_find(struct fgw_store *s, const char *address,
				     const char *release_id, fgw_store_device_cb_t cb,
				     void *user_data)
{
	static const char sql[] = "SELECT " DEVICE_COLUMNS "FROM devices d "
				  "LEFT JOIN jobs j ON j.address = d.address "
				  "AND j.release_id = COALESCE(?2, " CURRENT_RELEASE_SQL ") "
				  "WHERE d.address = ?1";
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if ((r = bind_text(s, st, 1, address)) < 0 || (r = bind_text(s, st, 2, release_id)) < 0) {
		fgw_store__finish(s, st);
		return r;
	}
	r = step_all(s, st, device_row, (void *) cb, user_data);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

FGW_EXPORT int fgw_store_failures_foreach(struct fgw_store *s, const char *release_id,
					  unsigned limit, fgw_store_device_cb_t cb, void *user_data)
{
	static const char sql[] = "SELECT " DEVICE_COLUMNS "FROM jobs j "
				  "JOIN devices d ON d.address = j.address "
				  "WHERE j.release_id = ?1 AND j.state IN ('failed', 'reverted') "
				  "ORDER BY COALESCE(j.finished_at, j.updated_at) DESC, j.id DESC "
				  "LIMIT ?2";
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if ((r = bind_text(s, st, 1, release_id)) < 0 || (r = bind_int(s, st, 2, limit)) < 0) {
		fgw_store__finish(s, st);
		return r;
	}
	return step_all(s, st, device_row, (void *) cb, user_data);
}

/* ---- images and events ---- */

static int image_row(sqlite3_stmt *st, void *cb, void *user_data)
{
	struct fgw_store_device_image img = {
	    .image = fgw_store__col_int(st, 0),
	    .slot = fgw_store__col_int(st, 1),
	    .version = fgw_store__col_str(st, 2),
	    .hash = fgw_store__col_str(st, 3),
	    .flags = fgw_store__col_int(st, 4),
	    .read_at = fgw_store__col_int(st, 5),
	};

	return ((fgw_store_image_cb_t) cb)(&img, user_data);
}

FGW_EXPORT int fgw_store_device_images_foreach(struct fgw_store *s, const char *address,
					       fgw_store_image_cb_t cb, void *user_data)
{
	static const char sql[] = "SELECT image, slot, version, hash, flags, read_at "
				  "FROM device_images WHERE address = ?1 ORDER BY image, slot";
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if ((r = bind_text(s, st, 1, address)) < 0) {
		fgw_store__finish(s, st);
		return r;
	}
	return step_all(s, st, image_row, (void *) cb, user_data);
}

static int event_row(sqlite3_stmt *st, void *cb, void *user_data)
{
	struct fgw_store_event e = {
	    .id = fgw_store__col_int(st, 0),
	    .at = fgw_store__col_int(st, 1),
	    .address = fgw_store__col_str(st, 2),
	    .job_id = fgw_store__col_int(st, 3),
	    .kind = fgw_store__col_str(st, 4),
	    .from_state = fgw_store__col_str(st, 5),
	    .to_state = fgw_store__col_str(st, 6),
	    .detail = fgw_store__col_str(st, 7),
	};

	return ((fgw_store_event_cb_t) cb)(&e, user_data);
}

FGW_EXPORT int fgw_store_device_events_foreach(struct fgw_store *s, const char *address,
					       unsigned limit, fgw_store_event_cb_t cb,
					       void *user_data)
{
	/* events_address (address, id) serves this without a sort. */
	static const char sql[] = "SELECT id, at, address, job_id, kind, from_state, to_state, "
				  "detail FROM events WHERE address = ?1 ORDER BY id DESC LIMIT ?2";
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if ((r = bind_text(s, st, 1, address)) < 0 || (r = bind_int(s, st, 2, limit)) < 0) {
		fgw_store__finish(s, st);
		return r;
	}
	return step_all(s, st, event_row, (void *) cb, user_data);
}

FGW_EXPORT int fgw_store_events_recent(struct fgw_store *s, unsigned limit, fgw_store_event_cb_t cb,
				       void *user_data)
{
	/* The rowid order: no sort, no index needed. */
	static const char sql[] = "SELECT id, at, address, job_id, kind, from_state, to_state, "
				  "detail FROM events ORDER BY id DESC LIMIT ?1";
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if ((r = bind_int(s, st, 1, limit)) < 0) {
		fgw_store__finish(s, st);
		return r;
	}
	return step_all(s, st, event_row, (void *) cb, user_data);
}

/* ---- releases ---- */

void fgw_store__read_release(sqlite3_stmt *st, struct fgw_store_release *ret)
{
	*ret = (struct fgw_store_release){
	    .id = fgw_store__col_str(st, 0),
	    .sequence = fgw_store__col_int(st, 1),
	    .version = fgw_store__col_str(st, 2),
	    .board = fgw_store__col_str(st, 3),
	    .groups_json = fgw_store__col_str(st, 4),
	    .policy_json = fgw_store__col_str(st, 5),
	    .bundle_url = fgw_store__col_str(st, 6),
	    .bundle_sha256 = fgw_store__col_str(st, 7),
	    .bundle_size = fgw_store__col_int(st, 8),
	    .state = fgw_store__col_str(st, 9),
	    .reason = fgw_store__col_str(st, 10),
	    .created_at = fgw_store__col_int(st, 11),
	    .verified_at = fgw_store__col_int(st, 12),
	};
}

static int release_row(sqlite3_stmt *st, void *cb, void *user_data)
{
	struct fgw_store_release rel;

	fgw_store__read_release(st, &rel);
	return ((fgw_store_release_cb_t) cb)(&rel, user_data);
}

FGW_EXPORT int fgw_store_current_release(struct fgw_store *s, fgw_store_release_cb_t cb,
					 void *user_data)
{
	static const char sql[] = "SELECT " RELEASE_COLUMNS "FROM releases "
				  "WHERE id = " CURRENT_RELEASE_SQL;
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	r = step_all(s, st, release_row, (void *) cb, user_data);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

FGW_EXPORT int fgw_store_releases_foreach(struct fgw_store *s, fgw_store_release_cb_t cb,
					  void *user_data)
{
	static const char sql[] =
	    "SELECT " RELEASE_COLUMNS "FROM releases ORDER BY sequence DESC, created_at DESC, id";
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	return step_all(s, st, release_row, (void *) cb, user_data);
}

/* ---- counts ---- */

static int count_row(sqlite3_stmt *st, void *cb, void *user_data)
{
	const char *key = fgw_store__col_str(st, 0);

	return ((fgw_store_count_cb_t) cb)(key ? key : "", fgw_store__col_int(st, 1),
					   fgw_store__col_int(st, 2), user_data);
}

static int count_query(struct fgw_store *s, const char *sql, const char *release_id,
		       fgw_store_count_cb_t cb, void *user_data)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if (sqlite3_bind_parameter_count(st) > 0 && (r = bind_text(s, st, 1, release_id)) < 0) {
		fgw_store__finish(s, st);
		return r;
	}
	return step_all(s, st, count_row, (void *) cb, user_data);
}

FGW_EXPORT int fgw_store_state_counts(struct fgw_store *s, const char *release_id,
				      fgw_store_count_cb_t cb, void *user_data)
{
	static const char sql[] = "SELECT " DEVICE_STATE_SQL ", COALESCE(j.canary, 0), "
				  "count(*) FROM devices d LEFT JOIN jobs j "
				  "ON j.address = d.address AND j.release_id = ?1 "
				  "GROUP BY 1, 2 ORDER BY 1, 2";

	return count_query(s, sql, release_id, cb, user_data);
}

FGW_EXPORT int fgw_store_failure_reasons(struct fgw_store *s, const char *release_id,
					 fgw_store_count_cb_t cb, void *user_data)
{
	static const char sql[] = "SELECT COALESCE(reason, ''), 0, count(*) FROM jobs "
				  "WHERE release_id = ?1 AND state IN ('failed', 'reverted') "
				  "GROUP BY 1 ORDER BY 3 DESC, 1";

	return count_query(s, sql, release_id, cb, user_data);
}

FGW_EXPORT int fgw_store_failure_stages(struct fgw_store *s, const char *release_id,
					fgw_store_count_cb_t cb, void *user_data)
{
	/* Only states the fleet can fail from pass as a stage: the label set stays fixed. */
	static const char sql[] =
	    "SELECT j.state || '/' || COALESCE((SELECT CASE WHEN e.from_state IN ('queued', "
	    "'connecting', 'probing', 'uploading', 'marking', 'resetting', 'rebooting', "
	    "'verifying', 'confirming') THEN e.from_state ELSE 'other' END FROM events e "
	    "WHERE e.job_id = j.id AND e.kind = 'job-state' AND e.to_state = j.state "
	    "ORDER BY e.id DESC LIMIT 1), 'unknown'), 0, count(*) FROM jobs j "
	    "WHERE j.release_id = ?1 AND j.state IN ('failed', 'reverted') GROUP BY 1 ORDER BY 1";

	return count_query(s, sql, release_id, cb, user_data);
}

FGW_EXPORT int fgw_store_release_counts(struct fgw_store *s, fgw_store_count_cb_t cb,
					void *user_data)
{
	static const char sql[] = "SELECT state, 0, count(*) FROM releases GROUP BY 1 ORDER BY 1";

	return count_query(s, sql, NULL, cb, user_data);
}

/* ---- single rows ---- */

typedef int (*rollout_cb_t)(const struct fgw_store_rollout *r, void *user_data);
typedef int (*manifest_cb_t)(const struct fgw_store_manifest_state *m, void *user_data);

static int rollout_row(sqlite3_stmt *st, void *cb, void *user_data)
{
	struct fgw_store_rollout ro = {
	    .release_id = fgw_store__col_str(st, 0),
	    .halted = sqlite3_column_int(st, 1) != 0,
	    .halted_by = fgw_store__col_str(st, 2),
	    .halted_reason = fgw_store__col_str(st, 3),
	    .updated_at = fgw_store__col_int(st, 4),
	};

	return ((rollout_cb_t) cb)(&ro, user_data);
}

FGW_EXPORT int fgw_store_rollout_get(struct fgw_store *s, const char *release_id, rollout_cb_t cb,
				     void *user_data)
{
	static const char sql[] = "SELECT release_id, halted, halted_by, halted_reason, "
				  "updated_at FROM rollout WHERE release_id = ?1";
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if ((r = bind_text(s, st, 1, release_id)) < 0) {
		fgw_store__finish(s, st);
		return r;
	}
	r = step_all(s, st, rollout_row, (void *) cb, user_data);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

static int manifest_row(sqlite3_stmt *st, void *cb, void *user_data)
{
	struct fgw_store_manifest_state m = {
	    .sequence = fgw_store__col_int(st, 0),
	    .etag = fgw_store__col_str(st, 1),
	    .last_poll_at = fgw_store__col_int(st, 2),
	    .last_result = fgw_store__col_str(st, 3),
	};

	return ((manifest_cb_t) cb)(&m, user_data);
}

FGW_EXPORT int fgw_store_manifest_state_get(struct fgw_store *s, manifest_cb_t cb, void *user_data)
{
	static const char sql[] = "SELECT sequence, etag, last_poll_at, last_result "
				  "FROM manifest_state WHERE id = 1";
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	r = step_all(s, st, manifest_row, (void *) cb, user_data);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}
