/*
 * The request pipeline of one simulated device: SMP packets (UDP datagrams or BLE writes with
 * reassembly) arrive through the link model, take Zephyr's net_bufs, wait for the single SMP
 * work queue, are handled by smp.c and answered through the link again.
 *
 * Time: every request carries model times (arrival of its first and last fragment, end of
 * processing, arrival of the response) computed by link.c; libuv timers make them happen in real
 * time, so a client measures what the model says.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sim.h"

enum req_stage {
	RQ_UDP_ARRIVE, /* first fragment reaches the device: needs a buffer */
	RQ_UDP_READY,  /* last fragment arrived: into the work queue */
	RQ_BLE_FRAG,   /* one ATT write reaches the device: reassembly step */
	RQ_QUEUED,     /* waiting for the SMP work queue */
	RQ_PROCESSING, /* being handled; holds its buffer until processing ends */
	RQ_RSP_SEND,   /* response on the air, arrives at the client at the timer (its buffer
			  is accounted on the request) */
};

/* Marks the timers of requests, so that shutdown can close them all with uv_walk(). */
static char req_tag;

static void req_closed(uv_handle_t *h)
{
	struct sim_req *r = container_of((uv_timer_t *) h, struct sim_req, timer);
	free(r->data);
	free(r);
}

void sim_req_free(struct sim_req *r)
{
	uv_close((uv_handle_t *) &r->timer, req_closed);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	if (h->data == &req_tag && !uv_is_closing(h))
		uv_close(h, req_closed);
}

void sim_device_close_requests(uv_loop_t *loop)
{
	uv_walk(loop, walk_close, NULL);
}

static void req_timer_cb(uv_timer_t *t);

static struct sim_req *req_new(struct sim_device *d, enum sim_src_kind src, const uint8_t *buf,
			       size_t len)
{
	struct sim_req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	if (len) {
		r->data = malloc(len);
		if (!r->data) {
			free(r);
			return NULL;
		}
		memcpy(r->data, buf, len);
	}
	r->len = len;
	r->dev = d;
	r->src = src;
	r->gen = d->gen;
	uv_timer_init(d->sim->loop, &r->timer);
	r->timer.data = &req_tag;
	return r;
}

static void req_at(struct sim_req *r, int stage, uint64_t at_us)
{
	r->stage = stage;
	uv_timer_start(&r->timer, req_timer_cb, sim_delay_ms(r->dev->sim->loop, at_us), 0);
}

/*
 * The SMP buffer pool (Zephyr's pkt_pool of CONFIG_MCUMGR_TRANSPORT_NETBUF_COUNT net_bufs,
 * transport/src/smp.c), shared by everything SMP on the device: a request holds one from its
 * first fragment (BLE reassembly) or its datagram (UDP) until smp_process_request_packet() has
 * sent its answer; the answer holds one from smp_alloc_rsp(), before the handler runs, until the
 * transport has sent it. docs/simulator.md "Buffers" has the whole model and its sources.
 */
static void buf_release(struct sim_req *r)
{
	struct sim_device *d = r->dev;

	if (r->gen == d->gen)
		d->bufs_used -= FGW_MIN(r->bufs, d->bufs_used);
	r->bufs = 0;
}

static bool buf_take(struct sim_device *d, struct sim_req *r)
{
	if (d->bufs_used >= d->cfg.buf_count)
		return false;
	d->bufs_used++;
	r->bufs++;
	return true;
}

static void worker_kick(struct sim_device *d);

static void queue_push(struct sim_device *d, struct sim_req *r)
{
	r->stage = RQ_QUEUED;
	r->next = NULL;
	if (d->queue_tail)
		d->queue_tail->next = r;
	else
		d->queue_head = r;
	d->queue_tail = r;
	worker_kick(d);
}

/* Responses are built while the request is handled, at the start of processing; they are
 * handed to the transport when processing ends, which is known only after the handler ran. */
