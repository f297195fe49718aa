/*
 * The fleet object: the current release, the device registry as devices are seen, the queue
 * of jobs with its scheduler (connection limit, canaries first, longest-waiting first,
 * back-off), the rollout's tallies and the halt rule, and operator control.
 */
#define _GNU_SOURCE /* F_GET_SEALS */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fleet-private.h"

/*
 * A BLE device not seen for this long is out of range: its queued job waits for it. Devices
 * advertise every few hundred ms to a couple of seconds; bluetoothd drops them (LOST) after
 * 30 s unseen, which ends presence sooner.
 */
#define PRESENCE_WINDOW_MS (20 * 1000)
#define TICK_MS 1000
#define SIGHTING_WRITE_MS 10000

FGW_EXPORT const double fgw_fleet_duration_bounds[7] = {30, 60, 120, 300, 600, 1200, 3600};
FGW_EXPORT const char *const fgw_fleet_failure_kinds[6] = {
    "reverted", "rejected", "not-applied", "no-return", "unreachable", "other"};

struct fleet_release *fleet_release_ref(struct fleet_release *r)
{
	if (r)
		r->refs++;
	return r;
}

void fleet_release_unref(struct fleet_release *r)
{
	if (!r || --r->refs > 0)
		return;
	for (int i = 0; i < 2; i++)
		if (r->map[i])
			munmap((void *) r->map[i], r->map_len[i]);
	free(r);
}

#define IMAGE_SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)

static int map_image(struct fleet_release *nr, int i)
{
	const struct fgw_fleet_image *img = &nr->r.image[i];
	struct stat st;
	void *p;
	int seals;

	if (!img->present)
		return 0;
	/* only bytes nobody can change any more are uploaded: what was verified */
	seals = fcntl(img->fd, F_GET_SEALS);
	if (seals < 0)
		return errno == EINVAL ? -EPERM : -errno;
	if ((seals & IMAGE_SEALS) != IMAGE_SEALS)
		return -EPERM;
	if (fstat(img->fd, &st) < 0)
		return -errno;
	if ((uint64_t) st.st_size != img->size || st.st_size == 0)
		return -EBADF; /* not the image that was verified */
	p = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, img->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	nr->map[i] = p;
	nr->map_len[i] = (size_t) st.st_size;
	nr->r.image[i].fd = -1; /* the caller's; the mapping is what the fleet keeps */
	return 0;
}

static uint64_t system_now(void *ud)
{
	return fgw_now_ms();
}

static int64_t system_wall(void *ud)
{
	return fgw_wall_ms();
}

uint64_t fleet_now(const struct fgw_fleet *f)
{
	return f->now_ms(f->clock_ud);
}

int64_t fleet_wall(const struct fgw_fleet *f)
{
	return f->wall_ms(f->clock_ud);
}

void fleet_set_clock(struct fgw_fleet *f, uint64_t (*now_ms)(void *ud),
		     int64_t (*wall_ms)(void *ud), void *ud)
{
	f->now_ms = now_ms ? now_ms : system_now;
	f->wall_ms = wall_ms ? wall_ms : system_wall;
	f->clock_ud = ud;
}

double fleet_random(struct fgw_fleet *f)
{
	/* xorshift64*: jitter only needs to differ between devices, not to be secret. */
	f->rnd ^= f->rnd >> 12;
	f->rnd ^= f->rnd << 25;
	f->rnd ^= f->rnd >> 27;
	return (double) ((f->rnd * 0x2545F4914F6CDD1DULL) >> 11) / (double) (1ULL << 53);
}

unsigned fleet_connections(struct fgw_fleet *f)
{
	unsigned n = 0;

	for (struct fleet_job *j = f->jobs; j; j = j->next)
		if (j->conn && j->conn->open)
			n++;
	return n;
}

FGW_EXPORT void fgw_fleet_hold(struct fgw_fleet *f, const char *why)
{
	if (!f->store_failed)
		fgw_error("No jobs will start: %s", why);
	f->store_failed = true;
}

