#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ble-security.h"
#include "bluez.h"
#include "daemon.h"
#include "fleet-glue.h"
#include "fleet.h"
#include "release.h"
#include "transport-ble.h"
#include "transport.h"
#include "util.h"

/* Back-off of the system bus connection attempts (no bus at start, or lost). */
#define BLE_RETRY_MIN_MS 1000u
#define BLE_RETRY_MAX_MS 30000u

/* "udp:HOST:PORT" (HOST may be [v6]) → host and port. */
static int parse_udp_address(const char *address, char *host, size_t size, uint16_t *port)
{
	const char *hp = address + 4, *colon = strrchr(hp, ':');
	int64_t p;

	if (strncmp(address, "udp:", 4) != 0 || !colon || colon == hp)
		return -EINVAL;
	if (fgw_parse_int64(colon + 1, 1, 65535, &p) < 0)
		return -EINVAL;
	if (*hp == '[' && colon[-1] == ']')
		snprintf(host, size, "%.*s", (int) (colon - hp - 2), hp + 1);
	else
		snprintf(host, size, "%.*s", (int) (colon - hp), hp);
	*port = (uint16_t) p;
	return 0;
}

static int transport_new(void *user_data, const char *address, struct fgw_transport **ret)
{
	struct fgw_daemon *d = user_data;
	char host[256];
	uint16_t port;

	if (strncmp(address, "udp:", 4) == 0) {
		if (parse_udp_address(address, host, sizeof(host), &port) < 0)
			return -EINVAL;
		return fgw_transport_udp_new(d->loop, host, port, ret);
	}
	int r;

	if (!d->bluez)
		return -ENODEV; /* BLE is disabled in the configuration */
	r = fgw_transport_ble_new(d->bluez, address, ret);
	if (r == 0)
		fgw_ble_security_apply(d, address, *ret);
	return r;
}

static int security_failed(void *user_data, const char *address, struct fgw_transport *t, int err,
			   char *why, size_t size)
{
	return fgw_ble_security_failed(user_data, address, t, err, why, size);
}

/* A fleet device: it lists the SMP service, or its name starts with [ble] name_prefix. */
static bool ble_member(struct fgw_daemon *d, const struct fgw_bluez_device_info *info)
{
	const char *prefix = d->cfg.ble_name_prefix;

	return info->smp_service || (prefix && *prefix && info->name &&
				     strncmp(info->name, prefix, strlen(prefix)) == 0);
}

static void on_ble_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
			  const struct fgw_bluez_device_info *info, void *user_data)
{
	struct fgw_daemon *d = user_data;
	int rssi = info->rssi;

	if (!d->fleet)
		return;
	if (ev == FGW_BLUEZ_DEVICE_ADDRESS_CHANGED) {
		fgw_fleet_device_identity(d->fleet, info->old_addr, info->addr);
		return;
	}
	if (ev == FGW_BLUEZ_DEVICE_LOST) {
		/* Out of range: its job waits for the next sighting. */
		fgw_fleet_device_lost(d->fleet, info->addr);
		return;
	}
	if (!ble_member(d, info))
		return;
	fgw_fleet_device_seen(d->fleet, info->addr, "ble", info->name,
			      info->has_rssi ? &rssi : NULL);
	/* the adapter that hears it best: uploads are paced per adapter */
	fgw_fleet_device_radio(d->fleet, info->addr, info->adapter);
}

/*
 * After a reload of ble.name_prefix: a device that no longer matches is out of the fleet at
 * once (no new job starts for it; one under way finishes only if the device is found again
 * as a member), one that matches now joins without waiting for its next advertisement.
 * A device once connected lists the SMP service in UUIDs (bluetoothd adds the services it
 * resolved) and stays a member by that rule.
 */
static void on_reload_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
			     const struct fgw_bluez_device_info *info, void *user_data)
{
	struct fgw_daemon *d = user_data;

	if (ble_member(d, info))
		on_ble_device(b, ev, info, d);
	else
		fgw_fleet_device_lost(d->fleet, info->addr);
}

