/*
 * A link's data path: opening it (AcquireNotify/AcquireWrite, or StartNotify with WriteValue
 * when acquiring is not offered), writing frames (acquired SOCK_SEQPACKET fd, one datagram =
 * one ATT write, or WriteValue(type=command) calls), reading notifications, noticing hang-ups,
 * and tearing it down. The connection side (slots, Connect, resolving) is in link.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bluez-private.h"
#include "util.h"

#define ATT_MTU_MAX 517
/* Queued bytes per link: two packets of the largest SMP size, far above what a window needs. */
#define TXQ_MAX_BYTES (128 * 1024)
/* Datagrams read per poll wake-up, so one busy link cannot starve the loop. */
#define RX_BURST 32

/* ---- data path teardown ---- */

void bz_link_handle_closed(uv_handle_t *h)
{
	struct fgw_bluez_link *l = h->data;

	if (--l->n_open > 0)
		return;
	free(l->dev_path);
	free(l->adapter_path);
	free(l->char_path);
	free(l);
}

static void packet_free(struct bz_packet *p)
{
	bz_list_del(&p->node);
	fgw_buf_unref(p->buf);
	free(p);
}

static void tx_free(struct fgw_bluez_link *l)
{
	struct bz_list *pos, *tmp;

	bz_list_for_each_safe(pos, tmp, &l->txq)
	    packet_free(container_of(pos, struct bz_packet, node));
	for (unsigned i = 0; i < BZ_FALLBACK_WINDOW; i++)
		l->writes[i].slot = sd_bus_slot_unref(l->writes[i].slot);
	l->n_inflight = 0;
	l->tx_bytes = 0;
}

void bz_link_drop_path(struct fgw_bluez_link *l)
{
	l->call_slot = sd_bus_slot_unref(l->call_slot);
	l->get_slot = sd_bus_slot_unref(l->get_slot);
	l->await_char = false;
	if (l->write_poll_init) {
		l->write_poll_init = false;
		uv_close((uv_handle_t *) &l->write_poll, bz_link_handle_closed);
	}
	if (l->notify_poll_init) {
		l->notify_poll_init = false;
		uv_close((uv_handle_t *) &l->notify_poll, bz_link_handle_closed);
	}
	/* Closing after uv_close() is what libuv allows; bluetoothd sees the hang-up. */
	if (l->write_fd >= 0)
		close(l->write_fd);
	if (l->notify_fd >= 0)
		close(l->notify_fd);
	l->write_fd = l->notify_fd = -1;
	tx_free(l);
	l->notifying = false;
	l->await_disconnect = false;
}

void bz_link_close_path(struct fgw_bluez_link *l)
{
	bz_link_drop_path(l);
	uv_timer_stop(&l->timer);
}

/* ---- tx ---- */

static void write_poll_update(struct fgw_bluez_link *l);

/*
 * The next write of the packet at the head of the queue: at most write_size bytes, never bytes
 * of two packets in one write (the device's reassembly drops those).
 */
static struct bz_packet *next_slice(struct fgw_bluez_link *l, const uint8_t **ret_data,
				    size_t *ret_len)
{
	struct bz_packet *p;

	if (bz_list_empty(&l->txq))
		return NULL;
	p = container_of(l->txq.next, struct bz_packet, node);
	*ret_data = fgw_buf_data(p->buf) + p->off;
	*ret_len = FGW_MIN(fgw_bluez_link_write_size(l), fgw_buf_len(p->buf) - p->off);
	return p;
}

/* @n more bytes of @p are out of our hands. */
static void slice_done(struct bz_packet *p, size_t n)
{
	p->off += n;
	if (p->off == fgw_buf_len(p->buf))
		packet_free(p);
}

static void fd_flush(struct fgw_bluez_link *l)
{
	struct bz_packet *p;
	const uint8_t *data;
	size_t len;

	while ((p = next_slice(l, &data, &len))) {
		ssize_t n = send(l->write_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break; /* bluetoothd is behind: wait for writable */
		if (n < 0 || (size_t) n != len) {
			char why[96];
			/* SOCK_SEQPACKET writes whole datagrams: a short one is a broken link. */
			snprintf(why, sizeof(why), "write fd: %s",
				 n < 0 ? strerror(errno) : "short write");
			bz_link_lost(l, why, true);
			return;
		}
		l->tx_bytes -= len;
		slice_done(p, len);
	}
	write_poll_update(l);
}

static int on_write_value_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error);

