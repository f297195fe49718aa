/*
 * Release pipeline records: the manifest poller's memory (sequence, ETag, last result) and
 * each release's row (pending -> verified | rejected, verified -> superseded). State changes
 * are written together with a "release" event, in one transaction.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store-private.h"
#include "util.h"

FGW_EXPORT int fgw_store_manifest_accept(struct fgw_store *s, int64_t sequence, const char *etag,
					 const char *result, int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(
	    s,
	    "UPDATE manifest_state SET sequence = ?1, etag = ?2, "
	    "last_poll_at = ?3, last_result = ?4 WHERE id = 1 AND sequence <= ?1",
	    &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, sequence);
	fgw_store__bind_text(st, 2, etag);
	sqlite3_bind_int64(st, 3, now);
	fgw_store__bind_text(st, 4, result);
	r = fgw_store__step_done(s, st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		return -ESTALE; /* never lower the rollback guard */
	return r;
}

FGW_EXPORT int fgw_store_manifest_polled(struct fgw_store *s, const char *result, int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s,
			       "UPDATE manifest_state SET last_poll_at = ?1, last_result = ?2 "
			       "WHERE id = 1",
			       &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, now);
	fgw_store__bind_text(st, 2, result);
	return fgw_store__step_done(s, st);
}

static int insert_event(struct fgw_store *s, const char *from, const char *to, const char *detail,
			int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s,
			       "INSERT INTO events (at, kind, from_state, to_state, detail) "
			       "VALUES (?1, 'release', ?2, ?3, ?4)",
			       &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, now);
	fgw_store__bind_text(st, 2, from);
	fgw_store__bind_text(st, 3, to);
	fgw_store__bind_text(st, 4, detail);
	return fgw_store__step_done(s, st);
}

FGW_EXPORT int fgw_store_release_insert(struct fgw_store *s, const struct fgw_store_release *rel,
					int64_t now)
{
	char detail[256];
	sqlite3_stmt *st;
	int r;

	r = fgw_store__begin(s);
	if (r < 0)
		return r;
	r = fgw_store__prepare(
	    s,
	    "INSERT INTO releases (id, sequence, version, board, groups_json, "
	    "policy_json, bundle_url, bundle_sha256, bundle_size, state, reason, "
	    "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
	    "COALESCE(?10, 'pending'), ?11, ?12)",
	    &st);
	if (r == 0) {
		fgw_store__bind_text(st, 1, rel->id);
		sqlite3_bind_int64(st, 2, rel->sequence);
		fgw_store__bind_text(st, 3, rel->version);
		fgw_store__bind_text(st, 4, rel->board);
		fgw_store__bind_text(st, 5, rel->groups_json);
		fgw_store__bind_text(st, 6, rel->policy_json);
		fgw_store__bind_text(st, 7, rel->bundle_url);
		fgw_store__bind_text(st, 8, rel->bundle_sha256);
		sqlite3_bind_int64(st, 9, rel->bundle_size);
		fgw_store__bind_text(st, 10, rel->state);
		fgw_store__bind_text(st, 11, rel->reason);
		sqlite3_bind_int64(st, 12, now);
		r = fgw_store__step_done(s, st);
	}
	if (r == 0) {
		snprintf(detail, sizeof(detail), "release '%s' version %s, bundle %.16s...",
			 rel->id, rel->version, rel->bundle_sha256);
		r = insert_event(s, NULL, rel->state ? rel->state : "pending", detail, now);
	}
	return fgw_store__end(s, r);
}

FGW_EXPORT int fgw_store_release_update(struct fgw_store *s, const struct fgw_store_release *rel,
					int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s,
			       "UPDATE releases SET sequence = ?2, version = ?3, board = ?4, "
			       "groups_json = ?5, policy_json = ?6, bundle_url = ?7 "
			       "WHERE id = ?1 AND bundle_sha256 = ?8 AND bundle_size = ?9",
			       &st);
	if (r < 0)
		return r;
	fgw_store__bind_text(st, 1, rel->id);
	sqlite3_bind_int64(st, 2, rel->sequence);
	fgw_store__bind_text(st, 3, rel->version);
	fgw_store__bind_text(st, 4, rel->board);
	fgw_store__bind_text(st, 5, rel->groups_json);
	fgw_store__bind_text(st, 6, rel->policy_json);
	fgw_store__bind_text(st, 7, rel->bundle_url);
	fgw_store__bind_text(st, 8, rel->bundle_sha256);
	sqlite3_bind_int64(st, 9, rel->bundle_size);
	r = fgw_store__step_done(s, st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		return -ENOENT;
	return r;
}

