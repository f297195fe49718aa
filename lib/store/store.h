/*
 * store: the gateway's memory, one SQLite file. Opening it sets WAL, foreign keys,
 * synchronous=NORMAL and a busy timeout, then brings the schema up to date by applying the
 * migrations (migrations/NNNN_name.sql, compiled in) in order, each in its own transaction
 * that also records PRAGMA user_version, so a migration is applied whole or not at all. A
 * database newer than this build knows is refused, never touched. Only this part includes
 * <sqlite3.h>; other parts go through the functions declared here.
 */
#pragma once

#include <stddef.h>

struct fgw_store;

struct fgw_migration {
	int version;      /* 1, 2, 3 ... contiguous */
	const char *name; /* file name, for messages */
	const char *sql;
};

/* The migrations built from the migrations folder (NNNN_name.sql), in order. */
const struct fgw_migration *fgw_store_builtin_migrations(size_t *ret_n);

/*
 * Opens (creating if needed) the database at @path: WAL, foreign keys, synchronous=NORMAL,
 * @busy_timeout_ms. Does not touch the schema. -ENOENT/-EACCES if it cannot be opened,
 * -ENOTRECOVERABLE if the file is not a database, -EIO if WAL cannot be enabled.
 */
int fgw_store_open(const char *path, int busy_timeout_ms, struct fgw_store **ret);
struct fgw_store *fgw_store_free(struct fgw_store *s);

/*
 * Brings the schema up to date with @migrations (NULL: the built-in ones). Errors:
 * -EPROTONOSUPPORT if the database is newer than the last migration (left untouched),
 * -EBADMSG if a migration failed (the database stays at the version before it). Either way
 * fgw_store_errmsg() says which version or which migration.
 */
int fgw_store_migrate(struct fgw_store *s, const struct fgw_migration *migrations,
		      size_t n_migrations);

/* Schema version (PRAGMA user_version) of the open store. */
int fgw_store_version(struct fgw_store *s);
/* The message SQLite gave for the last failure on this store, for logs. */
const char *fgw_store_errmsg(struct fgw_store *s);
/* Runs PRAGMA integrity_check; 0 when it answers "ok", -EBADMSG otherwise. */
int fgw_store_integrity_check(struct fgw_store *s);
