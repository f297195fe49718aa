/*
 * GET /v1/health and the actions (pause, resume, retry): the only handlers that call into the
 * fleet rather than just reading the store. Each action is logged with who asked for it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "util.h"

/* ---- health ---- */

void api_handle_health(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp)
{
	struct fgw_api_health h = {.uptime_ms = -1};
	struct fgw_api_manifest man = {0};
	struct release_ref cur = {0};
	struct api_jw w = {0};
	bool halted = false, ok = true;
	int version, r = 0, hr = 0;

	if (api->prov.health)
		hr = api->prov.health(api->prov.user_data, &h);
	if (!api->prov.manifest || api->prov.manifest(api->prov.user_data, &man) < 0)
		man.freshness = NULL;
	version = fgw_store_version(api->store);
	if (version >= 0) {
		r = api_current_release(api, &cur);
		if (r >= 0 && cur.id) {
			r = fgw_store_rollout_get(api->store, cur.id, api_copy_halted, &halted);
			if (r == -ENOENT)
				r = 0;
		}
	}
	if (r == -ENOMEM) {
		api_release_ref_done(&cur);
		return;
	}
	if (version < 0 || r < 0 || hr < 0)
		ok = false;
	if (man.freshness && strcmp(man.freshness, "expired") == 0)
		ok = false; /* a replayed or frozen manifest: the operator must look */

	api_jw_open(&w, NULL, '{');
	api_jw_str(&w, "status", ok ? "ok" : "degraded");
	if (hr >= 0 && h.version)
		api_jw_str(&w, "version", h.version);
	if (hr >= 0 && h.uptime_ms >= 0)
		api_jw_num(&w, "uptime_s", (double) h.uptime_ms / 1000.0);
	api_jw_str(&w, "adapter_state", hr >= 0 ? h.adapter_state : NULL);
	api_jw_open(&w, "database", '{');
	api_jw_str(&w, "state", version >= 0 && r >= 0 ? "ok" : "error");
	api_jw_int(&w, "schema_version", version >= 0 ? version : FGW_STORE_NULL);
	api_jw_close(&w, '}');
	if (cur.id) {
		api_jw_open(&w, "release", '{');
		api_jw_str(&w, "id", cur.id);
		api_jw_str(&w, "version", cur.version);
		api_jw_close(&w, '}');
	} else {
		api_jw_null(&w, "release");
	}
	api_jw_bool(&w, "rollout_halted", halted);
	if (man.freshness) {
		api_jw_open(&w, "manifest", '{');
		api_jw_str(&w, "freshness", man.freshness);
		if (man.expires > 0)
			api_jw_num(&w, "expires", (double) man.expires);
		api_jw_close(&w, '}');
	}
	api_jw_close(&w, '}');
	api_release_ref_done(&cur);
	api_jw_reply(&w, resp, ok ? 200 : 503);
}

/* ---- actions ---- */

/*
 * POST bodies are optional; when given they must be a JSON object with only the keys the
 * action knows. Returns the parsed object (NULL for no body) or sets a 400 in @resp.
 */
static int parse_body(const struct api_request *req, const char *const *keys, cJSON **ret,
		      struct api_response *resp)
{
	const char *end = NULL;
	cJSON *o, *it;

	*ret = NULL;
	if (!req->body || req->body_len == 0)
		return 0;
	/* Anything but white space after the object is as malformed as a broken object. */
	o = cJSON_ParseWithLengthOpts(req->body, req->body_len, &end, false);
	if (o && end)
		for (; end < req->body + req->body_len; end++)
			if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
				cJSON_Delete(o);
				o = NULL;
				break;
			}
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		api_error(resp, 400, "bad_request", "request body must be a JSON object");
		return -EINVAL;
	}
	cJSON_ArrayForEach(it, o)
	{
		bool known = false;
		for (const char *const *k = keys; *k; k++)
			known |= strcmp(*k, it->string) == 0;
		if (!known) {
			api_error(resp, 400, "bad_request", "unknown field '%.64s'", it->string);
			cJSON_Delete(o);
			return -EINVAL;
		}
	}
	*ret = o;
	return 0;
}

static void reply_unavailable(struct api_response *resp, const char *what)
{
	api_error(resp, 503, "unavailable", "%s is not available: the fleet is not running", what);
}

