/*
 * Enrollment in the fleet core (fleet-enroll.c) against the fake devices of fleet-fixture.c:
 * under enrollment = allowlist a device nobody enrolled gets no job and not one byte, takes
 * no canary slot and has no say in the halt rule; enrolling gives a seen device its job at
 * once; forgetting refuses a device in the middle of its update; unenrolled devices are
 * bounded in number and age.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fleet-fixture.h"

static int allowlist_setup(void **state)
{
	int r = fx_setup(state);

	if (r == 0)
		((struct fx *) *state)->o.enrollment_open = false;
	return r;
}

static void enroll(struct fx *x, struct fdev *d)
{
	struct fgw_fleet_enrollment e = {.address = d->address};

	assert_int_equal(fgw_fleet_enroll(x->fleet, &e, 1), 0);
}

static bool in_store(struct fx *x, const char *address)
{
	struct fgw_store_device_rec rec;

	return fgw_store_device_get(x->store, address, &rec) == 0;
}

/* The acceptance test of #16: an unenrolled device next to a failing canary. */
static void test_unenrolled_gets_nothing(void **state)
{
	struct fx *x = *state;
	struct fdev *canary = fx_device(x, "C0:00:00:00:00:01");
	struct fdev *other = fx_device(x, "C0:00:00:00:00:02");
	struct fdev *stranger = fx_device(x, "C0:00:00:00:00:03");
	struct fgw_fleet_stats st;

	x->rel.canary_percent = 50;
	x->rel.max_failure_rate = 0.2;
	canary->mode = FGW_MCUBOOT_MODE_DIRECT_XIP; /* refuses the update: the canary fails */
	fx_start(x, true);
	/* seen first: under open enrollment it would have been the canary */
	fx_seen(x, stranger);
	enroll(x, canary);
	enroll(x, other);
	fx_seen(x, canary);
	fx_seen(x, other);
	assert_state(x, canary, "failed");
	fx_settle(x);
	fx_seen(x, stranger);
	fx_settle(x);

	/* the stranger: no job, no link, not one byte, and its row says unenrolled */
	assert_string_equal(fx_job_state(x, stranger->address, "r1"), "");
	assert_int_equal(stranger->links, 0);
	assert_int_equal(stranger->chunks, 0);
	assert_int_equal(stranger->off, 0);
	assert_true(in_store(x, stranger->address));
	/* the rollout: two targets, one canary (the enrolled device seen first), halted by it */
	assert_int_equal(x->fleet->n_targets, 2);
	assert_int_equal(x->fleet->counts.canary_total, 1);
	assert_int_equal(x->fleet->counts.canary_failed, 1);
	assert_int_equal(x->fleet->counts.finished, 1);
	fgw_fleet_get_stats(x->fleet, &st);
	assert_true(st.halted);
	assert_string_equal(fx_job_state(x, other->address, "r1"), "queued");
}

/* A device seen before it was enrolled gets its job the moment it is enrolled. */
static void test_enroll_seen_device_starts_its_job(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_fleet_enrollment e = {
	    .address = "c0:00:00:00:00:01", .board = "b1", .group = "lab", .label = "bench 1"};
	struct fgw_store_device_rec rec;

	fx_start(x, true);
	fx_seen(x, d);
	fx_settle(x);
	assert_string_equal(fx_job_state(x, d->address, "r1"), "");
	assert_int_equal(fgw_fleet_enroll(x->fleet, &e, 1), 0); /* lower case: normalized */
	assert_int_equal(fgw_store_device_get(x->store, d->address, &rec), 0);
	assert_true(rec.enrolled);
	assert_string_equal(rec.grp, "lab");
	assert_string_equal(rec.enrolled_board, "b1");
	fx_come_back(x, d);
	assert_state(x, d, "done");
}

/* A restart keeps what was enrolled; an unenrolled device stays without a job. */
static void test_enrollment_survives_restart(void **state)
{
	struct fx *x = *state;
	struct fdev *a = fx_device(x, "C0:00:00:00:00:01");
	struct fdev *b = fx_device(x, "C0:00:00:00:00:02");

	fx_start(x, false);
	enroll(x, a);
	fx_stop(x);
	fx_start(x, true);
	fx_seen(x, a);
	fx_seen(x, b);
	fx_come_back(x, a);
	assert_state(x, a, "done");
	assert_string_equal(fx_job_state(x, b->address, "r1"), "");
	assert_int_equal(b->links, 0);
}

