#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store-private.h"
#include "util.h"

static int sqlite_to_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return -ENOTRECOVERABLE;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	default:
		return -EIO;
	}
}

static int remember(struct fgw_store *s, int rc)
{
	snprintf(s->errmsg, sizeof(s->errmsg), "%s", sqlite3_errmsg(s->db));
	return sqlite_to_errno(rc);
}

static int exec(struct fgw_store *s, const char *sql)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : remember(s, rc);
}

int fgw_store__errno(int rc)
{
	return sqlite_to_errno(rc);
}

int fgw_store__fail(struct fgw_store *s, int rc)
{
	return remember(s, rc);
}

int fgw_store__exec(struct fgw_store *s, const char *sql)
{
	return exec(s, sql);
}

static uint32_t sql_hash(const char *sql)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const unsigned char *c = (const unsigned char *) sql; *c; c++)
		h = (h ^ *c) * 16777619u;
	return h;
}

/* The slot a new statement goes to: an empty one, else the least recently used idle one. */
static struct fgw_store_stmt *cache_victim(struct fgw_store *s)
{
	struct fgw_store_stmt *v = NULL;

	for (size_t i = 0; i < FGW_STORE_STMT_CACHE; i++) {
		struct fgw_store_stmt *e = &s->cache[i];
		if (!e->st)
			return e;
		if (!e->busy && (!v || e->used < v->used))
			v = e;
	}
	return v;
}

int fgw_store__prepare(struct fgw_store *s, const char *sql, sqlite3_stmt **ret)
{
	uint32_t h = sql_hash(sql);
	struct fgw_store_stmt *e;
	int rc;

	for (size_t i = 0; i < FGW_STORE_STMT_CACHE; i++) {
		e = &s->cache[i];
		if (e->st && !e->busy && e->hash == h && strcmp(sqlite3_sql(e->st), sql) == 0) {
			e->busy = true;
			e->used = ++s->clock;
			*ret = e->st;
			return 0;
		}
	}
	rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL);
	if (rc != SQLITE_OK)
		return remember(s, rc);
	s->n_prepared++;
	e = cache_victim(s);
	if (e) { /* else every slot is in use: this one is finalized after its use */
		sqlite3_finalize(e->st);
		*e = (struct fgw_store_stmt){
		    .st = *ret, .hash = h, .busy = true, .used = ++s->clock};
	}
	return 0;
}

void fgw_store__warm(struct fgw_store *s, const char *sql)
{
	sqlite3_stmt *st;

	/* A statement that does not compile now fails, and says why, when it is used. */
	if (fgw_store__prepare(s, sql, &st) == 0)
		fgw_store__finish(s, st);
}

void fgw_store__finish(struct fgw_store *s, sqlite3_stmt *st)
{
	for (size_t i = 0; i < FGW_STORE_STMT_CACHE; i++)
		if (s->cache[i].st == st) {
			/* A reset statement holds no read snapshot, so the WAL can checkpoint. */
			(void) sqlite3_reset(st);
			(void) sqlite3_clear_bindings(st);
			s->cache[i].busy = false;
			return;
		}
	sqlite3_finalize(st);
}

static void cache_clear(struct fgw_store *s)
{
	for (size_t i = 0; i < FGW_STORE_STMT_CACHE; i++) {
		sqlite3_finalize(s->cache[i].st);
		s->cache[i] = (struct fgw_store_stmt){0};
	}
}

int fgw_store__step_done(struct fgw_store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	int r = rc == SQLITE_DONE ? 0 : remember(s, rc);

	fgw_store__finish(s, st);
	return r;
}

void fgw_store__bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

/* BEGIN, COMMIT and ROLLBACK through the cache too: sqlite3_exec compiles them each time. */
static int exec_cached(struct fgw_store *s, const char *sql)
{
	sqlite3_stmt *st;
	int r = fgw_store__prepare(s, sql, &st);

	return r < 0 ? r : fgw_store__step_done(s, st);
}

/* A batch's transaction ended under it when SQLite rolled it back whole (I/O error, full). */
static bool batch_open(struct fgw_store *s)
{
	if (s->batch_tx && sqlite3_get_autocommit(s->db)) {
		s->batch_tx = false;
		s->batch_lost = true;
	}
	return s->batch_tx;
}

