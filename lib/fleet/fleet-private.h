/* For lib/fleet only: the fleet and job objects shared by fleet.c, job.c and job-upload.c. */
#pragma once

#include "fleet-policy.h"
#include "fleet.h"
#include "smp.h"
#include "store.h"
#include "util.h"

struct fgw_upload;

/* A release as jobs use it: shared, so a running job of an old release keeps its images. */
struct fleet_release {
	int refs;
	struct fgw_fleet_release r;
	/* The image files, mapped once and shared by every job: read from the page cache,
	 * never copied per device. */
	const uint8_t *map[2];
	size_t map_len[2];
};

/* What a job holds only while it talks to its device (most jobs just wait in the queue). */
struct job_conn {
	struct fgw_transport *t;
	struct fgw_smp_client *smp;
	struct fgw_upload *upload;
	bool open;
	int step; /* position in a multi-request state (probing, marking) */
	struct fgw_smp_params params;
	bool has_params;
	struct fgw_fleet_device_view view;
	struct fgw_fleet_plan plan;
	int image;	   /* image uploading */
	unsigned uploaded; /* images done in this connection (bit i) */
	unsigned erased;   /* slots erased in this connection (bit i: image i's slot 1) */
	uint64_t offset, total;
	double rate_bps;
	uint64_t last_flush_ms, upload_started_ms, bytes_at_start;
};

struct fleet_job {
	struct fgw_fleet *fleet;
	struct fleet_job *next;
	struct fleet_release *rel; /* reference */
	int64_t id;
	char address[40];
	char transport[8];
	enum fgw_job_state state;
	bool canary;
	int attempts;
	unsigned images_mask;	  /* images the plan touches (bit i: image i) */
	uint64_t next_attempt_ms; /* monotonic; the queue ignores the job before it */
	uint64_t last_start_ms;	  /* fairness: longest-waiting first */
	uint64_t seen_ms;	  /* last sighting (monotonic); BLE jobs wait for one */
	uint64_t reset_ms;	  /* when the reset went out (rebooting) */
	int64_t created_wall_ms;
	uv_timer_t timer; /* step deadline, reboot ceiling, reconnect pacing */
	struct job_conn *conn;
	bool closing;	  /* the timer handle is closing: free in its close callback */
	int failure_kind; /* index into fgw_fleet_failure_kinds, set before entering failed */
};

enum {
	FLEET_FAIL_REVERTED,
	FLEET_FAIL_REJECTED,	/* the device or its bootloader refused the image */
	FLEET_FAIL_NOT_APPLIED, /* the reset did not apply the update */
	FLEET_FAIL_NO_RETURN,	/* the device did not come back after its reset */
	FLEET_FAIL_UNREACHABLE, /* transient failures until the retry limit */
	FLEET_FAIL_OTHER,
};

struct fgw_fleet {
	uv_loop_t *loop;
	struct fgw_store *store;
	struct fgw_fleet_options o;
	char default_group[64];
	struct fleet_release *rel; /* current release, or NULL */
	struct fleet_job *jobs;	   /* unfinished jobs (current and superseded-but-running) */
	uv_timer_t tick;
	uv_timer_t kick;
	int n_handles;
	bool freeing;
	bool halted;
	char halted_by[16];
	char halted_reason[160];
	bool store_failed; /* a write failed: no new jobs until restart */
	/* tallies of the current release, for the halt rule and the API */
	struct fgw_fleet_rollout_counts counts;
	/*
	 * An operator's resume accepts what failed so far: the halt rule then judges only the
	 * jobs that finish after it (counts - baseline), and no longer the canary phase.
	 */
	struct fgw_fleet_rollout_counts baseline;
	bool resumed;
	unsigned n_targets, n_canary;
	struct fgw_fleet_stats stats;
	uint64_t rnd; /* xorshift state for back-off jitter */
};

/* fleet.c */
void fleet_kick(struct fgw_fleet *f);
double fleet_random(struct fgw_fleet *f);
void fleet_job_finished(struct fgw_fleet *f, struct fleet_job *job, enum fgw_job_state to);
void fleet_store_failed(struct fgw_fleet *f, int err, const char *what);
unsigned fleet_connections(struct fgw_fleet *f);
/* UDP devices are always reachable; a BLE device only when seen in the presence window. */
bool fleet_job_present(const struct fgw_fleet *f, const struct fleet_job *j, uint64_t now);
struct fleet_release *fleet_release_ref(struct fleet_release *r);
void fleet_release_unref(struct fleet_release *r);

/* job.c */
struct fleet_job *job_new(struct fgw_fleet *f, const struct fgw_store_job_rec *rec,
			  struct fleet_release *rel);
/* Starts a queued job (the scheduler picked it). */
void job_start(struct fleet_job *job);
/* A device sighting: wakes a job that waits for its device to come back. */
void job_device_seen(struct fleet_job *job);
/* Drops the connection and frees the job; the store keeps its state. */
void job_free(struct fleet_job *job);
bool job_is_active(const struct fleet_job *job);
/*
 * Moves the job to @to: persisted (state + event) first, then acted on. @reason for terminal
 * states and retries, @detail for the event. Returns 0, or < 0 when the store refused (the
 * job is then stopped where it was).
 */
int job_enter_state(struct fleet_job *job, enum fgw_job_state to, const char *reason,
		    const char *detail);

/* job-upload.c */
/* Uploads the next image the plan needs (net core first), or moves to marking when none is left. */
void job_upload_next(struct fleet_job *job);
/* Stops an upload in progress, no callback. */
void job_upload_cancel(struct fleet_job *job);
/* Error from the upload of one image: a transient link problem or a refusal by the device. */
void job_on_failure(struct fleet_job *job, int err, bool transient, const char *what);

/*
 * job-security.c: a BLE link failed for security (-ENOKEY, -EKEYREJECTED, -EKEYEXPIRED).
 * Retries at once when the daemon could do something about it (pair, remove a stale bond),
 * else fails the job with the reason; true when it handled @err.
 */
bool job_security_failure(struct fleet_job *job, struct fgw_transport *t, int err);
