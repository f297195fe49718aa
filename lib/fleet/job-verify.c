/*
 * The second half of a job: the reset, waiting for the device to come back (sightings, a
 * poll, the ceiling), verifying what the reset did, and confirming a test boot.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fleet-private.h"
#include "transport.h"

/* A sighting closer than this to the reset is the device still going down, not coming back. */
#define REBOOT_SIGHTING_GUARD_MS 1000
/*
 * While waiting for a device to come back, try to reach it this often anyway: UDP devices
 * have no advertisements, so they are polled; a BLE device is reconnected when it is seen
 * advertising again, and polled only rarely in case a sighting was missed — a Connect() to a
 * device still booting holds one of the controller's connection slots until it times out.
 */
#define REBOOT_POLL_UDP_MS 2000
#define REBOOT_POLL_BLE_MS 15000

/* ---- reset and the way back -------------------------------------------------------------- */

static void on_reset_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct fleet_job *job = user_data;

	if (err == -ECANCELED || !job->conn || job->state != FGW_JOB_STATE_RESETTING)
		return;
	/* An application reset hook may refuse once; then force, as mcumgr clients do. */
	if (err == 0 && fgw_smp_status_is_busy(&rsp->status) && job->conn->reset == JOB_RESET_ASK) {
		struct fgw_smp_req req = {0};
		int r = fgw_smp_req_reset(true, &req);
		job->conn->reset = JOB_RESET_FORCE;
		(void) job_send_req(job, &req, r, job_req_timeout(job), on_reset_rsp, "reset");
		return;
	}
	/* The answer, a timeout or the link dropping: the device is on its way down either way;
	 * what it did is for the verification to find out. */
	(void) job_enter_state(job, FGW_JOB_STATE_REBOOTING, NULL,
			       err == 0 ? "reset acknowledged" : "reset sent, link dropped");
}

static void reboot_try(struct fleet_job *job)
{
	int r;

	if (job->conn)
		return; /* an attempt is under way */
	r = job_conn_open(job);
	if (r < 0)
		fgw_debug("fleet: '%s' not reachable yet: %s", job->address, strerror(-r));
}

static void on_reboot_timer(uv_timer_t *t)
{
	struct fleet_job *job = t->data;
	uint64_t now = fleet_now(job->fleet);
	char reason[128];

	if (job->state != FGW_JOB_STATE_REBOOTING)
		return;
	if (now >= job->reset_ms + job->fleet->o.reboot_timeout_ms) {
		snprintf(reason, sizeof(reason),
			 "device did not come back within %llu s of its reset",
			 (unsigned long long) (job->fleet->o.reboot_timeout_ms / 1000));
		job->failure_kind = FLEET_FAIL_NO_RETURN;
		(void) job_enter_state(job, FGW_JOB_STATE_FAILED, reason, NULL);
		return;
	}
	reboot_try(job);
	job_reboot_arm(job);
}

void job_reboot_arm(struct fleet_job *job)
{
	uint64_t now = fleet_now(job->fleet),
		 ceiling = job->reset_ms + job->fleet->o.reboot_timeout_ms;
	bool udp = strcmp(job->dev->transport, "udp") == 0;
	uint64_t next = now + (udp ? REBOOT_POLL_UDP_MS : REBOOT_POLL_BLE_MS);
	uint64_t due = next < ceiling ? next : ceiling;

	/* The reset's answer may come after the ceiling (a slow device, a loaded host): then the
	 * verdict is due now, not in 2^64 ms. */
	uv_timer_start(&job->timer, on_reboot_timer, due > now ? due - now : 0, 0);
}

void job_device_seen(struct fleet_job *job)
{
	if (job->state == FGW_JOB_STATE_REBOOTING &&
	    fleet_now(job->fleet) >= job->reset_ms + REBOOT_SIGHTING_GUARD_MS)
		reboot_try(job);
}

/* ---- verification and confirmation ------------------------------------------------------- */

