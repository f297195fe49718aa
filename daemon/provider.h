/*
 * The daemon's side of the REST API: starting it from the configuration and the provider
 * that answers what only the running daemon knows. Fleet callbacks are added where the
 * fleet is wired in; until then they stay NULL and the API says "not available".
 */
#pragma once

struct fgw_daemon;

/* Starts the API when [api] enabled = true. 0 (also when disabled) or -errno, logged. */
int fgw_daemon_api_start(struct fgw_daemon *d);
