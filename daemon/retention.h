/*
 * Retention in the daemon (retention.c): a timer that prunes the store in small batches as
 * [store] retain_* and forget_devices_after_days say, never while the database is read-only.
 */
#pragma once

struct fgw_daemon;

/* Starts the timer; the first batch runs a couple of seconds after start. */
int fgw_daemon_retention_start(struct fgw_daemon *d);
