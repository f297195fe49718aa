/* The unit tests' temporary store of store-tmp.h. */
#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "store-tmp.h"
#include "store.h"

int tmp_store_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	int rc;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		fprintf(stderr, "seed: %s\n", sqlite3_errmsg(db));
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

int tmp_store_open(const char *prefix, char dir[64], char path[128], const char *seed_sql,
		   struct fgw_store **ret_s)
{
	snprintf(dir, 64, "/tmp/%s-XXXXXX", prefix);
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, 128, "%s/t.db", dir);
	if (fgw_store_open(path, 1000, ret_s) < 0 || fgw_store_migrate(*ret_s, NULL, 0) < 0)
		return -1;
	return seed_sql ? tmp_store_exec(path, seed_sql) : 0;
}

void tmp_store_remove(struct fgw_store *s, const char *dir)
{
	char cmd[128];

	fgw_store_free(s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void) !system(cmd);
}
