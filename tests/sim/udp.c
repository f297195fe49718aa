/*
 * SMP over UDP, one socket per device (Zephyr's transport: one datagram = one SMP packet, no
 * extra framing). Datagrams go through the same link model as BLE writes.
 */
#include <errno.h>
#include <string.h>

#include "sim.h"

struct udp_send {
	uv_udp_send_t req;
	uv_buf_t buf;
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	/* One receive buffer for all sockets: the loop is single-threaded and each datagram is
	 * copied out before the next read. */
	struct sim_device *d = container_of((uv_udp_t *) h, struct sim_device, udp);

	(void) suggested;
	buf->base = (char *) d->sim->udp_rx;
	buf->len = sizeof(d->sim->udp_rx);
}

static void on_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
		    unsigned flags)
{
	struct sim_device *d = container_of(u, struct sim_device, udp);

	if (n < 0) {
		fgw_warning("%s: udp receive failed: %s, ignoring", d->name, uv_strerror((int) n));
		return;
	}
	if (n == 0 || !addr || (flags & UV_UDP_PARTIAL))
		return;
	sim_device_rx_udp(d, (const uint8_t *) buf->base, (size_t) n, addr);
}

int sim_udp_start(struct sim_device *d, const struct sockaddr *addr)
{
	int r;

	r = uv_udp_init(d->sim->loop, &d->udp);
	if (r < 0)
		return r;
	d->udp_on = true;
	r = uv_udp_bind(&d->udp, addr, 0);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "%s: cannot bind udp port", d->name);
	r = uv_udp_recv_start(&d->udp, on_alloc, on_recv);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "%s: cannot receive", d->name);
	return 0;
}

static void on_sent(uv_udp_send_t *req, int status)
{
	struct udp_send *s = container_of(req, struct udp_send, req);

	if (status < 0)
		fgw_debug("udp send failed: %s", uv_strerror(status));
	free(s->buf.base);
	free(s);
}

void sim_udp_send(struct sim_device *d, const struct sockaddr *peer, const uint8_t *buf, size_t len)
{
	struct udp_send *s;
	int r;

	if (!d->udp_on)
		return;
	s = calloc(1, sizeof(*s));
	if (!s)
		return;
	s->buf.base = malloc(len);
	if (!s->buf.base) {
		free(s);
		return;
	}
	memcpy(s->buf.base, buf, len);
	s->buf.len = len;
	r = uv_udp_send(&s->req, &d->udp, &s->buf, 1, peer, on_sent);
	if (r < 0) {
		fgw_debug("%s: udp send failed: %s", d->name, uv_strerror(r));
		free(s->buf.base);
		free(s);
	}
}
