/*
 * One device's job: the state machine of fleet.h. Handlers (link state, SMP responses,
 * timers) read job->state, decide, and call job_enter_state(), which persists the transition
 * and its event before acting on it; nothing else writes job->state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet-private.h"
#include "transport.h"

static const char *const state_names[_FGW_JOB_STATE_MAX] = {
    [FGW_JOB_STATE_QUEUED] = "queued",	       [FGW_JOB_STATE_CONNECTING] = "connecting",
    [FGW_JOB_STATE_PROBING] = "probing",       [FGW_JOB_STATE_UPLOADING] = "uploading",
    [FGW_JOB_STATE_MARKING] = "marking",       [FGW_JOB_STATE_RESETTING] = "resetting",
    [FGW_JOB_STATE_REBOOTING] = "rebooting",   [FGW_JOB_STATE_VERIFYING] = "verifying",
    [FGW_JOB_STATE_CONFIRMING] = "confirming", [FGW_JOB_STATE_DONE] = "done",
    [FGW_JOB_STATE_SKIPPED] = "skipped",       [FGW_JOB_STATE_REVERTED] = "reverted",
    [FGW_JOB_STATE_FAILED] = "failed",	       [FGW_JOB_STATE_SUPERSEDED] = "superseded",
};

FGW_EXPORT const char *fgw_job_state_to_string(enum fgw_job_state s)
{
	const char *name = FGW_ENUM_NAME(state_names, s);

	return name ? name : "invalid";
}

FGW_EXPORT enum fgw_job_state fgw_job_state_from_string(const char *s)
{
	int v = FGW_ENUM_VALUE(state_names, s);

	return v < 0 ? _FGW_JOB_STATE_INVALID : (enum fgw_job_state) v;
}

FGW_EXPORT bool fgw_job_state_is_terminal(enum fgw_job_state s)
{
	return s == FGW_JOB_STATE_DONE || s == FGW_JOB_STATE_SKIPPED ||
	       s == FGW_JOB_STATE_REVERTED || s == FGW_JOB_STATE_FAILED ||
	       s == FGW_JOB_STATE_SUPERSEDED;
}

bool job_is_active(const struct fleet_job *job)
{
	return job->state != FGW_JOB_STATE_QUEUED && !fgw_job_state_is_terminal(job->state);
}

struct fleet_job *job_new(struct fgw_fleet *f, const struct fgw_store_job_rec *rec,
			  struct fleet_release *rel, struct fleet_dev *dev)
{
	struct fleet_job *job = calloc(1, sizeof(*job));

	if (!job)
		return NULL;
	job->fleet = f;
	job->dev = dev;
	dev->job = job;
	job->rel = fleet_release_ref(rel);
	job->id = rec->id;
	snprintf(job->address, sizeof(job->address), "%s", rec->address);
	job->state = fgw_job_state_from_string(rec->state);
	job->canary = rec->canary;
	job->attempts = rec->attempts;
	job->images_mask = rec->images_mask;
	job->distrust_slot = rec->distrust_slots;
	job->created_wall_ms = rec->created_at;
	job->failure_kind = FLEET_FAIL_OTHER;
	/* Back-off deadlines are wall-clock in the store and monotonic here. */
	if (rec->next_attempt_at > fleet_wall(f))
		job->next_attempt_ms =
		    fleet_now(f) + (uint64_t) (rec->next_attempt_at - fleet_wall(f));
	uv_timer_init(f->loop, &job->timer);
	job->timer.data = job;
	return job;
}

/* ---- connection ---------------------------------------------------------------------- */

void job_conn_close(struct fleet_job *job)
{
	struct job_conn *c = job->conn;

	if (!c)
		return;
	job_upload_cancel(job);
	job->conn = NULL; /* callbacks of the cancelled requests see no connection */
	c->smp = fgw_smp_client_free(c->smp);
	c->t = fgw_transport_free(c->t);
	free(c);
}

static void on_link(struct fgw_smp_client *smp, int err, void *user_data);

int job_conn_open(struct fleet_job *job)
{
	struct fgw_fleet *f = job->fleet;
	struct job_conn *c;
	int r;

	job_conn_close(job);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->image = -1;
	r = f->o.transport_new(f->o.transport_user_data, job->address, &c->t);
	if (r >= 0)
		r = fgw_smp_client_new(f->loop, c->t, &c->smp);
	if (r < 0) {
		fgw_transport_free(c->t);
		free(c);
		return r;
	}
	job->conn = c;
	r = fgw_smp_client_open(c->smp, on_link, job);
	if (r < 0)
		job_conn_close(job);
	return r;
}

