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
	int version;	  /* 1, 2, 3 ... contiguous */
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
/*
 * Opens the database read-only and immutable, for a database whose file system became
 * read-only: everything can be read, every write fails. The schema is not touched.
 */
int fgw_store_open_read_only(const char *path, struct fgw_store **ret);
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
struct fgw_store_device_rec {
	char address[40];  /* "AA:BB:CC:DD:EE:FF" or "udp:HOST:PORT" */
	char transport[8]; /* "ble" or "udp" */
	char name[64];
	int rssi;
	bool has_rssi;
	int64_t last_seen; /* wall ms, 0 never */
	char board[64];
	char grp[64];
	int bootloader_mode; /* MCUboot mode as reported, -1 unknown */
	bool enrolled;
	char enrolled_board[64]; /* given at enrollment, "" none */
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
			 struct fgw_store_device_rec *ret);

/*
 * ---- Enrollment (store-enroll.c, migration 0004) ----
 * An enrolled device is one the operator told the gateway about; with [fleet] enrollment =
 * allowlist only those get jobs. Per-device passkeys live in their own table
 * (device_passkeys), read only by fgw_store_device_passkey_get() for the pairing agent.
 */
struct fgw_store_enrollment {
	char address[40];
	char board[64]; /* "" none */
	char grp[64];	/* "" the device keeps its group (a new one gets the default) */
	char label[64]; /* "" none */
	bool has_passkey;
	uint32_t passkey; /* 0..999999 */
};
/*
 * Enrolls every one of @e (devices not seen yet are created), with an "enrolled" event each,
 * in one transaction: all or nothing. A passkey replaces the stored one; without one the
 * stored one is kept. -EINVAL for a passkey above 999999.
 */
int fgw_store_devices_enroll(struct fgw_store *s, const struct fgw_store_enrollment *e, size_t n,
			     const char *default_group, int64_t now);
/* Forgets @address: its row, slots, jobs and passkey (events stay, with a "forgotten" one).
 * -ENOENT if unknown. */
int fgw_store_device_forget(struct fgw_store *s, const char *address, int64_t now);
/* The device's own passkey: 0, -ENOENT when it has none. */
int fgw_store_device_passkey_get(struct fgw_store *s, const char *address, uint32_t *ret);
/* How many devices have their own passkey, or -errno. */
int fgw_store_device_passkeys_count(struct fgw_store *s);
/*
 * Forgets unenrolled devices without an unfinished job: those last seen before @before, then
 * the least recently seen beyond @max. @cb gets each address before it goes. Returns how many.
 */
int fgw_store_unenrolled_prune(struct fgw_store *s, int64_t before, unsigned max,
			       void (*cb)(const char *address, void *ud), void *ud);

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
	char version[48];
	char hash[65];	/* hex SHA-256 TLV, "" if unknown */
	unsigned flags; /* FGW_STORE_IMG_* */
};

/* Replaces everything known about the device's slots, in one transaction. */
int fgw_store_device_images_set(struct fgw_store *s, const char *address,
				const struct fgw_store_image *images, size_t n, int64_t now);
/* Calls @cb for each stored slot of the device, ordered by image, slot. */
int fgw_store_device_slots_foreach(struct fgw_store *s, const char *address,
				   void (*cb)(const struct fgw_store_image *img, void *ud),
				   void *ud);

struct fgw_store_job_rec {
	int64_t id;
	char address[40];
	char release_id[64];
	char state[16]; /* a jobs.state value, see migrations/0001_init.sql */
	int image;	/* image being uploaded, -1 none */
	int64_t offset; /* last persisted upload offset of @image */
	int attempts;
	int64_t next_attempt_at; /* wall ms, 0 now */
	char reason[256];
	bool canary;
	unsigned images_mask; /* bit i: image i is part of this job */
	char app_result[16];  /* "verified" or "" */
	char net_result[16];  /* "verified", "unverified" or "" */
	int64_t created_at, updated_at, started_at, finished_at;
	unsigned distrust_slots; /* bit i: image i failed the device's check, erase its slot */
	bool enrolled;		 /* its device's, at the time of reading */
};