static void ble_retry_later(struct fgw_daemon *d);

static void on_adapter(struct fgw_bluez *b, enum fgw_bluez_adapter_state state, int err,
		       void *user_data)
{
	struct fgw_daemon *d = user_data;

	fgw_notice("event: adapter, state: %s%s%s", fgw_bluez_adapter_state_to_string(state),
		   err < 0 ? ", reason: " : "", err < 0 ? fgw_bluez_last_error(b) : "");
	/* bluetoothd leaving is followed on this connection; the bus itself is not. */
	if (err == -ENETDOWN && fgw_bluez_bus_lost(b) &&
	    !uv_is_active((uv_handle_t *) &d->ble_retry)) {
		fgw_warning("event: ble-bus-lost, reason: '%s', retry-in-ms: %u",
			    fgw_bluez_last_error(b), BLE_RETRY_MIN_MS);
		d->ble_retry_ms = BLE_RETRY_MIN_MS;
		ble_retry_later(d);
	}
}

/* ---- the bus connection: BLE comes and goes, the daemon stays --------------------------- */

/* [ble] adapters, or the deprecated [ble] adapter; both at once is a mistake to point out. */
static int ble_adapters(struct fgw_daemon *d, char *buf, size_t size)
{
	const char *adapters = d->cfg.ble_adapters ? d->cfg.ble_adapters : "";
	const char *adapter = d->cfg.ble_adapter ? d->cfg.ble_adapter : "";
	int r;

	if (*adapters && *adapter) {
		fgw_error(
		    "[ble] adapter is a deprecated alias of [ble] adapters: set only adapters");
		return -EINVAL;
	}
	if (*adapter) {
		fgw_warning("[ble] adapter is deprecated: write adapters = %s", adapter);
		adapters = adapter;
	}
	r = fgw_bluez_adapters_parse(adapters, buf, size);
	if (r < 0)
		fgw_error("[ble] adapters must be 'all' or adapter names such as 'hci0,hci1'");
	return r;
}

/* Opens lib/bluez on the system bus. < 0 only when the bus cannot be reached. */
static int ble_open(struct fgw_daemon *d)
{
	struct fgw_bluez_options bo;
	int r;

	fgw_bluez_options_init(&bo);
	bo.adapter = d->ble_adapters;
	bo.power_on = d->cfg.ble_power_on;
	bo.scan = d->cfg.ble_scan;
	bo.filter_service = d->cfg.ble_filter_service;
	bo.rssi_threshold = d->cfg.ble_rssi_threshold;
	bo.max_connections = (unsigned) d->cfg.ble_max_connections;
	bo.connect_timeout_ms = (unsigned) d->cfg.ble_connect_timeout_s * 1000;
	bo.acquire = d->cfg.ble_acquire;
	bo.pair_timeout_ms = (unsigned) d->cfg.ble_pair_timeout_s * 1000;
	r = fgw_bluez_new(d->loop, &bo, &d->bluez);
	if (r < 0)
		return r;
	fgw_bluez_add_adapter_watch(d->bluez, on_adapter, d);
	fgw_bluez_add_device_watch(d->bluez, on_ble_device, d);
	return 0;
}

static void on_ble_retry(uv_timer_t *t)
{
	struct fgw_daemon *d = t->data;
	int r;

	if (d->stopping)
		return;
	if (d->bluez) {
		/* A lost connection: its links have failed already; start over on a new one. */
		fgw_ble_security_stop(d);
		d->bluez = fgw_bluez_free(d->bluez);
	}
	r = ble_open(d);
	if (r < 0) {
		fgw_debug("ble: system bus still unreachable (%s), next try in %u ms", strerror(-r),
			  d->ble_retry_ms);
		ble_retry_later(d);
		return;
	}
	fgw_notice("event: ble-bus-connected");
	d->ble_retry_ms = BLE_RETRY_MIN_MS;
	r = fgw_ble_security_start(d);
	if (r < 0)
		fgw_log_errno(LOG_ERR, r, "BLE runs without a pairing agent");
}

