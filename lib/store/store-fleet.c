#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store-private.h"
#include "util.h"

/*
 * The statements a job runs, here so that fgw_store__fleet_warm() can compile them before the
 * first job needs them.
 */
static const char SQL_DEVICE_SEEN[] =
    "INSERT INTO devices (address, transport, name, rssi, last_seen, created_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?5) "
    "ON CONFLICT (address) DO UPDATE SET name = COALESCE(?3, name), "
    "rssi = COALESCE(?4, rssi), last_seen = ?5";
static const char SQL_SET_PROBE[] =
    "UPDATE devices SET board = COALESCE(?2, board), bootloader_mode = ?3 "
    "WHERE address = ?1";
static const char SQL_DEVICE_GET[] =
    "SELECT address, transport, name, rssi, last_seen, board, grp, "
    "bootloader_mode, enrolled, enrolled_board FROM devices WHERE address = ?1";
static const char SQL_IMAGES_DELETE[] = "DELETE FROM device_images WHERE address = ?1";
static const char SQL_IMAGES_INSERT[] = "INSERT INTO device_images (address, image, slot, version, "
					"hash, flags, read_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
static const char SQL_EVENT_INSERT[] = "INSERT INTO events (at, address, job_id, kind, from_state, "
				       "to_state, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
static const char SQL_JOB_INSERT[] =
    "INSERT INTO jobs (address, release_id, state, canary, created_at, "
    "updated_at) VALUES (?1, ?2, 'queued', ?3, ?4, ?4)";
static const char SQL_JOB_STATE[] =
    "UPDATE jobs SET state = ?2, reason = CASE WHEN ?3 IS NOT NULL THEN ?3 WHEN ?6 "
    "THEN NULL ELSE reason END, updated_at = ?4, "
    "started_at = CASE WHEN started_at IS NULL AND ?2 <> 'queued' THEN ?4 "
    "ELSE started_at END, finished_at = CASE WHEN ?5 THEN ?4 ELSE NULL END "
    "WHERE id = ?1 AND state = ?7";
static const char SQL_JOB_STATE_EVENT[] =
    "INSERT INTO events (at, address, job_id, kind, from_state, "
    "to_state, detail) SELECT ?1, address, id, 'job-state', ?3, ?4, ?5 "
    "FROM jobs WHERE id = ?2";
static const char SQL_JOBS_CREATE[] =
    "SELECT address, transport, grp, enrolled FROM devices d WHERE NOT EXISTS "
    "(SELECT 1 FROM jobs j WHERE j.address = d.address AND "
    "j.release_id = ?1) ORDER BY address";

/* The job_update() forms, and job_select()'s lookup by device and release. */
#define SET_PROGRESS "image = ?2, offset = ?3"
#define SET_RETRY "attempts = ?2, next_attempt_at = ?3"
#define SET_PLAN "images_mask = ?2"
#define SET_DISTRUST "distrust_slots = ?2"
#define SET_RESULTS "app_result = ?4, net_result = ?5"
#define JOB_BY_KEY "address = ?1 AND release_id = ?2"

static const char *const terminal_states[] = {"done", "skipped", "reverted", "failed",
					      "superseded"};

static bool is_terminal(const char *state)
{
	for (size_t i = 0; i < ARRAY_SIZE(terminal_states); i++)
		if (strcmp(state, terminal_states[i]) == 0)
			return true;
	return false;
}

FGW_EXPORT int fgw_store_device_seen(struct fgw_store *s, const char *address,
				     const char *transport, const char *name, const int *rssi,
				     int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, SQL_DEVICE_SEEN, &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, transport, -1, SQLITE_TRANSIENT);
	fgw_store__bind_text(st, 3, name);
	if (rssi)
		sqlite3_bind_int(st, 4, *rssi);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int64(st, 5, now);
	return fgw_store__step_done(s, st);
}