/*
 * The job of @address for @release_id, created in state "queued" if there is none (with an
 * event). *ret_created says which. Never creates a second job for the same pair.
 */
int fgw_store_job_ensure(struct fgw_store *s, const char *address, const char *release_id,
			 bool canary, int64_t now, struct fgw_store_job_rec *ret,
			 bool *ret_created);
int fgw_store_job_get(struct fgw_store *s, int64_t id, struct fgw_store_job_rec *ret);

/* A device that could get a job, as fgw_store_jobs_create() offers it (strings borrowed). */
struct fgw_store_job_new {
	const char *address, *transport, *grp; /* grp NULL: none */
	bool enrolled;
	bool canary; /* set by the callback */
};
/*
 * Offers @cb every device without a job for @release_id, in address order; @cb returns 1 to
 * create one (state "queued", canary as it set, with an event), 0 to pass, < 0 to stop. All in
 * one transaction, rolled back if anything fails. Returns the number of jobs created.
 */
int fgw_store_jobs_create(struct fgw_store *s, const char *release_id, int64_t now,
			  int (*cb)(struct fgw_store_job_new *jn, void *ud), void *ud);

/*
 * Moves job @id from @from to @to and appends a "job-state" event with @detail, in one
 * transaction. @reason (NULL keeps it; a job leaving a terminal state loses its old one) is
 * stored on the job. started_at is set on the first
 * move out of "queued"; finished_at when @to is terminal (done, skipped, reverted, failed,
 * superseded). -ESTALE if the job was not in @from (nothing written).
 */
int fgw_store_job_set_state(struct fgw_store *s, int64_t id, const char *from, const char *to,
			    const char *reason, const char *detail, int64_t now);
/*
 * A batch: the writes that follow share one transaction (one commit, the costly part of a
 * small write), committed by the next fgw_store_job_set_state() — so a transition is still
 * stored before its caller acts on it — or by fgw_store_batch_end(), whichever comes first.
 * A write that fails inside a batch undoes only itself; a transition that fails still commits
 * the writes before it. For the writes of one loop callback: never hold one across callbacks.
 * -EALREADY if a batch is open (its owner ends it); batch_end is 0 when none is open.
 */
int fgw_store_batch_begin(struct fgw_store *s);
int fgw_store_batch_end(struct fgw_store *s);
/* Upload progress; no event (the caller batches these). */
int fgw_store_job_set_progress(struct fgw_store *s, int64_t id, int image, int64_t offset,
			       int64_t now);
/* Retry bookkeeping: attempts and the earliest next attempt. */
int fgw_store_job_set_retry(struct fgw_store *s, int64_t id, int attempts, int64_t next_attempt_at,
			    int64_t now);
int fgw_store_job_set_plan(struct fgw_store *s, int64_t id, unsigned images_mask, int64_t now);
/* Images whose slot must be erased, not trusted, at the next attempt (bit i: image i). */
int fgw_store_job_set_distrust(struct fgw_store *s, int64_t id, unsigned mask, int64_t now);
int fgw_store_job_set_results(struct fgw_store *s, int64_t id, const char *app_result,
			      const char *net_result, int64_t now);
/*
 * Calls @cb for each job of @release_id (NULL: all releases), unfinished ones only if
 * @unfinished_only, ordered by id. @cb returns < 0 to stop (that value is returned).
 */
int fgw_store_jobs_foreach(struct fgw_store *s, const char *release_id, bool unfinished_only,
			   int (*cb)(const struct fgw_store_job_rec *job, void *ud), void *ud);
/*
 * Marks every queued job of releases other than @release_id as "superseded" (with events), in
 * one transaction; returns how many. Jobs already past "queued" are left to finish.
 */
int fgw_store_jobs_supersede(struct fgw_store *s, const char *release_id, int64_t now);

/* Appends an event; @job_id 0 for none, @address may be NULL. */
int fgw_store_event_add(struct fgw_store *s, const char *address, int64_t job_id, const char *kind,
			const char *detail, int64_t now);

