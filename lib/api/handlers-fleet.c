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

static void add_progress(struct fgw_api *api, struct api_jw *w, const char *address)
{
	struct fgw_api_progress p = {0};

	if (!api->prov.progress || api->prov.progress(api->prov.user_data, address, &p) < 0)
		return;
	api_jw_open(w, "progress", '{');
	api_jw_int(w, "image", p.image);
	api_jw_int(w, "bytes", (int64_t) p.bytes);
	api_jw_int(w, "total", (int64_t) p.total);
	api_jw_num(w, "percent",
		   p.total ? floor(1000.0 * (double) p.bytes / (double) p.total) / 10.0 : NAN);
	api_jw_num(w, "rate_bps", p.rate_bps);
	api_jw_int(w, "eta_s", p.eta_s >= 0 ? p.eta_s : FGW_STORE_NULL);
	api_jw_close(w, '}');
}

static void add_job(struct fgw_api *api, struct api_jw *w, const char *address,
		    const struct fgw_store_job *j)
{
	if (j->id == FGW_STORE_NULL) {
		api_jw_null(w, "job");
		return;
	}
	api_jw_open(w, "job", '{');
	api_jw_int(w, "id", j->id);
	api_jw_str(w, "release", j->release_id);
	api_jw_str(w, "state", j->state);
	api_jw_int(w, "image", j->image);
	api_jw_int(w, "offset", j->offset);
	api_jw_int(w, "attempts", j->attempts);
	api_jw_int(w, "next_attempt_at", j->next_attempt_at);
	api_jw_str(w, "reason", j->reason);
	api_jw_bool(w, "canary", j->canary == 1);
	api_jw_str(w, "app_result", j->app_result);
	api_jw_str(w, "net_result", j->net_result);
	api_jw_int(w, "created_at", j->created_at);
	api_jw_int(w, "updated_at", j->updated_at);
	api_jw_int(w, "started_at", j->started_at);
	api_jw_int(w, "finished_at", j->finished_at);
	if (j->state && state_active(j->state))
		add_progress(api, w, address);
	api_jw_close(w, '}');
}

/* Opens the device's object and writes its fields; the caller may add more, then closes it. */
static void device_json(struct fgw_api *api, struct api_jw *w, const struct fgw_store_device *d)
{
	api_jw_open(w, NULL, '{');
	api_jw_str(w, "address", d->address);
	api_jw_str(w, "transport", d->transport);
	api_jw_str(w, "name", d->name);
	api_jw_int(w, "rssi", d->rssi);
	api_jw_int(w, "last_seen", d->last_seen);
	api_jw_str(w, "board", d->board);
	api_jw_str(w, "group", d->group);
	api_jw_str(w, "state", d->state);
	/* enrollment (never the passkey: it is not in the row) */
	api_jw_bool(w, "enrolled", d->enrolled);
	api_jw_str(w, "enrolled_board", d->enrolled_board);
	api_jw_str(w, "label", d->label);
	add_job(api, w, d->address, &d->job);
}

struct list_ctx {
	struct fgw_api *api;
	struct api_jw *w;
	unsigned limit;
	unsigned n;
	char *last; /* address of the last row shown, when a row follows it */
};

static int list_row(const struct fgw_store_device *d, void *user_data)
{
	struct list_ctx *c = user_data;

	/* One row past the page tells that there is a next page; it is not shown. */
	if (++c->n > c->limit)
		return 0;
	device_json(c->api, c->w, d);
	api_jw_close(c->w, '}');
	if (c->n < c->limit)
		return 0;
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
	struct api_jw w = {0};
	struct list_ctx c = {.api = api, .w = &w};
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

	api_jw_open(&w, NULL, '{');
	api_jw_open(&w, "devices", '[');
	r = fgw_store_devices_query(api->store, &f, list_row, &c);
	if (r < 0) {
		api_jw_done(&w);
		free(c.last);
		api_release_ref_done(&cur);
		if (r == -ENOMEM)
			return;
		api_reply_store_error(api, resp, r);
		return;
	}
	if (c.n > c.limit && api_cursor_encode(c.last, &next) < 0)
		w.failed = true;
	api_jw_close(&w, ']');
	api_jw_str(&w, "next_cursor", next);
	api_jw_str(&w, "release", release ? release : cur.id);
	api_jw_close(&w, '}');
	free(c.last);
	api_release_ref_done(&cur);
	api_jw_reply(&w, resp, 200);
}

/* ---- one device ---- */

struct device_ctx {
	struct fgw_api *api;
	struct api_jw *w;
};

static int device_detail(const struct fgw_store_device *d, void *user_data)
{
	struct device_ctx *c = user_data;

	device_json(c->api, c->w, d);
	api_jw_int(c->w, "bootloader_mode", d->bootloader_mode);
	api_jw_int(c->w, "created_at", d->created_at);
	return 0;
}

static int image_row(const struct fgw_store_device_image *img, void *user_data)
{
	struct api_jw *w = ((struct device_ctx *) user_data)->w;
	int64_t f = img->flags == FGW_STORE_NULL ? 0 : img->flags;

	api_jw_open(w, NULL, '{');
	api_jw_int(w, "image", img->image);
	api_jw_int(w, "slot", img->slot);
	api_jw_str(w, "version", img->version);
	api_jw_str(w, "hash", img->hash);
	api_jw_open(w, "flags", '{');
	api_jw_bool(w, "active", f & 1);
	api_jw_bool(w, "confirmed", f & 2);
	api_jw_bool(w, "pending", f & 4);
	api_jw_bool(w, "permanent", f & 8);
	api_jw_bool(w, "bootable", f & 16);
	api_jw_close(w, '}');
	api_jw_int(w, "read_at", img->read_at);
	api_jw_close(w, '}');
	return 0;
}

static int event_row(const struct fgw_store_event *e, void *user_data)
{
	api_jw_event(((struct device_ctx *) user_data)->w, e, false);
	return 0;
}

void api_handle_device(struct fgw_api *api, const char *address, struct api_response *resp)
{
	struct api_jw w = {0};
	struct device_ctx c = {.api = api, .w = &w};
	int r;

	r = fgw_store_device_find(api->store, address, NULL, device_detail, &c);
	if (r == -ENOENT) {
		api_error(resp, 404, "not_found", "no device '%s'", address);
		return;
	}
	if (r >= 0) {
		api_jw_open(&w, "images", '[');
		r = fgw_store_device_images_foreach(api->store, address, image_row, &c);
		api_jw_close(&w, ']');
	}
	if (r >= 0) {
		api_jw_open(&w, "events", '[');
		r = fgw_store_device_events_foreach(api->store, address, API_DEVICE_EVENTS,
						    event_row, &c);
		api_jw_close(&w, ']');
	}
	if (r < 0) {
		api_reply_read_error(api, &w, resp, r);
		return;
	}
	api_jw_close(&w, '}');
	api_jw_reply(&w, resp, 200);
}
