/*
 * GET /metrics: Prometheus text exposition 0.0.4. What SQLite knows is counted here; the
 * fleet appends its own counters through the provider's metrics callback.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "store.h"
#include "util.h"

/* A scrape is a few KiB; the cap only stops a runaway provider from eating memory. */
#define PROM_MAX_BYTES (8u * 1024 * 1024)

struct fgw_prom {
	char *buf;
	size_t len, cap;
	bool failed; /* out of memory or over the cap: the scrape answers 500 */
};

static void prom_append(struct fgw_prom *w, const char *s, size_t n)
{
	if (w->failed || !fgw_buf_grow(&w->buf, &w->cap, w->len + n + 1, PROM_MAX_BYTES)) {
		w->failed = true;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void prom_printf(struct fgw_prom *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void prom_printf(struct fgw_prom *w, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		w->failed = true;
		return;
	}
	if ((size_t) n < sizeof(small)) {
		prom_append(w, small, (size_t) n);
		return;
	}
	{
		_cleanup_free_ char *big = malloc((size_t) n + 1);
		if (!big) {
			w->failed = true;
			return;
		}
		va_start(ap, fmt);
		vsnprintf(big, (size_t) n + 1, fmt, ap);
		va_end(ap);
		prom_append(w, big, (size_t) n);
	}
}

/* HELP text escapes \ and newline; label values also escape ". */
static void prom_escaped(struct fgw_prom *w, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			prom_append(w, "\\\\", 2);
		else if (*s == '\n')
			prom_append(w, "\\n", 2);
		else if (quote && *s == '"')
			prom_append(w, "\\\"", 2);
		else
			prom_append(w, s, 1);
	}
}

FGW_EXPORT void fgw_prom_family(struct fgw_prom *w, const char *name, const char *type,
				const char *help)
{
	prom_printf(w, "# HELP %s ", name);
	prom_escaped(w, help, false);
	prom_printf(w, "\n# TYPE %s %s\n", name, type);
}

static void prom_value(struct fgw_prom *w, double v)
{
	if (isnan(v))
		prom_append(w, " NaN\n", 5);
	else if (isinf(v))
		prom_printf(w, " %sInf\n", v > 0 ? "+" : "-");
	else if (v == floor(v) && fabs(v) < 1e15)
		prom_printf(w, " %.0f\n", v);
	else
		prom_printf(w, " %.12g\n", v);
}

static void prom_labels(struct fgw_prom *w, const char *const *labels, const char *extra_name,
			const char *extra_value)
{
	bool first = true;

	if ((!labels || !labels[0]) && !extra_name)
		return;
	prom_append(w, "{", 1);
	for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
		prom_printf(w, "%s%s=\"", first ? "" : ",", labels[i]);
		prom_escaped(w, labels[i + 1], true);
		prom_append(w, "\"", 1);
		first = false;
	}
	if (extra_name) {
		prom_printf(w, "%s%s=\"", first ? "" : ",", extra_name);
		prom_escaped(w, extra_value, true);
		prom_append(w, "\"", 1);
	}
	prom_append(w, "}", 1);
}

FGW_EXPORT void fgw_prom_sample(struct fgw_prom *w, const char *name, const char *const *labels,
				double value)
{
	prom_append(w, name, strlen(name));
	prom_labels(w, labels, NULL, NULL);
	prom_value(w, value);
}