/*
 * Rollout control of a release; a release without a row is not halted. @by and @reason are
 * kept with either state (who halted it and why, or who resumed it).
 */
int fgw_store_rollout_state(struct fgw_store *s, const char *release_id, bool *ret_halted,
			    char *ret_by, size_t by_size, char *ret_reason, size_t reason_size);
int fgw_store_rollout_set(struct fgw_store *s, const char *release_id, bool halted, const char *by,
			  const char *reason, int64_t now);

/*
 * ---- Read-only queries for the REST API (store-query.c) ----
 *
 * Short single statements (no explicit transaction), so a reader never holds up the fleet's
 * writes. Rows are streamed through callbacks; every string in a row is borrowed from SQLite
 * and valid only during the callback (NULL where the column is NULL). Integer columns that
 * may be NULL read FGW_STORE_NULL. A callback returns 0 to go on or a negative errno to stop;
 * the query then returns that value. Otherwise queries return the number of rows delivered,
 * or -errno (message in fgw_store_errmsg()).
 *
 * A device's "state" is the state of its job for the release in view (by default the
 * current release: the newest verified one by manifest sequence), or "idle" without one.
 */
#include <stdbool.h>
#include <stdint.h>

#define FGW_STORE_NULL INT64_MIN

struct fgw_store_job {
	int64_t id; /* FGW_STORE_NULL: no job, every other field is NULL too */
	const char *release_id;
	const char *state;
	int64_t image; /* image being uploaded */
	int64_t offset;
	int64_t attempts;
	int64_t next_attempt_at;
	const char *reason;
	int64_t canary; /* 0/1 */
	int64_t images_mask;
	const char *app_result, *net_result;
	int64_t created_at, updated_at, started_at, finished_at;
};

struct fgw_store_device {
	const char *address;
	const char *transport;
	const char *name;
	int64_t rssi;
	int64_t last_seen;
	const char *board;
	const char *group;
	int64_t bootloader_mode;
	int64_t created_at;
	const char *state; /* job state, "idle", or "unenrolled" without one; never NULL */
	bool enrolled;
	const char *label;	    /* given at enrollment, or NULL */
	const char *enrolled_board; /* given at enrollment, or NULL; @board is the device's own */
	struct fgw_store_job job;
};

struct fgw_store_release {
	const char *id;
	int64_t sequence;
	const char *version;
	const char *board;
	const char *groups_json;
	const char *policy_json;
	const char *bundle_url;
	const char *bundle_sha256;
	int64_t bundle_size;
	const char *state;
	const char *reason;
	int64_t created_at;
	int64_t verified_at;
};

struct fgw_store_device_image {
	int64_t image, slot;
	const char *version;
	const char *hash;
	int64_t flags;
	int64_t read_at;
};

struct fgw_store_event {
	int64_t id;
	int64_t at;
	const char *address;
	int64_t job_id;
	const char *kind;
	const char *from_state, *to_state;
	const char *detail;
};

struct fgw_store_rollout {
	const char *release_id;
	bool halted;
	const char *halted_by;
	const char *halted_reason;
	int64_t updated_at;
};

struct fgw_store_manifest_state {
	int64_t sequence;
	const char *etag;
	int64_t last_poll_at;
	const char *last_result;
};

/* The device filter for fgw_store_devices_query(). Every field is optional. */
struct fgw_store_device_filter {
	/* Release in view; NULL: the current release. When set, only devices with a job for it. */
	const char *release_id;
	/* Only devices in one of these states ("idle" included); NULL/0: any state. */
	const char *const *states;
	size_t n_states;
	const char *group; /* only this rollout group */
	const char *after; /* pagination: only addresses sorting after this one */
	unsigned limit;	   /* at most this many rows; 0: no limit */
};

typedef int (*fgw_store_device_cb_t)(const struct fgw_store_device *d, void *user_data);
typedef int (*fgw_store_release_cb_t)(const struct fgw_store_release *r, void *user_data);
typedef int (*fgw_store_image_cb_t)(const struct fgw_store_device_image *img, void *user_data);
typedef int (*fgw_store_event_cb_t)(const struct fgw_store_event *e, void *user_data);
/* One (state, canary, count) group: @canary is 0 or 1. */
typedef int (*fgw_store_count_cb_t)(const char *key, int64_t canary, int64_t count,
				    void *user_data);