static void job_timer_closed(uv_handle_t *h)
{
	free(container_of(h, struct fleet_job, timer));
}

void job_free(struct fleet_job *job)
{
	if (!job)
		return;
	job_conn_close(job);
	if (job->dev && job->dev->job == job)
		job->dev->job = NULL;
	fleet_release_unref(job->rel);
	job->rel = NULL;
	job->closing = true;
	uv_close((uv_handle_t *) &job->timer, job_timer_closed);
}

/* ---- requests --------------------------------------------------------------------------- */

/* Sends @req (always released); a failure to send is a transient failure of the job. */
int job_send_req(struct fleet_job *job, struct fgw_smp_req *req, int build_err, uint64_t timeout_ms,
		 fgw_smp_rsp_cb_t cb, const char *what)
{
	int r = build_err;

	if (r >= 0 && (!job->conn || !job->conn->smp))
		r = -ENOTCONN;
	if (r >= 0)
		r = fgw_smp_client_request(job->conn->smp, req, (unsigned) timeout_ms, cb, job,
					   NULL, NULL);
	fgw_smp_req_done(req);
	if (r < 0)
		job_on_failure(job, r, true, what);
	return r;
}

/*
 * Common prologue of response callbacks: false when the callback must stop (cancelled, or a
 * failure that was handled). A device error is handled unless @allow_device_error.
 */
bool job_rsp_usable(struct fleet_job *job, int err, const struct fgw_smp_rsp *rsp,
		    bool allow_device_error, const char *what)
{
	char buf[160], msg[256];

	if (err == -ECANCELED || !job->conn)
		return false;
	if (err < 0) {
		snprintf(msg, sizeof(msg), "%s: %s", what, strerror(-err));
		job_on_failure(job, err, true, msg);
		return false;
	}
	if (!allow_device_error && !fgw_smp_status_ok(&rsp->status)) {
		fgw_smp_status_format(&rsp->status, buf, sizeof(buf));
		snprintf(msg, sizeof(msg), "%s: device answered %s", what, buf);
		job_on_failure(job, -EREMOTEIO, fgw_smp_status_is_busy(&rsp->status), msg);
		return false;
	}
	return true;
}

uint64_t job_req_timeout(const struct fleet_job *job)
{
	return job->fleet->o.request_timeout_ms ? job->fleet->o.request_timeout_ms : 5000;
}

/* ---- probing: params, bootloader mode, image state, net core version ---------------------- */

static void probe_step(struct fleet_job *job);

void job_view_from_state(struct fgw_fleet_device_view *v, const struct fgw_smp_img_state *st)
{
	for (int i = 0; i < 2; i++)
		for (int s = 0; s < 2; s++) {
			const struct fgw_smp_img_slot *e =
			    fgw_smp_img_state_find(st, (uint32_t) i, (uint32_t) s);
			struct fgw_fleet_slot *d = &v->slot[i][s];

			*d = (struct fgw_fleet_slot){0};
			if (!e || !e->has_hash)
				continue;
			d->present = true;
			memcpy(d->hash, e->hash, 32);
			snprintf(d->version, sizeof(d->version), "%s", e->version);
			d->active = e->active;
			d->confirmed = e->confirmed;
			d->pending = e->pending;
			d->permanent = e->permanent;
		}
}

/* Records the slots as the device reported them, for the API and for the next probe. */
void job_store_slots(struct fleet_job *job, const struct fgw_smp_img_state *st)
{
	struct fgw_store_image rows[FGW_SMP_MAX_IMG_SLOTS];
	size_t n = 0;
	int r;

	for (size_t i = 0; i < st->n_slots && n < ARRAY_SIZE(rows); i++) {
		const struct fgw_smp_img_slot *e = &st->slots[i];
		struct fgw_store_image *row = &rows[n++];

		*row = (struct fgw_store_image){.image = (int) e->image, .slot = (int) e->slot};
		snprintf(row->version, sizeof(row->version), "%s", e->version);
		if (e->has_hash)
			fgw_hex_encode(e->hash, 32, row->hash);
		row->flags = (e->active ? FGW_STORE_IMG_ACTIVE : 0) |
			     (e->confirmed ? FGW_STORE_IMG_CONFIRMED : 0) |
			     (e->pending ? FGW_STORE_IMG_PENDING : 0) |
			     (e->permanent ? FGW_STORE_IMG_PERMANENT : 0) |
			     (e->bootable ? FGW_STORE_IMG_BOOTABLE : 0);
	}
	r = fgw_store_device_images_set(job->fleet->store, job->address, rows, n,
					fleet_wall(job->fleet));
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "Failed to record image slots of '%s', ignoring",
			      job->address);
}

