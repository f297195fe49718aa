/*
 * lib/bluez on several adapters, against the scripted fake bluetoothd (hci0 and hci1): the
 * adapter a device is served through, one device for two objects, max_connections per
 * adapter, one Connect() in flight per adapter, "busy" answers, and an adapter that goes away.
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

static bool discovering(void *arg)
{
	struct ctx *c = arg;
	return fgw_bluez_adapter_state(c->b) == FGW_BLUEZ_ADAPTER_STATE_ON && c->fake.discovering;
}

/* The harness's start, then until both adapters scan. */
static void start_all(struct ctx *c)
{
	start(c);
	WAIT_FOR(c, discovering(c));
}

/* hci0 and hci1, all of them in use. */
static int setup_two(void **state)
{
	struct ctx *c;

	setup(state);
	c = *state;
	c->opts.adapter = "all";
	c->fake.second_adapter = true;
	return 0;
}

static const struct fgw_bluez_adapter_info *adapter_info(struct ctx *c, const char *name)
{
	static struct fgw_bluez_adapter_info info[4];
	size_t n = fgw_bluez_adapters(c->b, info, ARRAY_SIZE(info));

	for (size_t i = 0; i < n && i < ARRAY_SIZE(info); i++)
		if (strcmp(info[i].name, name) == 0)
			return &info[i];
	return NULL;
}

/* ---- which adapter ---- */

