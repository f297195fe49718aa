/* For lib/fleet only: the fleet and job objects shared by fleet.c, job.c and job-upload.c. */
#pragma once

#include "fleet-policy.h"
#include "fleet-radio.h"
#include "fleet.h"
#include "smp-client.h"
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

/* The requests of probing (and of verifying, which skips the params). */
enum job_probe_step {
	JOB_PROBE_PARAMS,
	JOB_PROBE_OS_INFO, /* the board (hardware platform), when the release names one */
	JOB_PROBE_BOOT_MODE,
	JOB_PROBE_IMAGE_STATE,
	JOB_PROBE_NET_VERSION,
	_JOB_PROBE_END,
};

/* Marking: net core first, then app core (NCS known issue NCSDK-34106). */
enum job_mark_step {
	JOB_MARK_NET,
	JOB_MARK_APP,
	_JOB_MARK_END,
};

/* Resetting: ask; an application hook may refuse once, then force. */
enum job_reset_step {
	JOB_RESET_ASK,
	JOB_RESET_FORCE,
};

/* What a job holds only while it talks to its device (most jobs just wait in the queue). */
struct job_conn {
	struct fgw_transport *t;
	struct fgw_smp_client *smp;
	struct fgw_upload *upload;
	bool open;
	enum job_probe_step probe; /* probing and verifying */
	enum job_mark_step mark;
	enum job_reset_step reset;
	struct fgw_smp_params params;
	bool has_params;
	struct fgw_fleet_device_view view;
	char board[64]; /* what os info said the board is (escaped), "" unknown */
	struct fgw_fleet_plan plan;
	int image;	   /* image uploading */
	unsigned uploaded; /* images done in this connection (bit i) */
	unsigned erased;   /* slots erased in this connection (bit i: image i's slot 1) */
	uint64_t offset, total;
	double rate_bps;
	uint64_t last_flush_ms, upload_started_ms, bytes_at_start;
};

/* A device met in this run (fleet-devices.c): seen, or the device of a loaded job. */
struct fleet_dev {
	struct fleet_dev *next; /* hash chain */
	uint32_t hash;
	char address[40];
	char transport[8];
	char grp[64];
	uint32_t name_hash;	 /* of the name last written, to write a new one at once */
	int64_t written_wall_ms; /* the sighting last written to the store */
	uint64_t seen_ms; /* last sighting (monotonic), 0 none or lost; BLE jobs wait for one */
	char radio[32];	  /* the adapter that serves it ("hci0"); "" none (UDP, not told) */
	struct fleet_job *job; /* its unfinished job in memory, of any release */
	unsigned checked_gen;  /* release generation whose job is known finished or not wanted */
	bool enrolled;
};

struct fleet_devs {
	struct fleet_dev **buckets;
	size_t n_buckets, n;
};