void job_release_view(const struct fleet_job *job, struct fgw_fleet_release_view *rv)
{
	const struct fgw_fleet_release *rel = &job->rel->r;

	*rv = (struct fgw_fleet_release_view){.policy_confirm = rel->policy_confirm};
	for (int i = 0; i < 2; i++) {
		rv->has[i] = rel->image[i].present;
		memcpy(rv->hash[i], rel->image[i].hash, 32);
		snprintf(rv->version[i], sizeof(rv->version[i]), "%s", rel->image[i].version);
	}
}

static void probe_rsp(struct fleet_job *job, int err, const struct fgw_smp_rsp *rsp)
{
	struct job_conn *c = job->conn;
	static const char *const what[] = {"mcumgr params", "os info", "bootloader info",
					   "image state", "net core version"};
	int r;

	if (!job_rsp_usable(job, err, rsp, true, what[c ? c->probe : 0]))
		return;
	switch (c->probe) {
	case JOB_PROBE_PARAMS:
		/* Without params the device takes one MTU-sized packet at a time. */
		c->has_params = fgw_smp_status_ok(&rsp->status) &&
				fgw_smp_params_decode(rsp->payload, rsp->len, &c->params) == 0;
		break;
	case JOB_PROBE_OS_INFO:
		job_board_probe_rsp(job, rsp);
		break;
	case JOB_PROBE_BOOT_MODE: {
		struct fgw_smp_bootloader_info bi;
		c->view.mode = FGW_MCUBOOT_MODE_UNKNOWN;
		if (fgw_smp_status_ok(&rsp->status) &&
		    fgw_smp_bootloader_info_decode(rsp->payload, rsp->len, &bi) == 0 && bi.has_mode)
			c->view.mode = bi.mode;
		break;
	}
	case JOB_PROBE_IMAGE_STATE: {
		struct fgw_smp_img_state st;
		char buf[160];
		if (!fgw_smp_status_ok(&rsp->status)) {
			fgw_smp_status_format(&rsp->status, buf, sizeof(buf));
			job_on_failure(job, -EREMOTEIO, fgw_smp_status_is_busy(&rsp->status), buf);
			return;
		}
		r = fgw_smp_img_state_decode(rsp->payload, rsp->len, &st);
		if (r < 0) {
			job_on_failure(job, r, true, "image state: malformed answer");
			return;
		}
		job_view_from_state(&c->view, &st);
		job_store_slots(job, &st);
		break;
	}
	case JOB_PROBE_NET_VERSION: {
		_cleanup_free_ char *version = NULL;
		c->view.net_version_known =
		    fgw_smp_status_ok(&rsp->status) &&
		    fgw_smp_text_field_decode(rsp->payload, rsp->len, "net", &version) == 0;
		if (c->view.net_version_known)
			snprintf(c->view.net_version, sizeof(c->view.net_version), "%s", version);
		break;
	}
	case _JOB_PROBE_END:
		break;
	}
	c->probe++;
	if (job->state == FGW_JOB_STATE_PROBING)
		probe_step(job);
	else
		job_verify_step(job);
}

/*
 * The last answer of a probe or a verification is followed by its store writes (image state,
 * board and mode, plan or results) and the transition they lead to: one batch, one commit.
 */
void job_probe_rsp_cb(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct fleet_job *job = user_data;
	struct fgw_fleet *f = job->fleet; /* the job may be gone after the answer */
	bool batch = fgw_store_batch_begin(f->store) == 0;

	probe_rsp(job, err, rsp);
	if (batch)
		fleet_batch_end(f);
}

/* Sends probe request @step; false when this device is not asked that. */
bool job_probe_send(struct fleet_job *job, enum job_probe_step step)
{
	struct fgw_smp_req req = {0};
	int r;

	switch (step) {
	case JOB_PROBE_PARAMS:
		r = fgw_smp_req_params(&req);
		break;
	case JOB_PROBE_OS_INFO:
		return job->state == FGW_JOB_STATE_PROBING && job_board_probe_send(job);
	case JOB_PROBE_BOOT_MODE:
		r = fgw_smp_req_bootloader_info("mode", &req);
		break;
	case JOB_PROBE_IMAGE_STATE:
		r = fgw_smp_req_img_state(&req);
		break;
	case JOB_PROBE_NET_VERSION:
		if (!job->fleet->o.netcore_version_group)
			return false;
		r = fgw_smp_req_custom_read((uint16_t) job->fleet->o.netcore_version_group, 0,
					    &req);
		break;
	default:
		return false;
	}
	(void) job_send_req(job, &req, r, job_req_timeout(job), job_probe_rsp_cb, "probe");
	return true;
}