/* The job states the schema allows, in lifecycle order, then "idle" and "unenrolled";
 * NULL-terminated. */
const char *const *fgw_store_device_states(void);

/* The current release (newest verified). 0 with @cb called once, or -ENOENT if none. */
int fgw_store_current_release(struct fgw_store *s, fgw_store_release_cb_t cb, void *user_data);
/* Every release, newest sequence first. */
int fgw_store_releases_foreach(struct fgw_store *s, fgw_store_release_cb_t cb, void *user_data);
/* Devices matching @f in address order (stable; the pagination key). */
int fgw_store_devices_query(struct fgw_store *s, const struct fgw_store_device_filter *f,
			    fgw_store_device_cb_t cb, void *user_data);
/* One device, with its job for @release_id (NULL: current release). 0, or -ENOENT. */
int fgw_store_device_find(struct fgw_store *s, const char *address, const char *release_id,
			  fgw_store_device_cb_t cb, void *user_data);
/* What the device last reported about its image slots, by image then slot. */
int fgw_store_device_images_foreach(struct fgw_store *s, const char *address,
				    fgw_store_image_cb_t cb, void *user_data);
/* The device's last @limit events, newest first. */
int fgw_store_device_events_foreach(struct fgw_store *s, const char *address, unsigned limit,
				    fgw_store_event_cb_t cb, void *user_data);
/* The last @limit events of every device and of the gateway itself, newest first. */
int fgw_store_events_recent(struct fgw_store *s, unsigned limit, fgw_store_event_cb_t cb,
			    void *user_data);
/*
 * Devices per state for @release_id (NULL: no release, so every device is "idle"), split
 * by canary. States with no device are not reported.
 */
int fgw_store_state_counts(struct fgw_store *s, const char *release_id, fgw_store_count_cb_t cb,
			   void *user_data);
/* Failed and reverted jobs of @release_id per reason (NULL reason reported as ""). */
int fgw_store_failure_reasons(struct fgw_store *s, const char *release_id, fgw_store_count_cb_t cb,
			      void *user_data);
/* Failed and reverted jobs of a release by "outcome/stage": outcome is failed or reverted,
 * stage the state the job left for it (or "unknown", "other"); a fixed set, for metrics. */
int fgw_store_failure_stages(struct fgw_store *s, const char *release_id, fgw_store_count_cb_t cb,
			     void *user_data);
/* The last @limit failed or reverted devices of @release_id, most recent first. */
int fgw_store_failures_foreach(struct fgw_store *s, const char *release_id, unsigned limit,
			       fgw_store_device_cb_t cb, void *user_data);
/* Releases per state (pending, verified, ...). */
int fgw_store_release_counts(struct fgw_store *s, fgw_store_count_cb_t cb, void *user_data);
/* The rollout control row of @release_id: 0 with @cb called, or -ENOENT. */
int fgw_store_rollout_get(struct fgw_store *s, const char *release_id,
			  int (*cb)(const struct fgw_store_rollout *r, void *user_data),
			  void *user_data);
/* The manifest poller's memory: 0 with @cb called, or -ENOENT. */
int fgw_store_manifest_state_get(struct fgw_store *s,
				 int (*cb)(const struct fgw_store_manifest_state *m,
					   void *user_data),
				 void *user_data);

/*
 * ---- Release pipeline records (store-release.c) ----
 *
 * Written by the release source (lib/release/release.h), read through the queries
 * above. A release row goes pending -> verified | rejected, and verified -> superseded; each
 * change is written with a "release" event (from/to state, reason) in one transaction.
 */

/*
 * Records an accepted manifest: its sequence (the rollback guard), ETag (NULL: none) and
 * @result. -ESTALE, and nothing written, if @sequence is below the stored one.
 */
int fgw_store_manifest_accept(struct fgw_store *s, int64_t sequence, const char *etag,
			      const char *result, int64_t now);
