/*
 * api: the gateway's REST status API, its read-only status page (/) and Prometheus /metrics,
 * served by libmicrohttpd on the daemon's libuv loop (MHD's epoll fd in a uv_poll, its timeout
 * in a uv_timer; no threads). Reads are open, every POST needs "Authorization: Bearer
 * <token>". What SQLite knows (devices, jobs, releases, events, counts) is read from the store
 * with short read-only statements; what only the running fleet knows (adapter state, live
 * upload progress, counters) and every action (pause, resume, retry) goes through a provider
 * the daemon fills in. A provider callback left NULL is answered honestly: live fields are
 * left out, actions answer 503. Nothing here blocks the loop. The endpoints are documented in
 * docs/api.md and docs/openapi.json.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct fgw_api;
struct fgw_store;
/* A Prometheus text-format writer, handed to the provider's metrics callback. */
struct fgw_prom;

/* What the daemon knows about itself and the Bluetooth side, for GET /v1/health. */
struct fgw_api_health {
	const char *version;	   /* NULL: left out */
	int64_t uptime_ms;	   /* < 0: left out */
	const char *adapter_state; /* e.g. "powered", "off", "absent"; NULL: unknown (null) */
};

/* The release manifest in force and the polls, as the release part (lib/release) counts them. */
struct fgw_api_manifest {
	const char *freshness; /* "unknown", "fresh", "expired", "clock-untrusted" */
	int64_t expires;       /* `expires` of the manifest in force (Unix s), 0: none seen */
	size_t n_results;
	const char *result[8]; /* poll results ("accepted", "not-modified", ...) */
	uint64_t polls[8];     /* polls with that result since start */
};

/* One live upload, as the upload engine sees it, for device views and `fotactl watch`. */
struct fgw_api_progress {
	int image;	 /* image being sent: 0 app core, 1 net core */
	uint64_t bytes;	 /* acknowledged by the device */
	uint64_t total;	 /* image size */
	double rate_bps; /* recent goodput, bytes per second */
	int64_t eta_s;	 /* < 0: unknown */
};

/* One image of a release as the fleet prepared it from the bundle, for GET /v1/releases. */
struct fgw_api_image {
	bool present;	  /* false: the bundle has no image for this core */
	char version[48]; /* as image state prints it */
	uint64_t size;	  /* bytes of the MCUboot image file */
	char hash[65];	  /* hex of its SHA256 TLV: what image state reports */
};

/* One device to enrol (POST /v1/devices/{address}/enroll, or a line of an import). */
struct fgw_api_enrollment {
	const char *address;		   /* normalized */
	const char *board, *group, *label; /* "": none / keep */
	bool has_passkey;
	uint32_t passkey; /* a secret: never logged, never answered */
};

/*
 * The fleet's side of the API. Every callback runs on the loop thread, must not block, and
 * may be NULL. Strings handed back are borrowed until the callback's caller returns.
 */
/* Adapters GET /v1/adapters lists at most (more are left out). */
#define FGW_API_MAX_ADAPTERS 16

/* One BLE adapter as GET /v1/adapters shows it. */
struct fgw_api_adapter {
	char name[32];	       /* "hci0" */
	const char *state;     /* "on", "off", "absent" */
	unsigned links, ready; /* links taken (connecting, connected), with an open data path */
	unsigned upload_limit; /* concurrent uploads the fleet allows on it now */
	double goodput_bps;    /* aggregate acknowledged bytes/s over the fleet's window */
	double ceiling_bps;    /* the configured estimate of what its radio carries */
	uint64_t busy;	       /* Connect() answered "busy" */
	uint64_t refused;      /* links refused while others were up */
};

