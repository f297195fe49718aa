/*
 * What a job does when its BLE link fails for security: the daemon's callback decides (raise
 * the level stored for the device so that the next link pairs first, remove a bond the
 * device lost) and the job goes again at once without using an attempt; or, when nothing is
 * left to try (no passkey, wrong passkey, refused), the job fails with that reason. Each
 * escalation happens once, so this never loops.
 */
#include <errno.h>
#include <stdio.h>

#include "fleet-private.h"
#include "util.h"

bool job_security_failure(struct fleet_job *job, struct fgw_transport *t, int err)
{
	struct fgw_fleet *f = job->fleet;
	char why[384] = "";
	int r;

	if (err != -ENOKEY && err != -EKEYREJECTED && err != -EKEYEXPIRED)
		return false;
	if (!f->o.security_failed)
		return false;
	r = f->o.security_failed(f->o.transport_user_data, job->address, t, err, why, sizeof(why));
	if (r > 0) {
		switch (job->state) {
		case FGW_JOB_STATE_RESETTING:
		case FGW_JOB_STATE_REBOOTING:
		case FGW_JOB_STATE_VERIFYING:
		case FGW_JOB_STATE_CONFIRMING:
			/* after the reset: keep reconnecting under the reboot ceiling */
			(void) job_enter_state(job, FGW_JOB_STATE_REBOOTING, NULL, why);
			break;
		default:
			job->next_attempt_ms = fgw_now_ms();
			(void) job_enter_state(job, FGW_JOB_STATE_QUEUED, NULL, why);
			break;
		}
		return true;
	}
	job->failure_kind = FLEET_FAIL_OTHER;
	(void) job_enter_state(job, FGW_JOB_STATE_FAILED, why[0] ? why : "pairing required", NULL);
	return true;
}
