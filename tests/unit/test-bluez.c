/*
 * lib/bluez against a scripted fake bluetoothd on a private dbus-daemon: discovery, the
 * connection manager on both data paths, limits, timeouts, losses, bluetoothd restarts, and
 * malformed or unexpected D-Bus replies (which must be errors, never crashes).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "bluez-fake.h"
#include "bluez.h"
#include "util.h"

/* The bytes as one packet object, as the SMP client hands them over; the caller's reference
 * is dropped here, the link keeps its own while it needs them. */
static int link_send(struct fgw_bluez_link *l, const uint8_t *data, size_t len)
{
	struct fgw_buf *b = fgw_buf_new(len);
	int r;

	if (!b)
		return -ENOMEM;
	if (len)
		memcpy(fgw_buf_data(b), data, len);
	(void) fgw_buf_set_len(b, len);
	r = fgw_bluez_link_send(l, b);
	fgw_buf_unref(b);
	return r;
}

struct ctx {
	uv_loop_t loop;
	uv_timer_t tick;
	struct fake_bluez fake;
	struct fgw_bluez_options opts;
	struct fgw_bluez *b;
	enum fgw_bluez_adapter_state astate;
	unsigned n_adapter_events;
	int adapter_errs[16];
	unsigned n_adapter_errs;
	unsigned found, updated, lost;
	struct fgw_bluez_device_info info;
	const void *param; /* the case of a table-driven test */
};

struct lctx {
	struct ctx *c;
	struct fgw_bluez_link *l;
	unsigned n_cb;
	int err;
	bool ready;
	bool free_on_ready;
	unsigned order; /* when it became ready, 1-based */
	uint8_t rx[4096];
	size_t rx_len;
	unsigned n_rx;
};

static unsigned ready_counter;

static void on_tick(uv_timer_t *t)
{
}

static bool run_until(struct ctx *c, bool (*pred)(void *), void *arg, unsigned ms)
{
	uint64_t end = fgw_now_ms() + ms;

	while (!pred(arg)) {
		if (fgw_now_ms() > end)
			return false;
		uv_run(&c->loop, UV_RUN_ONCE);
	}
	return true;
}

/*
 * Runs the loop until @cond holds; fails the test if it does not within WAIT_MS. The bound is
 * generous because the machine may be loaded: a passing test never waits for it.
 */
#define WAIT_MS 5000
#define WAIT_FOR(c, cond)                                                                          \
	do {                                                                                       \
		uint64_t end_ = fgw_now_ms() + WAIT_MS;                                            \
		while (!(cond)) {                                                                  \
			if (fgw_now_ms() > end_)                                                   \
				fail_msg("timed out waiting for %s", #cond);                       \
			uv_run(&(c)->loop, UV_RUN_ONCE);                                           \
		}                                                                                  \
	} while (0)

/* Whether @addr is known with RSSI @rssi. */
static bool has_rssi(struct ctx *c, const char *addr, int rssi)
{
	struct fgw_bluez_device_info info;

	return fgw_bluez_device_get(c->b, addr, &info) == 0 && info.has_rssi && info.rssi == rssi;
}

static void on_adapter(struct fgw_bluez *b, enum fgw_bluez_adapter_state s, int err, void *ud)
{
	struct ctx *c = ud;

	c->astate = s;
	c->n_adapter_events++;
	if (err && c->n_adapter_errs < ARRAY_SIZE(c->adapter_errs))
		c->adapter_errs[c->n_adapter_errs++] = err;
}

static void on_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
		      const struct fgw_bluez_device_info *info, void *ud)
{
	struct ctx *c = ud;

	if (ev == FGW_BLUEZ_DEVICE_FOUND)
		c->found++;
	else if (ev == FGW_BLUEZ_DEVICE_UPDATED)
		c->updated++;
	else
		c->lost++;
	c->info = *info;
	c->info.name = NULL;
}

static bool adapter_on(void *arg)
{
	struct ctx *c = arg;
	return c->astate == FGW_BLUEZ_ADAPTER_STATE_ON && c->fake.discovering;
}

