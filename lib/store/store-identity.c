/*
 * Identity (issue 16): a device met under a resolvable private address becomes the device of
 * its identity address once bluetoothd resolves it. Its row, jobs, images, passkey and events
 * move in one transaction; a row the identity address already has (enrolled by identity)
 * keeps its enrollment fields and takes the rest.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store-private.h"
#include "util.h"

/* Runs each of @sql with ?1 = @old_addr and ?2 = @new_addr. */
static int run_all(struct fgw_store *s, const char *const *sql, size_t n, const char *old_addr,
		   const char *new_addr)
{
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *st;
		int r = fgw_store__prepare(s, sql[i], &st);

		if (r < 0)
			return r;
		sqlite3_bind_text(st, 1, old_addr, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, new_addr, -1, SQLITE_TRANSIENT);
		r = fgw_store__step_done(s, st);
		if (r < 0)
			return r;
	}
	return 0;
}

static int row_exists(struct fgw_store *s, const char *address)
{
	sqlite3_stmt *st;
	int r = fgw_store__prepare(s, "SELECT 1 FROM devices WHERE address = ?1", &st);

	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	r = sqlite3_step(st);
	fgw_store__finish(s, st);
	if (r == SQLITE_ROW)
		return 1;
	return r == SQLITE_DONE ? 0 : -EIO;
}

/* The identity row exists: it keeps what the operator said, takes what the device said. */
static const char *const merge_sql[] = {
    "UPDATE devices AS n SET name = COALESCE(o.name, n.name), rssi = COALESCE(o.rssi, n.rssi), "
    "last_seen = MAX(COALESCE(o.last_seen, 0), COALESCE(n.last_seen, 0)), "
    "board = COALESCE(o.board, n.board), "
    "bootloader_mode = COALESCE(o.bootloader_mode, n.bootloader_mode), "
    "security = CASE WHEN n.security = 'unknown' THEN o.security ELSE n.security END, "
    "grp = CASE WHEN n.enrolled THEN n.grp ELSE COALESCE(o.grp, n.grp) END, "
    "enrolled = MAX(n.enrolled, o.enrolled), enrolled_at = COALESCE(n.enrolled_at, o.enrolled_at), "
    "label = COALESCE(n.label, o.label), enrolled_board = COALESCE(n.enrolled_board, "
    "o.enrolled_board) FROM devices AS o WHERE o.address = ?1 AND n.address = ?2",
    /* the job that ran under the old address is the one that goes on */
    "DELETE FROM jobs WHERE address = ?2 AND release_id IN "
    "(SELECT release_id FROM jobs WHERE address = ?1)",
    "DELETE FROM device_images WHERE address = ?2 AND EXISTS "
    "(SELECT 1 FROM device_images WHERE address = ?1)",
    "DELETE FROM device_passkeys WHERE address = ?1 AND EXISTS "
    "(SELECT 1 FROM device_passkeys WHERE address = ?2)",
};

static const char *const copy_sql[] = {
    "INSERT INTO devices (address, transport, name, rssi, last_seen, board, grp, "
    "bootloader_mode, created_at, security, enrolled, enrolled_at, label, enrolled_board) "
    "SELECT ?2, transport, name, rssi, last_seen, board, grp, bootloader_mode, created_at, "
    "security, enrolled, enrolled_at, label, enrolled_board FROM devices WHERE address = ?1",
};

/* Children first (their foreign keys name the old row), then the old row goes. */
static const char *const move_sql[] = {
    "UPDATE jobs SET address = ?2 WHERE address = ?1",
    "UPDATE device_images SET address = ?2 WHERE address = ?1",
    "UPDATE device_passkeys SET address = ?2 WHERE address = ?1",
    "UPDATE events SET address = ?2 WHERE address = ?1",
    "DELETE FROM devices WHERE address = ?1",
};

static int resolve_tx(struct fgw_store *s, const char *old_addr, const char *new_addr, int64_t now)
{
	char detail[96];
	int merge, r;

	r = row_exists(s, old_addr);
	if (r <= 0)
		return r < 0 ? r : -ENOENT;
	merge = row_exists(s, new_addr);
	if (merge < 0)
		return merge;
	if (merge)
		r = run_all(s, merge_sql, ARRAY_SIZE(merge_sql), old_addr, new_addr);
	else
		r = run_all(s, copy_sql, ARRAY_SIZE(copy_sql), old_addr, new_addr);
	if (r >= 0)
		r = run_all(s, move_sql, ARRAY_SIZE(move_sql), old_addr, new_addr);
	if (r < 0)
		return r;
	snprintf(detail, sizeof(detail), "from %s%s", old_addr,
		 merge ? ", merged into the row it already had" : "");
	r = fgw_store_event_add(s, new_addr, 0, "device-identity-resolved", detail, now);
	return r < 0 ? r : merge;
}

FGW_EXPORT int fgw_store_device_identity_resolved(struct fgw_store *s, const char *old_addr,
						  const char *new_addr, int64_t now)
{
	int r;

	if (!s || !old_addr || !new_addr || !*new_addr || strlen(old_addr) >= 40 ||
	    strlen(new_addr) >= 40)
		return -EINVAL;
	if (strcmp(old_addr, new_addr) == 0)
		return 0;
	r = fgw_store__begin(s);
	if (r < 0)
		return r;
	return fgw_store__end(s, resolve_tx(s, old_addr, new_addr, now));
}
