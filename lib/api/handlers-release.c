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
	struct api_jw *w;
	const char *current;
};

static int release_row(const struct fgw_store_release *rel, void *user_data)
{
	struct releases_ctx *c = user_data;
	struct api_jw *w = c->w;
	char url[FGW_URL_LOG_MAX];

	api_jw_open(w, NULL, '{');
	api_jw_str(w, "id", rel->id);
	api_jw_int(w, "sequence", rel->sequence);
	api_jw_str(w, "version", rel->version);
	api_jw_str(w, "board", rel->board);
	api_jw_json_text(w, "groups", rel->groups_json);
	api_jw_json_text(w, "policy", rel->policy_json);
	api_jw_open(w, "bundle", '{');
	/* served without a token: never the userinfo or query a download URL may carry */
	api_jw_str(w, "url",
		   rel->bundle_url ? fgw_url_redact(rel->bundle_url, url, sizeof(url)) : NULL);
	api_jw_str(w, "sha256", rel->bundle_sha256);
	api_jw_int(w, "size", rel->bundle_size);
	api_jw_close(w, '}');
	api_jw_str(w, "state", rel->state);
	api_jw_str(w, "reason", rel->reason);
	api_jw_int(w, "created_at", rel->created_at);
	api_jw_int(w, "verified_at", rel->verified_at);
	api_jw_bool(w, "current", c->current && strcmp(c->current, rel->id) == 0);
	api_release_images_json(c->api, w, rel->id);
	api_jw_close(w, '}');
	return 0;
}

void api_handle_releases(struct fgw_api *api, struct api_response *resp)
{
	struct release_ref cur = {0};
	struct api_jw w = {0};
	struct releases_ctx c = {.api = api, .w = &w};
	int r;

	r = api_current_release(api, &cur);
	if (r < 0) {
		api_reply_read_error(api, &w, resp, r);
		return;
	}
	api_jw_open(&w, NULL, '{');
	api_jw_str(&w, "current", cur.id);
	api_jw_open(&w, "releases", '[');
	c.current = cur.id;
	r = fgw_store_releases_foreach(api->store, release_row, &c);
	api_release_ref_done(&cur);
	api_reply_list(api, &w, resp, r);
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
static const char *const not_running_states[] = {"done",       "skipped", "failed",	"reverted",
						 "superseded", "idle",	  "unenrolled", NULL};

static int failure_row(const struct fgw_store_device *d, void *user_data)
{
	struct api_jw *w = user_data;

	api_jw_open(w, NULL, '{');
	api_jw_str(w, "address", d->address);
	api_jw_str(w, "state", d->state);
	api_jw_str(w, "reason", d->job.reason);
	api_jw_int(w, "attempts", d->job.attempts);
	api_jw_int(w, "at",
		   d->job.finished_at != FGW_STORE_NULL ? d->job.finished_at : d->job.updated_at);
	api_jw_close(w, '}');
	return 0;
}

static int reason_row(const char *key, int64_t canary, int64_t count, void *user_data)
{
	struct api_jw *w = user_data;

	api_jw_open(w, NULL, '{');
	api_jw_str(w, "reason", key);
	api_jw_int(w, "count", count);
	api_jw_close(w, '}');
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

/* The counts part of the answer: by state, in progress, failure rate, and the canaries. */
static void rollout_counts(struct api_jw *w, const struct counts *cnt, bool has_release,
			   double max_rate)
{
	int64_t failed, finished, c_total = 0, c_failed, c_done, c_running;
	int i = 0;

	api_jw_int(w, "total_devices", cnt->total);
	api_jw_open(w, "counts", '{');
	for (const char *const *st = fgw_store_device_states(); *st; st++, i++)
		api_jw_int(w, *st, cnt->by_state[i]);
	api_jw_close(w, '}');
	api_jw_int(w, "in_progress",
		   cnt->total - sum_states(cnt->by_state, not_running_states) -
		       cnt->by_state[state_index("queued")]);
	failed = sum_states(cnt->by_state, failed_states);
	finished = sum_states(cnt->by_state, finished_states);
	if (has_release)
		api_jw_num(w, "failure_rate", finished ? (double) failed / (double) finished : 0);
	else
		api_jw_null(w, "failure_rate");
	api_jw_num(w, "max_failure_rate", max_rate);

	for (i = 0; i < (int) ARRAY_SIZE(cnt->canary_by_state); i++)
		c_total += cnt->canary_by_state[i];
	c_failed = sum_states(cnt->canary_by_state, failed_states);
	c_done = sum_states(cnt->canary_by_state, done_states);
	c_running = c_total - c_failed - c_done -
		    sum_states(cnt->canary_by_state, (const char *const[]){"superseded", NULL});
	api_jw_open(w, "canary", '{');
	api_jw_int(w, "total", c_total);
	api_jw_int(w, "done", c_done);
	api_jw_int(w, "failed", c_failed);
	api_jw_int(w, "in_progress", c_running);
	api_jw_str(w, "status", canary_status(c_total, c_failed, c_running, max_rate));
	api_jw_close(w, '}');
}

/* The failure lists of the current release, @id (none without a release). */
static int rollout_failures(struct fgw_api *api, struct api_jw *w, const char *id)
{
	int r = 0;

	api_jw_open(w, "failure_reasons", '[');
	if (id)
		r = fgw_store_failure_reasons(api->store, id, reason_row, w);
	api_jw_close(w, ']');
	api_jw_open(w, "failures", '[');
	if (r >= 0 && id)
		r = fgw_store_failures_foreach(api->store, id, API_ROLLOUT_FAILURES, failure_row,
					       w);
	api_jw_close(w, ']');
	return r;
}

void api_handle_rollout(struct fgw_api *api, struct api_response *resp)
{
	struct release_ref cur = {0};
	struct counts cnt = {0};
	struct api_jw w = {0};
	struct halt_info halt = {0};
	int r;

	r = api_current_release(api, &cur);
	if (r >= 0)
		r = fgw_store_state_counts(api->store, cur.id, count_row, &cnt);
	if (r >= 0 && cur.id) {
		r = fgw_store_rollout_get(api->store, cur.id, api_copy_halt_info, &halt);
		if (r == -ENOENT)
			r = 0;
	}
	if (r >= 0) {
		api_jw_open(&w, NULL, '{');
		if (cur.id) {
			api_jw_open(&w, "release", '{');
			api_jw_str(&w, "id", cur.id);
			api_jw_str(&w, "version", cur.version);
			api_jw_int(&w, "sequence", cur.sequence);
			api_jw_close(&w, '}');
		} else {
			api_jw_null(&w, "release");
		}
		api_jw_bool(&w, "halted", halt.halted);
		api_jw_str(&w, "halted_by", halt.halted ? halt.by : NULL);
		api_jw_str(&w, "halted_reason", halt.halted ? halt.reason : NULL);
		rollout_counts(&w, &cnt, cur.id, policy_max_failure_rate(cur.policy_json));
		r = rollout_failures(api, &w, cur.id);
		api_jw_close(&w, '}');
	}
	api_release_ref_done(&cur);
	free(halt.by);
	free(halt.reason);
	if (r >= 0) {
		api_jw_reply(&w, resp, 200);
		return;
	}
	api_reply_read_error(api, &w, resp, r);
}