#define MAX_RSP_PER_REQ 8
struct emit_ctx {
	struct sim_req *req;
	struct sim_req *rsp[MAX_RSP_PER_REQ];
	unsigned n;
	unsigned reserved; /* response buffers taken by on_alloc, not yet used */
};

/* smp_alloc_rsp(): the response buffer is taken before the request is handled. */
static bool on_alloc(struct sim_device *d, void *user_data)
{
	struct emit_ctx *e = user_data;

	if (d->bufs_used >= d->cfg.buf_count)
		return false;
	d->bufs_used++;
	e->reserved++;
	return true;
}

/* A response's buffer is accounted on its request: both are freed together (see send_rsps). */
static void on_emit(struct sim_device *d, const uint8_t *rsp, size_t len, void *user_data)
{
	struct emit_ctx *e = user_data;
	struct sim_req *r;

	if (e->n == MAX_RSP_PER_REQ)
		return;
	if (e->reserved > 0) {
		e->reserved--;
		e->req->bufs++;
	} else if (e->req->bufs == 0 && !buf_take(d, e->req)) {
		/* (smp_on_err() without a response buffer answers in the request's own one.) */
		fgw_debug("%s: no free SMP buffer for a response, dropped", d->name);
		return;
	}
	r = req_new(d, e->req->src, rsp, len);
	if (!r)
		return;
	r->peer = e->req->peer;
	e->rsp[e->n++] = r;
}

/*
 * Hands the responses of one request to the transport when processing ends at @end; returns
 * when the work queue is free again, which is also when the request's and the responses'
 * buffers go back to the pool.
 *
 * UDP (smp_udp.c smp_udp4_tx): sendto() and the buffer is freed at once.
 * BLE (smp_bt.c smp_bt_tx_pkt): the work queue sends the response itself, one notification of
 * MTU - 3 bytes at a time, each time waiting (k_sem_take) until bt_gatt_notify_cb()'s callback
 * says it was sent; only then are the response and, back in smp_process_request_packet(), the
 * request freed and the next request taken. The callback comes with the controller's Number of
 * Completed Packets, after the central's acknowledgement in the next connection event; the
 * central's next write can ride in that same event, and the host may take it (and need a buffer
 * for it) before the completion frees one: the model frees them 1 ms after that event's arrivals.
 */
static uint64_t send_rsps(struct sim_device *d, struct emit_ctx *e, uint64_t end)
{
	const struct sim_link_params *lp = &d->cfg.link;
	uint64_t extra = (uint64_t) (d->cfg.faults.rsp_delay_ms * 1000.0), t = end;
	bool ble = e->req->src == SIM_SRC_BLE;

	for (unsigned i = 0; i < e->n; i++) {
		struct sim_req *r = e->rsp[i];
		uint64_t first, last = t;

		if (!ble) {
			sim_link_packet(&d->link, lp, SIM_DOWN, end, r->len, &first, &last);
			req_at(r, RQ_RSP_SEND, last + extra);
			continue;
		}
		for (size_t off = 0, frag = lp->mtu - 3; off < r->len; off += frag) {
			last = sim_link_pdu(&d->link, lp, SIM_DOWN, t, FGW_MIN(frag, r->len - off));
			t = last + (uint64_t) (lp->interval_ms * 1000.0) + 1000;
		}
		req_at(r, RQ_RSP_SEND, last + extra);
	}
	return t;
}

