/*
 * For lib/fleet only: how many uploads one radio (a BLE adapter) carries at once. A
 * controller has one radio, and its links share that airtime: past some number of links the
 * aggregate stops rising (and with connection events squeezed, may fall), and controllers
 * refuse links beyond their limit. So the scheduler does not fill max_connections: it
 * measures the radio's aggregate goodput (bytes the devices acknowledged, over a sliding
 * window), opens one more concurrent upload only while that still rises, steps back when it
 * does not or when it falls, and after the controller refused a link. Pure: every call takes
 * the time, so the unit test drives it with a fake clock.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The sliding window: this many buckets of this many ms; the current bucket is not counted. */
#define FLEET_RADIO_BUCKET_MS 1000
#define FLEET_RADIO_BUCKETS 5
/* After the limit changed, the aggregate is measured this long before it is judged. */
#define FLEET_RADIO_SETTLE_MS ((FLEET_RADIO_BUCKETS - 1) * FLEET_RADIO_BUCKET_MS)
/* ... and judged only on this much time with the limit's uploads all running: a wave of jobs
 * connecting, marking, resetting or verifying together holds slots but is not the radio. */
#define FLEET_RADIO_FULL_MS 3000
/* One more link must add this share to the aggregate to count as "still rising". */
#define FLEET_RADIO_GAIN 0.05
/* After a plateau or a refusal: no new probe for this long. */
#define FLEET_RADIO_HOLD_MS 30000

struct fleet_radio {
	char name[32]; /* "hci0" */
	unsigned limit, max;
	/* Never stepped below without a refusal: the highest limit that showed a gain. A fall
	 * seen at or under it is the fleet (waves of resets, reconnections), not the radio. */
	unsigned floor;
	uint64_t bucket[FLEET_RADIO_BUCKETS];	  /* all acknowledged bytes */
	uint64_t full_bytes[FLEET_RADIO_BUCKETS]; /* those while the limit's uploads ran */
	uint64_t full_ms[FLEET_RADIO_BUCKETS];	  /* time the limit's uploads ran */
	unsigned cur;				  /* the bucket being filled */
	uint64_t cur_start_ms;			  /* its start */
	uint64_t mark_ms;			  /* full_ms credited up to */
	bool full;		  /* at the last call, as many uploads ran as the limit allows */
	uint64_t changed_ms;	  /* the limit last changed */
	uint64_t hold_until_ms;	  /* no probing before */
	bool probing;		  /* the limit was raised: judge whether it paid */
	double rate_before;	  /* the saturated aggregate before the raise */
	uint64_t bytes;		  /* acknowledged, in total */
	uint64_t raised, lowered; /* decisions, for metrics */
	uint64_t refused;	  /* links the controller refused */
};

void fleet_radio_init(struct fleet_radio *r, const char *name, unsigned max, uint64_t now);
/* Bytes the devices on this radio acknowledged at @now. */
void fleet_radio_add_bytes(struct fleet_radio *r, uint64_t bytes, uint64_t now);
/* The aggregate goodput over the window's complete buckets, bytes/s. */
double fleet_radio_rate(struct fleet_radio *r, uint64_t now);
/*
 * The aggregate over the window's complete buckets counting only the time the limit's uploads
 * all ran, bytes/s; *@ret_ms is that time. 0 when there was none.
 */
double fleet_radio_full_rate(struct fleet_radio *r, uint64_t now, uint64_t *ret_ms);
/*
 * How many links the radio may carry now, given the @active ones (jobs holding a link on it)
 * and, among them, the @uploading ones (sending image data). Raises or lowers the limit as the
 * measurements say; the scheduler asks on every pass (at least once a second).
 */
unsigned fleet_radio_limit(struct fleet_radio *r, unsigned active, unsigned uploading,
			   uint64_t now);
/* The controller refused a link while @active others were up (busy, Limited Resources). */
void fleet_radio_refused(struct fleet_radio *r, unsigned active, uint64_t now);
/* A new max_connections (reload); the limit never exceeds it. */
void fleet_radio_set_max(struct fleet_radio *r, unsigned max);
