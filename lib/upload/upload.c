/*
 * The pipelined upload engine. See upload.h for the contract and protocol-notes §7.5 for the
 * algorithm it follows; the comments here say why each rule is what it is.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "upload.h"
#include "transport.h"
#include "util.h"

/* An MCUboot header is 32 bytes; Zephyr refuses a first chunk shorter than that (err 22). */
#define FIRST_CHUNK_MIN 32
/* Retry after the transport's send queue was full and nothing is in flight to wait for. */
#define SEND_RETRY_MS 5

struct chunk {
	struct fgw_upload *u;
	bool used;
	uint64_t off;
	size_t len;
	uint64_t req_id;
	uint64_t sent_order; /* responses come back in this order (the device works in order) */
	uint64_t sent_ms;
};

struct fgw_upload {
	uv_loop_t *loop;
	struct fgw_smp_client *client;
	uv_timer_t timer; /* back-off */
	uv_timer_t tail;  /* the final chunk's answer is overdue: send it again */
	enum fgw_upload_state state;
	struct fgw_upload_image img;
	struct fgw_upload_opts opts;
	fgw_upload_progress_cb_t progress_cb;
	fgw_upload_done_cb_t done_cb;
	void *user_data;

	struct chunk chunks[FGW_UPLOAD_MAX_WINDOW];
	unsigned inflight;
	uint64_t next_order;
	uint64_t next_off;   /* the next chunk to send */
	uint64_t sent_end;   /* highest byte ever sent, for counting retransmissions */
	uint64_t acked;	     /* the device's last word on its offset */
	uint64_t best;	     /* highest acked this run: progress */
	uint64_t resync_off; /* offset of the last resync, to spot a device stuck on it */
	unsigned same_off_failures;
	unsigned timeouts_in_row;
	bool busy;
	bool reprobe; /* after timeouts, continue with a first chunk (resume probe) */
	bool has_match, match;
	bool probed;   /* the first answer of this run came in */
	bool answered; /* the device answered anything this run */
	bool drain;    /* in resync: wait until nothing is in flight (busy, timeout, refusal) */
	unsigned backoff_ms; /* then wait this long before going on */
	uint64_t started_ms;
	size_t packet;
	/* the adaptive window (see upload.h) */
	unsigned window;      /* chunks in flight at most, now */
	unsigned limit;	      /* never above: fgw_upload_window_limit() */
	unsigned ceiling;     /* a window that lost is not tried again for a while */
	unsigned clean;	      /* answers without loss since the window last changed */
	unsigned probe_after; /* clean answers at the ceiling before trying one more */
	unsigned nomem_in_row;
	uint64_t stale_before; /* chunks sent before this order predate the last loss */
	bool tail_resent;
	double srtt_ms; /* smoothed send-to-answer time of chunks; 0: no sample yet */
	struct fgw_upload_stats stats;

	unsigned refs;
	unsigned closing;
	bool freed;
};

static const char *const state_names[_FGW_UPLOAD_STATE_MAX] = {
    [FGW_UPLOAD_STATE_IDLE] = "idle",		[FGW_UPLOAD_STATE_PROBING] = "probing",
    [FGW_UPLOAD_STATE_STREAMING] = "streaming", [FGW_UPLOAD_STATE_RESYNC] = "resync",
    [FGW_UPLOAD_STATE_BACKOFF] = "backoff",
};

FGW_EXPORT const char *fgw_upload_state_to_string(enum fgw_upload_state s)
{
	if ((int) s < 0 || s >= _FGW_UPLOAD_STATE_MAX)
		return NULL;
	return state_names[s];
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
			  fgw_transport_peer(fgw_smp_client_transport(u->client)),
			  fgw_upload_state_to_string(u->state), fgw_upload_state_to_string(s),
			  u->next_off, u->acked);
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
	struct fgw_smp_upload_chunk c = {
	    .image = u->img.image, .total = u->img.len, .off = off, .sha = u->img.sha256};
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
	struct fgw_smp_upload_chunk c = {
	    .image = u->img.image, .total = u->img.len, .off = u->next_off, .sha = u->img.sha256};
	struct fgw_smp_req req;
	struct chunk *slot = NULL;
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
	r = fgw_smp_req_img_upload(&c, &req);
	if (r < 0)
		return r;
	r = fgw_smp_client_request(u->client, &req, timeout_for(u, c.off, c.data_len), chunk_rsp,
				   slot, NULL, &slot->req_id);
	fgw_smp_req_done(&req);
	if (r < 0)
		return r;
	*slot = (struct chunk){.u = u,
			       .used = true,
			       .off = c.off,
			       .len = c.data_len,
			       .req_id = slot->req_id,
			       .sent_order = u->next_order++,
			       .sent_ms = fgw_now_ms()};
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

