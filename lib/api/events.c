/*
 * GET /v1/events: the gateway's most recent events across all devices (job state changes,
 * releases, adapter), newest first, for the status page and scripts.
 */
#include <errno.h>
#include <string.h>

#include "handlers.h"
#include "util.h"

void api_jw_event(struct api_jw *w, const struct fgw_store_event *e, bool with_address)
{
	api_jw_open(w, NULL, '{');
	api_jw_int(w, "id", e->id);
	api_jw_int(w, "at", e->at);
	if (with_address)
		api_jw_str(w, "address", e->address);
	api_jw_str(w, "kind", e->kind);
	api_jw_str(w, "from", e->from_state);
	api_jw_str(w, "to", e->to_state);
	api_jw_str(w, "detail", e->detail);
	api_jw_int(w, "job_id", e->job_id);
	api_jw_close(w, '}');
}

static int event_row(const struct fgw_store_event *e, void *user_data)
{
	api_jw_event(user_data, e, true);
	return 0;
}

void api_handle_events(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp)
{
	const char *limit_s = req->arg ? req->arg(req->arg_ctx, "limit") : NULL;
	struct api_jw w = {0};
	int64_t limit = API_EVENTS_DEFAULT;
	int r;

	if (limit_s && fgw_parse_int64(limit_s, 1, API_EVENTS_MAX, &limit) < 0) {
		api_error(resp, 400, "bad_request", "limit must be an integer from 1 to %d",
			  API_EVENTS_MAX);
		return;
	}
	api_jw_open(&w, NULL, '{');
	api_jw_open(&w, "events", '[');
	r = fgw_store_events_recent(api->store, (unsigned) limit, event_row, &w);
	api_reply_list(api, &w, resp, r);
}
