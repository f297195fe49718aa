/* The per-radio concurrency controller (fleet-radio.h): pure arithmetic on a sliding window. */
#include <stdio.h>
#include <string.h>

#include "fleet-radio.h"
#include "util.h"

void fleet_radio_init(struct fleet_radio *r, const char *name, unsigned max, uint64_t now)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->max = max ? max : 1;
	r->limit = 1; /* one link first; more only while they pay */
	r->cur_start_ms = now;
	r->changed_ms = now;
}

void fleet_radio_set_max(struct fleet_radio *r, unsigned max)
{
	r->max = max ? max : 1;
	if (r->limit > r->max)
		r->limit = r->max;
}

static void advance(struct fleet_radio *r, uint64_t now)
{
	if (now < r->cur_start_ms)
		return;
	if (now - r->cur_start_ms >= (uint64_t) FLEET_RADIO_BUCKETS * FLEET_RADIO_BUCKET_MS) {
		/* idle for a whole window: nothing in it is recent */
		memset(r->bucket, 0, sizeof(r->bucket));
		r->cur_start_ms = now - (now - r->cur_start_ms) % FLEET_RADIO_BUCKET_MS;
		return;
	}
	while (now - r->cur_start_ms >= FLEET_RADIO_BUCKET_MS) {
		r->cur = (r->cur + 1) % FLEET_RADIO_BUCKETS;
		r->bucket[r->cur] = 0;
		r->cur_start_ms += FLEET_RADIO_BUCKET_MS;
	}
}

void fleet_radio_add_bytes(struct fleet_radio *r, uint64_t bytes, uint64_t now)
{
	advance(r, now);
	r->bucket[r->cur] += bytes;
	r->bytes += bytes;
}

double fleet_radio_rate(struct fleet_radio *r, uint64_t now)
{
	uint64_t sum = 0;

	advance(r, now);
	for (unsigned i = 0; i < FLEET_RADIO_BUCKETS; i++)
		if (i != r->cur)
			sum += r->bucket[i];
	return (double) sum * 1000.0 / ((FLEET_RADIO_BUCKETS - 1) * FLEET_RADIO_BUCKET_MS);
}

static void set_limit(struct fleet_radio *r, unsigned limit, uint64_t now, bool hold)
{
	if (limit < 1)
		limit = 1;
	if (limit > r->max)
		limit = r->max;
	if (limit > r->limit)
		r->raised++;
	else if (limit < r->limit)
		r->lowered++;
	fgw_info("fleet: radio %s: %u -> %u uploads at once", r->name, r->limit, limit);
	r->limit = limit;
	r->changed_ms = now;
	r->rate_ref = 0;
	r->fall_since_ms = 0;
	if (hold)
		r->hold_until_ms = now + FLEET_RADIO_HOLD_MS;
}

unsigned fleet_radio_limit(struct fleet_radio *r, unsigned active, uint64_t now)
{
	double rate;

	if (r->limit > r->max)
		r->limit = r->max;
	/* Judged only settled and saturated: an idle slot says nothing about the radio. */
	if (now - r->changed_ms < FLEET_RADIO_SETTLE_MS || active < r->limit)
		return r->limit;
	rate = fleet_radio_rate(r, now);
	if (r->probing) {
		r->probing = false;
		if (rate <= r->rate_before * (1.0 + FLEET_RADIO_GAIN)) {
			/* the last link added (almost) nothing: the radio is full */
			set_limit(r, r->limit - 1, now, true);
			return r->limit;
		}
	}
	if (r->rate_ref <= 0 || rate > r->rate_ref)
		r->rate_ref = rate;
	if (r->limit > 1 && rate < r->rate_ref * FLEET_RADIO_FALL) {
		if (!r->fall_since_ms)
			r->fall_since_ms = now;
		if (now - r->fall_since_ms >= FLEET_RADIO_SETTLE_MS) {
			set_limit(r, r->limit - 1, now, true);
			return r->limit;
		}
		return r->limit; /* no probing while it is down */
	}
	r->fall_since_ms = 0;
	if (r->limit < r->max && now >= r->hold_until_ms) {
		r->rate_before = rate;
		set_limit(r, r->limit + 1, now, false);
		r->probing = true;
	}
	return r->limit;
}

void fleet_radio_refused(struct fleet_radio *r, unsigned active, uint64_t now)
{
	r->refused++;
	r->probing = false;
	/* What it carried when it refused is at most what it can hold. */
	set_limit(r, active < r->limit ? active : r->limit - 1, now, true);
}
