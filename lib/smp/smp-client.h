/*
 * smp-client: the SMP client on a transport and a libuv loop (target fgw_smp): sequence
 * numbers, a table of requests in flight, one timer per request, the SMP version in use. What
 * goes over the wire is the codec's (smp.h, no libuv); what the device answered is data in
 * struct fgw_smp_status, only our own or the link's failures are negative errno values.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "smp.h"

struct fgw_transport;

struct fgw_smp_client;

/* A response as it arrived: header, raw payload (borrowed for the callback) and its status. */
struct fgw_smp_rsp {
	struct fgw_smp_hdr hdr;
	const uint8_t *payload;
	size_t len;
	struct fgw_smp_status status;
	struct fgw_smp_upload_rsp upload; /* off/match, read in the same pass (image upload) */
};

/*
 * err == 0: @rsp is the device's answer (which may carry a device error in rsp->status).
 * err < 0:  -ETIMEDOUT, -ECANCELED (cancelled or client freed), -ENOTCONN/-ECONNRESET (link
 *           lost), -EBADMSG (answer not a CBOR map), -ECONNREFUSED (UDP: nothing listens on
 *           the port; the client stays open); @rsp is NULL.
 * May free the client.
 */
typedef void (*fgw_smp_rsp_cb_t)(int err, const struct fgw_smp_rsp *rsp, void *user_data);
/* Link state as the transport reported it (0 open, < 0 lost). May free the client. */
typedef void (*fgw_smp_state_cb_t)(struct fgw_smp_client *c, int err, void *user_data);

/* Borrows @t (which must outlive the client); the client becomes @t's only user. */
int fgw_smp_client_new(uv_loop_t *loop, struct fgw_transport *t, struct fgw_smp_client **ret);
/* Cancels every request (cb(-ECANCELED), then destroy), closes the transport. NULL ok. */
struct fgw_smp_client *fgw_smp_client_free(struct fgw_smp_client *c);
/* Opens the transport; @state_cb follows as for fgw_transport_open(). */
int fgw_smp_client_open(struct fgw_smp_client *c, fgw_smp_state_cb_t state_cb, void *user_data);
/* Closes the transport; requests in flight end with -ENOTCONN. */
void fgw_smp_client_close(struct fgw_smp_client *c);
bool fgw_smp_client_is_open(struct fgw_smp_client *c);

/*
 * SMP version for the next requests (default v2). The client also changes it by itself: a
 * v2 request answered with a v1 header (firmware older than SMP v2) switches to v1; rc 12
 * (v1 disabled) to a v1 request switches to v2 and resends once; rc 13 (too new) to a v2
 * request switches to v1 and resends once. rc 8 (ENOTSUP) is never taken as a version
 * problem: Zephyr returns it for unknown groups and commands in both versions.
 */
void fgw_smp_client_set_version(struct fgw_smp_client *c, enum fgw_smp_version v);
enum fgw_smp_version fgw_smp_client_get_version(struct fgw_smp_client *c);
/* Largest request packet the client sends (transport max_packet, lowered by this call). */
void fgw_smp_client_set_max_packet(struct fgw_smp_client *c, size_t max_packet);
size_t fgw_smp_client_max_packet(struct fgw_smp_client *c);
/*
 * The link's preferred packet multiple: the payload of one link frame (BLE: ATT_MTU - 3; UDP:
 * the datagram limit), and whether a packet is split into several of them. The upload engine
 * sizes its chunks by these without knowing the transport.
 */
size_t fgw_smp_client_frame_size(struct fgw_smp_client *c);
bool fgw_smp_client_splits_packets(struct fgw_smp_client *c);
/* The transport's peer, for logs ("udp:127.0.0.1:1337", "ble:AA:BB:..."). */
const char *fgw_smp_client_peer(struct fgw_smp_client *c);

/*
 * Sends @req (packed once into a packet the client keeps; the caller still owns and frees
 * @req) with its own seq and a @timeout_ms
 * timer (0 = 10 s). Contract (style.md §6): returns < 0 ⇒ @cb never runs (-ENOTCONN,
 * -EMSGSIZE, -EBUSY when 255 requests are in flight, -ENOBUFS from the transport); returns
 * 0 ⇒ @cb runs exactly once, never before this call returned, then @destroy(@user_data).
 * @ret_id (optional) identifies the request for fgw_smp_client_cancel().
 */
int fgw_smp_client_request(struct fgw_smp_client *c, const struct fgw_smp_req *req,
			   unsigned timeout_ms, fgw_smp_rsp_cb_t cb, void *user_data,
			   fgw_destroy_cb_t destroy, uint64_t *ret_id);
/*
 * Sends a packed request (header + body in @packet, as fgw_smp_upload_encode() or
 * fgw_smp_req_pack() wrote it) without copying it: the client stamps its own seq and version
 * into the header and keeps @packet for a resend. Takes over the caller's reference, also on
 * failure. Contract and errors as fgw_smp_client_request(); -EINVAL if the header is not a
 * request's or disagrees with the packet's length.
 */
int fgw_smp_client_send(struct fgw_smp_client *c, struct fgw_buf *packet, unsigned timeout_ms,
			fgw_smp_rsp_cb_t cb, void *user_data, fgw_destroy_cb_t destroy,
			uint64_t *ret_id);
/* Ends one request with cb(-ECANCELED) now. -ENOENT if it already ended. */
int fgw_smp_client_cancel(struct fgw_smp_client *c, uint64_t id);
/* Requests in flight. */
size_t fgw_smp_client_pending(struct fgw_smp_client *c);

struct fgw_smp_client_stats {
	uint64_t tx_packets, rx_packets;
	uint64_t timeouts;
	uint64_t stray;	  /* responses for no request in flight (late after a timeout) */
	uint64_t bad;	  /* frames the reassembler or the decoder refused */
	uint64_t refused; /* -ECONNREFUSED from an open transport: nothing listened */
};
void fgw_smp_client_get_stats(struct fgw_smp_client *c, struct fgw_smp_client_stats *ret);
