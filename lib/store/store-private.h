/* For the store part's own .c files only: the store object and shared helpers. */
#pragma once

#include <sqlite3.h>

#include "store.h"

struct fgw_store {
	sqlite3 *db;
	char errmsg[256];
};

/* SQLite result code → negative errno (0 for OK/ROW/DONE). */
int fgw_store__errno(int rc);
/* Records sqlite3_errmsg() for fgw_store_errmsg() and returns fgw_store__errno(rc). */
int fgw_store__fail(struct fgw_store *s, int rc);
/* sqlite3_exec of @sql; 0 or -errno with the message remembered. */
int fgw_store__exec(struct fgw_store *s, const char *sql);
/* Prepares @sql; 0 or -errno with the message remembered. */
int fgw_store__prepare(struct fgw_store *s, const char *sql, sqlite3_stmt **ret);
/* Copies column @col as text into @buf (empty string for NULL), truncating safely. */
void fgw_store__col_text(sqlite3_stmt *st, int col, char *buf, size_t size);
/* Steps a statement that returns no rows and finalizes it: 0 or -errno (message kept). */
int fgw_store__step_done(struct fgw_store *s, sqlite3_stmt *st);
/* Binds @v as text, or NULL when @v is NULL. */
void fgw_store__bind_text(sqlite3_stmt *st, int i, const char *v);
/* BEGIN IMMEDIATE; and its end: COMMIT when @r >= 0, else ROLLBACK. Returns @r or the
 * COMMIT's error. */
int fgw_store__begin(struct fgw_store *s);
int fgw_store__end(struct fgw_store *s, int r);
