/*
 * fotagw-smp's BLE security commands and options (pair.c): kept out of fotagw-smp.c so that
 * its dispatch only calls in here.
 */
#pragma once

#include <stdbool.h>
#include <uv.h>

struct fgw_bluez;
struct fgw_transport;

/*
 * --passkey-file: reads the passkey, registers a KeyboardOnly agent on @b and makes @t (if
 * any) pair with an authenticated bond before subscribing. Nothing without a file.
 */
int smp_ble_security(struct fgw_bluez *b, struct fgw_transport *t, const char *passkey_file);
/* One line on stderr saying what to do about a link error (pairing needed, refused, ...). */
void smp_ble_hint(int err);
/* fotagw-smp pair / unpair: runs @loop; returns the exit code. */
int smp_pair_main(uv_loop_t *loop, struct fgw_bluez *b, const char *addr, bool unpair,
		  const char *passkey_file, bool json);