/* Next try after the current back-off, which doubles up to BLE_RETRY_MAX_MS. */
static void ble_retry_later(struct fgw_daemon *d)
{
	if (d->stopping)
		return;
	uv_timer_start(&d->ble_retry, on_ble_retry, d->ble_retry_ms, 0);
	d->ble_retry_ms = FGW_MIN(d->ble_retry_ms * 2, BLE_RETRY_MAX_MS);
}

/*
 * Without a system bus (not started yet, or gone) the daemon runs on: the API answers, health
 * reports BLE "unavailable", UDP devices update, and the bus is tried again with a back-off.
 * A bad passkey file stays fatal at start, as for any configuration error.
 */
static int ble_start(struct fgw_daemon *d)
{
	int r = ble_adapters(d, d->ble_adapters, sizeof(d->ble_adapters));

	if (r < 0)
		return r;
	r = uv_timer_init(d->loop, &d->ble_retry);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to set up the BLE retry timer");
	d->ble_retry.data = d;
	d->n_handles++;
	d->ble_retry_ms = BLE_RETRY_MIN_MS;
	r = ble_open(d);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r,
			      "BLE unavailable: cannot connect to the system bus; the API and UDP "
			      "devices run, retrying (every %u s at most)",
			      BLE_RETRY_MAX_MS / 1000);
		ble_retry_later(d);
		return 0;
	}
	return fgw_ble_security_start(d);
}

/* ---- releases ---------------------------------------------------------------------------- */

/* Version as Zephyr's image state prints it: "1.2.3", or "1.2.3.4" when build != 0. */
static void image_state_version(const struct fgw_image_version *v, char *buf, size_t size)
{
	if (v->build)
		snprintf(buf, size, "%u.%u.%u.%u", v->major, v->minor, v->revision, v->build);
	else
		snprintf(buf, size, "%u.%u.%u", v->major, v->minor, v->revision);
}

static void fleet_release_from(const struct fgw_release_info *info, struct fgw_fleet_release *fr)
{
	const struct fgw_manifest_release *m = info->release;

	snprintf(fr->id, sizeof(fr->id), "%s", m->id);
	snprintf(fr->version, sizeof(fr->version), "%s", m->version);
	snprintf(fr->board, sizeof(fr->board), "%s", m->board ? m->board : "");
	for (size_t i = 0; i < m->n_groups && i < ARRAY_SIZE(fr->groups); i++)
		snprintf(fr->groups[i], sizeof(fr->groups[i]), "%s", m->groups[i]);
	fr->n_groups = FGW_MIN(m->n_groups, ARRAY_SIZE(fr->groups));
	fr->policy_confirm = m->policy.mode == FGW_ROLLOUT_MODE_CONFIRM;
	fr->canary_percent = (unsigned) m->policy.canary_percent;
	fr->max_failure_rate = m->policy.max_failure_rate;
	fr->max_concurrent = (unsigned) m->policy.max_concurrent;
	fr->no_downgrade = !m->policy.allow_downgrade;
	for (size_t i = 0; i < info->n_images; i++) {
		const struct fgw_release_image *ri = &info->images[i];
		struct fgw_fleet_image *fi;

		if (ri->index < 0 || ri->index >= (int) ARRAY_SIZE(fr->image))
			continue; /* the fleet drives the app and net cores only */
		fi = &fr->image[ri->index];
		fi->present = true;
		fi->fd = ri->fd;
		fi->size = ri->size;
		memcpy(fi->file_sha, ri->sha256, 32);
		memcpy(fi->hash, ri->hash, 32);
		image_state_version(&ri->version, fi->version, sizeof(fi->version));
	}
}

/*
 * A verified release, its images sealed: the fleet maps them now (the mapping outlives the
 * callback), so nothing is extracted or verified a second time.
 */
