/*
 * Upload engine against the fake device of upload-device.c: windows, the adaptive window,
 * lost chunks and answers, faults, resume, cancel, alignment.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "upload-device.h"

/* ---- cases ---- */

static void test_basic_window(void **state)
{
	struct fx *f = fx_new(300 * 1024, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	struct fgw_upload_stats st;

	f->dev.f.delay_ms = 1; /* answers take a moment: the window must fill meanwhile */
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, 0);
	assert_device_has_image(f);
	fgw_upload_get_stats(f->u, &st);
	assert_int_equal(st.window, 3); /* buf_count - 1 */
	assert_int_equal(f->dev.max_outstanding, 3);
	assert_int_equal(st.packet_size, 2475);
	assert_int_equal(st.retransmissions, 0);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(st.bytes_sent, f->img_len);
	assert_int_equal(st.chunk_size % 4, 0);
	/* every packet filled to the device's buffer, none over it */
	assert_int_equal(f->dev.too_big, 0);
	assert_int_equal(f->dev.misaligned, 0);
	assert_true(st.chunks <= (f->img_len + st.chunk_size - 1) / st.chunk_size + 1);
	assert_true(st.chunk_size > 2475 - 30);
	assert_int_equal(f->dev.first_chunks, 1);
	assert_int_equal(f->last_progress, f->img_len);
	fx_free(f);
}

static void test_window_sizes(void **state)
{
	static const unsigned counts[] = {0, 1, 2, 4, 9, 40};
	static const unsigned expect[] = {1, 1, 1, 3, 8, 8};

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct fx *f = fx_new(256 * 1024, 495, 2475, 2475);
		struct fgw_upload_opts o = quick_opts(2475, counts[i]);
		struct fgw_upload_stats st;

		assert_int_equal(fgw_upload_window_limit(&o), expect[i]);
		assert_int_equal(run_upload(f, 0, &o), 0);
		assert_int_equal(f->done_err, 0);
		fgw_upload_get_stats(f->u, &st);
		/* adaptive: from 1, one more after each clean window, up to the limit */
		assert_int_equal(st.window_limit, expect[i]);
		assert_int_equal(st.window, expect[i]);
		assert_int_equal(f->dev.max_outstanding, expect[i]);
		assert_false(st.window_clamped);
		assert_int_equal(st.narrowed, 0);
		assert_device_has_image(f);
		fx_free(f);
	}
	{
		/* --window above buf_count - 1 is clamped, and the caller can tell */
		struct fx *f = fx_new(64 * 1024, 495, 2475, 2475);
		struct fgw_upload_opts o = quick_opts(2475, 2);
		struct fgw_upload_stats st;

		o.window = 4;
		assert_int_equal(fgw_upload_window_limit(&o), 1);
		assert_int_equal(run_upload(f, 0, &o), 0);
		fgw_upload_get_stats(f->u, &st);
		assert_true(st.window_clamped);
		assert_int_equal(st.window_limit, 1);
		assert_int_equal(f->dev.max_outstanding, 1);
		fx_free(f);
	}
	{
		/* an explicit window starts there; without params it is not clamped */
		struct fx *f = fx_new(64 * 1024, 495, 2475, 2475);
		struct fgw_upload_opts o = quick_opts(2475, 0);

		o.window = 100;
		assert_int_equal(fgw_upload_window_limit(&o), FGW_UPLOAD_MAX_WINDOW);
		o.window = 3;
		assert_int_equal(run_upload(f, 0, &o), 0);
		assert_int_equal(f->dev.max_outstanding, 3);
		fx_free(f);
	}
}

/*
 * The window rule against a device whose buffers hold fewer requests than buf_count - 1
 * (Zephyr over BLE: the answer and the next reassembly take buffers too). Lost requests are
 * seen at the next answer and sent again at once: no timeout; the window halves and settles
 * below the size that lost.
 */
static void test_adaptive_window(void **state)
{
	for (int nomem = 0; nomem < 2; nomem++) {
		struct fx *f = fx_new(400 * 1024, 495, 2475, 2475);
		struct fgw_upload_opts o = quick_opts(2475, 6);
		struct fgw_upload_stats st;

		f->dev.f.cap = 2;
		f->dev.f.cap_nomem = nomem;
		f->dev.f.delay_ms = 1;
		o.chunk_timeout_ms = o.last_timeout_ms = 5000; /* a timeout would show in stats */
		assert_int_equal(run_upload(f, 0, &o), 0);
		assert_int_equal(f->done_err, 0);
		assert_device_has_image(f);
		fgw_upload_get_stats(f->u, &st);
		assert_int_equal(st.timeouts, 0);
		assert_true(st.narrowed >= 1);
		assert_true(f->dev.over_cap >= 1);
		assert_int_equal(st.window_limit, 5);
		assert_true(st.window_final <= 2);
		/* the ceiling: probes above it are rare (doubling back-off), not every window */
		assert_true(st.narrowed <= 6);
		if (nomem)
			assert_int_equal(st.nomem, f->dev.over_cap);
		else
			assert_true(st.retransmissions >= 1);
		fx_free(f);
	}
}

