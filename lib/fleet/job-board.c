/*
 * Board match: a release built for one board is not offered to another. The device says what
 * it is through Zephyr's os info with the hardware-platform letter ("i": board[@revision],
 * with the qualifiers of a hardware-model-v2 name, e.g. "nrf5340dk/nrf5340/cpuapp"); a device
 * built without CONFIG_MCUMGR_GRP_OS_INFO answers rc 8 and the board given at enrollment
 * stands in. A site with two products thus cannot push one product's firmware to the other.
 */
#include <stdio.h>
#include <string.h>

#include "fleet-private.h"

bool job_board_probe_send(struct fleet_job *job)
{
	struct fgw_smp_req req = {0};
	int r;

	job->conn->board[0] = '\0';
	if (!job->rel->r.board[0])
		return false; /* the release fits any board: nothing to compare */
	r = fgw_smp_req_os_info("i", &req);
	(void) job_send_req(job, &req, r, job_req_timeout(job), job_probe_rsp_cb, "probe");
	return true;
}

void job_board_probe_rsp(struct fleet_job *job, const struct fgw_smp_rsp *rsp)
{
	_cleanup_free_ char *out = NULL;
	size_t len;

	if (!fgw_smp_status_ok(&rsp->status) ||
	    fgw_smp_os_info_decode(rsp->payload, rsp->len, &out) < 0)
		return;		 /* no os info group: the enrolled board decides */
	len = strcspn(out, " "); /* one letter asked: one field, but never trust the device */
	if (len == 0)
		return;
	/* what a device says is escaped before it is stored, logged or compared */
	fgw_escape_text(job->conn->board, sizeof(job->conn->board), out, len);
}

/* "name[@revision][/qualifiers]" without the revision: a board spin is the same product. */
static void strip_revision(const char *in, char *out, size_t size)
{
	const char *at = strchr(in, '@');
	const char *slash = at ? strchr(at, '/') : NULL;

	if (!at)
		snprintf(out, size, "%s", in);
	else
		snprintf(out, size, "%.*s%s", (int) (at - in), in, slash ? slash : "");
}

/* Same board, or the release names the board without qualifiers and the device has them. */
static bool board_matches(const char *device, const char *release)
{
	char d[64], r[64];
	size_t n;

	strip_revision(device, d, sizeof(d));
	strip_revision(release, r, sizeof(r));
	if (strcmp(d, r) == 0)
		return true;
	n = strlen(r);
	return !strchr(r, '/') && strncmp(d, r, n) == 0 && d[n] == '/';
}

bool job_board_skip(struct fleet_job *job)
{
	const char *want = job->rel->r.board;
	struct fgw_store_device_rec rec;
	const char *have = job->conn->board, *source = "reported by the device";
	char reason[256];

	if (!want[0])
		return false;
	if (!have[0] && fgw_store_device_get(job->fleet->store, job->address, &rec) == 0 &&
	    rec.enrolled_board[0]) {
		have = rec.enrolled_board;
		source = "given at enrollment";
	}
	if (have[0] && board_matches(have, want))
		return false;
	if (!have[0] && !job->fleet->o.require_board_match)
		return false;
	if (have[0])
		snprintf(reason, sizeof(reason),
			 "board mismatch: the device is %s (%s), release %s is for %s", have,
			 source, job->rel->r.version, want);
	else
		snprintf(reason, sizeof(reason),
			 "board unknown: the device does not report one (os info) and none was "
			 "enrolled; release %s is for %s ([fleet] require_board_match)",
			 job->rel->r.version, want);
	(void) job_enter_state(job, FGW_JOB_STATE_SKIPPED, reason, NULL);
	return true;
}