static bool saw_adapter_err(struct ctx *c, int err)
{
	for (unsigned i = 0; i < c->n_adapter_errs; i++)
		if (c->adapter_errs[i] == err)
			return true;
	return false;
}

/* Starts the fake (as configured by the test beforehand) and a bluez on it. */
static void start(struct ctx *c)
{
	assert_int_equal(fake_start(&c->fake, &c->loop), 0);
	c->opts.bus_address = c->fake.address;
	assert_int_equal(fgw_bluez_new(&c->loop, &c->opts, &c->b), 0);
	assert_true(fgw_bluez_add_adapter_watch(c->b, on_adapter, c) > 0);
	assert_true(fgw_bluez_add_device_watch(c->b, on_device, c) > 0);
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	assert_int_equal(uv_loop_init(&c->loop), 0);
	/* A periodic tick so that UV_RUN_ONCE never sleeps past a deadline. */
	uv_timer_init(&c->loop, &c->tick);
	uv_timer_start(&c->tick, on_tick, 10, 10);
	fgw_bluez_options_init(&c->opts);
	c->opts.connect_timeout_ms = 3000;
	c->opts.call_timeout_ms = 2000;
	c->fake.powered = true;
	ready_counter = 0;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	c->b = fgw_bluez_free(c->b);
	fake_stop(&c->fake);
	uv_close((uv_handle_t *) &c->tick, NULL);
	for (int i = 0; i < 50; i++)
		uv_run(&c->loop, UV_RUN_NOWAIT);
	/* Every handle closed: the leak check libuv's own tests use. */
	assert_int_equal(uv_loop_close(&c->loop), 0);
	free(c);
	return 0;
}

static void on_link_state(struct fgw_bluez_link *l, int err, void *ud)
{
	struct lctx *x = ud;

	x->n_cb++;
	x->err = err;
	if (err == 0) {
		x->ready = true;
		x->order = ++ready_counter;
		if (x->free_on_ready)
			x->l = fgw_bluez_link_free(x->l);
	}
}

static void on_link_rx(struct fgw_bluez_link *l, const uint8_t *data, size_t len, void *ud)
{
	struct lctx *x = ud;

	if (x->rx_len + len <= sizeof(x->rx)) {
		memcpy(x->rx + x->rx_len, data, len);
		x->rx_len += len;
	}
	x->n_rx++;
}

static bool link_done(void *arg)
{
	struct lctx *x = arg;
	return x->n_cb > 0;
}

static void link_connect(struct ctx *c, struct lctx *x, const char *addr)
{
	x->c = c;
	assert_int_equal(fgw_bluez_connect(c->b, addr, on_link_state, on_link_rx, x, &x->l), 0);
	/* never before the call returned */
	assert_int_equal(x->n_cb, 0);
}

/* ---- discovery ---- */

static void count_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
			 const struct fgw_bluez_device_info *info, void *user_data)
{
	(*(unsigned *) user_data)++;
}

static void test_discovery(void **state)
{
	struct ctx *c = *state;
	struct fgw_bluez_device_info info;
	struct fake_dev *d;

	c->fake.powered = false;
	c->opts.rssi_threshold = -80;
	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "smp-dev-1", true);
	start(c);
	/* powered on by us, filter set, discovering */
	assert_true(run_until(c, adapter_on, c, 3000));
	assert_int_equal(c->fake.n_set_powered, 1);
	assert_true(c->fake.filter_transport_le);
	assert_true(c->fake.filter_uuid_smp);
	/* the threshold is ours: in bluetoothd's filter the kernel would drop RSSI-127 reports */
	assert_int_equal(c->fake.filter_rssi, 0);
	assert_string_equal(fgw_bluez_adapter_name(c->b), "hci0");
	assert_int_equal(c->found, 1);
	assert_int_equal(fgw_bluez_device_get(c->b, "c0:00:00:00:00:01", &info), 0);
	assert_string_equal(info.addr, "C0:00:00:00:00:01");
	assert_string_equal(info.name, "smp-dev-1");
	assert_true(info.has_rssi);
	assert_int_equal(info.rssi, -50);
	assert_true(info.smp_service);
	assert_true(info.last_seen_ms > 0);

	/* a device appearing later, an RSSI update, a removal */
	fake_add_device(&c->fake, "C0:00:00:00:00:02", "smp-dev-2", true);
	fake_set_rssi(&c->fake, d, -61);
	WAIT_FOR(c, c->found == 2 && has_rssi(c, "C0:00:00:00:00:01", -61));
	assert_true(c->updated >= 1);
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:01", &info), 0);
	assert_int_equal(info.rssi, -61);
	fake_unexport(&c->fake, d);
	WAIT_FOR(c, c->lost == 1);
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:01", &info), -ENOENT);
	assert_int_equal(fgw_bluez_device_get(c->b, "not an address", &info), -EINVAL);
}

