/* UDP transport against an echo socket on loopback: one datagram per packet each way. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "loop-harness.h"
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

struct fx {
	uv_loop_t loop;
	uv_udp_t echo;
	uint16_t port;
	unsigned echoed;
	struct fgw_transport *t;
	unsigned states;
	int state_err;
	unsigned frames;
	uint8_t last[2048];
	size_t last_len;
};

static void echo_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	static char buf[65536];

	*b = uv_buf_init(buf, sizeof(buf));
}

static void echo_sent(uv_udp_send_t *req, int status)
{
	free(req);
}

static void echo_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
		      unsigned flags)
{
	struct fx *f = h->data;
	uv_udp_send_t *req;
	uv_buf_t b;

	if (n <= 0 || !addr)
		return;
	f->echoed++;
	/* answer as the device does: one datagram back per request (try_send: copies now) */
	b = uv_buf_init(buf->base, (unsigned) n);
	if (uv_udp_try_send(h, &b, 1, addr) >= 0)
		return;
	req = malloc(sizeof(*req));
	uv_udp_send(req, h, &b, 1, addr, echo_sent);
}

static void on_state(struct fgw_transport *t, int err, void *user_data)
{
	struct fx *f = user_data;

	f->states++;
	f->state_err = err;
}

static void on_rx(struct fgw_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	struct fx *f = user_data;

	f->frames++;
	f->last_len = FGW_MIN(len, sizeof(f->last));
	memcpy(f->last, data, f->last_len);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct sockaddr_in a;
	struct sockaddr_storage got;
	int n = sizeof(got);

	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_udp_init(&f->loop, &f->echo), 0);
	f->echo.data = f;
	uv_ip4_addr("127.0.0.1", 0, &a);
	assert_int_equal(uv_udp_bind(&f->echo, (struct sockaddr *) &a, 0), 0);
	assert_int_equal(uv_udp_getsockname(&f->echo, (struct sockaddr *) &got, &n), 0);
	f->port = ntohs(((struct sockaddr_in *) &got)->sin_port);
	assert_int_equal(uv_udp_recv_start(&f->echo, echo_alloc, echo_recv), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	fgw_transport_free(f->t);
	uv_close((uv_handle_t *) &f->echo, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

static void wait_frames(struct fx *f, unsigned n)
{
	for (int i = 0; i < 200 && f->frames < n; i++)
		uv_run(&f->loop, UV_RUN_ONCE);
}

static void test_round_trip(void **state)
{
	struct fx *f = *state;
	uint8_t pkt[1472], big[1473] = {0};

	assert_int_equal(fgw_transport_udp_new(&f->loop, "localhost", f->port, &f->t), 0);
	assert_string_equal(fgw_transport_kind(f->t), "udp");
	assert_non_null(strstr(fgw_transport_peer(f->t), "udp:127.0.0.1:"));
	assert_int_equal(fgw_transport_mtu(f->t), 1472);
	assert_int_equal(fgw_transport_max_packet(f->t), 1472);
	assert_int_equal(send_bytes(f->t, pkt, 8), -ENOTCONN);
	assert_int_equal(fgw_transport_open(f->t, on_state, on_rx, f), 0);
	assert_int_equal(f->states, 0); /* never inside open() */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->states, 1);
	assert_int_equal(f->state_err, 0);
	for (size_t i = 0; i < sizeof(pkt); i++)
		pkt[i] = (uint8_t) i;
	/* a burst of datagrams, each comes back whole: no framing added or lost */
	for (unsigned i = 0; i < 20; i++) {
		pkt[0] = (uint8_t) i;
		assert_int_equal(send_bytes(f->t, pkt, 100 + i * 60), 0);
	}
	wait_frames(f, 20);
	assert_int_equal(f->frames, 20);
	assert_int_equal(f->last_len, 100 + 19 * 60);
	assert_int_equal(f->last[0], 19);
	assert_memory_equal(f->last + 1, pkt + 1, f->last_len - 1);
	assert_int_equal(send_bytes(f->t, big, sizeof(big)), -EMSGSIZE);
	/* close: nothing more delivered, send refused; open again works */
	fgw_transport_close(f->t);
	assert_int_equal(send_bytes(f->t, pkt, 10), -ENOTCONN);
	assert_int_equal(fgw_transport_open(f->t, on_state, on_rx, f), 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->states, 2);
	assert_int_equal(send_bytes(f->t, pkt, 10), 0);
	wait_frames(f, 21);
	assert_int_equal(f->frames, 21);
}

/* Nobody listening (a rebooting device): each ICMP refusal is reported as -ECONNREFUSED at
 * once, but it is no link loss: the transport stays open and sends go on. */
static void test_refused_is_not_loss(void **state)
{
	struct fx *f = *state;
	uint8_t pkt[16] = {0};
	uint16_t port = f->port;

	uv_close((uv_handle_t *) &f->echo, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_udp_init(&f->loop, &f->echo), 0); /* for teardown */
	assert_int_equal(fgw_transport_udp_new(&f->loop, "127.0.0.1", port, &f->t), 0);
	assert_int_equal(fgw_transport_open(f->t, on_state, on_rx, f), 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->states, 1);
	assert_int_equal(f->state_err, 0);
	for (int i = 0; i < 5; i++) {
		unsigned before = f->states;

		assert_int_equal(send_bytes(f->t, pkt, sizeof(pkt)), 0);
		for (int k = 0; k < 200 && f->states == before; k++)
			uv_run(&f->loop, UV_RUN_ONCE);
		assert_int_equal(f->states, before + 1);
		assert_int_equal(f->state_err, -ECONNREFUSED);
	}
	assert_int_equal(f->frames, 0);
}

static void test_addresses(void **state)
{
	struct fx *f = *state;
	struct fgw_transport *t = NULL;

	assert_int_equal(fgw_transport_udp_new(&f->loop, "not-an-ip", 1337, &t), -EINVAL);
	assert_int_equal(fgw_transport_udp_new(&f->loop, "127.0.0.1", 0, &t), -EINVAL);
	assert_int_equal(fgw_transport_udp_new(&f->loop, "::1", 1337, &t), 0);
	assert_string_equal(fgw_transport_peer(t), "udp:[::1]:1337");
	assert_int_equal(fgw_transport_mtu(t), 1452);
	fgw_transport_free(t);
	/* free without ever opening */
	assert_int_equal(fgw_transport_udp_new(&f->loop, "127.0.0.1", 1337, &t), 0);
	fgw_transport_free(t);
	assert_null(fgw_transport_free(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_is_not_loss, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
