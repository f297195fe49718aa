#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "bluez.h"
#include "ble-security.h"
#include "daemon.h"
#include "fleet.h"
#include "provider.h"
#include "release.h"
#include "util.h"

/*
 * "disabled" in the configuration, "unavailable" without a system bus connection (none yet,
 * or lost: retried), else what lib/bluez sees ("absent" without bluetoothd or an adapter).
 */
static const char *adapter_state(struct fgw_daemon *d)
{
	if (!d->cfg.ble_enabled)
		return "disabled";
	if (!d->bluez || fgw_bluez_bus_lost(d->bluez))
		return "unavailable";
	return fgw_bluez_adapter_state_to_string(fgw_bluez_adapter_state(d->bluez));
}

static int provider_health(void *user_data, struct fgw_api_health *ret)
{
	struct fgw_daemon *d = user_data;

	*ret = (struct fgw_api_health){
	    .version = FGW_VERSION,
	    .uptime_ms = (int64_t) (fgw_now_ms() - d->started_ms),
	    .adapter_state = adapter_state(d),
	};
	return 0;
}

static int provider_pause(void *user_data, const char *reason)
{
	struct fgw_daemon *d = user_data;

	return d->fleet ? fgw_fleet_pause(d->fleet, "operator", reason ? reason : "paused")
			: -ENOENT;
}

static int provider_resume(void *user_data)
{
	struct fgw_daemon *d = user_data;

	return d->fleet ? fgw_fleet_resume(d->fleet) : -ENOENT;
}

static int provider_enroll(void *user_data, const struct fgw_api_enrollment *e, size_t n)
{
	struct fgw_daemon *d = user_data;
	struct fgw_fleet_enrollment *fe;
	bool own_passkey = false;
	int r;

	if (!d->fleet)
		return -ENODEV;
	fe = calloc(n ? n : 1, sizeof(*fe));
	if (!fe)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		fe[i] = (struct fgw_fleet_enrollment){
		    .address = e[i].address,
		    .board = e[i].board,
		    .group = e[i].group,
		    .label = e[i].label,
		    .has_passkey = e[i].has_passkey,
		    .passkey = e[i].passkey,
		};
		own_passkey |= e[i].has_passkey;
	}
	r = fgw_fleet_enroll(d->fleet, fe, n);
	explicit_bzero(fe, n * sizeof(*fe));
	free(fe);
	if (r == 0 && own_passkey)
		fgw_ble_security_passkey_added(d);
	return r;
}

static int provider_forget(void *user_data, const char *address)
{
	struct fgw_daemon *d = user_data;

	return d->fleet ? fgw_fleet_forget(d->fleet, address) : -ENODEV;
}

static int provider_retry(void *user_data, const char *address)
{
	struct fgw_daemon *d = user_data;

	return d->fleet ? fgw_fleet_retry(d->fleet, address) : -ENOENT;
}

static int provider_progress(void *user_data, const char *address, struct fgw_api_progress *ret)
{
	struct fgw_daemon *d = user_data;
	struct fgw_fleet_progress p;
	int r;

	if (!d->fleet)
		return -ENOENT;
	r = fgw_fleet_progress_get(d->fleet, address, &p);
	if (r < 0)
		return r;
	*ret = (struct fgw_api_progress){
	    .image = p.image,
	    .bytes = p.offset,
	    .total = p.total,
	    .rate_bps = p.rate_bps,
	    .eta_s = p.rate_bps > 0 ? (int64_t) ((double) (p.total - p.offset) / p.rate_bps) : -1,
	};
	return 0;
}

static int provider_release_images(void *user_data, const char *release_id,
				   struct fgw_api_image ret[2])
{
	struct fgw_daemon *d = user_data;
	const struct fgw_fleet_release *rel = d->fleet ? fgw_fleet_release_get(d->fleet) : NULL;

	if (!rel || strcmp(rel->id, release_id) != 0)
		return -ENOENT;
	for (int i = 0; i < 2; i++) {
		ret[i] = (struct fgw_api_image){.present = rel->image[i].present,
						.size = rel->image[i].size};
		snprintf(ret[i].version, sizeof(ret[i].version), "%s", rel->image[i].version);
		fgw_hex_encode(rel->image[i].hash, sizeof(rel->image[i].hash), ret[i].hash);
	}
	return 0;
}

/*
 * Per adapter: what bluez knows (state, links, busy answers) beside what the fleet measures
 * (upload limit, aggregate goodput, refusals). The ceiling is configured, not measured:
 * BlueZ 5.66 does not expose a link's PHY, interval or data length.
 */
