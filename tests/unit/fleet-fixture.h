/*
 * The fleet core under test: a real store on disk, the fleet on a private libuv loop, clocks
 * the test can move forward, and fake devices behind the scripted peer transport. A fake
 * device answers SMP as a Zephyr device with MCUboot does (protocol-notes §3-§4): params,
 * bootloader mode, image state, upload sessions, state writes, erase and reset; what happens
 * at its reboot (swap, revert, nothing, never back) and its faults are set per test.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "fleet-private.h"
#include "peer-transport.h"
#include "store.h"

enum fdev_boot {
	FDEV_BOOT_SWAP,	      /* the pending image boots (test boot, or confirmed if permanent) */
	FDEV_BOOT_REVERT,     /* the test boot was not confirmed: old image back */
	FDEV_BOOT_REJECT,     /* the bootloader refused the new image: it is gone */
	FDEV_BOOT_NOTHING,    /* the reset did not apply the update */
	FDEV_BOOT_NEVER_BACK, /* the device does not come back */
};

struct fdev_slot {
	bool present;
	uint8_t hash[32];
	char version[48];
	bool active, confirmed, pending, permanent;
	bool corrupt; /* the stored bytes fail the device's own image check */
};

struct fdev {
	struct fx *fx;
	char address[40];
	int mode;		/* bootloader mode reported; -1: bootloader info not supported */
	const char *board;	/* os info "i" answer; NULL: no os info group (rc 8) */
	struct fdev_slot s[2];	/* image 0, slots 0 and 1 */
	enum fdev_boot on_boot; /* what the next reset does */
	bool down;		/* rebooting or gone: no link can open */
	struct peer *peer;	/* the current link, if any */
	uint64_t len, off;	/* upload session */
	uint8_t data[16384];	/* what it received */
	/* faults */
	unsigned busy_image_state;     /* answer this many image state reads with EBUSY */
	unsigned busy_resets;	       /* answer this many resets with EBUSY (a reset hook) */
	uint64_t reset_answer_late_ms; /* the clocks move this far before a reset's answer */
	int upload_rc;		       /* != 0: refuse every upload chunk with this rc */
	int mark_rc;	     /* != 0: refuse state writes (test/confirm marks) with this */
	int drop_at_chunk;   /* > 0: drop the link instead of answering chunk k (once) */
	int mute_from_chunk; /* > 0: answer no upload chunk from the k-th on */
	bool silent;	     /* answer nothing at all */
	/*
	 * > 0: the next uploads arrive damaged (as if flash or the cache flipped bits): the
	 * device's check answers match=false, yet its image list shows the hash field of the
	 * image's TLV, which still names the release.
	 */
	unsigned check_fails;
	/* counts */
	unsigned links, chunks, resets, forced_resets, erases, state_writes;
	unsigned corrupt_marks; /* test/confirm marks of a slot that failed its check */
};

struct fx {
	uv_loop_t loop;
	uv_timer_t poll;
	char dir[64], db[128];
	struct fgw_store *store;
	struct fgw_fleet *fleet;
	struct fgw_fleet_options o;
	struct fgw_fleet_release rel, rel2; /* rel2: for a release change, if a test sets it */
	struct fdev dev[8];
	size_t n_dev;
	uint64_t skew_ms; /* added to both clocks */
	int transport_err;
	int image_fd[4]; /* sealed memfds fx_image made, closed at teardown */
	size_t n_image_fd;
};

/* A sealed memfd of @len bytes (content from @seed) into @img (fd, size, hashes), as the
 * release part hands the fleet its verified images. */
void fx_image(struct fx *x, const char *name, size_t len, unsigned seed,
	      struct fgw_fleet_image *img);
/* Store (migrated, releases r1 and r2), image file, release r1 of it; no fleet yet. */
int fx_setup(void **state);
int fx_teardown(void **state);
/* Starts the fleet with the fixture's options (o is filled with small test defaults). */
void fx_start(struct fx *x, bool with_release);
/* Frees the fleet and closes its handles (the store stays); for a restart. */
void fx_stop(struct fx *x);
/* A device on the old release (1.0.0, confirmed), swap-move bootloader. */
struct fdev *fx_device(struct fx *x, const char *address);
/* The device advertises (BLE sighting). */
void fx_seen(struct fx *x, struct fdev *d);
/* Moves both clocks forward. */
void fx_advance(struct fx *x, uint64_t ms);
/* How long a test waits for a job state (fake time runs ahead; this bounds real time). */
#define FX_WAIT_MS 10000
#define assert_state(x, d, s) assert_true(fx_wait_state(x, (d)->address, s, FX_WAIT_MS))
/* The job's states so far, "queued>connecting>...", must be @want. */
void fx_assert_history(struct fx *x, struct fdev *d, const char *want);
/* The job's reason must contain @part. */
void fx_assert_reason_has(struct fx *x, struct fdev *d, const char *part);
/* From now on the store refuses (as a full disk would) to move any job into @state. */
void fx_refuse_state(struct fx *x, const char *state);
/* Runs the loop until the fleet has seen a store write fail (bounded), and asserts it did. */
void fx_wait_store_failed(struct fx *x);
/* The device resets: once its job waits for it (rebooting), it boots and advertises again. */
void fx_come_back(struct fx *x, struct fdev *d);
/* The store's state of @address's job for @release ("" if none). */
const char *fx_job_state(struct fx *x, const char *address, const char *release);
/* Runs the loop until @address's job is in @state (at most @max_ms real): true if it got there. */
bool fx_wait_state(struct fx *x, const char *address, const char *state, unsigned max_ms);
/* The job-state events of @address, "queued>connecting>..." into @buf. */
const char *fx_history(struct fx *x, const char *address, char *buf, size_t size);
/* The reason stored with the job. */
const char *fx_job_reason(struct fx *x, const char *address, char *buf, size_t size);
/* Jobs the fleet holds in memory. */
size_t fx_jobs_in_memory(struct fx *x);
/* Runs the loop for as long as it has something due now (no waiting). */
void fx_settle(struct fx *x);
