/*
 * SMP over UDP (Zephyr's UDP transport, port 1337): one datagram carries one SMP packet each
 * way, no extra framing. The socket is connect()ed to the device, so datagrams from anyone
 * else are dropped by the kernel and an ICMP "port unreachable" shows up as a receive (or
 * send) error ECONNREFUSED: reported at once as -ECONNREFUSED with the transport still open,
 * so that the requests waiting for an answer fail now instead of timing out (nothing listens,
 * or the device is restarting). Over UDP a silent device is never a link loss.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport-impl.h"
#include "util.h"

/*
 * Largest datagram payload without IP fragmentation on a 1500-byte link: Zephyr's smp_svr
 * answers nothing bigger (protocol-notes §9). IPv6 headers take 20 bytes more.
 */
#define UDP4_MAX_PACKET 1472
#define UDP6_MAX_PACKET 1452
/* Datagrams queued in the kernel-side send path before send() says -ENOBUFS. */
#define MAX_QUEUED_SENDS 128

struct udp_transport {
	struct fgw_transport t;
	uv_loop_t *loop;
	uv_udp_t udp;
	uv_timer_t opened; /* reports "open" on the next loop turn, never inside open() */
	struct sockaddr_storage peer;
	bool is_open, udp_active;
	unsigned n_closing;
	bool freeing;
	size_t queued;
	uint8_t rxbuf[65536];
};

struct udp_send {
	uv_udp_send_t req;
	struct udp_transport *u;
	struct fgw_buf *packet; /* a reference, not a copy */
};

static struct udp_transport *to_udp(struct fgw_transport *t)
{
	return container_of(t, struct udp_transport, t);
}

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct udp_transport *u = container_of((uv_udp_t *) h, struct udp_transport, udp);

	*buf = uv_buf_init((char *) u->rxbuf, sizeof(u->rxbuf));
}

static void udp_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
		     unsigned flags)
{
	struct udp_transport *u = container_of(h, struct udp_transport, udp);

	if (n < 0) {
		fgw_debug("udp %s: receive: %s", u->t.peer, uv_strerror((int) n));
		if (n == UV_ECONNREFUSED && u->is_open)
			fgw_transport_report_state(&u->t, -ECONNREFUSED);
		return;
	}
	if (n == 0 || !u->is_open)
		return;
	if (flags & UV_UDP_PARTIAL) {
		fgw_debug("udp %s: truncated datagram, ignoring", u->t.peer);
		return;
	}
	fgw_transport_report_rx(&u->t, (const uint8_t *) buf->base, (size_t) n);
}

static void udp_opened(uv_timer_t *timer)
{
	struct udp_transport *u = container_of(timer, struct udp_transport, opened);

	if (u->is_open)
		fgw_transport_report_state(&u->t, 0);
}

static int udp_open(struct fgw_transport *t)
{
	struct udp_transport *u = to_udp(t);
	int r;

	if (u->freeing)
		return -ECANCELED;
	if (u->is_open)
		return -EALREADY;
	/* The socket lives until free(): close() only stops listening, so open() may follow. */
	if (!u->udp_active) {
		r = uv_udp_init(u->loop, &u->udp);
		if (r < 0)
			return r;
		u->udp.data = u;
		u->udp_active = true;
		r = uv_udp_connect(&u->udp, (const struct sockaddr *) &u->peer);
		if (r < 0)
			return r;
	}
	r = uv_udp_recv_start(&u->udp, udp_alloc, udp_recv);
	if (r < 0)
		return r;
	r = uv_timer_start(&u->opened, udp_opened, 0, 0);
	if (r < 0) {
		uv_udp_recv_stop(&u->udp);
		return r;
	}
	u->is_open = true;
	return 0;
}

static void udp_sent(uv_udp_send_t *req, int status)
{
	struct udp_send *s = container_of(req, struct udp_send, req);

	s->u->queued--;
	if (status < 0 && status != UV_ECANCELED)
		fgw_debug("udp %s: send: %s, ignoring", s->u->t.peer, uv_strerror(status));
	fgw_buf_unref(s->packet);
	free(s);
}

static int udp_send(struct fgw_transport *t, struct fgw_buf *packet)
{
	struct udp_transport *u = to_udp(t);
	uv_buf_t buf = uv_buf_init((char *) fgw_buf_data(packet), (unsigned) fgw_buf_len(packet));
	struct udp_send *s;
	int r;

	if (!u->is_open)
		return -ENOTCONN;
	/* Most datagrams leave at once; only a full socket buffer needs the packet kept. */
	if (u->queued == 0) {
		r = uv_udp_try_send(&u->udp, &buf, 1, NULL);
		if (r >= 0)
			return 0;
		if (r != UV_EAGAIN)
			return r == UV_ECONNREFUSED ? 0 : r;
	}
	if (u->queued >= MAX_QUEUED_SENDS)
		return -ENOBUFS;
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->u = u;
	s->packet = fgw_buf_ref(packet);
	r = uv_udp_send(&s->req, &u->udp, &buf, 1, NULL, udp_sent);
	if (r < 0) {
		fgw_buf_unref(s->packet);
		free(s);
		return r;
	}
	u->queued++;
	return 0;
}

static void udp_handle_closed(uv_handle_t *h)
{
	struct udp_transport *u = h->data;

	if (--u->n_closing == 0 && u->freeing)
		free(u);
}

static void udp_close(struct fgw_transport *t)
{
	struct udp_transport *u = to_udp(t);

	u->is_open = false;
	uv_timer_stop(&u->opened);
	if (u->udp_active)
		uv_udp_recv_stop(&u->udp);
}

static void udp_free(struct fgw_transport *t)
{
	struct udp_transport *u = to_udp(t);

	udp_close(t);
	u->freeing = true;
	if (u->udp_active) {
		/* Queued sends end with UV_ECANCELED in udp_sent, before the close callback. */
		u->udp_active = false;
		u->n_closing++;
		uv_close((uv_handle_t *) &u->udp, udp_handle_closed);
	}
	u->opened.data = u;
	u->n_closing++;
	uv_close((uv_handle_t *) &u->opened, udp_handle_closed);
}

static size_t udp_mtu(struct fgw_transport *t)
{
	struct udp_transport *u = to_udp(t);

	return u->peer.ss_family == AF_INET6 ? UDP6_MAX_PACKET : UDP4_MAX_PACKET;
}

static const struct fgw_transport_ops udp_ops = {
    .kind = "udp",
    .open = udp_open,
    .send = udp_send,
    .close = udp_close,
    .free = udp_free,
    .mtu = udp_mtu,
    .max_packet = udp_mtu, /* one datagram per packet: no reassembly on the device */
};

FGW_EXPORT int fgw_transport_udp_new(uv_loop_t *loop, const char *host, uint16_t port,
				     struct fgw_transport **ret)
{
	struct udp_transport *u;
	int r;

	if (!loop || !host || !ret || port == 0)
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	/* Literals only: name resolution would block the loop (or need uv_getaddrinfo). */
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (uv_ip4_addr(host, port, (struct sockaddr_in *) &u->peer) == 0) {
		snprintf(u->t.peer, sizeof(u->t.peer), "udp:%s:%u", host, port);
	} else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *) &u->peer) == 0) {
		snprintf(u->t.peer, sizeof(u->t.peer), "udp:[%s]:%u", host, port);
	} else {
		free(u);
		return -EINVAL;
	}
	r = uv_timer_init(loop, &u->opened);
	if (r < 0) {
		free(u);
		return r;
	}
	u->t.ops = &udp_ops;
	u->loop = loop;
	*ret = &u->t;
	return 0;
}