/* RSSI 127 (HCI "not available", as virtual controllers report) is unknown, not too weak. */
static void test_rssi_invalid(void **state)
{
	struct ctx *c = *state;
	struct fgw_bluez_device_info info;
	struct fake_dev *d;
	unsigned n = 0;

	c->opts.rssi_threshold = -90;
	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "smp-invalid", true);
	fake_set_rssi(&c->fake, d, 127);
	d = fake_add_device(&c->fake, "C0:00:00:00:00:02", "smp-weak", true);
	fake_set_rssi(&c->fake, d, -100);
	d = fake_add_device(&c->fake, "C0:00:00:00:00:03", "smp-strong", true);
	fake_set_rssi(&c->fake, d, -60);
	start(c);
	/* all three come in the one GetManagedObjects answer, before discovery is on */
	assert_true(run_until(c, adapter_on, c, 3000));
	assert_int_equal(c->fake.filter_rssi, 0);
	/* the invalid and the strong one are reported, the weak one is not */
	assert_int_equal(c->found, 2);
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:01", &info), 0);
	assert_false(info.has_rssi);
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:03", &info), 0);
	assert_true(info.has_rssi);
	assert_int_equal(info.rssi, -60);
	fgw_bluez_foreach_device(c->b, count_device, &n);
	assert_int_equal(n, 2);
}

static void test_power_refused(void **state)
{
	struct ctx *c = *state;

	c->fake.powered = false;
	c->fake.refuse_power = true;
	start(c);
	WAIT_FOR(c, saw_adapter_err(c, -EACCES));
	assert_int_equal(c->astate, FGW_BLUEZ_ADAPTER_STATE_OFF);
	assert_non_null(strstr(fgw_bluez_last_error(c->b), "NotAuthorized"));
}

static void test_adapter_missing(void **state)
{
	struct ctx *c = *state;

	c->opts.adapter = "hci7";
	start(c);
	WAIT_FOR(c, saw_adapter_err(c, -ENODEV));
	assert_int_equal(c->astate, FGW_BLUEZ_ADAPTER_STATE_ABSENT);
	assert_non_null(strstr(fgw_bluez_last_error(c->b), "hci7"));
}

/* ---- links: both data paths ---- */

static void echo_check(struct ctx *c, struct lctx *x, struct fake_dev *d, size_t len)
{
	uint8_t pkt[1200];
	unsigned size = (unsigned) fgw_bluez_link_write_size(x->l);

	for (size_t i = 0; i < sizeof(pkt); i++)
		pkt[i] = (uint8_t) (i * 7 + 3);
	assert_int_equal(link_send(x->l, pkt, len), 0);
	WAIT_FOR(c, x->rx_len >= len);
	assert_int_equal(x->rx_len, len);
	assert_memory_equal(x->rx, pkt, len);
	/* split into writes of exactly min(MTU-3, 510), never mixing packets */
	assert_int_equal(d->n_frames, (len + size - 1) / size);
	for (unsigned i = 0; i + 1 < d->n_frames; i++)
		assert_int_equal(d->frame_len[i], size);
	assert_int_equal(d->rx_bytes, len);
}