FGW_EXPORT void fgw_prom_histogram(struct fgw_prom *w, const char *name, const char *help,
				   const double *bounds, const uint64_t *counts, size_t n_bounds,
				   double sum)
{
	uint64_t cumulative = 0;
	char le[64];

	fgw_prom_family(w, name, "histogram", help);
	for (size_t i = 0; i <= n_bounds; i++) {
		cumulative += counts[i];
		if (i < n_bounds)
			snprintf(le, sizeof(le), "%.17g", bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		prom_printf(w, "%s_bucket", name);
		prom_labels(w, NULL, "le", le);
		prom_value(w, (double) cumulative);
	}
	prom_printf(w, "%s_sum", name);
	prom_value(w, sum);
	prom_printf(w, "%s_count", name);
	prom_value(w, (double) cumulative);
}

/* ---- the scrape ---- */

struct state_counts {
	int64_t n[32];
	int64_t canary[32];
};

static int state_row(const char *key, int64_t canary, int64_t count, void *user_data)
{
	struct state_counts *c = user_data;
	int i = 0;

	for (const char *const *st = fgw_store_device_states(); *st; st++, i++)
		if (strcmp(*st, key) == 0 && i < (int) ARRAY_SIZE(c->n)) {
			c->n[i] += count;
			if (canary == 1)
				c->canary[i] += count;
		}
	return 0;
}

/* Key "outcome/stage" (fgw_store_failure_stages): both parts come from fixed sets. */
static int stage_row(const char *key, int64_t canary, int64_t count, void *user_data)
{
	const char *slash = strchr(key, '/');
	char outcome[16];
	const char *labels[] = {"outcome", outcome, "stage", slash ? slash + 1 : "unknown", NULL};

	snprintf(outcome, sizeof(outcome), "%.*s", slash ? (int) (slash - key) : (int) strlen(key),
		 key);
	fgw_prom_sample(user_data, "fotagw_job_failures", labels, (double) count);
	return 0;
}

struct release_counts {
	int64_t pending, verified, rejected, superseded;
};

static int release_row(const char *key, int64_t canary, int64_t count, void *user_data)
{
	struct release_counts *c = user_data;

	if (strcmp(key, "pending") == 0)
		c->pending = count;
	else if (strcmp(key, "verified") == 0)
		c->verified = count;
	else if (strcmp(key, "rejected") == 0)
		c->rejected = count;
	else if (strcmp(key, "superseded") == 0)
		c->superseded = count;
	return 0;
}

struct current {
	char *id;
	char *version;
	double max_failure_rate; /* the release policy's; NaN when it sets none */
};

static int copy_current(const struct fgw_store_release *rel, void *user_data)
{
	struct current *c = user_data;
	cJSON *p = rel->policy_json ? cJSON_Parse(rel->policy_json) : NULL;
	cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "max_failure_rate");

	c->max_failure_rate = cJSON_IsNumber(v) ? v->valuedouble : NAN;
	cJSON_Delete(p);
	c->id = strdup(rel->id);
	c->version = strdup(rel->version ? rel->version : "");
	return c->id && c->version ? 0 : -ENOMEM;
}

/*
 * How long unfinished jobs have gone without a change (state or saved upload progress), the
 * longest per state: what "stuck" alerts look at. Terminal states never appear here.
 */
static const char *const unfinished_states[] = {"queued",    "connecting", "probing",
						"uploading", "marking",	   "resetting",
						"rebooting", "verifying",  "confirming"};

struct stalled {
	int64_t now;
	double max_s[ARRAY_SIZE(unfinished_states)];
};

static int stalled_row(const struct fgw_store_job_rec *job, void *user_data)
{
	struct stalled *st = user_data;

	for (size_t i = 0; i < ARRAY_SIZE(unfinished_states); i++)
		if (strcmp(job->state, unfinished_states[i]) == 0) {
			double age = (double) (st->now - job->updated_at) / 1000.0;
			st->max_s[i] = FGW_MAX(st->max_s[i], FGW_MAX(age, 0.0));
		}
	return 0;
}

static int stalled_metrics(struct fgw_api *api, const char *release_id, struct fgw_prom *w)
{
	struct stalled st = {.now = fgw_wall_ms()};
	int r = fgw_store_jobs_foreach(api->store, release_id, true, stalled_row, &st);

	if (r < 0)
		return r;
	fgw_prom_family(w, "fotagw_jobs_stalled_seconds", "gauge",
			"Longest time an unfinished job of the current release has been in this "
			"state without saved progress (0: no job in it).");
	for (size_t i = 0; i < ARRAY_SIZE(unfinished_states); i++) {
		const char *labels[] = {"state", unfinished_states[i], NULL};
		fgw_prom_sample(w, "fotagw_jobs_stalled_seconds", labels, st.max_s[i]);
	}
	return 0;
}