static void finish_verification(struct fleet_job *job)
{
	struct job_conn *c = job->conn;
	struct fgw_fleet_release_view rv;
	enum fgw_fleet_verdict app = FGW_FLEET_VERDICT_OK, net = FGW_FLEET_VERDICT_OK;
	const char *app_result = NULL, *net_result = NULL;
	char reason[200];

	job_release_view(job, &rv);
	if (job->images_mask & 1) {
		app = fgw_fleet_verify(&c->view, &rv, 0);
		app_result = fgw_fleet_verdict_to_string(app);
	}
	if (job->images_mask & 2) {
		net = fgw_fleet_verify(&c->view, &rv, 1);
		net_result = fgw_fleet_verdict_to_string(net);
	}
	(void) fgw_store_job_set_results(job->fleet->store, job->id, app_result, net_result,
					 fleet_wall(job->fleet));

	if (app == FGW_FLEET_VERDICT_REVERTED) {
		(void) job_enter_state(job, FGW_JOB_STATE_REVERTED,
				       "app core went back to the old image: the new one was not "
				       "confirmed or did not boot",
				       NULL);
		return;
	}
	if (app == FGW_FLEET_VERDICT_REJECTED || app == FGW_FLEET_VERDICT_NOT_APPLIED) {
		job->failure_kind = app == FGW_FLEET_VERDICT_REJECTED ? FLEET_FAIL_REJECTED
								      : FLEET_FAIL_NOT_APPLIED;
		snprintf(reason, sizeof(reason), "app core %s",
			 app == FGW_FLEET_VERDICT_REJECTED
			     ? "image refused by the bootloader (old image still runs)"
			     : "update did not run (new image still waits in slot 1)");
		(void) job_enter_state(job, FGW_JOB_STATE_FAILED, reason, NULL);
		return;
	}
	if (net == FGW_FLEET_VERDICT_REJECTED || net == FGW_FLEET_VERDICT_NOT_APPLIED) {
		job->failure_kind = net == FGW_FLEET_VERDICT_REJECTED ? FLEET_FAIL_REJECTED
								      : FLEET_FAIL_NOT_APPLIED;
		snprintf(reason, sizeof(reason), "net core %s",
			 net == FGW_FLEET_VERDICT_REJECTED
			     ? "still reports the old version"
			     : "update did not run (image 1 still in slot 1 after the reset)");
		(void) job_enter_state(job, FGW_JOB_STATE_FAILED, reason, NULL);
		return;
	}
	if (app == FGW_FLEET_VERDICT_NEEDS_CONFIRM) {
		(void) job_enter_state(job, FGW_JOB_STATE_CONFIRMING, NULL,
				       "new app image runs as a test boot");
		return;
	}
	snprintf(reason, sizeof(reason), "running release %s: app core %s, net core %s",
		 job->rel->r.version, app_result ? app_result : "unchanged",
		 net_result ? (net == FGW_FLEET_VERDICT_UNVERIFIED
				   ? "applied, unverified (slot cannot be read back)"
				   : net_result)
			    : "unchanged");
	(void) job_enter_state(job, FGW_JOB_STATE_DONE, NULL, reason);
}

void job_verify_step(struct fleet_job *job)
{
	/*
	 * Verification reads the bootloader mode again (whether a test boot needs a confirm),
	 * image state and the net core version; the params are known.
	 */
	while (job->conn && job->conn->probe < _JOB_PROBE_END) {
		if (job->conn->probe != JOB_PROBE_PARAMS && job_probe_send(job, job->conn->probe))
			return;
		job->conn->probe++;
	}
	if (job->conn)
		finish_verification(job);
}

static void on_confirm_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct fleet_job *job = user_data;
	struct fgw_smp_img_state st;
	int r;

	if (!job_rsp_usable(job, err, rsp, false, "confirm"))
		return;
	/* A state write answers with the whole image state: check the confirmation took. */
	r = fgw_smp_img_state_decode(rsp->payload, rsp->len, &st);
	if (r < 0) {
		job_on_failure(job, r, true, "confirm: malformed answer");
		return;
	}
	job_view_from_state(&job->conn->view, &st);
	job_store_slots(job, &st);
	finish_verification(job);
}

void job_reset_send(struct fleet_job *job)
{
	struct fgw_smp_req req = {0};
	int r;

	job->reset_ms = fleet_now(job->fleet);
	job->conn->reset = JOB_RESET_ASK;
	r = fgw_smp_req_reset(false, &req);
	(void) job_send_req(job, &req, r, job_req_timeout(job), on_reset_rsp, "reset");
}

void job_confirm_send(struct fleet_job *job)
{
	struct fgw_smp_req req = {0};
	int r;

	/* No hash: confirms the running image, never schedules a swap. */
	r = fgw_smp_req_img_state_write(NULL, true, &req);
	(void) job_send_req(job, &req, r, job_req_timeout(job), on_confirm_rsp, "confirm");
}
