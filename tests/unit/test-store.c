/* Migrations against real SQLite files in a temp dir. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "store.h"
#include "test-store-fixture.h"
#include "util.h"

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/fgw-test-store-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	(void) !system(cmd);
	free(f);
	return 0;
}

static void test_fresh(void **state)
{
	struct fixture *f = *state;
	struct fgw_store *s;
	size_t n;
	const char *tables[] = {"devices",	  "device_images", "releases",
				"manifest_state", "jobs",	   "events"};
	char sql[160];

	fgw_store_builtin_migrations(&n);
	assert_true(n >= 1);
	assert_int_equal(fgw_store_open(f->path, 1000, &s), 0);
	assert_int_equal(fgw_store_migrate(s, NULL, 0), 0);
	assert_int_equal(fgw_store_version(s), (int) n);
	assert_int_equal(fgw_store_integrity_check(s), 0);
	s = fgw_store_free(s);

	for (size_t i = 0; i < ARRAY_SIZE(tables); i++) {
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='%s'",
			 tables[i]);
		assert_int_equal(raw_int(f->path, sql), 1);
	}
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"), (long long) n);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_journal_mode WHERE "
					  "journal_mode='wal'"),
			 1);
}

static void test_reopen_noop(void **state)
{
	struct fixture *f = *state;
	struct fgw_store *s;
	long long objects;

	assert_int_equal(fgw_store_open(f->path, 1000, &s), 0);
	assert_int_equal(fgw_store_migrate(s, NULL, 0), 0);
	s = fgw_store_free(s);
	objects = raw_int(f->path, "SELECT count(*) FROM sqlite_master");
	assert_int_equal(fgw_store_open(f->path, 1000, &s), 0);
	assert_int_equal(fgw_store_migrate(s, NULL, 0), 0);
	s = fgw_store_free(s);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master"), objects);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM manifest_state"), 1);
}

static void test_newer_refused(void **state)
{
	struct fixture *f = *state;
	struct fgw_store *s;
	size_t n;

	fgw_store_builtin_migrations(&n);
	assert_int_equal(fgw_store_open(f->path, 1000, &s), 0);
	assert_int_equal(fgw_store_migrate(s, NULL, 0), 0);
	s = fgw_store_free(s);
	{
		sqlite3 *db;
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %zu", n + 1);
		assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	assert_int_equal(fgw_store_open(f->path, 1000, &s), 0);
	assert_int_equal(fgw_store_migrate(s, NULL, 0), -EPROTONOSUPPORT);
	assert_non_null(strstr(fgw_store_errmsg(s), "newer"));
	s = fgw_store_free(s);
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"), (long long) n + 1);
}

static void test_failing_migration(void **state)
{
	struct fixture *f = *state;
	struct fgw_store *s;
	/* The second one creates a table and then fails: the table must not survive. */
	const struct fgw_migration m[] = {
	    {1, "0001_a.sql", "CREATE TABLE a (x INTEGER);"},
	    {2, "0002_b.sql", "CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);"},
	};

	assert_int_equal(fgw_store_open(f->path, 1000, &s), 0);
	assert_int_equal(fgw_store_migrate(s, m, 2), -EBADMSG);
	assert_non_null(strstr(fgw_store_errmsg(s), "0002_b.sql"));
	assert_int_equal(fgw_store_version(s), 1);
	s = fgw_store_free(s);
	assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name='a'"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name='b'"), 0);

	/* Fixed migration: the next open continues from version 1. */
	const struct fgw_migration fixed[] = {
	    m[0],
	    {2, "0002_b.sql", "CREATE TABLE b (x INTEGER);"},
	};
	assert_int_equal(fgw_store_open(f->path, 1000, &s), 0);
	assert_int_equal(fgw_store_migrate(s, fixed, 2), 0);
	assert_int_equal(fgw_store_version(s), 2);
	s = fgw_store_free(s);
}

static void test_out_of_order(void **state)
{
	struct fixture *f = *state;
	struct fgw_store *s;
	const struct fgw_migration m[] = {{2, "0002_x.sql", "SELECT 1;"}};

	assert_int_equal(fgw_store_open(f->path, 1000, &s), 0);
	assert_int_equal(fgw_store_migrate(s, m, 1), -EINVAL);
	assert_int_equal(fgw_store_version(s), 0);
	s = fgw_store_free(s);
}

static void test_not_a_database(void **state)
{
	struct fixture *f = *state;
	struct fgw_store *s = NULL;
	FILE *fp = fopen(f->path, "w");

	fputs("this is not an SQLite database, it is a text file that is long enough\n", fp);
	fclose(fp);
	assert_int_equal(fgw_store_open(f->path, 1000, &s), -ENOTRECOVERABLE);
	assert_null(s);
}

static void test_unopenable(void **state)
{
	struct fgw_store *s = NULL;

	assert_true(fgw_store_open("/nonexistent-dir/x.db", 1000, &s) < 0);
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fresh, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_noop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_newer_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failing_migration, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unopenable, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