static void on_release_verified(const struct fgw_release_info *info, void *user_data)
{
	struct fgw_daemon *d = user_data;
	struct fgw_fleet_release rel = {0};
	int r;

	if (!d->fleet || d->stopping)
		return;
	if (info->sequence < d->release_sequence) {
		fgw_info("Release %s is older than the current one, not rolled out",
			 info->release->id);
		return;
	}
	fleet_release_from(info, &rel);
	r = fgw_fleet_set_release(d->fleet, &rel);
	if (r < 0)
		fgw_log_errno(LOG_ERR, r, "Release %s: the fleet cannot take it", rel.id);
	else
		d->release_sequence = info->sequence;
}

/*
 * After every poll: an expired manifest in force holds the rollout (no new job starts) when
 * the policy says so; a fresh one lifts the hold. The alarm itself (event, metric, health)
 * comes from the release part's status, whatever the policy.
 */
static void on_release_cycle(const char *result, void *user_data)
{
	struct fgw_daemon *d = user_data;
	struct fgw_release_status st;

	if (!d->fleet || !d->rsrc)
		return;
	fgw_release_source_get_status(d->rsrc, &st);
	if (st.freshness == FGW_MANIFEST_FRESHNESS_EXPIRED && d->cfg.release_expired_holds_rollout)
		fgw_fleet_set_gate(d->fleet, "the release manifest in force has expired");
	else
		fgw_fleet_set_gate(d->fleet, NULL);
}

static int start_release_source(struct fgw_daemon *d)
{
	struct fgw_release_source_options o = {0};
	char *keys[FGW_MANIFEST_MAX_KEYS];
	char *list, *save = NULL, *tok;
	size_t n = 0;
	int r;

	list = strdup(d->cfg.release_trusted_keys ? d->cfg.release_trusted_keys : "");
	if (!list)
		return -ENOMEM;
	/* lib/config refuses more than FGW_MANIFEST_MAX_KEYS; one more here is refused too */
	for (tok = strtok_r(list, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (n == FGW_MANIFEST_MAX_KEYS) {
			free(list);
			return fgw_log_errno(LOG_ERR, -E2BIG,
					     "release.trusted_keys: more than %d keys",
					     FGW_MANIFEST_MAX_KEYS);
		}
		keys[n++] = tok;
	}
	o.manifest_url = d->cfg.release_manifest_url;
	o.poll_interval_s = (unsigned) d->cfg.release_poll_interval_s;
	o.trusted_keys = (const char *const *) keys;
	o.n_trusted_keys = n;
	o.mcuboot_key = *d->cfg.release_mcuboot_key ? d->cfg.release_mcuboot_key : NULL;
	o.cache_dir = d->cfg.release_cache_dir;
	o.channel = d->cfg.release_channel;
	o.cache_budget_bytes = (uint64_t) d->cfg.release_cache_budget_mib * 1024 * 1024;
	o.fetch.ca_file = *d->cfg.release_ca_file ? d->cfg.release_ca_file : NULL;
	o.fetch.client_cert = *d->cfg.release_client_cert ? d->cfg.release_client_cert : NULL;
	o.fetch.client_key = *d->cfg.release_client_key ? d->cfg.release_client_key : NULL;
	o.fetch.timeout_s = d->cfg.release_download_timeout_s;
	o.fetch.low_speed_limit = d->cfg.release_low_speed_limit_bytes;
	o.fetch.low_speed_time_s = d->cfg.release_low_speed_time_s;
	r = fgw_release_source_new(d->loop, d->store, &o, &d->rsrc);
	free(list);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to set up the release source '%s'",
				     d->cfg.release_manifest_url);
	fgw_release_source_set_verified_cb(d->rsrc, on_release_verified, d);
	fgw_release_source_set_cycle_cb(d->rsrc, on_release_cycle, d);
	r = fgw_release_source_start(d->rsrc);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to start the release source");
	return 0;
}

