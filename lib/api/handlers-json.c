/*
 * What the /v1 handler files share: JSON building with one out-of-memory flag, the JSON and
 * store-error replies, and the current release and halt state copied out of their callbacks.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "util.h"

cJSON *api_jb_put(struct jb *b, cJSON *parent, const char *key, cJSON *item)
{
	if (!item || !parent) {
		b->oom = true;
		cJSON_Delete(item);
		return NULL;
	}
	if (key)
		cJSON_AddItemToObject(parent, key, item);
	else
		cJSON_AddItemToArray(parent, item);
	return item;
}

cJSON *api_jb_str(struct jb *b, cJSON *o, const char *key, const char *v)
{
	return api_jb_put(b, o, key, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

cJSON *api_jb_int(struct jb *b, cJSON *o, const char *key, int64_t v)
{
	char text[24];

	if (v == FGW_STORE_NULL)
		return api_jb_put(b, o, key, cJSON_CreateNull());
	/*
	 * Integers go out as raw text: exact for every int64 (a double is not above 2^53), and
	 * cJSON's number printing (printf %g, then sscanf to check it) was most of the cost of
	 * a device listing.
	 */
	snprintf(text, sizeof(text), "%lld", (long long) v);
	return api_jb_put(b, o, key, cJSON_CreateRaw(text));
}

cJSON *api_jb_num(struct jb *b, cJSON *o, const char *key, double v)
{
	return api_jb_put(b, o, key, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

cJSON *api_jb_bool(struct jb *b, cJSON *o, const char *key, bool v)
{
	return api_jb_put(b, o, key, cJSON_CreateBool(v));
}

cJSON *api_jb_obj(struct jb *b, cJSON *o, const char *key)
{
	return api_jb_put(b, o, key, cJSON_CreateObject());
}

cJSON *api_jb_arr(struct jb *b, cJSON *o, const char *key)
{
	return api_jb_put(b, o, key, cJSON_CreateArray());
}

/* Stored JSON text (written by the gateway itself) as a value; null if absent or broken. */
cJSON *api_jb_raw_json(struct jb *b, cJSON *o, const char *key, const char *text)
{
	cJSON *v = text ? cJSON_Parse(text) : NULL;

	return api_jb_put(b, o, key, v ? v : cJSON_CreateNull());
}

/* Sends @root (consumed) as the @status response. */
void api_reply_json(struct api_response *resp, unsigned status, struct jb *b, cJSON *root)
{
	char *text = NULL;

	if (root && !b->oom)
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text) {
		api_error(resp, 500, "internal", "out of memory");
		return;
	}
	*resp = (struct api_response){
	    .status = status,
	    .body = text,
	    .len = strlen(text),
	    .content_type = "application/json",
	};
}

void api_reply_store_error(struct fgw_api *api, struct api_response *resp, int r)
{
	api->stats.database_errors++;
	fgw_log_errno(LOG_WARNING, r, "api: database query failed (%s)",
		      fgw_store_errmsg(api->store));
	api_error(resp, r == -EBUSY ? 503 : 500, "database", "database query failed: %s",
		  strerror(-r));
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
