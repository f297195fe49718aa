/*
 * GET /: the read-only status page. The server renders every table from the same JSON the
 * /v1 endpoints answer (so the page works with JavaScript off and shows exactly what the API
 * says); /ui/status.js then refreshes the tables by polling those endpoints. Both files it
 * loads are compiled in, and a strict Content-Security-Policy keeps the page from loading or
 * running anything else.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "util.h"

/* No inline script or style at all: only the two files below, and fetch() to this origin. */
#define PAGE_CSP                                                                                   \
	"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "            \
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#define PAGE_DEVICES "1000" /* rows rendered; the API's largest page */
#define PAGE_EVENTS "20"

/* The JSON views the page is made of; a NULL member is shown as unavailable. */
struct page_model {
	cJSON *health, *rollout, *devices, *releases, *events;
};

struct fixed_args {
	const char *limit;
};

static const char *fixed_arg(void *ctx, const char *key)
{
	const struct fixed_args *a = ctx;

	return strcmp(key, "limit") == 0 ? a->limit : NULL;
}

/* The body of @resp as JSON if it is a usable answer (the health view also when degraded). */
static cJSON *take_json(struct api_response *resp, bool degraded_ok)
{
	cJSON *v = NULL;

	if (resp->body && (resp->status == 200 || (degraded_ok && resp->status == 503)))
		v = cJSON_ParseWithLength(resp->body, resp->len);
	api_response_done(resp);
	return v;
}

static void model_load(struct fgw_api *api, struct page_model *m)
{
	struct fixed_args devices = {PAGE_DEVICES}, events = {PAGE_EVENTS}, none = {NULL};
	struct api_request req = {.method = "GET", .path = "/", .arg = fixed_arg};
	struct api_response resp = {0};

	req.arg_ctx = &none;
	api_handle_health(api, &req, &resp);
	m->health = take_json(&resp, true);
	api_handle_rollout(api, &resp);
	m->rollout = take_json(&resp, false);
	req.arg_ctx = &devices;
	api_handle_devices(api, &req, &resp);
	m->devices = take_json(&resp, false);
	api_handle_releases(api, &resp);
	m->releases = take_json(&resp, false);
	req.arg_ctx = &events;
	api_handle_events(api, &req, &resp);
	m->events = take_json(&resp, false);
}

static void model_free(struct page_model *m)
{
	cJSON_Delete(m->health);
	cJSON_Delete(m->rollout);
	cJSON_Delete(m->devices);
	cJSON_Delete(m->releases);
	cJSON_Delete(m->events);
}

/* ---- values, formatted as status.js formats them ---- */

static const char DASH[] = "\xe2\x80\x94"; /* U+2014 */

static const char *get_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool get_num(const cJSON *o, const char *key, double *ret)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(v))
		return false;
	*ret = v->valuedouble;
	return true;
}

static void text_or_dash(struct api_html *h, const char *s)
{
	api_html_text(h, s && *s ? s : DASH);
}

