/*
 * A store in a fresh temporary directory for the unit tests: created and migrated, seeded (when
 * asked) through a connection of its own, as the fleet writes beside the API, and removed with
 * everything in it.
 */
#pragma once

struct fgw_store;

/* mkdtemp("/tmp/@prefix-XXXXXX") into @dir, the store at @dir/t.db (its path into @path),
 * @seed_sql (NULL: none) run on it. 0, or -1 (the reason on stderr). */
int tmp_store_open(const char *prefix, char dir[64], char path[128], const char *seed_sql,
		   struct fgw_store **ret_s);
/* Runs @sql on the database at @path through a connection of its own. 0, or -1. */
int tmp_store_exec(const char *path, const char *sql);
/* Frees @s (NULL ok) and removes @dir. */
void tmp_store_remove(struct fgw_store *s, const char *dir);
