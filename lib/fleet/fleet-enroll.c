/*
 * Enrollment: which devices may get firmware. With enrollment = allowlist a device the
 * operator did not enrol is only a registry row ("unenrolled"): no job, no canary slot, no
 * say in the halt rule, and a bounded number of them, so a crowd of strangers in radio range
 * cannot grow the database or the fleet's memory without end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet-private.h"

#define PRUNE_EVERY_MS (60 * 1000)

bool fleet_dev_wanted(const struct fgw_fleet *f, const struct fleet_dev *dev)
{
	return dev->enrolled || f->o.enrollment_open;
}

static void copy_field(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

FGW_EXPORT int fgw_fleet_enroll(struct fgw_fleet *f, const struct fgw_fleet_enrollment *e, size_t n)
{
	struct fgw_store_enrollment *se = calloc(n ? n : 1, sizeof(*se));
	int r = 0;

	if (!se)
		return -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++) {
		r = fgw_address_normalize(e[i].address, se[i].address);
		if (r == 0 && e[i].has_passkey && e[i].passkey > 999999)
			r = -EINVAL;
		copy_field(se[i].board, sizeof(se[i].board), e[i].board);
		copy_field(se[i].grp, sizeof(se[i].grp), e[i].group);
		copy_field(se[i].label, sizeof(se[i].label), e[i].label);
		se[i].has_passkey = e[i].has_passkey;
		se[i].passkey = e[i].passkey;
	}
	if (r == 0)
		r = fgw_store_devices_enroll(f->store, se, n, f->default_group, fleet_wall(f));
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct fleet_dev *dev = fleet_dev_find(f, se[i].address);
		struct fgw_store_device_rec rec;

		/* never a passkey in a log: the event says whether there was one */
		fgw_notice("event: enrolled, device: %s%s", se[i].address,
			   se[i].has_passkey ? ", passkey: own" : "");
		if (!dev)
			continue; /* not seen in this run: its job comes with the first sighting */
		dev->enrolled = true;
		if (fgw_store_device_get(f->store, se[i].address, &rec) == 0)
			copy_field(dev->grp, sizeof(dev->grp), rec.grp);
		dev->checked_gen = 0;
		fleet_load_dev_job(f, dev);
	}
	free(se);
	return r;
}

/* Drops every job of @dev from memory; -EBUSY if one of them talks to the device. */
static int drop_jobs(struct fgw_fleet *f, struct fleet_dev *dev)
{
	for (struct fleet_job *j = f->jobs; j; j = j->next)
		if (j->dev == dev && job_is_active(j))
			return -EBUSY;
	for (struct fleet_job **p = &f->jobs; *p;) {
		struct fleet_job *j = *p;
		if (j->dev == dev) {
			*p = j->next;
			job_free(j);
		} else {
			p = &j->next;
		}
	}
	return 0;
}

FGW_EXPORT int fgw_fleet_forget(struct fgw_fleet *f, const char *address)
{
	struct fleet_dev *dev;
	char a[40];
	int r = fgw_address_normalize(address, a);

	if (r < 0)
		return r;
	dev = fleet_dev_find(f, a);
	if (dev) {
		r = drop_jobs(f, dev);
		if (r < 0)
			return r;
	}
	r = fgw_store_device_forget(f->store, a, fleet_wall(f));
	if (r < 0)
		return r;
	if (dev)
		fleet_dev_remove(f, a);
	fgw_notice("event: forgotten, device: %s", a);
	fleet_kick(f);
	return 0;
}

static void pruned(const char *address, void *ud)
{
	struct fgw_fleet *f = ud;
	struct fleet_dev *dev = fleet_dev_find(f, address);

	/* the store only lets go of devices without a running job: none to keep in memory */
	if (dev && drop_jobs(f, dev) == 0)
		fleet_dev_remove(f, address);
}

void fleet_unenrolled_prune(struct fgw_fleet *f)
{
	uint64_t now = fleet_now(f);
	int r;

	if (f->o.enrollment_open || f->store_failed || f->freeing ||
	    (f->pruned_ms && now - f->pruned_ms < PRUNE_EVERY_MS))
		return;
	f->pruned_ms = now;
	r = fgw_store_unenrolled_prune(f->store, fleet_wall(f) - (int64_t) f->o.unenrolled_ttl_ms,
				       f->o.max_unenrolled, pruned, f);
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "Failed to forget unenrolled devices (%s)",
			      fgw_store_errmsg(f->store));
	else if (r > 0)
		fgw_info("Forgot %d unenrolled device(s) (fleet.max_unenrolled %u, "
			 "fleet.unenrolled_ttl_s %llu)",
			 r, f->o.max_unenrolled,
			 (unsigned long long) (f->o.unenrolled_ttl_ms / 1000));
}