static void put_time(struct api_html *h, const cJSON *o, const char *key)
{
	double ms;
	time_t t;
	struct tm tm;
	char buf[32];

	if (!get_num(o, key, &ms) || !gmtime_r((t = (time_t) (ms / 1000.0), &t), &tm)) {
		api_html_raw(h, DASH);
		return;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
	api_html_raw(h, buf);
}

static void put_duration(struct api_html *h, double s)
{
	long v = lround(s);

	if (v < 60)
		api_html_printf(h, "%lds", v);
	else if (v < 3600)
		api_html_printf(h, "%ldm %02lds", v / 60, v % 60);
	else
		api_html_printf(h, "%ldh %02ldm", v / 3600, (v % 3600) / 60);
}

static void put_percent(struct api_html *h, const cJSON *o, const char *key)
{
	double v;

	if (get_num(o, key, &v))
		api_html_printf(h, "%.1f %%", v * 100.0);
	else
		api_html_raw(h, DASH);
}

static void unavailable(struct api_html *h, const char *what)
{
	api_html_printf(
	    h, "<p class=\"error\">The %s could not be read (see the gateway's log).</p>\n", what);
}

/* ---- sections ---- */

static void put_summary(struct api_html *h, const struct page_model *m)
{
	const cJSON *ro = m->rollout, *rel = cJSON_GetObjectItemCaseSensitive(ro, "release");
	const cJSON *can = cJSON_GetObjectItemCaseSensitive(ro, "canary");
	double v, up;

	api_html_raw(h, "<dl class=\"summary\">\n<dt>Release</dt><dd id=\"s-release\">");
	if (cJSON_IsObject(rel)) {
		text_or_dash(h, get_str(rel, "id"));
		api_html_raw(h, " (version ");
		text_or_dash(h, get_str(rel, "version"));
		api_html_raw(h, ")");
	} else {
		api_html_raw(h, ro ? "none yet" : DASH);
	}
	api_html_raw(h, "</dd>\n<dt>Rollout</dt><dd id=\"s-rollout\">");
	if (!ro)
		api_html_raw(h, DASH);
	else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ro, "halted"))) {
		api_html_raw(h, "<strong>halted</strong> by ");
		text_or_dash(h, get_str(ro, "halted_by"));
		api_html_raw(h, ": ");
		text_or_dash(h, get_str(ro, "halted_reason"));
	} else
		api_html_raw(h, "running");
	api_html_raw(h, "</dd>\n<dt>Devices</dt><dd id=\"s-devices\">");
	if (get_num(ro, "total_devices", &v) && get_num(ro, "in_progress", &up))
		api_html_printf(h, "%.0f, %.0f in progress", v, up);
	else
		api_html_raw(h, DASH);
	api_html_raw(h, "</dd>\n<dt>Failure rate</dt><dd id=\"s-failure\">");
	put_percent(h, ro, "failure_rate");
	api_html_raw(h, " (policy: at most ");
	put_percent(h, ro, "max_failure_rate");
	api_html_raw(h, ")</dd>\n<dt>Canary</dt><dd id=\"s-canary\">");
	text_or_dash(h, get_str(can, "status"));
	if (get_num(can, "total", &v) && v > 0) {
		double d = 0, f = 0;
		get_num(can, "done", &d);
		get_num(can, "failed", &f);
		api_html_printf(h, " (%.0f of %.0f done, %.0f failed)", d, v, f);
	}
	api_html_raw(h, "</dd>\n<dt>Gateway</dt><dd id=\"s-gateway\">");
	if (m->health) {
		const cJSON *db = cJSON_GetObjectItemCaseSensitive(m->health, "database");
		api_html_raw(h, "fotagwd ");
		text_or_dash(h, get_str(m->health, "version"));
		if (get_num(m->health, "uptime_s", &up)) {
			api_html_raw(h, ", up ");
			put_duration(h, up);
		}
		api_html_raw(h, ", Bluetooth adapter ");
		text_or_dash(h, get_str(m->health, "adapter_state"));
		api_html_raw(h, ", database ");
		text_or_dash(h, get_str(db, "state"));
	} else {
		api_html_raw(h, DASH);
	}
	api_html_raw(h, "</dd>\n</dl>\n");
}

static void put_counts(struct api_html *h, const cJSON *rollout)
{
	const cJSON *counts = cJSON_GetObjectItemCaseSensitive(rollout, "counts"), *c;

	if (!cJSON_IsObject(counts)) {
		unavailable(h, "rollout");
		return;
	}
	api_html_raw(h,
		     "<div class=\"scroll\" tabindex=\"0\" role=\"region\" "
		     "aria-label=\"Devices per state\">\n<table id=\"counts\"><caption>Devices per "
		     "state</caption>\n<thead><tr>");
	cJSON_ArrayForEach(c, counts)
	{
		api_html_raw(h, "<th scope=\"col\">");
		api_html_text(h, c->string);
		api_html_raw(h, "</th>");
	}
	api_html_raw(h, "</tr></thead>\n<tbody><tr>");
	cJSON_ArrayForEach(c, counts) api_html_printf(h, "<td>%.0f</td>", c->valuedouble);
	api_html_raw(h, "</tr></tbody></table>\n</div>\n");
}