void fleet_store_failed(struct fgw_fleet *f, int err, const char *what)
{
	if (!f->store_failed)
		fgw_log_errno(LOG_ERR, err,
			      "Database write failed (%s: %s); no new jobs start until fotagwd "
			      "restarts",
			      what, fgw_store_errmsg(f->store));
	f->store_failed = true;
}

/* A batch no transition ended holds only records (image state, board): lost, they are read
 * again at the next probe, as when their own write failed. */
void fleet_batch_end(struct fgw_fleet *f)
{
	int r = fgw_store_batch_end(f->store);

	if (r < 0)
		fgw_log_errno(LOG_WARNING, r,
			      "Failed to record what devices reported (%s), ignoring",
			      fgw_store_errmsg(f->store));
}

bool fleet_job_present(const struct fgw_fleet *f, const struct fleet_job *j, uint64_t now)
{
	if (strcmp(j->dev->transport, "udp") == 0)
		return true;
	return j->dev->seen_ms && now - j->dev->seen_ms <= PRESENCE_WINDOW_MS;
}

/* How many more jobs each radio takes now: its controller's limit minus those on the air. */
static void radio_room(struct fgw_fleet *f, unsigned room[FGW_FLEET_MAX_RADIOS], uint64_t now)
{
	for (unsigned i = 0; i < f->n_radios; i++) {
		struct fleet_radio *r = &f->radios[i];
		unsigned on_air = fleet_radio_active(f, r);
		unsigned limit = fleet_radio_limit(r, on_air, fleet_radio_uploading(f, r), now);

		room[i] = limit > on_air ? limit - on_air : 0;
	}
}

static void schedule(struct fgw_fleet *f)
{
	unsigned room[FGW_FLEET_MAX_RADIOS];
	unsigned limit, active = 0;
	bool canary_gate;
	uint64_t now = fleet_now(f);

	if (!f->rel || f->halted || f->store_failed || f->gate[0] || f->freeing)
		return;
	/* max_connections counts per radio (adapter): each has its own controller and slots */
	limit = f->o.max_connections * (f->n_radios ? f->n_radios : 1);
	if (f->rel->r.max_concurrent && f->rel->r.max_concurrent < limit)
		limit = f->rel->r.max_concurrent;
	for (struct fleet_job *j = f->jobs; j; j = j->next)
		if (job_is_active(j))
			active++;
	canary_gate = !f->resumed && !fgw_fleet_canary_passed(&f->counts);
	radio_room(f, room, now);

	while (active < limit) {
		struct fleet_job *best = NULL;
		struct fleet_radio *r;

		for (struct fleet_job *j = f->jobs; j; j = j->next) {
			if (j->state != FGW_JOB_STATE_QUEUED || j->rel != f->rel ||
			    j->next_attempt_ms > now || !fleet_job_present(f, j, now) ||
			    (canary_gate && !j->canary))
				continue;
			/* its radio carries as many uploads as still pay, no more */
			r = fleet_radio_of_job(f, j);
			if (r && room[r - f->radios] == 0)
				continue;
			if (!best || (j->canary && !best->canary) ||
			    (j->canary == best->canary &&
			     (j->last_start_ms < best->last_start_ms ||
			      (j->last_start_ms == best->last_start_ms && j->id < best->id))))
				best = j;
		}
		if (!best)
			break;
		r = fleet_radio_of_job(f, best);
		if (r)
			room[r - f->radios]--;
		job_start(best);
		active++;
		if (f->halted || f->store_failed)
			break;
	}
}

/* Frees the jobs that finished since the last pass: none of their callers is on the stack. */
static void reap(struct fgw_fleet *f)
{
	for (struct fleet_job **p = &f->jobs; *p;) {
		struct fleet_job *j = *p;
		if (fgw_job_state_is_terminal(j->state)) {
			*p = j->next;
			job_free(j);
		} else {
			p = &j->next;
		}
	}
}