static struct bz_write *free_write(struct fgw_bluez_link *l)
{
	for (unsigned i = 0; i < BZ_FALLBACK_WINDOW; i++)
		if (!l->writes[i].slot)
			return &l->writes[i];
	return NULL;
}

static void fallback_flush(struct fgw_bluez_link *l)
{
	struct fgw_bluez *b = l->b;
	struct bz_packet *p;
	struct bz_write *w;
	const uint8_t *data;
	size_t len;

	while ((w = free_write(l)) && (p = next_slice(l, &data, &len))) {
		sd_bus_message *m = NULL;
		int r;

		r = sd_bus_message_new_method_call(b->bus, &m, BLUEZ_SERVICE, l->char_path,
						   BLUEZ_CHAR_IFACE, "WriteValue");
		if (r >= 0)
			r = sd_bus_message_append_array(m, 'y', data, len);
		if (r >= 0)
			r = sd_bus_message_append(m, "a{sv}", 1, "type", "s", "command");
		if (r >= 0)
			r = bz_call(b, m, &w->slot, on_write_value_reply, w, 0);
		sd_bus_message_unref(m);
		if (r < 0) {
			bz_link_set_error(l, "cannot send WriteValue: %s", strerror(-r));
			bz_link_fail(l, r, true);
			return;
		}
		w->l = l;
		w->len = len;
		l->n_inflight++;
		slice_done(p, len);
	}
}

static int on_write_value_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct bz_write *w = user_data;
	struct fgw_bluez_link *l = w->l;
	char text[256];
	int r;

	r = bz_reply_error(m, text, sizeof(text));
	w->slot = sd_bus_slot_unref(w->slot);
	l->n_inflight--;
	l->tx_bytes -= w->len;
	if (r < 0) {
		bz_link_set_error(l, "WriteValue: %s", text);
		bz_link_fail(l, r, true);
		return 0;
	}
	fallback_flush(l);
	return 0;
}

FGW_EXPORT int fgw_bluez_link_send(struct fgw_bluez_link *l, struct fgw_buf *packet)
{
	struct bz_packet *p;
	size_t len;

	if (!l || !packet || fgw_buf_len(packet) == 0)
		return -EINVAL;
	if (l->state != FGW_BLUEZ_LINK_STATE_READY || !l->b)
		return -ENOTCONN;
	len = fgw_buf_len(packet);
	if (l->tx_bytes + len > TXQ_MAX_BYTES)
		return -ENOBUFS;
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->buf = fgw_buf_ref(packet);
	p->off = 0;
	bz_list_add_tail(&l->txq, &p->node);
	l->tx_bytes += len;
	if (l->write_fd >= 0)
		write_poll_update(l); /* written from the poll callback, never from here */
	else
		fallback_flush(l); /* only queues D-Bus calls; replies come later */
	return 0;
}

/* ---- rx and hang-ups ---- */

static void on_write_poll(uv_poll_t *h, int status, int events)
{
	struct fgw_bluez_link *l = h->data;
	uint8_t buf[64];
	ssize_t n;

	if (status < 0) {
		bz_link_lost(l, "write fd error", true);
		return;
	}
	if (events & (UV_READABLE | UV_DISCONNECT)) {
		/* bluetoothd never sends on the write fd: readable means hang-up. */
		n = recv(l->write_fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
		    (events & UV_DISCONNECT)) {
			bz_link_lost(l, "write fd closed by bluetoothd", true);
			return;
		}
	}
	if (events & UV_WRITABLE)
		fd_flush(l);
}

static void write_poll_update(struct fgw_bluez_link *l)
{
	int want = UV_READABLE | UV_DISCONNECT;

	if (!l->write_poll_init)
		return;
	if (!bz_list_empty(&l->txq))
		want |= UV_WRITABLE;
	if (want == l->write_poll_events)
		return;
	l->write_poll_events = want;
	uv_poll_start(&l->write_poll, want, on_write_poll);
}

