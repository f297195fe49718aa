/*
 * GET /v1/events: the gateway's most recent events across all devices (job state changes,
 * releases, adapter), newest first, for the status page and scripts.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "store.h"
#include "util.h"

struct events_ctx {
	cJSON *arr;
	bool oom;
};

static void put(struct events_ctx *c, cJSON *o, const char *key, cJSON *v)
{
	if (!v) {
		c->oom = true;
		return;
	}
	cJSON_AddItemToObject(o, key, v);
}

static cJSON *int_or_null(int64_t v)
{
	char text[24];

	if (v == FGW_STORE_NULL)
		return cJSON_CreateNull();
	snprintf(text, sizeof(text), "%lld", (long long) v);
	return cJSON_CreateRaw(text);
}

static cJSON *str_or_null(const char *s)
{
	return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static int event_row(const struct fgw_store_event *e, void *user_data)
{
	struct events_ctx *c = user_data;
	cJSON *o = cJSON_CreateObject();

	if (!o) {
		c->oom = true;
		return 0;
	}
	cJSON_AddItemToArray(c->arr, o);
	put(c, o, "id", int_or_null(e->id));
	put(c, o, "at", int_or_null(e->at));
	put(c, o, "address", str_or_null(e->address));
	put(c, o, "kind", str_or_null(e->kind));
	put(c, o, "from", str_or_null(e->from_state));
	put(c, o, "to", str_or_null(e->to_state));
	put(c, o, "detail", str_or_null(e->detail));
	put(c, o, "job_id", int_or_null(e->job_id));
	return 0;
}

void api_handle_events(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp)
{
	const char *limit_s = req->arg ? req->arg(req->arg_ctx, "limit") : NULL;
	struct events_ctx c = {0};
	cJSON *root;
	char *text = NULL;
	int64_t limit = API_EVENTS_DEFAULT;
	int r;

	if (limit_s && fgw_parse_int64(limit_s, 1, API_EVENTS_MAX, &limit) < 0) {
		api_error(resp, 400, "bad_request", "limit must be an integer from 1 to %d",
			  API_EVENTS_MAX);
		return;
	}
	root = cJSON_CreateObject();
	c.arr = cJSON_CreateArray();
	if (!root || !c.arr) {
		cJSON_Delete(root);
		cJSON_Delete(c.arr);
		return; /* the router answers 500 for a missing body */
	}
	cJSON_AddItemToObject(root, "events", c.arr);
	r = fgw_store_events_recent(api->store, (unsigned) limit, event_row, &c);
	if (r < 0) {
		cJSON_Delete(root);
		if (r == -ENOMEM)
			return;
		api->stats.database_errors++;
		fgw_log_errno(LOG_WARNING, r, "api: database query failed (%s)",
			      fgw_store_errmsg(api->store));
		api_error(resp, r == -EBUSY ? 503 : 500, "database", "database query failed: %s",
			  strerror(-r));
		return;
	}
	if (!c.oom)
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text)
		return;
	*resp = (struct api_response){
	    .status = 200,
	    .body = text,
	    .len = strlen(text),
	    .content_type = "application/json",
	};
}