static size_t provider_adapters(void *user_data, struct fgw_api_adapter *ret, size_t max)
{
	struct fgw_daemon *d = user_data;
	struct fgw_bluez_adapter_info bi[FGW_API_MAX_ADAPTERS];
	struct fgw_fleet_radio_stats rs[FGW_FLEET_MAX_RADIOS];
	size_t n, nr = 0;

	if (!d->bluez)
		return 0;
	n = fgw_bluez_adapters(d->bluez, bi, ARRAY_SIZE(bi));
	n = FGW_MIN(n, ARRAY_SIZE(bi));
	if (d->fleet)
		nr = FGW_MIN(fgw_fleet_radios(d->fleet, rs, ARRAY_SIZE(rs)), ARRAY_SIZE(rs));
	for (size_t i = 0; i < n && i < max; i++) {
		struct fgw_api_adapter *a = &ret[i];

		*a = (struct fgw_api_adapter){
		    .state = fgw_bluez_adapter_state_to_string(bi[i].state),
		    .links = bi[i].links,
		    .ready = bi[i].ready,
		    .busy = bi[i].busy,
		    .upload_limit = (unsigned) d->cfg.ble_max_connections,
		    .ceiling_bps = d->cfg.ble_ceiling_bytes_per_s,
		};
		_Static_assert(sizeof(a->name) == sizeof(bi[i].name), "adapter names");
		memcpy(a->name, bi[i].name, sizeof(a->name));
		a->name[sizeof(a->name) - 1] = '\0';
		for (size_t j = 0; j < nr; j++) {
			if (strcmp(rs[j].name, bi[i].name) != 0)
				continue;
			a->upload_limit = rs[j].limit;
			a->goodput_bps = rs[j].goodput_bps;
			a->refused = rs[j].refused;
		}
	}
	return n;
}

static void adapter_metrics(struct fgw_daemon *d, struct fgw_prom *w)
{
	static const struct {
		const char *name, *type, *help;
	} fam[] = {
	    {"fotagw_ble_adapter_links", "gauge", "Links connecting or connected, per adapter"},
	    {"fotagw_ble_adapter_upload_limit", "gauge",
	     "Concurrent uploads the scheduler allows on the adapter now"},
	    {"fotagw_ble_adapter_goodput_bytes_per_second", "gauge",
	     "Aggregate image bytes/s the adapter's devices acknowledged (sliding window)"},
	    {"fotagw_ble_adapter_ceiling_bytes_per_second", "gauge",
	     "Configured estimate of the adapter's radio ceiling ([ble] ceiling_bytes_per_s)"},
	    {"fotagw_ble_adapter_ceiling_share", "gauge", "Goodput / the configured ceiling"},
	    {"fotagw_ble_adapter_connect_busy_total", "counter",
	     "Connect() answered busy (one LE connection attempt at a time)"},
	    {"fotagw_ble_adapter_links_refused_total", "counter",
	     "Links the adapter's controller refused while others were up"},
	};
	struct fgw_api_adapter a[FGW_API_MAX_ADAPTERS];
	size_t n = FGW_MIN(provider_adapters(d, a, ARRAY_SIZE(a)), ARRAY_SIZE(a));

	for (size_t f = 0; f < ARRAY_SIZE(fam); f++) {
		fgw_prom_family(w, fam[f].name, fam[f].type, fam[f].help);
		for (size_t i = 0; i < n; i++) {
			const char *labels[] = {"adapter", a[i].name, NULL};
			double v[] = {a[i].links,
				      a[i].upload_limit,
				      a[i].goodput_bps,
				      a[i].ceiling_bps,
				      a[i].ceiling_bps > 0 ? a[i].goodput_bps / a[i].ceiling_bps
							   : 0,
				      (double) a[i].busy,
				      (double) a[i].refused};
			fgw_prom_sample(w, fam[f].name, labels, v[f]);
		}
	}
}