static void put_progress(struct api_html *h, const cJSON *job, const char *state)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
	double pct, image = 0;

	if (get_num(p, "percent", &pct)) {
		get_num(p, "image", &image);
		api_html_printf(h,
				"<progress max=\"100\" value=\"%.1f\">%.1f %%</progress> "
				"<span>%.1f %% %s</span>",
				pct, pct, pct, image == 1 ? "net core" : "app core");
	} else if (state && strcmp(state, "done") == 0) {
		api_html_raw(
		    h, "<progress max=\"100\" value=\"100\">100 %</progress> <span>100 %</span>");
	} else {
		api_html_raw(h, DASH);
	}
}

static void put_device(struct api_html *h, const cJSON *d, const char *adapter)
{
	const cJSON *job = cJSON_GetObjectItemCaseSensitive(d, "job");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
	const char *state = get_str(d, "state"), *transport = get_str(d, "transport");
	double v;

	api_html_raw(h, "<tr><th scope=\"row\">");
	text_or_dash(h, get_str(d, "name"));
	api_html_raw(h, "</th><td class=\"mono\">");
	text_or_dash(h, get_str(d, "address"));
	api_html_raw(h, "</td><td><span class=\"state\" data-state=\"");
	api_html_text(h, state ? state : "");
	api_html_raw(h, "\">");
	text_or_dash(h, state);
	api_html_raw(h, "</span></td><td>");
	put_progress(h, job, state);
	api_html_raw(h, "</td><td class=\"num\">");
	if (get_num(p, "rate_bps", &v))
		api_html_printf(h, "%.1f", v / 1024.0);
	else
		api_html_raw(h, DASH);
	api_html_raw(h, "</td><td class=\"num\">");
	if (get_num(p, "eta_s", &v))
		put_duration(h, v);
	else
		api_html_raw(h, DASH);
	api_html_raw(h, "</td><td>");
	text_or_dash(h, get_str(job, "reason"));
	api_html_raw(h, "</td><td class=\"num\">");
	if (get_num(d, "rssi", &v))
		api_html_printf(h, "%.0f dBm", v);
	else
		api_html_raw(h, DASH);
	api_html_raw(h, "</td><td>");
	/* The gateway has one adapter; a BLE device is reached through it, a UDP one is not. */
	if (transport && strcmp(transport, "ble") == 0) {
		api_html_raw(h, "ble: ");
		text_or_dash(h, adapter);
	} else {
		text_or_dash(h, transport);
	}
	api_html_raw(h, "</td></tr>\n");
}

static void put_devices(struct api_html *h, const struct page_model *m)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(m->devices, "devices"), *d;
	const char *adapter = get_str(m->health, "adapter_state");

	if (!cJSON_IsArray(arr)) {
		unavailable(h, "device list");
		return;
	}
	api_html_raw(h, "<div class=\"scroll\" tabindex=\"0\" role=\"region\" "
			"aria-labelledby=\"h-devices\">\n<table id=\"devices\">\n<thead><tr>"
			"<th scope=\"col\">Device</th><th scope=\"col\">Address</th>"
			"<th scope=\"col\">State</th><th scope=\"col\">Progress</th>"
			"<th scope=\"col\">KiB/s</th><th scope=\"col\">ETA</th>"
			"<th scope=\"col\">Reason</th><th scope=\"col\">Link</th>"
			"<th scope=\"col\">Adapter</th></tr></thead>\n<tbody>\n");
	cJSON_ArrayForEach(d, arr) put_device(h, d, adapter);
	api_html_raw(h, "</tbody></table>\n</div>\n");
	if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m->devices, "next_cursor")))
		api_html_raw(h, "<p>Only the first " PAGE_DEVICES
				" devices are shown; the API lists them all.</p>\n");
}

