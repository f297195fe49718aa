/*
 * fleet: what turns the parts into the product. For the current release it keeps one job per
 * target device and drives each through connect, probe, upload of every image that differs,
 * mark (net core first), reset, reconnect after the device comes back, verify and confirm —
 * at most max_connections devices at once, canaries first, transient failures retried with
 * jittered exponential back-off, the rollout halted when too many fail. Every transition is
 * written to the store (with an event) before it is acted on, so a restart picks every job up
 * where the device says it is. The fleet does not know BlueZ: the daemon tells it which
 * devices it sees and gives it a function that makes a transport for an address.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct fgw_fleet;
struct fgw_store;
struct fgw_transport;

enum fgw_job_state {
	FGW_JOB_STATE_QUEUED,	  /* waiting for a connection slot, canaries or back-off */
	FGW_JOB_STATE_CONNECTING, /* transport opening (BLE: Connect, services, acquire) */
	FGW_JOB_STATE_PROBING,	  /* params, bootloader mode, image state; then the plan */
	FGW_JOB_STATE_UPLOADING,  /* image i from the offset the device reports */
	FGW_JOB_STATE_MARKING,	  /* test/confirm: net core first, then app core */
	FGW_JOB_STATE_RESETTING,  /* reset sent; the device is about to go away */
	FGW_JOB_STATE_REBOOTING,  /* waiting for the device to come back (ceiling timer) */
	FGW_JOB_STATE_VERIFYING,  /* reading image state after the reset */
	FGW_JOB_STATE_CONFIRMING, /* swap modes: confirming the test-booted image */
	FGW_JOB_STATE_DONE,	  /* running the release; verified as far as the device allows */
	FGW_JOB_STATE_SKIPPED,	  /* nothing to do: already running it, or not a target */
	FGW_JOB_STATE_REVERTED,	  /* the device went back to the old image */
	FGW_JOB_STATE_FAILED,	  /* gave up; the reason says why */
	FGW_JOB_STATE_SUPERSEDED, /* a newer release replaced this job before it started */
	_FGW_JOB_STATE_MAX,
	_FGW_JOB_STATE_INVALID = -22,
};

/* The names the store, the events and the API use ("queued", "uploading", ...). */
const char *fgw_job_state_to_string(enum fgw_job_state s);
enum fgw_job_state fgw_job_state_from_string(const char *s);
bool fgw_job_state_is_terminal(enum fgw_job_state s);

/*
 * One image of the release, as the fleet uploads it: a memfd sealed against writes, growth,
 * shrinking and further seals (lib/release), so the bytes uploaded are the bytes verified.
 * fgw_fleet_set_release() refuses a file without those seals (-EPERM) and maps it read-only;
 * the fd stays the caller's.
 */
struct fgw_fleet_image {
	bool present;
	int fd; /* the sealed MCUboot image, exactly @size bytes */
	uint64_t size;
	uint8_t file_sha[32]; /* SHA-256 of the @size bytes: the upload's `sha` */
	uint8_t hash[32];     /* SHA256 TLV: what image state reports */
	char version[48];     /* as image state prints it: "1.2.3" or "1.2.3.4" */
};

struct fgw_fleet_release {
	char id[64];
	char version[32];
	char board[64];	    /* "" any */
	char groups[8][64]; /* target groups; none: every group */
	size_t n_groups;
	bool policy_confirm; /* manifest policy "confirm"; false: "test-confirm" */
	bool no_downgrade;   /* policy forbids downgrades: app core uploads carry `upgrade` */
	unsigned canary_percent;
	double max_failure_rate;
	unsigned max_concurrent;	 /* 0: no limit beyond max_connections */
	struct fgw_fleet_image image[2]; /* 0 app core, 1 net core */
};

typedef int (*fgw_fleet_transport_new_t)(void *user_data, const char *address,
					 struct fgw_transport **ret);

