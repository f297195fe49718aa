/*
 * The pipelined upload engine. See upload.h for the contract and protocol-notes §7.5 for the
 * algorithm it follows; the comments here say why each rule is what it is.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "upload-private.h"

/* An MCUboot header is 32 bytes; Zephyr refuses a first chunk shorter than that (err 22). */
#define FIRST_CHUNK_MIN 32
/* Retry after the transport's send queue was full and nothing is in flight to wait for. */
#define SEND_RETRY_MS 5

static const char *const state_names[_FGW_UPLOAD_STATE_MAX] = {
    [FGW_UPLOAD_STATE_IDLE] = "idle",		[FGW_UPLOAD_STATE_PROBING] = "probing",
    [FGW_UPLOAD_STATE_STREAMING] = "streaming", [FGW_UPLOAD_STATE_RESYNC] = "resync",
    [FGW_UPLOAD_STATE_BACKOFF] = "backoff",
};

static const char *state_to_string(enum fgw_upload_state s)
{
	return FGW_ENUM_NAME(state_names, s);
}

FGW_EXPORT void fgw_upload_opts_init(struct fgw_upload_opts *o)
{
	*o = (struct fgw_upload_opts){
	    .window_cap = 8,
	    .align = 4,
	    /* 40 s: with external flash and no progressive erase the first answer waits for a
	     * blank check and an erase of the whole slot (§6.5); never resend chunk 0 early. */
	    .first_timeout_ms = 40000,
	    .chunk_timeout_ms = 5000,
	    /* 20 s: with the image check on, the device hashes the whole slot first. */
	    .last_timeout_ms = 20000,
	    .max_failures = 5,
	    .max_timeouts = 5,
	    .busy_retry_ms = 100,
	};
}

static void upload_ref(struct fgw_upload *u)
{
	u->refs++;
}

static void upload_timer_closed(uv_handle_t *h)
{
	struct fgw_upload *u = h->data;

	if (--u->closing == 0)
		free(u);
}

/* Returns false when the upload was freed during the call-out. */
static bool upload_unref(struct fgw_upload *u)
{
	if (--u->refs > 0)
		return !u->freed;
	if (u->freed) {
		u->closing = 2;
		u->timer.data = u->tail.data = u;
		uv_close((uv_handle_t *) &u->timer, upload_timer_closed);
		uv_close((uv_handle_t *) &u->tail, upload_timer_closed);
		return false;
	}
	return true;
}

static void enter_state(struct fgw_upload *u, enum fgw_upload_state s)
{
	if (u->state != s)
		fgw_debug("upload %s: %s -> %s (next %" PRIu64 ", device %" PRIu64 ")",
			  fgw_smp_client_peer(u->client), state_to_string(u->state),
			  state_to_string(s), u->next_off, u->acked);
	u->state = s;
}

static void cancel_inflight(struct fgw_upload *u)
{
	for (unsigned i = 0; i < FGW_UPLOAD_MAX_WINDOW; i++)
		if (u->chunks[i].used)
			(void) fgw_smp_client_cancel(u->client, u->chunks[i].req_id);
}

/* Ends the run: every request in flight is cancelled first, then done_cb runs once. */
static void finish(struct fgw_upload *u, int err, const struct fgw_smp_status *st)
{
	struct fgw_upload_result res = {
	    .off = u->acked, .has_match = u->has_match, .match = u->match};
	fgw_upload_done_cb_t cb = u->done_cb;

	if (u->state == FGW_UPLOAD_STATE_IDLE)
		return;
	if (st)
		res.status = *st;
	enter_state(u, FGW_UPLOAD_STATE_IDLE);
	uv_timer_stop(&u->timer);
	uv_timer_stop(&u->tail);
	cancel_inflight(u);
	u->stats.acked = u->acked;
	u->stats.window_final = u->window;
	u->stats.elapsed_ms = fgw_now_ms() - u->started_ms;
	u->done_cb = NULL;
	upload_ref(u);
	cb(u, err, &res, u->user_data);
	upload_unref(u);
}

