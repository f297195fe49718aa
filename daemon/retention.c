#include <errno.h>

#include "daemon.h"
#include "retention.h"
#include "store.h"
#include "util.h"

#define DAY_MS (86400LL * 1000)
/* Rows of each kind per transaction: a few ms of SQLite, so the fleet never waits long. */
#define BATCH 500
#define FIRST_MS 2000
#define IDLE_MS 60000
/* While a batch comes back full there is a backlog (a first run on an old database). */
#define BACKLOG_MS 1000

static void on_tick(uv_timer_t *t)
{
	struct fgw_daemon *d = t->data;
	struct fgw_store_retention rt = {
	    .events_max_age_ms = d->cfg.retain_events_days * DAY_MS,
	    .events_max = d->cfg.retain_events_max,
	    .jobs_max_age_ms = d->cfg.retain_jobs_days * DAY_MS,
	    .devices_max_age_ms = d->cfg.forget_devices_after_days * DAY_MS,
	};
	struct fgw_store_pruned p;
	uint64_t next = IDLE_MS;
	int r;

	if (d->stopping || d->db_read_only)
		return;
	r = fgw_store_prune(d->store, &rt, fgw_wall_ms(), BATCH, &p);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "Retention: pruning failed (%s), trying again later",
			      fgw_store_errmsg(d->store));
	} else if (p.events + p.jobs + p.devices > 0) {
		fgw_info("event: pruned, events: %lld, jobs: %lld, devices: %lld",
			 (long long) p.events, (long long) p.jobs, (long long) p.devices);
		if (p.events == BATCH || p.jobs == BATCH || p.devices == BATCH)
			next = BACKLOG_MS;
	}
	uv_timer_start(t, on_tick, next, 0);
}

int fgw_daemon_retention_start(struct fgw_daemon *d)
{
	int r = uv_timer_init(d->loop, &d->retention);

	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to set up the retention timer");
	d->retention.data = d;
	d->n_handles++;
	return uv_timer_start(&d->retention, on_tick, FIRST_MS, 0);
}
