/*
 * Wiring of the moving parts: BlueZ discovery feeds the fleet's registry, the fleet gets its
 * transports (ble through bluetoothd, udp for IP devices) from here, and each release the
 * release source verifies becomes the fleet's current release once its images are extracted
 * in the thread pool.
 */
#pragma once

#include <stdbool.h>

struct fgw_daemon;

/* Starts BlueZ (if [ble] enabled), the fleet and the release source (if a manifest URL). */
int fgw_daemon_fleet_start(struct fgw_daemon *d);
/* The configuration in force (just reloaded) to the running fleet: its reloadable options. */
void fgw_daemon_fleet_reload(struct fgw_daemon *d);
/* Stops them; uv_run() must run once more to release their handles. */
void fgw_daemon_fleet_stop(struct fgw_daemon *d);