struct fleet_job {
	struct fgw_fleet *fleet;
	struct fleet_job *next;
	struct fleet_release *rel; /* reference */
	struct fleet_dev *dev;	   /* owned by the fleet's map, outlives the job */
	int64_t id;
	char address[40];
	enum fgw_job_state state;
	bool canary;
	int attempts;
	unsigned images_mask;	  /* images the plan touches (bit i: image i) */
	uint64_t next_attempt_ms; /* monotonic; the queue ignores the job before it */
	uint64_t last_start_ms;	  /* fairness: longest-waiting first */
	uint64_t reset_ms;	  /* when the reset went out (rebooting) */
	int64_t created_wall_ms;
	uv_timer_t timer; /* step deadline, reboot ceiling, reconnect pacing */
	struct job_conn *conn;
	bool closing;	  /* the timer handle is closing: free in its close callback */
	int failure_kind; /* index into fgw_fleet_failure_kinds, set before entering failed */
	/*
	 * Bit i: image i failed the device's own image check. Its slot's hash field comes
	 * from the image's TLV, not from the bytes, so it says nothing: the next attempt
	 * erases the slot and uploads again instead of marking what is there.
	 */
	unsigned distrust_slot;
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
	unsigned rel_gen;	   /* bumped by each release adopted */
	/*
	 * Jobs in memory: unfinished ones of devices met in this run (current release and
	 * superseded-but-running), and finished ones until the scheduler reaps them.
	 */
	struct fleet_job *jobs;
	struct fleet_devs devs;
	uint64_t (*now_ms)(void *ud); /* clocks; tests set fake ones (fleet_set_clock) */
	int64_t (*wall_ms)(void *ud);
	void *clock_ud;
	uv_timer_t tick;
	uv_timer_t kick;
	int n_handles;
	bool freeing;
	bool halted;
	char halted_by[16];
	char halted_reason[160];
	bool store_failed; /* a write failed: no new jobs until restart */
	char gate[160];	   /* non-empty: no new jobs, for this reason (fgw_fleet_set_gate) */
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
	uint64_t rnd;	    /* xorshift state for back-off jitter */
	uint64_t pruned_ms; /* last bound on unenrolled devices */
	/* one concurrency controller per radio (fleet-radios.c); devices without one: none */
	struct fleet_radio radios[FGW_FLEET_MAX_RADIOS];
	unsigned n_radios;
};

/* fleet.c */
uint64_t fleet_now(const struct fgw_fleet *f);
int64_t fleet_wall(const struct fgw_fleet *f);
/* For tests: monotonic and wall clocks of their own (NULL: the system's). */
void fleet_set_clock(struct fgw_fleet *f, uint64_t (*now_ms)(void *ud),
		     int64_t (*wall_ms)(void *ud), void *ud);
void fleet_kick(struct fgw_fleet *f);
double fleet_random(struct fgw_fleet *f);
/*
 * A job reached terminal state @to: counted, its device freed for the next job. The job stays
 * allocated (its caller may be on the stack) until the scheduler reaps it.
 */
void fleet_job_finished(struct fgw_fleet *f, struct fleet_job *job, enum fgw_job_state to);
void fleet_store_failed(struct fgw_fleet *f, int err, const char *what);
/* Commits the store batch a callback opened (fgw_store_batch_begin) if no transition did. */
void fleet_batch_end(struct fgw_fleet *f);
/* Adds (@sign 1) or takes back (-1, a retry) a finished job in the rollout's tallies. */
void fleet_count_terminal(struct fgw_fleet *f, bool canary, enum fgw_job_state s, int sign);
unsigned fleet_connections(struct fgw_fleet *f);
/* UDP devices are always reachable; a BLE device only when seen in the presence window. */
bool fleet_job_present(const struct fgw_fleet *f, const struct fleet_job *j, uint64_t now);
struct fleet_release *fleet_release_ref(struct fleet_release *r);
void fleet_release_unref(struct fleet_release *r);

/* fleet-radios.c */
/* The controller of @job's radio, NULL when its device has none (UDP, not told). */
struct fleet_radio *fleet_radio_of_job(struct fgw_fleet *f, const struct fleet_job *job);
/* The job holds (or is opening) a link that uses its radio's airtime. */
bool fleet_job_on_air(const struct fleet_job *job);
/* Jobs on the air on @r now. */
unsigned fleet_radio_active(struct fgw_fleet *f, const struct fleet_radio *r);
/* Those of them sending image data: what the radio's goodput is judged by. */
unsigned fleet_radio_uploading(struct fgw_fleet *f, const struct fleet_radio *r);

/* fleet-devices.c */
uint32_t fleet_hash(const char *s);
struct fleet_dev *fleet_dev_find(struct fgw_fleet *f, const char *address);
/* The entry of @address, added if new (NULL only without memory). */
struct fleet_dev *fleet_dev_add(struct fgw_fleet *f, const char *address, const char *transport,
				const char *grp);
void fleet_devs_foreach(struct fgw_fleet *f, void (*fn)(struct fgw_fleet *f, struct fleet_dev *d));
void fleet_devs_free(struct fgw_fleet *f);
/* Drops @address from the map (its job must be gone already). */
void fleet_dev_remove(struct fgw_fleet *f, const char *address);