static void on_notify_poll(uv_poll_t *h, int status, int events)
{
	struct fgw_bluez_link *l = h->data;
	uint8_t buf[2048];

	if (status < 0) {
		bz_link_lost(l, "notify fd error", true);
		return;
	}
	for (int i = 0; i < RX_BURST; i++) {
		ssize_t n = recv(l->notify_fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			bz_link_lost(
			    l, n == 0 ? "notify fd closed by bluetoothd" : "notify fd error", true);
			return;
		}
		l->rx_cb(l, buf, (size_t) n, l->user_data);
		/* The callback may have freed the link or hit a loss. */
		if (l->freed || l->state != FGW_BLUEZ_LINK_STATE_READY)
			return;
	}
	if (events & UV_DISCONNECT)
		bz_link_lost(l, "notify fd closed by bluetoothd", true);
}

void bz_links_on_char_value(struct fgw_bluez *b, struct bz_gatt_char *c, const uint8_t *data,
			    size_t len)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);
		if (l->state == FGW_BLUEZ_LINK_STATE_READY && l->notifying && l->char_path &&
		    strcmp(l->char_path, c->path) == 0) {
			/* One link per characteristic: the callback may free it, so stop here. */
			l->rx_cb(l, data, len, l->user_data);
			return;
		}
	}
}

/* ---- opening the data path ---- */

/* Takes the fd out of a "(hq)" AcquireWrite/AcquireNotify reply. */
static int read_acquire_reply(struct fgw_bluez_link *l, sd_bus_message *m, const char *what,
			      int *ret_fd, unsigned *ret_mtu)
{
	const char *sig = sd_bus_message_get_signature(m, true);
	uint16_t mtu;
	int fd, r;

	if (!sig || strcmp(sig, "hq") != 0) {
		bz_link_set_error(l, "%s replied with signature '%s', expected 'hq'", what,
				  sig ? sig : "");
		return -EBADMSG;
	}
	r = sd_bus_message_read(m, "hq", &fd, &mtu);
	if (r < 0) {
		bz_link_set_error(l, "%s reply unreadable: %s", what, strerror(-r));
		return -EBADMSG;
	}
	/* The message owns its fd: keep our own copy. */
	fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0) {
		r = -errno;
		bz_link_set_error(l, "%s: dup: %s", what, strerror(-r));
		return r;
	}
	/* bluetoothd sets O_NONBLOCK, but do not rely on a peer for that. */
	(void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	*ret_fd = fd;
	*ret_mtu = mtu;
	return 0;
}

void bz_link_set_mtu(struct fgw_bluez_link *l, unsigned mtu)
{
	if (mtu < BZ_ATT_MTU_MIN)
		mtu = BZ_ATT_MTU_MIN;
	if (mtu > ATT_MTU_MAX)
		mtu = ATT_MTU_MAX;
	l->mtu = mtu;
}

static int start_poll(struct fgw_bluez_link *l, uv_poll_t *p, int fd, int events, uv_poll_cb cb)
{
	int r = uv_poll_init(l->b->loop, p, fd);

	if (r < 0)
		return r;
	p->data = l;
	l->n_open++;
	return uv_poll_start(p, events, cb);
}

static int on_write_acquired(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez_link *l = user_data;
	char text[BZ_REPLY_TEXT];
	unsigned mtu;
	int fd, r;

	r = bz_link_reply(l, m, "AcquireWrite", text);
	if (r > 0)
		return 0;
	if (r == -EOPNOTSUPP) {
		bz_link_ready(l); /* not offered after all: WriteValue path */
		return 0;
	}
	if (r < 0) {
		bz_link_set_error(l, "AcquireWrite: %s", text);
		bz_link_fail(l, r, true);
		return 0;
	}
	r = read_acquire_reply(l, m, "AcquireWrite", &fd, &mtu);
	if (r < 0) {
		bz_link_fail(l, r, true);
		return 0;
	}
	l->write_fd = fd;
	bz_link_set_mtu(l, mtu);
	l->write_poll_events = UV_READABLE | UV_DISCONNECT;
	r = start_poll(l, &l->write_poll, fd, l->write_poll_events, on_write_poll);
	l->write_poll_init = true;
	if (r < 0) {
		bz_link_set_error(l, "cannot poll the write fd: %s", strerror(-r));
		bz_link_fail(l, r, true);
		return 0;
	}
	bz_link_ready(l);
	return 0;
}

