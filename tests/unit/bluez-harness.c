/* The lib/bluez unit tests' harness of bluez-harness.h. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bluez-harness.h"

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
	else if (ev == FGW_BLUEZ_DEVICE_ADDRESS_CHANGED)
		c->renamed++;
	else
		c->lost++;
	if (ev == FGW_BLUEZ_DEVICE_UPDATED && c->renamed)
		return; /* keep the rename's info for the test */
	c->info = *info;
	c->info.name = NULL;
}

bool adapter_on(void *arg)
{
	struct ctx *c = arg;
	return c->astate == FGW_BLUEZ_ADAPTER_STATE_ON && c->fake.discovering;
}

bool saw_adapter_err(struct ctx *c, int err)
{
	for (unsigned i = 0; i < c->n_adapter_errs; i++)
		if (c->adapter_errs[i] == err)
			return true;
	return false;
}

bool has_rssi(struct ctx *c, const char *addr, int rssi)
{
	struct fgw_bluez_device_info info;

	return fgw_bluez_device_get(c->b, addr, &info) == 0 && info.has_rssi && info.rssi == rssi;
}

void start(struct ctx *c)
{
	assert_int_equal(fake_start(&c->fake, &c->loop), 0);
	c->opts.bus_address = c->fake.address;
	assert_int_equal(fgw_bluez_new(&c->loop, &c->opts, &c->b), 0);
	assert_true(fgw_bluez_add_adapter_watch(c->b, on_adapter, c) > 0);
	assert_true(fgw_bluez_add_device_watch(c->b, on_device, c) > 0);
}

int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	test_loop_init(&c->loop, &c->tick);
	fgw_bluez_options_init(&c->opts);
	c->opts.connect_timeout_ms = 3000;
	c->opts.call_timeout_ms = 2000;
	c->fake.powered = true;
	*state = c;
	return 0;
}

int teardown(void **state)
{
	struct ctx *c = *state;

	c->b = fgw_bluez_free(c->b);
	fake_stop(&c->fake);
	test_loop_done(&c->loop, &c->tick);
	free(c);
	return 0;
}

void on_link_state(struct fgw_bluez_link *l, int err, void *ud)
{
	struct lctx *x = ud;

	x->n_cb++;
	x->err = err;
	if (err == 0) {
		x->ready = true;
		x->order = ++x->c->ready_counter;
		if (x->free_on_ready)
			x->l = fgw_bluez_link_free(x->l);
	}
}

void on_link_rx(struct fgw_bluez_link *l, const uint8_t *data, size_t len, void *ud)
{
	struct lctx *x = ud;

	if (x->rx_len + len <= sizeof(x->rx)) {
		memcpy(x->rx + x->rx_len, data, len);
		x->rx_len += len;
	}
	x->n_rx++;
}

bool link_done(void *arg)
{
	struct lctx *x = arg;
	return x->n_cb > 0;
}

void link_connect(struct ctx *c, struct lctx *x, const char *addr)
{
	x->c = c;
	assert_int_equal(fgw_bluez_connect(c->b, addr, on_link_state, on_link_rx, x, &x->l), 0);
	/* never before the call returned */
	assert_int_equal(x->n_cb, 0);
}

void link_connect_wait(struct ctx *c, struct lctx *x, const char *addr)
{
	link_connect(c, x, addr);
	WAIT_FOR(c, link_done(x));
}

int link_send(struct fgw_bluez_link *l, const uint8_t *data, size_t len)
{
	struct fgw_buf *b = test_buf_copy(data, len);
	int r;

	if (!b)
		return -ENOMEM;
	r = fgw_bluez_link_send(l, b);
	fgw_buf_unref(b);
	return r;
}

void ready_link(struct ctx *c, struct lctx *x, struct fake_dev **ret)
{
	*ret = fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	start(c);
	link_connect_wait(c, x, "C0:00:00:00:00:01");
	assert_int_equal(x->err, 0);
	x->n_cb = 0;
}