/* A batch opens its transaction at its first write: most answers write nothing. */
int fgw_store__batch_join(struct fgw_store *s)
{
	if (!s->batch || batch_open(s) || s->batch_lost)
		return 0;
	int r = exec_cached(s, "BEGIN IMMEDIATE");
	s->batch_tx = r == 0;
	return r;
}

int fgw_store__begin(struct fgw_store *s)
{
	(void) fgw_store__batch_join(s);
	/* Inside a batch a transaction is a savepoint: its failure undoes only its own writes. */
	return exec_cached(s, batch_open(s) ? "SAVEPOINT step" : "BEGIN IMMEDIATE");
}

int fgw_store__end(struct fgw_store *s, int r)
{
	if (batch_open(s)) {
		if (r < 0)
			(void) exec_cached(s, "ROLLBACK TO step");
		int c = exec_cached(s, "RELEASE step");
		return r < 0 || c == 0 ? r : c;
	}
	if (r >= 0) {
		int c = exec_cached(s, "COMMIT");
		if (c == 0)
			return r;
		r = c;
	}
	/* Without a transaction (COMMIT failed and ended it) there is nothing to roll back. */
	if (!sqlite3_get_autocommit(s->db))
		(void) exec_cached(s, "ROLLBACK");
	return r;
}

FGW_EXPORT int fgw_store_batch_begin(struct fgw_store *s)
{
	if (s->batch)
		return -EALREADY;
	s->batch = true;
	s->batch_lost = false;
	return 0;
}

FGW_EXPORT int fgw_store_batch_end(struct fgw_store *s)
{
	bool open, lost;

	if (!s->batch)
		return 0;
	open = batch_open(s);
	lost = s->batch_lost;
	s->batch = s->batch_lost = false;
	if (!open) /* -EIO: rolled back whole by SQLite; the write that failed said why */
		return lost ? -EIO : 0;
	s->batch_tx = false;
	return fgw_store__end(s, 0);
}

void fgw_store__col_text(sqlite3_stmt *st, int col, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	snprintf(buf, size, "%s", t ? (const char *) t : "");
}

static int read_user_version(sqlite3 *db, int *ret)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sqlite_to_errno(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : sqlite_to_errno(rc);
}

FGW_EXPORT const char *fgw_store_errmsg(struct fgw_store *s)
{
	return s ? s->errmsg : "no store";
}

FGW_EXPORT int fgw_store_version(struct fgw_store *s)
{
	int v = -1;

	return read_user_version(s->db, &v) < 0 ? -EIO : v;
}

