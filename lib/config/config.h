/*
 * config: the daemon's INI configuration. Every key lives in one table (config.c) with its
 * type, range, default, whether it is required, and whether SIGHUP may change it at run time;
 * config/fotagw.conf documents the same keys. Loading reports every problem it finds (unknown
 * key, bad value, missing required value) with the file, line and key through a callback, so
 * `fotagwd --check-config` can list them all at once.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct fgw_config {
	/* [log] */
	int log_level; /* syslog priority, LOG_ERR..LOG_DEBUG */
	/* [store] */
	char *db_path;
	int busy_timeout_ms;
	int retain_events_days; /* events older than this are pruned, 0 = kept */
	int retain_events_max;	/* beyond this many events the oldest are pruned, 0 = no cap */
	int retain_jobs_days;	/* finished jobs of releases no longer in force, 0 = kept */
	int forget_devices_after_days; /* BLE devices not seen this long, 0 = kept */
	/* [fleet] */
	char *fleet_group; /* group given to newly seen devices */
	char *udp_devices; /* "HOST:PORT ..." devices reached over SMP/UDP */
	int retry_limit;   /* transient failures before a job fails */
	int backoff_base_s, backoff_max_s;
	int reboot_timeout_s;	    /* ceiling for a device to come back after its reset */
	int progress_flush_s;	    /* upload offsets are persisted at most this often */
	bool fleet_enrollment_open; /* enrollment = open; false: allowlist */
	bool require_board_match;   /* skip a device whose board is unknown */
	int max_unenrolled;	    /* unenrolled devices kept at most */
	int unenrolled_ttl_s;	   /* an unenrolled device is forgotten this long after last seen */
	int netcore_version_group; /* SMP group the firmware answers its net core version on, 0 none
				    */
	/* [upload] */
	int upload_window; /* requests in flight, 0 = from the device's buffer count */
	int chunk_timeout_ms;
	int first_chunk_timeout_ms; /* the first chunk waits while the device erases its slot */
	/* [api] */
	bool api_enabled;
	char *api_listen; /* numeric address to bind, 127.0.0.1 by default */
	int api_port;
	char *api_token_file; /* bearer token for POSTs; "" = every POST is refused */
	int api_max_connections;
	int api_timeout_s;	 /* idle HTTP connections are closed after this */
	char *api_allowed_hosts; /* Host names answered besides IP literals and localhost */
	/* [ble] (lib/bluez: struct fgw_bluez_options) */
	bool ble_enabled;
	char *ble_adapters;	 /* "all", "hci0,hci1"; "" = ble_adapter, else the first listed */
	char *ble_adapter;	 /* deprecated alias of ble_adapters (one adapter) */
	bool ble_power_on;	 /* keep the adapter powered */
	bool ble_scan;		 /* discover continuously */
	bool ble_filter_service; /* discovery filter on the SMP service UUID */
	int ble_rssi_threshold;	 /* dBm, 0 = none */
	int ble_max_connections; /* links connecting or connected at once, per adapter */
	int ble_ceiling_bytes_per_s; /* estimated image bytes/s one adapter's radio carries */
	int ble_connect_timeout_s;   /* find + connect + resolve + acquire */
	bool ble_acquire;	     /* AcquireWrite/AcquireNotify when offered */
	char *ble_name_prefix;	/* devices named so are fleet devices even without the SMP UUID */
	char *ble_passkey_file; /* product-wide passkey (6 digits); "": none (Just Works) */
	bool ble_allow_numeric_comparison; /* the agent accepts RequestConfirmation */
	int ble_pair_timeout_s;		   /* Device1.Pair() */
	bool ble_default_agent;		   /* also bluetoothd's default agent */
	/* [release] (lib/release/release.h: struct fgw_release_source_options) */
	char *release_manifest_url; /* "" = no release source */
	int release_poll_interval_s;
	char
	    *release_trusted_keys; /* Ed25519 public key PEM paths, at most FGW_MANIFEST_MAX_KEYS */
	char *release_channel;	   /* the manifest's signed `channel` must equal it */
	bool release_expired_holds_rollout; /* an expired manifest starts no new jobs */
	char *release_mcuboot_key;	    /* PEM; "" = image signatures not checked */
	char *release_cache_dir;
	int release_cache_budget_mib; /* 0 = keep every bundle */
	char *release_ca_file;	      /* "" = system CA store */
	char *release_client_cert;    /* "" = no client certificate */
	char *release_client_key;
	int release_download_timeout_s; /* whole download, 0 = none */
	int release_low_speed_limit_bytes;
	int release_low_speed_time_s;
};

/*
 * Called once per problem. @line is 0 when the problem has no line (a missing key).
 * @section and @key may be NULL for syntax errors.
 */
typedef void (*fgw_config_diag_cb_t)(const char *file, int line, const char *section,
				     const char *key, const char *message, void *user_data);

/*
 * Parses @text (named @file in diagnostics) into @ret. On success @ret owns its strings
 * (release with fgw_config_done()). Returns -EINVAL if any problem was found (each one was
 * reported through @diag), in which case @ret is left zeroed.
 */
int fgw_config_load_string(const char *text, const char *file, struct fgw_config *ret,
			   fgw_config_diag_cb_t diag, void *user_data);
/* Same, from a file. -errno if the file cannot be read (reported through @diag too). */
int fgw_config_load_file(const char *path, struct fgw_config *ret, fgw_config_diag_cb_t diag,
			 void *user_data);
void fgw_config_done(struct fgw_config *c);

/*
 * Reload: copies into @cur every value of @next whose key may change at run time, and reports
 * through @diag (line 0) each changed key: "applied", or that it needs a restart. Returns the
 * number of keys applied.
 */
int fgw_config_apply_reload(struct fgw_config *cur, const struct fgw_config *next,
			    fgw_config_diag_cb_t diag, void *user_data);