static unsigned timeout_for(struct fgw_upload *u, uint64_t off, size_t len)
{
	if (off == 0)
		/* The erase wait is for a device known to be there (issue 21 item 3). */
		return u->opts.device_silent && !u->answered ? u->opts.chunk_timeout_ms
							     : u->opts.first_timeout_ms;
	if (off + len >= u->img.len)
		return u->opts.last_timeout_ms;
	return u->opts.chunk_timeout_ms;
}

/* Data bytes for a chunk at @off: fills the packet, aligned unless it is the last. */
static size_t chunk_len(struct fgw_upload *u, uint64_t off)
{
	struct fgw_smp_upload_chunk c = {.image = u->img.image,
					 .total = u->img.len,
					 .off = off,
					 .sha = u->img.sha256,
					 .upgrade = u->img.upgrade};
	size_t max = fgw_smp_upload_max_data(&c, u->packet);
	uint64_t left = u->img.len - off;

	if (left <= max)
		return (size_t) left;
	return max - max % u->opts.align;
}

static void chunk_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data);

/* Sends the chunk at u->next_off. 0, or a negative errno (-ENOBUFS: queue full). */
static int send_chunk(struct fgw_upload *u)
{
	struct fgw_smp_upload_chunk c = {.image = u->img.image,
					 .total = u->img.len,
					 .off = u->next_off,
					 .sha = u->img.sha256,
					 .upgrade = u->img.upgrade};
	struct chunk *slot = NULL;
	struct fgw_buf *pkt;
	size_t len;
	int r;

	for (unsigned i = 0; i < FGW_UPLOAD_MAX_WINDOW && !slot; i++)
		if (!u->chunks[i].used)
			slot = &u->chunks[i];
	if (!slot)
		return -ENOBUFS;
	c.data_len = chunk_len(u, c.off);
	c.data = u->img.data + c.off;
	if (c.data_len == 0 ||
	    (c.off == 0 && c.data_len < FIRST_CHUNK_MIN && c.data_len < u->img.len))
		return -EMSGSIZE;
	/* The image bytes are copied once, from the mapped image into the packet; the client and
	 * the transport share that packet from here on. */
	pkt = fgw_buf_new(u->packet);
	if (!pkt)
		return -ENOMEM;
	r = fgw_smp_upload_encode(&c, fgw_buf_data(pkt), fgw_buf_capacity(pkt), &len);
	if (r < 0) {
		fgw_buf_unref(pkt);
		return r;
	}
	(void) fgw_buf_set_len(pkt, len);
	r = fgw_smp_client_send(u->client, pkt, timeout_for(u, c.off, c.data_len), chunk_rsp, slot,
				NULL, &slot->req_id);
	if (r < 0)
		return r;
	*slot = (struct chunk){.u = u,
			       .used = true,
			       .off = c.off,
			       .len = c.data_len,
			       .req_id = slot->req_id,
			       .sent_order = u->next_order++,
			       .sent_ms = fgw_now_ms(),
			       .resent = c.off < u->sent_end};
	u->inflight++;
	u->stats.chunks++;
	u->stats.bytes_sent += c.data_len;
	if (c.off < u->sent_end)
		u->stats.retransmissions++;
	u->sent_end = FGW_MAX(u->sent_end, c.off + c.data_len);
	u->next_off = c.off + c.data_len;
	return 0;
}

static void schedule_retry(struct fgw_upload *u, unsigned ms);
static void arm_tail(struct fgw_upload *u);

/* Keeps the window full while streaming. */
static void fill(struct fgw_upload *u)
{
	int r;

	while (u->state == FGW_UPLOAD_STATE_STREAMING && u->inflight < u->window &&
	       u->next_off < u->img.len) {
		r = send_chunk(u);
		if (r == -ENOBUFS) {
			/* The transport queue is full: answers will make room, or a timer will. */
			if (u->inflight == 0)
				schedule_retry(u, SEND_RETRY_MS);
			return;
		}
		if (r < 0) {
			finish(u, r, NULL);
			return;
		}
		u->stats.window = FGW_MAX(u->stats.window, u->inflight);
	}
	arm_tail(u);
}