/* rc 2 at window 1 means the pool is full with something else: give up naming ENOMEM. */
static void test_nomem_at_window_1(void **state)
{
	struct fx *f = fx_new(40000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	struct fgw_upload_stats st;

	o.busy_retry_ms = 2;
	o.max_failures = 3;
	f->dev.f.always_nomem = true;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -ENOMEM);
	assert_int_equal(f->res.status.rc, FGW_SMP_RC_ENOMEM);
	fgw_upload_get_stats(f->u, &st);
	assert_int_equal(st.nomem, 3);
	fx_free(f);
}

/* The final chunk lost with nothing after it: sent again after about a round trip, not the
 * full timeout (issue 22: a 20 s wait in 2 of 12 field runs). */
static void test_lost_final_chunk(void **state)
{
	for (unsigned window = 1; window <= 3; window += 2) {
		struct fx *f = fx_new(40 * 1024 + 13, 495, 2475, 1024);
		struct fgw_upload_opts o = quick_opts(1024, 4);
		struct fgw_upload_stats st;

		o.window = window;
		o.chunk_timeout_ms = o.last_timeout_ms = 10000;
		f->dev.f.delay_ms = 1;
		/* a clean run counts the chunks; then the same upload loses its last one */
		assert_int_equal(run_upload(f, 0, &o), 0);
		fgw_upload_get_stats(f->u, &st);
		assert_int_equal(st.early_retransmits, 0);
		f->dev.f.drop_req = (int) (f->dev.k + st.chunks - 1);
		f->dev.session = false;
		assert_int_equal(run_upload(f, 0, &o), 0);
		assert_int_equal(f->done_err, 0);
		assert_device_has_image(f);
		fgw_upload_get_stats(f->u, &st);
		assert_int_equal(st.early_retransmits, 1);
		assert_int_equal(st.retransmissions, 1);
		assert_int_equal(st.timeouts, 0);
		fx_free(f);
	}
}

/*
 * The answer to the final chunk lost: the device finished and closed its session (Zephyr), so
 * the final chunk sent again is answered off 0. That alone is no restart: the probe that
 * follows tells. With the image check the device answers it off len, match true (done, nothing
 * sent again); without, the probe opens a new session and the image goes again (a restart).
 */
static void test_lost_final_answer(void **state)
{
	for (int check = 1; check >= 0; check--) {
		struct fx *f = fx_new(40 * 1024 + 13, 495, 2475, 1024);
		struct fgw_upload_opts o = quick_opts(1024, 4);
		struct fgw_upload_stats st;
		unsigned first;

		o.chunk_timeout_ms = o.last_timeout_ms = 10000;
		f->dev.f.delay_ms = 1;
		f->dev.f.image_check = check;
		/* a clean run counts the chunks; then, on erased flash, the last answer is lost */
		assert_int_equal(run_upload(f, 0, &o), 0);
		assert_int_equal(f->done_err, 0);
		fgw_upload_get_stats(f->u, &st);
		f->dev.f.drop_rsp = (int) (f->dev.k + st.chunks - 1);
		memset(f->dev.slot, 0xff, f->img_len);
		f->dev.bytes_written = 0;
		first = f->dev.first_chunks;
		assert_int_equal(run_upload(f, 0, &o), 0);
		assert_int_equal(f->done_err, 0);
		assert_device_has_image(f);
		fgw_upload_get_stats(f->u, &st);
		assert_int_equal(st.early_retransmits, 1);
		assert_int_equal(st.timeouts, 0);
		assert_int_equal(f->dev.first_chunks - first, 2); /* the first chunk, the probe */
		assert_int_equal(st.restarts, check ? 0 : 1);
		assert_int_equal(f->dev.bytes_written, (check ? 1 : 2) * f->img_len);
		if (check)
			assert_true(f->res.has_match && f->res.match);
		fx_free(f);
	}
}