FGW_EXPORT void fgw_fleet_set_gate(struct fgw_fleet *f, const char *why)
{
	if (why && *why) {
		if (strcmp(f->gate, why) != 0)
			fgw_warning("No new jobs start: %s", why);
		snprintf(f->gate, sizeof(f->gate), "%s", why);
		return;
	}
	if (!f->gate[0])
		return;
	fgw_notice("New jobs may start again (was: %s)", f->gate);
	f->gate[0] = '\0';
	schedule(f);
}

static void on_kick(uv_timer_t *t)
{
	reap(t->data);
	schedule(t->data);
}

static void on_tick(uv_timer_t *t)
{
	fleet_unenrolled_prune(t->data);
	on_kick(t);
}

void fleet_kick(struct fgw_fleet *f)
{
	if (!f->freeing)
		uv_timer_start(&f->kick, on_kick, 0, 0);
}

static bool in_groups(const struct fgw_fleet_release *rel, const char *grp)
{
	if (rel->n_groups == 0)
		return true;
	for (size_t i = 0; i < rel->n_groups; i++)
		if (grp && strcmp(rel->groups[i], grp) == 0)
			return true;
	return false;
}

void fleet_count_terminal(struct fgw_fleet *f, bool canary, enum fgw_job_state s, int sign)
{
	bool failed = s == FGW_JOB_STATE_FAILED || s == FGW_JOB_STATE_REVERTED;

	if (s == FGW_JOB_STATE_SUPERSEDED)
		return;
	f->counts.finished += sign;
	f->counts.failed += failed ? sign : 0;
	if (canary) {
		f->counts.canary_finished += sign;
		f->counts.canary_failed += failed ? sign : 0;
	}
}

static bool fleet_should_halt(struct fgw_fleet *f, char *reason, size_t size)
{
	struct fgw_fleet_rollout_counts c = f->counts;

	if (f->resumed) {
		c.finished -= f->baseline.finished;
		c.failed -= f->baseline.failed;
		c.canary_total = c.canary_finished = c.canary_failed = 0;
	}
	return fgw_fleet_should_halt(&c, f->rel->r.max_failure_rate, reason, size);
}

void fleet_job_finished(struct fgw_fleet *f, struct fleet_job *job, enum fgw_job_state to)
{
	char reason[200];
	double secs = (double) (fleet_wall(f) - job->created_wall_ms) / 1000.0;

	if (job->rel == f->rel)
		fleet_count_terminal(f, job->canary, to, 1);
	switch (to) {
	case FGW_JOB_STATE_DONE:
		f->stats.jobs_done++;
		break;
	case FGW_JOB_STATE_FAILED:
		f->stats.jobs_failed++;
		f->stats.failures[job->failure_kind]++;
		break;
	case FGW_JOB_STATE_REVERTED:
		f->stats.jobs_reverted++;
		f->stats.failures[FLEET_FAIL_REVERTED]++;
		break;
	case FGW_JOB_STATE_SKIPPED:
		f->stats.jobs_skipped++;
		break;
	default:
		break;
	}
	if (to != FGW_JOB_STATE_SUPERSEDED) {
		size_t i = 0;
		while (i < ARRAY_SIZE(fgw_fleet_duration_bounds) &&
		       secs > fgw_fleet_duration_bounds[i])
			i++;
		f->stats.duration_buckets[i]++;
		f->stats.duration_sum_s += secs;
	}
	if (job->dev->job == job)
		job->dev->job = NULL;
	/* A job of an older release finished: the device's turn for the current one. */
	if (job->rel != f->rel)
		fleet_load_dev_job(f, job->dev);

	if (!f->halted && f->rel && fleet_should_halt(f, reason, sizeof(reason)))
		(void) fgw_fleet_pause(f, "policy", reason);
	fleet_kick(f);
}

static bool take_canary(struct fgw_fleet *f)
{
	return f->n_canary < fgw_fleet_canary_quota(f->rel->r.canary_percent, f->n_targets + 1);
}

static void count_target(struct fgw_fleet *f, bool canary)
{
	f->n_targets++;
	f->n_canary += canary;
	f->counts.canary_total += canary;
}