struct fgw_fleet_options {
	unsigned max_connections; /* per radio (fgw_fleet_device_radio), else in all */
	unsigned retry_limit;
	uint64_t backoff_base_ms, backoff_max_ms;
	uint64_t reboot_timeout_ms;
	uint64_t progress_flush_ms;
	uint64_t request_timeout_ms; /* probe, mark, reset, confirm */
	uint64_t chunk_timeout_ms, first_chunk_timeout_ms;
	unsigned upload_window;		/* 0: from the device's buffer count */
	unsigned netcore_version_group; /* 0: net core version not asked */
	const char *default_group;
	/*
	 * Enrollment (fleet-enroll.c). Allowlist (false): only enrolled devices get jobs; the
	 * rest are "unenrolled", never counted for canaries or the halt rule, at most
	 * @max_unenrolled of them kept (least recently seen forgotten first) and each forgotten
	 * @unenrolled_ttl_ms after it was last seen. Open (true): every device seen is a target.
	 */
	bool enrollment_open;
	/*
	 * Board match (job-board.c): a release naming a board is offered only to devices whose
	 * board (os info, hardware platform; else the board given at enrollment) is that board.
	 * Neither known: skipped unless this is false.
	 */
	bool require_board_match;
	unsigned max_unenrolled;
	uint64_t unenrolled_ttl_ms;
	/* How to reach a device: the daemon's BLE or UDP transport for an address. */
	fgw_fleet_transport_new_t transport_new;
	void *transport_user_data;
	/*
	 * BLE security (job-security.c): a link refused for security (-ENOKEY), a failed
	 * pairing (-EKEYREJECTED), a lost bond (-EKEYEXPIRED). Returns > 0 when the next
	 * attempt should go at once (level raised, stale bond removed), 0 when nothing is left
	 * to try; @why says what happened either way. NULL: such failures fail the job.
	 */
	int (*security_failed)(void *user_data, const char *address, struct fgw_transport *t,
			       int err, char *why, size_t size);
};

int fgw_fleet_new(uv_loop_t *loop, struct fgw_store *store, const struct fgw_fleet_options *o,
		  struct fgw_fleet **ret);
/*
 * New values for a running fleet (SIGHUP): retry_limit, backoff_*, reboot_timeout_ms,
 * progress_flush_ms, chunk timeouts, upload_window, default_group, max_unenrolled,
 * unenrolled_ttl_ms and require_board_match. A failure counts against
 * the limit and back-off in force when it happens, an upload takes the window and timeouts in
 * force when it starts (the next image or attempt), a rebooting job is judged against the
 * timeout in force, a device met for the first time gets the group in force. The other fields
 * need a restart and are not read here.
 */
void fgw_fleet_set_options(struct fgw_fleet *f, const struct fgw_fleet_options *o);
/*
 * No job may start, for a reason the operator must fix (a read-only database): logged once,
 * and the fleet keeps answering (stats, progress) without writing.
 */
void fgw_fleet_hold(struct fgw_fleet *f, const char *why);
/*
 * While a gate is set (@why: e.g. "the release manifest expired"), no new job starts; jobs
 * already running go on. NULL lifts it, and scheduling resumes. Logged when it changes.
 */
void fgw_fleet_set_gate(struct fgw_fleet *f, const char *why);
/* Stops every job where it is (the store keeps them for the next start) and frees. */
struct fgw_fleet *fgw_fleet_free(struct fgw_fleet *f);

/*
 * Loads the current release's unfinished jobs from the store and starts scheduling. Jobs
 * that were between reset and verification resume there; the rest re-probe their device.
 */
int fgw_fleet_start(struct fgw_fleet *f, const struct fgw_fleet_release *rel);
/* A newer verified release: queued jobs of the old one are superseded, running ones finish. */
int fgw_fleet_set_release(struct fgw_fleet *f, const struct fgw_fleet_release *rel);
/* The release jobs are being created for (borrowed until the next set_release), or NULL. */
const struct fgw_fleet_release *fgw_fleet_release_get(struct fgw_fleet *f);

/*
 * A device was seen (BLE advertisement or a configured UDP address): recorded in the
 * registry, given a job for the current release if it is a target, and, if its job waits for
 * it (reboot, out of range), woken. @rssi may be NULL.
 */
void fgw_fleet_device_seen(struct fgw_fleet *f, const char *address, const char *transport,
			   const char *name, const int *rssi);

/*
 * The device is gone (bluetoothd dropped it after not seeing it for a while): its job waits
 * for the next sighting instead of trying to connect, and burns no attempts meanwhile.
 */
void fgw_fleet_device_lost(struct fgw_fleet *f, const char *address);

