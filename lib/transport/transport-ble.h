/*
 * The ble transport: SMP over the GATT SMP characteristic, through bluetoothd (lib/bluez).
 * A separate header and target (fgw_transport_ble) so that code speaking only transport.h
 * never pulls in sd-bus. open() connects (waiting for a slot under ble.max_connections,
 * searching for the device while it is not listed), resolves services and acquires the
 * characteristic's fds, all within ble.connect_timeout; send() splits each SMP packet into
 * writes of min(ATT_MTU - 3, 510) bytes; every notification is handed up as it arrives.
 */
#pragma once

#include "transport.h"

struct fgw_bluez;

/* Largest SMP packet send() takes: the 8-byte header plus the largest 16-bit length. */
#define FGW_TRANSPORT_BLE_MAX_PACKET (8 + 65535)

/*
 * A transport to @addr ("AA:BB:CC:DD:EE:FF") through @b, which must outlive it.
 * -EINVAL for a malformed address. Nothing happens until fgw_transport_open().
 */
int fgw_transport_ble_new(struct fgw_bluez *b, const char *addr, struct fgw_transport **ret);
/*
 * Why the last open failed or the link was lost, for logs ("" if it did not), e.g.
 * "Connect: org.bluez.Error.Failed: le-connection-abort-by-local". Borrowed.
 */
const char *fgw_transport_ble_last_error(struct fgw_transport *t);
/* ATT MTU of the open link (23 when closed) and whether it runs on acquired fds. */
unsigned fgw_transport_ble_att_mtu(struct fgw_transport *t);
bool fgw_transport_ble_acquired(struct fgw_transport *t);
/*
 * Security the next links set up before subscribing (enum fgw_bluez_security: unknown, none,
 * encrypted, authenticated; default unknown). See fgw_bluez_link_set_security().
 */
void fgw_transport_ble_set_security(struct fgw_transport *t, int security);
