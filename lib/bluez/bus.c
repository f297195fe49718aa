/* sd-bus driven by libuv: the bus fd in a uv_poll, sd-bus' next timeout in a uv_timer. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>

#include "bluez-private.h"
#include "util.h"

struct fgw_busio {
	uv_loop_t *loop;
	sd_bus *bus;
	int fd;
	uv_poll_t poll;
	uv_timer_t timer;
	uv_prepare_t prepare;
	int poll_events; /* events the poll watches now, -1 before the first start */
	bool failed;
	bool freeing;
	unsigned n_open;
	fgw_busio_fail_cb_t fail_cb;
	void *user_data;
};

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void busio_fail(struct fgw_busio *io, int err)
{
	if (io->failed)
		return;
	io->failed = true;
	uv_poll_stop(&io->poll);
	uv_timer_stop(&io->timer);
	uv_prepare_stop(&io->prepare);
	if (io->fail_cb)
		io->fail_cb(io, err, io->user_data);
}

/*
 * Dispatches everything sd-bus has ready. A callback may free the owner of @io (which then
 * calls fgw_busio_free()): the handles close later, so @io stays valid; stop at once then.
 */
static void busio_process(struct fgw_busio *io)
{
	int r;

	while (!io->failed && !io->freeing) {
		r = sd_bus_process(io->bus, NULL);
		if (r < 0) {
			busio_fail(io, r);
			return;
		}
		if (r == 0)
			return;
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	busio_process(h->data);
}

static void on_timer(uv_timer_t *h)
{
	busio_process(h->data);
}

/* Before the loop sleeps: watch what sd-bus wants now, wake when its earliest timeout is due. */
static void on_prepare(uv_prepare_t *h)
{
	struct fgw_busio *io = h->data;
	uint64_t until, now;
	int ev, want = 0, r;

	if (io->failed || io->freeing)
		return;
	ev = sd_bus_get_events(io->bus);
	if (ev < 0) {
		busio_fail(io, ev);
		return;
	}
	if (ev & POLLIN)
		want |= UV_READABLE;
	if (ev & POLLOUT)
		want |= UV_WRITABLE;
	if (want != io->poll_events) {
		r = uv_poll_start(&io->poll, want, on_poll);
		if (r < 0) {
			busio_fail(io, r);
			return;
		}
		io->poll_events = want;
	}
	r = sd_bus_get_timeout(io->bus, &until);
	if (r < 0) {
		busio_fail(io, r);
		return;
	}
	if (until == UINT64_MAX) {
		uv_timer_stop(&io->timer);
		return;
	}
	now = now_usec();
	/* Round up: waking a millisecond early would only spin once more. */
	uv_timer_start(&io->timer, on_timer, until <= now ? 0 : (until - now + 999) / 1000, 0);
}

static void busio_closed(uv_handle_t *h)
{
	struct fgw_busio *io = h->data;

	if (--io->n_open > 0)
		return;
	/* Sends what is still queued (a Disconnect(), a StopNotify()) before letting go. */
	if (!io->failed)
		(void) sd_bus_flush(io->bus);
	sd_bus_unref(io->bus);
	free(io);
}

int fgw_busio_new(uv_loop_t *loop, sd_bus *bus, fgw_busio_fail_cb_t fail_cb, void *user_data,
		  struct fgw_busio **ret)
{
	struct fgw_busio *io;
	int fd, r;

	fd = sd_bus_get_fd(bus);
	if (fd < 0)
		return fd;
	io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->loop = loop;
	io->fd = fd;
	io->poll_events = -1;
	io->fail_cb = fail_cb;
	io->user_data = user_data;
	r = uv_poll_init(loop, &io->poll, fd);
	if (r < 0) {
		free(io);
		return r;
	}
	io->bus = sd_bus_ref(bus);
	io->poll.data = io->timer.data = io->prepare.data = io;
	uv_timer_init(loop, &io->timer);
	uv_prepare_init(loop, &io->prepare);
	io->n_open = 3;
	uv_prepare_start(&io->prepare, on_prepare);
	*ret = io;
	return 0;
}

struct fgw_busio *fgw_busio_free(struct fgw_busio *io)
{
	if (!io || io->freeing)
		return NULL;
	io->freeing = true;
	uv_close((uv_handle_t *) &io->poll, busio_closed);
	uv_close((uv_handle_t *) &io->timer, busio_closed);
	uv_close((uv_handle_t *) &io->prepare, busio_closed);
	return NULL;
}

bool fgw_busio_failed(const struct fgw_busio *io)
{
	return io->failed;
}

FGW_EXPORT bool fgw_bluez_bus_lost(struct fgw_bluez *b)
{
	return !b->io || fgw_busio_failed(b->io);
}

int fgw_bus_open(const char *address, const char *description, sd_bus **ret)
{
	sd_bus *bus = NULL;
	int r;

	if (!address) {
		/* sd-bus honours DBUS_SYSTEM_BUS_ADDRESS here. */
		r = sd_bus_open_system_with_description(&bus, description);
		if (r < 0)
			return r;
		*ret = bus;
		return 0;
	}
	r = sd_bus_new(&bus);
	if (r < 0)
		return r;
	r = sd_bus_set_address(bus, address);
	if (r >= 0)
		r = sd_bus_set_bus_client(bus, 1);
	if (r >= 0 && description)
		r = sd_bus_set_description(bus, description);
	if (r >= 0)
		r = sd_bus_start(bus);
	if (r < 0) {
		sd_bus_unref(bus);
		return r;
	}
	*ret = bus;
	return 0;
}