static void test_link_acquired(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;

	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect(c, &x, "c0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, 0);
	assert_int_equal(fgw_bluez_link_state(x.l), FGW_BLUEZ_LINK_STATE_READY);
	assert_true(fgw_bluez_link_acquired(x.l));
	assert_int_equal(fgw_bluez_link_mtu(x.l), 247);
	assert_int_equal(fgw_bluez_link_write_size(x.l), 244);
	assert_int_equal(fgw_bluez_active_links(c->b), 1);
	assert_string_equal(fgw_bluez_link_addr(x.l), "C0:00:00:00:00:01");
	echo_check(c, &x, d, 600);
	assert_false(d->write_value_not_command);
	/* free: Disconnect, and the slot is held until it is answered */
	x.l = fgw_bluez_link_free(x.l);
	assert_int_equal(fgw_bluez_active_links(c->b), 1);
	WAIT_FOR(c, d->n_disconnects == 1 && fgw_bluez_active_links(c->b) == 0);
	assert_int_equal(x.n_cb, 1);
}

static void test_link_fallback(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;

	c->fake.no_acquire = true;
	c->fake.mtu = 100;
	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, 0);
	assert_false(fgw_bluez_link_acquired(x.l));
	assert_int_equal(fgw_bluez_link_mtu(x.l), 100);
	assert_true(d->notifying);
	echo_check(c, &x, d, 1000);
	assert_false(d->write_value_not_command);
	x.l = fgw_bluez_link_free(x.l);
}

static void test_link_acquire_forced_off(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;

	c->opts.acquire = false;
	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, 0);
	assert_false(fgw_bluez_link_acquired(x.l));
	echo_check(c, &x, d, 300);
	x.l = fgw_bluez_link_free(x.l);
}

static void test_send_limits(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	static uint8_t big[70000];

	fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	c->fake.echo = false;
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_int_equal(link_send(x.l, big, 10), -ENOTCONN);
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, 0);
	assert_int_equal(link_send(x.l, big, 0), -EINVAL);
	assert_int_equal(link_send(x.l, big, sizeof(big)), 0);
	/* the queue is bounded: a second big packet before the first drained is refused */
	assert_int_equal(link_send(x.l, big, sizeof(big)), -ENOBUFS);
	x.l = fgw_bluez_link_free(x.l);
}

/* ---- the connection limit ---- */

static bool all_done(void *arg)
{
	struct lctx *x = arg;
	for (int i = 0; i < 5; i++)
		if (!x[i].n_cb)
			return false;
	return true;
}

static void test_max_connections(void **state)
{
	struct ctx *c = *state;
	struct lctx x[5] = {0};
	char addr[18];

	c->opts.max_connections = 2;
	for (int i = 0; i < 5; i++) {
		snprintf(addr, sizeof(addr), "C0:00:00:00:00:%02X", i + 1);
		fake_add_device(&c->fake, addr, "dev", true);
	}
	start(c);
	for (int i = 0; i < 5; i++) {
		snprintf(addr, sizeof(addr), "C0:00:00:00:00:%02X", i + 1);
		x[i].free_on_ready = true; /* done with it at once: the next may go */
		link_connect(c, &x[i], addr);
	}
	assert_true(fgw_bluez_active_links(c->b) <= 2);
	assert_true(run_until(c, all_done, x, 5000));
	for (int i = 0; i < 5; i++) {
		assert_int_equal(x[i].err, 0);
		assert_int_equal(x[i].order, (unsigned) i + 1); /* FIFO */
	}
	/* the slots come back when the Disconnects are answered */
	WAIT_FOR(c, fgw_bluez_active_links(c->b) == 0);
	assert_int_equal(c->fake.connected_max, 2);
}

/* ---- errors and timeouts ---- */

struct connect_error_case {
	const char *name, *message;
	int err;
};

static const struct connect_error_case ce_abort_local = {
    "org.bluez.Error.Failed", "le-connection-abort-by-local", -ETIMEDOUT};
static const struct connect_error_case ce_abort_remote = {
    "org.bluez.Error.Failed", "le-connection-abort-by-remote", -ECONNREFUSED};
static const struct connect_error_case ce_failed = {"org.bluez.Error.Failed", "Software caused",
						    -EIO};
