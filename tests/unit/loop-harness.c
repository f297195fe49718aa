/* The unit tests' loop harness of loop-harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "loop-harness.h"

static void on_tick(uv_timer_t *t)
{
	(void) t;
}

void test_loop_init(uv_loop_t *loop, uv_timer_t *tick)
{
	assert_int_equal(uv_loop_init(loop), 0);
	assert_int_equal(uv_timer_init(loop, tick), 0);
	assert_int_equal(uv_timer_start(tick, on_tick, 10, 10), 0);
}

void test_loop_done(uv_loop_t *loop, uv_timer_t *tick)
{
	uv_close((uv_handle_t *) tick, NULL);
	test_loop_drain(loop, 50);
	assert_int_equal(uv_loop_close(loop), 0);
}

void test_loop_run_for(uv_loop_t *loop, unsigned ms)
{
	uint64_t end = fgw_now_ms() + ms;

	while (fgw_now_ms() < end)
		uv_run(loop, UV_RUN_ONCE);
}

void test_loop_drain(uv_loop_t *loop, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		uv_run(loop, UV_RUN_NOWAIT);
}