static void provider_metrics(void *user_data, struct fgw_prom *w)
{
	struct fgw_daemon *d = user_data;
	struct fgw_fleet_stats st;

	if (!d->fleet)
		return;
	fgw_fleet_get_stats(d->fleet, &st);
	fgw_prom_family(w, "fotagw_upload_bytes_total", "counter",
			"Image bytes the devices acknowledged, all jobs since start");
	fgw_prom_sample(w, "fotagw_upload_bytes_total", NULL, (double) st.bytes_uploaded);
	fgw_prom_family(w, "fotagw_upload_goodput_bytes_per_second", "gauge",
			"Acknowledged image bytes per second of upload time, since start");
	fgw_prom_sample(w, "fotagw_upload_goodput_bytes_per_second", NULL,
			st.upload_ms ? (double) st.bytes_uploaded * 1000.0 / (double) st.upload_ms
				     : 0);
	fgw_prom_histogram(w, "fotagw_job_duration_seconds",
			   "Time from job creation to its end (done, skipped, failed, reverted)",
			   fgw_fleet_duration_bounds, st.duration_buckets,
			   ARRAY_SIZE(fgw_fleet_duration_bounds), st.duration_sum_s);
	fgw_prom_family(w, "fotagw_job_failures_total", "counter",
			"Jobs that failed or reverted since start, by kind");
	for (size_t i = 0; i < ARRAY_SIZE(st.failures); i++) {
		const char *labels[] = {"reason", fgw_fleet_failure_kinds[i], NULL};
		fgw_prom_sample(w, "fotagw_job_failures_total", labels, (double) st.failures[i]);
	}
	fgw_prom_family(w, "fotagw_ble_connections_in_use", "gauge",
			"Devices the gateway is connected to now");
	fgw_prom_sample(w, "fotagw_ble_connections_in_use", NULL, (double) st.connections);
	fgw_prom_family(w, "fotagw_jobs_active", "gauge",
			"Jobs between connecting and confirming now");
	fgw_prom_sample(w, "fotagw_jobs_active", NULL, (double) st.active);
	adapter_metrics(d, w);
}

static int provider_manifest(void *user_data, struct fgw_api_manifest *ret)
{
	struct fgw_daemon *d = user_data;
	struct fgw_release_status st;

	if (!d->rsrc)
		return -ENOENT;
	fgw_release_source_get_status(d->rsrc, &st);
	*ret = (struct fgw_api_manifest){
	    .freshness = fgw_manifest_freshness_to_string(st.freshness),
	    .expires = st.expires,
	};
	for (int i = 0; i < _FGW_POLL_RESULT_MAX && i < (int) ARRAY_SIZE(ret->result); i++) {
		ret->result[i] = fgw_poll_result_to_string((enum fgw_poll_result) i);
		ret->polls[i] = st.polls[i];
		ret->n_results++;
	}
	return 0;
}

int fgw_daemon_api_start(struct fgw_daemon *d)
{
	const struct fgw_api_provider prov = {
	    .user_data = d,
	    .health = provider_health,
	    .adapters = provider_adapters,
	    .pause = provider_pause,
	    .resume = provider_resume,
	    .retry = provider_retry,
	    .enroll = provider_enroll,
	    .forget = provider_forget,
	    .progress = provider_progress,
	    .release_images = provider_release_images,
	    .metrics = provider_metrics,
	    .manifest = provider_manifest,
	};
	struct fgw_api_options o = {
	    .listen = d->cfg.api_listen,
	    .port = (uint16_t) d->cfg.api_port,
	    .max_connections = (unsigned) d->cfg.api_max_connections,
	    .connection_timeout_s = (unsigned) d->cfg.api_timeout_s,
	    .allowed_hosts = d->cfg.api_allowed_hosts,
	};
	_cleanup_free_ char *token = NULL;
	int r;

	if (!d->cfg.api_enabled)
		return 0;
	if (d->cfg.api_token_file && *d->cfg.api_token_file) {
		r = fgw_token_read(d->cfg.api_token_file, &token);
		if (r == -EPERM)
			return fgw_log_errno(
			    LOG_ERR, r,
			    "API token file '%s' can be read by others: chmod o-rwx "
			    "it, or use a systemd credential",
			    d->cfg.api_token_file);
		if (r == -EINVAL)
			return fgw_log_errno(LOG_ERR, r,
					     "API token file '%s' must hold 16 to 4096 visible "
					     "ASCII characters",
					     d->cfg.api_token_file);
		if (r < 0)
			return fgw_log_errno(LOG_ERR, r, "Failed to read API token file '%s'",
					     d->cfg.api_token_file);
		o.token = token;
	} else {
		fgw_warning("api: no token_file configured, every POST will be refused");
	}
	r = fgw_api_new(d->loop, d->store, &o, &prov, &d->api);
	if (token)
		explicit_bzero(token, strlen(token));
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to start the REST API on '%s' port %d",
				     d->cfg.api_listen, d->cfg.api_port);
	fgw_notice("event: api-listening, address: %s, port: %u", d->cfg.api_listen,
		   (unsigned) fgw_api_port(d->api));
	return 0;
}