/* A job created under open enrollment does not run once the gateway is on an allowlist. */
static void test_open_job_does_not_run_under_allowlist(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	x->o.enrollment_open = true;
	x->o.max_connections = 1;
	fx_start(x, true);
	fgw_fleet_pause(x->fleet, "operator", "hold");
	fx_seen(x, d);
	fx_settle(x);
	assert_string_equal(fx_job_state(x, d->address, "r1"), "queued");
	fx_stop(x);
	x->o.enrollment_open = false;
	fx_start(x, true);
	fgw_fleet_resume(x->fleet);
	fx_seen(x, d);
	fx_settle(x);
	fx_advance(x, 2000);
	fx_settle(x);
	assert_string_equal(fx_job_state(x, d->address, "r1"), "queued");
	assert_int_equal(d->links, 0);
	assert_int_equal(x->fleet->n_targets, 0);
}

static void test_forget(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	fx_start(x, true);
	enroll(x, d);
	fx_seen(x, d);
	assert_state(x, d, "rebooting");
	/* in the middle of its update: refused, nothing lost */
	assert_int_equal(fgw_fleet_forget(x->fleet, d->address), -EBUSY);
	assert_true(in_store(x, d->address));
	fx_advance(x, 1100);
	d->down = false;
	fx_seen(x, d);
	assert_state(x, d, "done");
	fx_settle(x);
	assert_int_equal(fgw_fleet_forget(x->fleet, d->address), 0);
	assert_false(in_store(x, d->address));
	assert_int_equal(fgw_fleet_forget(x->fleet, d->address), -ENOENT);
	assert_int_equal(fgw_fleet_forget(x->fleet, "not-an-address"), -EINVAL);
	/* seen again: a stranger now */
	fx_seen(x, d);
	fx_settle(x);
	assert_string_equal(fx_job_state(x, d->address, "r1"), "");
}

/* Bad input loses nothing: one bad entry and none of the batch is enrolled. */
static void test_enroll_all_or_nothing(void **state)
{
	struct fx *x = *state;
	struct fgw_fleet_enrollment e[2] = {
	    {.address = "C0:00:00:00:00:01", .has_passkey = true, .passkey = 123456},
	    {.address = "C0:00:00:00:00:02", .has_passkey = true, .passkey = 1000000},
	};
	uint32_t pk;

	fx_start(x, true);
	assert_int_equal(fgw_fleet_enroll(x->fleet, e, 2), -EINVAL);
	assert_false(in_store(x, e[0].address));
	e[1].passkey = 654321;
	assert_int_equal(fgw_fleet_enroll(x->fleet, e, 2), 0);
	assert_int_equal(fgw_store_device_passkey_get(x->store, e[1].address, &pk), 0);
	assert_int_equal(pk, 654321);
	assert_int_equal(fgw_store_device_passkeys_count(x->store), 2);
	/* enrolling again without a passkey keeps the stored one */
	e[1].has_passkey = false;
	assert_int_equal(fgw_fleet_enroll(x->fleet, &e[1], 1), 0);
	assert_int_equal(fgw_store_device_passkey_get(x->store, e[1].address, &pk), 0);
	assert_int_equal(pk, 654321);
	/* forgetting takes the passkey with it */
	assert_int_equal(fgw_fleet_forget(x->fleet, e[1].address), 0);
	assert_int_equal(fgw_store_device_passkey_get(x->store, e[1].address, &pk), -ENOENT);
}

