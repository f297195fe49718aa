/*
 * The SMP client: requests out through a transport, responses matched back by sequence number
 * (protocol-notes §1.6), one uv timer per request. Callbacks follow style.md §6; a callback may
 * free the client, so every call-out is bracketed by a reference.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smp-client.h"
#include "smp-private.h"
#include "transport.h"

#define DEFAULT_TIMEOUT_MS 10000
/* Responses are bounded by the device's buf_size; this caps what we gather before params. */
#define MIN_RX_PACKET 8192

struct smp_pending {
	struct fgw_smp_client *c; /* NULL once finished */
	uv_timer_t timer;
	uint64_t id;
	uint8_t seq;
	uint8_t version; /* the version the request went out with */
	bool resent;	 /* already resent after a version fallback */
	unsigned timeout_ms;
	uint8_t op, cmd; /* of the request, for matching its answer */
	uint16_t group;
	struct fgw_buf *pkt; /* the packed request, kept (not copied) for a resend */
	fgw_smp_rsp_cb_t cb;
	void *user_data;
	fgw_destroy_cb_t destroy;
};

struct fgw_smp_client {
	uv_loop_t *loop;
	struct fgw_transport *t;
	struct fgw_smp_reasm *reasm;
	struct smp_pending *inflight[256];
	size_t n_inflight;
	uint8_t next_seq;
	uint64_t next_id;
	uint8_t version;
	size_t max_packet; /* 0 = the transport's */
	bool open;
	fgw_smp_state_cb_t state_cb;
	void *user_data;
	unsigned refs;
	bool freed;
	struct fgw_smp_client_stats stats;
};

static void client_ref(struct fgw_smp_client *c)
{
	c->refs++;
}

/* Returns true if the client is still usable after the call-out. */
static bool client_unref(struct fgw_smp_client *c)
{
	if (--c->refs > 0)
		return !c->freed;
	if (c->freed) {
		fgw_smp_reasm_free(c->reasm);
		free(c);
		return false;
	}
	return true;
}

static void pending_closed(uv_handle_t *h)
{
	struct smp_pending *p = container_of(h, struct smp_pending, timer);

	fgw_buf_unref(p->pkt);
	free(p);
}

/* Takes @p out of the table and calls its callback once; @p is released afterwards. */
static void pending_finish(struct smp_pending *p, int err, const struct fgw_smp_rsp *rsp)
{
	struct fgw_smp_client *c = p->c;

	if (!c)
		return;
	if (c->inflight[p->seq] == p) {
		c->inflight[p->seq] = NULL;
		c->n_inflight--;
	}
	p->c = NULL;
	uv_timer_stop(&p->timer);
	client_ref(c);
	p->cb(err, rsp, p->user_data);
	if (p->destroy)
		p->destroy(p->user_data);
	uv_close((uv_handle_t *) &p->timer, pending_closed);
	client_unref(c);
}

/* Ends every request in flight with @err. */
static void fail_all(struct fgw_smp_client *c, int err)
{
	client_ref(c);
	for (unsigned i = 0; i < ARRAY_SIZE(c->inflight); i++)
		if (c->inflight[i])
			pending_finish(c->inflight[i], err, NULL);
	client_unref(c);
}

static void pending_timeout(uv_timer_t *t);

/*
 * A packet the transport still holds (queued writes of an earlier send) must not change under
 * it: a resend with another version then goes out from a fresh copy. Happens at most once per
 * request, on a version fallback.
 */
static int pending_own(struct smp_pending *p)
{
	struct fgw_buf *b;

	if (!fgw_buf_shared(p->pkt))
		return 0;
	b = fgw_buf_new(fgw_buf_len(p->pkt));
	if (!b)
		return -ENOMEM;
	memcpy(fgw_buf_data(b), fgw_buf_data(p->pkt), fgw_buf_len(p->pkt));
	(void) fgw_buf_set_len(b, fgw_buf_len(p->pkt));
	fgw_buf_unref(p->pkt);
	p->pkt = b;
	return 0;
}

