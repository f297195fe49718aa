/*
 * sd-bus inside libuv, shared by the fake bluetoothd (bluez.c) and --peripheral
 * (peripheral.c): the bus fd in a uv_poll, sd_bus_get_events()/get_timeout() applied in a
 * uv_prepare before every loop iteration, sd_bus_process() until it has nothing left. A lost
 * connection stops the loop: the simulator cannot go on without its bus.
 */
#include <poll.h>

#include "sim.h"

static void process(struct sim_busloop *l)
{
	int r;

	if (l->dead)
		return;
	do {
		r = sd_bus_process(l->bus, NULL);
	} while (r > 0);
	if (r < 0) {
		fgw_log_errno(LOG_ERR, r, "D-Bus connection lost, stopping");
		l->dead = true;
		uv_stop(l->loop);
	}
}

static void on_io(uv_poll_t *p, int status, int events)
{
	process(container_of(p, struct sim_busloop, poll));
}

static void on_timer(uv_timer_t *t)
{
	process(container_of(t, struct sim_busloop, timer));
}

void sim_busloop_kick(struct sim_busloop *l)
{
	int events, uv_events = 0;
	uint64_t usec;

	if (l->dead)
		return;
	events = sd_bus_get_events(l->bus);
	if (events >= 0) {
		if (events & POLLIN)
			uv_events |= UV_READABLE;
		if (events & POLLOUT)
			uv_events |= UV_WRITABLE;
		if (!l->poll_on || uv_events != l->poll_events) {
			uv_poll_start(&l->poll, uv_events, on_io);
			l->poll_on = true;
			l->poll_events = uv_events;
		}
	}
	if (sd_bus_get_timeout(l->bus, &usec) >= 0 && usec != UINT64_MAX) {
		uint64_t now = sim_now_us();
		uv_timer_start(&l->timer, on_timer, usec > now ? (usec - now + 999) / 1000 : 0, 0);
	} else {
		uv_timer_stop(&l->timer);
	}
}

static void on_prepare(uv_prepare_t *p)
{
	sim_busloop_kick(container_of(p, struct sim_busloop, prepare));
}

void sim_busloop_init(struct sim_busloop *l, uv_loop_t *loop, sd_bus *bus)
{
	l->loop = loop;
	l->bus = bus;
	l->poll_on = l->dead = false;
	uv_poll_init(loop, &l->poll, sd_bus_get_fd(bus));
	uv_timer_init(loop, &l->timer);
	uv_prepare_init(loop, &l->prepare);
	uv_prepare_start(&l->prepare, on_prepare);
}

void sim_busloop_close(struct sim_busloop *l, void *data, uv_close_cb cb)
{
	l->poll.data = l->timer.data = l->prepare.data = data;
	uv_close((uv_handle_t *) &l->poll, cb);
	uv_close((uv_handle_t *) &l->timer, cb);
	uv_close((uv_handle_t *) &l->prepare, cb);
}