/* Nothing answered on this link yet: the first chunk does not get the erase wait. */
static void test_device_silent(void **state)
{
	struct fx *f = fx_new(20000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	struct fgw_upload_stats st;

	o.device_silent = true;
	o.first_timeout_ms = 600000; /* the test would time out if this were used */
	o.chunk_timeout_ms = 30;
	o.max_timeouts = 2;
	f->dev.f.silence_from = 0;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -ETIMEDOUT);
	fgw_upload_get_stats(f->u, &st);
	assert_int_equal(st.timeouts, 2);
	fx_free(f);

	/* once it answered, the first chunk waits for the erase again */
	f = fx_new(20000, 495, 2475, 2475);
	o = quick_opts(2475, 4);
	o.device_silent = true;
	o.chunk_timeout_ms = 100;
	o.first_timeout_ms = 3000;
	f->dev.f.reboot = 3; /* the session is lost: a second first chunk, after an answer */
	f->dev.f.first_delay = 300;
	f->dev.f.first_delay_from = 1;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, 0);
	fgw_upload_get_stats(f->u, &st);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(st.restarts, 1);
	assert_device_has_image(f);
	fx_free(f);
}

/* No mcumgr params: packets of one transport MTU (BLE: ATT_MTU - 3), even though the
 * transport could carry more. */
static void test_no_params(void **state)
{
	struct fx *f = fx_new(20000, 244, 2475, 244);
	struct fgw_upload_opts o = quick_opts(0, 0);
	struct fgw_upload_stats st;

	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, 0);
	assert_device_has_image(f);
	fgw_upload_get_stats(f->u, &st);
	assert_int_equal(st.packet_size, 244);
	assert_int_equal(st.window, 1);
	assert_int_equal(f->dev.too_big, 0);
	fx_free(f);
}

struct fault_case {
	const char *what;
	int drop_req, drop_rsp, busy, reboot, ahead;
	size_t split;
	bool v1;
	unsigned busy_rc;
	/* expectations */
	bool retransmits;
	bool restarts;
	bool lost;
};

static const struct fault_case fault_cases[] = {
    {"lost request at chunk 5", 5, NONE, NONE, NONE, NONE, 0, false, 0, true, false, true},
    {"lost answer at chunk 5", NONE, 5, NONE, NONE, NONE, 0, false, 0, false, false, true},
    {"lost request of the last chunk", 40, NONE, NONE, NONE, NONE, 0, false, 0, true, false, false},
    {"busy at chunk 3", NONE, NONE, 3, NONE, NONE, 0, false, 0, true, false, false},
    {"no buffer (rc 2) at chunk 3", NONE, NONE, 3, NONE, NONE, 0, false, 2, true, false, false},
    {"reboot before chunk 7", NONE, NONE, NONE, 7, NONE, 0, false, 0, true, true, false},
    {"device skips ahead at chunk 4", NONE, NONE, NONE, NONE, 4, 0, false, 0, false, false, false},
    {"answers split in 7-byte frames", NONE, NONE, NONE, NONE, NONE, 7, false, 0, false, false,
     false},
    {"v1 firmware", NONE, NONE, NONE, NONE, NONE, 0, true, 0, false, false, false},
};

static void test_faults(void **state)
{
	for (size_t i = 0; i < sizeof(fault_cases) / sizeof(fault_cases[0]); i++) {
		const struct fault_case *c = &fault_cases[i];
		struct fx *f = fx_new(40 * 1024 + 13, 495, 2475, 1024);
		struct fgw_upload_opts o = quick_opts(1024, 4);
		struct fgw_upload_stats st;

		printf("fault: %s\n", c->what);
		f->dev.f.drop_req = c->drop_req;
		f->dev.f.drop_rsp = c->drop_rsp;
		f->dev.f.busy = c->busy;
		f->dev.f.reboot = c->reboot;
		f->dev.f.ahead = c->ahead;
		f->dev.f.split = c->split;
		f->dev.f.v1 = c->v1;
		f->dev.f.busy_rc = c->busy_rc;
		f->dev.f.delay_ms = 1;
		o.busy_retry_ms = 5;
		assert_int_equal(run_upload(f, 0, &o), 0);
		assert_int_equal(f->done_err, 0);
		fgw_upload_get_stats(f->u, &st);
		if (c->ahead == NONE)
			assert_device_has_image(f);
		else
			assert_int_equal(f->res.off, f->img_len);
		assert_int_equal(st.retransmissions > 0, c->retransmits);
		assert_int_equal(st.restarts > 0, c->restarts);
		if (c->lost)
			assert_true(st.lost > 0 || st.timeouts > 0);
		if (c->busy != NONE)
			assert_int_equal(c->busy_rc == 2 ? st.nomem : st.busy, 1);
		if (c->busy_rc == 2)
			assert_int_equal(st.narrowed, 1);
		if (c->drop_rsp != NONE)
			assert_int_equal(st.retransmissions, 0);
		if (c->v1)
			assert_int_equal(fgw_smp_client_get_version(f->c), FGW_SMP_V1);
		fx_free(f);
	}
}