static int pending_send(struct fgw_smp_client *c, struct smp_pending *p)
{
	size_t len = fgw_buf_len(p->pkt);
	int r;

	if (len > fgw_smp_client_max_packet(c))
		return -EMSGSIZE;
	r = pending_own(p);
	if (r < 0)
		return r;
	fgw_smp_hdr_stamp(fgw_buf_data(p->pkt), p->version, p->seq);
	r = fgw_transport_send(c->t, p->pkt);
	if (r < 0)
		return r;
	c->stats.tx_packets++;
	fgw_debug("smp tx %s: %s group %u id %u seq %u len %zu", fgw_transport_peer(c->t),
		  fgw_smp_op_to_string(p->op), p->group, p->cmd, p->seq, len);
	return uv_timer_start(&p->timer, pending_timeout, p->timeout_ms, 0);
}

static void pending_timeout(uv_timer_t *t)
{
	struct smp_pending *p = container_of(t, struct smp_pending, timer);

	if (p->c) {
		p->c->stats.timeouts++;
		fgw_debug("smp timeout: group %u id %u seq %u after %u ms", p->group, p->cmd,
			  p->seq, p->timeout_ms);
	}
	pending_finish(p, -ETIMEDOUT, NULL);
}

/*
 * Version negotiation (see smp.h). Returns true if @p was resent and stays in flight.
 * Zephyr answers a v1 request with rc 12 only when built without original-protocol support,
 * and no Zephyr answers a v2 request with rc 13; firmware from before SMP v2 ignores the
 * version bits and answers with a v1 header, which the caller notices from the header.
 */
static bool version_fallback(struct fgw_smp_client *c, struct smp_pending *p,
			     const struct fgw_smp_status *st)
{
	uint8_t to;
	int r;

	if (p->resent || st->has_err)
		return false;
	if (st->rc == FGW_SMP_RC_UNSUPPORTED_TOO_OLD && p->version == FGW_SMP_V1)
		to = FGW_SMP_V2;
	else if (st->rc == FGW_SMP_RC_UNSUPPORTED_TOO_NEW && p->version == FGW_SMP_V2)
		to = FGW_SMP_V1;
	else
		return false;
	fgw_info("SMP device %s refused SMP v%u (rc %d), switching to v%u",
		 fgw_transport_peer(c->t), p->version + 1, (int) st->rc, to + 1);
	c->version = to;
	p->version = to;
	p->resent = true;
	uv_timer_stop(&p->timer);
	r = pending_send(c, p);
	if (r < 0) {
		pending_finish(p, r, NULL);
		return true;
	}
	return true;
}

static void handle_packet(struct fgw_smp_client *c, const struct fgw_smp_hdr *h,
			  const uint8_t *payload)
{
	struct smp_pending *p = c->inflight[h->seq];
	struct fgw_smp_rsp rsp = {.hdr = *h, .payload = payload, .len = h->len};
	int r;

	c->stats.rx_packets++;
	if (!p || h->op != p->op + 1 || h->group != p->group || h->id != p->cmd) {
		/* A late answer to a request that timed out, or not ours: ignore it. */
		c->stats.stray++;
		fgw_debug("smp rx %s: stray %s group %u id %u seq %u", fgw_transport_peer(c->t),
			  fgw_smp_op_to_string(h->op), h->group, h->id, h->seq);
		return;
	}
	/* One pass over the answer: the upload engine reads off/match from it, not again. */
	r = fgw_smp_rsp_decode(
	    payload, h->len, &rsp.status,
	    h->group == FGW_SMP_GROUP_IMAGE && h->id == FGW_SMP_IMG_UPLOAD ? &rsp.upload : NULL);
	if (r < 0) {
		c->stats.bad++;
		pending_finish(p, -EBADMSG, NULL);
		return;
	}
	if (h->version < p->version && c->version > h->version) {
		fgw_info("SMP device %s answers in SMP v%u, switching to it",
			 fgw_transport_peer(c->t), h->version + 1);
		c->version = h->version;
	}
	if (version_fallback(c, p, &rsp.status))
		return;
	pending_finish(p, 0, &rsp);
}