static void link_call_char(struct fgw_bluez_link *l, const char *method, bool with_options,
			   sd_bus_message_handler_t cb)
{
	bz_link_call(l, method, with_options, false, 0, cb);
}

static void link_open_write(struct fgw_bluez_link *l)
{
	struct fgw_bluez *b = l->b;
	struct bz_gatt_char *c = NULL;
	struct bz_device *d = bz_link_device(l);

	if (d)
		c = bz_find_smp_char(b, d);
	if (!c || !b->opts.acquire || !c->has_write_acquired) {
		if (c && c->mtu && l->write_fd < 0 && l->notify_fd < 0)
			bz_link_set_mtu(l, c->mtu);
		bz_link_ready(l);
		return;
	}
	link_call_char(l, "AcquireWrite", true, on_write_acquired);
}

static int on_start_notify(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez_link *l = user_data;
	char text[BZ_REPLY_TEXT];
	int r;

	r = bz_link_reply(l, m, "StartNotify", text);
	if (r > 0)
		return 0;
	if (r < 0) {
		bz_link_subscribe_failed(l, "StartNotify", r, text);
		return 0;
	}
	l->notifying = true;
	link_open_write(l);
	return 0;
}

void bz_link_start_notify(struct fgw_bluez_link *l)
{
	link_call_char(l, "StartNotify", false, on_start_notify);
}

static int on_notify_acquired(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez_link *l = user_data;
	char text[BZ_REPLY_TEXT];
	unsigned mtu;
	int fd, r;

	r = bz_link_reply(l, m, "AcquireNotify", text);
	if (r > 0)
		return 0;
	if (r == -EOPNOTSUPP) {
		bz_link_start_notify(l);
		return 0;
	}
	if (r < 0) {
		bz_link_subscribe_failed(l, "AcquireNotify", r, text);
		return 0;
	}
	r = read_acquire_reply(l, m, "AcquireNotify", &fd, &mtu);
	if (r < 0) {
		bz_link_fail(l, r, true);
		return 0;
	}
	l->notify_fd = fd;
	bz_link_set_mtu(l, mtu);
	r = start_poll(l, &l->notify_poll, fd, UV_READABLE | UV_DISCONNECT, on_notify_poll);
	l->notify_poll_init = true;
	if (r < 0) {
		bz_link_set_error(l, "cannot poll the notify fd: %s", strerror(-r));
		bz_link_fail(l, r, true);
		return 0;
	}
	link_open_write(l);
	return 0;
}

/* Notifications through an acquired fd when offered, else StartNotify + PropertiesChanged. */
void bz_link_acquire_notify(struct fgw_bluez_link *l)
{
	struct bz_device *d = bz_link_device(l);
	struct bz_gatt_char *c = d ? bz_find_smp_char(l->b, d) : NULL;

	if (!l->b->opts.acquire || !c || !c->has_notify_acquired) {
		bz_link_start_notify(l);
		return;
	}
	link_call_char(l, "AcquireNotify", true, on_notify_acquired);
}

FGW_EXPORT unsigned fgw_bluez_link_mtu(struct fgw_bluez_link *l)
{
	return l->mtu;
}

FGW_EXPORT size_t fgw_bluez_link_write_size(struct fgw_bluez_link *l)
{
	return FGW_MIN((size_t) l->mtu - 3, (size_t) FGW_BLUEZ_MAX_WRITE);
}

FGW_EXPORT bool fgw_bluez_link_acquired(struct fgw_bluez_link *l)
{
	return l->write_fd >= 0 && l->notify_fd >= 0;
}
