/*
 * A scripted peer behind the transport interface (transport-impl.h), for unit tests of the SMP
 * client and the upload engine. Every packet the code under test sends goes to a handler (a
 * test's fake device) or is matched against a script of (expect, answer) steps; answers and
 * link events are delivered later from loop timers, never inside send().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "transport-impl.h"

struct peer;

typedef void (*peer_handler_t)(struct peer *p, const uint8_t *pkt, size_t len, void *user_data);

struct peer_step {
	const uint8_t *expect; /* exact request bytes; byte 6 (seq) is not compared. NULL: any */
	size_t expect_len;
	const uint8_t *answer; /* NULL: silence */
	size_t answer_len;
	size_t split;	   /* deliver the answer in frames of this many bytes; 0: one frame */
	unsigned delay_ms; /* before the answer */
	bool keep_seq;	   /* send the answer's seq as written instead of the request's */
	int disconnect;	   /* < 0: report this link loss instead of answering */
};

int peer_new(uv_loop_t *loop, size_t mtu, size_t max_packet, struct peer **ret);
struct fgw_transport *peer_transport(struct peer *p);
void peer_set_handler(struct peer *p, peer_handler_t fn, void *user_data);
void peer_play(struct peer *p, const struct peer_step *steps, size_t n);
/* Script steps consumed; mismatches (an unexpected request) seen. */
size_t peer_steps_done(struct peer *p);
unsigned peer_mismatches(struct peer *p);
/* All packets sent so far (count) and the last one. */
size_t peer_sent(struct peer *p);
const uint8_t *peer_last(struct peer *p, size_t *ret_len);
/* Queue bytes towards the code under test, in frames of @split (0: one), after @delay_ms. */
void peer_deliver(struct peer *p, const uint8_t *data, size_t len, size_t split, unsigned delay_ms);
/* Report a link loss (err < 0) after @delay_ms. */
void peer_drop_link(struct peer *p, int err, unsigned delay_ms);
/* Make send() fail with @err (0: succeed again). */
void peer_fail_sends(struct peer *p, int err);
bool peer_is_open(struct peer *p);
/*
 * The packet object of the last send, to tell a resend of the same packet from a copy. With
 * hold, the peer keeps a reference to the first packet sent after it, as a transport with
 * queued writes does, until hold is turned off.
 */
const struct fgw_buf *peer_last_packet(struct peer *p);
void peer_hold_packets(struct peer *p, bool hold);
struct fgw_buf *peer_held_packet(struct peer *p);