/*
 * Gives a device met in this run its job for the current release in memory: loaded if the
 * store has an unfinished one, created if it is a target without one. A finished job (or a
 * device that is no target) is remembered per release, so sightings stop asking the store.
 */
void fleet_load_dev_job(struct fgw_fleet *f, struct fleet_dev *dev)
{
	struct fgw_store_job_rec rec;
	bool created;
	int r;

	if (!f->rel || f->store_failed || dev->job || dev->checked_gen == f->rel_gen ||
	    !fleet_dev_wanted(f, dev))
		return; /* an unenrolled device is asked again once enrolled */
	if (!in_groups(&f->rel->r, dev->grp)) {
		dev->checked_gen = f->rel_gen;
		return;
	}
	r = fgw_store_job_ensure(f->store, dev->address, f->rel->r.id, take_canary(f),
				 fleet_wall(f), &rec, &created);
	if (r < 0) {
		fleet_store_failed(f, r, "job creation");
		return;
	}
	if (created)
		count_target(f, rec.canary);
	if (fgw_job_state_is_terminal(fgw_job_state_from_string(rec.state))) {
		dev->checked_gen = f->rel_gen; /* a job per device and release, once */
		return;
	}
	struct fleet_job *job = job_new(f, &rec, f->rel, dev);
	if (!job)
		return;
	job->next = f->jobs;
	f->jobs = job;
	fleet_kick(f);
}

/* The device's entry, read from the store (and registered there if new) on first sight. */
static struct fleet_dev *meet_device(struct fgw_fleet *f, const char *address,
				     const char *transport, const char *name)
{
	struct fgw_store_device_rec rec;
	struct fleet_dev *dev;
	bool known = fgw_store_device_get(f->store, address, &rec) == 0;

	dev = fleet_dev_add(f, address, known ? rec.transport : transport,
			    known ? rec.grp : f->default_group);
	if (!dev)
		return NULL;
	if (known) {
		dev->enrolled = rec.enrolled;
		dev->written_wall_ms = rec.last_seen;
		dev->name_hash = fleet_hash(rec.name);
		return dev;
	}
	dev->written_wall_ms = INT64_MIN / 2; /* never written: write now */
	dev->name_hash = fleet_hash(name);
	fgw_notice("event: device-new, device: %s, transport: %s, name: %s", address, transport,
		   name ? name : "");
	return dev;
}

FGW_EXPORT void fgw_fleet_device_seen(struct fgw_fleet *f, const char *address,
				      const char *transport, const char *name, const int *rssi)
{
	struct fleet_dev *dev = fleet_dev_find(f, address);
	int64_t wall = fleet_wall(f);
	bool new_dev, was_absent;
	int r;

	if (f->store_failed)
		return; /* nothing can be recorded; no job may start */
	if (!dev)
		dev = meet_device(f, address, transport, name);
	if (!dev)
		return;
	new_dev = dev->written_wall_ms == INT64_MIN / 2;
	/*
	 * BlueZ reports every advertisement (several a second per device): record a sighting
	 * at most every SIGHTING_WRITE_MS unless the name changed, not one write per advert.
	 */
	if (wall - dev->written_wall_ms >= SIGHTING_WRITE_MS ||
	    (name && fleet_hash(name) != dev->name_hash)) {
		r = fgw_store_device_seen(f->store, address, transport, name, rssi, wall);
		if (r < 0) {
			fgw_log_errno(LOG_WARNING, r, "Failed to record device '%s', ignoring",
				      address);
			return;
		}
		if (new_dev)
			(void) fgw_store_device_set_group(f->store, address, f->default_group);
		dev->written_wall_ms = wall;
		if (name)
			dev->name_hash = fleet_hash(name);
	}
	fleet_load_dev_job(f, dev);
	was_absent = dev->job && !fleet_job_present(f, dev->job, fleet_now(f));
	dev->seen_ms = fleet_now(f);
	if (dev->job) {
		job_device_seen(dev->job);
		if (was_absent && dev->job && dev->job->state == FGW_JOB_STATE_QUEUED)
			fleet_kick(f);
	}
}