/*
 * An image that failed the device's check may still be listed under the release's hash
 * (the field comes from its TLV): never mark it, erase the slot and upload again.
 */
static void distrust_slots(struct fleet_job *job)
{
	struct fgw_fleet_plan *p = &job->conn->plan;

	for (int i = 0; i < 2; i++) {
		if (!(job->distrust_slot & (1u << i)) || (p->action[i] != FGW_FLEET_IMAGE_MARK &&
							  p->action[i] != FGW_FLEET_IMAGE_STAGED &&
							  p->action[i] != FGW_FLEET_IMAGE_UPLOAD))
			continue;
		p->action[i] = FGW_FLEET_IMAGE_UPLOAD;
		p->erase_first[i] = true;
		p->images_mask |= 1u << i;
	}
}

static void plan_and_go(struct fleet_job *job)
{
	struct job_conn *c = job->conn;
	struct fgw_fleet_release_view rv;
	const char *why;
	char reason[200];
	int r;

	(void) fgw_store_device_set_probe(job->fleet->store, job->address,
					  c->board[0] ? c->board : NULL, c->view.mode);
	if (job_board_skip(job))
		return;
	job_release_view(job, &rv);
	r = fgw_fleet_plan(&c->view, &rv, &c->plan, &why);
	if (r < 0) {
		job->failure_kind = FLEET_FAIL_REJECTED;
		snprintf(reason, sizeof(reason), "%s (mode %d)", why, c->view.mode);
		(void) job_enter_state(job, FGW_JOB_STATE_FAILED, reason, NULL);
		return;
	}
	distrust_slots(job);
	if (c->plan.images_mask == 0) {
		if (c->plan.confirm_running) {
			job->images_mask = 1;
			(void) fgw_store_job_set_plan(job->fleet->store, job->id, 1,
						      fleet_wall(job->fleet));
			(void) job_enter_state(job, FGW_JOB_STATE_CONFIRMING, NULL,
					       "release runs as an unconfirmed test boot");
			return;
		}
		snprintf(reason, sizeof(reason), "already running release %s%s",
			 job->rel->r.version,
			 c->plan.net_assumed ? " (net core not readable: taken as updated with "
					       "the app core)"
					     : "");
		(void) job_enter_state(job, FGW_JOB_STATE_SKIPPED, reason, NULL);
		return;
	}
	job->images_mask = c->plan.images_mask;
	r = fgw_store_job_set_plan(job->fleet->store, job->id, c->plan.images_mask,
				   fleet_wall(job->fleet));
	if (r < 0) {
		fleet_store_failed(job->fleet, r, "job plan");
		return;
	}
	snprintf(reason, sizeof(reason), "app: %s, net: %s, mark: %s",
		 c->plan.action[0] == FGW_FLEET_IMAGE_UPLOAD ? "upload" : "no upload",
		 c->plan.action[1] == FGW_FLEET_IMAGE_UPLOAD ? "upload" : "no upload",
		 c->plan.mark == FGW_FLEET_MARK_TEST ? "test" : "confirm");
	(void) job_enter_state(job, FGW_JOB_STATE_UPLOADING, NULL, reason);
}

static void probe_step(struct fleet_job *job)
{
	while (job->conn && job->conn->probe < _JOB_PROBE_END) {
		if (job_probe_send(job, job->conn->probe))
			return;
		job->conn->probe++;
	}
	if (job->conn)
		plan_and_go(job);
}

/* ---- marking: net core first, then app core (NCS known issue NCSDK-34106) ------------------ */

static void mark_step(struct fleet_job *job);

static void on_mark_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct fleet_job *job = user_data;

	if (!job_rsp_usable(job, err, rsp, false, "mark image"))
		return;
	job->conn->mark++;
	mark_step(job);
}