FGW_EXPORT int fgw_store_release_get(struct fgw_store *s, const char *id, fgw_store_release_cb_t cb,
				     void *user_data)
{
	sqlite3_stmt *st;
	int rc, r;

	r = fgw_store__prepare(s, "SELECT " RELEASE_COLUMNS "FROM releases WHERE id = ?1", &st);
	if (r < 0)
		return r;
	fgw_store__bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		struct fgw_store_release rel;

		fgw_store__read_release(st, &rel);
		r = cb(&rel, user_data);
		r = r < 0 ? r : 0;
	} else {
		r = rc == SQLITE_DONE ? -ENOENT : fgw_store__fail(s, rc);
	}
	fgw_store__finish(s, st);
	return r;
}

FGW_EXPORT int fgw_store_release_set_state(struct fgw_store *s, const char *id, const char *state,
					   const char *reason, const char *bundle_path, int64_t now)
{
	char from[16] = "", detail[512];
	sqlite3_stmt *st;
	int rc, r;

	r = fgw_store__begin(s);
	if (r < 0)
		return r;
	r = fgw_store__prepare(s, "SELECT state FROM releases WHERE id = ?1", &st);
	if (r == 0) {
		fgw_store__bind_text(st, 1, id);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			fgw_store__col_text(st, 0, from, sizeof(from));
		else
			r = rc == SQLITE_DONE ? -ENOENT : fgw_store__fail(s, rc);
		fgw_store__finish(s, st);
	}
	if (r == 0)
		r = fgw_store__prepare(
		    s,
		    "UPDATE releases SET state = ?2, reason = ?3, "
		    "bundle_path = CASE WHEN ?2 = 'verified' THEN ?4 ELSE bundle_path END, "
		    "verified_at = CASE WHEN ?2 = 'verified' THEN ?5 ELSE verified_at END "
		    "WHERE id = ?1",
		    &st);
	if (r == 0) {
		fgw_store__bind_text(st, 1, id);
		fgw_store__bind_text(st, 2, state);
		fgw_store__bind_text(st, 3, reason);
		fgw_store__bind_text(st, 4, bundle_path);
		sqlite3_bind_int64(st, 5, now);
		r = fgw_store__step_done(s, st);
	}
	if (r == 0) {
		snprintf(detail, sizeof(detail), "release '%s'%s%s", id, reason ? ": " : "",
			 reason ? reason : "");
		r = insert_event(s, from, state, detail, now);
	}
	return fgw_store__end(s, r);
}

FGW_EXPORT int fgw_store_releases_supersede(struct fgw_store *s, const char *keep_id,
					    const char *board, int64_t now)
{
	char detail[256];
	sqlite3_stmt *st;
	int r, n = 0;

	r = fgw_store__begin(s);
	if (r < 0)
		return r;
	r = fgw_store__prepare(s,
			       "UPDATE releases SET state = 'superseded' WHERE state = 'verified' "
			       "AND id != ?1 AND (?2 IS NULL OR board IS NULL OR board = ?2)",
			       &st);
	if (r == 0) {
		fgw_store__bind_text(st, 1, keep_id);
		fgw_store__bind_text(st, 2, board);
		r = fgw_store__step_done(s, st);
		n = sqlite3_changes(s->db);
	}
	if (r == 0 && n > 0) {
		snprintf(detail, sizeof(detail), "%d release(s) superseded by '%s'", n, keep_id);
		r = insert_event(s, "verified", "superseded", detail, now);
	}
	r = fgw_store__end(s, r);
	return r < 0 ? r : n;
}