static int copy_halted(const struct fgw_store_rollout *ro, void *user_data)
{
	*(bool *) user_data = ro->halted;
	return 0;
}

static int manifest_row(const struct fgw_store_manifest_state *m, void *user_data)
{
	struct fgw_prom *w = user_data;

	fgw_prom_family(w, "fotagw_manifest_sequence", "gauge",
			"Highest manifest sequence accepted (rollback guard).");
	fgw_prom_sample(w, "fotagw_manifest_sequence", NULL, (double) m->sequence);
	if (m->last_poll_at != FGW_STORE_NULL) {
		fgw_prom_family(w, "fotagw_manifest_last_poll_timestamp_seconds", "gauge",
				"When the release server was last polled.");
		fgw_prom_sample(w, "fotagw_manifest_last_poll_timestamp_seconds", NULL,
				(double) m->last_poll_at / 1000.0);
	}
	if (m->last_result) {
		const char *labels[] = {"result", m->last_result, NULL};
		fgw_prom_family(w, "fotagw_manifest_last_result", "gauge",
				"Outcome of the last manifest poll (1 for the current one).");
		fgw_prom_sample(w, "fotagw_manifest_last_result", labels, 1);
	}
	return 0;
}

/* Every query runs before anything is written, so a store error leaves no half-written page. */
static int load_store_counts(struct fgw_api *api, struct current *cur, struct state_counts *sc,
			     struct release_counts *rc, bool *halted)
{
	int r;

	r = fgw_store_current_release(api->store, copy_current, cur);
	if (r == -ENOENT)
		r = 0;
	if (r >= 0)
		r = fgw_store_state_counts(api->store, cur->id, state_row, sc);
	if (r >= 0 && cur->id) {
		r = fgw_store_rollout_get(api->store, cur->id, copy_halted, halted);
		if (r == -ENOENT)
			r = 0;
	}
	if (r >= 0)
		r = fgw_store_release_counts(api->store, release_row, rc);
	return r;
}

static void device_state_metrics(struct fgw_prom *w, const struct state_counts *sc)
{
	int i;

	fgw_prom_family(w, "fotagw_devices", "gauge",
			"Devices per state of their job for the current release (idle: none; "
			"unenrolled: not enrolled, gets no job).");
	i = 0;
	for (const char *const *st = fgw_store_device_states(); *st; st++, i++) {
		const char *labels[] = {"state", *st, NULL};
		fgw_prom_sample(w, "fotagw_devices", labels, (double) sc->n[i]);
	}
	fgw_prom_family(w, "fotagw_canary_devices", "gauge",
			"Canary devices of the current release per job state.");
	i = 0;
	for (const char *const *st = fgw_store_device_states(); *st; st++, i++) {
		const char *labels[] = {"state", *st, NULL};
		if (strcmp(*st, "idle") != 0 && strcmp(*st, "unenrolled") != 0)
			fgw_prom_sample(w, "fotagw_canary_devices", labels, (double) sc->canary[i]);
	}
}

static void release_count_metrics(struct fgw_prom *w, const struct release_counts *rc)
{
	fgw_prom_family(w, "fotagw_releases", "gauge", "Releases known per state.");
	fgw_prom_sample(w, "fotagw_releases", (const char *const[]){"state", "pending", NULL},
			(double) rc->pending);
	fgw_prom_sample(w, "fotagw_releases", (const char *const[]){"state", "verified", NULL},
			(double) rc->verified);
	fgw_prom_sample(w, "fotagw_releases", (const char *const[]){"state", "rejected", NULL},
			(double) rc->rejected);
	fgw_prom_sample(w, "fotagw_releases", (const char *const[]){"state", "superseded", NULL},
			(double) rc->superseded);
}