static int update_device(struct fgw_store *s, const char *sql, const char *address,
			 const char *text, int num)
{
	sqlite3_stmt *st;
	int r;

	(void) fgw_store__batch_join(s);
	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	fgw_store__bind_text(st, 2, text);
	sqlite3_bind_int(st, 3, num);
	r = fgw_store__step_done(s, st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		return -ENOENT;
	return r;
}

FGW_EXPORT int fgw_store_device_set_probe(struct fgw_store *s, const char *address,
					  const char *board, int bootloader_mode)
{
	return update_device(s, SQL_SET_PROBE, address, board, bootloader_mode);
}

FGW_EXPORT int fgw_store_device_set_group(struct fgw_store *s, const char *address, const char *grp)
{
	return update_device(s, "UPDATE devices SET grp = ?2 WHERE address = ?1", address, grp, 0);
}

FGW_EXPORT int fgw_store_device_get(struct fgw_store *s, const char *address,
				    struct fgw_store_device_rec *ret)
{
	struct fgw_store_device_rec d = {0};
	sqlite3_stmt *st;
	int rc, r;

	r = fgw_store__prepare(s, SQL_DEVICE_GET, &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		fgw_store__col_text(st, 0, d.address, sizeof(d.address));
		fgw_store__col_text(st, 1, d.transport, sizeof(d.transport));
		fgw_store__col_text(st, 2, d.name, sizeof(d.name));
		d.has_rssi = sqlite3_column_type(st, 3) != SQLITE_NULL;
		d.rssi = sqlite3_column_int(st, 3);
		d.last_seen = sqlite3_column_int64(st, 4);
		fgw_store__col_text(st, 5, d.board, sizeof(d.board));
		fgw_store__col_text(st, 6, d.grp, sizeof(d.grp));
		d.bootloader_mode =
		    sqlite3_column_type(st, 7) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 7);
		d.enrolled = sqlite3_column_int(st, 8) == 1;
		fgw_store__col_text(st, 9, d.enrolled_board, sizeof(d.enrolled_board));
		r = 0;
	} else {
		r = rc == SQLITE_DONE ? -ENOENT : fgw_store__fail(s, rc);
	}
	fgw_store__finish(s, st);
	if (r == 0)
		*ret = d;
	return r;
}

/* BEGIN IMMEDIATE ... COMMIT around @fn; rolls back on any failure. */
static int in_transaction(struct fgw_store *s, int (*fn)(struct fgw_store *s, void *ud), void *ud)
{
	int r = fgw_store__begin(s);

	if (r < 0)
		return r;
	return fgw_store__end(s, fn(s, ud));
}

struct images_set {
	const char *address;
	const struct fgw_store_image *images;
	size_t n;
	int64_t now;
};

static int images_set_tx(struct fgw_store *s, void *ud)
{
	struct images_set *a = ud;
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, SQL_IMAGES_DELETE, &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, a->address, -1, SQLITE_TRANSIENT);
	r = fgw_store__step_done(s, st);
	if (r < 0)
		return r;
	for (size_t i = 0; i < a->n; i++) {
		const struct fgw_store_image *img = &a->images[i];
		r = fgw_store__prepare(s, SQL_IMAGES_INSERT, &st);
		if (r < 0)
			return r;
		sqlite3_bind_text(st, 1, a->address, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 2, img->image);
		sqlite3_bind_int(st, 3, img->slot);
		sqlite3_bind_text(st, 4, img->version, -1, SQLITE_TRANSIENT);
		fgw_store__bind_text(st, 5, img->hash[0] ? img->hash : NULL);
		sqlite3_bind_int(st, 6, (int) img->flags);
		sqlite3_bind_int64(st, 7, a->now);
		r = fgw_store__step_done(s, st);
		if (r < 0)
			return r;
	}
	return 0;
}

FGW_EXPORT int fgw_store_device_images_set(struct fgw_store *s, const char *address,
					   const struct fgw_store_image *images, size_t n,
					   int64_t now)
{
	struct images_set a = {address, images, n, now};

	return in_transaction(s, images_set_tx, &a);
}

FGW_EXPORT int
fgw_store_device_slots_foreach(struct fgw_store *s, const char *address,
			       void (*cb)(const struct fgw_store_image *img, void *ud), void *ud)
{
	sqlite3_stmt *st;
	int rc, r;

	r = fgw_store__prepare(s,
			       "SELECT image, slot, version, hash, flags FROM device_images "
			       "WHERE address = ?1 ORDER BY image, slot",
			       &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct fgw_store_image img = {0};
		img.image = sqlite3_column_int(st, 0);
		img.slot = sqlite3_column_int(st, 1);
		fgw_store__col_text(st, 2, img.version, sizeof(img.version));
		fgw_store__col_text(st, 3, img.hash, sizeof(img.hash));
		img.flags = (unsigned) sqlite3_column_int(st, 4);
		cb(&img, ud);
	}
	r = rc == SQLITE_DONE ? 0 : fgw_store__fail(s, rc);
	fgw_store__finish(s, st);
	return r;
}