static int apply_migration(struct fgw_store *s, const struct fgw_migration *m)
{
	char pragma[64];
	int r;

	/* IMMEDIATE: take the write lock first so two starting daemons cannot both migrate. */
	r = exec(s, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	r = exec(s, m->sql);
	if (r == 0) {
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
		r = exec(s, pragma);
	}
	if (r == 0)
		r = exec(s, "COMMIT");
	if (r < 0) {
		char why[256];
		memcpy(why, s->errmsg, sizeof(why));
		(void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		snprintf(s->errmsg, sizeof(s->errmsg), "migration %s: %.200s", m->name, why);
		return -EBADMSG;
	}
	return 0;
}

static int migrate(struct fgw_store *s, const struct fgw_migration *m, size_t n)
{
	int version, r;

	r = read_user_version(s->db, &version);
	if (r < 0)
		return remember(s, SQLITE_ERROR);
	if (version > (int) n) {
		snprintf(s->errmsg, sizeof(s->errmsg),
			 "database schema version %d is newer than the %zu this build knows",
			 version, n);
		return -EPROTONOSUPPORT;
	}
	for (size_t i = (size_t) version; i < n; i++) {
		if (m[i].version != (int) i + 1) {
			snprintf(s->errmsg, sizeof(s->errmsg), "migration %s out of order",
				 m[i].name);
			return -EINVAL;
		}
		r = apply_migration(s, &m[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The database's directory cannot be written (read-only mount, or no permission). */
static bool path_read_only(const char *path)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash;
	struct statvfs v;

	if (!dir)
		return false;
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		strcpy(dir, ".");
	/* A directory that does not exist is not read-only: that is another error. */
	return statvfs(dir, &v) == 0 && ((v.f_flag & ST_RDONLY) || access(dir, W_OK) < 0);
}

FGW_EXPORT int fgw_store_migrate(struct fgw_store *s, const struct fgw_migration *migrations,
				 size_t n_migrations)
{
	bool builtin = !migrations;
	int r;

	if (builtin)
		migrations = fgw_store_builtin_migrations(&n_migrations);
	r = migrate(s, migrations, n_migrations);
	if (r == 0 && builtin) {
		static const char *const tx[] = {"BEGIN IMMEDIATE", "COMMIT", "SAVEPOINT step",
						 "RELEASE step"};
		for (size_t i = 0; i < ARRAY_SIZE(tx); i++)
			fgw_store__warm(s, tx[i]);
		fgw_store__fleet_warm(s);
	}
	return r;
}

FGW_EXPORT int fgw_store_open(const char *path, int busy_timeout_ms, struct fgw_store **ret)
{
	struct fgw_store *s;
	char *mode = NULL;
	int rc, r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	rc = sqlite3_open_v2(
	    path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = s->db ? remember(s, rc) : -ENOMEM;
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, busy_timeout_ms);

	/* journal_mode answers with the mode in force: a read-only or odd file may refuse WAL. */
	{
		sqlite3_stmt *st;
		rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
		if (rc != SQLITE_OK) {
			r = remember(s, rc);
			goto fail;
		}
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			mode = strdup((const char *) sqlite3_column_text(st, 0));
		else
			r = remember(s, rc);
		sqlite3_finalize(st);
		if (rc != SQLITE_ROW)
			goto fail;
		if (!mode || strcmp(mode, "wal") != 0) {
			snprintf(s->errmsg, sizeof(s->errmsg), "could not enable WAL (mode '%s')",
				 mode ? mode : "?");
			free(mode);
			r = -EIO;
			goto fail;
		}
		free(mode);
	}
	/* 512 KiB of page cache, not 2 MiB: the working set is a page of devices and the jobs. */
	r = exec(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; "
		    "PRAGMA cache_size = -512;");
	if (r < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	/*
	 * WAL needs its -shm and -wal files beside the database: on a read-only file system
	 * opening fails as "unable to open", which is no missing file. Say what it is.
	 */
	if ((r == -ENOENT || r == -EACCES || r == -EIO) && path_read_only(path)) {
		snprintf(s->errmsg, sizeof(s->errmsg), "database is on a read-only file system");
		r = -EROFS;
	}
	fgw_debug("store: open '%s' failed: %s", path, s->errmsg);
	sqlite3_close(s->db);
	free(s);
	return r;
}

FGW_EXPORT int fgw_store_open_read_only(const char *path, struct fgw_store **ret)
{
	struct fgw_store *s;
	char *uri;
	size_t n = 0;
	int rc;

	/* A URI, to say immutable: with no -wal/-shm beside it and no way to create them,
	 * SQLite opens a WAL database only so. Characters URIs reserve are escaped. */
	uri = malloc(strlen(path) * 3 + 32);
	if (!uri)
		return -ENOMEM;
	n += (size_t) sprintf(uri, "file:");
	for (const char *c = path; *c; c++)
		n += (size_t) (strchr("?#%", *c) ? sprintf(uri + n, "%%%02X", (unsigned char) *c)
						 : sprintf(uri + n, "%c", *c));
	sprintf(uri + n, "?immutable=1");
	s = calloc(1, sizeof(*s));
	if (!s) {
		free(uri);
		return -ENOMEM;
	}
	rc = sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
	free(uri);
	if (rc != SQLITE_OK) {
		int r = s->db ? remember(s, rc) : -ENOMEM;
		sqlite3_close(s->db);
		free(s);
		return r;
	}
	*ret = s;
	return 0;
}

FGW_EXPORT struct fgw_store *fgw_store_free(struct fgw_store *s)
{
	if (s) {
		cache_clear(s);
		sqlite3_close(s->db);
		free(s);
	}
	return NULL;
}

FGW_EXPORT int fgw_store_integrity_check(struct fgw_store *s)
{
	sqlite3_stmt *st;
	int rc, r = -EBADMSG;

	rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return remember(s, rc);
	if (sqlite3_step(st) == SQLITE_ROW &&
	    strcmp((const char *) sqlite3_column_text(st, 0), "ok") == 0)
		r = 0;
	sqlite3_finalize(st);
	return r;
}
