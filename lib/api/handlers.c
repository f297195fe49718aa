/*
 * The /v1 endpoints: store rows and provider answers into JSON. Each handler reads with a
 * few short statements (no transaction held across them) and never waits on anything.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "store.h"
#include "util.h"

/* JSON building with one out-of-memory flag instead of a check after every call. */
struct jb {
	bool oom;
};

static cJSON *jb_put(struct jb *b, cJSON *parent, const char *key, cJSON *item)
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

static cJSON *jb_str(struct jb *b, cJSON *o, const char *key, const char *v)
{
	return jb_put(b, o, key, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

static cJSON *jb_int(struct jb *b, cJSON *o, const char *key, int64_t v)
{
	char text[24];

	if (v == FGW_STORE_NULL)
		return jb_put(b, o, key, cJSON_CreateNull());
	/*
	 * Integers go out as raw text: exact for every int64 (a double is not above 2^53), and
	 * cJSON's number printing (printf %g, then sscanf to check it) was most of the cost of
	 * a device listing.
	 */
	snprintf(text, sizeof(text), "%lld", (long long) v);
	return jb_put(b, o, key, cJSON_CreateRaw(text));
}

static cJSON *jb_num(struct jb *b, cJSON *o, const char *key, double v)
{
	return jb_put(b, o, key, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

static cJSON *jb_bool(struct jb *b, cJSON *o, const char *key, bool v)
{
	return jb_put(b, o, key, cJSON_CreateBool(v));
}

static cJSON *jb_obj(struct jb *b, cJSON *o, const char *key)
{
	return jb_put(b, o, key, cJSON_CreateObject());
}

static cJSON *jb_arr(struct jb *b, cJSON *o, const char *key)
{
	return jb_put(b, o, key, cJSON_CreateArray());
}

/* Stored JSON text (written by the gateway itself) as a value; null if absent or broken. */
static cJSON *jb_raw_json(struct jb *b, cJSON *o, const char *key, const char *text)
{
	cJSON *v = text ? cJSON_Parse(text) : NULL;

	return jb_put(b, o, key, v ? v : cJSON_CreateNull());
}

/* Sends @root (consumed) as the @status response. */
static void reply_json(struct api_response *resp, unsigned status, struct jb *b, cJSON *root)
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

static void reply_store_error(struct fgw_api *api, struct api_response *resp, int r)
{
	api->stats.database_errors++;
	fgw_log_errno(LOG_WARNING, r, "api: database query failed (%s)",
		      fgw_store_errmsg(api->store));
	api_error(resp, r == -EBUSY ? 503 : 500, "database", "database query failed: %s",
		  strerror(-r));
}

/* ---- the current release, copied out of its callback ---- */

struct release_ref {
	char *id;
	char *version;
	char *policy_json;
	int64_t sequence;
};

static void release_ref_done(struct release_ref *r)
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
static int current_release(struct fgw_api *api, struct release_ref *ref)
{
	int r = fgw_store_current_release(api->store, copy_release, ref);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		release_ref_done(ref);
	return r;
}

static int copy_halted(const struct fgw_store_rollout *ro, void *user_data)
{
	*(bool *) user_data = ro->halted;
	return 0;
}

struct halt_info {
	bool halted;
	char *by, *reason;
};

static int copy_halt_info(const struct fgw_store_rollout *ro, void *user_data)
{
	struct halt_info *h = user_data;

	h->halted = ro->halted;
	h->by = ro->halted_by ? strdup(ro->halted_by) : NULL;
	h->reason = ro->halted_reason ? strdup(ro->halted_reason) : NULL;
	return (ro->halted_by && !h->by) || (ro->halted_reason && !h->reason) ? -ENOMEM : 0;
}

/* ---- devices ---- */

static bool state_active(const char *state)
{
	static const char *const active[] = {"connecting", "probing",	"uploading", "marking",
					     "resetting",  "rebooting", "verifying", "confirming"};

	for (size_t i = 0; i < ARRAY_SIZE(active); i++)
		if (strcmp(state, active[i]) == 0)
			return true;
	return false;
}

static void add_progress(struct fgw_api *api, struct jb *b, cJSON *job, const char *address)
{
	struct fgw_api_progress p = {0};
	cJSON *o;

	if (!api->prov.progress || api->prov.progress(api->prov.user_data, address, &p) < 0)
		return;
	o = jb_obj(b, job, "progress");
	jb_int(b, o, "image", p.image);
	jb_int(b, o, "bytes", (int64_t) p.bytes);
	jb_int(b, o, "total", (int64_t) p.total);
	jb_num(b, o, "percent",
	       p.total ? floor(1000.0 * (double) p.bytes / (double) p.total) / 10.0 : NAN);
	jb_num(b, o, "rate_bps", p.rate_bps);
	jb_int(b, o, "eta_s", p.eta_s >= 0 ? p.eta_s : FGW_STORE_NULL);
}

static void add_job(struct fgw_api *api, struct jb *b, cJSON *dev, const char *address,
		    const struct fgw_store_job *j)
{
	cJSON *o;

	if (j->id == FGW_STORE_NULL) {
		jb_put(b, dev, "job", cJSON_CreateNull());
		return;
	}
	o = jb_obj(b, dev, "job");
	jb_int(b, o, "id", j->id);
	jb_str(b, o, "release", j->release_id);
	jb_str(b, o, "state", j->state);
	jb_int(b, o, "image", j->image);
	jb_int(b, o, "offset", j->offset);
	jb_int(b, o, "attempts", j->attempts);
	jb_int(b, o, "next_attempt_at", j->next_attempt_at);
	jb_str(b, o, "reason", j->reason);
	jb_bool(b, o, "canary", j->canary == 1);
	jb_str(b, o, "app_result", j->app_result);
	jb_str(b, o, "net_result", j->net_result);
	jb_int(b, o, "created_at", j->created_at);
	jb_int(b, o, "updated_at", j->updated_at);
	jb_int(b, o, "started_at", j->started_at);
	jb_int(b, o, "finished_at", j->finished_at);
	if (j->state && state_active(j->state))
		add_progress(api, b, o, address);
}

static cJSON *device_json(struct fgw_api *api, struct jb *b, cJSON *parent,
			  const struct fgw_store_device *d)
{
	cJSON *o = jb_obj(b, parent, NULL);

	jb_str(b, o, "address", d->address);
	jb_str(b, o, "transport", d->transport);
	jb_str(b, o, "name", d->name);
	jb_int(b, o, "rssi", d->rssi);
	jb_int(b, o, "last_seen", d->last_seen);
	jb_str(b, o, "board", d->board);
	jb_str(b, o, "group", d->group);
	jb_str(b, o, "state", d->state);
	/* enrollment (never the passkey: it is not in the row) */
	jb_bool(b, o, "enrolled", d->enrolled);
	jb_str(b, o, "enrolled_board", d->enrolled_board);
	jb_str(b, o, "label", d->label);
	add_job(api, b, o, d->address, &d->job);
	return o;
}

struct list_ctx {
	struct fgw_api *api;
	struct jb *b;
	cJSON *arr;
	unsigned limit;
	unsigned n;
	char *last; /* address of the last row shown */
};

static int list_row(const struct fgw_store_device *d, void *user_data)
{
	struct list_ctx *c = user_data;

	/* One row past the page tells that there is a next page; it is not shown. */
	if (++c->n > c->limit)
		return 0;
	device_json(c->api, c->b, c->arr, d);
	free(c->last);
	c->last = strdup(d->address);
	return c->last ? 0 : -ENOMEM;
}

static bool state_known(const char *s, size_t len)
{
	for (const char *const *st = fgw_store_device_states(); *st; st++)
		if (strlen(*st) == len && strncmp(*st, s, len) == 0)
			return true;
	return false;
}

/* Splits "a,b" into @states (pointers into @copy); 0 or -EINVAL naming nothing. */
static int parse_states(char *copy, const char **states, size_t max, size_t *ret_n)
{
	size_t n = 0;
	char *save = NULL;

	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == max || !state_known(tok, strlen(tok)))
			return -EINVAL;
		states[n++] = tok;
	}
	if (n == 0)
		return -EINVAL;
	*ret_n = n;
	return 0;
}

static bool text_arg_ok(const char *v)
{
	return strlen(v) > 0 && strlen(v) <= 128;
}

void api_handle_devices(struct fgw_api *api, const struct api_request *req,
			struct api_response *resp)
{
	const char *limit_s = req->arg(req->arg_ctx, "limit");
	const char *cursor = req->arg(req->arg_ctx, "cursor");
	const char *state = req->arg(req->arg_ctx, "state");
	const char *group = req->arg(req->arg_ctx, "group");
	const char *release = req->arg(req->arg_ctx, "release");
	_cleanup_free_ char *after = NULL, *states_copy = NULL, *next = NULL;
	struct release_ref cur = {0};
	const char *states[16];
	struct fgw_store_device_filter f = {0};
	struct jb b = {0};
	struct list_ctx c = {.api = api, .b = &b};
	cJSON *root;
	int64_t limit = API_DEFAULT_LIMIT;
	int r;

	if (limit_s && fgw_parse_int64(limit_s, 1, API_MAX_LIMIT, &limit) < 0) {
		api_error(resp, 400, "bad_request", "limit must be an integer from 1 to %d",
			  API_MAX_LIMIT);
		return;
	}
	if (cursor) {
		r = api_cursor_decode(cursor, &after);
		if (r < 0) {
			api_error(resp, 400, "bad_request", "malformed cursor");
			return;
		}
	}
	if (state) {
		states_copy = strdup(state);
		if (!states_copy)
			return;
		if (parse_states(states_copy, states, ARRAY_SIZE(states), &f.n_states) < 0) {
			api_error(resp, 400, "bad_request",
				  "state must be a comma-separated list of device states");
			return;
		}
		f.states = states;
	}
	if ((group && !text_arg_ok(group)) || (release && !text_arg_ok(release))) {
		api_error(resp, 400, "bad_request", "group and release must be 1 to 128 bytes");
		return;
	}
	if (!release) {
		r = current_release(api, &cur);
		if (r < 0) {
			reply_store_error(api, resp, r);
			return;
		}
	}
	f.release_id = release;
	f.group = group;
	f.after = after;
	f.limit = (unsigned) limit + 1;
	c.limit = (unsigned) limit;

	root = cJSON_CreateObject();
	c.arr = jb_arr(&b, root, "devices");
	r = fgw_store_devices_query(api->store, &f, list_row, &c);
	if (r < 0) {
		cJSON_Delete(root);
		free(c.last);
		release_ref_done(&cur);
		if (r == -ENOMEM)
			return;
		reply_store_error(api, resp, r);
		return;
	}
	if (c.n > c.limit && api_cursor_encode(c.last, &next) < 0)
		b.oom = true;
	jb_str(&b, root, "next_cursor", next);
	jb_str(&b, root, "release", release ? release : cur.id);
	free(c.last);
	release_ref_done(&cur);
	reply_json(resp, 200, &b, root);
}

/* ---- one device ---- */

struct device_ctx {
	struct fgw_api *api;
	struct jb *b;
	cJSON *root;
};

static int device_detail(const struct fgw_store_device *d, void *user_data)
{
	struct device_ctx *c = user_data;
	cJSON *o = device_json(c->api, c->b, c->root, d);

	jb_int(c->b, o, "bootloader_mode", d->bootloader_mode);
	jb_int(c->b, o, "created_at", d->created_at);
	return 0;
}

static int image_row(const struct fgw_store_device_image *img, void *user_data)
{
	struct device_ctx *c = user_data;
	cJSON *o = jb_obj(c->b, c->root, NULL), *fl;
	int64_t f = img->flags == FGW_STORE_NULL ? 0 : img->flags;

	jb_int(c->b, o, "image", img->image);
	jb_int(c->b, o, "slot", img->slot);
	jb_str(c->b, o, "version", img->version);
	jb_str(c->b, o, "hash", img->hash);
	fl = jb_obj(c->b, o, "flags");
	jb_bool(c->b, fl, "active", f & 1);
	jb_bool(c->b, fl, "confirmed", f & 2);
	jb_bool(c->b, fl, "pending", f & 4);
	jb_bool(c->b, fl, "permanent", f & 8);
	jb_bool(c->b, fl, "bootable", f & 16);
	jb_int(c->b, o, "read_at", img->read_at);
	return 0;
}

static int event_row(const struct fgw_store_event *e, void *user_data)
{
	struct device_ctx *c = user_data;
	cJSON *o = jb_obj(c->b, c->root, NULL);

	jb_int(c->b, o, "id", e->id);
	jb_int(c->b, o, "at", e->at);
	jb_str(c->b, o, "kind", e->kind);
	jb_str(c->b, o, "from", e->from_state);
	jb_str(c->b, o, "to", e->to_state);
	jb_str(c->b, o, "detail", e->detail);
	jb_int(c->b, o, "job_id", e->job_id);
	return 0;
}

void api_handle_device(struct fgw_api *api, const char *address, struct api_response *resp)
{
	struct jb b = {0};
	cJSON *arr = cJSON_CreateArray(), *dev;
	struct device_ctx c = {.api = api, .b = &b, .root = arr};
	int r;

	if (!arr)
		return;
	r = fgw_store_device_find(api->store, address, NULL, device_detail, &c);
	if (r < 0) {
		cJSON_Delete(arr);
		if (r == -ENOENT)
			api_error(resp, 404, "not_found", "no device '%s'", address);
		else if (r != -ENOMEM)
			reply_store_error(api, resp, r);
		return;
	}
	/* Detach the device object from the scratch array: it becomes the root. */
	dev = cJSON_DetachItemFromArray(arr, 0);
	cJSON_Delete(arr);
	if (!dev)
		return;
	c.root = jb_arr(&b, dev, "images");
	r = fgw_store_device_images_foreach(api->store, address, image_row, &c);
	if (r >= 0) {
		c.root = jb_arr(&b, dev, "events");
		r = fgw_store_device_events_foreach(api->store, address, API_DEVICE_EVENTS,
						    event_row, &c);
	}
	if (r < 0) {
		cJSON_Delete(dev);
		if (r != -ENOMEM)
			reply_store_error(api, resp, r);
		return;
	}
	reply_json(resp, 200, &b, dev);
}

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
	cJSON *o = jb_obj(c->b, c->arr, NULL), *bundle;
	char url[FGW_URL_LOG_MAX];

	jb_str(c->b, o, "id", rel->id);
	jb_int(c->b, o, "sequence", rel->sequence);
	jb_str(c->b, o, "version", rel->version);
	jb_str(c->b, o, "board", rel->board);
	jb_raw_json(c->b, o, "groups", rel->groups_json);
	jb_raw_json(c->b, o, "policy", rel->policy_json);
	bundle = jb_obj(c->b, o, "bundle");
	/* served without a token: never the userinfo or query a download URL may carry */
	jb_str(c->b, bundle, "url",
	       rel->bundle_url ? fgw_url_redact(rel->bundle_url, url, sizeof(url)) : NULL);
	jb_str(c->b, bundle, "sha256", rel->bundle_sha256);
	jb_int(c->b, bundle, "size", rel->bundle_size);
	jb_str(c->b, o, "state", rel->state);
	jb_str(c->b, o, "reason", rel->reason);
	jb_int(c->b, o, "created_at", rel->created_at);
	jb_int(c->b, o, "verified_at", rel->verified_at);
	jb_bool(c->b, o, "current", c->current && strcmp(c->current, rel->id) == 0);
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

	r = current_release(api, &cur);
	if (r < 0) {
		if (r != -ENOMEM)
			reply_store_error(api, resp, r);
		return;
	}
	root = cJSON_CreateObject();
	jb_str(&b, root, "current", cur.id);
	c.arr = jb_arr(&b, root, "releases");
	c.current = cur.id;
	r = fgw_store_releases_foreach(api->store, release_row, &c);
	release_ref_done(&cur);
	if (r < 0) {
		cJSON_Delete(root);
		if (r != -ENOMEM)
			reply_store_error(api, resp, r);
		return;
	}
	reply_json(resp, 200, &b, root);
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

struct failures_ctx {
	struct jb *b;
	cJSON *arr;
};

static int failure_row(const struct fgw_store_device *d, void *user_data)
{
	struct failures_ctx *c = user_data;
	cJSON *o = jb_obj(c->b, c->arr, NULL);

	jb_str(c->b, o, "address", d->address);
	jb_str(c->b, o, "state", d->state);
	jb_str(c->b, o, "reason", d->job.reason);
	jb_int(c->b, o, "attempts", d->job.attempts);
	jb_int(c->b, o, "at",
	       d->job.finished_at != FGW_STORE_NULL ? d->job.finished_at : d->job.updated_at);
	return 0;
}

static int reason_row(const char *key, int64_t canary, int64_t count, void *user_data)
{
	struct failures_ctx *c = user_data;
	cJSON *o = jb_obj(c->b, c->arr, NULL);

	jb_str(c->b, o, "reason", key);
	jb_int(c->b, o, "count", count);
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

	r = current_release(api, &cur);
	if (r >= 0)
		r = fgw_store_state_counts(api->store, cur.id, count_row, &cnt);
	if (r >= 0 && cur.id) {
		r = fgw_store_rollout_get(api->store, cur.id, copy_halt_info, &halt);
		if (r == -ENOENT)
			r = 0;
	}
	if (r < 0)
		goto fail;

	root = cJSON_CreateObject();
	if (cur.id) {
		o = jb_obj(&b, root, "release");
		jb_str(&b, o, "id", cur.id);
		jb_str(&b, o, "version", cur.version);
		jb_int(&b, o, "sequence", cur.sequence);
	} else {
		jb_put(&b, root, "release", cJSON_CreateNull());
	}
	jb_bool(&b, root, "halted", halt.halted);
	jb_str(&b, root, "halted_by", halt.halted ? halt.by : NULL);
	jb_str(&b, root, "halted_reason", halt.halted ? halt.reason : NULL);
	jb_int(&b, root, "total_devices", cnt.total);
	o = jb_obj(&b, root, "counts");
	i = 0;
	for (const char *const *st = fgw_store_device_states(); *st; st++, i++)
		jb_int(&b, o, *st, cnt.by_state[i]);
	jb_int(&b, root, "in_progress",
	       cnt.total - sum_states(cnt.by_state, not_running_states) -
		   cnt.by_state[state_index("queued")]);

	failed = sum_states(cnt.by_state, failed_states);
	finished = sum_states(cnt.by_state, finished_states);
	max_rate = policy_max_failure_rate(cur.policy_json);
	if (cur.id)
		jb_num(&b, root, "failure_rate",
		       finished ? (double) failed / (double) finished : 0);
	else
		jb_put(&b, root, "failure_rate", cJSON_CreateNull());
	jb_num(&b, root, "max_failure_rate", max_rate);

	for (i = 0; i < (int) ARRAY_SIZE(cnt.canary_by_state); i++)
		c_total += cnt.canary_by_state[i];
	c_failed = sum_states(cnt.canary_by_state, failed_states);
	c_done = sum_states(cnt.canary_by_state, done_states);
	c_running = c_total - c_failed - c_done -
		    sum_states(cnt.canary_by_state, (const char *const[]){"superseded", NULL});
	o = jb_obj(&b, root, "canary");
	jb_int(&b, o, "total", c_total);
	jb_int(&b, o, "done", c_done);
	jb_int(&b, o, "failed", c_failed);
	jb_int(&b, o, "in_progress", c_running);
	jb_str(&b, o, "status", canary_status(c_total, c_failed, c_running, max_rate));

	fc.arr = jb_arr(&b, root, "failure_reasons");
	if (cur.id)
		r = fgw_store_failure_reasons(api->store, cur.id, reason_row, &fc);
	fc.arr = jb_arr(&b, root, "failures");
	if (r >= 0 && cur.id)
		r = fgw_store_failures_foreach(api->store, cur.id, API_ROLLOUT_FAILURES,
					       failure_row, &fc);
	if (r < 0)
		goto fail;
	release_ref_done(&cur);
	free(halt.by);
	free(halt.reason);
	reply_json(resp, 200, &b, root);
	return;
fail:
	cJSON_Delete(root);
	release_ref_done(&cur);
	free(halt.by);
	free(halt.reason);
	if (r != -ENOMEM)
		reply_store_error(api, resp, r);
}

/* ---- health ---- */

void api_handle_health(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp)
{
	struct fgw_api_health h = {.uptime_ms = -1};
	struct fgw_api_manifest man = {0};
	struct release_ref cur = {0};
	struct jb b = {0};
	cJSON *root, *o;
	bool halted = false, ok = true;
	int version, r = 0, hr = 0;

	if (api->prov.health)
		hr = api->prov.health(api->prov.user_data, &h);
	if (!api->prov.manifest || api->prov.manifest(api->prov.user_data, &man) < 0)
		man.freshness = NULL;
	version = fgw_store_version(api->store);
	if (version >= 0) {
		r = current_release(api, &cur);
		if (r >= 0 && cur.id) {
			r = fgw_store_rollout_get(api->store, cur.id, copy_halted, &halted);
			if (r == -ENOENT)
				r = 0;
		}
	}
	if (r == -ENOMEM) {
		release_ref_done(&cur);
		return;
	}
	if (version < 0 || r < 0 || hr < 0)
		ok = false;
	if (man.freshness && strcmp(man.freshness, "expired") == 0)
		ok = false; /* a replayed or frozen manifest: the operator must look */

	root = cJSON_CreateObject();
	jb_str(&b, root, "status", ok ? "ok" : "degraded");
	if (hr >= 0 && h.version)
		jb_str(&b, root, "version", h.version);
	if (hr >= 0 && h.uptime_ms >= 0)
		jb_num(&b, root, "uptime_s", (double) h.uptime_ms / 1000.0);
	jb_str(&b, root, "adapter_state", hr >= 0 ? h.adapter_state : NULL);
	o = jb_obj(&b, root, "database");
	jb_str(&b, o, "state", version >= 0 && r >= 0 ? "ok" : "error");
	jb_int(&b, o, "schema_version", version >= 0 ? version : FGW_STORE_NULL);
	if (cur.id) {
		o = jb_obj(&b, root, "release");
		jb_str(&b, o, "id", cur.id);
		jb_str(&b, o, "version", cur.version);
	} else {
		jb_put(&b, root, "release", cJSON_CreateNull());
	}
	jb_bool(&b, root, "rollout_halted", halted);
	if (man.freshness) {
		o = jb_obj(&b, root, "manifest");
		jb_str(&b, o, "freshness", man.freshness);
		if (man.expires > 0)
			jb_num(&b, o, "expires", (double) man.expires);
	}
	release_ref_done(&cur);
	reply_json(resp, ok ? 200 : 503, &b, root);
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
	struct jb b = {0};
	cJSON *root = cJSON_CreateObject();

	jb_bool(&b, root, "halted", halted);
	jb_bool(&b, root, "changed", changed);
	reply_json(resp, 200, &b, root);
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
	struct jb b = {0};
	cJSON *body, *root;
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
		reply_store_error(api, resp, r);
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
	root = cJSON_CreateObject();
	jb_str(&b, root, "address", address);
	jb_bool(&b, root, "scheduled", true);
	reply_json(resp, 202, &b, root);
}