/* ---- start / stop ------------------------------------------------------------------------ */

/* The fleet's options from the configuration in force: at start and again at each reload. */
static void fleet_options(struct fgw_daemon *d, struct fgw_fleet_options *fo)
{
	*fo = (struct fgw_fleet_options){
	    .max_connections = (unsigned) d->cfg.ble_max_connections,
	    .retry_limit = (unsigned) d->cfg.retry_limit,
	    .backoff_base_ms = (uint64_t) d->cfg.backoff_base_s * 1000,
	    .backoff_max_ms = (uint64_t) d->cfg.backoff_max_s * 1000,
	    .reboot_timeout_ms = (uint64_t) d->cfg.reboot_timeout_s * 1000,
	    .progress_flush_ms = (uint64_t) d->cfg.progress_flush_s * 1000,
	    .request_timeout_ms = 10000,
	    .chunk_timeout_ms = (uint64_t) d->cfg.chunk_timeout_ms,
	    .first_chunk_timeout_ms = (uint64_t) d->cfg.first_chunk_timeout_ms,
	    .upload_window = (unsigned) d->cfg.upload_window,
	    .netcore_version_group = (unsigned) d->cfg.netcore_version_group,
	    .default_group = d->cfg.fleet_group,
	    .enrollment_open = d->cfg.fleet_enrollment_open,
	    .require_board_match = d->cfg.require_board_match,
	    .max_unenrolled = (unsigned) d->cfg.max_unenrolled,
	    .unenrolled_ttl_ms = (uint64_t) d->cfg.unenrolled_ttl_s * 1000,
	    .transport_new = transport_new,
	    .transport_user_data = d,
	    .security_failed = security_failed,
	};
}

void fgw_daemon_fleet_reload(struct fgw_daemon *d)
{
	struct fgw_fleet_options fo;

	if (!d->fleet)
		return;
	fleet_options(d, &fo);
	fgw_fleet_set_options(d->fleet, &fo);
	if (d->bluez && !fgw_bluez_bus_lost(d->bluez))
		fgw_bluez_foreach_device(d->bluez, on_reload_device, d);
}

int fgw_daemon_fleet_start(struct fgw_daemon *d)
{
	struct fgw_fleet_options fo;
	char *list, *save = NULL, *tok;
	int r;

	if (d->cfg.ble_enabled) {
		r = ble_start(d);
		if (r < 0)
			return r;
	}

	fleet_options(d, &fo);
	r = fgw_fleet_new(d->loop, d->store, &fo, &d->fleet);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to set up the fleet");
	r = fgw_fleet_start(d->fleet, NULL);
	if (r < 0)
		return r;
	if (d->db_read_only)
		fgw_fleet_hold(d->fleet, "the database is read-only");

	list = strdup(d->cfg.udp_devices ? d->cfg.udp_devices : "");
	if (!list)
		return -ENOMEM;
	for (tok = strtok_r(list, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		char address[300], host[256];
		uint16_t port;
		snprintf(address, sizeof(address), "udp:%s", tok);
		if (parse_udp_address(address, host, sizeof(host), &port) < 0) {
			fgw_warning("fleet.udp_devices: '%s' is not HOST:PORT, ignoring", tok);
			continue;
		}
		fgw_fleet_device_seen(d->fleet, address, "udp", NULL, NULL);
	}
	free(list);

	if (d->cfg.release_manifest_url && *d->cfg.release_manifest_url) {
		r = start_release_source(d);
		if (r < 0)
			return r;
	} else {
		fgw_warning("release.manifest_url is empty: no releases will be rolled out");
	}
	return 0;
}

void fgw_daemon_fleet_stop(struct fgw_daemon *d)
{
	d->rsrc = fgw_release_source_free(d->rsrc);
	d->fleet = fgw_fleet_free(d->fleet);
	d->bluez = fgw_bluez_free(d->bluez);
	fgw_ble_security_stop(d);
}