static void test_parse(void **state)
{
	char buf[32];

	(void) state;
	assert_int_equal(fgw_bluez_adapters_parse("hci0, hci1", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "hci0,hci1");
	assert_int_equal(fgw_bluez_adapters_parse(" all ", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "all");
	assert_int_equal(fgw_bluez_adapters_parse("", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	assert_int_equal(fgw_bluez_adapters_parse("hci0,all", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(fgw_bluez_adapters_parse("hci0 hci0", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(fgw_bluez_adapters_parse("hci-0", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(fgw_bluez_adapters_parse("hci0,hci1", buf, 5), -ENOBUFS);
}

static void test_bad_option(void **state)
{
	struct ctx *c = *state;
	struct fgw_bluez *b = NULL;

	c->opts.adapter = "hci0;rm";
	assert_int_equal(fgw_bluez_new(&c->loop, &c->opts, &b), -EINVAL);
	assert_null(b);
}

static void test_named_adapter(void **state)
{
	struct ctx *c = *state;
	struct fgw_bluez_device_info info;

	c->opts.adapter = "hci1";
	fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:01", "only-hci0", true);
	fake_add_device_on(&c->fake, 1, "C0:00:00:00:00:02", "only-hci1", true);
	start_all(c);
	assert_string_equal(fgw_bluez_adapter_name(c->b), "hci1");
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:01", &info), -ENOENT);
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:02", &info), 0);
	assert_string_equal(info.adapter, "hci1");
	assert_non_null(adapter_info(c, "hci1"));
	assert_null(adapter_info(c, "hci0"));
}

static void count_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
			 const struct fgw_bluez_device_info *info, void *user_data)
{
	(*(unsigned *) user_data)++;
}

/* Heard by both: one device, served through the stronger adapter, which can change. */
static void test_best_adapter(void **state)
{
	struct ctx *c = *state;
	struct fgw_bluez_device_info info;
	struct fake_dev *d0, *d1;
	struct lctx x = {0};
	unsigned n = 0;

	d0 = fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:01", "both", true);
	d1 = fake_add_device_on(&c->fake, 1, "C0:00:00:00:00:01", "both", true);
	d0->rssi = -80;
	d1->rssi = -50;
	start_all(c);
	assert_int_equal(c->found, 1);
	assert_int_equal(c->lost, 0);
	fgw_bluez_foreach_device(c->b, count_device, &n);
	assert_int_equal(n, 1);
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:01", &info), 0);
	assert_string_equal(info.adapter, "hci1");
	assert_int_equal(info.rssi, -50);

	link_connect_wait(c, &x, "C0:00:00:00:00:01");
	assert_int_equal(x.err, 0);
	assert_string_equal(fgw_bluez_link_adapter(x.l), "hci1");
	assert_int_equal(d1->n_connects, 1);
	assert_int_equal(d0->n_connects, 0);
	assert_int_equal(adapter_info(c, "hci1")->links, 1);
	assert_int_equal(adapter_info(c, "hci1")->ready, 1);
	assert_int_equal(adapter_info(c, "hci0")->links, 0);
	x.l = fgw_bluez_link_free(x.l);

	/* the device moved: hci0 hears it better now */
	fake_set_rssi(&c->fake, d0, -40);
	WAIT_FOR(c, strcmp(c->info.adapter, "hci0") == 0);
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:01", &info), 0);
	assert_string_equal(info.adapter, "hci0");
}

/* ---- slots and attempts ---- */

/* max_connections counts per adapter: the second link goes through the other adapter. */
static void test_slots_per_adapter(void **state)
{
	struct ctx *c = *state;
	struct fake_dev *a, *b0, *b1;
	struct lctx x = {0}, y = {0};

	c->opts.max_connections = 1;
	a = fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:01", "a", true);
	b0 = fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:02", "b", true);
	b1 = fake_add_device_on(&c->fake, 1, "C0:00:00:00:00:02", "b", true);
	b0->rssi = -40; /* hci0 is its best adapter, but full */
	b1->rssi = -70;
	start_all(c);
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
	assert_int_equal(x.err, 0);
	link_connect_wait(c, &y, "C0:00:00:00:00:02");
	assert_int_equal(y.err, 0);
	assert_string_equal(fgw_bluez_link_adapter(x.l), "hci0");
	assert_string_equal(fgw_bluez_link_adapter(y.l), "hci1");
	assert_int_equal(a->n_connects + b1->n_connects, 2);
	assert_int_equal(b0->n_connects, 0);
	assert_int_equal(fgw_bluez_active_links(c->b), 2);
	x.l = fgw_bluez_link_free(x.l);
	y.l = fgw_bluez_link_free(y.l);
}

static bool one_connect_sent(void *arg)
{
	struct fake_bluez *f = arg;
	return f->dev[0].n_connects + f->dev[1].n_connects >= 1;
}

/* One Connect() in flight per adapter: the second attempt waits for the first to finish. */
static void test_connect_serialised(void **state)
{
	struct ctx *c = *state;
	struct fake_dev *a, *b, *first, *second;
	struct lctx x = {0}, y = {0};

	a = fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:01", "a", true);
	b = fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:02", "b", true);
	a->connect_silent = b->connect_silent = true;
	start_all(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	link_connect(c, &y, "C0:00:00:00:00:02");
	WAIT_FOR(c, one_connect_sent(&c->fake));
	/* a fixed window on purpose: it proves that no second Connect() goes out meanwhile */
	test_loop_run_for(&c->loop, 300);
	assert_int_equal(a->n_connects + b->n_connects, 1);
	assert_true(adapter_info(c, "hci0")->connecting);
	assert_int_equal(adapter_info(c, "hci0")->links, 1);
	first = a->n_connects ? a : b;
	second = first == a ? b : a;
	fake_finish_held_connect(&c->fake, first);
	WAIT_FOR(c, second->n_connects == 1);
	fake_finish_held_connect(&c->fake, second);
	WAIT_FOR(c, link_done(&x));
	WAIT_FOR(c, link_done(&y));
	assert_int_equal(x.err, 0);
	assert_int_equal(y.err, 0);
	assert_false(adapter_info(c, "hci0")->connecting);
	assert_int_equal(adapter_info(c, "hci0")->ready, 2);
	x.l = fgw_bluez_link_free(x.l);
	y.l = fgw_bluez_link_free(y.l);
}

/* "le-connection-busy" (the kernel's EBUSY) is the adapter's state, not the device's. */
static void test_connect_busy(void **state)
{
	struct ctx *c = *state;
	struct fake_dev *d;
	struct lctx x = {0};

	d = fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:01", "a", true);
	d->connect_busy = 2;
	start_all(c);
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
	assert_int_equal(x.err, 0);
	assert_int_equal(d->n_connects, 3);
	assert_int_equal(adapter_info(c, "hci0")->busy, 2);
	x.l = fgw_bluez_link_free(x.l);
}

static void test_connect_busy_forever(void **state)
{
	struct ctx *c = *state;
	struct fake_dev *d;
	struct lctx x = {0};

	c->opts.connect_timeout_ms = 1200;
	d = fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:01", "a", true);
	d->connect_busy = 1000;
	start_all(c);
	link_connect(c, &x, "C0:00:00:00:00:01");
	WAIT_FOR(c, link_done(&x));
	assert_int_equal(x.err, -EBUSY);
	assert_non_null(strstr(fgw_bluez_link_error(x.l), "le-connection-busy"));
	assert_true(d->n_connects >= 2);
	assert_int_equal(fgw_bluez_active_links(c->b), 0);
	x.l = fgw_bluez_link_free(x.l);
}

/* hci1 is unplugged: its link fails, the device stays known through hci0 and connects there. */
static void test_adapter_removed(void **state)
{
	struct ctx *c = *state;
	struct fake_dev *d0, *d1;
	struct lctx x = {0}, y = {0};

	d0 = fake_add_device_on(&c->fake, 0, "C0:00:00:00:00:01", "both", true);
	d1 = fake_add_device_on(&c->fake, 1, "C0:00:00:00:00:01", "both", true);
	d0->rssi = -75;
	d1->rssi = -45;
	start_all(c);
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
	assert_int_equal(x.err, 0);
	assert_string_equal(fgw_bluez_link_adapter(x.l), "hci1");
	x.n_cb = 0;
	fake_remove_adapter1(&c->fake);
	WAIT_FOR(c, link_done(&x));
	assert_true(x.err == -ECONNRESET || x.err == -ENETDOWN);
	/* the device's move to hci0 is the event a loss would have been */
	WAIT_FOR(c, strcmp(c->info.adapter, "hci0") == 0 && !adapter_info(c, "hci1"));
	assert_int_equal(c->lost, 0); /* hci0 still hears it */
	assert_int_equal(fgw_bluez_adapter_state(c->b), FGW_BLUEZ_ADAPTER_STATE_ON);
	assert_null(adapter_info(c, "hci1"));
	x.l = fgw_bluez_link_free(x.l);

	link_connect_wait(c, &y, "C0:00:00:00:00:01");
	assert_int_equal(y.err, 0);
	assert_string_equal(fgw_bluez_link_adapter(y.l), "hci0");
	assert_int_equal(d0->n_connects, 1);
	y.l = fgw_bluez_link_free(y.l);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_two, teardown)

/* ---- identity ---- */

static bool updated_twice(void *arg)
{
	return ((struct ctx *) arg)->updated >= 2;
}

static bool renamed(void *arg)
{
	return ((struct ctx *) arg)->renamed > 0;
}

/*
 * bluetoothd resolves the identity of a device met under an RPA: one event old -> new, the
 * link on that object follows it; the same Address again is nothing.
 */
static void test_address_changed(void **state)
{
	struct ctx *c = *state;
	struct fgw_bluez_device_info info;
	struct fake_dev *d;
	struct lctx x = {0};

	d = fake_add_device_on(&c->fake, 0, "4A:00:00:00:00:01", "rpa", true);
	start_all(c);
	link_connect_wait(c, &x, "4A:00:00:00:00:01");
	assert_int_equal(x.err, 0);
	c->updated = 0;
	fake_set_address(&c->fake, d, "4A:00:00:00:00:01", "random");
	fake_set_rssi(&c->fake, d, -50);
	WAIT_FOR(c, updated_twice(c));
	assert_int_equal(c->renamed, 0);
	fake_set_address(&c->fake, d, "C0:00:00:00:00:0A", "public");
	WAIT_FOR(c, renamed(c));
	/* a fixed window on purpose: it proves that no second rename follows */
	test_loop_run_for(&c->loop, 100);
	assert_int_equal(c->renamed, 1);
	assert_string_equal(c->info.old_addr, "4A:00:00:00:00:01");
	assert_string_equal(c->info.addr, "C0:00:00:00:00:0A");
	assert_int_equal(c->lost, 0);
	assert_int_equal(fgw_bluez_device_get(c->b, "4A:00:00:00:00:01", &info), -ENOENT);
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:0A", &info), 0);
	/* the link stays up on the same object, under the identity address */
	assert_string_equal(fgw_bluez_link_addr(x.l), "C0:00:00:00:00:0A");
	assert_int_equal(x.n_cb, 1);
	assert_int_equal(adapter_info(c, "hci0")->ready, 1);
	x.l = fgw_bluez_link_free(x.l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse), T(test_bad_option),		T(test_named_adapter),
	    T(test_best_adapter),	  T(test_slots_per_adapter),	T(test_connect_serialised),
	    T(test_connect_busy),	  T(test_connect_busy_forever), T(test_adapter_removed),
	    T(test_address_changed),
	};

	if (getenv("FGW_DEBUG"))
		fgw_log_set_level(LOG_DEBUG);
	if (getenv("FGW_TEST_FILTER"))
		cmocka_set_test_filter(getenv("FGW_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
