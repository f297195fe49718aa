#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fleet-policy.h"
#include "util.h"

static bool same_hash(const struct fgw_fleet_slot *s, const uint8_t hash[32])
{
	return s->present && memcmp(s->hash, hash, 32) == 0;
}

static bool is_swap(int mode)
{
	return mode == FGW_MCUBOOT_MODE_SWAP_USING_SCRATCH ||
	       mode == FGW_MCUBOOT_MODE_SWAP_WITHOUT_SCRATCH ||
	       mode == FGW_MCUBOOT_MODE_SWAP_USING_OFFSET;
}

int fgw_fleet_plan(const struct fgw_fleet_device_view *dev,
		   const struct fgw_fleet_release_view *rel, struct fgw_fleet_plan *ret,
		   const char **ret_why)
{
	struct fgw_fleet_plan p = {0};

	switch (dev->mode) {
	case FGW_MCUBOOT_MODE_SWAP_USING_SCRATCH:
	case FGW_MCUBOOT_MODE_SWAP_WITHOUT_SCRATCH:
	case FGW_MCUBOOT_MODE_SWAP_USING_OFFSET:
		p.mark = FGW_FLEET_MARK_TEST;
		break;
	case FGW_MCUBOOT_MODE_OVERWRITE_ONLY:
		p.mark = FGW_FLEET_MARK_CONFIRM;
		break;
	case FGW_MCUBOOT_MODE_UNKNOWN:
		/* The device does not say: the manifest's policy decides. */
		p.mark = rel->policy_confirm ? FGW_FLEET_MARK_CONFIRM : FGW_FLEET_MARK_TEST;
		break;
	default:
		*ret_why = "bootloader mode cannot be driven by test/confirm (single slot, "
			   "direct-XIP or RAM load)";
		return -ENOTSUP;
	}

	for (int i = 0; i < 2; i++) {
		const struct fgw_fleet_slot *primary = &dev->slot[i][0],
					    *secondary = &dev->slot[i][1];

		if (!rel->has[i]) {
			p.action[i] = FGW_FLEET_IMAGE_NONE;
			continue;
		}
		if (same_hash(primary, rel->hash[i])) {
			p.action[i] = FGW_FLEET_IMAGE_CURRENT;
			/* A test boot of the release that nobody confirmed yet. */
			if (i == 0 && is_swap(dev->mode) && primary->active && !primary->confirmed)
				p.confirm_running = true;
			continue;
		}
		if (i == 1 && !primary->present && dev->net_version_known &&
		    strcmp(dev->net_version, rel->version[1]) == 0) {
			p.action[i] = FGW_FLEET_IMAGE_CURRENT;
			continue;
		}
		if (same_hash(secondary, rel->hash[i])) {
			p.action[i] =
			    secondary->pending ? FGW_FLEET_IMAGE_STAGED : FGW_FLEET_IMAGE_MARK;
			continue;
		}
		p.action[i] = FGW_FLEET_IMAGE_UPLOAD;
		/*
		 * Another image waits in slot 1 marked for the next reset: uploading over it is
		 * refused (NO_FREE_SLOT), and resetting would boot it. Erase it.
		 */
		if (secondary->present && secondary->pending)
			p.erase_first[i] = true;
	}

	/*
	 * The net core's running image cannot be read on a real nRF5340 (its primary slot is
	 * RAM-emulated). If the app core already runs the release and nothing of the net core
	 * is staged, it came with the same dual-core update: do not flash it again.
	 */
	if (rel->has[0] && rel->has[1] && p.action[0] == FGW_FLEET_IMAGE_CURRENT &&
	    p.action[1] == FGW_FLEET_IMAGE_UPLOAD && !dev->slot[1][0].present &&
	    !dev->net_version_known && !dev->slot[1][1].present) {
		p.action[1] = FGW_FLEET_IMAGE_CURRENT;
		p.net_assumed = true;
	}

	for (int i = 0; i < 2; i++)
		if (p.action[i] == FGW_FLEET_IMAGE_UPLOAD || p.action[i] == FGW_FLEET_IMAGE_MARK ||
		    p.action[i] == FGW_FLEET_IMAGE_STAGED)
			p.images_mask |= 1u << i;
	*ret = p;
	*ret_why = NULL;
	return 0;
}

