/*
 * The fleet reads: GET /v1/devices (a page of devices with their jobs and live progress) and
 * GET /v1/devices/{address} (one device with its images and recent events).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "util.h"

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
	o = api_jb_obj(b, job, "progress");
	api_jb_int(b, o, "image", p.image);
	api_jb_int(b, o, "bytes", (int64_t) p.bytes);
	api_jb_int(b, o, "total", (int64_t) p.total);
	api_jb_num(b, o, "percent",
		   p.total ? floor(1000.0 * (double) p.bytes / (double) p.total) / 10.0 : NAN);
	api_jb_num(b, o, "rate_bps", p.rate_bps);
	api_jb_int(b, o, "eta_s", p.eta_s >= 0 ? p.eta_s : FGW_STORE_NULL);
}

static void add_job(struct fgw_api *api, struct jb *b, cJSON *dev, const char *address,
		    const struct fgw_store_job *j)
{
	cJSON *o;

	if (j->id == FGW_STORE_NULL) {
		api_jb_put(b, dev, "job", cJSON_CreateNull());
		return;
	}
	o = api_jb_obj(b, dev, "job");
	api_jb_int(b, o, "id", j->id);
	api_jb_str(b, o, "release", j->release_id);
	api_jb_str(b, o, "state", j->state);
	api_jb_int(b, o, "image", j->image);
	api_jb_int(b, o, "offset", j->offset);
	api_jb_int(b, o, "attempts", j->attempts);
	api_jb_int(b, o, "next_attempt_at", j->next_attempt_at);
	api_jb_str(b, o, "reason", j->reason);
	api_jb_bool(b, o, "canary", j->canary == 1);
	api_jb_str(b, o, "app_result", j->app_result);
	api_jb_str(b, o, "net_result", j->net_result);
	api_jb_int(b, o, "created_at", j->created_at);
	api_jb_int(b, o, "updated_at", j->updated_at);
	api_jb_int(b, o, "started_at", j->started_at);
	api_jb_int(b, o, "finished_at", j->finished_at);
	if (j->state && state_active(j->state))
		add_progress(api, b, o, address);
}

static cJSON *device_json(struct fgw_api *api, struct jb *b, cJSON *parent,
			  const struct fgw_store_device *d)
{
	cJSON *o = api_jb_obj(b, parent, NULL);

	api_jb_str(b, o, "address", d->address);
	api_jb_str(b, o, "transport", d->transport);
	api_jb_str(b, o, "name", d->name);
	api_jb_int(b, o, "rssi", d->rssi);
	api_jb_int(b, o, "last_seen", d->last_seen);
	api_jb_str(b, o, "board", d->board);
	api_jb_str(b, o, "group", d->group);
	api_jb_str(b, o, "state", d->state);
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
		r = api_current_release(api, &cur);
		if (r < 0) {
			api_reply_store_error(api, resp, r);
			return;
		}
	}
	f.release_id = release;
	f.group = group;
	f.after = after;
	f.limit = (unsigned) limit + 1;
	c.limit = (unsigned) limit;

	root = cJSON_CreateObject();
	c.arr = api_jb_arr(&b, root, "devices");
	r = fgw_store_devices_query(api->store, &f, list_row, &c);
	if (r < 0) {
		cJSON_Delete(root);
		free(c.last);
		api_release_ref_done(&cur);
		if (r == -ENOMEM)
			return;
		api_reply_store_error(api, resp, r);
		return;
	}
	if (c.n > c.limit && api_cursor_encode(c.last, &next) < 0)
		b.oom = true;
	api_jb_str(&b, root, "next_cursor", next);
	api_jb_str(&b, root, "release", release ? release : cur.id);
	free(c.last);
	api_release_ref_done(&cur);
	api_reply_json(resp, 200, &b, root);
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

	api_jb_int(c->b, o, "bootloader_mode", d->bootloader_mode);
	api_jb_int(c->b, o, "created_at", d->created_at);
	return 0;
}

static int image_row(const struct fgw_store_device_image *img, void *user_data)
{
	struct device_ctx *c = user_data;
	cJSON *o = api_jb_obj(c->b, c->root, NULL), *fl;
	int64_t f = img->flags == FGW_STORE_NULL ? 0 : img->flags;

	api_jb_int(c->b, o, "image", img->image);
	api_jb_int(c->b, o, "slot", img->slot);
	api_jb_str(c->b, o, "version", img->version);
	api_jb_str(c->b, o, "hash", img->hash);
	fl = api_jb_obj(c->b, o, "flags");
	api_jb_bool(c->b, fl, "active", f & 1);
	api_jb_bool(c->b, fl, "confirmed", f & 2);
	api_jb_bool(c->b, fl, "pending", f & 4);
	api_jb_bool(c->b, fl, "permanent", f & 8);
	api_jb_bool(c->b, fl, "bootable", f & 16);
	api_jb_int(c->b, o, "read_at", img->read_at);
	return 0;
}

static int event_row(const struct fgw_store_event *e, void *user_data)
{
	struct device_ctx *c = user_data;
	cJSON *o = api_jb_obj(c->b, c->root, NULL);

	api_jb_int(c->b, o, "id", e->id);
	api_jb_int(c->b, o, "at", e->at);
	api_jb_str(c->b, o, "kind", e->kind);
	api_jb_str(c->b, o, "from", e->from_state);
	api_jb_str(c->b, o, "to", e->to_state);
	api_jb_str(c->b, o, "detail", e->detail);
	api_jb_int(c->b, o, "job_id", e->job_id);
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
			api_reply_store_error(api, resp, r);
		return;
	}
	/* Detach the device object from the scratch array: it becomes the root. */
	dev = cJSON_DetachItemFromArray(arr, 0);
	cJSON_Delete(arr);
	if (!dev)
		return;
	c.root = api_jb_arr(&b, dev, "images");
	r = fgw_store_device_images_foreach(api->store, address, image_row, &c);
	if (r >= 0) {
		c.root = api_jb_arr(&b, dev, "events");
		r = fgw_store_device_events_foreach(api->store, address, API_DEVICE_EVENTS,
						    event_row, &c);
	}
	if (r < 0) {
		cJSON_Delete(dev);
		if (r != -ENOMEM)
			api_reply_store_error(api, resp, r);
		return;
	}
	api_reply_json(resp, 200, &b, dev);
}