#define JOB_COLUMNS                                                                                \
	"id, address, release_id, state, image, offset, attempts, next_attempt_at, reason, "       \
	"canary, images_mask, app_result, net_result, created_at, updated_at, started_at, "        \
	"finished_at, distrust_slots, (SELECT d.enrolled FROM devices d WHERE d.address = "        \
	"jobs.address)"

static void read_job(sqlite3_stmt *st, struct fgw_store_job_rec *j)
{
	*j = (struct fgw_store_job_rec){0};
	j->id = sqlite3_column_int64(st, 0);
	fgw_store__col_text(st, 1, j->address, sizeof(j->address));
	fgw_store__col_text(st, 2, j->release_id, sizeof(j->release_id));
	fgw_store__col_text(st, 3, j->state, sizeof(j->state));
	j->image = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 4);
	j->offset = sqlite3_column_int64(st, 5);
	j->attempts = sqlite3_column_int(st, 6);
	j->next_attempt_at = sqlite3_column_int64(st, 7);
	fgw_store__col_text(st, 8, j->reason, sizeof(j->reason));
	j->canary = sqlite3_column_int(st, 9) != 0;
	j->images_mask = (unsigned) sqlite3_column_int(st, 10);
	fgw_store__col_text(st, 11, j->app_result, sizeof(j->app_result));
	fgw_store__col_text(st, 12, j->net_result, sizeof(j->net_result));
	j->created_at = sqlite3_column_int64(st, 13);
	j->updated_at = sqlite3_column_int64(st, 14);
	j->started_at = sqlite3_column_int64(st, 15);
	j->finished_at = sqlite3_column_int64(st, 16);
	j->distrust_slots = (unsigned) sqlite3_column_int(st, 17);
	j->enrolled = sqlite3_column_int(st, 18) == 1;
}

static void job_select_sql(char *sql, size_t size, const char *where)
{
	snprintf(sql, size, "SELECT " JOB_COLUMNS " FROM jobs WHERE %s", where);
}

static int job_select(struct fgw_store *s, const char *where, const char *a, const char *b,
		      int64_t id, struct fgw_store_job_rec *ret)
{
	char sql[512];
	sqlite3_stmt *st;
	int rc, r;

	job_select_sql(sql, sizeof(sql), where);
	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	if (a) {
		sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
	} else {
		sqlite3_bind_int64(st, 1, id);
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		read_job(st, ret);
		r = 0;
	} else {
		r = rc == SQLITE_DONE ? -ENOENT : fgw_store__fail(s, rc);
	}
	fgw_store__finish(s, st);
	return r;
}

static int insert_event(struct fgw_store *s, const char *address, int64_t job_id, const char *kind,
			const char *from, const char *to, const char *detail, int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, SQL_EVENT_INSERT, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, now);
	fgw_store__bind_text(st, 2, address);
	if (job_id > 0)
		sqlite3_bind_int64(st, 3, job_id);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, kind, -1, SQLITE_TRANSIENT);
	fgw_store__bind_text(st, 5, from);
	fgw_store__bind_text(st, 6, to);
	fgw_store__bind_text(st, 7, detail);
	return fgw_store__step_done(s, st);
}

struct job_ensure {
	const char *address, *release_id;
	bool canary;
	int64_t now;
	struct fgw_store_job_rec job;
	bool created;
};

static int job_insert(struct fgw_store *s, const char *address, const char *release_id, bool canary,
		      int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, SQL_JOB_INSERT, &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, release_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 3, canary);
	sqlite3_bind_int64(st, 4, now);
	r = fgw_store__step_done(s, st);
	if (r < 0)
		return r;
	return insert_event(s, address, sqlite3_last_insert_rowid(s->db), "job-state", NULL,
			    "queued", canary ? "release: canary" : NULL, now);
}

static int job_ensure_tx(struct fgw_store *s, void *ud)
{
	struct job_ensure *a = ud;
	int r;

	r = job_select(s, JOB_BY_KEY, a->address, a->release_id, 0, &a->job);
	if (r != -ENOENT)
		return r;
	r = job_insert(s, a->address, a->release_id, a->canary, a->now);
	if (r < 0)
		return r;
	a->created = true;
	return job_select(s, JOB_BY_KEY, a->address, a->release_id, 0, &a->job);
}