/* Radios (BLE adapters) the fleet keeps apart: more are pooled under none (no limit). */
#define FGW_FLEET_MAX_RADIOS 16

/*
 * The radio (BLE adapter, "hci0") that serves @address now: uploads on one radio share its
 * airtime, so each radio gets as many concurrent uploads as still raise its aggregate
 * goodput (lib/fleet/fleet-radio.h), at most max_connections. NULL or "": none.
 */
void fgw_fleet_device_radio(struct fgw_fleet *f, const char *address, const char *radio);
/*
 * The device met as @old_address (a resolvable private address) is @address, its identity
 * (bluetoothd resolved it with the bond's IRK). Its registry row, jobs and events become
 * @address's in one transaction (merged into @address's row if it was enrolled by identity),
 * and its job goes on under @address. 0 also when @old_address was never registered.
 */
int fgw_fleet_device_identity(struct fgw_fleet *f, const char *old_address, const char *address);

struct fgw_fleet_radio_stats {
	char name[32];
	unsigned limit;	    /* uploads allowed at once now */
	unsigned active;    /* jobs on the air on it now */
	double goodput_bps; /* aggregate acknowledged bytes/s over the sliding window */
	uint64_t bytes;	    /* acknowledged in total */
	uint64_t raised, lowered, refused;
};
/* Fills up to @max entries; returns how many radios there are. */
size_t fgw_fleet_radios(struct fgw_fleet *f, struct fgw_fleet_radio_stats *ret, size_t max);
/*
 * Enrollment, written to the store first (all or nothing), then in force at once: an
 * enrolled device seen since the start gets its job for the current release. -EINVAL for a
 * malformed address or passkey.
 */
struct fgw_fleet_enrollment {
	const char *address;
	const char *board, *group, *label; /* NULL or "": none / keep */
	bool has_passkey;
	uint32_t passkey;
};
int fgw_fleet_enroll(struct fgw_fleet *f, const struct fgw_fleet_enrollment *e, size_t n);
/*
 * Forgets @address: registry row, slots, jobs and passkey. -ENOENT unknown, -EBUSY while its
 * job talks to it (connecting to confirming). The bond, if any, stays with bluetoothd.
 */
int fgw_fleet_forget(struct fgw_fleet *f, const char *address);

/* Operator control; persisted (survives restarts). -ENOENT without a release, -EALREADY. */
int fgw_fleet_pause(struct fgw_fleet *f, const char *by, const char *reason);
int fgw_fleet_resume(struct fgw_fleet *f);
/*
 * A failed or reverted job of @address goes back to the queue (a job waiting in back-off goes
 * now). -ENOENT (no job), -EBUSY (running), -EALREADY (done or skipped: nothing to do).
 */
int fgw_fleet_retry(struct fgw_fleet *f, const char *address);

struct fgw_fleet_progress {
	int image;
	uint64_t offset, total;
	double rate_bps; /* recent upload goodput */
};
/* Live upload progress of @address: 0, or -ENOENT when it is not uploading. */
int fgw_fleet_progress_get(struct fgw_fleet *f, const char *address,
			   struct fgw_fleet_progress *ret);

struct fgw_fleet_stats {
	bool halted;
	char halted_by[16];
	char halted_reason[160];
	char release_id[64];
	unsigned connections; /* devices connected now */
	unsigned active;      /* jobs between connecting and confirming */
	uint64_t bytes_uploaded;
	uint64_t upload_ms; /* time spent uploading, summed over devices */
	uint64_t jobs_done, jobs_failed, jobs_reverted, jobs_skipped;
	/* job durations (created → terminal) in seconds, per bucket (not cumulative):
	 * <= 30, 60, 120, 300, 600, 1200, 3600 s, and above */
	uint64_t duration_buckets[8];
	double duration_sum_s;
	/* failed and reverted jobs by kind of failure, see fgw_fleet_failure_kinds */
	uint64_t failures[6];
};

/* "reverted", "rejected", "not-applied", "no-return", "unreachable", "other" */
extern const char *const fgw_fleet_failure_kinds[6];
void fgw_fleet_get_stats(struct fgw_fleet *f, struct fgw_fleet_stats *ret);
extern const double fgw_fleet_duration_bounds[7];
