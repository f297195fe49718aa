/*
 * SMP client against a scripted peer: golden request bytes out, golden answers back, split or
 * packed in frames, late, wrong, missing, or replaced by a link loss.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "golden.h"
#include "peer-transport.h"
#include "smp-client.h"

struct fx {
	uv_loop_t loop;
	struct peer *peer;
	struct fgw_smp_client *c;
	int state_err;
	unsigned state_calls;
};

struct result {
	unsigned calls, destroyed;
	int err;
	bool returned; /* set after the request call returned: the callback must see it */
	bool cb_before_return;
	struct fgw_smp_hdr hdr;
	struct fgw_smp_status status;
	struct fgw_smp_upload_rsp upload;
	uint8_t payload[512];
	size_t len;
	bool free_client; /* free the client from inside the callback */
	struct fx *fx;
};

static void on_state(struct fgw_smp_client *c, int err, void *user_data)
{
	struct fx *f = user_data;

	f->state_err = err;
	f->state_calls++;
}

static void on_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct result *r = user_data;

	r->calls++;
	r->err = err;
	if (!r->returned)
		r->cb_before_return = true;
	if (rsp) {
		r->hdr = rsp->hdr;
		r->status = rsp->status;
		r->upload = rsp->upload;
		r->len = FGW_MIN(rsp->len, sizeof(r->payload));
		memcpy(r->payload, rsp->payload, r->len);
	}
	if (r->free_client) {
		r->fx->c = fgw_smp_client_free(r->fx->c);
	}
}

static void on_destroy(void *user_data)
{
	((struct result *) user_data)->destroyed++;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(peer_new(&f->loop, 244, 1024, &f->peer), 0);
	assert_int_equal(fgw_smp_client_new(&f->loop, peer_transport(f->peer), &f->c), 0);
	assert_int_equal(fgw_smp_client_request(f->c, &(struct fgw_smp_req){.payload = NULL}, 0,
						on_rsp, NULL, NULL, NULL),
			 -ENOTCONN);
	assert_int_equal(fgw_smp_client_open(f->c, on_state, f), 0);
	assert_int_equal(f->state_calls, 0); /* never inside open() */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->state_calls, 1);
	assert_int_equal(f->state_err, 0);
	assert_true(fgw_smp_client_is_open(f->c));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	fgw_smp_client_free(f->c);
	fgw_transport_free(peer_transport(f->peer));
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle closed: nothing leaked */
	free(f);
	return 0;
}

static int send_req(struct fx *f, const struct fgw_smp_req *req, unsigned timeout, struct result *r)
{
	int e;

	r->fx = f;
	e = fgw_smp_client_request(f->c, req, timeout, on_rsp, r, on_destroy, NULL);
	r->returned = true;
	return e;
}

/* An upload chunk packed as the upload engine packs it, sent without a copy. */
static int send_upload(struct fx *f, const struct fgw_smp_upload_chunk *ch, unsigned timeout,
		       struct result *r, const struct fgw_buf **ret_pkt)
{
	struct fgw_buf *b = fgw_buf_new(512);
	size_t len;
	int e;

	assert_non_null(b);
	assert_int_equal(fgw_smp_upload_encode(ch, fgw_buf_data(b), fgw_buf_capacity(b), &len), 0);
	assert_int_equal(fgw_buf_set_len(b, len), 0);
	if (ret_pkt)
		*ret_pkt = b;
	r->fx = f;
	e = fgw_smp_client_send(f->c, b, timeout, on_rsp, r, on_destroy, NULL);
	r->returned = true;
	return e;
}

static void run_until(struct fx *f, struct result *r)
{
	while (r->calls == 0 && uv_run(&f->loop, UV_RUN_ONCE))
		;
}

/* Echo "hi": exact golden bytes out (v2, seq 0x2a would be ours: seq is not compared),
 * answered by the golden indefinite-map reply, in every frame split from 1 byte up. */
