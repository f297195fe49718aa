#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "peer-transport.h"
#include "util.h"

struct peer {
	struct fgw_transport t;
	uv_loop_t *loop;
	size_t mtu, max_packet;
	bool open;
	peer_handler_t handler;
	void *handler_data;
	const struct peer_step *steps;
	size_t n_steps, step;
	unsigned mismatches;
	size_t sent;
	uint8_t last[70000];
	size_t last_len;
	int send_err;
	const struct fgw_buf *last_buf; /* for comparison only, no reference */
	struct fgw_buf *held;		/* a reference, as queued writes hold one */
	bool hold;
	unsigned pending_events; /* timers not yet closed */
	bool freeing;
};

struct peer_event {
	uv_timer_t timer;
	struct peer *p;
	int link_err; /* 0: deliver data, 1: report open, < 0: link loss */
	size_t len;
	uint8_t data[];
};

static void event_closed(uv_handle_t *h)
{
	struct peer_event *e = container_of((uv_timer_t *) h, struct peer_event, timer);
	struct peer *p = e->p;

	free(e);
	if (--p->pending_events == 0 && p->freeing)
		free(p);
}

static void event_fire(uv_timer_t *t)
{
	struct peer_event *e = container_of(t, struct peer_event, timer);
	struct peer *p = e->p;

	uv_close((uv_handle_t *) &e->timer, event_closed);
	if (p->freeing)
		return;
	if (e->link_err == 1) {
		if (p->open)
			fgw_transport_report_state(&p->t, 0);
	} else if (e->link_err < 0) {
		if (p->open) {
			/* -ECONNREFUSED (UDP, nothing listens) leaves the transport open */
			p->open = e->link_err == -ECONNREFUSED;
			fgw_transport_report_state(&p->t, e->link_err);
		}
	} else if (p->open) {
		fgw_transport_report_rx(&p->t, e->data, e->len);
	}
}

static void schedule(struct peer *p, int link_err, const uint8_t *data, size_t len,
		     unsigned delay_ms)
{
	struct peer_event *e = calloc(1, sizeof(*e) + len);

	if (!e)
		abort();
	e->p = p;
	e->link_err = link_err;
	e->len = len;
	if (len)
		memcpy(e->data, data, len);
	uv_timer_init(p->loop, &e->timer);
	p->pending_events++;
	uv_timer_start(&e->timer, event_fire, delay_ms, 0);
}

void peer_deliver(struct peer *p, const uint8_t *data, size_t len, size_t split, unsigned delay_ms)
{
	if (split == 0)
		split = len;
	for (size_t o = 0; o < len; o += split)
		schedule(p, 0, data + o, FGW_MIN(split, len - o), delay_ms);
}

void peer_drop_link(struct peer *p, int err, unsigned delay_ms)
{
	schedule(p, err, NULL, 0, delay_ms);
}

static int peer_open(struct fgw_transport *t)
{
	struct peer *p = container_of(t, struct peer, t);

	if (p->open)
		return -EALREADY;
	p->open = true;
	schedule(p, 1, NULL, 0, 0);
	return 0;
}

static void play_step(struct peer *p, const uint8_t *data, size_t len)
{
	const struct peer_step *s;

	if (p->step >= p->n_steps) {
		p->mismatches++;
		return;
	}
	s = &p->steps[p->step++];
	if (s->expect && (len != s->expect_len || memcmp(data, s->expect, 6) != 0 ||
			  memcmp(data + 7, s->expect + 7, len - 7) != 0)) {
		p->mismatches++;
		return;
	}
	if (s->disconnect < 0) {
		peer_drop_link(p, s->disconnect, s->delay_ms);
		return;
	}
	if (s->answer) {
		uint8_t *a = malloc(s->answer_len);

		memcpy(a, s->answer, s->answer_len);
		if (!s->keep_seq && s->answer_len >= 8)
			a[6] = data[6];
		peer_deliver(p, a, s->answer_len, s->split, s->delay_ms);
		free(a);
	}
}

static int peer_send(struct fgw_transport *t, struct fgw_buf *packet)
{
	struct peer *p = container_of(t, struct peer, t);
	const uint8_t *data = fgw_buf_data(packet);
	size_t len = fgw_buf_len(packet);

	if (!p->open)
		return -ENOTCONN;
	if (p->send_err)
		return p->send_err;
	p->sent++;
	p->last_buf = packet;
	if (p->hold && !p->held)
		p->held = fgw_buf_ref(packet);
	memcpy(p->last, data, FGW_MIN(len, sizeof(p->last)));
	p->last_len = len;
	if (p->handler)
		p->handler(p, data, len, p->handler_data);
	else
		play_step(p, data, len);
	return 0;
}

static void peer_close(struct fgw_transport *t)
{
	struct peer *p = container_of(t, struct peer, t);

	p->open = false;
}

static void peer_free_impl(struct fgw_transport *t)
{
	struct peer *p = container_of(t, struct peer, t);

	p->open = false;
	p->freeing = true;
	peer_hold_packets(p, false);
	if (p->pending_events == 0)
		free(p);
}

static size_t peer_mtu(struct fgw_transport *t)
{
	return container_of(t, struct peer, t)->mtu;
}

static size_t peer_max_packet(struct fgw_transport *t)
{
	return container_of(t, struct peer, t)->max_packet;
}

static const struct fgw_transport_ops peer_ops = {
    .kind = "peer",
    .open = peer_open,
    .send = peer_send,
    .close = peer_close,
    .free = peer_free_impl,
    .mtu = peer_mtu,
    .max_packet = peer_max_packet,
};

int peer_new(uv_loop_t *loop, size_t mtu, size_t max_packet, struct peer **ret)
{
	struct peer *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->t.ops = &peer_ops;
	strcpy(p->t.peer, "peer:test");
	p->loop = loop;
	p->mtu = mtu;
	p->max_packet = max_packet;
	*ret = p;
	return 0;
}

struct fgw_transport *peer_transport(struct peer *p)
{
	return &p->t;
}

void peer_set_handler(struct peer *p, peer_handler_t fn, void *user_data)
{
	p->handler = fn;
	p->handler_data = user_data;
}

void peer_play(struct peer *p, const struct peer_step *steps, size_t n)
{
	p->steps = steps;
	p->n_steps = n;
	p->step = 0;
}

size_t peer_steps_done(struct peer *p)
{
	return p->step;
}

unsigned peer_mismatches(struct peer *p)
{
	return p->mismatches;
}

size_t peer_sent(struct peer *p)
{
	return p->sent;
}

const uint8_t *peer_last(struct peer *p, size_t *ret_len)
{
	*ret_len = p->last_len;
	return p->last;
}

void peer_fail_sends(struct peer *p, int err)
{
	p->send_err = err;
}

bool peer_is_open(struct peer *p)
{
	return p->open;
}

const struct fgw_buf *peer_last_packet(struct peer *p)
{
	return p->last_buf;
}

void peer_hold_packets(struct peer *p, bool hold)
{
	if (!hold)
		p->held = fgw_buf_unref(p->held);
	p->hold = hold;
}

struct fgw_buf *peer_held_packet(struct peer *p)
{
	return p->held;
}
