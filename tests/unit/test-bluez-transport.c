/*
 * The ble transport (lib/transport/ble.c) over lib/bluez, against the scripted fake
 * bluetoothd: open, split sends, notifications handed up, loss reported once, reopen, free.
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
#include "loop-harness.h"
#include "transport-ble.h"
#include "util.h"

/* The caller's reference is dropped here, the link keeps its own while it needs them. */
static int send_bytes(struct fgw_transport *t, const uint8_t *data, size_t len)
{
	struct fgw_buf *b = test_buf_copy(data, len);
	int r = b ? fgw_transport_send(t, b) : -ENOMEM;

	fgw_buf_unref(b);
	return r;
}

struct ctx {
	uv_loop_t loop;
	uv_timer_t tick;
	struct fake_bluez fake;
	struct fgw_bluez *b;
	unsigned n_state;
	int err;
	uint8_t rx[65536];
	size_t rx_len;
	bool free_in_cb;
	struct fgw_transport *t;
};

static bool got_state(void *arg)
{
	struct ctx *c = arg;

	return c->n_state > 0;
}

static bool got_500(void *arg)
{
	struct ctx *c = arg;

	return c->rx_len >= 500;
}

static void on_state(struct fgw_transport *t, int err, void *ud)
{
	struct ctx *c = ud;

	c->n_state++;
	c->err = err;
	if (c->free_in_cb)
		c->t = fgw_transport_free(t); /* allowed by the contract */
}

static void on_rx(struct fgw_transport *t, const uint8_t *data, size_t len, void *ud)
{
	struct ctx *c = ud;

	if (c->rx_len + len <= sizeof(c->rx)) {
		memcpy(c->rx + c->rx_len, data, len);
		c->rx_len += len;
	}
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	struct fgw_bluez_options o;

	assert_non_null(c);
	test_loop_init(&c->loop, &c->tick);
	c->fake.powered = true;
	assert_int_equal(fake_start(&c->fake, &c->loop), 0);
	fake_add_device(&c->fake, "C0:00:00:00:00:01", "dev", true);
	fgw_bluez_options_init(&o);
	o.bus_address = c->fake.address;
	o.connect_timeout_ms = 3000;
	assert_int_equal(fgw_bluez_new(&c->loop, &o, &c->b), 0);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	c->t = fgw_transport_free(c->t);
	c->b = fgw_bluez_free(c->b);
	fake_stop(&c->fake);
	test_loop_done(&c->loop, &c->tick);
	free(c);
	return 0;
}

static void test_transport(void **state)
{
	struct ctx *c = *state;
	struct fake_dev *d = &c->fake.dev[0];
	uint8_t pkt[500];

	assert_int_equal(fgw_transport_ble_new(c->b, "C0:00:00:00:00", &c->t), -EINVAL);
	assert_int_equal(fgw_transport_ble_new(c->b, "C0-00-00-00-00-01", &c->t), -EINVAL);
	assert_int_equal(fgw_transport_ble_new(c->b, "c0:00:00:00:00:01", &c->t), 0);
	assert_string_equal(fgw_transport_kind(c->t), "ble");
	assert_string_equal(fgw_transport_peer(c->t), "ble:C0:00:00:00:00:01");
	assert_int_equal(send_bytes(c->t, pkt, 10), -ENOTCONN);
	assert_int_equal(fgw_transport_max_packet(c->t), FGW_TRANSPORT_BLE_MAX_PACKET);
	assert_int_equal(fgw_transport_mtu(c->t), 20);
	assert_int_equal(fgw_transport_open(c->t, on_state, on_rx, c), 0);
	assert_int_equal(fgw_transport_open(c->t, on_state, on_rx, c), -EALREADY);
	assert_int_equal(c->n_state, 0);
	TEST_WAIT_FOR(&c->loop, got_state(c));
	assert_int_equal(c->err, 0);
	assert_int_equal(fgw_transport_mtu(c->t), 244);
	assert_int_equal(fgw_transport_ble_att_mtu(c->t), 247);
	assert_true(fgw_transport_ble_acquired(c->t));
	for (size_t i = 0; i < sizeof(pkt); i++)
		pkt[i] = (uint8_t) i;
	assert_int_equal(send_bytes(c->t, pkt, sizeof(pkt)), 0);
	TEST_WAIT_FOR(&c->loop, got_500(c));
	assert_memory_equal(c->rx, pkt, sizeof(pkt));
	assert_int_equal(d->n_frames, 3); /* 244 + 244 + 12 */

	/* a loss comes through the state callback once, with its reason kept */
	c->n_state = 0;
	fake_drop(&c->fake, d, true, true);
	TEST_WAIT_FOR(&c->loop, got_state(c));
	assert_int_equal(c->err, -ECONNRESET);
	assert_non_null(strstr(fgw_transport_ble_last_error(c->t), "lost"));
	assert_int_equal(send_bytes(c->t, pkt, 10), -ENOTCONN);

	/* it opens again, and closing asks for no callback */
	c->n_state = 0;
	assert_int_equal(fgw_transport_open(c->t, on_state, on_rx, c), 0);
	TEST_WAIT_FOR(&c->loop, got_state(c));
	assert_int_equal(c->err, 0);
	c->n_state = 0;
	fgw_transport_close(c->t);
	test_loop_drain(&c->loop, 20);
	assert_int_equal(c->n_state, 0);
	assert_int_equal(send_bytes(c->t, pkt, 10), -ENOTCONN);
}