static void test_echo_split(void **state)
{
	struct fx *f = *state;
	size_t rl, al;
	uint8_t *req_bytes = golden_load("echo-req-v2", &rl);
	uint8_t *ans = golden_load("echo-rsp-v2", &al);

	for (size_t split = 0; split <= al; split += (split < 4 ? 1 : 5)) {
		struct peer_step step = {.expect = req_bytes,
					 .expect_len = rl,
					 .answer = ans,
					 .answer_len = al,
					 .split = split};
		struct fgw_smp_req req;
		struct result r = {0};
		char *text = NULL;

		peer_play(f->peer, &step, 1);
		assert_int_equal(fgw_smp_req_echo("hi", &req), 0);
		assert_int_equal(send_req(f, &req, 1000, &r), 0);
		fgw_smp_req_done(&req);
		run_until(f, &r);
		assert_int_equal(peer_mismatches(f->peer), 0);
		assert_int_equal(r.calls, 1);
		assert_false(r.cb_before_return);
		assert_int_equal(r.err, 0);
		assert_int_equal(r.destroyed, 1);
		assert_true(fgw_smp_status_ok(&r.status));
		assert_int_equal(fgw_smp_echo_decode(r.payload, r.len, &text), 0);
		assert_string_equal(text, "hi");
		free(text);
	}
	free(req_bytes);
	free(ans);
}

/* Two answers in one frame, in the order opposite to the requests: matched by seq. */
static void test_packed_out_of_order(void **state)
{
	struct fx *f = *state;
	struct fgw_smp_req a, b;
	struct result ra = {0}, rb = {0};
	size_t l1, l2, n;
	uint8_t *e = golden_load("echo-rsp-v2", &l1);
	uint8_t *p = golden_load("params-rsp-v2", &l2);
	uint8_t both[256];
	const uint8_t *sent;
	struct fgw_smp_params pr;

	peer_set_handler(f->peer, NULL, NULL);
	peer_play(f->peer, NULL, 0);
	assert_int_equal(fgw_smp_req_echo("hi", &a), 0);
	assert_int_equal(fgw_smp_req_params(&b), 0);
	assert_int_equal(send_req(f, &a, 1000, &ra), 0);
	sent = peer_last(f->peer, &n);
	e[6] = sent[6];
	assert_int_equal(send_req(f, &b, 1000, &rb), 0);
	sent = peer_last(f->peer, &n);
	p[6] = sent[6];
	assert_int_not_equal(e[6], p[6]);
	memcpy(both, p, l2);
	memcpy(both + l2, e, l1);
	peer_deliver(f->peer, both, l1 + l2, 0, 0);
	run_until(f, &ra);
	run_until(f, &rb);
	assert_int_equal(ra.err, 0);
	assert_int_equal(rb.err, 0);
	assert_int_equal(ra.hdr.id, FGW_SMP_OS_ECHO);
	assert_int_equal(rb.hdr.id, FGW_SMP_OS_PARAMS);
	assert_int_equal(fgw_smp_params_decode(rb.payload, rb.len, &pr), 0);
	assert_int_equal(pr.buf_size, 2475);
	fgw_smp_req_done(&a);
	fgw_smp_req_done(&b);
	free(e);
	free(p);
}