static void mark_step(struct fleet_job *job)
{
	static const int image_of[_JOB_MARK_END] = {[JOB_MARK_NET] = 1, [JOB_MARK_APP] = 0};
	struct job_conn *c = job->conn;

	while (c->mark < _JOB_MARK_END) {
		int i = image_of[c->mark];
		enum fgw_fleet_image_action a = c->plan.action[i];
		struct fgw_smp_req req = {0};
		int r;

		if (a != FGW_FLEET_IMAGE_UPLOAD && a != FGW_FLEET_IMAGE_MARK) {
			c->mark++;
			continue;
		}
		r = fgw_smp_req_img_state_write(job->rel->r.image[i].hash,
						c->plan.mark == FGW_FLEET_MARK_CONFIRM, &req);
		(void) job_send_req(job, &req, r, job_req_timeout(job), on_mark_rsp, "mark image");
		return;
	}
	(void) job_enter_state(job, FGW_JOB_STATE_RESETTING, NULL, NULL);
}

/* ---- failures ---------------------------------------------------------------------------- */

void job_on_failure(struct fleet_job *job, int err, bool transient, const char *what)
{
	struct fgw_fleet *f = job->fleet;
	char reason[256];
	uint64_t delay;
	int r;

	fgw_info("fleet: '%s' in %s: %s (%s)", job->address, fgw_job_state_to_string(job->state),
		 what, transient ? "transient" : "permanent");
	if (!transient) {
		job->failure_kind = err == -EREMOTEIO ? FLEET_FAIL_REJECTED : FLEET_FAIL_OTHER;
		(void) job_enter_state(job, FGW_JOB_STATE_FAILED, what, NULL);
		return;
	}
	switch (job->state) {
	case FGW_JOB_STATE_RESETTING:
	case FGW_JOB_STATE_REBOOTING:
	case FGW_JOB_STATE_VERIFYING:
	case FGW_JOB_STATE_CONFIRMING:
		/* After the reset only the ceiling decides: keep trying to reach the device. */
		if (job->state == FGW_JOB_STATE_REBOOTING) {
			job_conn_close(job);
			return;
		}
		(void) job_enter_state(job, FGW_JOB_STATE_REBOOTING, NULL, what);
		return;
	default:
		break;
	}
	/*
	 * A device that is not there (out of range) waits without burning an attempt: the link
	 * says so, or a BLE device has not been seen advertising lately.
	 */
	if (err == -ENODEV || err == -EHOSTDOWN || err == -EHOSTUNREACH ||
	    (job->state == FGW_JOB_STATE_CONNECTING &&
	     !fleet_job_present(f, job, fleet_now(job->fleet)))) {
		job->next_attempt_ms = fleet_now(job->fleet) + f->o.backoff_base_ms;
		(void) job_enter_state(job, FGW_JOB_STATE_QUEUED, NULL, what);
		return;
	}
	job->attempts++;
	if ((unsigned) job->attempts > f->o.retry_limit) {
		snprintf(reason, sizeof(reason), "gave up after %d attempts: %s", job->attempts - 1,
			 what);
		job->failure_kind = FLEET_FAIL_UNREACHABLE;
		(void) job_enter_state(job, FGW_JOB_STATE_FAILED, reason, NULL);
		return;
	}
	delay = fgw_fleet_backoff_ms((unsigned) job->attempts, f->o.backoff_base_ms,
				     f->o.backoff_max_ms, fleet_random(f));
	job->next_attempt_ms = fleet_now(job->fleet) + delay;
	r = fgw_store_job_set_retry(f->store, job->id, job->attempts,
				    fleet_wall(job->fleet) + (int64_t) delay,
				    fleet_wall(job->fleet));
	if (r < 0)
		fleet_store_failed(f, r, "job retry");
	snprintf(reason, sizeof(reason), "attempt %d failed: %s; retry in %.1f s", job->attempts,
		 what, (double) delay / 1000.0);
	(void) job_enter_state(job, FGW_JOB_STATE_QUEUED, NULL, reason);
}

/* ---- link state --------------------------------------------------------------------------- */

/*
 * A link refused while others are up on the same radio: the controller's limit (busy,
 * Limited Resources, which the kernel reports as a refused connection), not the device's.
 */
static void radio_refused(struct fleet_job *job, int err)
{
	struct fgw_fleet *f = job->fleet;
	struct fleet_radio *r = fleet_radio_of_job(f, job);
	unsigned others;

	if (!r || job->state != FGW_JOB_STATE_CONNECTING || (err != -EBUSY && err != -ECONNREFUSED))
		return;
	others = fleet_radio_active(f, r) - 1; /* this job counts itself */
	if (others > 0)
		fleet_radio_refused(r, others, fleet_now(f));
}

