/*
 * fotagw-sim's link model (tests/sim/link.c) against airtime computed by hand from the PHY
 * framing (Core spec Vol 6 Part B 2.1; protocol-notes §11). T_IFS = 150 us.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "sim.h"

static struct sim_link_params link(int phy, unsigned dle, double interval_ms, bool enc)
{
	struct sim_link_params p;

	memset(&p, 0, sizeof(p));
	sim_link_profile("fast", &p);
	p.phy = phy;
	p.dle = dle;
	p.interval_ms = interval_ms;
	p.encrypt = enc;
	p.event_ms = 0;
	p.latency_ms = 0;
	return p;
}

static void test_packets(void **state)
{
	(void) state;
	/* 1M: (preamble 1 + AA 4 + header 2 + 27 + CRC 3) = 37 B x 8 us = 296 us; empty 10 B */
	assert_float_equal(sim_phy_packet_us(SIM_PHY_1M, 27, false), 296, 1e-9);
	assert_float_equal(sim_phy_packet_us(SIM_PHY_1M, 0, false), 80, 1e-9);
	/* 2M: (2 + 4 + 2 + 251 + 3) = 262 B x 4 us = 1048 us; empty 11 B = 44 us */
	assert_float_equal(sim_phy_packet_us(SIM_PHY_2M, 251, false), 1048, 1e-9);
	assert_float_equal(sim_phy_packet_us(SIM_PHY_2M, 0, false), 44, 1e-9);
	/* encrypted: + MIC 4 on a non-empty packet: 266 B = 1064 us; the empty one has none */
	assert_float_equal(sim_phy_packet_us(SIM_PHY_2M, 251, true), 1064, 1e-9);
	assert_float_equal(sim_phy_packet_us(SIM_PHY_2M, 0, true), 44, 1e-9);
	/* Coded S8: 80 + 256 + 16 + 24 + (2 + 27 + 3) x 64 + 24 = 2448 us; empty 400 + 320 */
	assert_float_equal(sim_phy_packet_us(SIM_PHY_CODED_S8, 27, false), 2448, 1e-9);
	assert_float_equal(sim_phy_packet_us(SIM_PHY_CODED_S8, 0, false), 720, 1e-9);
}

static void test_2m_251_7_5(void **state)
{
	struct sim_link_params p = link(SIM_PHY_2M, 251, 7.5, false);

	(void) state;
	/* 1048 + 150 + 44 + 150 = 1392 us; floor(7500 / 1392) = 5 (6960 us);
	 * 5 x 251 B / 7.5 ms = 167,333 B/s */
	assert_float_equal(sim_link_exchange_us(&p), 1392, 1e-9);
	assert_int_equal(sim_link_event_exchanges(&p), 5);
	assert_float_equal(sim_link_ceiling(&p), 167333.33, 0.01);
	/* the old `pkts` knob can only lower it */
	p.pkts = 6;
	assert_int_equal(sim_link_event_exchanges(&p), 5);
	p.pkts = 3;
	assert_int_equal(sim_link_event_exchanges(&p), 3);
	/* a controller event-length limit of 3.75 ms: floor(3750 / 1392) = 2 */
	p.pkts = 0;
	p.event_ms = 3.75;
	assert_int_equal(sim_link_event_exchanges(&p), 2);
}

static void test_2m_251_30(void **state)
{
	struct sim_link_params p = link(SIM_PHY_2M, 251, 30, false);

	(void) state;
	/* floor(30000 / 1392) = 21 (29232 us); 21 x 251 / 0.030 = 175,700 B/s */
	assert_int_equal(sim_link_event_exchanges(&p), 21);
	assert_float_equal(sim_link_ceiling(&p), 175700, 0.01);
}

static void test_1m_27_30(void **state)
{
	struct sim_link_params p = link(SIM_PHY_1M, 27, 30, false);

	(void) state;
	/* no DLE: 296 + 150 + 80 + 150 = 676 us; floor(30000 / 676) = 44 (29744 us);
	 * 44 x 27 / 0.030 = 39,600 B/s */
	assert_float_equal(sim_link_exchange_us(&p), 676, 1e-9);
	assert_int_equal(sim_link_event_exchanges(&p), 44);
	assert_float_equal(sim_link_ceiling(&p), 39600, 0.01);
}