static const struct connect_error_case ce_not_ready = {"org.bluez.Error.NotReady",
						       "Resource Not Ready", -ENETDOWN};
static const struct connect_error_case ce_not_permitted = {"org.bluez.Error.NotPermitted", "no",
							   -EPERM};
static const struct connect_error_case ce_not_authorized = {"org.bluez.Error.NotAuthorized", "no",
							    -EACCES};
static const struct connect_error_case ce_not_available = {"org.bluez.Error.NotAvailable", "no",
							   -EAGAIN};
static const struct connect_error_case ce_does_not_exist = {"org.bluez.Error.DoesNotExist", "x",
							    -ENODEV};
static const struct connect_error_case ce_unknown = {"com.example.Weird", "x", -EIO};

static void test_connect_error(void **state)
{
	struct ctx *c = *state;
	const struct connect_error_case *ec = c->param;
	struct lctx x = {0};
	struct fake_dev *d;

	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	d->connect_error = ec->name;
	d->connect_message = ec->message;
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, ec->err);
	assert_int_equal(fgw_bluez_link_state(x.l), FGW_BLUEZ_LINK_STATE_FAILED);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), ec->name));
	assert_int_equal(link_send(x.l, (const uint8_t *) "x", 1), -ENOTCONN);
	WAIT_FOR(c, fgw_bluez_active_links(c->b) == 0);
	assert_int_equal(x.n_cb, 1);
	x.l = fgw_bluez_link_free(x.l);
}

#define CONNECT_ERROR_TEST(name)                                                                   \
	static void test_##name(void **state)                                                      \
	{                                                                                          \
		struct ctx *c = *state;                                                            \
		c->param = &name;                                                                  \
		test_connect_error(state);                                                         \
	}
CONNECT_ERROR_TEST(ce_abort_local)
CONNECT_ERROR_TEST(ce_abort_remote)
CONNECT_ERROR_TEST(ce_failed)
CONNECT_ERROR_TEST(ce_not_ready)
CONNECT_ERROR_TEST(ce_not_permitted)
CONNECT_ERROR_TEST(ce_not_authorized)
CONNECT_ERROR_TEST(ce_not_available)
CONNECT_ERROR_TEST(ce_does_not_exist)
CONNECT_ERROR_TEST(ce_unknown)

static void test_connect_timeout(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;
	uint64_t t0;

	c->opts.connect_timeout_ms = 300;
	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	d->connect_silent = true;
	start(c);
	/* a short timeout: let the adapter come up first, even on a loaded machine */
	assert_true(run_until(c, adapter_on, c, 5000));
	t0 = fgw_now_ms();
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, -ETIMEDOUT);
	assert_true(fgw_now_ms() - t0 >= 300);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "connecting"));
	/* the attempt was cancelled with Disconnect() and the slot came back */
	WAIT_FOR(c, d->n_disconnects == 1 && fgw_bluez_active_links(c->b) == 0);
	x.l = fgw_bluez_link_free(x.l);
}

static void test_resolve_timeout(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;

	c->opts.connect_timeout_ms = 300;
	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	d->no_resolve = true;
	start(c);
	/* a short timeout: let the adapter come up first, even on a loaded machine */
	assert_true(run_until(c, adapter_on, c, 5000));
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, -ETIMEDOUT);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "resolving"));
	x.l = fgw_bluez_link_free(x.l);
}

static void test_search_then_found(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;

	c->opts.scan = false;
	d = fake_add_device(&c->fake, "C0:00:00:00:00:09", "late", false);
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:09");
	/* a searching link turns discovery on although scan is off */
	WAIT_FOR(c, c->fake.discovering);
	assert_int_equal(fgw_bluez_link_state(x.l), FGW_BLUEZ_LINK_STATE_SEARCHING);
	fake_export(&c->fake, d);
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, 0);
	WAIT_FOR(c, !c->fake.discovering); /* and off again */
	x.l = fgw_bluez_link_free(x.l);
}