/* Starts over from the device's offset: a first chunk alone at 0, else the window. */
static void resume_from_device(struct fgw_upload *u)
{
	int r;

	u->next_off = u->acked;
	if (u->acked == 0 || u->reprobe) {
		/* A first chunk (same sha) opens a new session or resumes the device's one. */
		u->reprobe = false;
		u->next_off = 0;
		enter_state(u, FGW_UPLOAD_STATE_PROBING);
		r = send_chunk(u);
		if (r == -ENOBUFS) {
			schedule_retry(u, SEND_RETRY_MS);
			return;
		}
		if (r < 0)
			finish(u, r, NULL);
		return;
	}
	enter_state(u, FGW_UPLOAD_STATE_STREAMING);
	fill(u);
}

static void retry_timer(uv_timer_t *t)
{
	struct fgw_upload *u = container_of(t, struct fgw_upload, timer);

	if (u->state != FGW_UPLOAD_STATE_BACKOFF)
		return;
	upload_ref(u);
	resume_from_device(u);
	upload_unref(u);
}

static void schedule_retry(struct fgw_upload *u, unsigned ms)
{
	int r;

	enter_state(u, FGW_UPLOAD_STATE_BACKOFF);
	r = uv_timer_start(&u->timer, retry_timer, ms, 0);
	if (r < 0)
		finish(u, r, NULL);
}

static struct chunk *final_chunk(struct fgw_upload *u)
{
	for (unsigned i = 0; i < FGW_UPLOAD_MAX_WINDOW; i++)
		if (u->chunks[i].used && u->chunks[i].off + u->chunks[i].len >= u->img.len &&
		    u->chunks[i].off > 0)
			return &u->chunks[i];
	return NULL;
}

/*
 * A lost final chunk has no later answer to show the gap. Once it is the only chunk in flight
 * its answer is due within about one round trip; twice that (and 20 ms for a loaded host)
 * without it, it is sent again. Harmless when it was only slow: the device works in order, so
 * the original's answer still comes first and ends the upload; a device that already finished
 * answers the copy with its own offset, which is then ignored.
 */
static void tail_timer(uv_timer_t *t)
{
	struct fgw_upload *u = container_of(t, struct fgw_upload, tail);
	struct chunk *k = final_chunk(u);

	if (!k || u->tail_resent || u->state != FGW_UPLOAD_STATE_STREAMING)
		return;
	upload_ref(u);
	u->tail_resent = true;
	u->stats.early_retransmits++;
	u->next_off = k->off;
	if (send_chunk(u) == 0)
		fgw_debug("upload %s: final chunk overdue, sent again",
			  fgw_smp_client_peer(u->client));
	upload_unref(u);
}

static void arm_tail(struct fgw_upload *u)
{
	if (u->tail_resent || u->srtt_ms <= 0 || u->inflight != 1 || !final_chunk(u) ||
	    u->state != FGW_UPLOAD_STATE_STREAMING || uv_is_active((uv_handle_t *) &u->tail))
		return;
	(void) uv_timer_start(&u->tail, tail_timer, (uint64_t) (2.0 * u->srtt_ms) + 20, 0);
}

/* ---- answers ---- */

/* The device's offset differs from the prediction: stop sending, continue from it. */
static void enter_resync(struct fgw_upload *u)
{
	if (u->state != FGW_UPLOAD_STATE_RESYNC)
		u->stats.resyncs++;
	enter_state(u, FGW_UPLOAD_STATE_RESYNC);
	uv_timer_stop(&u->tail);
	/* A device that keeps refusing the same offset will not change its mind. */
	if (u->acked == u->resync_off) {
		if (++u->same_off_failures >= u->opts.max_failures)
			finish(u, u->timeouts_in_row ? -ETIMEDOUT : -EPROTO, NULL);
	} else {
		u->resync_off = u->acked;
		u->same_off_failures = 0;
	}
}