static void on_link(struct fgw_smp_client *smp, int err, void *user_data)
{
	struct fleet_job *job = user_data;
	char what[128];

	if (!job->conn)
		return;
	if (err == 0) {
		job->conn->open = true;
		if (job->state == FGW_JOB_STATE_CONNECTING)
			(void) job_enter_state(job, FGW_JOB_STATE_PROBING, NULL, NULL);
		else if (job->state == FGW_JOB_STATE_REBOOTING)
			(void) job_enter_state(job, FGW_JOB_STATE_VERIFYING, NULL,
					       "device is back");
		return;
	}
	job->conn->open = false;
	if (job_security_failure(job, job->conn->t, err)) /* job-security.c */
		return;
	if (job->state == FGW_JOB_STATE_RESETTING) {
		(void) job_enter_state(job, FGW_JOB_STATE_REBOOTING, NULL,
				       "link dropped after reset");
		return;
	}
	radio_refused(job, err);
	snprintf(what, sizeof(what), "link %s: %s",
		 job->state == FGW_JOB_STATE_CONNECTING ? "not established" : "lost",
		 strerror(-err));
	job_on_failure(job, err, true, what);
}

/* ---- the one door in ---------------------------------------------------------------------- */

void job_start(struct fleet_job *job)
{
	job->last_start_ms = fleet_now(job->fleet);
	(void) job_enter_state(job, FGW_JOB_STATE_CONNECTING, NULL, NULL);
}

/* What entering @to does: the first request of the state, or the end of the job. */
static void act(struct fleet_job *job, enum fgw_job_state to)
{
	struct fgw_fleet *f = job->fleet;
	int r;

	switch (to) {
	case FGW_JOB_STATE_QUEUED:
		job_conn_close(job);
		fleet_kick(f);
		break;
	case FGW_JOB_STATE_CONNECTING:
		r = job_conn_open(job);
		if (r < 0)
			job_on_failure(job, r, true, "cannot open a link");
		break;
	case FGW_JOB_STATE_PROBING:
		job->conn->probe = JOB_PROBE_PARAMS;
		probe_step(job);
		break;
	case FGW_JOB_STATE_UPLOADING:
		job_upload_next(job);
		break;
	case FGW_JOB_STATE_MARKING:
		job->conn->mark = JOB_MARK_NET;
		mark_step(job);
		break;
	case FGW_JOB_STATE_RESETTING:
		job_reset_send(job);
		break;
	case FGW_JOB_STATE_REBOOTING:
		job_conn_close(job);
		if (job->reset_ms == 0) /* picked up after a daemon restart */
			job->reset_ms = fleet_now(job->fleet);
		job_reboot_arm(job);
		break;
	case FGW_JOB_STATE_VERIFYING:
		job->conn->probe = JOB_PROBE_BOOT_MODE;
		job_verify_step(job);
		break;
	case FGW_JOB_STATE_CONFIRMING:
		job_confirm_send(job);
		break;
	case FGW_JOB_STATE_DONE:
	case FGW_JOB_STATE_SKIPPED:
	case FGW_JOB_STATE_REVERTED:
	case FGW_JOB_STATE_FAILED:
	case FGW_JOB_STATE_SUPERSEDED:
		job_conn_close(job);
		fleet_job_finished(f, job, to);
		break;
	case _FGW_JOB_STATE_MAX:
	case _FGW_JOB_STATE_INVALID:
		break;
	}
}

int job_enter_state(struct fleet_job *job, enum fgw_job_state to, const char *reason,
		    const char *detail)
{
	struct fgw_fleet *f = job->fleet;
	enum fgw_job_state from = job->state;
	int r;

	r = fgw_store_job_set_state(f->store, job->id, fgw_job_state_to_string(from),
				    fgw_job_state_to_string(to), reason, detail,
				    fleet_wall(job->fleet));
	if (r < 0) {
		/* Not persisted, so not acted on: stop talking to the device, stay where we were.
		 */
		uv_timer_stop(&job->timer);
		job_conn_close(job);
		fleet_store_failed(f, r, "job transition");
		return r;
	}
	fgw_notice("event: job-state, device: %s, job: %lld, from: %s, to: %s%s%s%s%s",
		   job->address, (long long) job->id, fgw_job_state_to_string(from),
		   fgw_job_state_to_string(to), reason ? ", reason: " : "", reason ? reason : "",
		   detail ? ", detail: " : "", detail ? detail : "");
	job->state = to;
	uv_timer_stop(&job->timer);

	act(job, to);
	return 0;
}