static void failure_rate_metrics(struct fgw_prom *w, const struct current *cur,
				 const struct state_counts *sc)
{
	int64_t failed = 0, finished = 0;
	int i = 0;

	for (const char *const *st = fgw_store_device_states(); *st; st++, i++) {
		if (strcmp(*st, "failed") == 0 || strcmp(*st, "reverted") == 0)
			failed += sc->n[i];
		if (strcmp(*st, "failed") == 0 || strcmp(*st, "reverted") == 0 ||
		    strcmp(*st, "done") == 0)
			finished += sc->n[i];
	}
	fgw_prom_family(w, "fotagw_rollout_failure_rate", "gauge",
			"Failed or reverted jobs over finished jobs, current release.");
	fgw_prom_sample(w, "fotagw_rollout_failure_rate", NULL,
			finished ? (double) failed / (double) finished : 0);
	if (!isnan(cur->max_failure_rate)) {
		fgw_prom_family(w, "fotagw_rollout_max_failure_rate", "gauge",
				"The current release policy's max_failure_rate.");
		fgw_prom_sample(w, "fotagw_rollout_max_failure_rate", NULL, cur->max_failure_rate);
	}
}

static int current_release_metrics(struct fgw_api *api, struct fgw_prom *w,
				   const struct current *cur, const struct state_counts *sc,
				   bool halted)
{
	const char *labels[] = {"release", cur->id, "version", cur->version, NULL};
	int r;

	fgw_prom_family(w, "fotagw_current_release_info", "gauge", "The release being rolled out.");
	fgw_prom_sample(w, "fotagw_current_release_info", labels, 1);
	fgw_prom_family(w, "fotagw_rollout_halted", "gauge",
			"1 while the current rollout is paused or halted by policy.");
	fgw_prom_sample(w, "fotagw_rollout_halted", NULL, halted ? 1 : 0);
	failure_rate_metrics(w, cur, sc);
	r = stalled_metrics(api, cur->id, w);
	if (r < 0)
		return r;
	fgw_prom_family(w, "fotagw_job_failures", "gauge",
			"Failed or reverted jobs of the current release, by outcome and "
			"the stage they failed in.");
	return fgw_store_failure_stages(api->store, cur->id, stage_row, w);
}

static int store_metrics(struct fgw_api *api, struct fgw_prom *w)
{
	struct state_counts sc = {0};
	struct release_counts rc = {0};
	struct current cur = {.max_failure_rate = NAN};
	bool halted = false;
	int r;

	r = load_store_counts(api, &cur, &sc, &rc, &halted);
	if (r < 0)
		goto out;
	device_state_metrics(w, &sc);
	release_count_metrics(w, &rc);
	if (cur.id) {
		r = current_release_metrics(api, w, &cur, &sc, halted);
		if (r < 0)
			goto out;
	}
	r = fgw_store_manifest_state_get(api->store, manifest_row, w);
	if (r == -ENOENT)
		r = 0;
out:
	free(cur.id);
	free(cur.version);
	return r;
}

static void api_metrics(struct fgw_api *api, struct fgw_prom *w)
{
	static const char *const classes[] = {NULL, "1xx", "2xx", "3xx", "4xx", "5xx"};

	fgw_prom_family(w, "fotagw_api_requests_total", "counter",
			"REST requests answered, by status class.");
	for (size_t i = 1; i < ARRAY_SIZE(classes); i++) {
		const char *labels[] = {"code", classes[i], NULL};
		fgw_prom_sample(w, "fotagw_api_requests_total", labels,
				(double) api->stats.requests[i]);
	}
	fgw_prom_family(w, "fotagw_api_unauthorized_total", "counter",
			"Requests refused for a missing or wrong token.");
	fgw_prom_sample(w, "fotagw_api_unauthorized_total", NULL, (double) api->stats.unauthorized);
	fgw_prom_family(w, "fotagw_database_errors_total", "counter",
			"Database queries that failed while answering the API or a scrape.");
	fgw_prom_sample(w, "fotagw_database_errors_total", NULL,
			(double) api->stats.database_errors);
	fgw_prom_family(w, "fotagw_api_misdirected_total", "counter",
			"Requests refused with 421 because their Host header did not name this "
			"gateway (DNS rebinding)");
	fgw_prom_sample(w, "fotagw_api_misdirected_total", NULL, (double) api->stats.misdirected);
}

