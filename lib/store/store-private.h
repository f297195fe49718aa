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