static void on_rx(struct fgw_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	struct fgw_smp_client *c = user_data;
	struct fgw_smp_hdr h;
	const uint8_t *payload;
	int r;

	client_ref(c);
	fgw_smp_reasm_feed(c->reasm, data, len);
	while (!c->freed) {
		r = fgw_smp_reasm_next(c->reasm, &h, &payload);
		if (r == 0)
			break;
		if (r < 0) {
			c->stats.bad++;
			fgw_debug("smp rx %s: frame of %zu bytes dropped: %s",
				  fgw_transport_peer(t), len, strerror(-r));
			break;
		}
		handle_packet(c, &h, payload);
	}
	client_unref(c);
}

static void on_state(struct fgw_transport *t, int err, void *user_data)
{
	struct fgw_smp_client *c = user_data;

	client_ref(c);
	if (err == -ECONNREFUSED && c->open) {
		/* Nothing listens (UDP): the link stays, what waits for an answer fails now. */
		c->stats.refused++;
		fail_all(c, err);
		client_unref(c);
		return;
	}
	fgw_smp_reasm_reset(c->reasm);
	c->open = err == 0;
	if (err < 0)
		fail_all(c, err);
	if (!c->freed && c->state_cb)
		c->state_cb(c, err, c->user_data);
	client_unref(c);
}

FGW_EXPORT int fgw_smp_client_new(uv_loop_t *loop, struct fgw_transport *t,
				  struct fgw_smp_client **ret)
{
	struct fgw_smp_client *c;
	int r;

	if (!loop || !t || !ret)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	r = fgw_smp_reasm_new(FGW_MAX(fgw_transport_max_packet(t), (size_t) MIN_RX_PACKET),
			      &c->reasm);
	if (r < 0) {
		free(c);
		return r;
	}
	c->loop = loop;
	c->t = t;
	c->version = FGW_SMP_V2;
	c->next_id = 1;
	*ret = c;
	return 0;
}

FGW_EXPORT struct fgw_smp_client *fgw_smp_client_free(struct fgw_smp_client *c)
{
	if (!c || c->freed)
		return NULL;
	client_ref(c);
	c->freed = true;
	fail_all(c, -ECANCELED);
	if (c->open || c->state_cb)
		fgw_transport_close(c->t);
	c->open = false;
	client_unref(c);
	return NULL;
}

FGW_EXPORT int fgw_smp_client_open(struct fgw_smp_client *c, fgw_smp_state_cb_t state_cb,
				   void *user_data)
{
	c->state_cb = state_cb;
	c->user_data = user_data;
	fgw_smp_reasm_reset(c->reasm);
	return fgw_transport_open(c->t, on_state, on_rx, c);
}

FGW_EXPORT void fgw_smp_client_close(struct fgw_smp_client *c)
{
	fgw_transport_close(c->t);
	c->open = false;
	fgw_smp_reasm_reset(c->reasm);
	fail_all(c, -ENOTCONN);
}

FGW_EXPORT bool fgw_smp_client_is_open(struct fgw_smp_client *c)
{
	return c->open;
}

FGW_EXPORT void fgw_smp_client_set_version(struct fgw_smp_client *c, enum fgw_smp_version v)
{
	c->version = v;
}

FGW_EXPORT enum fgw_smp_version fgw_smp_client_get_version(struct fgw_smp_client *c)
{
	return c->version;
}

FGW_EXPORT void fgw_smp_client_set_max_packet(struct fgw_smp_client *c, size_t max_packet)
{
	c->max_packet = max_packet;
}

FGW_EXPORT size_t fgw_smp_client_max_packet(struct fgw_smp_client *c)
{
	size_t t = fgw_transport_max_packet(c->t);

	return c->max_packet && c->max_packet < t ? c->max_packet : t;
}

FGW_EXPORT size_t fgw_smp_client_frame_size(struct fgw_smp_client *c)
{
	return fgw_transport_mtu(c->t);
}

FGW_EXPORT bool fgw_smp_client_splits_packets(struct fgw_smp_client *c)
{
	return fgw_transport_max_packet(c->t) > fgw_transport_mtu(c->t);
}

FGW_EXPORT const char *fgw_smp_client_peer(struct fgw_smp_client *c)
{
	return fgw_transport_peer(c->t);
}