/*
 * In resync, decide how to go on. After a lost chunk or rc 2 the device's offset is known and
 * the chunks still in flight only hold buffers on the device: resend from the offset as soon as
 * the narrowed window has room. After busy, a timeout or a refusal, wait for the drain (and a
 * back-off): the device needs time, not more requests.
 */
static void after_answer(struct fgw_upload *u)
{
	unsigned ms;

	if (u->freed || u->state != FGW_UPLOAD_STATE_RESYNC)
		return;
	if (!u->drain) {
		if (u->inflight < u->window)
			resume_from_device(u);
		return;
	}
	if (u->inflight > 0)
		return;
	ms = u->backoff_ms ? u->backoff_ms : u->busy ? u->opts.busy_retry_ms : 0;
	u->drain = u->busy = false;
	u->backoff_ms = 0;
	if (ms)
		schedule_retry(u, ms);
	else
		resume_from_device(u);
}

/* Waits until nothing is in flight, then @ms, before going on from the device's offset. */
static void drain_then(struct fgw_upload *u, unsigned ms)
{
	u->drain = true;
	u->backoff_ms = FGW_MAX(u->backoff_ms, ms);
	enter_resync(u);
}

/*
 * Responses come back in the order the device worked through the requests. So when chunk j
 * answers, every chunk sent before j that is still waiting has lost its request or its
 * answer: waiting for its timeout would stall the window for nothing. If its data arrived,
 * j's offset covers it; if not, j's offset shows the gap.
 */
static void drop_older(struct fgw_upload *u, uint64_t order)
{
	for (unsigned i = 0; i < FGW_UPLOAD_MAX_WINDOW; i++) {
		struct chunk *k = &u->chunks[i];

		if (k->used && k->sent_order < order) {
			u->stats.lost++;
			k->used = false; /* chunk_rsp sees -ECANCELED for an unused slot: ignored */
			u->inflight--;
			(void) fgw_smp_client_cancel(u->client, k->req_id);
		}
	}
}

static void report_progress(struct fgw_upload *u)
{
	uint64_t ms = fgw_now_ms() - u->started_ms;
	double rate = ms ? (double) (u->best - u->stats.start_off) * 1000.0 / (double) ms : 0.0;

	if (u->progress_cb)
		u->progress_cb(u, u->best, u->img.len, rate, u->user_data);
}

/* rc 10 (busy) or rc 2 (no SMP buffer for the answer: the request was not handled). */
static void on_refusal(struct fgw_upload *u, struct chunk *k, const struct fgw_smp_rsp *rsp)
{
	if (rsp->status.rc != FGW_SMP_RC_ENOMEM || fgw_smp_status_is_busy(&rsp->status)) {
		/* rc 10: the device (or an app hook) asks to come back later. */
		u->stats.busy++;
		u->busy = true;
		drain_then(u, u->opts.busy_retry_ms);
		return;
	}
	u->stats.nomem++;
	if (upload_is_stale(u, k) && u->state == FGW_UPLOAD_STATE_RESYNC)
		return; /* already narrowed for this one */
	if (u->window == 1) {
		/* Nothing of ours fills the pool: another transport or the app holds it. */
		if (++u->nomem_in_row >= u->opts.max_failures) {
			finish(u, -ENOMEM, &rsp->status);
			return;
		}
		upload_narrow(u, "rc 2 (ENOMEM)");
		drain_then(u, u->opts.busy_retry_ms);
		return;
	}
	upload_narrow(u, "rc 2 (ENOMEM)");
	enter_resync(u);
}