FGW_EXPORT int fgw_store_job_ensure(struct fgw_store *s, const char *address,
				    const char *release_id, bool canary, int64_t now,
				    struct fgw_store_job_rec *ret, bool *ret_created)
{
	struct job_ensure a = {
	    .address = address, .release_id = release_id, .canary = canary, .now = now};
	int r;

	/* Most calls find the job: a plain read, no write lock (the transaction re-checks). */
	r = job_select(s, JOB_BY_KEY, address, release_id, 0, &a.job);
	if (r == -ENOENT)
		r = in_transaction(s, job_ensure_tx, &a);

	if (r < 0)
		return r;
	*ret = a.job;
	if (ret_created)
		*ret_created = a.created;
	return 0;
}

FGW_EXPORT int fgw_store_job_get(struct fgw_store *s, int64_t id, struct fgw_store_job_rec *ret)
{
	return job_select(s, "id = ?1", NULL, NULL, id, ret);
}

struct job_state {
	int64_t id;
	const char *from, *to, *reason, *detail;
	int64_t now;
};

static int job_state_tx(struct fgw_store *s, void *ud)
{
	struct job_state *a = ud;
	struct fgw_store_job_rec job;
	sqlite3_stmt *st;
	int r;

	/* The state check is in the UPDATE: no read of the row first. */
	r = fgw_store__prepare(
	    s,
	    /* A job leaving a terminal state (a retry) starts without the old reason. */
	    SQL_JOB_STATE, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, a->id);
	sqlite3_bind_text(st, 2, a->to, -1, SQLITE_STATIC);
	fgw_store__bind_text(st, 3, a->reason);
	sqlite3_bind_int64(st, 4, a->now);
	sqlite3_bind_int(st, 5, is_terminal(a->to));
	sqlite3_bind_int(st, 6, is_terminal(a->from) && !is_terminal(a->to));
	sqlite3_bind_text(st, 7, a->from, -1, SQLITE_STATIC);
	r = fgw_store__step_done(s, st);
	if (r < 0)
		return r;
	if (sqlite3_changes(s->db) == 0) {
		r = fgw_store_job_get(s, a->id, &job);
		return r < 0 ? r : -ESTALE;
	}
	r = fgw_store__prepare(s, SQL_JOB_STATE_EVENT, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, a->now);
	sqlite3_bind_int64(st, 2, a->id);
	sqlite3_bind_text(st, 3, a->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, a->to, -1, SQLITE_STATIC);
	fgw_store__bind_text(st, 5, a->detail ? a->detail : a->reason);
	return fgw_store__step_done(s, st);
}

FGW_EXPORT int fgw_store_job_set_state(struct fgw_store *s, int64_t id, const char *from,
				       const char *to, const char *reason, const char *detail,
				       int64_t now)
{
	struct job_state a = {id, from, to, reason, detail, now};
	int r = in_transaction(s, job_state_tx, &a);
	/* The batch's writes go with the transition: both stored before anyone acts on them. */
	int c = fgw_store_batch_end(s);

	return r < 0 ? r : c;
}

/* Every form numbers its parameters alike; binding one a form does not use is harmless. */
static void job_update_sql(char *sql, size_t size, const char *set)
{
	snprintf(sql, size, "UPDATE jobs SET %s, updated_at = ?6 WHERE id = ?1", set);
}

