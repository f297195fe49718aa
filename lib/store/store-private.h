/* For the store part's own .c files only: the store object and shared helpers. */
#pragma once

#include <sqlite3.h>

#include "store.h"

/*
 * Prepared statements kept across calls (compiling one costs ~60 k instructions, as much as
 * running it). Keyed by SQL text; a statement in use is never handed out twice, so a query
 * whose callback runs the same query again gets a fresh, uncached statement.
 */
#define FGW_STORE_STMT_CACHE 48

struct fgw_store_stmt {
	sqlite3_stmt *st;
	uint32_t hash;
	bool busy;
	uint64_t used; /* LRU clock */
};

struct fgw_store {
	sqlite3 *db;
	char errmsg[256];
	struct fgw_store_stmt cache[FGW_STORE_STMT_CACHE];
	uint64_t clock;
	uint64_t n_prepared; /* statements compiled (cache misses), for tests */
	bool batch;	     /* between fgw_store_batch_begin() and its end */
	bool batch_tx;	     /* the batch's transaction is open (from its first write) */
	bool batch_lost;     /* SQLite rolled the batch's transaction back */
};

/* SQLite result code → negative errno (0 for OK/ROW/DONE). */
int fgw_store__errno(int rc);
/* Records sqlite3_errmsg() for fgw_store_errmsg() and returns fgw_store__errno(rc). */
int fgw_store__fail(struct fgw_store *s, int rc);
/* sqlite3_exec of @sql; 0 or -errno with the message remembered. */
int fgw_store__exec(struct fgw_store *s, const char *sql);
/*
 * A statement for @sql, from the cache or compiled: 0 or -errno with the message remembered.
 * Every statement obtained so goes back through fgw_store__finish() (or __step_done()).
 */
int fgw_store__prepare(struct fgw_store *s, const char *sql, sqlite3_stmt **ret);
/* Hands @st back: reset (ending its read snapshot) and kept if cached, else finalized. */
void fgw_store__finish(struct fgw_store *s, sqlite3_stmt *st);
/* Copies column @col as text into @buf (empty string for NULL), truncating safely. */
void fgw_store__col_text(sqlite3_stmt *st, int col, char *buf, size_t size);
/* Column @col as borrowed text (NULL for NULL), or as an integer (FGW_STORE_NULL for NULL). */
/* The columns of a release row, in the order fgw_store__read_release() reads them. */
#define RELEASE_COLUMNS                                                                            \
	"id, sequence, version, board, groups_json, policy_json, bundle_url, bundle_sha256, "      \
	"bundle_size, state, reason, created_at, verified_at "
/* A row selected with RELEASE_COLUMNS into @ret (strings borrowed from @st). */
void fgw_store__read_release(sqlite3_stmt *st, struct fgw_store_release *ret);
static inline const char *fgw_store__col_str(sqlite3_stmt *st, int col)
{
	return (const char *) sqlite3_column_text(st, col);
}
static inline int64_t fgw_store__col_int(sqlite3_stmt *st, int col)
{
	return sqlite3_column_type(st, col) == SQLITE_NULL ? FGW_STORE_NULL
							   : sqlite3_column_int64(st, col);
}
/* Steps a statement that returns no rows and finishes it: 0 or -errno (message kept). */
int fgw_store__step_done(struct fgw_store *s, sqlite3_stmt *st);
/* Binds @v as text, or NULL when @v is NULL. */
void fgw_store__bind_text(sqlite3_stmt *st, int i, const char *v);
/* BEGIN IMMEDIATE; and its end: COMMIT when @r >= 0, else ROLLBACK. Returns @r or the
 * COMMIT's error. Within a batch, a savepoint and its release (or rollback to it). */
int fgw_store__begin(struct fgw_store *s);
/*
 * Compiles the statements every job runs into the cache, so that the first job does not pay
 * for them (~1.2 M instructions): fgw_store_migrate() calls it once the built-in schema is in.
 */
void fgw_store__fleet_warm(struct fgw_store *s);
/* Compiles @sql into the cache now (errors are left for its first use to report). */
void fgw_store__warm(struct fgw_store *s, const char *sql);
/* Opens the batch's transaction if a batch is on and it is not open yet: writers call it. */
int fgw_store__batch_join(struct fgw_store *s);
int fgw_store__end(struct fgw_store *s, int r);