/* ---- the window ---- */

/* Chunks sent before the last loss are answered with what the device knew then: not news. */
static bool is_stale(struct fgw_upload *u, const struct chunk *k)
{
	return k->sent_order < u->stale_before;
}

/*
 * A lost chunk, a timeout or rc 2: the device ran out of buffers (or the link lost a
 * packet). Halve at once, and do not try the window that lost again for a while: with
 * Zephyr's pool the loss repeats at the same window.
 */
static void narrow(struct fgw_upload *u, const char *why)
{
	unsigned lost_at = u->window;

	u->stats.narrowed++;
	if (u->window >= u->ceiling && u->ceiling < u->limit)
		u->probe_after =
		    FGW_MIN(u->probe_after * 2, 1024u); /* a failed probe: wait longer */
	u->ceiling = FGW_MAX(lost_at > 1 ? lost_at - 1 : 1, 1u);
	u->window = FGW_MAX(u->window / 2, 1u);
	u->clean = 0;
	u->stale_before = u->next_order;
	fgw_debug("upload %s: %s at window %u: window %u, ceiling %u",
		  fgw_transport_peer(fgw_smp_client_transport(u->client)), why, lost_at, u->window,
		  u->ceiling);
}

/* An answer in order, without loss: after a whole window of them, one more in flight. */
static void widen(struct fgw_upload *u)
{
	u->nomem_in_row = 0;
	if (++u->clean < u->window)
		return;
	if (u->window < u->ceiling) {
		u->window++;
		u->clean = 0;
	} else if (u->ceiling < u->limit && u->clean >= u->probe_after) {
		/* The loss that set the ceiling may have been the radio's: try again, rarely. */
		u->ceiling++;
		u->window++;
		u->clean = 0;
	}
}

static void rtt_sample(struct fgw_upload *u, const struct chunk *k)
{
	double ms = (double) (fgw_now_ms() - k->sent_ms);

	if (k->off == 0 || k->off + k->len >= u->img.len)
		return; /* erase and image check times say nothing about the link */
	u->srtt_ms = u->srtt_ms > 0 ? u->srtt_ms * 0.875 + ms * 0.125 : ms;
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
			  fgw_transport_peer(fgw_smp_client_transport(u->client)));
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
	if (is_stale(u, k) && u->state == FGW_UPLOAD_STATE_RESYNC)
		return; /* already narrowed for this one */
	if (u->window == 1) {
		/* Nothing of ours fills the pool: another transport or the app holds it. */
		if (++u->nomem_in_row >= u->opts.max_failures) {
			finish(u, -ENOMEM, &rsp->status);
			return;
		}
		narrow(u, "rc 2 (ENOMEM)");
		drain_then(u, u->opts.busy_retry_ms);
		return;
	}
	narrow(u, "rc 2 (ENOMEM)");
	enter_resync(u);
}

