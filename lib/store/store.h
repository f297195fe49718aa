/*
 * store: the gateway's memory, one SQLite file. Opening it sets WAL, foreign keys,
 * synchronous=NORMAL and a busy timeout, then brings the schema up to date by applying the
 * migrations (migrations/NNNN_name.sql, compiled in) in order, each in its own transaction
 * that also records PRAGMA user_version, so a migration is applied whole or not at all. A
 * database newer than this build knows is refused, never touched. Only this part includes
 * <sqlite3.h>; other parts go through the functions declared here.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/*
 * ---- Fleet records: devices, their image slots, jobs, events, rollout control ----
 * (lib/store/store-fleet.c). Every function is one short statement or one transaction; none
 * holds a transaction across calls. Strings are copied into fixed fields, truncated safely.
 */
struct fgw_store_device {
	char address[40];  /* "AA:BB:CC:DD:EE:FF" or "udp:HOST:PORT" */
	char transport[8]; /* "ble" or "udp" */
	char name[64];
	int rssi;
	bool has_rssi;
	int64_t last_seen; /* wall ms, 0 never */
	char board[64];
	char grp[64];
	int bootloader_mode; /* MCUboot mode as reported, -1 unknown */
};

/* Records a sighting: creates the device or updates name (if not NULL), RSSI, last_seen. */
int fgw_store_device_seen(struct fgw_store *s, const char *address, const char *transport,
			  const char *name, const int *rssi, int64_t now);
/* What probing learned: board (NULL keeps it) and bootloader mode (-1 unknown). */
int fgw_store_device_set_probe(struct fgw_store *s, const char *address, const char *board,
			       int bootloader_mode);
int fgw_store_device_set_group(struct fgw_store *s, const char *address, const char *grp);
/* -ENOENT if unknown. */
int fgw_store_device_get(struct fgw_store *s, const char *address,
			 struct fgw_store_device *ret);

enum {
	FGW_STORE_IMG_ACTIVE = 1 << 0,
	FGW_STORE_IMG_CONFIRMED = 1 << 1,
	FGW_STORE_IMG_PENDING = 1 << 2,
	FGW_STORE_IMG_PERMANENT = 1 << 3,
	FGW_STORE_IMG_BOOTABLE = 1 << 4,
};

struct fgw_store_image {
	int image; /* 0 app core, 1 net core */
	int slot;  /* 0 primary, 1 secondary */
	char version[32];
	char hash[65]; /* hex SHA-256 TLV, "" if unknown */
	unsigned flags; /* FGW_STORE_IMG_* */
};

/* Replaces everything known about the device's slots, in one transaction. */
int fgw_store_device_images_set(struct fgw_store *s, const char *address,
				const struct fgw_store_image *images, size_t n, int64_t now);
/* Calls @cb for each stored slot of the device, ordered by image, slot. */
int fgw_store_device_images_foreach(struct fgw_store *s, const char *address,
				    void (*cb)(const struct fgw_store_image *img, void *ud),
				    void *ud);

struct fgw_store_job {
	int64_t id;
	char address[40];
	char release_id[64];
	char state[16]; /* a jobs.state value, see migrations/0001_init.sql */
	int image;      /* image being uploaded, -1 none */
	int64_t offset; /* last persisted upload offset of @image */
	int attempts;
	int64_t next_attempt_at; /* wall ms, 0 now */
	char reason[256];
	bool canary;
	unsigned images_mask; /* bit i: image i is part of this job */
	char app_result[16];  /* "verified" or "" */
	char net_result[16];  /* "verified", "unverified" or "" */
	int64_t created_at, updated_at, started_at, finished_at;
};

/*
 * The job of @address for @release_id, created in state "queued" if there is none (with an
 * event). *ret_created says which. Never creates a second job for the same pair.
 */
int fgw_store_job_ensure(struct fgw_store *s, const char *address, const char *release_id,
			 bool canary, int64_t now, struct fgw_store_job *ret, bool *ret_created);
int fgw_store_job_get(struct fgw_store *s, int64_t id, struct fgw_store_job *ret);

/*
 * Moves job @id from @from to @to and appends a "job-state" event with @detail, in one
 * transaction. @reason (NULL keeps it) is stored on the job. started_at is set on the first
 * move out of "queued"; finished_at when @to is terminal (done, skipped, reverted, failed,
 * superseded). -ESTALE if the job was not in @from (nothing written).
 */
int fgw_store_job_set_state(struct fgw_store *s, int64_t id, const char *from, const char *to,
			    const char *reason, const char *detail, int64_t now);
/* Upload progress; no event (the caller batches these). */
int fgw_store_job_set_progress(struct fgw_store *s, int64_t id, int image, int64_t offset,
			       int64_t now);
/* Retry bookkeeping: attempts and the earliest next attempt. */
int fgw_store_job_set_retry(struct fgw_store *s, int64_t id, int attempts,
			    int64_t next_attempt_at, int64_t now);
int fgw_store_job_set_plan(struct fgw_store *s, int64_t id, unsigned images_mask, int64_t now);
int fgw_store_job_set_results(struct fgw_store *s, int64_t id, const char *app_result,
			      const char *net_result, int64_t now);
/*
 * Calls @cb for each job of @release_id (NULL: all releases), unfinished ones only if
 * @unfinished_only, ordered by id. @cb returns < 0 to stop (that value is returned).
 */
int fgw_store_jobs_foreach(struct fgw_store *s, const char *release_id, bool unfinished_only,
			   int (*cb)(const struct fgw_store_job *job, void *ud), void *ud);
/*
 * Marks every queued job of releases other than @release_id as "superseded" (with events), in
 * one transaction; returns how many. Jobs already past "queued" are left to finish.
 */
int fgw_store_jobs_supersede(struct fgw_store *s, const char *release_id, int64_t now);

/* Appends an event; @job_id 0 for none, @address may be NULL. */
int fgw_store_event_add(struct fgw_store *s, const char *address, int64_t job_id,
			const char *kind, const char *detail, int64_t now);

/* Rollout control of a release; a release without a row is not halted. */
int fgw_store_rollout_get(struct fgw_store *s, const char *release_id, bool *ret_halted,
			  char *ret_by, size_t by_size, char *ret_reason, size_t reason_size);
int fgw_store_rollout_set(struct fgw_store *s, const char *release_id, bool halted,
			  const char *by, const char *reason, int64_t now);