static int job_update(struct fgw_store *s, const char *set, int64_t id, int64_t a, int64_t b,
		      const char *t1, const char *t2, int64_t now)
{
	char sql[256];
	sqlite3_stmt *st;
	int r;

	job_update_sql(sql, sizeof(sql), set);
	(void) fgw_store__batch_join(s);
	r = fgw_store__prepare(s, sql, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, a);
	sqlite3_bind_int64(st, 3, b);
	fgw_store__bind_text(st, 4, t1);
	fgw_store__bind_text(st, 5, t2);
	sqlite3_bind_int64(st, 6, now);
	r = fgw_store__step_done(s, st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		return -ENOENT;
	return r;
}

FGW_EXPORT int fgw_store_job_set_progress(struct fgw_store *s, int64_t id, int image,
					  int64_t offset, int64_t now)
{
	return job_update(s, SET_PROGRESS, id, image, offset, NULL, NULL, now);
}

FGW_EXPORT int fgw_store_job_set_retry(struct fgw_store *s, int64_t id, int attempts,
				       int64_t next_attempt_at, int64_t now)
{
	return job_update(s, SET_RETRY, id, attempts, next_attempt_at, NULL, NULL, now);
}

FGW_EXPORT int fgw_store_job_set_plan(struct fgw_store *s, int64_t id, unsigned images_mask,
				      int64_t now)
{
	return job_update(s, SET_PLAN, id, images_mask, 0, NULL, NULL, now);
}

FGW_EXPORT int fgw_store_job_set_distrust(struct fgw_store *s, int64_t id, unsigned mask,
					  int64_t now)
{
	return job_update(s, SET_DISTRUST, id, mask, 0, NULL, NULL, now);
}

FGW_EXPORT int fgw_store_job_set_results(struct fgw_store *s, int64_t id, const char *app_result,
					 const char *net_result, int64_t now)
{
	return job_update(s, SET_RESULTS, id, 0, 0, app_result, net_result, now);
}

FGW_EXPORT int fgw_store_jobs_foreach(struct fgw_store *s, const char *release_id,
				      bool unfinished_only,
				      int (*cb)(const struct fgw_store_job_rec *job, void *ud),
				      void *ud)
{
	sqlite3_stmt *st;
	int rc, r;

	r = fgw_store__prepare(s,
			       "SELECT " JOB_COLUMNS " FROM jobs WHERE (?1 IS NULL OR release_id = "
			       "?1) AND (?2 = 0 OR state NOT IN ('done', 'skipped', 'reverted', "
			       "'failed', 'superseded')) ORDER BY id",
			       &st);
	if (r < 0)
		return r;
	fgw_store__bind_text(st, 1, release_id);
	sqlite3_bind_int(st, 2, unfinished_only);
	r = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct fgw_store_job_rec j;
		read_job(st, &j);
		r = cb(&j, ud);
		if (r < 0)
			break;
	}
	if (r >= 0)
		r = rc == SQLITE_DONE ? 0 : fgw_store__fail(s, rc);
	fgw_store__finish(s, st);
	return r;
}

struct jobs_create {
	const char *release_id;
	int64_t now;
	int (*cb)(struct fgw_store_job_new *jn, void *ud);
	void *ud;
	int count;
};

static int jobs_create_tx(struct fgw_store *s, void *ud)
{
	struct jobs_create *a = ud;
	sqlite3_stmt *st;
	int rc, r;

	r = fgw_store__prepare(s, SQL_JOBS_CREATE, &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, a->release_id, -1, SQLITE_TRANSIENT);
	r = 0;
	/* Inserting into jobs while reading devices is safe: the scan is over another table. */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct fgw_store_job_new jn = {
		    .address = (const char *) sqlite3_column_text(st, 0),
		    .transport = (const char *) sqlite3_column_text(st, 1),
		    .grp = (const char *) sqlite3_column_text(st, 2),
		    .enrolled = sqlite3_column_int(st, 3) == 1,
		};
		r = a->cb(&jn, a->ud);
		if (r > 0) {
			r = job_insert(s, jn.address, a->release_id, jn.canary, a->now);
			a->count += r == 0;
		}
		if (r < 0)
			break;
	}
	if (r >= 0)
		r = rc == SQLITE_DONE ? 0 : fgw_store__fail(s, rc);
	fgw_store__finish(s, st);
	return r;
}

FGW_EXPORT int fgw_store_jobs_create(struct fgw_store *s, const char *release_id, int64_t now,
				     int (*cb)(struct fgw_store_job_new *jn, void *ud), void *ud)
{
	struct jobs_create a = {release_id, now, cb, ud, 0};
	int r = in_transaction(s, jobs_create_tx, &a);

	return r < 0 ? r : a.count;
}

struct supersede {
	const char *release_id;
	int64_t now;
	int count;
};