FGW_EXPORT void fgw_fleet_device_lost(struct fgw_fleet *f, const char *address)
{
	struct fleet_dev *dev = fleet_dev_find(f, address);

	if (dev)
		dev->seen_ms = 0;
}

struct load_ctx {
	struct fgw_fleet *f;
	int err;
};

static int load_job(const struct fgw_store_job_rec *rec, void *ud)
{
	struct load_ctx *c = ud;
	struct fgw_fleet *f = c->f;
	enum fgw_job_state s = fgw_job_state_from_string(rec->state);
	struct fgw_store_device_rec rd;
	struct fleet_dev *dev = fleet_dev_find(f, rec->address);
	struct fleet_job *job;

	/*
	 * A job of a device that is not enrolled (created while enrollment was open) neither
	 * counts nor runs; one that already reset its device finishes, for the device's sake.
	 */
	if (!rec->enrolled && !f->o.enrollment_open &&
	    (s == FGW_JOB_STATE_QUEUED || s == FGW_JOB_STATE_CONNECTING ||
	     s == FGW_JOB_STATE_PROBING || s == FGW_JOB_STATE_UPLOADING ||
	     s == FGW_JOB_STATE_MARKING || fgw_job_state_is_terminal(s)))
		return 0;
	count_target(f, rec->canary);
	if (fgw_job_state_is_terminal(s)) {
		fleet_count_terminal(f, rec->canary, s, 1);
		return 0;
	}
	/*
	 * A queued job waits in the store until its device is seen (most never are). One that
	 * got further before a restart resumes now: it may have reset its device.
	 */
	if (s == FGW_JOB_STATE_QUEUED && !dev)
		return 0;
	if (!dev && fgw_store_device_get(f->store, rec->address, &rd) == 0) {
		dev = fleet_dev_add(f, rec->address, rd.transport, rd.grp);
		if (dev)
			dev->enrolled = rd.enrolled;
	}
	if (!dev)
		return -ENOMEM;
	if (dev->job)
		return 0; /* still busy with a job of an older release */
	job = job_new(f, rec, f->rel, dev);
	if (!job)
		return -ENOMEM;
	job->next = f->jobs;
	f->jobs = job;
	return 0;
}

/* After a restart: jobs resume where the device can tell where they are. */
static void resume_jobs(struct fgw_fleet *f)
{
	for (struct fleet_job *j = f->jobs; j; j = j->next) {
		switch (j->state) {
		case FGW_JOB_STATE_CONNECTING:
		case FGW_JOB_STATE_PROBING:
		case FGW_JOB_STATE_UPLOADING:
		case FGW_JOB_STATE_MARKING:
			/* The probe finds what is already on the device; the upload resumes. */
			(void) job_enter_state(j, FGW_JOB_STATE_QUEUED, NULL,
					       "daemon restarted: re-probe the device");
			break;
		case FGW_JOB_STATE_RESETTING:
		case FGW_JOB_STATE_REBOOTING:
		case FGW_JOB_STATE_VERIFYING:
		case FGW_JOB_STATE_CONFIRMING:
			/* The reset may have happened: never upload again, verify. */
			(void) job_enter_state(j, FGW_JOB_STATE_REBOOTING, NULL,
					       "daemon restarted: verify what the reset did");
			break;
		default:
			break;
		}
	}
}

/* A device without a job for the new release: one if it is a target. */
static int offer_device(struct fgw_store_job_new *jn, void *ud)
{
	struct fgw_fleet *f = ud;
	struct fleet_dev *dev = fleet_dev_find(f, jn->address);

	if (!in_groups(&f->rel->r, jn->grp) || (dev && dev->job))
		return 0; /* a device busy with an older release gets its job when that ends */
	if (!jn->enrolled && !f->o.enrollment_open)
		return 0;
	jn->canary = take_canary(f);
	count_target(f, jn->canary);
	return 1;
}