static void process_next(struct sim_device *d)
{
	struct sim_req *r = d->queue_head;
	struct smp_result res;
	struct emit_ctx e = {.req = r};
	uint64_t now = sim_now_us(), start, end;
	uint32_t gen = d->gen;

	d->queue_head = r->next;
	if (!d->queue_head)
		d->queue_tail = NULL;
	r->next = NULL;
	r->stage = RQ_PROCESSING;
	if (r->gen != d->gen || d->state != SIM_DEV_UP) {
		sim_req_free(r);
		return;
	}
	start = FGW_MAX(now, d->busy_until_us);
	smp_handle(d, r->data, r->len, on_alloc, on_emit, &e, &res);
	/* os_mgmt reboots CONFIG_MCUMGR_GRP_OS_RESET_MS (250) after its answer; with
	 * reset_no_answer the reboot wins the race: the answers, scheduled below with the old
	 * generation, are dropped (on BLE the link drops right after the request) */
	if (res.reset && gen == d->gen && d->cfg.reset_no_answer)
		sim_device_reset_now(d, "reset (before its answer went out)");
	/* buffers taken for responses that were never built (no answer) go back; after a link
	 * drop (new generation) the count was reset already */
	if (gen == d->gen && d->bufs_used >= e.reserved)
		d->bufs_used -= e.reserved;
	end = start + (uint64_t) d->cfg.link.proc_us + res.cost_us;
	d->busy_until_us = send_rsps(d, &e, end);
	/* the request (and its responses' buffers) are freed when the work queue is done */
	req_at(r, RQ_PROCESSING, d->busy_until_us);
	if (res.reset && gen == d->gen)
		sim_device_reset_later(d, 250.0 + (double) (end - now) / 1000.0);
}

static void worker_cb(uv_timer_t *t)
{
	struct sim_device *d = container_of(t, struct sim_device, worker);
	uint64_t now = sim_now_us();

	d->worker_armed = false;
	if (!d->queue_head)
		return;
	if (d->busy_until_us > now + 500) {
		d->worker_armed = true;
		uv_timer_start(&d->worker, worker_cb, sim_delay_ms(d->sim->loop, d->busy_until_us),
			       0);
		return;
	}
	process_next(d);
	if (d->queue_head)
		worker_kick(d);
}

static void worker_kick(struct sim_device *d)
{
	if (d->worker_armed)
		return;
	d->worker_armed = true;
	uv_timer_start(&d->worker, worker_cb, sim_delay_ms(d->sim->loop, d->busy_until_us), 0);
}

static void deliver(struct sim_req *r)
{
	struct sim_device *d = r->dev;

	if (d->cfg.faults.drop_notify_prob > 0 &&
	    sim_device_rand(d) < d->cfg.faults.drop_notify_prob) {
		fgw_debug("%s: fault: response dropped", d->name);
		return;
	}
	if (r->src == SIM_SRC_UDP)
		sim_udp_send(d, (const struct sockaddr *) &r->peer, r->data, r->len);
	else if (d->sim->periph && !sim_periph_notify(d->sim->periph, d, r->data, r->len))
		fgw_debug("%s: notifications disabled, response lost", d->name);
	else if (d->sim->bluez && !sim_bluez_notify(d->sim->bluez, d, r->data, r->len))
		fgw_debug("%s: notifications disabled, response lost", d->name);
}

static void ble_reassemble(struct sim_device *d, const uint8_t *buf, size_t len, uint64_t t);

static void req_timer_cb(uv_timer_t *t)
{
	struct sim_req *r = container_of(t, struct sim_req, timer);
	struct sim_device *d = r->dev;

	if (r->gen != d->gen || d->state != SIM_DEV_UP) {
		sim_req_free(r);
		return;
	}
	switch ((enum req_stage) r->stage) {
	case RQ_UDP_ARRIVE:
		if (!buf_take(d, r)) {
			fgw_debug("%s: no free SMP buffer, request dropped", d->name);
			sim_req_free(r);
			return;
		}
		req_at(r, RQ_UDP_READY, r->t_last);
		return;
	case RQ_UDP_READY:
		uv_timer_stop(&r->timer);
		queue_push(d, r);
		return;
	case RQ_BLE_FRAG:
		ble_reassemble(d, r->data, r->len, r->t_first);
		sim_req_free(r);
		return;
	case RQ_RSP_SEND:
		deliver(r);
		sim_req_free(r);
		return;
	case RQ_PROCESSING:
		buf_release(r);
		sim_req_free(r);
		return;
	case RQ_QUEUED:
		return;
	}
}

