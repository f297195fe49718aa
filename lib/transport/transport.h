/*
 * transport: how SMP packets reach a device and come back, without the SMP code knowing over
 * what. A transport carries whole SMP packets out, by reference to the caller's packet buffer
 * (splitting them into link frames itself where the link needs it, as BLE does at ATT_MTU-3,
 * each frame a slice of that buffer) and hands up whatever bytes arrive, as
 * they arrive: one notification or one datagram per call, which may hold part of a packet or
 * several; reassembly is the SMP layer's job. Implementations: udp (this folder, SMP over UDP
 * as Zephyr's transport, port 1337) and ble (GATT SMP characteristic through bluetoothd,
 * built on lib/bluez). All run on one libuv loop and never block it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct fgw_transport;
struct fgw_buf;

/*
 * Link state, reported through the state callback:
 *   err == 0   the transport is open: send() may be used;
 *   err <  0   it failed to open or was lost (-ETIMEDOUT, -ECONNRESET, -ENOTCONN, ...). Called
 *              once per loss; after it, send() fails with -ENOTCONN until opened again.
 *              Except -ECONNREFUSED while open (UDP: ICMP port unreachable, nothing listens on
 *              the device's port): what was sent will not be answered, but the transport
 *              stays open and send() still works (the device may be restarting).
 * The callback may free the transport.
 */
typedef void (*fgw_transport_state_cb_t)(struct fgw_transport *t, int err, void *user_data);
/* Bytes from the device, exactly as one link frame carried them. May free the transport. */
typedef void (*fgw_transport_rx_cb_t)(struct fgw_transport *t, const uint8_t *data, size_t len,
				      void *user_data);

/*
 * Opens the link (connects, for BLE). Returns < 0 if it cannot even start (then @state_cb is
 * never called); otherwise @state_cb runs later, never before open() returned.
 */
int fgw_transport_open(struct fgw_transport *t, fgw_transport_state_cb_t state_cb,
		       fgw_transport_rx_cb_t rx_cb, void *user_data);
/*
 * Queues one whole SMP packet (header + payload) without copying it: the transport sends from
 * @packet (BLE: in writes of mtu() bytes, slices of it) and keeps a reference while any of it
 * is still queued; the caller must not write into it while fgw_buf_shared(). 0 when queued,
 * -ENOTCONN when not open, -EMSGSIZE when it exceeds fgw_transport_max_packet(), -ENOBUFS
 * when the send queue is full (the caller should wait for responses first), -ENOMEM.
 */
int fgw_transport_send(struct fgw_transport *t, struct fgw_buf *packet);
/* Closes the link; no callback follows. open() may be called again. */
void fgw_transport_close(struct fgw_transport *t);
/* Closes and frees (asynchronously, after the loop has released its handles). NULL ok. */
struct fgw_transport *fgw_transport_free(struct fgw_transport *t);

/* Payload bytes one link frame carries (ATT_MTU-3 for BLE, the datagram limit for UDP). */
size_t fgw_transport_mtu(struct fgw_transport *t);
/*
 * Largest SMP packet send() accepts. For BLE this is larger than mtu(): packets are split into
 * several writes and the device reassembles them (up to its own buf_size).
 */
size_t fgw_transport_max_packet(struct fgw_transport *t);
/* Short name of the kind ("udp", "ble") and the peer, for logs: "udp:127.0.0.1:1337". */
const char *fgw_transport_kind(struct fgw_transport *t);
const char *fgw_transport_peer(struct fgw_transport *t);

/* SMP over UDP to @host:@port (IPv4 or IPv6 literal, or "localhost"). */
int fgw_transport_udp_new(uv_loop_t *loop, const char *host, uint16_t port,
			  struct fgw_transport **ret);
