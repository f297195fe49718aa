/*
 * The libuv loop of a unit test: a periodic tick so that UV_RUN_ONCE never sleeps past a
 * deadline, runs bounded by a condition (never by a fixed time), the closing leak check, and
 * bytes as one packet object for the send paths.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <uv.h>

#include "util.h"

/* Starts @loop with a 10 ms tick. */
void test_loop_init(uv_loop_t *loop, uv_timer_t *tick);
/* Closes the tick, drains, and fails the test unless every handle is closed (the leak check
 * libuv's own tests use). */
void test_loop_done(uv_loop_t *loop, uv_timer_t *tick);
/* Runs @loop for @ms whatever happens: only for proving that something does not happen. */
void test_loop_run_for(uv_loop_t *loop, unsigned ms);
/* Runs @loop for @n non-blocking rounds: what is already due, nothing more. */
void test_loop_drain(uv_loop_t *loop, unsigned n);

/*
 * Runs @loop until @cond holds; fails the test if it does not within TEST_WAIT_MS. The bound is
 * generous because the machine may be loaded (sanitizers, valgrind, other jobs): a passing test
 * never waits for it, and it is well above the timeouts the tests give the code (3 s at most).
 */
#define TEST_WAIT_MS 15000
#define TEST_WAIT_FOR(loop, cond)                                                                  \
	do {                                                                                       \
		uint64_t end_ = fgw_now_ms() + TEST_WAIT_MS;                                       \
		while (!(cond)) {                                                                  \
			if (fgw_now_ms() > end_)                                                   \
				fail_msg("timed out waiting for %s", #cond);                       \
			uv_run((loop), UV_RUN_ONCE);                                               \
		}                                                                                  \
	} while (0)

/* The bytes as one packet object, as the SMP client hands them over: the sender drops its
 * reference after the send, the link keeps its own while it needs them. NULL: no memory. */
static inline struct fgw_buf *test_buf_copy(const uint8_t *data, size_t len)
{
	struct fgw_buf *b = fgw_buf_new(len);

	if (!b)
		return NULL;
	if (len)
		memcpy(fgw_buf_data(b), data, len);
	(void) fgw_buf_set_len(b, len);
	return b;
}