void sim_device_rx_udp(struct sim_device *d, const uint8_t *buf, size_t len,
		       const struct sockaddr *peer)
{
	struct sim_req *r;
	uint64_t now = sim_now_us();

	if (!sim_device_reachable(d))
		return;
	/* The same size limit as BLE reassembly: a packet larger than the SMP buffer is lost. */
	if (len > d->cfg.buf_size || len < SMP_HDR_LEN)
		return;
	r = req_new(d, SIM_SRC_UDP, buf, len);
	if (!r)
		return;
	memcpy(&r->peer, peer,
	       peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					   : sizeof(struct sockaddr_in));
	sim_link_packet(&d->link, &d->cfg.link, SIM_UP, now, len, &r->t_first, &r->t_last);
	req_at(r, RQ_UDP_ARRIVE, r->t_first);
}

void sim_device_rx_ble_write(struct sim_device *d, const uint8_t *buf, size_t len)
{
	struct sim_req *r;
	uint64_t now = sim_now_us();

	if (d->state != SIM_DEV_UP)
		return;
	r = req_new(d, SIM_SRC_BLE, buf, len);
	if (!r)
		return;
	r->t_first = r->t_last = sim_link_pdu(&d->link, &d->cfg.link, SIM_UP, now, len);
	req_at(r, RQ_BLE_FRAG, r->t_first);
}

void sim_device_rx_reset(struct sim_device *d)
{
	if (d->rx_buf) {
		free(d->rx_buf);
		d->rx_buf = NULL;
		if (d->bufs_used > 0)
			d->bufs_used--; /* smp_reassembly_drop() */
	}
	d->rx_len = d->rx_expected = 0;
}

/* smp_reassembly.c: one context per transport, first fragment must hold the whole header,
 * total must fit the buffer, a fragment carrying more than expected drops the packet. */
static void ble_reassemble(struct sim_device *d, const uint8_t *buf, size_t len, uint64_t t)
{
	if (!d->rx_buf) {
		struct smp_hdr h;
		size_t total;

		if (smp_hdr_decode(buf, len, &h) < 0) {
			fgw_debug("%s: fragment without a full header, dropped", d->name);
			return;
		}
		total = SMP_HDR_LEN + h.len;
		if (total > d->cfg.buf_size) {
			fgw_debug("%s: packet of %zu bytes exceeds buf_size, dropped", d->name,
				  total);
			return;
		}
		if (d->bufs_used >= d->cfg.buf_count) {
			fgw_debug("%s: no free SMP buffer, fragment dropped", d->name);
			return;
		}
		d->rx_buf = malloc(total);
		if (!d->rx_buf)
			return;
		d->bufs_used++;
		d->rx_expected = total;
		d->rx_len = 0;
		d->rx_t_first = t;
	}
	if (len > d->rx_expected - d->rx_len) {
		fgw_debug("%s: fragment overruns the packet, dropped", d->name);
		sim_device_rx_reset(d);
		return;
	}
	memcpy(d->rx_buf + d->rx_len, buf, len);
	d->rx_len += len;
	if (d->rx_len < d->rx_expected)
		return;
	/* complete: the reassembly buffer becomes the request (and keeps its SMP buffer) */
	struct sim_req *r = req_new(d, SIM_SRC_BLE, NULL, 0);
	if (!r) {
		sim_device_rx_reset(d);
		return;
	}
	r->data = d->rx_buf;
	r->len = d->rx_len;
	r->bufs = 1;
	r->t_first = d->rx_t_first;
	r->t_last = t;
	d->rx_buf = NULL;
	d->rx_len = d->rx_expected = 0;
	queue_push(d, r);
}
