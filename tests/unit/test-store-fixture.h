/*
 * The set-up the store's unit tests share: a migrated store in a fresh temporary directory,
 * and a second, plain SQLite connection to look at the file the way another process would.
 */
#pragma once

#include "store.h"

struct store_fx {
	char dir[64];
	char path[128];
	struct fgw_store *s;
};

/* The releases most tests need: r1 (1.1.0) and r2 (1.2.0), both verified. */
#define STORE_FX_R1_R2                                                                             \
	"INSERT INTO releases (id, sequence, version, bundle_url, bundle_sha256, bundle_size, "    \
	"state, created_at) VALUES ('r1', 1, '1.1.0', 'b.zip', 'aa', 10, 'verified', 1), "         \
	"('r2', 2, '1.2.0', 'b2.zip', 'bb', 10, 'verified', 2)"

/* cmocka set-up: *state = a store_fx in /tmp/fgw-test-@name-XXXXXX, @seed_sql run on it. */
int store_fx_setup(void **state, const char *name, const char *seed_sql);
int store_fx_teardown(void **state);
/* @sql on its own connection to @path; must succeed. */
void raw_exec(const char *path, const char *sql);
/* The first column of @sql's first row, on its own connection; -1 for no row. */
long long raw_int(const char *path, const char *sql);