static void test_encrypted(void **state)
{
	struct sim_link_params p = link(SIM_PHY_1M, 27, 30, true);
	struct sim_link_params q = link(SIM_PHY_2M, 251, 7.5, true);

	(void) state;
	/* 1M/27 encrypted: 41 B = 328 us; 328 + 150 + 80 + 150 = 708 us; floor(30000 / 708)
	 * = 42 (29736 us); 42 x 27 / 0.030 = 37,800 B/s, below the plain 39,600 */
	assert_float_equal(sim_link_exchange_us(&p), 708, 1e-9);
	assert_int_equal(sim_link_event_exchanges(&p), 42);
	assert_float_equal(sim_link_ceiling(&p), 37800, 0.01);
	/* 2M/251/7.5 encrypted: 1064 + 150 + 44 + 150 = 1408 us, still 5 per event (7040 us) */
	assert_float_equal(sim_link_exchange_us(&q), 1408, 1e-9);
	assert_int_equal(sim_link_event_exchanges(&q), 5);
}

static void test_coded(void **state)
{
	struct sim_link_params p = link(SIM_PHY_CODED_S8, 27, 30, false);
	struct sim_link_params q = link(SIM_PHY_CODED_S8, 251, 7.5, false);
	const char *why = NULL;

	(void) state;
	/* 2448 + 150 + 720 + 150 = 3468 us; floor(30000 / 3468) = 8; 8 x 27 / 0.030 = 7200 */
	assert_int_equal(sim_link_event_exchanges(&p), 8);
	assert_float_equal(sim_link_ceiling(&p), 7200, 0.01);
	assert_int_equal(sim_link_check(&p, &why), 0);
	/* 251 bytes on S8 take 400 + 256 x 64 = 16,784 us: no exchange fits into 7.5 ms */
	assert_int_equal(sim_link_event_exchanges(&q), 0);
	assert_int_equal(sim_link_check(&q, &why), -EINVAL);
	assert_non_null(why);
}

/* Queues @n writes of @len bytes at t = 0 on @l; returns the last arrival (us). */
static uint64_t blast(struct sim_link *l, const struct sim_link_params *p, unsigned n, size_t len)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < n; i++)
		t = sim_link_pdu(l, p, SIM_UP, 0, len);
	return t;
}

static struct sim_link links[4];

static void test_queue_follows_airtime(void **state)
{
	struct sim_link_params p = link(SIM_PHY_2M, 251, 7.5, false);
	uint64_t t;

	(void) state;
	memset(links, 0, sizeof(links));
	sim_link_reset(&links[0], 0);
	/* 100 writes of 244 B = 100 full LL packets (244 + 7 = 251): 5 per event, so the last
	 * one rides in event 19, ending 5 x 1392 us into it */
	t = blast(&links[0], &p, 100, 244);
	assert_int_equal(t, 19 * 7500 + 5 * 1392);
	/* a notification rides in the exchanges the uplink already uses: queued now it lands
	 * in event 0, after its first exchange, replacing the empty packet (44 us) */
	t = sim_link_pdu(&links[0], &p, SIM_DOWN, 0, 19);
	assert_int_equal(t, 6960 + (uint64_t) (sim_phy_packet_us(SIM_PHY_2M, 26, false) - 44));
}

static void test_shared_radio(void **state)
{
	struct sim_link_params p = link(SIM_PHY_2M, 251, 7.5, false);
	struct sim_radio radio;
	uint64_t t[3];
	double budget;

	(void) state;
	memset(links, 0, sizeof(links));
	memset(&radio, 0, sizeof(radio));
	for (unsigned i = 0; i < 3; i++) {
		sim_link_reset(&links[i], 0);
		assert_int_equal(sim_radio_join(&radio, &links[i]), 0);
	}
	/* 5 exchanges per interval dealt round-robin to 3 links: 2, 2, 1 in event 0 */
	assert_int_equal(sim_link_event_slots(&links[0], &p, 0, &budget), 2);
	assert_float_equal(budget, 3000, 1e-9);
	assert_int_equal(sim_link_event_slots(&links[2], &p, 0, &budget), 1);
	/* 300 full packets each: alone 60 events; sharing, each gets 5/3 per event: 180 */
	for (unsigned i = 0; i < 3; i++)
		t[i] = blast(&links[i], &p, 300, 244);
	for (unsigned i = 0; i < 3; i++) {
		double share = 300 * 251 / (t[i] / 1e6) / sim_link_ceiling(&p);
		assert_true(share > 0.32 && share < 0.34);
	}
	/* the aggregate never exceeds what one link alone could carry: 900 packets need
	 * 180 whole intervals (the last event counted in full) */
	{
		uint64_t end = FGW_MAX(t[0], FGW_MAX(t[1], t[2]));
		uint64_t events = end / 7500 + 1;
		assert_int_equal(events, 180);
		assert_true(900.0 * 251 / (events * 7500 / 1e6) <= sim_link_ceiling(&p) + 1e-6);
	}
	sim_radio_leave(&links[2]);
	assert_int_equal(radio.n, 2);
}