static void test_search_not_found(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};

	c->opts.connect_timeout_ms = 300;
	start(c);
	/* a short timeout: let the adapter come up first, even on a loaded machine */
	assert_true(run_until(c, adapter_on, c, 5000));
	link_connect(c, &x, "C0:00:00:00:00:09");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, -EHOSTDOWN); /* never listed: out of range */
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "not found"));
	x.l = fgw_bluez_link_free(x.l);
	assert_int_equal(
	    fgw_bluez_connect(c->b, "C0:00:00:00:0:09", on_link_state, on_link_rx, &x, &x.l),
	    -EINVAL);
}

static void test_reopen_while_opening(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;

	c->fake.acquire_not_connected = 1;
	d = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	/* the drop while opening was not the user's business: connected again */
	assert_int_equal(x.err, 0);
	assert_int_equal(x.n_cb, 1);
	assert_int_equal(d->n_connects, 2);
	assert_true(fgw_bluez_link_acquired(x.l));
	x.l = fgw_bluez_link_free(x.l);
}

static void test_reopen_gives_up(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};

	c->fake.acquire_not_connected = 10;
	fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, -ECONNRESET);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "while opening"));
	x.l = fgw_bluez_link_free(x.l);
}

/* ---- losses ---- */

static void ready_link(struct ctx *c, struct lctx *x, struct fake_dev **ret)
{
	*ret = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect(c, x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, x, 3000));
	assert_int_equal(x->err, 0);
	x->n_cb = 0;
}

static void test_lost_connected_false(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;
	unsigned updated;

	ready_link(c, &x, &d);
	/* Connected=false and the fds closing: reported once */
	updated = c->updated;
	fake_drop(&c->fake, d, true, true);
	assert_true(run_until(c, link_done, &x, 2000));
	/* Connected=false handled (a device update follows it), whichever came first */
	WAIT_FOR(c, c->updated > updated && fgw_bluez_active_links(c->b) == 0);
	assert_int_equal(x.n_cb, 1);
	assert_int_equal(x.err, -ECONNRESET);
	assert_int_equal(fgw_bluez_active_links(c->b), 0);
	x.l = fgw_bluez_link_free(x.l);
}

static void test_lost_fd_hangup(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};
	struct fake_dev *d;
	unsigned updated;

	ready_link(c, &x, &d);
	/* only the fds close (no signal yet): that alone is the loss */
	fake_drop(&c->fake, d, false, true);
	assert_true(run_until(c, link_done, &x, 2000));
	assert_int_equal(x.err, -ECONNRESET);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "fd"));
	/* the late Connected=false (handled once the device update is reported) changes nothing */
	updated = c->updated;
	fake_drop(&c->fake, d, true, false);
	WAIT_FOR(c, c->updated > updated);
	assert_int_equal(x.n_cb, 1);
	x.l = fgw_bluez_link_free(x.l);
}

static void test_adapter_power_cycle(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0}, y = {0};
	struct fake_dev *d;

	ready_link(c, &x, &d);
	c->n_adapter_errs = 0;
	fake_set_powered(&c->fake, false);
	assert_true(run_until(c, link_done, &x, 2000));
	/* bluetoothd says Connected=false before Powered=false; either way the link fails */
	assert_true(x.err == -ECONNRESET || x.err == -ENETDOWN);
	WAIT_FOR(c, saw_adapter_err(c, -ENETDOWN));
	/* power_on: we turn it back on, scanning resumes, a new link works */
	assert_true(run_until(c, adapter_on, c, 3000));
	assert_int_equal(c->fake.n_set_powered, 1);
	x.l = fgw_bluez_link_free(x.l);
	link_connect(c, &y, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &y, 3000));
	assert_int_equal(y.err, 0);
	y.l = fgw_bluez_link_free(y.l);
}