/* "app core 2.0.0, 240.0 KiB, 1a2b3c4d…" per image; a dash when the fleet does not say. */
static void put_images(struct api_html *h, const cJSON *images)
{
	const cJSON *img;
	bool any = false;

	cJSON_ArrayForEach(img, images)
	{
		const char *hash = get_str(img, "hash");
		char shortened[17] = "";
		double size;

		api_html_raw(h, any ? "<br>" : "");
		api_html_text(h, get_str(img, "core") ? get_str(img, "core") : "?");
		api_html_raw(h, " core ");
		text_or_dash(h, get_str(img, "version"));
		if (get_num(img, "size", &size))
			api_html_printf(h, ", %.1f KiB", size / 1024.0);
		snprintf(shortened, sizeof(shortened), "%s", hash ? hash : "");
		api_html_raw(h, ", <span class=\"mono\">");
		api_html_text(h, shortened);
		api_html_raw(h, "</span>");
		any = true;
	}
	if (!any)
		api_html_raw(h, DASH);
}

static void put_release(struct api_html *h, const cJSON *r)
{
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "bundle");
	const cJSON *pol = cJSON_GetObjectItemCaseSensitive(r, "policy");
	const char *sha = get_str(b, "sha256");
	double v;

	api_html_raw(h, "<tr><th scope=\"row\">");
	text_or_dash(h, get_str(r, "id"));
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "current")))
		api_html_raw(h, " <strong>(current)</strong>");
	api_html_raw(h, "</th><td>");
	text_or_dash(h, get_str(r, "version"));
	api_html_raw(h, "</td><td class=\"num\">");
	if (get_num(r, "sequence", &v))
		api_html_printf(h, "%.0f", v);
	api_html_raw(h, "</td><td>");
	text_or_dash(h, get_str(r, "state"));
	api_html_raw(h, "</td><td>");
	text_or_dash(h, get_str(r, "board"));
	api_html_raw(h, "</td><td>");
	if (get_num(b, "size", &v))
		api_html_printf(h, "%.1f KiB, ", v / 1024.0);
	api_html_raw(h, "sha256 <span class=\"mono\">");
	if (sha) {
		char shortened[17];
		snprintf(shortened, sizeof(shortened), "%s", sha);
		api_html_text(h, shortened);
	}
	api_html_raw(h, "</span></td><td>");
	if (cJSON_IsObject(pol)) {
		api_html_text(h, get_str(pol, "mode") ? get_str(pol, "mode") : "confirm");
		if (get_num(pol, "canary_percent", &v))
			api_html_printf(h, ", canary %.0f %%", v);
		if (get_num(pol, "max_failure_rate", &v))
			api_html_printf(h, ", max failure rate %.1f %%", v * 100.0);
		if (get_num(pol, "max_concurrent", &v))
			api_html_printf(h, ", %.0f at a time", v);
	} else {
		api_html_raw(h, DASH);
	}
	api_html_raw(h, "</td><td>");
	put_images(h, cJSON_GetObjectItemCaseSensitive(r, "images"));
	api_html_raw(h, "</td><td>");
	put_time(h, r, "verified_at");
	api_html_raw(h, "</td></tr>\n");
}

static void put_releases(struct api_html *h, const cJSON *releases)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(releases, "releases"), *r;

	if (!cJSON_IsArray(arr)) {
		unavailable(h, "release list");
		return;
	}
	api_html_raw(h, "<table id=\"releases\">\n<thead><tr><th scope=\"col\">Release</th>"
			"<th scope=\"col\">Version</th><th scope=\"col\">Sequence</th>"
			"<th scope=\"col\">State</th><th scope=\"col\">Board</th>"
			"<th scope=\"col\">Bundle</th><th scope=\"col\">Policy</th>"
			"<th scope=\"col\">Images</th>"
			"<th scope=\"col\">Verified</th></tr></thead>\n<tbody>\n");
	cJSON_ArrayForEach(r, arr) put_release(h, r);
	api_html_raw(h, "</tbody></table>\n");
}