struct stale {
	const char *release_id;
	int64_t *ids;
	char (*states)[16];
	size_t n, cap;
	int err;
};

static int collect_stale(const struct fgw_store_job_rec *rec, void *ud)
{
	struct stale *st = ud;

	if (strcmp(rec->release_id, st->release_id) == 0)
		return 0;
	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 16;
		int64_t *ids = realloc(st->ids, cap * sizeof(*ids));
		char(*states)[16] = ids ? realloc(st->states, cap * sizeof(*states)) : NULL;
		if (ids)
			st->ids = ids;
		if (!states)
			return -ENOMEM;
		st->states = states;
		st->cap = cap;
	}
	st->ids[st->n] = rec->id;
	snprintf(st->states[st->n], 16, "%s", rec->state);
	st->n++;
	return 0;
}

/*
 * At start: unfinished jobs of an older release (a release change before a restart) are
 * superseded; the current release's job re-probes their device and finds what is on it.
 */
static int supersede_stale(struct fgw_fleet *f)
{
	struct stale st = {.release_id = f->rel->r.id};
	int r = fgw_store_jobs_foreach(f->store, NULL, true, collect_stale, &st);

	for (size_t i = 0; r >= 0 && i < st.n; i++)
		r = fgw_store_job_set_state(f->store, st.ids[i], st.states[i], "superseded",
					    "superseded by a newer release while the daemon was "
					    "down",
					    NULL, fleet_wall(f));
	free(st.ids);
	free(st.states);
	return r;
}

static int adopt_release(struct fgw_fleet *f, const struct fgw_fleet_release *rel, bool at_start)
{
	if (f->store_failed)
		return -EROFS; /* held: the release waits for a writable database */
	struct fleet_release *nr = calloc(1, sizeof(*nr));
	struct load_ctx lc = {f, 0};
	int r;

	if (!nr)
		return -ENOMEM;
	nr->refs = 1;
	nr->r = *rel;
	for (int i = 0; i < 2; i++) {
		r = map_image(nr, i);
		if (r < 0) {
			fgw_log_errno(LOG_ERR, r, "Cannot map image %d of release %s", i, rel->id);
			fleet_release_unref(nr);
			return r;
		}
	}
	fleet_release_unref(f->rel);
	f->rel = nr;
	f->counts = (struct fgw_fleet_rollout_counts){0};
	f->baseline = (struct fgw_fleet_rollout_counts){0};
	f->resumed = false;
	f->n_targets = f->n_canary = 0;
	f->rel_gen++;

	r = fgw_store_rollout_state(f->store, rel->id, &f->halted, f->halted_by,
				    sizeof(f->halted_by), f->halted_reason,
				    sizeof(f->halted_reason));
	if (r < 0)
		return r;
	r = fgw_store_jobs_supersede(f->store, rel->id, fleet_wall(f));
	if (r < 0)
		return r;
	if (at_start) {
		r = supersede_stale(f);
		if (r < 0)
			return r;
	}
	r = fgw_store_jobs_foreach(f->store, rel->id, false, load_job, &lc);
	if (r < 0)
		return r;
	/* Resumed by an operator before a restart: what had finished then stays accepted. */
	if (!f->halted && strcmp(f->halted_by, "operator") == 0) {
		f->resumed = true;
		f->baseline = f->counts;
	}
	/* Only jobs a previous run left; a release change never touches running jobs. */
	if (at_start)
		resume_jobs(f);
	/* Every target's job in one transaction; in memory only for the devices met so far. */
	r = fgw_store_jobs_create(f->store, rel->id, fleet_wall(f), offer_device, f);
	if (r < 0)
		return r;
	fleet_devs_foreach(f, fleet_load_dev_job);
	fgw_notice("event: release-active, release: %s, version: %s, targets: %u, canaries: %u%s",
		   rel->id, rel->version, f->n_targets, f->n_canary,
		   f->halted ? ", halted: yes" : "");
	fleet_kick(f);
	return 0;
}

