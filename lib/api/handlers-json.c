/*
 * What the /v1 handler files share: the store-error reply, and the current release and halt
 * state copied out of their callbacks.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "util.h"

void api_reply_store_error(struct fgw_api *api, struct api_response *resp, int r)
{
	api->stats.database_errors++;
	fgw_log_errno(LOG_WARNING, r, "api: database query failed (%s)",
		      fgw_store_errmsg(api->store));
	api_error(resp, r == -EBUSY ? 503 : 500, "database", "database query failed: %s",
		  strerror(-r));
}

void api_reply_read_error(struct fgw_api *api, struct api_jw *w, struct api_response *resp, int r)
{
	api_jw_done(w);
	if (r != -ENOMEM)
		api_reply_store_error(api, resp, r);
}

void api_reply_list(struct fgw_api *api, struct api_jw *w, struct api_response *resp, int r)
{
	if (r < 0) {
		api_reply_read_error(api, w, resp, r);
		return;
	}
	api_jw_close(w, ']');
	api_jw_close(w, '}');
	api_jw_reply(w, resp, 200);
}

/* ---- the current release, copied out of its callback ---- */

void api_release_ref_done(struct release_ref *r)
{
	free(r->id);
	free(r->version);
	free(r->policy_json);
	*r = (struct release_ref){0};
}

static int copy_release(const struct fgw_store_release *rel, void *user_data)
{
	struct release_ref *ref = user_data;

	ref->id = strdup(rel->id);
	ref->version = strdup(rel->version ? rel->version : "");
	ref->policy_json = rel->policy_json ? strdup(rel->policy_json) : NULL;
	ref->sequence = rel->sequence;
	if (!ref->id || !ref->version || (rel->policy_json && !ref->policy_json))
		return -ENOMEM;
	return 0;
}

/* 0 with @ref filled or left empty (no current release), or -errno. */
int api_current_release(struct fgw_api *api, struct release_ref *ref)
{
	int r = fgw_store_current_release(api->store, copy_release, ref);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		api_release_ref_done(ref);
	return r;
}

int api_copy_halted(const struct fgw_store_rollout *ro, void *user_data)
{
	*(bool *) user_data = ro->halted;
	return 0;
}

int api_copy_halt_info(const struct fgw_store_rollout *ro, void *user_data)
{
	struct halt_info *h = user_data;

	h->halted = ro->halted;
	h->by = ro->halted_by ? strdup(ro->halted_by) : NULL;
	h->reason = ro->halted_reason ? strdup(ro->halted_reason) : NULL;
	return (ro->halted_by && !h->by) || (ro->halted_reason && !h->reason) ? -ENOMEM : 0;
}
