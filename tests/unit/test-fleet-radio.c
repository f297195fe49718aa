/*
 * The per-radio concurrency controller (lib/fleet/radio.c) with a fake clock and a modelled
 * radio: the aggregate goodput as a function of the links uploading on it. It must settle where
 * the aggregate stops rising, step back when it falls or the controller refuses, never fill
 * max_connections for nothing, keep probing when more links pay, and not mistake a wave of
 * jobs resetting and reconnecting together for a fall of the radio.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "fleet-radio.h"

#define STEP_MS 100

/* Aggregate bytes/s of the radio with @n links busy uploading. */
typedef double (*radio_model_t)(unsigned n);

/* One link does 60 kB/s; the radio's airtime caps the sum at 3 links' worth. */
static double plateau(unsigned n)
{
	return (n < 3 ? n : 3) * 60000.0;
}

/* Past 3 links, each one more costs the others (events squeezed, retransmissions). */
static double falling(unsigned n)
{
	return n <= 3 ? n * 60000.0 : 180000.0 - (n - 3) * 40000.0;
}

/* Airtime to spare: every link adds its full share. */
static double linear(unsigned n)
{
	return n * 40000.0;
}

/*
 * Runs the controller for @seconds with always enough devices waiting (saturated), returns
 * the final limit; *@ret_max is the highest limit it tried.
 */
static unsigned run(struct fleet_radio *r, radio_model_t model, uint64_t *now, unsigned seconds,
		    unsigned *ret_max)
{
	unsigned limit = r->limit, top = limit;

	for (uint64_t end = *now + seconds * 1000ull; *now < end; *now += STEP_MS) {
		fleet_radio_add_bytes(r, (uint64_t) (model(limit) * STEP_MS / 1000.0), *now);
		limit = fleet_radio_limit(r, limit, limit, *now);
		if (limit > top)
			top = limit;
	}
	if (ret_max)
		*ret_max = top;
	return limit;
}

static void test_window(void **state)
{
	struct fleet_radio r;
	uint64_t now = 1000;

	(void) state;
	fleet_radio_init(&r, "hci0", 8, now);
	assert_int_equal(r.limit, 1);
	for (int i = 0; i < 60; i++, now += STEP_MS)
		fleet_radio_add_bytes(&r, 5000, now); /* 50 kB/s for 6 s */
	/* complete buckets only: 4 s of 50 kB/s */
	assert_true(fleet_radio_rate(&r, now) > 49000 && fleet_radio_rate(&r, now) < 51000);
	/* idle for longer than the window: nothing recent */
	now += 10000;
	assert_true(fleet_radio_rate(&r, now) == 0);
	assert_int_equal(r.bytes, 300000);
}

static void test_plateau(void **state)
{
	struct fleet_radio r;
	uint64_t now = 0;
	unsigned top, limit;

	(void) state;
	fleet_radio_init(&r, "hci0", 8, now);
	limit = run(&r, plateau, &now, 120, &top);
	/* 3 pay, the 4th adds nothing: back to 3; never 8 */
	assert_int_equal(limit, 3);
	assert_true(top <= 4);
	assert_true(r.lowered >= 1);
}

static void test_falling(void **state)
{
	struct fleet_radio r;
	uint64_t now = 0;
	unsigned top, limit;

	(void) state;
	fleet_radio_init(&r, "hci0", 8, now);
	limit = run(&r, falling, &now, 120, &top);
	assert_int_equal(limit, 3);
	assert_true(top <= 4);
}

static void test_rising_to_max(void **state)
{
	struct fleet_radio r;
	uint64_t now = 0;

	(void) state;
	fleet_radio_init(&r, "hci0", 6, now);
	assert_int_equal(run(&r, linear, &now, 120, NULL), 6);
	assert_int_equal(r.lowered, 0);
}

/* The controller refused a link at 4 up: 4 is the most it holds, for a while at least. */
static void test_refused(void **state)
{
	struct fleet_radio r;
	uint64_t now = 0;

	(void) state;
	fleet_radio_init(&r, "hci0", 8, now);
	assert_int_equal(run(&r, linear, &now, 40, NULL), 8);
	fleet_radio_refused(&r, 4, now);
	assert_int_equal(r.limit, 4);
	assert_int_equal(r.refused, 1);
	/* held: no probe within the hold time */
	assert_int_equal(run(&r, linear, &now, FLEET_RADIO_HOLD_MS / 1000 - 1, NULL), 4);
	/* then it probes again, as the airtime allows */
	assert_true(run(&r, linear, &now, 60, NULL) > 4);
	/* refused with nothing else up: still one link */
	fleet_radio_refused(&r, 0, now);
	assert_int_equal(r.limit, 1);
}