FGW_EXPORT int fgw_fleet_start(struct fgw_fleet *f, const struct fgw_fleet_release *rel)
{
	if (f->o.enrollment_open)
		fgw_warning("fleet.enrollment = open: every device whose name or service matches "
			    "gets the firmware, including one that only claims to be ours");
	uv_timer_start(&f->tick, on_tick, TICK_MS, TICK_MS);
	if (!rel)
		return 0;
	return adopt_release(f, rel, true);
}

FGW_EXPORT const struct fgw_fleet_release *fgw_fleet_release_get(struct fgw_fleet *f)
{
	return f->rel ? &f->rel->r : NULL;
}

FGW_EXPORT int fgw_fleet_set_release(struct fgw_fleet *f, const struct fgw_fleet_release *rel)
{
	struct fleet_job **p = &f->jobs;
	bool first = !f->rel;

	if (f->rel && strcmp(f->rel->r.id, rel->id) == 0)
		return 0;
	/* Jobs that did not start yet go; running ones finish their release (never mid-image). */
	while (*p) {
		struct fleet_job *j = *p;
		if (j->state == FGW_JOB_STATE_QUEUED) {
			*p = j->next;
			job_free(j);
		} else {
			p = &j->next;
		}
	}
	/* The first release after a start picks up the jobs a previous run left. */
	return adopt_release(f, rel, first);
}

FGW_EXPORT int fgw_fleet_new(uv_loop_t *loop, struct fgw_store *store,
			     const struct fgw_fleet_options *o, struct fgw_fleet **ret)
{
	struct fgw_fleet *f;

	if (!o->transport_new || o->max_connections == 0)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->loop = loop;
	f->store = store;
	f->o = *o;
	snprintf(f->default_group, sizeof(f->default_group), "%s",
		 o->default_group ? o->default_group : "default");
	f->o.default_group = f->default_group;
	fleet_set_clock(f, NULL, NULL, NULL);
	f->rnd = (uint64_t) fleet_wall(f) ^ ((uint64_t) getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
	uv_timer_init(loop, &f->tick);
	uv_timer_init(loop, &f->kick);
	f->tick.data = f->kick.data = f;
	f->n_handles = 2;
	*ret = f;
	return 0;
}

FGW_EXPORT void fgw_fleet_set_options(struct fgw_fleet *f, const struct fgw_fleet_options *o)
{
	f->o.retry_limit = o->retry_limit;
	f->o.backoff_base_ms = o->backoff_base_ms;
	f->o.backoff_max_ms = o->backoff_max_ms;
	f->o.reboot_timeout_ms = o->reboot_timeout_ms;
	f->o.progress_flush_ms = o->progress_flush_ms;
	f->o.chunk_timeout_ms = o->chunk_timeout_ms;
	f->o.first_chunk_timeout_ms = o->first_chunk_timeout_ms;
	f->o.upload_window = o->upload_window;
	f->o.max_unenrolled = o->max_unenrolled;
	f->o.require_board_match = o->require_board_match;
	f->o.unenrolled_ttl_ms = o->unenrolled_ttl_ms;
	snprintf(f->default_group, sizeof(f->default_group), "%s",
		 o->default_group ? o->default_group : "default");
}

static void fleet_handle_closed(uv_handle_t *h)
{
	struct fgw_fleet *f = h->data;

	if (--f->n_handles == 0)
		free(f);
}

FGW_EXPORT struct fgw_fleet *fgw_fleet_free(struct fgw_fleet *f)
{
	if (!f)
		return NULL;
	f->freeing = true;
	while (f->jobs) {
		struct fleet_job *j = f->jobs;
		f->jobs = j->next;
		job_free(j);
	}
	fleet_devs_free(f);
	fleet_release_unref(f->rel);
	f->rel = NULL;
	uv_close((uv_handle_t *) &f->tick, fleet_handle_closed);
	uv_close((uv_handle_t *) &f->kick, fleet_handle_closed);
	return NULL;
}