static void test_bluetoothd_restart(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0}, y = {0};
	struct fake_dev *d;

	ready_link(c, &x, &d);
	fake_leave(&c->fake);
	assert_true(run_until(c, link_done, &x, 2000));
	/* the fds hang up first or bluetoothd's name goes first: the link fails either way */
	assert_true(x.err == -ECONNRESET || x.err == -ENETDOWN);
	WAIT_FOR(c, c->astate == FGW_BLUEZ_ADAPTER_STATE_ABSENT && c->lost >= 1);
	/* a link asked for while bluetoothd is away waits for it */
	link_connect(c, &y, "C0:00:00:00:00:01");
	WAIT_FOR(c, fgw_bluez_link_state(y.l) == FGW_BLUEZ_LINK_STATE_SEARCHING);
	assert_int_equal(fake_return(&c->fake), 0);
	assert_true(run_until(c, link_done, &y, 3000));
	assert_int_equal(y.err, 0);
	assert_int_equal(c->astate, FGW_BLUEZ_ADAPTER_STATE_ON);
	x.l = fgw_bluez_link_free(x.l);
	y.l = fgw_bluez_link_free(y.l);
}

static void test_free_with_open_links(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0}, y = {0};
	struct fake_dev *d;

	ready_link(c, &x, &d);
	link_connect(c, &y, "C0:00:00:00:00:42");
	WAIT_FOR(c, fgw_bluez_link_state(y.l) == FGW_BLUEZ_LINK_STATE_SEARCHING);
	c->b = fgw_bluez_free(c->b);
	assert_int_equal(x.n_cb, 1);
	assert_int_equal(x.err, -ECANCELED);
	assert_int_equal(y.n_cb, 1);
	assert_int_equal(y.err, -ECANCELED);
	/* detached links are still freed by their owner */
	x.l = fgw_bluez_link_free(x.l);
	y.l = fgw_bluez_link_free(y.l);
}

/* ---- malformed and unexpected replies ---- */

static void test_objects_bad_signature(void **state)
{
	struct ctx *c = *state;

	c->fake.om_bad_replies = 1;
	fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	WAIT_FOR(c, saw_adapter_err(c, -EBADMSG));
	assert_non_null(strstr(fgw_bluez_last_error(c->b), "signature 's'"));
	assert_int_equal(c->astate, FGW_BLUEZ_ADAPTER_STATE_ABSENT);
	/* retried, and the good answer is taken */
	assert_true(run_until(c, adapter_on, c, 4000));
	assert_int_equal(c->fake.om_calls, 2);
	assert_int_equal(c->found, 1);
}

static void test_acquire_bad_signature(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};

	c->fake.acquire_bad_signature = true;
	fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, -EBADMSG);
	assert_non_null(
	    strstr(fgw_bluez_link_error(x.l), "AcquireWrite replied with signature 's'"));
	x.l = fgw_bluez_link_free(x.l);
}

static void test_acquire_notify_missing_mtu(void **state)
{
	struct ctx *c = *state;
	struct lctx x = {0};

	c->fake.acquire_notify_no_mtu = true;
	fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, -EBADMSG);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "AcquireNotify"));
	x.l = fgw_bluez_link_free(x.l);
}

static void test_missing_properties(void **state)
{
	struct ctx *c = *state;
	struct fgw_bluez_device_info info;
	struct lctx x = {0};
	struct fake_dev *d1, *d2;

	d1 = fake_add_device(&c->fake, "C0:00:00:00:00:01", "noaddr", true);
	d1->no_address_prop = true; /* the path still names it */
	d1->rssi_as_string = true;  /* wrong type: ignored, said so */
	d2 = fake_add_device(&c->fake, "C0:00:00:00:00:02", "nouuid", true);
	d2->char_without_uuid = true;
	start(c);
	assert_true(run_until(c, adapter_on, c, 3000));
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:01", &info), 0);
	assert_false(info.has_rssi);
	assert_non_null(strstr(fgw_bluez_last_error(c->b), "unexpected type"));
	/* no SMP characteristic to be found: a clear error */
	link_connect(c, &x, "C0:00:00:00:00:02");
	assert_true(run_until(c, link_done, &x, 3000));
	assert_int_equal(x.err, -ENOENT);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "no SMP characteristic"));
	x.l = fgw_bluez_link_free(x.l);
}

/* ---- pure ---- */