static void on_answer(struct fgw_upload *u, struct chunk *k, const struct fgw_smp_rsp *rsp)
{
	struct fgw_smp_upload_rsp ur;
	bool was_probe = k->off == 0;
	uint64_t expected = k->off + k->len;
	int r;

	u->answered = true;
	if (!fgw_smp_status_ok(&rsp->status)) {
		if (fgw_smp_status_is_busy(&rsp->status) || rsp->status.rc == FGW_SMP_RC_ENOMEM) {
			on_refusal(u, k, rsp);
			return;
		}
		finish(u, -EREMOTEIO, &rsp->status);
		return;
	}
	r = fgw_smp_upload_rsp_decode(rsp->payload, rsp->len, &ur);
	if (r < 0 || !ur.has_off || ur.off > u->img.len) {
		finish(u, -EPROTO, NULL);
		return;
	}
	if (ur.off < u->acked && (ur.off == 0 || was_probe)) {
		/* The device lost its session (it rebooted without keeping it): from 0 again. */
		u->stats.restarts++;
	}
	u->acked = ur.off;
	if (ur.has_match) {
		u->has_match = true;
		u->match = ur.match;
	}
	if (was_probe && !u->probed) {
		/* A resumed session answers the probe with its own offset, a new one with ours. */
		u->probed = true;
		u->stats.first_ms = fgw_now_ms() - u->started_ms;
		u->stats.start_off = ur.off == expected ? 0 : ur.off;
	}
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
		if (is_stale(u, k))
			return; /* the device's answer to something sent before the last loss */
		if (ur.off == expected) {
			rtt_sample(u, k);
			widen(u);
			if (u->state == FGW_UPLOAD_STATE_STREAMING)
				fill(u);
			return;
		}
		/* A gap: a chunk before this one never reached the device. Resend from its off.
		 * (Ahead: the device had more than we sent; go on from there.) The chunks still in
		 * flight will answer the same: not news. */
		if (ur.off < expected)
			narrow(u, "lost chunk");
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
	if ((k->off > 0 && u->acked >= k->off + k->len) || is_stale(u, k) ||
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
		narrow(u, "timeout");
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

FGW_EXPORT unsigned fgw_upload_window_limit(const struct fgw_upload_opts *o)
{
	unsigned w = o->window ? o->window : o->window_cap ? o->window_cap : FGW_UPLOAD_MAX_WINDOW;

	/* Zephyr answers from the same pool of buf_count buffers its requests wait in. */
	if (o->buf_count > 0)
		w = FGW_MIN(w, o->buf_count > 1 ? o->buf_count - 1 : 1);
	else if (!o->window)
		w = 1; /* no params: nothing says the device has a second buffer */
	return FGW_MIN(FGW_MAX(w, 1u), (unsigned) FGW_UPLOAD_MAX_WINDOW);
}

/* Adaptive from 1, or the caller's window (clamped); see upload.h. */
static void window_init(struct fgw_upload *u, const struct fgw_upload_opts *o)
{
	u->limit = fgw_upload_window_limit(o);
	u->window = o->window ? u->limit : 1;
	u->ceiling = u->limit;
	u->clean = 0;
	/* Over BLE the link layer retransmits: a lost chunk is the device's pool, and a probe
	 * above the ceiling costs a loss (the chunk and those behind it). Rarely, then. */
	u->probe_after = 256;
	u->nomem_in_row = 0;
	u->stale_before = 0;
	u->srtt_ms = 0;
}

FGW_EXPORT int fgw_upload_start(struct fgw_upload *u, const struct fgw_upload_image *img,
				uint64_t offset, const struct fgw_upload_opts *opts,
				fgw_upload_progress_cb_t progress_cb, fgw_upload_done_cb_t done_cb,
				void *user_data)
{
	struct fgw_transport *t;
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
	t = fgw_smp_client_transport(u->client);
	/*
	 * Packet size: the device's buffer, else (no mcumgr params) one link frame as Nordic's
	 * libraries assume, and never more than the transport (and client) accept.
	 */
	packet = o.buf_size ? o.buf_size : fgw_transport_mtu(t);
	packet = FGW_MIN(packet, fgw_smp_client_max_packet(u->client));
	/*
	 * Where the transport splits a packet into link frames (BLE writes of MTU-3), a packet
	 * ending in a short runt write pays a whole link slot for a few bytes: 2475 bytes at
	 * MTU 247 are 10 writes and a 35-byte one. Drop a runt shorter than half a frame; a
	 * nearly full last frame (2475 at 510-byte writes: 435) is worth its slot.
	 */
	if (fgw_transport_max_packet(t) > fgw_transport_mtu(t) && packet > fgw_transport_mtu(t) &&
	    packet % fgw_transport_mtu(t) < fgw_transport_mtu(t) / 2)
		packet -= packet % fgw_transport_mtu(t);
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
	window_init(u, &o);
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
	u->answered = u->drain = u->tail_resent = false;
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

FGW_EXPORT enum fgw_upload_state fgw_upload_get_state(struct fgw_upload *u)
{
	return u->state;
}

FGW_EXPORT void fgw_upload_get_stats(struct fgw_upload *u, struct fgw_upload_stats *ret)
{
	*ret = u->stats;
	ret->acked = u->acked;
	if (u->state != FGW_UPLOAD_STATE_IDLE)
		ret->elapsed_ms = fgw_now_ms() - u->started_ms;
}
