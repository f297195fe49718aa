/*
 * lib/bluez's links against a scripted fake bluetoothd on a private dbus-daemon: the connection
 * manager on both data paths, limits, connect errors, timeouts, losses and bluetoothd restarts.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bluez-harness.h"
#include "util.h"

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
	link_connect_wait(c, &x, "c0:00:00:00:00:01");
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
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
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
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
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
	WAIT_FOR(c, link_done(&x));
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
	WAIT_FOR(c, all_done(x));
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
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
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
	WAIT_FOR(c, adapter_on(c));
	t0 = fgw_now_ms();
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
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
	WAIT_FOR(c, adapter_on(c));
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
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
	WAIT_FOR(c, link_done(&x));
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
	WAIT_FOR(c, adapter_on(c));
	link_connect_wait(c, &x, "C0:00:00:00:00:09");
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
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
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
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
	assert_int_equal(x.err, -ECONNRESET);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "while opening"));
	x.l = fgw_bluez_link_free(x.l);
}

/* ---- losses ---- */

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
	WAIT_FOR(c, link_done(&x));
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
	WAIT_FOR(c, link_done(&x));
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
	WAIT_FOR(c, link_done(&x));
	/* bluetoothd says Connected=false before Powered=false; either way the link fails */
	assert_true(x.err == -ECONNRESET || x.err == -ENETDOWN);
	WAIT_FOR(c, saw_adapter_err(c, -ENETDOWN));
	/* power_on: we turn it back on, scanning resumes, a new link works */
	WAIT_FOR(c, adapter_on(c));
	assert_int_equal(c->fake.n_set_powered, 1);
	x.l = fgw_bluez_link_free(x.l);
	link_connect_wait(c, &y, "C0:00:00:00:00:01");
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
	WAIT_FOR(c, link_done(&x));
	/* the fds hang up first or bluetoothd's name goes first: the link fails either way */
	assert_true(x.err == -ECONNRESET || x.err == -ENETDOWN);
	WAIT_FOR(c, c->astate == FGW_BLUEZ_ADAPTER_STATE_ABSENT && c->lost >= 1);
	/* a link asked for while bluetoothd is away waits for it */
	link_connect(c, &y, "C0:00:00:00:00:01");
	WAIT_FOR(c, fgw_bluez_link_state(y.l) == FGW_BLUEZ_LINK_STATE_SEARCHING);
	assert_int_equal(fake_return(&c->fake), 0);
	WAIT_FOR(c, link_done(&y));
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

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
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
	};

	if (getenv("FGW_DEBUG"))
		fgw_log_set_level(LOG_DEBUG);
	if (getenv("FGW_TEST_FILTER"))
		cmocka_set_test_filter(getenv("FGW_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
