/*
 * The release reads: GET /v1/releases and GET /v1/rollout (state counts, canary verdict and
 * failures of the current release).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "util.h"

/* ---- releases ---- */

struct releases_ctx {
	struct fgw_api *api;
	struct jb *b;
	cJSON *arr;
	const char *current;
};

static int release_row(const struct fgw_store_release *rel, void *user_data)
{
	struct releases_ctx *c = user_data;
	cJSON *o = api_jb_obj(c->b, c->arr, NULL), *bundle;
	char url[FGW_URL_LOG_MAX];

	api_jb_str(c->b, o, "id", rel->id);
	api_jb_int(c->b, o, "sequence", rel->sequence);
	api_jb_str(c->b, o, "version", rel->version);
	api_jb_str(c->b, o, "board", rel->board);
	api_jb_raw_json(c->b, o, "groups", rel->groups_json);
	api_jb_raw_json(c->b, o, "policy", rel->policy_json);
	bundle = api_jb_obj(c->b, o, "bundle");
	/* served without a token: never the userinfo or query a download URL may carry */
	api_jb_str(c->b, bundle, "url",
		   rel->bundle_url ? fgw_url_redact(rel->bundle_url, url, sizeof(url)) : NULL);
	api_jb_str(c->b, bundle, "sha256", rel->bundle_sha256);
	api_jb_int(c->b, bundle, "size", rel->bundle_size);
	api_jb_str(c->b, o, "state", rel->state);
	api_jb_str(c->b, o, "reason", rel->reason);
	api_jb_int(c->b, o, "created_at", rel->created_at);
	api_jb_int(c->b, o, "verified_at", rel->verified_at);
	api_jb_bool(c->b, o, "current", c->current && strcmp(c->current, rel->id) == 0);
	c->b->oom |= api_release_images_json(c->api, o, rel->id) < 0;
	return 0;
}

void api_handle_releases(struct fgw_api *api, struct api_response *resp)
{
	struct release_ref cur = {0};
	struct jb b = {0};
	struct releases_ctx c = {.api = api, .b = &b};
	cJSON *root;
	int r;

	r = api_current_release(api, &cur);
	if (r < 0) {
		if (r != -ENOMEM)
			api_reply_store_error(api, resp, r);
		return;
	}
	root = cJSON_CreateObject();
	api_jb_str(&b, root, "current", cur.id);
	c.arr = api_jb_arr(&b, root, "releases");
	c.current = cur.id;
	r = fgw_store_releases_foreach(api->store, release_row, &c);
	api_release_ref_done(&cur);
	if (r < 0) {
		cJSON_Delete(root);
		if (r != -ENOMEM)
			api_reply_store_error(api, resp, r);
		return;
	}
	api_reply_json(resp, 200, &b, root);
}

/* ---- rollout ---- */

struct counts {
	int64_t by_state[32];
	int64_t canary_by_state[32];
	int64_t total;
};

static int state_index(const char *state)
{
	int i = 0;

	for (const char *const *st = fgw_store_device_states(); *st; st++, i++)
		if (strcmp(*st, state) == 0)
			return i;
	return -1;
}

static int count_row(const char *key, int64_t canary, int64_t count, void *user_data)
{
	struct counts *c = user_data;
	int i = state_index(key);

	/* A state the schema gained after this build: counted in the total only. */
	if (i >= 0 && i < (int) ARRAY_SIZE(c->by_state)) {
		c->by_state[i] += count;
		if (canary == 1)
			c->canary_by_state[i] += count;
	}
	c->total += count;
	return 0;
}

static int64_t sum_states(const int64_t *by_state, const char *const *names)
{
	int64_t n = 0;

	for (; *names; names++) {
		int i = state_index(*names);
		if (i >= 0)
			n += by_state[i];
	}
	return n;
}

static const char *const failed_states[] = {"failed", "reverted", NULL};
static const char *const done_states[] = {"done", "skipped", NULL};
static const char *const finished_states[] = {"done", "failed", "reverted", NULL};
static const char *const not_running_states[] = {"done",       "skipped", "failed", "reverted",
						 "superseded", "idle",	  NULL};

struct failures_ctx {
	struct jb *b;
	cJSON *arr;
};

static int failure_row(const struct fgw_store_device *d, void *user_data)
{
	struct failures_ctx *c = user_data;
	cJSON *o = api_jb_obj(c->b, c->arr, NULL);

	api_jb_str(c->b, o, "address", d->address);
	api_jb_str(c->b, o, "state", d->state);
	api_jb_str(c->b, o, "reason", d->job.reason);
	api_jb_int(c->b, o, "attempts", d->job.attempts);
	api_jb_int(c->b, o, "at",
		   d->job.finished_at != FGW_STORE_NULL ? d->job.finished_at : d->job.updated_at);
	return 0;
}