/* fleet-enroll.c */
/* Whether @dev may get a job: enrolled, or enrollment is open. */
bool fleet_dev_wanted(const struct fgw_fleet *f, const struct fleet_dev *dev);
/* Bounds the unenrolled devices (count and age); called from the tick. */
void fleet_unenrolled_prune(struct fgw_fleet *f);
/* fleet.c: the device's job for the current release, loaded or created if it is a target. */
void fleet_load_dev_job(struct fgw_fleet *f, struct fleet_dev *dev);

/* job.c */
struct fleet_job *job_new(struct fgw_fleet *f, const struct fgw_store_job_rec *rec,
			  struct fleet_release *rel, struct fleet_dev *dev);
/* Starts a queued job (the scheduler picked it). */
void job_start(struct fleet_job *job);
/* A device sighting: wakes a job that waits for its device to come back. */
void job_device_seen(struct fleet_job *job);
/* Drops the connection and frees the job (the store keeps its state); only the fleet's
 * scheduler and teardown call it, never code running on the job's behalf. */
void job_free(struct fleet_job *job);
bool job_is_active(const struct fleet_job *job);
/*
 * Moves the job to @to: persisted (state + event) first, then acted on. @reason for terminal
 * states and retries, @detail for the event. Returns 0, or < 0 when the store refused (the
 * job is then stopped where it was).
 */
int job_enter_state(struct fleet_job *job, enum fgw_job_state to, const char *reason,
		    const char *detail);

/* Shared by job.c, job-verify.c and job-upload.c (the job's own halves). */
int job_conn_open(struct fleet_job *job);
void job_conn_close(struct fleet_job *job);
/* Sends @req (always released); a failure to send is a transient failure of the job. */
int job_send_req(struct fleet_job *job, struct fgw_smp_req *req, int build_err, uint64_t timeout_ms,
		 fgw_smp_rsp_cb_t cb, const char *what);
/*
 * Common prologue of response callbacks: false when the callback must stop (cancelled, or a
 * failure that was handled). A device error is handled unless @allow_device_error.
 */
bool job_rsp_usable(struct fleet_job *job, int err, const struct fgw_smp_rsp *rsp,
		    bool allow_device_error, const char *what);
uint64_t job_req_timeout(const struct fleet_job *job);
/* Response callback of the probe requests (job.c). */
void job_probe_rsp_cb(int err, const struct fgw_smp_rsp *rsp, void *user_data);
/* Sends probe request @step; false when this device is not asked that. */
bool job_probe_send(struct fleet_job *job, enum job_probe_step step);
void job_view_from_state(struct fgw_fleet_device_view *v, const struct fgw_smp_img_state *st);
/* Records the slots as the device reported them, for the API and for the next probe. */
void job_store_slots(struct fleet_job *job, const struct fgw_smp_img_state *st);
void job_release_view(const struct fleet_job *job, struct fgw_fleet_release_view *rv);

/* job-board.c */
/* Sends the os info request for the board; false when the release names no board. */
bool job_board_probe_send(struct fleet_job *job);
/* Takes the os info answer (any device error: board unknown). */
void job_board_probe_rsp(struct fleet_job *job, const struct fgw_smp_rsp *rsp);
/* Compares the device's board with the release's: true when the job was skipped for it. */
bool job_board_skip(struct fleet_job *job);

/* job-verify.c */
/* Entering resetting: the reset request (forced once if an application hook refuses). */
void job_reset_send(struct fleet_job *job);
/* Entering rebooting: the next reconnection attempt or the ceiling, whichever comes first. */
void job_reboot_arm(struct fleet_job *job);
/* Verifying: the next read, then the verdict. */
void job_verify_step(struct fleet_job *job);
/* Entering confirming: confirm the running (test-booted) image. */
void job_confirm_send(struct fleet_job *job);

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