/* A device error stops the upload at once, with the device's words in the result. */
static void test_hard_error(void **state)
{
	struct fx *f = fx_new(10000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	size_t sent;

	f->dev.f.err_rc = 0;
	f->dev.f.err_group = 1;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -EREMOTEIO);
	assert_true(f->res.status.has_err);
	assert_int_equal(f->res.status.err_group, 1);
	assert_int_equal(f->res.status.err_rc, FGW_SMP_IMG_ERR_NO_FREE_SLOT);
	sent = peer_sent(f->peer);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(peer_sent(f->peer), sent);
	assert_int_equal(fgw_smp_client_pending(f->c), 0);
	fx_free(f);

	/* the same in the middle of the window: what is in flight is cancelled */
	f = fx_new(60000, 495, 2475, 2475);
	f->dev.f.err_rc = 6;
	f->dev.f.err_group = 1;
	f->dev.f.delay_ms = 1;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -EREMOTEIO);
	assert_int_equal(fgw_smp_client_pending(f->c), 0);
	assert_false(fgw_upload_is_running(f->u));
	fx_free(f);
}

/* Link loss at chunk k: done(-ECONNRESET) with the device's offset; after reconnecting, a start
 * from that offset resumes the device's session instead of restarting. */
static void test_disconnect_resume(void **state)
{
	struct fx *f = fx_new(100000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	struct fgw_upload_stats st;
	uint64_t off, written_before;

	f->dev.f.disconnect = 12;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -ECONNRESET);
	off = f->res.off;
	assert_true(off > 0 && off < f->img_len);
	written_before = f->dev.bytes_written;
	assert_int_equal(fgw_smp_client_open(f->c, on_state, f), 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(run_upload(f, off, &o), 0);
	assert_int_equal(f->done_err, 0);
	assert_device_has_image(f);
	fgw_upload_get_stats(f->u, &st);
	assert_int_equal(st.start_off, f->dev.expected == f->img_len ? st.start_off : 0);
	assert_true(st.start_off >= off);
	assert_int_equal(st.restarts, 0);
	/* nothing rewritten: every byte went to flash once */
	assert_int_equal(f->dev.bytes_written, f->img_len);
	assert_true(written_before < f->img_len);
	assert_int_equal(f->dev.first_chunks, 2); /* the original first chunk and the probe */
	fx_free(f);
}

/* A device gone silent: -ETIMEDOUT after max_timeouts, no endless retries. */
static void test_silence(void **state)
{
	struct fx *f = fx_new(50000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	struct fgw_upload_stats st;

	o.chunk_timeout_ms = 20;
	o.first_timeout_ms = 40;
	o.last_timeout_ms = 40;
	o.max_timeouts = 3;
	f->dev.f.silence_from = 4;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -ETIMEDOUT);
	fgw_upload_get_stats(f->u, &st);
	assert_true(st.timeouts >= 3);
	assert_true(f->res.off > 0);
	fx_free(f);
}

/* The first answer may take long (slot erase): it has its own timeout. */
static void test_slow_first_chunk(void **state)
{
	struct fx *f = fx_new(20000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	struct fgw_upload_stats st;

	o.chunk_timeout_ms = 200;
	o.first_timeout_ms = 3000;
	f->dev.f.first_delay = 400;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, 0);
	fgw_upload_get_stats(f->u, &st);
	assert_int_equal(st.timeouts, 0);
	assert_true(st.first_ms >= 390);
	assert_int_equal(f->dev.first_chunks, 1);
	fx_free(f);
}

static void test_match_false(void **state)
{
	struct fx *f = fx_new(9000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);

	f->dev.f.image_check = true;
	f->dev.f.corrupt = true;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -EILSEQ);
	assert_true(f->res.has_match);
	assert_false(f->res.match);
	fx_free(f);

	f = fx_new(9000, 495, 2475, 2475);
	f->dev.f.image_check = true;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, 0);
	assert_true(f->res.has_match && f->res.match);
	fx_free(f);
}