static int reason_row(const char *key, int64_t canary, int64_t count, void *user_data)
{
	struct failures_ctx *c = user_data;
	cJSON *o = api_jb_obj(c->b, c->arr, NULL);

	api_jb_str(c->b, o, "reason", key);
	api_jb_int(c->b, o, "count", count);
	return 0;
}

/* The policy's max_failure_rate, or NAN when the release does not say. */
static double policy_max_failure_rate(const char *policy_json)
{
	cJSON *p = policy_json ? cJSON_Parse(policy_json) : NULL;
	cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "max_failure_rate");
	double rate = cJSON_IsNumber(v) ? v->valuedouble : NAN;

	cJSON_Delete(p);
	return rate;
}

static const char *canary_status(int64_t total, int64_t failed, int64_t running, double max_rate)
{
	if (total == 0)
		return "none";
	if (failed > 0 && (isnan(max_rate) || (double) failed / (double) total > max_rate))
		return "failed";
	if (running > 0)
		return "running";
	return "passed";
}

void api_handle_rollout(struct fgw_api *api, struct api_response *resp)
{
	struct release_ref cur = {0};
	struct counts cnt = {0};
	struct jb b = {0};
	struct failures_ctx fc = {.b = &b};
	struct halt_info halt = {0};
	cJSON *root = NULL, *o;
	int64_t failed, finished, c_total = 0, c_failed, c_done, c_running;
	double max_rate;
	int r, i;

	r = api_current_release(api, &cur);
	if (r >= 0)
		r = fgw_store_state_counts(api->store, cur.id, count_row, &cnt);
	if (r >= 0 && cur.id) {
		r = fgw_store_rollout_get(api->store, cur.id, api_copy_halt_info, &halt);
		if (r == -ENOENT)
			r = 0;
	}
	if (r < 0)
		goto fail;

	root = cJSON_CreateObject();
	if (cur.id) {
		o = api_jb_obj(&b, root, "release");
		api_jb_str(&b, o, "id", cur.id);
		api_jb_str(&b, o, "version", cur.version);
		api_jb_int(&b, o, "sequence", cur.sequence);
	} else {
		api_jb_put(&b, root, "release", cJSON_CreateNull());
	}
	api_jb_bool(&b, root, "halted", halt.halted);
	api_jb_str(&b, root, "halted_by", halt.halted ? halt.by : NULL);
	api_jb_str(&b, root, "halted_reason", halt.halted ? halt.reason : NULL);
	api_jb_int(&b, root, "total_devices", cnt.total);
	o = api_jb_obj(&b, root, "counts");
	i = 0;
	for (const char *const *st = fgw_store_device_states(); *st; st++, i++)
		api_jb_int(&b, o, *st, cnt.by_state[i]);
	api_jb_int(&b, root, "in_progress",
		   cnt.total - sum_states(cnt.by_state, not_running_states) -
		       cnt.by_state[state_index("queued")]);

	failed = sum_states(cnt.by_state, failed_states);
	finished = sum_states(cnt.by_state, finished_states);
	max_rate = policy_max_failure_rate(cur.policy_json);
	if (cur.id)
		api_jb_num(&b, root, "failure_rate",
			   finished ? (double) failed / (double) finished : 0);
	else
		api_jb_put(&b, root, "failure_rate", cJSON_CreateNull());
	api_jb_num(&b, root, "max_failure_rate", max_rate);

	for (i = 0; i < (int) ARRAY_SIZE(cnt.canary_by_state); i++)
		c_total += cnt.canary_by_state[i];
	c_failed = sum_states(cnt.canary_by_state, failed_states);
	c_done = sum_states(cnt.canary_by_state, done_states);
	c_running = c_total - c_failed - c_done -
		    sum_states(cnt.canary_by_state, (const char *const[]){"superseded", NULL});
	o = api_jb_obj(&b, root, "canary");
	api_jb_int(&b, o, "total", c_total);
	api_jb_int(&b, o, "done", c_done);
	api_jb_int(&b, o, "failed", c_failed);
	api_jb_int(&b, o, "in_progress", c_running);
	api_jb_str(&b, o, "status", canary_status(c_total, c_failed, c_running, max_rate));

	fc.arr = api_jb_arr(&b, root, "failure_reasons");
	if (cur.id)
		r = fgw_store_failure_reasons(api->store, cur.id, reason_row, &fc);
	fc.arr = api_jb_arr(&b, root, "failures");
	if (r >= 0 && cur.id)
		r = fgw_store_failures_foreach(api->store, cur.id, API_ROLLOUT_FAILURES,
					       failure_row, &fc);
	if (r < 0)
		goto fail;
	api_release_ref_done(&cur);
	free(halt.by);
	free(halt.reason);
	api_reply_json(resp, 200, &b, root);
	return;
fail:
	cJSON_Delete(root);
	api_release_ref_done(&cur);
	free(halt.by);
	free(halt.reason);
	if (r != -ENOMEM)
		api_reply_store_error(api, resp, r);
}
