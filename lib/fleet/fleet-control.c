/*
 * Operator control of the rollout (pause, resume, retry of one device) and what the fleet
 * reports (live progress, statistics).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fleet-private.h"

/* The device's job in memory, of any release: a device has one job running at a time. */
static struct fleet_job *find_job(struct fgw_fleet *f, const char *address)
{
	struct fleet_dev *d = fleet_dev_find(f, address);

	return d ? d->job : NULL;
}

FGW_EXPORT int fgw_fleet_pause(struct fgw_fleet *f, const char *by, const char *reason)
{
	int r;

	if (!f->rel)
		return -ENOENT;
	if (f->halted)
		return -EALREADY;
	r = fgw_store_rollout_set(f->store, f->rel->r.id, true, by, reason, fleet_wall(f));
	if (r < 0)
		return r;
	f->halted = true;
	snprintf(f->halted_by, sizeof(f->halted_by), "%s", by);
	snprintf(f->halted_reason, sizeof(f->halted_reason), "%s", reason ? reason : "");
	fgw_notice("event: rollout-halted, release: %s, by: %s, reason: %s", f->rel->r.id, by,
		   reason ? reason : "");
	return 0;
}

FGW_EXPORT int fgw_fleet_resume(struct fgw_fleet *f)
{
	int r;

	if (!f->rel)
		return -ENOENT;
	if (!f->halted)
		return -EALREADY;
	r = fgw_store_rollout_set(f->store, f->rel->r.id, false, "operator", "resumed",
				  fleet_wall(f));
	if (r < 0)
		return r;
	f->halted = false;
	f->halted_by[0] = f->halted_reason[0] = '\0';
	f->resumed = true;
	f->baseline = f->counts;
	fgw_notice("event: rollout-resumed, release: %s", f->rel->r.id);
	fleet_kick(f);
	return 0;
}

struct retry_ctx {
	const char *address;
	struct fgw_store_job_rec rec;
	bool found;
};

static int find_rec(const struct fgw_store_job_rec *rec, void *ud)
{
	struct retry_ctx *c = ud;

	if (strcmp(rec->address, c->address) == 0) {
		c->rec = *rec;
		c->found = true;
	}
	return 0;
}

FGW_EXPORT int fgw_fleet_retry(struct fgw_fleet *f, const char *address)
{
	struct retry_ctx c = {.address = address};
	struct fleet_job *job = find_job(f, address);
	struct fgw_store_device_rec rd;
	struct fleet_dev *dev;
	enum fgw_job_state s;
	int r;

	if (!f->rel)
		return -ENOENT;
	if (job) {
		if (job_is_active(job))
			return -EBUSY;
		/* Waiting in back-off: go now, with a fresh count. */
		job->attempts = 0;
		job->next_attempt_ms = 0;
		fleet_kick(f);
		return 0;
	}
	r = fgw_store_jobs_foreach(f->store, f->rel->r.id, false, find_rec, &c);
	if (r < 0)
		return r;
	if (!c.found)
		return -ENOENT;
	s = fgw_job_state_from_string(c.rec.state);
	if (s == FGW_JOB_STATE_DONE || s == FGW_JOB_STATE_SKIPPED)
		return -EALREADY; /* running the release already */
	r = fgw_store_job_set_retry(f->store, c.rec.id, 0, 0, fleet_wall(f));
	if (r >= 0)
		r = fgw_store_job_set_state(f->store, c.rec.id, c.rec.state, "queued", NULL,
					    "retry requested by the operator", fleet_wall(f));
	if (r < 0)
		return r;
	fleet_count_terminal(f, c.rec.canary, s, -1);
	snprintf(c.rec.state, sizeof(c.rec.state), "queued");
	c.rec.attempts = 0;
	c.rec.next_attempt_at = 0;
	dev = fleet_dev_find(f, address);
	if (!dev && fgw_store_device_get(f->store, address, &rd) == 0)
		dev = fleet_dev_add(f, address, rd.transport, rd.grp);
	if (!dev)
		return -ENOMEM;
	job = job_new(f, &c.rec, f->rel, dev);
	if (!job)
		return -ENOMEM;
	/* The operator says it is there: no waiting for an advertisement. */
	dev->seen_ms = fleet_now(f);
	job->next = f->jobs;
	f->jobs = job;
	fleet_kick(f);
	return 0;
}

FGW_EXPORT int fgw_fleet_progress_get(struct fgw_fleet *f, const char *address,
				      struct fgw_fleet_progress *ret)
{
	struct fleet_job *job = find_job(f, address);

	if (!job || job->state != FGW_JOB_STATE_UPLOADING || !job->conn || job->conn->image < 0)
		return -ENOENT;
	*ret = (struct fgw_fleet_progress){
	    .image = job->conn->image,
	    .offset = job->conn->offset,
	    .total = job->conn->total,
	    .rate_bps = job->conn->rate_bps,
	};
	return 0;
}

FGW_EXPORT void fgw_fleet_get_stats(struct fgw_fleet *f, struct fgw_fleet_stats *ret)
{
	*ret = f->stats;
	ret->halted = f->halted;
	snprintf(ret->halted_by, sizeof(ret->halted_by), "%s", f->halted_by);
	snprintf(ret->halted_reason, sizeof(ret->halted_reason), "%s", f->halted_reason);
	snprintf(ret->release_id, sizeof(ret->release_id), "%s", f->rel ? f->rel->r.id : "");
	ret->connections = fleet_connections(f);
	ret->active = 0;
	for (struct fleet_job *j = f->jobs; j; j = j->next)
		ret->active += job_is_active(j);
}