/* Silence: -ETIMEDOUT; the late answer is then a stray and ignored. */
static void test_timeout_then_late(void **state)
{
	struct fx *f = *state;
	struct peer_step step = {.expect = NULL};
	struct fgw_smp_client_stats st;
	struct fgw_smp_req req;
	struct result r = {0};
	size_t al;
	uint8_t *ans = golden_load("echo-rsp-v2", &al);
	const uint8_t *sent;
	size_t n;

	peer_play(f->peer, &step, 1);
	assert_int_equal(fgw_smp_req_echo("hi", &req), 0);
	assert_int_equal(send_req(f, &req, 20, &r), 0);
	run_until(f, &r);
	assert_int_equal(r.err, -ETIMEDOUT);
	assert_int_equal(r.destroyed, 1);
	assert_int_equal(fgw_smp_client_pending(f->c), 0);
	sent = peer_last(f->peer, &n);
	ans[6] = sent[6];
	peer_deliver(f->peer, ans, al, 0, 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	fgw_smp_client_get_stats(f->c, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.stray, 1);
	assert_int_equal(r.calls, 1);
	fgw_smp_req_done(&req);
	free(ans);
}

/* Device errors are data: err 0, status filled, both forms. A bad body is -EBADMSG. */
static void test_device_errors(void **state)
{
	struct fx *f = *state;
	static const uint8_t not_map[] = {0x0b, 0, 0, 1, 0, 1, 0, 1, 0x80};
	size_t l1, l2;
	uint8_t *v2 = golden_load("upload-rsp-v2-no-free-slot", &l1);
	uint8_t *v1 = golden_load("params-rsp-v1-enotsup", &l2);
	struct peer_step steps[] = {
	    {.answer = v2, .answer_len = l1},
	    {.answer = v1, .answer_len = l2},
	    {.answer = not_map, .answer_len = sizeof(not_map)},
	};
	struct fgw_smp_upload_chunk ch = {.total = 64, .off = 0, .data = v2, .data_len = 32};
	struct fgw_smp_req pa;
	struct result r1 = {0}, r2 = {0}, r3 = {0};

	v1[0] = 0x09; /* Zephyr answers a v2 request for an unknown command: v2 header, rc 8 */
	peer_play(f->peer, steps, 3);
	assert_int_equal(fgw_smp_req_params(&pa), 0);
	assert_int_equal(send_upload(f, &ch, 1000, &r1, NULL), 0);
	run_until(f, &r1);
	assert_int_equal(r1.err, 0);
	assert_true(r1.status.has_err);
	assert_int_equal(r1.status.err_group, 1);
	assert_int_equal(r1.status.err_rc, 9);
	assert_int_equal(send_req(f, &pa, 1000, &r2), 0);
	run_until(f, &r2);
	assert_int_equal(r2.err, 0);
	assert_int_equal(r2.status.rc, 8);
	/* rc 8 is not a version problem: the client stays on v2 */
	assert_int_equal(fgw_smp_client_get_version(f->c), FGW_SMP_V2);
	assert_int_equal(send_upload(f, &ch, 1000, &r3, NULL), 0);
	run_until(f, &r3);
	assert_int_equal(r3.err, -EBADMSG);
	fgw_smp_req_done(&pa);
	free(v1);
	free(v2);
}

/* An answer for another group/id with our seq is not ours. */
static void test_wrong_command(void **state)
{
	struct fx *f = *state;
	size_t al;
	uint8_t *ans = golden_load("params-rsp-v2", &al);
	struct peer_step step = {.answer = ans, .answer_len = al};
	struct fgw_smp_req req;
	struct result r = {0};

	peer_play(f->peer, &step, 1);
	assert_int_equal(fgw_smp_req_echo("x", &req), 0);
	assert_int_equal(send_req(f, &req, 30, &r), 0);
	run_until(f, &r);
	assert_int_equal(r.err, -ETIMEDOUT);
	fgw_smp_req_done(&req);
	free(ans);
}

/* Firmware from before SMP v2 answers with a v1 header: the next request goes out as v1.
 * A v1 request answered rc 12 (v1 disabled) is resent as v2 by itself. */
static void test_version_fallback(void **state)
{
	struct fx *f = *state;
	static const uint8_t v1_echo[] = {0x03, 0, 0, 5, 0, 0, 0, 0, 0xa1, 0x61, 'r', 0x61, 'a'};
	static const uint8_t too_old[] = {0x03, 0, 0, 5, 0, 0, 0, 0, 0xa1, 0x62, 'r', 'c', 0x0c};
	static const uint8_t v2_echo[] = {0x0b, 0, 0, 5, 0, 0, 0, 0, 0xa1, 0x61, 'r', 0x61, 'b'};
	struct peer_step steps[] = {
	    {.answer = v1_echo, .answer_len = sizeof(v1_echo)},
	    {.answer = too_old, .answer_len = sizeof(too_old)},
	    {.answer = v2_echo, .answer_len = sizeof(v2_echo)},
	};
	struct fgw_smp_req req;
	struct result r1 = {0}, r2 = {0};
	const uint8_t *sent;
	size_t n;

	peer_play(f->peer, steps, 3);
	assert_int_equal(fgw_smp_req_echo("a", &req), 0);
	assert_int_equal(send_req(f, &req, 1000, &r1), 0);
	sent = peer_last(f->peer, &n);
	assert_int_equal(sent[0], 0x0a); /* v2 WRITE */
	run_until(f, &r1);
	assert_int_equal(r1.err, 0);
	assert_int_equal(fgw_smp_client_get_version(f->c), FGW_SMP_V1);
	assert_int_equal(send_req(f, &req, 1000, &r2), 0);
	sent = peer_last(f->peer, &n);
	assert_int_equal(sent[0], 0x02); /* v1 WRITE */
	run_until(f, &r2);
	/* rc 12 was not shown to us: the request went out again as v2 and got its answer */
	assert_int_equal(r2.err, 0);
	assert_true(fgw_smp_status_ok(&r2.status));
	assert_int_equal(r2.hdr.version, FGW_SMP_V2);
	sent = peer_last(f->peer, &n);
	assert_int_equal(sent[0], 0x0a);
	assert_int_equal(peer_sent(f->peer), 3);
	assert_int_equal(fgw_smp_client_get_version(f->c), FGW_SMP_V2);
	fgw_smp_req_done(&req);
}

/*
 * The client keeps the packet it was handed and sends that same object again after rc 12,
 * restamped as v2: no copy. Unless the transport still holds it (queued writes): then the
 * resend goes out from a copy and the queued bytes do not change under the transport.
 */
static void test_resend_same_packet(void **state)
{
	struct fx *f = *state;
	static const uint8_t too_old[] = {0x03, 0, 0, 5, 0, 1, 0, 1, 0xa1, 0x62, 'r', 'c', 0x0c};
	static const uint8_t off32[] = {0x0b, 0,    0,	 7,   0,   1,	 0,   1,
					0xa1, 0x63, 'o', 'f', 'f', 0x18, 0x20};
	struct peer_step steps[] = {
	    {.answer = too_old, .answer_len = sizeof(too_old)},
	    {.answer = off32, .answer_len = sizeof(off32)},
	    {.answer = too_old, .answer_len = sizeof(too_old)},
	    {.answer = off32, .answer_len = sizeof(off32)},
	};
	static const uint8_t data[32] = {1, 2, 3};
	static const uint8_t sha[32] = {9};
	struct fgw_smp_upload_chunk ch = {
	    .total = 64, .off = 0, .sha = sha, .data = data, .data_len = 32};
	struct result r1 = {0}, r2 = {0};
	const struct fgw_buf *pkt, *held;

	peer_play(f->peer, steps, 4);
	fgw_smp_client_set_version(f->c, FGW_SMP_V1);
	assert_int_equal(send_upload(f, &ch, 1000, &r1, &pkt), 0);
	assert_ptr_equal(peer_last_packet(f->peer), pkt);
	run_until(f, &r1);
	assert_int_equal(r1.err, 0);
	assert_int_equal(peer_sent(f->peer), 2);
	assert_ptr_equal(peer_last_packet(f->peer), pkt); /* the same object went out again */
	assert_int_equal(r1.hdr.version, FGW_SMP_V2);
	/* the answer was read once, its off handed over with the status */
	assert_true(fgw_smp_status_ok(&r1.status));
	assert_true(r1.upload.has_off);
	assert_int_equal(r1.upload.off, 32);

	peer_hold_packets(f->peer, true);
	fgw_smp_client_set_version(f->c, FGW_SMP_V1);
	assert_int_equal(send_upload(f, &ch, 1000, &r2, &pkt), 0);
	held = peer_held_packet(f->peer);
	assert_ptr_equal(held, pkt);
	run_until(f, &r2);
	assert_int_equal(r2.err, 0);
	assert_int_equal(peer_sent(f->peer), 4);
	assert_ptr_not_equal(peer_last_packet(f->peer), held);
	/* what the transport holds still reads v1 WRITE; the copy went out as v2 */
	assert_int_equal(fgw_buf_data(peer_held_packet(f->peer))[0], 0x02);
	assert_int_equal(r2.hdr.version, FGW_SMP_V2);
	assert_int_equal(peer_mismatches(f->peer), 0);
	peer_hold_packets(f->peer, false);
}

/*
 * A packet handed over is the client's even when sending fails: the transport's -ENOMEM or
 * -ENOBUFS, a packet above max_packet, a header that is no request. No callback runs, and
 * ASan's leak check sees every reference dropped.
 */
static void test_send_failures(void **state)
{
	struct fx *f = *state;
	static const uint8_t data[32];
	struct fgw_smp_upload_chunk ch = {.total = 64, .off = 0, .data = data, .data_len = 32};
	struct result r = {0};
	struct fgw_buf *b;

	peer_play(f->peer, NULL, 0);
	peer_fail_sends(f->peer, -ENOMEM);
	assert_int_equal(send_upload(f, &ch, 1000, &r, NULL), -ENOMEM);
	peer_fail_sends(f->peer, -ENOBUFS);
	assert_int_equal(send_upload(f, &ch, 1000, &r, NULL), -ENOBUFS);
	peer_fail_sends(f->peer, 0);
	fgw_smp_client_set_max_packet(f->c, 40);
	assert_int_equal(send_upload(f, &ch, 1000, &r, NULL), -EMSGSIZE);
	fgw_smp_client_set_max_packet(f->c, 0);
	/* a response header, and one whose length disagrees with the packet */
	b = fgw_buf_new(16);
	assert_int_equal(fgw_buf_set_len(b, 9), 0);
	memcpy(fgw_buf_data(b), (const uint8_t[]){0x0b, 0, 0, 1, 0, 1, 0, 1, 0xa0}, 9);
	assert_int_equal(fgw_smp_client_send(f->c, b, 1000, on_rsp, &r, on_destroy, NULL), -EINVAL);
	b = fgw_buf_new(16);
	assert_int_equal(fgw_buf_set_len(b, 9), 0);
	memcpy(fgw_buf_data(b), (const uint8_t[]){0x0a, 0, 0, 2, 0, 1, 0, 1, 0xa0}, 9);
	assert_int_equal(fgw_smp_client_send(f->c, b, 1000, on_rsp, &r, on_destroy, NULL), -EINVAL);
	assert_int_equal(fgw_smp_client_send(f->c, NULL, 1000, on_rsp, &r, on_destroy, NULL),
			 -EINVAL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(r.calls + r.destroyed, 0);
	assert_int_equal(fgw_smp_client_pending(f->c), 0);
	assert_int_equal(peer_sent(f->peer), 0);
}

/* Link loss fails what is in flight with the transport's error; sending then -ENOTCONN. */
static void test_disconnect(void **state)
{
	struct fx *f = *state;
	struct peer_step step = {.disconnect = -ECONNRESET};
	struct fgw_smp_req req;
	struct result r = {0}, r2 = {0};

	peer_play(f->peer, &step, 1);
	assert_int_equal(fgw_smp_req_params(&req), 0);
	assert_int_equal(send_req(f, &req, 1000, &r), 0);
	run_until(f, &r);
	assert_int_equal(r.err, -ECONNRESET);
	assert_int_equal(r.destroyed, 1);
	assert_int_equal(f->state_err, -ECONNRESET);
	assert_false(fgw_smp_client_is_open(f->c));
	assert_int_equal(send_req(f, &req, 1000, &r2), -ENOTCONN);
	assert_int_equal(r2.calls, 0);
	fgw_smp_req_done(&req);
}

/* UDP, nothing listens: the request fails at once with -ECONNREFUSED (not after its timeout);
 * the client stays open and the next request goes out. */
static void test_refused(void **state)
{
	struct fx *f = *state;
	struct peer_step step = {.disconnect = -ECONNREFUSED};
	struct fgw_smp_req req;
	struct fgw_smp_client_stats st;
	struct result r = {0}, r2 = {0};

	peer_play(f->peer, &step, 1);
	assert_int_equal(fgw_smp_req_params(&req), 0);
	assert_int_equal(send_req(f, &req, 600000, &r), 0); /* the test would time out */
	run_until(f, &r);
	assert_int_equal(r.err, -ECONNREFUSED);
	assert_int_equal(f->state_calls, 1); /* no link loss reported */
	assert_true(fgw_smp_client_is_open(f->c));
	fgw_smp_client_get_stats(f->c, &st);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(send_req(f, &req, 50, &r2), 0);
	run_until(f, &r2);
	assert_int_equal(r2.err, -ETIMEDOUT);
	fgw_smp_req_done(&req);
}

/* Freeing the client ends every request with -ECANCELED, then destroy; also from inside a
 * callback of another request. */
static void test_free_cancels(void **state)
{
	struct fx *f = *state;
	struct peer_step steps[3] = {{0}};
	size_t al;
	uint8_t *ans = golden_load("params-rsp-v2", &al);
	struct fgw_smp_req req;
	struct result r[3] = {{0}};

	steps[0] = (struct peer_step){.answer = ans, .answer_len = al};
	peer_play(f->peer, steps, 3);
	assert_int_equal(fgw_smp_req_params(&req), 0);
	r[0].free_client = true;
	for (int i = 0; i < 3; i++)
		assert_int_equal(send_req(f, &req, 1000, &r[i]), 0);
	assert_int_equal(fgw_smp_client_pending(f->c), 3);
	run_until(f, &r[0]);
	assert_null(f->c);
	assert_int_equal(r[0].err, 0);
	for (int i = 1; i < 3; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].err, -ECANCELED);
		assert_int_equal(r[i].destroyed, 1);
	}
	fgw_smp_req_done(&req);
	free(ans);
}

