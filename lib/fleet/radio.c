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
	r->floor = 1;
	r->cur_start_ms = now;
	r->mark_ms = now;
	r->changed_ms = now;
}

void fleet_radio_set_max(struct fleet_radio *r, unsigned max)
{
	r->max = max ? max : 1;
	if (r->limit > r->max)
		r->limit = r->max;
	if (r->floor > r->max)
		r->floor = r->max;
}

/* The time since the last credit, up to @upto, counts as saturated if the last call said so. */
static void credit(struct fleet_radio *r, uint64_t upto)
{
	if (upto <= r->mark_ms)
		return;
	if (r->full)
		r->full_ms[r->cur] += upto - r->mark_ms;
	r->mark_ms = upto;
}

static void clear_bucket(struct fleet_radio *r, unsigned i)
{
	r->bucket[i] = 0;
	r->full_bytes[i] = 0;
	r->full_ms[i] = 0;
}

static void advance(struct fleet_radio *r, uint64_t now)
{
	if (now < r->cur_start_ms)
		return;
	if (now - r->cur_start_ms >= (uint64_t) FLEET_RADIO_BUCKETS * FLEET_RADIO_BUCKET_MS) {
		/* idle for a whole window: nothing in it is recent */
		for (unsigned i = 0; i < FLEET_RADIO_BUCKETS; i++)
			clear_bucket(r, i);
		r->cur_start_ms = now - (now - r->cur_start_ms) % FLEET_RADIO_BUCKET_MS;
		r->mark_ms = now;
		return;
	}
	while (now - r->cur_start_ms >= FLEET_RADIO_BUCKET_MS) {
		credit(r, r->cur_start_ms + FLEET_RADIO_BUCKET_MS);
		r->cur = (r->cur + 1) % FLEET_RADIO_BUCKETS;
		clear_bucket(r, r->cur);
		r->cur_start_ms += FLEET_RADIO_BUCKET_MS;
	}
	credit(r, now);
}

void fleet_radio_add_bytes(struct fleet_radio *r, uint64_t bytes, uint64_t now)
{
	advance(r, now);
	r->bucket[r->cur] += bytes;
	if (r->full)
		r->full_bytes[r->cur] += bytes;
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

double fleet_radio_full_rate(struct fleet_radio *r, uint64_t now, uint64_t *ret_ms)
{
	uint64_t sum = 0, ms = 0;

	advance(r, now);
	for (unsigned i = 0; i < FLEET_RADIO_BUCKETS; i++)
		if (i != r->cur) {
			sum += r->full_bytes[i];
			ms += r->full_ms[i];
		}
	if (ret_ms)
		*ret_ms = ms;
	return ms ? (double) sum * 1000.0 / (double) ms : 0;
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
	/* what was saturated at the old limit is not at the new one */
	r->full = false;
	if (hold)
		r->hold_until_ms = now + FLEET_RADIO_HOLD_MS;
}

unsigned fleet_radio_limit(struct fleet_radio *r, unsigned active, unsigned uploading, uint64_t now)
{
	uint64_t full_ms;
	double rate;

	if (r->limit > r->max)
		r->limit = r->max;
	advance(r, now);
	/* Only the time all the limit's uploads ran says what the radio gives at that limit. */
	r->full = uploading >= r->limit;
	if (now - r->changed_ms < FLEET_RADIO_SETTLE_MS)
		return r->limit;
	rate = fleet_radio_full_rate(r, now, &full_ms);
	if (full_ms < FLEET_RADIO_FULL_MS)
		return r->limit; /* not enough of it yet: no judgement, no fall, no probe */
	if (r->probing) {
		r->probing = false;
		if (rate <= r->rate_before * (1.0 + FLEET_RADIO_GAIN)) {
			/* the last link added (almost) nothing, or cost: the radio is full */
			set_limit(r, r->limit - 1, now, true);
			return r->limit;
		}
		if (r->limit > r->floor)
			r->floor =
			    r->limit; /* a confirmed gain: never below it without a refusal */
	}
	/* Probe only with every slot in use: an idle slot says nothing about the radio. */
	if (r->limit < r->max && active >= r->limit && now >= r->hold_until_ms) {
		r->rate_before = rate;
		set_limit(r, r->limit + 1, now, false);
		r->probing = true;
	}
	return r->limit;
}

void fleet_radio_refused(struct fleet_radio *r, unsigned active, uint64_t now)
{
	unsigned limit = active < r->limit ? active : r->limit - 1;

	r->refused++;
	r->probing = false;
	/* What it carried when it refused is at most what it can hold; the gains above it are
	 * void. */
	set_limit(r, limit, now, true);
	if (r->floor > r->limit)
		r->floor = r->limit;
}
