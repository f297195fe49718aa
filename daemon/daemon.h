/*
 * The daemon context: the one object that owns every part (config, store, loop handles) and
 * wires them together. main.c parses arguments and hands over; nothing else is global.
 */
#pragma once

#include <uv.h>

#include "config.h"

struct fgw_store;
struct fgw_api;
struct fgw_bluez;
struct fgw_fleet;
struct fgw_release_source;
struct fgw_ble_security;

struct fgw_daemon {
	uv_loop_t *loop;
	char *config_path;
	struct fgw_config cfg;
	struct fgw_store *store;
	struct fgw_api *api;		 /* NULL when [api] enabled = false */
	struct fgw_bluez *bluez;	 /* NULL when [ble] enabled = false */
	struct fgw_ble_security *blesec; /* passkey, rebonds (ble-security.c) */
	struct fgw_fleet *fleet;
	struct fgw_release_source *rsrc; /* NULL without a manifest URL */
	int64_t release_sequence;	 /* manifest sequence of the fleet's current release */
	bool db_read_only;		 /* the database could only be opened read-only: no jobs */

	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t watchdog;
	uv_timer_t retention; /* prunes old records (retention.c) */
	uv_timer_t ble_retry; /* system bus (re)connection attempts (fleet-glue.c) */
	unsigned ble_retry_ms;
	char ble_adapters[256]; /* [ble] adapters as parsed at start, for each (re)connection */
	uint64_t watchdog_usec; /* 0: systemd does not watch us */
	uint64_t started_ms;
	bool stopping;
	int n_handles; /* open uv handles still to close at shutdown */
};

/* Loads and validates @config_path; diagnostics go to the log. 0, or -EINVAL / -errno. */
int fgw_daemon_init(struct fgw_daemon *d, uv_loop_t *loop, const char *config_path);
/* Opens the store, installs signal handlers, tells systemd READY=1. */
int fgw_daemon_start(struct fgw_daemon *d);
/* Begins an orderly stop: STOPPING=1, every handle closed; uv_run() then returns. */
void fgw_daemon_stop(struct fgw_daemon *d);
/* Frees what is left after uv_run() returned. */
void fgw_daemon_done(struct fgw_daemon *d);