static void reply_action_error(struct fgw_api *api, struct api_response *resp, int r,
			       const char *what)
{
	switch (r) {
	case -ENOENT:
		api_error(resp, 409, "conflict", "%s: no current release", what);
		break;
	case -EBUSY:
		api_error(resp, 409, "conflict", "%s: the job is running", what);
		break;
	default:
		fgw_log_errno(LOG_WARNING, r, "api: %s failed", what);
		api_error(resp, 500, "internal", "%s failed: %s", what, strerror(-r));
		break;
	}
}

static void reply_halted(struct api_response *resp, bool halted, bool changed)
{
	struct api_jw w = {0};

	api_jw_open(&w, NULL, '{');
	api_jw_bool(&w, "halted", halted);
	api_jw_bool(&w, "changed", changed);
	api_jw_close(&w, '}');
	api_jw_reply(&w, resp, 200);
}

void api_handle_pause(struct fgw_api *api, const struct api_request *req, struct api_response *resp)
{
	static const char *const keys[] = {"reason", NULL};
	const char *reason = NULL;
	cJSON *body, *v;
	int r;

	if (parse_body(req, keys, &body, resp) < 0)
		return;
	v = cJSON_GetObjectItemCaseSensitive(body, "reason");
	if (v && (!cJSON_IsString(v) || strlen(v->valuestring) > 256)) {
		cJSON_Delete(body);
		api_error(resp, 400, "bad_request", "reason must be a string of at most 256 bytes");
		return;
	}
	reason = v ? v->valuestring : NULL;
	if (!api->prov.pause) {
		cJSON_Delete(body);
		reply_unavailable(resp, "pause");
		return;
	}
	r = api->prov.pause(api->prov.user_data, reason);
	fgw_notice("event: api-pause, peer: %s, reason: '%s', result: %s",
		   req->peer ? req->peer : "?", reason ? reason : "", r == 0 ? "ok" : strerror(-r));
	cJSON_Delete(body);
	if (r == 0 || r == -EALREADY)
		reply_halted(resp, true, r == 0);
	else
		reply_action_error(api, resp, r, "pause");
}

void api_handle_resume(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp)
{
	static const char *const keys[] = {NULL};
	cJSON *body;
	int r;

	if (parse_body(req, keys, &body, resp) < 0)
		return;
	cJSON_Delete(body);
	if (!api->prov.resume) {
		reply_unavailable(resp, "resume");
		return;
	}
	r = api->prov.resume(api->prov.user_data);
	fgw_notice("event: api-resume, peer: %s, result: %s", req->peer ? req->peer : "?",
		   r == 0 ? "ok" : strerror(-r));
	if (r == 0 || r == -EALREADY)
		reply_halted(resp, false, r == 0);
	else
		reply_action_error(api, resp, r, "resume");
}

static int device_exists(const struct fgw_store_device *d, void *user_data)
{
	return 0;
}

void api_handle_retry(struct fgw_api *api, const char *address, const struct api_request *req,
		      struct api_response *resp)
{
	static const char *const keys[] = {NULL};
	struct api_jw w = {0};
	cJSON *body;
	int r;

	if (parse_body(req, keys, &body, resp) < 0)
		return;
	cJSON_Delete(body);
	r = fgw_store_device_find(api->store, address, NULL, device_exists, NULL);
	if (r == -ENOENT) {
		api_error(resp, 404, "not_found", "no device '%s'", address);
		return;
	}
	if (r < 0) {
		api_reply_store_error(api, resp, r);
		return;
	}
	if (!api->prov.retry) {
		reply_unavailable(resp, "retry");
		return;
	}
	r = api->prov.retry(api->prov.user_data, address);
	fgw_notice("event: api-retry, device: %s, peer: %s, result: %s", address,
		   req->peer ? req->peer : "?", r == 0 ? "ok" : strerror(-r));
	if (r == -EALREADY) {
		api_error(resp, 409, "conflict", "device '%s' has nothing to retry", address);
		return;
	}
	if (r < 0) {
		reply_action_error(api, resp, r, "retry");
		return;
	}
	api_jw_open(&w, NULL, '{');
	api_jw_str(&w, "address", address);
	api_jw_bool(&w, "scheduled", true);
	api_jw_close(&w, '}');
	api_jw_reply(&w, resp, 202);
}