static int supersede_tx(struct fgw_store *s, void *ud)
{
	struct supersede *a = ud;
	sqlite3_stmt *st;
	char detail[128];
	int r;

	snprintf(detail, sizeof(detail), "superseded by release %s", a->release_id);
	r = fgw_store__prepare(s,
			       "INSERT INTO events (at, address, job_id, kind, from_state, "
			       "to_state, detail) SELECT ?2, address, id, 'job-state', 'queued', "
			       "'superseded', ?3 FROM jobs WHERE state = 'queued' AND release_id "
			       "<> ?1",
			       &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, a->release_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, a->now);
	sqlite3_bind_text(st, 3, detail, -1, SQLITE_TRANSIENT);
	r = fgw_store__step_done(s, st);
	if (r < 0)
		return r;
	r = fgw_store__prepare(
	    s,
	    "UPDATE jobs SET state = 'superseded', reason = ?3, updated_at = ?2, "
	    "finished_at = ?2 WHERE state = 'queued' AND release_id <> ?1",
	    &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, a->release_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, a->now);
	sqlite3_bind_text(st, 3, detail, -1, SQLITE_TRANSIENT);
	r = fgw_store__step_done(s, st);
	if (r < 0)
		return r;
	a->count = sqlite3_changes(s->db);
	return 0;
}

FGW_EXPORT int fgw_store_jobs_supersede(struct fgw_store *s, const char *release_id, int64_t now)
{
	struct supersede a = {release_id, now, 0};
	int r = in_transaction(s, supersede_tx, &a);

	return r < 0 ? r : a.count;
}

FGW_EXPORT int fgw_store_event_add(struct fgw_store *s, const char *address, int64_t job_id,
				   const char *kind, const char *detail, int64_t now)
{
	return insert_event(s, address, job_id, kind, NULL, NULL, detail, now);
}

FGW_EXPORT int fgw_store_rollout_state(struct fgw_store *s, const char *release_id,
				       bool *ret_halted, char *ret_by, size_t by_size,
				       char *ret_reason, size_t reason_size)
{
	sqlite3_stmt *st;
	int rc, r;

	r = fgw_store__prepare(s,
			       "SELECT halted, halted_by, halted_reason FROM rollout WHERE "
			       "release_id = ?1",
			       &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, release_id, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	*ret_halted = false;
	if (ret_by && by_size)
		ret_by[0] = '\0';
	if (ret_reason && reason_size)
		ret_reason[0] = '\0';
	if (rc == SQLITE_ROW) {
		*ret_halted = sqlite3_column_int(st, 0) != 0;
		if (ret_by && by_size)
			fgw_store__col_text(st, 1, ret_by, by_size);
		if (ret_reason && reason_size)
			fgw_store__col_text(st, 2, ret_reason, reason_size);
	}
	r = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : fgw_store__fail(s, rc);
	fgw_store__finish(s, st);
	return r;
}

FGW_EXPORT int fgw_store_rollout_set(struct fgw_store *s, const char *release_id, bool halted,
				     const char *by, const char *reason, int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(
	    s,
	    "INSERT INTO rollout (release_id, halted, halted_by, halted_reason, "
	    "updated_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (release_id) DO "
	    "UPDATE SET halted = ?2, halted_by = ?3, halted_reason = ?4, "
	    "updated_at = ?5",
	    &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, release_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 2, halted);
	/* Also kept when not halted: who resumed it, which the halt rule needs after a restart. */
	fgw_store__bind_text(st, 3, by);
	fgw_store__bind_text(st, 4, reason);
	sqlite3_bind_int64(st, 5, now);
	r = fgw_store__step_done(s, st);
	if (r < 0)
		return r;
	return insert_event(s, NULL, 0, "rollout", NULL, halted ? "halted" : "running", reason,
			    now);
}

void fgw_store__fleet_warm(struct fgw_store *s)
{
	static const char *const fixed[] = {
	    SQL_DEVICE_SEEN,	 SQL_SET_PROBE,	   SQL_DEVICE_GET, SQL_IMAGES_DELETE,
	    SQL_IMAGES_INSERT,	 SQL_EVENT_INSERT, SQL_JOB_INSERT, SQL_JOB_STATE,
	    SQL_JOB_STATE_EVENT, SQL_JOBS_CREATE};
	static const char *const sets[] = {SET_PROGRESS, SET_RETRY, SET_PLAN, SET_DISTRUST,
					   SET_RESULTS};
	char sql[512];

	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		fgw_store__warm(s, fixed[i]);
	for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
		job_update_sql(sql, sizeof(sql), sets[i]);
		fgw_store__warm(s, sql);
	}
	job_select_sql(sql, sizeof(sql), JOB_BY_KEY);
	fgw_store__warm(s, sql);
}