const char *fgw_fleet_verdict_to_string(enum fgw_fleet_verdict v)
{
	static const char *const names[] = {
	    [FGW_FLEET_VERDICT_OK] = "verified",
	    [FGW_FLEET_VERDICT_NEEDS_CONFIRM] = "needs-confirm",
	    [FGW_FLEET_VERDICT_UNVERIFIED] = "unverified",
	    [FGW_FLEET_VERDICT_REVERTED] = "reverted",
	    [FGW_FLEET_VERDICT_REJECTED] = "rejected",
	    [FGW_FLEET_VERDICT_NOT_APPLIED] = "not-applied",
	};
	return (unsigned) v < ARRAY_SIZE(names) ? names[v] : "invalid";
}

enum fgw_fleet_verdict fgw_fleet_verify(const struct fgw_fleet_device_view *dev,
					const struct fgw_fleet_release_view *rel, int image)
{
	const struct fgw_fleet_slot *primary = &dev->slot[image][0],
				    *secondary = &dev->slot[image][1];

	if (same_hash(primary, rel->hash[image]) && primary->active) {
		if (is_swap(dev->mode) && !primary->confirmed)
			return FGW_FLEET_VERDICT_NEEDS_CONFIRM;
		return FGW_FLEET_VERDICT_OK;
	}
	if (same_hash(secondary, rel->hash[image])) {
		/* Still waiting to be applied, or back in slot 1 after a test boot was reverted. */
		if (secondary->pending)
			return FGW_FLEET_VERDICT_NOT_APPLIED;
		if (image == 0 && is_swap(dev->mode))
			return FGW_FLEET_VERDICT_REVERTED;
		return FGW_FLEET_VERDICT_NOT_APPLIED;
	}
	if (image == 1 && !primary->present) {
		/* The net core: only a version reported by the firmware can prove it. */
		if (dev->net_version_known)
			return strcmp(dev->net_version, rel->version[1]) == 0
				   ? FGW_FLEET_VERDICT_OK
				   : FGW_FLEET_VERDICT_REJECTED;
		return FGW_FLEET_VERDICT_UNVERIFIED;
	}
	return FGW_FLEET_VERDICT_REJECTED;
}

unsigned fgw_fleet_canary_quota(unsigned percent, unsigned targets)
{
	if (percent == 0 || targets == 0)
		return 0;
	if (percent >= 100)
		return targets;
	return (percent * targets + 99) / 100;
}

bool fgw_fleet_canary_passed(const struct fgw_fleet_rollout_counts *c)
{
	return c->canary_finished >= c->canary_total;
}

bool fgw_fleet_should_halt(const struct fgw_fleet_rollout_counts *c, double max_failure_rate,
			   char *ret_reason, size_t size)
{
	unsigned min_sample;
	double rate;

	if (c->canary_total > 0 && c->canary_finished >= c->canary_total && c->canary_failed > 0) {
		rate = (double) c->canary_failed / c->canary_total;
		if (rate > max_failure_rate) {
			snprintf(ret_reason, size,
				 "canary failed: %u of %u canary devices failed (%.2f > %.2f)",
				 c->canary_failed, c->canary_total, rate, max_failure_rate);
			return true;
		}
	}
	if (c->finished == 0 || c->failed == 0)
		return false;
	min_sample = max_failure_rate > 0 ? (unsigned) ceil(1.0 / max_failure_rate) : 1;
	if (c->finished < min_sample)
		return false;
	rate = (double) c->failed / c->finished;
	if (rate > max_failure_rate) {
		snprintf(ret_reason, size, "failure rate %.2f (%u of %u finished) above %.2f", rate,
			 c->failed, c->finished, max_failure_rate);
		return true;
	}
	return false;
}

uint64_t fgw_fleet_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, double rnd01)
{
	uint64_t d = base_ms;

	for (unsigned i = 1; i < attempt && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	if (rnd01 < 0)
		rnd01 = 0;
	if (rnd01 >= 1)
		rnd01 = 0.999999;
	return d / 2 + (uint64_t) ((double) (d - d / 2) * rnd01);
}
