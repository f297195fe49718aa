/*
 * Retention (migration 0005): old events, finished jobs of releases no longer in force and
 * BLE devices not seen for long are deleted in small batches, one short transaction per call,
 * so the fleet's own writes never wait long behind a clean-up.
 */
#include <errno.h>

#include "store-private.h"
#include "util.h"

#define TERMINAL "('done', 'skipped', 'reverted', 'failed', 'superseded')"

/* Runs one DELETE with ?1 = @a, ?2 = @b; returns the rows it deleted or -errno. */
static int64_t delete_some(struct fgw_store *s, const char *sql, int64_t a, int64_t b)
{
	sqlite3_stmt *st;
	int r = fgw_store__prepare(s, sql, &st);

	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, a);
	sqlite3_bind_int64(st, 2, b);
	r = fgw_store__step_done(s, st);
	return r < 0 ? r : sqlite3_changes64(s->db);
}

struct prune {
	const struct fgw_store_retention *rt;
	int64_t now;
	int64_t batch;
	struct fgw_store_pruned *out;
};

static int prune_events(struct fgw_store *s, struct prune *p)
{
	int64_t n = 0, m;

	if (p->rt->events_max_age_ms > 0) {
		n = delete_some(
		    s,
		    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ?1 "
		    "ORDER BY at LIMIT ?2)",
		    p->now - p->rt->events_max_age_ms, p->batch);
		if (n < 0)
			return (int) n;
	}
	if (p->rt->events_max > 0 && n < p->batch) {
		/* The oldest beyond the newest events_max, by id (append order). */
		m = delete_some(s,
				"DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= "
				"(SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1) "
				"ORDER BY id LIMIT ?2)",
				p->rt->events_max, p->batch - n);
		if (m < 0)
			return (int) m;
		n += m;
	}
	p->out->events = n;
	return 0;
}

/*
 * Only finished jobs, and only of releases not in force: a verified release's job, even a
 * finished one, is what keeps the fleet from making a new job for that device.
 */
static int prune_jobs(struct fgw_store *s, struct prune *p)
{
	int64_t n;

	if (p->rt->jobs_max_age_ms <= 0)
		return 0;
	n = delete_some(s,
			"DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j "
			"JOIN releases r ON r.id = j.release_id WHERE j.finished_at < ?1 "
			"AND j.state IN " TERMINAL " AND r.state != 'verified' LIMIT ?2)",
			p->now - p->rt->jobs_max_age_ms, p->batch);
	if (n < 0)
		return (int) n;
	p->out->jobs = n;
	return 0;
}

/*
 * BLE devices not seen for the period whose jobs are all finished: a queued one waits for the
 * device (it becomes "superseded", so finished, when the next release comes). UDP devices are
 * configured, not discovered, and enrolled devices were put on the list by an operator
 * (`fotactl devices forget` takes them off): they stay.
 */
static int prune_devices(struct fgw_store *s, struct prune *p)
{
	int64_t n;

	if (p->rt->devices_max_age_ms <= 0)
		return 0;
	n = delete_some(s,
			"DELETE FROM devices WHERE address IN (SELECT d.address FROM devices d "
			"WHERE d.transport = 'ble' AND d.enrolled = 0 AND (d.last_seen < ?1 OR "
			"(d.last_seen IS NULL "
			"AND d.created_at < ?1)) AND NOT EXISTS (SELECT 1 FROM jobs j WHERE "
			"j.address = d.address AND j.state NOT IN " TERMINAL ") LIMIT ?2)",
			p->now - p->rt->devices_max_age_ms, p->batch);
	if (n < 0)
		return (int) n;
	p->out->devices = n;
	return 0;
}

FGW_EXPORT int fgw_store_prune(struct fgw_store *s, const struct fgw_store_retention *rt,
			       int64_t now, unsigned batch, struct fgw_store_pruned *ret)
{
	struct fgw_store_pruned out = {0};
	struct prune p = {rt, now, batch, &out};
	int r;

	if (!s || !rt || batch == 0)
		return -EINVAL;
	r = fgw_store__begin(s);
	if (r < 0)
		return r;
	r = prune_events(s, &p);
	if (r >= 0)
		r = prune_jobs(s, &p);
	if (r >= 0)
		r = prune_devices(s, &p);
	r = fgw_store__end(s, r);
	if (r < 0)
		return r;
	if (ret)
		*ret = out;
	return 0;
}