static bool got_all(void *arg)
{
	struct ctx *c = arg;

	return c->rx_len >= 40 * 1000;
}

/*
 * bluetoothd behind: the AcquireWrite fd says EAGAIN after a few writes. The link keeps its
 * own reference to each packet (the caller drops its own at once: ASan sees any use after),
 * goes on from the same byte when the fd is writable again, and every byte arrives once, in
 * order, in writes that never mix two packets.
 */
static void test_write_fd_stalls(void **state)
{
	struct ctx *c = *state;
	struct fake_dev *d = &c->fake.dev[0];
	static uint8_t all[40 * 1000], more[65000];

	c->fake.echo = true;
	c->fake.write_sndbuf = 4096; /* a few ATT writes, far below 40 packets */
	assert_int_equal(fgw_transport_ble_new(c->b, "C0:00:00:00:00:01", &c->t), 0);
	assert_int_equal(fgw_transport_open(c->t, on_state, on_rx, c), 0);
	TEST_WAIT_FOR(&c->loop, got_state(c));
	assert_int_equal(c->err, 0);
	assert_true(fgw_transport_ble_acquired(c->t));
	fake_stall_writes(d, true);
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (uint8_t) (i * 31 + i / 1000);
	for (int k = 0; k < 40; k++)
		assert_int_equal(send_bytes(c->t, all + k * 1000, 1000), 0);
	test_loop_drain(&c->loop, 20);
	assert_int_equal(d->rx_bytes, 0);
	/* the link holds what the fd refused, up to its bound */
	assert_int_equal(send_bytes(c->t, more, sizeof(more)), 0);
	assert_int_equal(send_bytes(c->t, more, sizeof(more)), -ENOBUFS);
	fake_stall_writes(d, false);
	TEST_WAIT_FOR(&c->loop, got_all(c));
	assert_memory_equal(c->rx, all, sizeof(all));
	/* 1000 bytes: 244 + 244 + 244 + 244 + 24, per packet */
	for (unsigned i = 0; i < 40 * 5; i++)
		assert_int_equal(d->frame_len[i], i % 5 == 4 ? 24 : 244);
}

static void test_free_in_callback(void **state)
{
	struct ctx *c = *state;

	c->free_in_cb = true;
	assert_int_equal(fgw_transport_ble_new(c->b, "C0:00:00:00:00:77", &c->t), 0);
	assert_int_equal(fgw_transport_open(c->t, on_state, on_rx, c), 0);
	/* unknown device: fails after the timeout, and the callback frees the transport */
	TEST_WAIT_FOR(&c->loop, got_state(c));
	assert_int_equal(c->err, -EHOSTDOWN);
	assert_null(c->t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_transport, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_fd_stalls, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
