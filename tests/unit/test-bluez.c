/*
 * lib/bluez against a scripted fake bluetoothd on a private dbus-daemon: discovery, adapter
 * errors, the error tables, and malformed or unexpected D-Bus replies (which must be errors,
 * never crashes). The links are in test-bluez-link.c, several adapters in test-bluez-adapters.c.
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
	WAIT_FOR(c, adapter_on(c));
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
	WAIT_FOR(c, adapter_on(c));
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
	WAIT_FOR(c, adapter_on(c));
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
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
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
	link_connect_wait(c, &x, "C0:00:00:00:00:01");
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
	WAIT_FOR(c, adapter_on(c));
	assert_int_equal(fgw_bluez_device_get(c->b, "C0:00:00:00:00:01", &info), 0);
	assert_false(info.has_rssi);
	assert_non_null(strstr(fgw_bluez_last_error(c->b), "unexpected type"));
	/* no SMP characteristic to be found: a clear error */
	link_connect_wait(c, &x, "C0:00:00:00:00:02");
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