/*
 * Every @period_s, all but one of the links stop uploading for @gap_s (a wave marking,
 * resetting, reconnecting): they hold their slots and send nothing.
 */
static unsigned run_waves(struct fleet_radio *r, radio_model_t model, uint64_t *now,
			  unsigned seconds, unsigned period_s, unsigned gap_s)
{
	unsigned limit = r->limit;
	uint64_t start = *now;

	for (uint64_t end = *now + seconds * 1000ull; *now < end; *now += STEP_MS) {
		bool gap = (*now - start) % (period_s * 1000ull) < gap_s * 1000ull;
		unsigned up = gap ? 1 : limit;

		fleet_radio_add_bytes(r, (uint64_t) (model(up) * STEP_MS / 1000.0), *now);
		limit = fleet_radio_limit(r, limit, up, *now);
	}
	return limit;
}

/* Waves of 3 s in every 8 s: the old controller fell back to 1 link; this one finds 3. */
static void test_waves(void **state)
{
	struct fleet_radio r;
	uint64_t now = 0;
	unsigned limit;

	(void) state;
	fleet_radio_init(&r, "hci0", 8, now);
	limit = run_waves(&r, plateau, &now, 300, 8, 3);
	/* 3 paid; a 4th is probed now and then (held 30 s between) and undone */
	assert_int_equal(r.floor, 3);
	assert_true(limit == 3 || limit == 4);
	/* with airtime to spare it still climbs through the waves */
	fleet_radio_init(&r, "hci0", 6, now);
	assert_int_equal(run_waves(&r, linear, &now, 300, 8, 3), 6);
	assert_int_equal(r.lowered, 0);
}

/* Waves all the time (never a full window at the limit): no judgement, the limit holds. */
static void test_wave_storm(void **state)
{
	struct fleet_radio r;
	uint64_t now = 0;

	(void) state;
	fleet_radio_init(&r, "hci0", 8, now);
	assert_int_equal(run(&r, linear, &now, 60, NULL), 8);
	assert_int_equal(run_waves(&r, linear, &now, 120, 2, 1), 8);
	assert_int_equal(r.lowered, 0);
}

/*
 * A lasting fall with all the uploads running, at a limit that showed a gain (the radio got
 * worse, not the fleet): the limit holds, never below the highest that paid; the next probe
 * above it is judged and undone.
 */
static void test_fall_keeps_floor(void **state)
{
	struct fleet_radio r;
	uint64_t now = 0;
	unsigned limit;

	(void) state;
	fleet_radio_init(&r, "hci0", 8, now);
	assert_int_equal(run(&r, plateau, &now, 120, NULL), 3);
	limit = r.limit;
	for (uint64_t end = now + 120000; now < end; now += STEP_MS) {
		fleet_radio_add_bytes(&r, (uint64_t) (plateau(limit) * STEP_MS / 10000.0), now);
		limit = fleet_radio_limit(&r, limit, limit, now);
		assert_true(limit >= 3 && limit <= 4);
	}
	assert_int_equal(r.floor, 3);
	assert_int_equal(run(&r, plateau, &now, 60, NULL), 3);
}

/* Not saturated (fewer devices than slots): no judgement, no probing. */
static void test_idle_slots(void **state)
{
	struct fleet_radio r;
	uint64_t now = 0;

	(void) state;
	fleet_radio_init(&r, "hci0", 8, now);
	for (; now < 60000; now += STEP_MS) {
		fleet_radio_add_bytes(&r, 6000, now);
		assert_int_equal(fleet_radio_limit(&r, 0, 0, now), 1);
	}
	assert_int_equal(r.raised, 0);
	fleet_radio_set_max(&r, 0);
	assert_int_equal(r.max, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_window),
	    cmocka_unit_test(test_plateau),
	    cmocka_unit_test(test_falling),
	    cmocka_unit_test(test_rising_to_max),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_idle_slots),
	    cmocka_unit_test(test_waves),
	    cmocka_unit_test(test_wave_storm),
	    cmocka_unit_test(test_fall_keeps_floor),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