static void test_error_map(void **state)
{
	static const struct {
		const char *name, *msg;
		int err;
	} cases[] = {
	    {"org.bluez.Error.InProgress", "", -EINPROGRESS},
	    {"org.bluez.Error.AlreadyConnected", "", -EALREADY},
	    {"org.bluez.Error.NotReady", "", -ENETDOWN},
	    {"org.bluez.Error.NotAvailable", "", -EAGAIN},
	    {"org.bluez.Error.Failed", "le-connection-abort-by-local", -ETIMEDOUT},
	    {"org.bluez.Error.Failed", "le-connection-refused", -ECONNREFUSED},
	    {"org.bluez.Error.Failed", "Not connected", -ENOTCONN},
	    {"org.bluez.Error.Failed", NULL, -EIO},
	    {"org.bluez.Error.NotPermitted", "Write acquired", -EPERM},
	    {"org.bluez.Error.NotAuthorized", "", -EACCES},
	    {"org.bluez.Error.NotSupported", "", -EOPNOTSUPP},
	    {"org.bluez.Error.DoesNotExist", "", -ENODEV},
	    {"org.freedesktop.DBus.Error.UnknownObject", "", -ENODEV},
	    {"org.freedesktop.DBus.Error.NoReply", "", -ETIMEDOUT},
	    {"org.freedesktop.DBus.Error.ServiceUnknown", "", -ENETDOWN},
	    {"org.bluez.Error.Whatever", "", -EIO},
	    {NULL, NULL, -EIO},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		assert_int_equal(fgw_bluez_error_to_errno(cases[i].name, cases[i].msg),
				 cases[i].err);
	assert_string_equal(fgw_bluez_link_state_to_string(FGW_BLUEZ_LINK_STATE_READY), "ready");
	assert_null(fgw_bluez_link_state_to_string(_FGW_BLUEZ_LINK_STATE_MAX));
	assert_string_equal(fgw_bluez_adapter_state_to_string(FGW_BLUEZ_ADAPTER_STATE_OFF), "off");
}

static void test_bad_options(void **state)
{
	struct ctx *c = *state;
	struct fgw_bluez_options o;
	struct fgw_bluez *b = NULL;

	fgw_bluez_options_init(&o);
	o.max_connections = 0;
	assert_int_equal(fgw_bluez_new(&c->loop, &o, &b), -EINVAL);
	fgw_bluez_options_init(&o);
	o.rssi_threshold = -200;
	assert_int_equal(fgw_bluez_new(&c->loop, &o, &b), -EINVAL);
	fgw_bluez_options_init(&o);
	o.bus_address = "unix:path=/nonexistent/bus";
	assert_true(fgw_bluez_new(&c->loop, &o, &b) < 0);
	assert_null(b);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_error_map),
	    T(test_bad_options),
	    T(test_discovery),
	    T(test_rssi_invalid),
	    T(test_power_refused),
	    T(test_adapter_missing),
	    T(test_link_acquired),
	    T(test_link_fallback),
	    T(test_link_acquire_forced_off),
	    T(test_send_limits),
	    T(test_max_connections),
	    T(test_ce_abort_local),
	    T(test_ce_abort_remote),
	    T(test_ce_failed),
	    T(test_ce_not_ready),
	    T(test_ce_not_permitted),
	    T(test_ce_not_authorized),
	    T(test_ce_not_available),
	    T(test_ce_does_not_exist),
	    T(test_ce_unknown),
	    T(test_connect_timeout),
	    T(test_resolve_timeout),
	    T(test_search_then_found),
	    T(test_search_not_found),
	    T(test_reopen_while_opening),
	    T(test_reopen_gives_up),
	    T(test_lost_connected_false),
	    T(test_lost_fd_hangup),
	    T(test_adapter_power_cycle),
	    T(test_bluetoothd_restart),
	    T(test_free_with_open_links),
	    T(test_objects_bad_signature),
	    T(test_acquire_bad_signature),
	    T(test_acquire_notify_missing_mtu),
	    T(test_missing_properties),
	};

	if (getenv("FGW_DEBUG"))
		fgw_log_set_level(LOG_DEBUG);
	if (getenv("FGW_TEST_FILTER"))
		cmocka_set_test_filter(getenv("FGW_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
