/*
 * The fleet's decisions, without I/O: what a device needs for a release (plan), what the
 * device's image state after the reset means (verify), which devices go first (canary), when
 * the rollout stops (halt) and how long to wait before a retry (back-off). The job state
 * machine calls these and acts; unit tests drive them as data. Private to lib/fleet.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "smp.h" /* enum fgw_mcuboot_mode: the one list of MCUboot modes */

struct fgw_fleet_slot {
	bool present;
	uint8_t hash[32]; /* SHA256 TLV */
	char version[48];
	bool active, confirmed, pending, permanent;
};

/* What the device said: bootloader mode, image state, and the net core version if it has a way to
 * report it. */
struct fgw_fleet_device_view {
	int mode;			  /* enum fgw_mcuboot_mode */
	struct fgw_fleet_slot slot[2][2]; /* [image][slot] */
	bool net_version_known;
	char net_version[48];
};

struct fgw_fleet_release_view {
	bool has[2];	     /* the bundle carries image i */
	uint8_t hash[2][32]; /* SHA256 TLV of image i */
	char version[2][48]; /* as image state prints it ("1.2.3", "1.2.3.4") */
	bool policy_confirm; /* manifest policy "confirm"; false = "test-confirm" */
};

enum fgw_fleet_image_action {
	FGW_FLEET_IMAGE_NONE,	 /* not in the release */
	FGW_FLEET_IMAGE_CURRENT, /* running the release already */
	FGW_FLEET_IMAGE_UPLOAD,	 /* upload, then mark */
	FGW_FLEET_IMAGE_MARK,	 /* staged in slot 1 already, only mark */
	FGW_FLEET_IMAGE_STAGED,	 /* staged and marked: only the reset is missing */
};

enum fgw_fleet_mark {
	FGW_FLEET_MARK_TEST,	/* swap modes: test, confirm after the new image booted */
	FGW_FLEET_MARK_CONFIRM, /* overwrite-only: confirm (permanent) right away */
};

struct fgw_fleet_plan {
	enum fgw_fleet_image_action action[2];
	bool erase_first[2]; /* slot 1 holds another image marked pending: erase it first */
	enum fgw_fleet_mark mark;
	bool confirm_running; /* swap: the release runs as a test boot, confirm it */
	bool net_assumed;     /* net core cannot be read; taken as current with the app core */
	unsigned images_mask; /* images that need an upload, a mark or a reset */
};

/*
 * 0 and @ret filled, or -ENOTSUP when the bootloader mode cannot be driven (single slot,
 * direct-XIP), with @ret_why saying so.
 */
int fgw_fleet_plan(const struct fgw_fleet_device_view *dev,
		   const struct fgw_fleet_release_view *rel, struct fgw_fleet_plan *ret,
		   const char **ret_why);

enum fgw_fleet_verdict {
	FGW_FLEET_VERDICT_OK,		 /* running the release (and confirmed) */
	FGW_FLEET_VERDICT_NEEDS_CONFIRM, /* swap: running the release as a test boot */
	FGW_FLEET_VERDICT_UNVERIFIED,	 /* net core: applied, cannot be read back */
	FGW_FLEET_VERDICT_REVERTED,	 /* old image runs, new one back in slot 1 */
	FGW_FLEET_VERDICT_REJECTED,	 /* old image runs, new one gone: bootloader refused it */
	FGW_FLEET_VERDICT_NOT_APPLIED,	 /* new image still waits in slot 1: the reset did not apply
					    it */
};

const char *fgw_fleet_verdict_to_string(enum fgw_fleet_verdict v);

/* Verdict for image @image of @rel on a device that was reset after the plan's marking. */
enum fgw_fleet_verdict fgw_fleet_verify(const struct fgw_fleet_device_view *dev,
					const struct fgw_fleet_release_view *rel, int image);

/* How many of @targets devices are canaries at @percent (0..100): ceil, at least 1 if > 0. */
unsigned fgw_fleet_canary_quota(unsigned percent, unsigned targets);

struct fgw_fleet_rollout_counts {
	unsigned canary_total, canary_finished, canary_failed;
	unsigned finished, failed; /* all jobs: terminal ones, and those that failed/reverted */
};

/*
 * Whether the rollout must halt. The canary phase is judged as soon as every canary finished;
 * after it, the failure rate over finished jobs is judged once there are enough of them for
 * one failure not to decide alone (at least 1/max_failure_rate). @ret_reason gets a sentence.
 */
bool fgw_fleet_should_halt(const struct fgw_fleet_rollout_counts *c, double max_failure_rate,
			   char *ret_reason, size_t size);

/* Non-canary jobs may start once every canary finished and the rollout is not halted. */
bool fgw_fleet_canary_passed(const struct fgw_fleet_rollout_counts *c);

/*
 * Delay before retry @attempt (1 = first retry): base * 2^(attempt-1), capped at @max_ms, then
 * "equal jitter": half fixed, half scaled by @rnd01 in [0, 1), so a fleet that failed together
 * does not come back together.
 */
uint64_t fgw_fleet_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, double rnd01);