/* Records a poll that changed nothing ("not-modified", "rejected: expired", "error: ..."). */
int fgw_store_manifest_polled(struct fgw_store *s, const char *result, int64_t now);
/*
 * Inserts a release (state NULL: "pending") with an event. Fields used: id, sequence,
 * version, board, groups_json, policy_json, bundle_url, bundle_sha256, bundle_size, state,
 * reason. -EEXIST if the id is known.
 */
int fgw_store_release_insert(struct fgw_store *s, const struct fgw_store_release *rel, int64_t now);
/*
 * A newer manifest lists a known release again: updates sequence, version, board, groups,
 * policy and URL. -ENOENT unless the id exists with the same bundle_sha256 and bundle_size.
 */
int fgw_store_release_update(struct fgw_store *s, const struct fgw_store_release *rel, int64_t now);
/* One release by id: 0 with @cb called once (strings borrowed during the call), or -ENOENT. */
int fgw_store_release_get(struct fgw_store *s, const char *id, fgw_store_release_cb_t cb,
			  void *user_data);
/*
 * Moves a release to @state with @reason (NULL clears it); "verified" also stores
 * @bundle_path and verified_at. Appends a "release" event. -ENOENT if unknown.
 */
int fgw_store_release_set_state(struct fgw_store *s, const char *id, const char *state,
				const char *reason, const char *bundle_path, int64_t now);
/*
 * Marks verified releases other than @keep_id as "superseded": those for @board (and those
 * without a board), or all if @board is NULL. Returns how many.
 */
int fgw_store_releases_supersede(struct fgw_store *s, const char *keep_id, const char *board,
				 int64_t now);

/* ---- identity (store-identity.c) ---- */

/*
 * bluetoothd resolved the device met as @old_addr (a resolvable private address) to its
 * identity @new_addr. In one transaction its row, jobs, images, passkey and events become
 * @new_addr's, with a "device-identity-resolved" event. If @new_addr has a row already
 * (enrolled by identity), that row keeps its enrollment fields and takes the rest; a job of
 * the same release under @old_addr replaces its own. 1 merged, 0 renamed or nothing to do
 * (same address), -ENOENT when @old_addr has no row.
 */
int fgw_store_device_identity_resolved(struct fgw_store *s, const char *old_addr,
				       const char *new_addr, int64_t now);

/* ---- link security (store-security.c) ---- */

/*
 * The security a device's SMP service needed: "unknown", "none", "encrypted" or
 * "authenticated" into @buf. -ENOENT for a device not in the registry.
 */
int fgw_store_device_security_get(struct fgw_store *s, const char *address, char *buf, size_t size);
/* Records it; -EINVAL for another level, -ENOENT for a device not in the registry. */
int fgw_store_device_security_set(struct fgw_store *s, const char *address, const char *level);

/* ---- retention (store-retention.c) ---- */

/* What is kept; 0 in a field: no limit of that kind. */
struct fgw_store_retention {
	int64_t events_max_age_ms;  /* events older than this go */
	int64_t events_max;	    /* beyond the newest this many events, the oldest go */
	int64_t jobs_max_age_ms;    /* finished jobs of releases not in force, by finished_at */
	int64_t devices_max_age_ms; /* BLE devices not seen for this long, every job finished */
};

struct fgw_store_pruned {
	int64_t events, jobs, devices; /* rows deleted by one call */
};

/*
 * One bounded pruning step in one transaction: at most @batch events, @batch jobs and @batch
 * devices. Never deletes a job that is not finished, a finished job of a verified release
 * (it keeps the device from getting a new job for it), a device with an unfinished job
 * (queued included), an enrolled device, or a UDP device (configured, not discovered). A
 * device that goes takes
 * its slots and finished jobs with it (events keep its address).
 * Call again while a kind came back full. 0, or -errno (nothing deleted).
 */
int fgw_store_prune(struct fgw_store *s, const struct fgw_store_retention *rt, int64_t now,
		    unsigned batch, struct fgw_store_pruned *ret);
