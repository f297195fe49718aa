/* The link security a device needs (devices.security, migration 0003). */
#include <errno.h>
#include <string.h>

#include "store-private.h"
#include "util.h"

static bool valid_level(const char *level)
{
	return level && (!strcmp(level, "unknown") || !strcmp(level, "none") ||
			 !strcmp(level, "encrypted") || !strcmp(level, "authenticated"));
}

FGW_EXPORT int fgw_store_device_security_get(struct fgw_store *s, const char *address, char *buf,
					     size_t size)
{
	sqlite3_stmt *st;
	int r;

	if (!address || !buf || size == 0)
		return -EINVAL;
	r = fgw_store__prepare(s, "SELECT security FROM devices WHERE address = ?1", &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		fgw_store__col_text(st, 0, buf, size);
		r = 0;
	} else if (r == SQLITE_DONE) {
		r = -ENOENT;
	} else {
		r = fgw_store__fail(s, r);
	}
	fgw_store__finish(s, st);
	return r;
}

FGW_EXPORT int fgw_store_device_security_set(struct fgw_store *s, const char *address,
					     const char *level)
{
	sqlite3_stmt *st;
	int r;

	if (!address || !valid_level(level))
		return -EINVAL;
	r = fgw_store__prepare(s, "UPDATE devices SET security = ?2 WHERE address = ?1", &st);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, level, -1, SQLITE_TRANSIENT);
	r = fgw_store__step_done(s, st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		return -ENOENT;
	return r;
}
