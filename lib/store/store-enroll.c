/*
 * Enrollment (migration 0004): which devices the operator told the gateway about, their
 * passkeys in a table no other query reads, forgetting, and the bound on devices that were
 * only seen.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-private.h"
#include "util.h"

static const char *or_null(const char *s)
{
	return s && *s ? s : NULL;
}

static int enroll_one(struct fgw_store *s, const struct fgw_store_enrollment *e,
		      const char *default_group, int64_t now)
{
	sqlite3_stmt *st;
	int r;

	if (e->has_passkey && e->passkey > 999999)
		return -EINVAL;
	/* last_seen stays NULL until the device is seen: enrolling is not a sighting */
	r = fgw_store__prepare(
	    s,
	    "INSERT INTO devices (address, transport, grp, enrolled, enrolled_at, label, "
	    "enrolled_board, created_at) VALUES (?1, ?2, COALESCE(?3, ?4), 1, ?5, ?6, ?7, ?5) "
	    "ON CONFLICT (address) DO UPDATE SET enrolled = 1, enrolled_at = ?5, "
	    "grp = COALESCE(?3, grp, ?4), label = COALESCE(?6, label), "
	    "enrolled_board = COALESCE(?7, enrolled_board)",
	    &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, e->address, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, strncmp(e->address, "udp:", 4) == 0 ? "udp" : "ble", -1,
			  SQLITE_STATIC);
	fgw_store__bind_text(st, 3, or_null(e->grp));
	fgw_store__bind_text(st, 4, default_group);
	sqlite3_bind_int64(st, 5, now);
	fgw_store__bind_text(st, 6, or_null(e->label));
	fgw_store__bind_text(st, 7, or_null(e->board));
	r = fgw_store__step_done(s, st);
	if (r < 0 || !e->has_passkey)
		return r;
	r = fgw_store__prepare(s,
			       "INSERT INTO device_passkeys (address, passkey) VALUES (?1, ?2) "
			       "ON CONFLICT (address) DO UPDATE SET passkey = ?2",
			       &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, e->address, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, e->passkey);
	return fgw_store__step_done(s, st);
}

FGW_EXPORT int fgw_store_devices_enroll(struct fgw_store *s, const struct fgw_store_enrollment *e,
					size_t n, const char *default_group, int64_t now)
{
	int r = fgw_store__begin(s);

	for (size_t i = 0; r >= 0 && i < n; i++) {
		r = enroll_one(s, &e[i], default_group, now);
		if (r >= 0)
			r = fgw_store_event_add(s, e[i].address, 0, "enrolled",
						e[i].has_passkey ? "with its own passkey" : NULL,
						now);
	}
	return fgw_store__end(s, r);
}

static int forget_tx(struct fgw_store *s, const char *address, int64_t now)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, "DELETE FROM devices WHERE address = ?1", &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	r = fgw_store__step_done(s, st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		return -ENOENT;
	if (r < 0)
		return r;
	return fgw_store_event_add(s, address, 0, "forgotten", NULL, now);
}

FGW_EXPORT int fgw_store_device_forget(struct fgw_store *s, const char *address, int64_t now)
{
	int r = fgw_store__begin(s);

	if (r < 0)
		return r;
	return fgw_store__end(s, forget_tx(s, address, now));
}

FGW_EXPORT int fgw_store_device_passkey_get(struct fgw_store *s, const char *address, uint32_t *ret)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, "SELECT passkey FROM device_passkeys WHERE address = ?1", &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		*ret = (uint32_t) sqlite3_column_int64(st, 0);
		r = 0;
	} else {
		r = r == SQLITE_DONE ? -ENOENT : fgw_store__fail(s, r);
	}
	fgw_store__finish(s, st);
	return r;
}

FGW_EXPORT int fgw_store_device_passkeys_count(struct fgw_store *s)
{
	sqlite3_stmt *st;
	int r;

	r = fgw_store__prepare(s, "SELECT count(*) FROM device_passkeys", &st);
	if (r < 0)
		return r;
	r = sqlite3_step(st);
	r = r == SQLITE_ROW ? sqlite3_column_int(st, 0) : fgw_store__fail(s, r);
	fgw_store__finish(s, st);
	return r;
}

/* Unenrolled, and no job between queued and done: forgetting it cannot cut an update short. */
#define PRUNABLE                                                                                   \
	"enrolled = 0 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.address = devices.address "     \
	"AND j.state NOT IN ('queued', 'done', 'skipped', 'reverted', 'failed', 'superseded')) "

struct victims {
	char (*addr)[40];
	size_t n, cap;
};

static int collect(struct fgw_store *s, sqlite3_stmt *st, struct victims *v)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (v->n == v->cap) {
			size_t cap = v->cap ? v->cap * 2 : 16;
			char(*a)[40] = realloc(v->addr, cap * sizeof(*a));
			if (!a)
				return -ENOMEM;
			v->addr = a;
			v->cap = cap;
		}
		fgw_store__col_text(st, 0, v->addr[v->n++], sizeof(v->addr[0]));
	}
	return rc == SQLITE_DONE ? 0 : fgw_store__fail(s, rc);
}

static int prune_collect(struct fgw_store *s, int64_t before, unsigned max, struct victims *v)
{
	sqlite3_stmt *st;
	int r;

	/* Stale ones first, then the least recently seen beyond the cap (never seen: oldest). */
	r = fgw_store__prepare(
	    s,
	    "SELECT address FROM devices WHERE " PRUNABLE
	    "AND COALESCE(last_seen, created_at) < ?1 "
	    "UNION SELECT address FROM (SELECT address FROM devices WHERE " PRUNABLE
	    "AND COALESCE(last_seen, created_at) >= ?1 "
	    "ORDER BY COALESCE(last_seen, created_at) DESC, address "
	    "LIMIT -1 OFFSET ?2)",
	    &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, before);
	sqlite3_bind_int64(st, 2, max);
	r = collect(s, st, v);
	fgw_store__finish(s, st);
	return r;
}

FGW_EXPORT int fgw_store_unenrolled_prune(struct fgw_store *s, int64_t before, unsigned max,
					  void (*cb)(const char *address, void *ud), void *ud)
{
	struct victims v = {0};
	sqlite3_stmt *st;
	int r = fgw_store__begin(s);

	if (r >= 0)
		r = prune_collect(s, before, max, &v);
	for (size_t i = 0; r >= 0 && i < v.n; i++) {
		r = fgw_store__prepare(s, "DELETE FROM devices WHERE address = ?1", &st);
		if (r < 0)
			break;
		sqlite3_bind_text(st, 1, v.addr[i], -1, SQLITE_TRANSIENT);
		r = fgw_store__step_done(s, st);
	}
	r = fgw_store__end(s, r);
	if (r >= 0) {
		for (size_t i = 0; cb && i < v.n; i++)
			cb(v.addr[i], ud);
		r = (int) v.n;
	}
	free(v.addr);
	return r;
}