/* At most max_unenrolled strangers, the least recently seen go first; old ones go anyway. */
static void test_unenrolled_bounded(void **state)
{
	struct fx *x = *state;
	struct fdev *d[5];
	char a[40];

	x->o.max_unenrolled = 2;
	x->o.unenrolled_ttl_ms = 3600 * 1000;
	for (int i = 0; i < 5; i++) {
		snprintf(a, sizeof(a), "C0:00:00:00:00:0%d", i + 1);
		d[i] = fx_device(x, a);
	}
	fx_start(x, true);
	enroll(x, d[4]);
	for (int i = 0; i < 4; i++) {
		fx_seen(x, d[i]);
		fx_advance(x, 11000); /* past the sighting throttle: each last_seen differs */
	}
	/* what the fleet's tick does once a minute */
	fleet_unenrolled_prune(x->fleet);
	assert_false(in_store(x, d[0]->address));
	assert_false(in_store(x, d[1]->address));
	assert_true(in_store(x, d[2]->address));
	assert_true(in_store(x, d[3]->address));
	assert_true(in_store(x, d[4]->address)); /* enrolled: never counted, never forgotten */
	assert_null(fleet_dev_find(x->fleet, d[0]->address));
	/* an hour unseen: forgotten whatever the count */
	fx_advance(x, 30 * 1000);
	fleet_unenrolled_prune(x->fleet); /* less than a minute after the last: not yet */
	assert_true(in_store(x, d[2]->address));
	fx_advance(x, 3600 * 1000);
	fleet_unenrolled_prune(x->fleet);
	assert_false(in_store(x, d[2]->address));
	assert_false(in_store(x, d[3]->address));
	assert_true(in_store(x, d[4]->address));
}

#define DK "nrf5340dk/nrf5340/cpuapp"

/* A release for one board against devices of several, with and without os info. */
static void test_board_match(void **state)
{
	struct fx *x = *state;
	struct fdev *same = fx_device(x, "C0:00:00:00:00:01");
	struct fdev *spin = fx_device(x, "C0:00:00:00:00:02");
	struct fdev *other = fx_device(x, "C0:00:00:00:00:03");
	struct fdev *silent_ok = fx_device(x, "C0:00:00:00:00:04");
	struct fdev *silent_bad = fx_device(x, "C0:00:00:00:00:05");
	struct fdev *unknown = fx_device(x, "C0:00:00:00:00:06");
	struct fgw_fleet_enrollment e[6] = {
	    {.address = same->address},
	    {.address = spin->address},
	    {.address = other->address},
	    {.address = silent_ok->address, .board = DK},
	    {.address = silent_bad->address, .board = "thingy53/nrf5340/cpuapp"},
	    {.address = unknown->address},
	};
	struct fdev *all[] = {same, spin, other, silent_ok, silent_bad, unknown};
	char buf[256];

	snprintf(x->rel.board, sizeof(x->rel.board), "%s", DK);
	x->o.require_board_match = true;
	x->o.max_connections = 6;
	same->board = DK;
	spin->board = "nrf5340dk@2.0.0/nrf5340/cpuapp"; /* a board revision: the same product */
	other->board = "thingy53/nrf5340/cpuapp";
	fx_start(x, true);
	assert_int_equal(fgw_fleet_enroll(x->fleet, e, 6), 0);
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		fx_seen(x, all[i]);
	assert_state(x, other, "skipped");
	assert_state(x, silent_bad, "skipped");
	assert_state(x, unknown, "skipped");
	fx_job_reason(x, other->address, buf, sizeof(buf));
	assert_string_equal(buf, "board mismatch: the device is thingy53/nrf5340/cpuapp (reported "
				 "by the device), release 2.0.0 is for " DK);
	fx_job_reason(x, silent_bad->address, buf, sizeof(buf));
	assert_non_null(strstr(buf, "thingy53/nrf5340/cpuapp (given at enrollment)"));
	fx_job_reason(x, unknown->address, buf, sizeof(buf));
	assert_non_null(strstr(buf, "board unknown"));
	for (size_t i = 2; i < ARRAY_SIZE(all); i++)
		if (all[i] != silent_ok)
			assert_int_equal(all[i]->chunks, 0); /* not one byte */
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		if (all[i] == same || all[i] == spin || all[i] == silent_ok)
			fx_come_back(x, all[i]);
	assert_state(x, same, "done");
	assert_state(x, spin, "done");
	assert_state(x, silent_ok, "done");
}

/* require_board_match = false: a device whose board nobody knows is updated. */
static void test_board_unknown_allowed(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	snprintf(x->rel.board, sizeof(x->rel.board), "%s", DK);
	x->o.require_board_match = false;
	fx_start(x, true);
	enroll(x, d);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "done");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_unenrolled_gets_nothing, allowlist_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_enroll_seen_device_starts_its_job, allowlist_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_enrollment_survives_restart, allowlist_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_open_job_does_not_run_under_allowlist,
					    allowlist_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_forget, allowlist_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_enroll_all_or_nothing, allowlist_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unenrolled_bounded, allowlist_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_board_match, allowlist_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_board_unknown_allowed, allowlist_setup,
					    fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