/* The device's word on its offset (and image check): the truth from now on. */
static void note_offset(struct fgw_upload *u, const struct chunk *k,
			const struct fgw_smp_upload_rsp *ur)
{
	bool was_probe = k->off == 0;
	bool final_again = k->resent && k->off > 0 && k->off + k->len >= u->img.len;

	if (ur->off < u->acked && (ur->off == 0 || was_probe)) {
		/* The device lost its session (it rebooted without keeping it): from 0 again. But a
		 * device that got the final chunk ended its session with it (§4.3): when that
		 * answer was lost, the copy gets off 0 too. Only the probe can tell: a device
		 * holding the image answers it with off len, a new session with the probe's end. */
		if (ur->off == 0 && final_again)
			u->restart_unsure = true;
		else
			u->stats.restarts++;
	} else if (was_probe && u->restart_unsure) {
		u->restart_unsure = false;
		if (ur->off < u->img.len)
			u->stats.restarts++;
	}
	u->acked = ur->off;
	if (ur->has_match) {
		u->has_match = true;
		u->match = ur->match;
	}
	if (was_probe && !u->probed) {
		/* A resumed session answers the probe with its own offset, a new one with ours. */
		u->probed = true;
		u->stats.first_ms = fgw_now_ms() - u->started_ms;
		u->stats.start_off = ur->off == k->off + k->len ? 0 : ur->off;
	}
}

static void on_answer(struct fgw_upload *u, struct chunk *k, const struct fgw_smp_rsp *rsp)
{
	const struct fgw_smp_upload_rsp ur = rsp->upload; /* decoded once, by the client */
	bool was_probe = k->off == 0;
	uint64_t expected = k->off + k->len;

	u->answered = true;
	if (!fgw_smp_status_ok(&rsp->status)) {
		if (fgw_smp_status_is_busy(&rsp->status) || rsp->status.rc == FGW_SMP_RC_ENOMEM) {
			on_refusal(u, k, rsp);
			return;
		}
		finish(u, -EREMOTEIO, &rsp->status);
		return;
	}
	if (!ur.has_off || ur.off > u->img.len) {
		finish(u, -EPROTO, NULL);
		return;
	}
	note_offset(u, k, &ur);
	if (ur.off > u->best || was_probe) {
		if (ur.off > u->best)
			u->timeouts_in_row = 0;
		u->best = FGW_MAX(u->best, ur.off);
		report_progress(u);
		if (u->freed || u->state == FGW_UPLOAD_STATE_IDLE)
			return;
	}
	if (ur.off == u->img.len) {
		if (ur.has_match && !ur.match) {
			finish(u, -EILSEQ, NULL);
			return;
		}
		finish(u, 0, NULL);
		return;
	}
	switch (u->state) {
	case FGW_UPLOAD_STATE_PROBING:
		/* The first answer says where the session stands: continue from there. */
		if (ur.off == 0) {
			enter_resync(u);
			return;
		}
		u->next_off = ur.off;
		enter_state(u, FGW_UPLOAD_STATE_STREAMING);
		fill(u);
		return;
	case FGW_UPLOAD_STATE_STREAMING:
	case FGW_UPLOAD_STATE_RESYNC:
		if (upload_is_stale(u, k))
			return; /* the device's answer to something sent before the last loss */
		if (ur.off == expected) {
			upload_rtt_sample(u, k);
			upload_widen(u);
			if (u->state == FGW_UPLOAD_STATE_STREAMING)
				fill(u);
			return;
		}
		/* A gap: a chunk before this one never reached the device. Resend from its off.
		 * (Ahead: the device had more than we sent; go on from there.) The chunks still in
		 * flight will answer the same: not news. */
		if (ur.off < expected)
			upload_narrow(u, "lost chunk");
		u->stale_before = u->next_order;
		enter_resync(u);
		return;
	case FGW_UPLOAD_STATE_BACKOFF:
	case FGW_UPLOAD_STATE_IDLE:
	case _FGW_UPLOAD_STATE_MAX:
	case _FGW_UPLOAD_STATE_INVALID:
		return;
	}
}