struct fgw_api_provider {
	void *user_data;
	/* Fills up to @max adapters; returns how many there are (0 without BLE). */
	size_t (*adapters)(void *user_data, struct fgw_api_adapter *ret, size_t max);
	/* 0 and @ret filled, or -errno (the API then answers 503). */
	int (*health)(void *user_data, struct fgw_api_health *ret);
	/*
	 * Halt / resume the current rollout; @reason is the operator's text or NULL. The fleet
	 * persists the halted state (rollout table). 0, -ENOENT (no current release),
	 * -EALREADY (already paused / running), or another -errno.
	 */
	int (*pause)(void *user_data, const char *reason);
	int (*resume)(void *user_data);
	/*
	 * Schedule @address's job for the current release again now. 0, -ENOENT (unknown device
	 * or no current release), -EBUSY (its job is running), -EALREADY (done or up to date),
	 * or another -errno.
	 */
	int (*retry)(void *user_data, const char *address);
	/*
	 * Enrolls the @n devices, all or none (fgw_fleet_enroll). 0, -EINVAL (refused), or
	 * another -errno.
	 */
	int (*enroll)(void *user_data, const struct fgw_api_enrollment *e, size_t n);
	/* Forgets @address (fgw_fleet_forget): 0, -ENOENT, -EBUSY (its update runs). */
	int (*forget)(void *user_data, const char *address);
	/* The live upload of @address: 0 and @ret filled, or -ENOENT if none is running. */
	int (*progress)(void *user_data, const char *address, struct fgw_api_progress *ret);
	/*
	 * The images of release @release_id: 0 and @ret[0] (app core), @ret[1] (net core)
	 * filled, or -ENOENT if the fleet has not prepared that release.
	 */
	int (*release_images)(void *user_data, const char *release_id, struct fgw_api_image ret[2]);
	/*
	 * Appends the fleet's own series to /metrics. Names the API writes itself (do not
	 * repeat): fotagw_build_info, fotagw_uptime_seconds, fotagw_devices,
	 * fotagw_canary_devices, fotagw_rollout_halted, fotagw_rollout_failure_rate,
	 * fotagw_job_failures{outcome,stage} (current jobs), fotagw_releases, fotagw_manifest_*,
	 * fotagw_api_*, fotagw_rollout_max_failure_rate, fotagw_jobs_stalled_seconds,
	 * fotagw_ble_adapter_up (from health), fotagw_database_*, and from manifest() below
	 * fotagw_manifest_polls_total{result}, fotagw_manifest_expired,
	 * fotagw_manifest_expires_timestamp_seconds. Expected from the fleet:
	 * fotagw_upload_bytes_total, fotagw_upload_goodput_bytes_per_second,
	 * fotagw_job_duration_seconds (histogram), fotagw_job_failures_total{reason},
	 * fotagw_ble_connections_in_use.
	 */
	void (*metrics)(void *user_data, struct fgw_prom *w);
	/*
	 * The manifest in force: 0 and @ret filled, or -ENOENT without a release source. Feeds
	 * fotagw_manifest_polls_total{result}, fotagw_manifest_expired and health ("degraded"
	 * while it is expired).
	 */
	int (*manifest)(void *user_data, struct fgw_api_manifest *ret);
};

struct fgw_api_options {
	const char *listen;	       /* numeric IPv4 or IPv6 address; NULL: 127.0.0.1 */
	uint16_t port;		       /* 0: any free port (see fgw_api_port()) */
	const char *token;	       /* bearer token for POSTs; NULL: every POST gets 401 */
	unsigned max_connections;      /* 0: 32 */
	unsigned connection_timeout_s; /* idle connections are closed after this; 0: 15 */
	/* Host names the API answers to besides IP literals and localhost (space-separated);
	 * any other Host header gets 421, which defeats DNS rebinding. NULL: none. */
	const char *allowed_hosts;
};

/*
 * fgw_api_new() - listen and serve on @loop
 * @store:    read from for every GET (borrowed; must outlive the API)
 * @provider: copied; its user_data is borrowed
 * Return: 0 and *@ret, -EINVAL (bad listen address or options), -EADDRINUSE / -EACCES /
 * -EIO if the socket cannot be bound, -ENOMEM.
 */
int fgw_api_new(uv_loop_t *loop, struct fgw_store *store, const struct fgw_api_options *opts,
		const struct fgw_api_provider *provider, struct fgw_api **ret);
/*
 * Stops listening, drops open connections and closes the loop handles; the memory goes in
 * the last close callback, so uv_run() must run once more. Takes NULL; returns NULL.
 */
struct fgw_api *fgw_api_free(struct fgw_api *api);
/* The TCP port the API listens on. */
uint16_t fgw_api_port(struct fgw_api *api);

/*
 * Prometheus text exposition (version 0.0.4). fgw_prom_family() writes # HELP and # TYPE
 * once per name; @type is "counter", "gauge" or "histogram". fgw_prom_sample() writes one
 * line; @labels is NULL or a NULL-terminated list of name, value pairs (values are escaped).
 * fgw_prom_histogram() writes a whole histogram family from @n_bounds upper bounds and
 * @n_bounds + 1 per-bucket (not cumulative) counts, the last one above the last bound.
 */
void fgw_prom_family(struct fgw_prom *w, const char *name, const char *type, const char *help);
void fgw_prom_sample(struct fgw_prom *w, const char *name, const char *const *labels, double value);
void fgw_prom_histogram(struct fgw_prom *w, const char *name, const char *help,
			const double *bounds, const uint64_t *counts, size_t n_bounds, double sum);
