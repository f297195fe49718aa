/*
 * Options changed on a running fleet (SIGHUP), one test per reloadable key, against fake
 * devices behind the scripted peer transport (fleet-fixture.h), as in test-fleet.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "fleet-fixture.h"

/* ---- options changed on a running fleet (SIGHUP): one test per reloadable key ---- */

/* The fleet runs with the fixture's options; @x->o, edited by the test, is applied to it. */
static void set_options(struct fx *x)
{
	fgw_fleet_set_options(x->fleet, &x->o);
}

static struct fgw_store_job_rec job_rec(struct fx *x, struct fdev *d)
{
	struct fgw_store_job_rec rec;
	bool created;

	assert_int_equal(fgw_store_job_ensure(x->store, d->address, "r1", false, 0, &rec, &created),
			 0);
	return rec;
}

/* fleet.retry_limit: a lost link is the first failure; the new limit 0 allows none. */
static void test_set_retry_limit(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->drop_at_chunk = 3;
	fx_start(x, true);
	x->o.retry_limit = 0;
	set_options(x);
	fx_seen(x, d);
	assert_state(x, d, "failed");
	fx_assert_reason_has(x, d, "gave up after 0 attempts");
}

/* A first failure, and the job waits out its back-off: how long, from the store. */
static int64_t first_backoff_ms(struct fx *x, struct fdev *d)
{
	struct fgw_store_job_rec rec;

	d->drop_at_chunk = 3;
	fx_seen(x, d);
	assert_state(x, d, "uploading");
	assert_state(x, d, "queued");
	rec = job_rec(x, d);
	assert_int_equal(rec.attempts, 1);
	return rec.next_attempt_at - rec.updated_at;
}

/* fleet.backoff_base_s: the first retry waits base/2 .. base (the fixture's base is 10 ms). */
static void test_set_backoff_base(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	int64_t delay;

	fx_start(x, true);
	x->o.backoff_base_ms = x->o.backoff_max_ms = 100000;
	set_options(x);
	delay = first_backoff_ms(x, d);
	assert_in_range(delay, 50000, 100000);
}

/* fleet.backoff_max_s: the cap applies even when the base is above it. */
static void test_set_backoff_max(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	int64_t delay;

	x->o.backoff_base_ms = x->o.backoff_max_ms = 100000;
	fx_start(x, true);
	x->o.backoff_max_ms = 30000;
	set_options(x);
	delay = first_backoff_ms(x, d);
	assert_in_range(delay, 15000, 30000);
}

/* fleet.reboot_timeout_s: started with a minute, the device that never comes back fails at the
 * new, shorter ceiling, within the test's wait. */
static void test_set_reboot_timeout(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	x->o.reboot_timeout_ms = 600000;
	d->on_boot = FDEV_BOOT_NEVER_BACK;
	fx_start(x, true);
	x->o.reboot_timeout_ms = 150;
	set_options(x);
	fx_seen(x, d);
	assert_state(x, d, "failed");
	fx_assert_reason_has(x, d, "did not come back");
}

/* Runs the loop until the device got @n upload chunks (at most @max_ms real): true if so. */
static bool wait_chunks(struct fx *x, struct fdev *d, unsigned n, unsigned max_ms)
{
	uint64_t end = fgw_now_ms() + max_ms;

	while (d->chunks < n && fgw_now_ms() < end)
		uv_run(&x->loop, UV_RUN_ONCE);
	return d->chunks >= n;
}

/* fleet.progress_flush_s: one chunk at a time, the device answers two and then stalls. The
 * first answer is written at once; with an hour between writes, the second is not (the
 * fixture writes every answer). */
static void test_set_progress_flush(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_store_job_rec rec;

	x->o.upload_window = 1;
	x->o.chunk_timeout_ms = 60000;
	d->mute_from_chunk = 3;
	fx_start(x, true);
	x->o.progress_flush_ms = 3600000;
	set_options(x);
	fx_seen(x, d);
	assert_true(wait_chunks(x, d, 3, FX_WAIT_MS));
	fx_settle(x);
	rec = job_rec(x, d);
	assert_true(rec.offset > 0 && rec.offset < (int64_t) d->off);
}

/* fleet.group: a device met after the change joins the new group. */
static void test_set_group(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_store_device_rec rec;

	fx_start(x, false);
	x->o.default_group = "east";
	set_options(x);
	fx_seen(x, d);
	assert_int_equal(fgw_store_device_get(x->store, d->address, &rec), 0);
	assert_string_equal(rec.grp, "east");
}

/* upload.first_chunk_timeout_ms: started with a minute (beyond the test's wait), a device
 * that never answers the first chunk costs an attempt at the new 200 ms. */
static void test_set_first_chunk_timeout(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	x->o.first_chunk_timeout_ms = 60000;
	x->o.backoff_base_ms = x->o.backoff_max_ms = 600000; /* then it stays queued */
	d->mute_from_chunk = 1;
	fx_start(x, true);
	x->o.first_chunk_timeout_ms = 200;
	set_options(x);
	fx_seen(x, d);
	assert_state(x, d, "uploading");
	assert_state(x, d, "queued");
	assert_int_equal(job_rec(x, d).attempts, 1);
}

/* upload.chunk_timeout_ms: the same for a device that stops answering after the first chunk. */
static void test_set_chunk_timeout(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	x->o.chunk_timeout_ms = 60000;
	x->o.backoff_base_ms = x->o.backoff_max_ms = 600000; /* then it stays queued */
	d->mute_from_chunk = 2;
	fx_start(x, true);
	x->o.chunk_timeout_ms = 200;
	set_options(x);
	fx_seen(x, d);
	assert_state(x, d, "uploading");
	assert_state(x, d, "queued");
	assert_int_equal(job_rec(x, d).attempts, 1);
}

/* upload.window: after the first chunk the device stops answering; it gets the first and a
 * full window of 3 (adaptive, the fixture's 0, starts at 1 and grows only on answers). */
static void test_set_upload_window(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	x->o.chunk_timeout_ms = 60000;
	d->mute_from_chunk = 2;
	fx_start(x, true);
	x->o.upload_window = 3; /* the fake device has 4 SMP buffers */
	set_options(x);
	fx_seen(x, d);
	assert_true(wait_chunks(x, d, 1 + 3, FX_WAIT_MS));
	fx_settle(x);
	assert_int_equal(d->chunks, 1 + 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_set_retry_limit, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_set_backoff_base, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_set_backoff_max, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_set_reboot_timeout, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_set_progress_flush, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_set_group, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_set_first_chunk_timeout, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_set_chunk_timeout, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_set_upload_window, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