/* No answer: lost, unreadable, or nothing listens. */
static void on_silence(struct fgw_upload *u, struct chunk *k, int err)
{
	u->stats.timeouts++;
	if (err == -ECONNREFUSED && !u->answered) {
		finish(u, err, NULL); /* nothing ever answered: nobody is there */
		return;
	}
	if ((k->off > 0 && u->acked >= k->off + k->len) || upload_is_stale(u, k) ||
	    (u->state == FGW_UPLOAD_STATE_RESYNC && u->drain)) {
		/* Covered by a later answer, sent before a loss already dealt with, or one
		 * silence already being dealt with. A first chunk is never covered: it is the
		 * probe we are waiting on. */
		return;
	}
	if (++u->timeouts_in_row >= u->opts.max_timeouts) {
		finish(u, err == -ECONNREFUSED ? err : -ETIMEDOUT, NULL);
		return;
	}
	if (k->off > 0)
		upload_narrow(u, "timeout");
	/* A device that went silent may have lost our session: re-probe (same sha) to learn its
	 * offset rather than guess at it. A refusal (UDP: the device restarting) comes at once:
	 * wait a chunk timeout before the next try. */
	u->reprobe = u->timeouts_in_row > 1;
	drain_then(u, err == -ECONNREFUSED ? u->opts.chunk_timeout_ms : 0);
}

static void chunk_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct chunk *k = user_data;
	struct fgw_upload *u = k->u;

	if (!k->used || !u || u->state == FGW_UPLOAD_STATE_IDLE) {
		/* Cancelled by us (finish() or drop_older()): nothing left to do. */
		if (k->used && u) {
			k->used = false;
			u->inflight--;
		}
		return;
	}
	k->used = false;
	u->inflight--;
	upload_ref(u);
	if (err == 0) {
		drop_older(u, k->sent_order);
		on_answer(u, k, rsp);
	} else if (err == -ETIMEDOUT || err == -EBADMSG || err == -ECONNREFUSED) {
		/* -EBADMSG: an answer we could not read is as good as none. */
		on_silence(u, k, err);
	} else {
		/* Link lost or cancelled underneath us: the caller reconnects and resumes. */
		finish(u, err, NULL);
	}
	if (!u->freed && u->state == FGW_UPLOAD_STATE_RESYNC)
		after_answer(u);
	else if (!u->freed && u->state == FGW_UPLOAD_STATE_STREAMING)
		fill(u);
	upload_unref(u);
}

FGW_EXPORT int fgw_upload_new(uv_loop_t *loop, struct fgw_smp_client *c, struct fgw_upload **ret)
{
	struct fgw_upload *u;
	int r;

	if (!loop || !c || !ret)
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	r = uv_timer_init(loop, &u->timer);
	if (r < 0) {
		free(u);
		return r;
	}
	r = uv_timer_init(loop, &u->tail);
	if (r < 0) {
		/* the first timer is a loop handle now: it goes the asynchronous way */
		u->closing = 1;
		u->timer.data = u;
		uv_close((uv_handle_t *) &u->timer, upload_timer_closed);
		return r;
	}
	u->loop = loop;
	u->client = c;
	*ret = u;
	return 0;
}

FGW_EXPORT struct fgw_upload *fgw_upload_free(struct fgw_upload *u)
{
	if (!u || u->freed)
		return NULL;
	upload_ref(u);
	u->freed = true;
	finish(u, -ECANCELED, NULL);
	upload_unref(u);
	return NULL;
}

/*
 * Packet size: the device's buffer, else (no mcumgr params) one link frame as Nordic's
 * libraries assume, and never more than the transport (and client) accept.
 */
static size_t packet_size(struct fgw_upload *u, const struct fgw_upload_opts *o)
{
	size_t frame = fgw_smp_client_frame_size(u->client);
	size_t packet = o->buf_size ? o->buf_size : frame;

	packet = FGW_MIN(packet, fgw_smp_client_max_packet(u->client));
	/*
	 * Where the transport splits a packet into link frames (BLE writes of MTU-3), a packet
	 * ending in a short runt write pays a whole link slot for a few bytes: 2475 bytes at
	 * MTU 247 are 10 writes and a 35-byte one. Drop a runt shorter than half a frame; a
	 * nearly full last frame (2475 at 510-byte writes: 435) is worth its slot.
	 */
	if (fgw_smp_client_splits_packets(u->client) && packet > frame &&
	    packet % frame < frame / 2)
		packet -= packet % frame;
	return packet;
}

