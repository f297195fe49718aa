/*
 * fotagwd's BLE pairing and bonding policy (ble-security.c): the passkey, the agent, the
 * security level per device and what to do when a link fails for security.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct fgw_daemon;
struct fgw_transport;

/* Reads the passkey (if any) and starts the agent on d->bluez. < 0: a bad passkey file. */
int fgw_ble_security_start(struct fgw_daemon *d);
void fgw_ble_security_stop(struct fgw_daemon *d);
/* A device got its own passkey: the agent offers passkey entry (KeyboardOnly) from now on. */
void fgw_ble_security_passkey_added(struct fgw_daemon *d);
/* Sets the stored security level of @address on a new ble transport. */
void fgw_ble_security_apply(struct fgw_daemon *d, const char *address, struct fgw_transport *t);
/* The fleet's security_failed callback (fleet.h). */
int fgw_ble_security_failed(struct fgw_daemon *d, const char *address, struct fgw_transport *t,
			    int err, char *why, size_t size);
