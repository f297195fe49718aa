/*
 * Identity: bluetoothd resolved a device met under a resolvable private address to its
 * identity address (pairing gave its IRK). The registry row, the entry of this run and the
 * job become the identity address's, so a device that rotates its address stays one device
 * with one job.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet-private.h"

/* The entry of the identity address, with what this run knew under the old one. */
static struct fleet_dev *adopt(struct fgw_fleet *f, struct fleet_dev *old, const char *addr)
{
	struct fgw_store_device_rec rec;
	struct fleet_dev *dev = fleet_dev_add(f, addr, old->transport, old->grp);

	if (!dev)
		return NULL;
	if (old->seen_ms > dev->seen_ms)
		dev->seen_ms = old->seen_ms;
	if (!dev->radio[0])
		memcpy(dev->radio, old->radio, sizeof(dev->radio));
	if (old->job)
		dev->job = old->job; /* the store kept the job that ran under the old address */
	dev->written_wall_ms = old->written_wall_ms;
	dev->name_hash = old->name_hash;
	/* the merged row says whether it is enrolled and in which group (enrolled by identity) */
	if (fgw_store_device_get(f->store, addr, &rec) == 0) {
		dev->enrolled = rec.enrolled;
		snprintf(dev->grp, sizeof(dev->grp), "%s", rec.grp);
	}
	return dev;
}

FGW_EXPORT int fgw_fleet_device_identity(struct fgw_fleet *f, const char *old_address,
					 const char *address)
{
	struct fleet_dev *old, *dev;
	char from[40], to[40];
	int r;

	if (!f || fgw_address_normalize(old_address, from) < 0 ||
	    fgw_address_normalize(address, to) < 0)
		return -EINVAL;
	if (strcmp(from, to) == 0)
		return 0;
	r = fgw_store_device_identity_resolved(f->store, from, to, fleet_wall(f));
	if (r == -ENOENT)
		return 0; /* never registered under the old address: nothing to move */
	if (r < 0) {
		fleet_store_failed(f, r, "identity resolution");
		return r;
	}
	fgw_notice("event: device-identity-resolved, device: %s, from: %s%s", to, from,
		   r == 1 ? ", merged: yes" : "");
	old = fleet_dev_find(f, from);
	if (!old)
		return 0;
	dev = adopt(f, old, to);
	if (!dev)
		return -ENOMEM;
	for (struct fleet_job *j = f->jobs; j; j = j->next)
		if (j->dev == old) {
			j->dev = dev;
			snprintf(j->address, sizeof(j->address), "%s", to);
		}
	fleet_dev_remove(f, from);
	if (!dev->job)
		dev->checked_gen = 0; /* enrolled from now on, perhaps: ask for a job again */
	fleet_load_dev_job(f, dev);
	fleet_kick(f);
	return 0;
}