FGW_EXPORT int fgw_upload_start(struct fgw_upload *u, const struct fgw_upload_image *img,
				uint64_t offset, const struct fgw_upload_opts *opts,
				fgw_upload_progress_cb_t progress_cb, fgw_upload_done_cb_t done_cb,
				void *user_data)
{
	struct fgw_upload_opts o;
	size_t packet;
	int r;

	if (!u || !img || !img->data || img->len == 0 || !done_cb || offset > img->len)
		return -EINVAL;
	if (u->state != FGW_UPLOAD_STATE_IDLE)
		return -EBUSY;
	if (!fgw_smp_client_is_open(u->client))
		return -ENOTCONN;
	if (opts)
		o = *opts;
	else
		fgw_upload_opts_init(&o);
	if (o.align == 0)
		o.align = 1;
	if (o.max_failures == 0)
		o.max_failures = 1;
	if (o.max_timeouts == 0)
		o.max_timeouts = 1;
	packet = packet_size(u, &o);
	u->packet = packet;
	u->img = *img;
	u->opts = o;
	{
		struct fgw_smp_upload_chunk first = {
		    .image = img->image, .total = img->len, .off = 0, .sha = img->sha256};
		size_t d = fgw_smp_upload_max_data(&first, packet);

		if (d < FGW_MIN((size_t) FIRST_CHUNK_MIN, img->len))
			return -EMSGSIZE;
	}
	upload_window_init(u, &o);
	u->progress_cb = progress_cb;
	u->done_cb = done_cb;
	u->user_data = user_data;
	memset(&u->stats, 0, sizeof(u->stats));
	memset(u->chunks, 0, sizeof(u->chunks));
	u->inflight = 0;
	u->next_off = 0;
	u->sent_end = offset;
	u->acked = offset;
	u->best = offset;
	u->resync_off = UINT64_MAX;
	u->same_off_failures = 0;
	u->timeouts_in_row = 0;
	u->busy = u->reprobe = u->has_match = u->match = u->probed = false;
	u->answered = u->drain = u->tail_resent = u->restart_unsure = false;
	u->backoff_ms = 0;
	u->started_ms = fgw_now_ms();
	u->stats.total = img->len;
	u->stats.start_off = offset;
	u->stats.packet_size = packet;
	u->stats.window = u->window;
	u->stats.window_limit = u->limit;
	u->stats.window_clamped = o.window > u->limit;
	{
		struct fgw_smp_upload_chunk mid = {
		    .image = img->image, .total = img->len, .off = img->len > 1 ? img->len - 1 : 1};
		size_t d = fgw_smp_upload_max_data(&mid, packet);

		u->stats.chunk_size = d - d % o.align;
	}
	enter_state(u, FGW_UPLOAD_STATE_PROBING);
	r = send_chunk(u);
	if (r < 0) {
		enter_state(u, FGW_UPLOAD_STATE_IDLE);
		u->done_cb = NULL;
		return r;
	}
	return 0;
}

FGW_EXPORT void fgw_upload_cancel(struct fgw_upload *u)
{
	if (u)
		finish(u, -ECANCELED, NULL);
}

FGW_EXPORT bool fgw_upload_is_running(struct fgw_upload *u)
{
	return u->state != FGW_UPLOAD_STATE_IDLE;
}

FGW_EXPORT void fgw_upload_get_stats(struct fgw_upload *u, struct fgw_upload_stats *ret)
{
	*ret = u->stats;
	ret->acked = u->acked;
	if (u->state != FGW_UPLOAD_STATE_IDLE)
		ret->elapsed_ms = fgw_now_ms() - u->started_ms;
}
