/*
 * The fleet's radios: which adapter serves each device (told by the daemon), one concurrency
 * controller (radio.c) per adapter, fed with the bytes its devices acknowledge and with the
 * links its controller refuses.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fleet-private.h"

static struct fleet_radio *radio_find(struct fgw_fleet *f, const char *name, bool add)
{
	if (!name || !*name)
		return NULL;
	for (unsigned i = 0; i < f->n_radios; i++)
		if (strcmp(f->radios[i].name, name) == 0)
			return &f->radios[i];
	if (!add || f->n_radios >= FGW_FLEET_MAX_RADIOS)
		return NULL;
	fleet_radio_init(&f->radios[f->n_radios], name, f->o.max_connections, fleet_now(f));
	return &f->radios[f->n_radios++];
}

struct fleet_radio *fleet_radio_of_job(struct fgw_fleet *f, const struct fleet_job *job)
{
	return job->dev ? radio_find(f, job->dev->radio, false) : NULL;
}

bool fleet_job_on_air(const struct fleet_job *job)
{
	/* a rebooting device has no link; a queued or finished job neither */
	return job_is_active(job) && job->state != FGW_JOB_STATE_REBOOTING;
}

unsigned fleet_radio_active(struct fgw_fleet *f, const struct fleet_radio *r)
{
	unsigned n = 0;

	for (struct fleet_job *j = f->jobs; j; j = j->next)
		if (fleet_job_on_air(j) && fleet_radio_of_job(f, j) == r)
			n++;
	return n;
}

unsigned fleet_radio_uploading(struct fgw_fleet *f, const struct fleet_radio *r)
{
	unsigned n = 0;

	for (struct fleet_job *j = f->jobs; j; j = j->next)
		if (j->state == FGW_JOB_STATE_UPLOADING && fleet_radio_of_job(f, j) == r)
			n++;
	return n;
}

FGW_EXPORT void fgw_fleet_device_radio(struct fgw_fleet *f, const char *address, const char *radio)
{
	struct fleet_dev *dev = fleet_dev_find(f, address);

	if (!dev)
		return;
	/* A job on the air keeps its radio's count until it leaves: it moves at its next
	 * connection, which goes where bluez picks. */
	snprintf(dev->radio, sizeof(dev->radio), "%s",
		 radio && radio_find(f, radio, true) ? radio : "");
}

FGW_EXPORT size_t fgw_fleet_radios(struct fgw_fleet *f, struct fgw_fleet_radio_stats *ret,
				   size_t max)
{
	uint64_t now = fleet_now(f);

	for (unsigned i = 0; i < f->n_radios && i < max; i++) {
		struct fleet_radio *r = &f->radios[i];

		memset(&ret[i], 0, sizeof(ret[i]));
		snprintf(ret[i].name, sizeof(ret[i].name), "%s", r->name);
		ret[i].limit = r->limit;
		ret[i].active = fleet_radio_active(f, r);
		ret[i].goodput_bps = fleet_radio_rate(r, now);
		ret[i].bytes = r->bytes;
		ret[i].raised = r->raised;
		ret[i].lowered = r->lowered;
		ret[i].refused = r->refused;
	}
	return f->n_radios;
}