/* Cancel one request; send errors from the transport come back as returns, no callback. */
static void test_cancel_and_send_errors(void **state)
{
	struct fx *f = *state;
	struct fgw_smp_req req, big = {.op = 2, .group = 64, .id = 0};
	struct result r = {0}, r2 = {0}, r3 = {0};
	uint64_t id = 0;

	peer_play(f->peer, NULL, 0);
	assert_int_equal(fgw_smp_req_params(&req), 0);
	r.fx = f;
	assert_int_equal(fgw_smp_client_request(f->c, &req, 1000, on_rsp, &r, on_destroy, &id), 0);
	r.returned = true;
	assert_int_equal(fgw_smp_client_cancel(f->c, id), 0);
	assert_int_equal(r.err, -ECANCELED);
	assert_int_equal(r.destroyed, 1);
	assert_int_equal(fgw_smp_client_cancel(f->c, id), -ENOENT);
	peer_fail_sends(f->peer, -ENOBUFS);
	assert_int_equal(send_req(f, &req, 1000, &r2), -ENOBUFS);
	peer_fail_sends(f->peer, 0);
	big.payload = calloc(1, 2000);
	big.len = 2000;
	assert_int_equal(send_req(f, &big, 1000, &r3), -EMSGSIZE);
	fgw_smp_client_set_max_packet(f->c, 100);
	assert_int_equal(fgw_smp_client_max_packet(f->c), 100);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(r2.calls + r3.calls + r2.destroyed + r3.destroyed, 0);
	assert_int_equal(fgw_smp_client_pending(f->c), 0);
	fgw_smp_req_done(&req);
	fgw_smp_req_done(&big);
}

/* Sequence numbers rotate and skip those still in flight. */
static void test_seq(void **state)
{
	struct fx *f = *state;
	struct fgw_smp_req req;
	struct result *r = calloc(300, sizeof(*r));
	uint8_t seen[256] = {0};
	const uint8_t *sent;
	size_t n;
	int i;

	peer_play(f->peer, NULL, 0);
	assert_int_equal(fgw_smp_req_params(&req), 0);
	for (i = 0; i < 255; i++) {
		assert_int_equal(send_req(f, &req, 5000, &r[i]), 0);
		sent = peer_last(f->peer, &n);
		assert_int_equal(seen[sent[6]], 0);
		seen[sent[6]] = 1;
	}
	assert_int_equal(send_req(f, &req, 5000, &r[i]), -EBUSY);
	fgw_smp_client_close(f->c);
	for (i = 0; i < 255; i++)
		assert_int_equal(r[i].err, -ENOTCONN);
	fgw_smp_req_done(&req);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_echo_split, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_packed_out_of_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout_then_late, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_device_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_command, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_version_fallback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resend_same_packet, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_send_failures, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_disconnect, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_cancels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_and_send_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_seq, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