static void test_more_links_than_exchanges(void **state)
{
	struct sim_link_params p = link(SIM_PHY_2M, 251, 7.5, false);
	static struct sim_link many[8];
	struct sim_radio radio;

	(void) state;
	memset(&radio, 0, sizeof(radio));
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(sim_radio_join(&radio, &many[i]), 0);
	/* 8 links, 5 exchanges per interval: every event hands out exactly 5 (airtime 5 x
	 * 1500 us of budget = the interval), so some links skip events; over 8 events each
	 * link gets 5 */
	for (int64_t ev = 0; ev < 8; ev++) {
		unsigned sum = 0;
		double budget, sum_budget = 0;
		for (unsigned i = 0; i < 8; i++) {
			sum += sim_link_event_slots(&many[i], &p, ev, &budget);
			sum_budget += budget;
		}
		assert_int_equal(sum, 5);
		assert_float_equal(sum_budget, 7500, 1e-6);
	}
	for (unsigned i = 0; i < 8; i++) {
		unsigned got = 0;
		double budget;
		for (int64_t ev = 0; ev < 8; ev++)
			got += sim_link_event_slots(&many[i], &p, ev, &budget);
		assert_int_equal(got, 5);
	}
}

static void test_event_limit_shares_radio(void **state)
{
	struct sim_link_params p = link(SIM_PHY_1M, 251, 30, false);
	static struct sim_link many[8];
	struct sim_radio radio;
	double budget;

	(void) state;
	p.event_ms = 7.5;
	/* 1M/251: 2088 + 150 + 80 + 150 = 2468 us. A link alone: floor(7500 / 2468) = 3 per
	 * 30 ms event (25,100 B/s). The radio: floor(30000 / 2468) = 12 per interval
	 * (100,400 B/s): 8 such links share 12 exchanges, never more than 3 each. */
	assert_int_equal(sim_link_event_exchanges(&p), 3);
	assert_float_equal(sim_link_ceiling(&p), 25100, 0.01);
	assert_float_equal(sim_link_radio_ceiling(&p), 100400, 0.01);
	memset(&radio, 0, sizeof(radio));
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(sim_radio_join(&radio, &many[i]), 0);
	for (int64_t ev = 0; ev < 4; ev++) {
		unsigned sum = 0;
		double sum_budget = 0;
		for (unsigned i = 0; i < 8; i++) {
			unsigned sl = sim_link_event_slots(&many[i], &p, ev, &budget);
			assert_true(sl <= 3);
			sum += sl;
			sum_budget += budget;
		}
		assert_int_equal(sum, 12);
		assert_true(sum_budget <= 30000 + 1e-6);
	}
	/* two such links: each keeps its own 3 (its event limit binds, not the radio) */
	memset(&radio, 0, sizeof(radio));
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(sim_radio_join(&radio, &many[i]), 0);
	assert_int_equal(sim_link_event_slots(&many[0], &p, 0, &budget), 3);
	assert_true(budget <= 7500);
}

static void test_capacity_below_ceiling(void **state)
{
	const char *profiles[] = {"fast", "typical", "slow"};

	(void) state;
	for (unsigned i = 0; i < 3; i++) {
		struct sim_link_params p;
		unsigned chunk;
		double cap, cap_ble;

		memset(&p, 0, sizeof(p));
		sim_link_profile(profiles[i], &p);
		cap = sim_link_capacity(&p, 2475, 4, false, &chunk);
		cap_ble = sim_link_capacity(&p, 2475, 4, true, &chunk);
		assert_true(cap > 0);
		assert_true(cap < sim_link_ceiling(&p));
		assert_true(cap_ble <= cap);
	}
	/* fast: 2475-byte packets are 5 writes of 495 B = 10 full LL packets, 2 events per
	 * chunk with the answer riding along: 2440 image bytes / 15 ms = 162,667 B/s */
	{
		struct sim_link_params p;
		unsigned chunk;
		double cap;

		memset(&p, 0, sizeof(p));
		sim_link_profile("fast", &p);
		p.write_us = 0;
		cap = sim_link_capacity(&p, 2475, 4, false, &chunk);
		assert_true(cap > 0.95 * 162667 && cap < 167333);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_packets),
	    cmocka_unit_test(test_2m_251_7_5),
	    cmocka_unit_test(test_2m_251_30),
	    cmocka_unit_test(test_1m_27_30),
	    cmocka_unit_test(test_encrypted),
	    cmocka_unit_test(test_coded),
	    cmocka_unit_test(test_queue_follows_airtime),
	    cmocka_unit_test(test_shared_radio),
	    cmocka_unit_test(test_more_links_than_exchanges),
	    cmocka_unit_test(test_event_limit_shares_radio),
	    cmocka_unit_test(test_capacity_below_ceiling),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