static void put_events(struct api_html *h, const cJSON *events)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(events, "events"), *e;

	if (!cJSON_IsArray(arr)) {
		unavailable(h, "event list");
		return;
	}
	api_html_raw(h, "<table id=\"events\">\n<thead><tr><th scope=\"col\">Time (UTC)</th>"
			"<th scope=\"col\">Device</th><th scope=\"col\">Event</th>"
			"<th scope=\"col\">Change</th><th scope=\"col\">Detail</th></tr></thead>\n"
			"<tbody>\n");
	cJSON_ArrayForEach(e, arr)
	{
		const char *from = get_str(e, "from"), *to = get_str(e, "to");

		api_html_raw(h, "<tr><td class=\"mono\">");
		put_time(h, e, "at");
		api_html_raw(h, "</td><td class=\"mono\">");
		text_or_dash(h, get_str(e, "address"));
		api_html_raw(h, "</td><td>");
		text_or_dash(h, get_str(e, "kind"));
		api_html_raw(h, "</td><td>");
		if (from || to) {
			text_or_dash(h, from);
			api_html_raw(h, " \xe2\x86\x92 "); /* U+2192 */
			text_or_dash(h, to);
		} else {
			api_html_raw(h, DASH);
		}
		api_html_raw(h, "</td><td>");
		text_or_dash(h, get_str(e, "detail"));
		api_html_raw(h, "</td></tr>\n");
	}
	api_html_raw(h, "</tbody></table>\n");
}

static void render(struct api_html *h, const struct page_model *m)
{
	api_html_raw(h,
		     "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
		     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		     "<title>fotagw rollout</title>\n"
		     "<link rel=\"stylesheet\" href=\"/ui/status.css\">\n"
		     "<link rel=\"icon\" href=\"/ui/icon.svg\" type=\"image/svg+xml\">\n"
		     "<script src=\"/ui/status.js\" defer></script>\n</head>\n<body>\n"
		     "<header><h1>fotagw rollout</h1>\n<p id=\"live\" role=\"status\">Static view "
		     "from the time the page was loaded; reload for fresh data.</p></header>\n"
		     "<main>\n<section aria-labelledby=\"h-rollout\"><h2 id=\"h-rollout\">Rollout"
		     "</h2>\n");
	put_summary(h, m);
	put_counts(h, m->rollout);
	api_html_raw(h, "</section>\n<section aria-labelledby=\"h-devices\"><h2 id=\"h-devices\">"
			"Devices</h2>\n");
	put_devices(h, m);
	api_html_raw(h, "</section>\n<section aria-labelledby=\"h-releases\"><h2 "
			"id=\"h-releases\">Releases</h2>\n");
	put_releases(h, m->releases);
	api_html_raw(h, "</section>\n<section aria-labelledby=\"h-events\"><h2 id=\"h-events\">"
			"Recent events</h2>\n");
	put_events(h, m->events);
	api_html_raw(h, "</section>\n</main>\n<footer><p>Read-only view of the gateway's "
			"<a href=\"/v1/rollout\">REST API</a> and <a href=\"/metrics\">metrics</a>."
			"</p></footer>\n</body>\n</html>\n");
}

void api_handle_page(struct fgw_api *api, struct api_response *resp)
{
	struct page_model m = {0};
	struct api_html h = {0};

	model_load(api, &m);
	render(&h, &m);
	model_free(&m);
	if (h.failed || !h.buf) {
		free(h.buf);
		return; /* the router answers 500 for a missing body */
	}
	*resp = (struct api_response){
	    .status = 200,
	    .body = h.buf,
	    .len = h.len,
	    .content_type = "text/html; charset=utf-8",
	    .csp = PAGE_CSP,
	};
}

void api_handle_page_file(enum api_route route, struct api_response *resp)
{
	static const struct {
		enum api_route route;
		const unsigned char *data;
		const size_t *len;
		const char *type;
	} files[] = {
	    {API_ROUTE_PAGE_JS, fgw_page_js, &fgw_page_js_len, "text/javascript; charset=utf-8"},
	    {API_ROUTE_PAGE_CSS, fgw_page_css, &fgw_page_css_len, "text/css; charset=utf-8"},
	    {API_ROUTE_PAGE_ICON, fgw_page_icon, &fgw_page_icon_len, "image/svg+xml"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char *body;

		if (files[i].route != route)
			continue;
		body = malloc(*files[i].len + 1);
		if (!body)
			return;
		memcpy(body, files[i].data, *files[i].len);
		body[*files[i].len] = '\0';
		*resp = (struct api_response){
		    .status = 200,
		    .body = body,
		    .len = *files[i].len,
		    .content_type = files[i].type,
		    .csp = PAGE_CSP,
		};
		return;
	}
}