/* Cancel from the progress callback; free from the done callback. */
static void test_cancel_and_free(void **state)
{
	struct fx *f = fx_new(60000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	struct fgw_upload_image img = {.data = f->img, .len = f->img_len};

	f->dev.f.delay_ms = 1;
	f->cancel_in_progress = true;
	f->free_in_done = true;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -ECANCELED);
	assert_null(f->u);
	assert_int_equal(fgw_smp_client_pending(f->c), 0);
	/* start errors: no callback */
	assert_int_equal(fgw_upload_new(&f->loop, f->c, &f->u), 0);
	f->done_calls = 0;
	assert_int_equal(fgw_upload_start(f->u, &img, 0, &o, NULL, NULL, f), -EINVAL);
	o.buf_size = 60; /* no room for a 32-byte first chunk with sha */
	assert_int_equal(fgw_upload_start(f->u, &img, 0, &o, NULL, on_done, f), -EMSGSIZE);
	fgw_smp_client_close(f->c);
	o.buf_size = 2475;
	assert_int_equal(fgw_upload_start(f->u, &img, 0, &o, NULL, on_done, f), -ENOTCONN);
	assert_int_equal(f->done_calls, 0);
	/* free while running: done(-ECANCELED) */
	assert_int_equal(fgw_smp_client_open(f->c, on_state, f), 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	memcpy(img.sha256, f->sha, 32);
	assert_int_equal(fgw_upload_start(f->u, &img, 0, &o, NULL, on_done, f), 0);
	assert_int_equal(fgw_upload_start(f->u, &img, 0, &o, NULL, on_done, f), -EBUSY);
	f->free_in_done = false;
	f->u = fgw_upload_free(f->u);
	assert_int_equal(f->done_calls, 1);
	assert_int_equal(f->done_err, -ECANCELED);
	fx_free(f);
}

/*
 * A packet that cannot be sent (out of memory on the way to the link) ends the upload with
 * that error, once, with nothing left in flight; on the first chunk, start() returns it and
 * nothing calls back. ASan checks that every packet was released.
 */
static void test_send_fails(void **state)
{
	struct fx *f = fx_new(60000, 495, 2475, 2475);
	struct fgw_upload_opts o = quick_opts(2475, 4);
	struct fgw_upload_image img = {.data = f->img, .len = f->img_len};

	f->fail_sends_in_progress = -ENOMEM;
	assert_int_equal(run_upload(f, 0, &o), 0);
	assert_int_equal(f->done_err, -ENOMEM);
	assert_int_equal(fgw_smp_client_pending(f->c), 0);
	assert_true(f->res.off > 0 && f->res.off < f->img_len);
	memcpy(img.sha256, f->sha, 32);
	f->done_calls = 0;
	assert_int_equal(fgw_upload_start(f->u, &img, 0, &o, NULL, on_done, f), -ENOMEM);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->done_calls, 0);
	fx_free(f);
}

/* Chunk lengths: aligned to 4 except the last; the last one exact. */
static void test_alignment(void **state)
{
	for (size_t len = 33; len < 3000; len += 397) {
		struct fx *f = fx_new(len, 495, 2475, 301);
		struct fgw_upload_opts o = quick_opts(301, 3);

		assert_int_equal(run_upload(f, 0, &o), 0);
		assert_int_equal(f->done_err, 0);
		assert_device_has_image(f);
		assert_int_equal(f->dev.misaligned, 0);
		assert_int_equal(f->dev.too_big, 0);
		fx_free(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_basic_window),      cmocka_unit_test(test_window_sizes),
	    cmocka_unit_test(test_no_params),	      cmocka_unit_test(test_faults),
	    cmocka_unit_test(test_hard_error),	      cmocka_unit_test(test_disconnect_resume),
	    cmocka_unit_test(test_silence),	      cmocka_unit_test(test_slow_first_chunk),
	    cmocka_unit_test(test_match_false),	      cmocka_unit_test(test_cancel_and_free),
	    cmocka_unit_test(test_alignment),	      cmocka_unit_test(test_adaptive_window),
	    cmocka_unit_test(test_nomem_at_window_1), cmocka_unit_test(test_lost_final_chunk),
	    cmocka_unit_test(test_device_silent),     cmocka_unit_test(test_lost_final_answer),
	    cmocka_unit_test(test_send_fails),
	};

	if (getenv("FGW_TEST_DEBUG"))
		fgw_log_set_level(LOG_DEBUG);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