FGW_EXPORT int fgw_smp_client_send(struct fgw_smp_client *c, struct fgw_buf *packet,
				   unsigned timeout_ms, fgw_smp_rsp_cb_t cb, void *user_data,
				   fgw_destroy_cb_t destroy, uint64_t *ret_id)
{
	struct smp_pending *p;
	struct fgw_smp_hdr h;
	unsigned seq;
	int r;

	if (!c || !packet || !cb) {
		fgw_buf_unref(packet);
		return -EINVAL;
	}
	r = fgw_smp_hdr_decode(fgw_buf_data(packet), fgw_buf_len(packet), &h);
	if (r < 0 || (h.op != FGW_SMP_OP_READ && h.op != FGW_SMP_OP_WRITE) ||
	    h.len != fgw_buf_len(packet) - FGW_SMP_HDR_SIZE)
		r = -EINVAL;
	else if (c->freed)
		r = -ECANCELED;
	else if (!c->open)
		r = -ENOTCONN;
	else if (c->n_inflight >= ARRAY_SIZE(c->inflight) - 1)
		r = -EBUSY;
	else if (!(p = calloc(1, sizeof(*p))))
		r = -ENOMEM;
	if (r < 0) {
		fgw_buf_unref(packet);
		return r;
	}
	p->pkt = packet;
	r = uv_timer_init(c->loop, &p->timer);
	if (r < 0) {
		fgw_buf_unref(p->pkt);
		free(p);
		return r;
	}
	/* Next free seq: a seq still in flight is never reused (§1.6). */
	for (seq = c->next_seq; c->inflight[seq & 0xff]; seq++)
		;
	seq &= 0xff;
	p->c = c;
	p->id = c->next_id++;
	p->seq = (uint8_t) seq;
	p->op = h.op;
	p->group = h.group;
	p->cmd = h.id;
	p->version = c->version;
	p->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
	p->cb = cb;
	p->user_data = user_data;
	p->destroy = destroy;
	r = pending_send(c, p);
	if (r < 0) {
		/* Not sent: the callback never runs; release without calling out. */
		p->c = NULL;
		uv_close((uv_handle_t *) &p->timer, pending_closed);
		return r;
	}
	c->inflight[p->seq] = p;
	c->n_inflight++;
	c->next_seq = (uint8_t) (seq + 1);
	if (ret_id)
		*ret_id = p->id;
	return 0;
}

FGW_EXPORT int fgw_smp_client_request(struct fgw_smp_client *c, const struct fgw_smp_req *req,
				      unsigned timeout_ms, fgw_smp_rsp_cb_t cb, void *user_data,
				      fgw_destroy_cb_t destroy, uint64_t *ret_id)
{
	struct fgw_buf *b;
	size_t len;
	int r;

	if (!c || !req || !cb || (req->len && !req->payload) || req->len > UINT16_MAX)
		return -EINVAL;
	b = fgw_buf_new(FGW_SMP_HDR_SIZE + req->len);
	if (!b)
		return -ENOMEM;
	/* Packed once; the seq and version are the client's, stamped when it goes out. */
	r = fgw_smp_req_pack(req, 0, 0, fgw_buf_data(b), fgw_buf_capacity(b), &len);
	if (r < 0) {
		fgw_buf_unref(b);
		return r;
	}
	(void) fgw_buf_set_len(b, len);
	return fgw_smp_client_send(c, b, timeout_ms, cb, user_data, destroy, ret_id);
}

FGW_EXPORT int fgw_smp_client_cancel(struct fgw_smp_client *c, uint64_t id)
{
	for (unsigned i = 0; i < ARRAY_SIZE(c->inflight); i++)
		if (c->inflight[i] && c->inflight[i]->id == id) {
			pending_finish(c->inflight[i], -ECANCELED, NULL);
			return 0;
		}
	return -ENOENT;
}

FGW_EXPORT size_t fgw_smp_client_pending(struct fgw_smp_client *c)
{
	return c->n_inflight;
}

FGW_EXPORT void fgw_smp_client_get_stats(struct fgw_smp_client *c, struct fgw_smp_client_stats *ret)
{
	*ret = c->stats;
}