/* From the release part's status: what the store's manifest_state cannot say. */
static void manifest_metrics(struct fgw_api *api, struct fgw_prom *w)
{
	struct fgw_api_manifest m = {0};

	if (!api->prov.manifest || api->prov.manifest(api->prov.user_data, &m) < 0)
		return;
	fgw_prom_family(w, "fotagw_manifest_polls_total", "counter",
			"Manifest polls since start, by result.");
	for (size_t i = 0; i < m.n_results && i < ARRAY_SIZE(m.result); i++) {
		const char *labels[] = {"result", m.result[i], NULL};
		fgw_prom_sample(w, "fotagw_manifest_polls_total", labels, (double) m.polls[i]);
	}
	fgw_prom_family(w, "fotagw_manifest_expired", "gauge",
			"1 while the manifest in force has expired (judged after every poll).");
	fgw_prom_sample(w, "fotagw_manifest_expired", NULL,
			m.freshness && strcmp(m.freshness, "expired") == 0 ? 1 : 0);
	if (m.expires > 0) {
		fgw_prom_family(w, "fotagw_manifest_expires_timestamp_seconds", "gauge",
				"`expires` of the manifest in force.");
		fgw_prom_sample(w, "fotagw_manifest_expires_timestamp_seconds", NULL,
				(double) m.expires);
	}
}

/* The adapter as the Bluetooth part sees it; nothing when BLE is disabled or not reporting. */
static void adapter_metrics(struct fgw_prom *w, const char *state)
{
	if (!state || strcmp(state, "disabled") == 0)
		return;
	fgw_prom_family(w, "fotagw_ble_adapter_up", "gauge",
			"1 while the Bluetooth adapter is present and powered, else 0.");
	fgw_prom_sample(w, "fotagw_ble_adapter_up", NULL, strcmp(state, "on") == 0 ? 1 : 0);
}

void api_handle_metrics(struct fgw_api *api, struct api_response *resp)
{
	struct fgw_prom w = {0}, db = {0};
	struct fgw_api_health h = {.uptime_ms = -1};
	int r;

	if (api->prov.health && api->prov.health(api->prov.user_data, &h) >= 0) {
		if (h.version) {
			const char *labels[] = {"version", h.version, NULL};
			fgw_prom_family(&w, "fotagw_build_info", "gauge", "fotagwd version.");
			fgw_prom_sample(&w, "fotagw_build_info", labels, 1);
		}
		if (h.uptime_ms >= 0) {
			fgw_prom_family(&w, "fotagw_uptime_seconds", "gauge",
					"Seconds since fotagwd started.");
			fgw_prom_sample(&w, "fotagw_uptime_seconds", NULL,
					(double) h.uptime_ms / 1000.0);
		}
		adapter_metrics(&w, h.adapter_state);
	}
	manifest_metrics(api, &w);
	/*
	 * The database's series go to their own buffer: when a query fails, the scrape still
	 * answers with the daemon's series and fotagw_database_up 0, so an alert can say which
	 * part is broken instead of the whole target going down.
	 */
	r = store_metrics(api, &db);
	if (r == -ENOMEM || db.failed) {
		free(db.buf);
		free(w.buf);
		api_error(resp, 500, "internal", "metrics too large or out of memory");
		return;
	}
	if (r < 0) {
		api->stats.database_errors++;
		fgw_log_errno(LOG_WARNING, r, "api: metrics query failed (%s)",
			      fgw_store_errmsg(api->store));
	} else if (db.buf) {
		prom_append(&w, db.buf, db.len);
	}
	free(db.buf);
	fgw_prom_family(&w, "fotagw_database_up", "gauge",
			"1 if the database answered this scrape's queries, else 0.");
	fgw_prom_sample(&w, "fotagw_database_up", NULL, r < 0 ? 0 : 1);
	api_metrics(api, &w);
	if (api->prov.metrics)
		api->prov.metrics(api->prov.user_data, &w);
	if (w.failed || !w.buf) {
		free(w.buf);
		api_error(resp, 500, "internal", "metrics too large or out of memory");
		return;
	}
	*resp = (struct api_response){
	    .status = 200,
	    .body = w.buf,
	    .len = w.len,
	    .content_type = "text/plain; version=0.0.4; charset=utf-8",
	};
}
