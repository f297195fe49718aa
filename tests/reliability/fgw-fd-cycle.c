/*
 * fgw-fd-cycle: opens and closes BLE links through lib/bluez and the ble transport (the code
 * fotagwd runs for every device job) over and over, and counts this process's open file
 * descriptors, to show that a connect/disconnect cycle leaks none.
 *
 *   fgw-fd-cycle [--no-acquire] [--debug] CYCLES ADDR...
 *
 * Every ADDR cycles on its own: open the transport (connect, resolve, AcquireWrite +
 * AcquireNotify: two fds per link), one SMP echo through it, close (Disconnect, fds closed).
 * CYCLES is the total over all addresses. Each address first runs one warm-up cycle (the bus
 * connection and the loop's own fds then exist); once all are closed and their disconnects
 * complete the fd count is taken, the remaining cycles run, and it is taken again the same
 * way. Output: one JSON line.
 * Exit status 1 if any cycle failed or the count grew.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bluez.h"
#include "loop-harness.h" /* test_buf_copy() only */
#include "transport-ble.h"
#include "transport.h"
#include "util.h"

/* The caller's reference is dropped here, the link keeps its own while it needs them. */
static int send_bytes(struct fgw_transport *t, const uint8_t *data, size_t len)
{
	struct fgw_buf *b = test_buf_copy(data, len);
	int r = b ? fgw_transport_send(t, b) : -ENOMEM;

	fgw_buf_unref(b);
	return r;
}

struct link {
	struct app *app;
	struct fgw_transport *t;
	unsigned cycles;
	uint8_t seq;
};

struct app {
	uv_loop_t *loop;
	struct fgw_bluez *b;
	uv_timer_t settle;
	struct link *links;
	unsigned n_links, total, target, started, done, failed;
	int fds_warm, fds_end;
	bool acquired_all;
};

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory stream's own fd */
}

static void link_start(struct link *l);

static void on_settled(uv_timer_t *t)
{
	struct app *a = t->data;

	if (a->fds_warm == 0) {
		/* Warm-up done: count, then the real run. */
		a->fds_warm = count_fds();
		a->target = a->total;
		for (unsigned i = 0; i < a->n_links && a->started < a->target; i++)
			link_start(&a->links[i]);
		return;
	}
	a->fds_end = count_fds();
	uv_stop(a->loop);
}

static void link_finish_cycle(struct link *l, bool ok)
{
	struct app *a = l->app;

	fgw_transport_close(l->t);
	l->cycles++;
	a->done++;
	if (!ok)
		a->failed++;
	if (a->started < a->target) {
		link_start(l);
		return;
	}
	if (a->done == a->target) {
		/* Closing frees the link slot only once bluetoothd has disconnected: give the
		 * disconnects (and the hang-ups of the acquired fds) time to complete. */
		uv_timer_start(&a->settle, on_settled, 1500, 0);
	}
}

static void on_rx(struct fgw_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	struct link *l = user_data;

	fgw_debug("%s: %zu bytes in, first %02x", fgw_transport_peer(t), len, len ? data[0] : 0);
	/* An echo response: op 3 (write response), group 0, id 0, our sequence number. */
	if (len >= 8 && data[0] == 3 && data[4] == 0 && data[5] == 0 && data[6] == l->seq &&
	    data[7] == 0)
		link_finish_cycle(l, true);
}

static void on_state(struct fgw_transport *t, int err, void *user_data)
{
	struct link *l = user_data;
	/* SMP v1 write, group 0 (os), id 0 (echo), payload {"d": "fd"} */
	uint8_t pkt[] = {2, 0, 0, 6, 0, 0, 0, 0, 0xa1, 0x61, 'd', 0x62, 'f', 'd'};
	int r;

	if (err < 0) {
		fgw_warning("%s: link failed in cycle %u: %s (%s)", fgw_transport_peer(t),
			    l->cycles, strerror(-err), fgw_transport_ble_last_error(t));
		link_finish_cycle(l, false);
		return;
	}
	if (!fgw_transport_ble_acquired(t))
		l->app->acquired_all = false;
	pkt[6] = ++l->seq;
	r = send_bytes(t, pkt, sizeof(pkt));
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "%s: send failed", fgw_transport_peer(t));
		link_finish_cycle(l, false);
	}
}

static void link_start(struct link *l)
{
	int r;

	l->app->started++;
	r = fgw_transport_open(l->t, on_state, on_rx, l);
	if (r < 0) {
		fgw_log_errno(LOG_ERR, r, "%s: open failed", fgw_transport_peer(l->t));
		l->app->failed++;
		uv_stop(l->app->loop);
	}
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"no-acquire", no_argument, NULL, 'n'},
	    {"debug", no_argument, NULL, 'd'},
	    {},
	};
	struct fgw_bluez_options bo;
	struct app a = {.loop = uv_default_loop(), .acquired_all = true};
	int64_t cycles;
	int c, r, rc;

	fgw_bluez_options_init(&bo);
	bo.scan = false;
	bo.filter_service = false;
	bo.connect_timeout_ms = 15000;
	fgw_log_set_level(LOG_NOTICE);
	while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
		if (c == 'n')
			bo.acquire = false;
		else if (c == 'd')
			fgw_log_set_level(LOG_DEBUG);
		else
			return 2;
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: fgw-fd-cycle [--no-acquire] [--debug] CYCLES ADDR...\n");
		return 2;
	}
	if (fgw_parse_int64(argv[optind++], 1, 1000000, &cycles) < 0)
		return 2;
	a.n_links = (unsigned) (argc - optind);
	/* The warm-up cycles count toward the total. */
	a.total = (unsigned) cycles;
	a.target = a.n_links;
	if (a.total < 2 * a.n_links)
		return 2;
	r = fgw_bluez_new(a.loop, &bo, &a.b);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to reach the bus") ? 1 : 1;
	a.links = calloc(a.n_links, sizeof(*a.links));
	if (!a.links)
		return 1;
	uv_timer_init(a.loop, &a.settle);
	a.settle.data = &a;
	for (unsigned i = 0; i < a.n_links; i++) {
		a.links[i].app = &a;
		r = fgw_transport_ble_new(a.b, argv[optind + i], &a.links[i].t);
		if (r < 0) {
			fgw_log_errno(LOG_ERR, r, "Bad address '%s'", argv[optind + i]);
			return 2;
		}
	}
	for (unsigned i = 0; i < a.n_links; i++)
		link_start(&a.links[i]);
	/* Runs until on_settled() stops it; a link that cannot even start ends the run. */
	uv_run(a.loop, UV_RUN_DEFAULT);

	rc = a.failed || a.done != a.total || a.fds_warm <= 0 || a.fds_end != a.fds_warm;
	printf("{\"cycles\": %u, \"failed\": %u, \"links\": %u, \"acquired\": %s, "
	       "\"fds_warm\": %d, \"fds_end\": %d}\n",
	       a.done, a.failed, a.n_links, a.acquired_all ? "true" : "false", a.fds_warm,
	       a.fds_end);
	for (unsigned i = 0; i < a.n_links; i++)
		a.links[i].t = fgw_transport_free(a.links[i].t);
	a.b = fgw_bluez_free(a.b);
	uv_walk(a.loop, close_walk, NULL);
	uv_run(a.loop, UV_RUN_DEFAULT);
	free(a.links);
	return rc;
}
