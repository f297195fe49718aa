/*
 * Freshness of the manifest in force. `expires` is judged again at the end of every poll,
 * whatever the poll came to (a 304, "unchanged", a refusal, a network error), so a replayed or
 * frozen manifest raises an alarm once its time has passed. The clock is not trusted before a
 * floor (the build date by default): a gateway that boots with its clock at 1970 must neither
 * refuse every manifest as expired nor, later, take an old one as fresh.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "release-private.h"

#ifndef FGW_BUILD_EPOCH
#error "FGW_BUILD_EPOCH (Unix seconds of the build) must be defined by the build"
#endif

static const char *const poll_result_names[_FGW_POLL_RESULT_MAX] = {
    [FGW_POLL_RESULT_ACCEPTED] = "accepted",
    [FGW_POLL_RESULT_UNCHANGED] = "unchanged",
    [FGW_POLL_RESULT_NOT_MODIFIED] = "not-modified",
    [FGW_POLL_RESULT_REJECTED] = "rejected",
    [FGW_POLL_RESULT_ERROR] = "error",
};

static const char *const freshness_names[_FGW_MANIFEST_FRESHNESS_MAX] = {
    [FGW_MANIFEST_FRESHNESS_UNKNOWN] = "unknown",
    [FGW_MANIFEST_FRESHNESS_FRESH] = "fresh",
    [FGW_MANIFEST_FRESHNESS_EXPIRED] = "expired",
    [FGW_MANIFEST_FRESHNESS_CLOCK_UNTRUSTED] = "clock-untrusted",
};

FGW_EXPORT const char *fgw_poll_result_to_string(enum fgw_poll_result r)
{
	return FGW_ENUM_NAME(poll_result_names, r);
}

FGW_EXPORT const char *fgw_manifest_freshness_to_string(enum fgw_manifest_freshness f)
{
	return FGW_ENUM_NAME(freshness_names, f);
}

int64_t rsrc_clock_floor_default(void)
{
	return (int64_t) FGW_BUILD_EPOCH;
}

int64_t rsrc_judge_now(struct fgw_release_source *s)
{
	int64_t now = (int64_t) time(NULL);

	if (now >= s->clock_floor)
		return now;
	if (!s->clock_warned)
		fgw_warning("The clock (%" PRId64 ") is before %" PRId64 " (the build date, or "
			    "release.clock_floor): manifest expiry is not judged until it is set",
			    now, s->clock_floor);
	s->clock_warned = true;
	return INT64_MIN;
}

void rsrc_in_force(struct fgw_release_source *s, const struct fgw_manifest *m)
{
	s->in_force_sequence = m->sequence;
	s->in_force_expires = m->expires;
}

static void format_time(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t) t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, size, "%" PRId64, t);
}

static void announce(struct fgw_release_source *s, enum fgw_manifest_freshness f)
{
	char when[40], text[160];

	format_time(s->in_force_expires, when, sizeof(when));
	if (f == FGW_MANIFEST_FRESHNESS_EXPIRED) {
		fgw_warning("event: manifest-expired, url: %s, sequence: %" PRId64 ", expires: %s",
			    s->log_url, s->in_force_sequence, when);
		snprintf(text, sizeof(text), "manifest sequence %" PRId64 " expired at %s",
			 s->in_force_sequence, when);
	} else {
		fgw_notice("event: manifest-fresh, url: %s, sequence: %" PRId64 ", expires: %s",
			   s->log_url, s->in_force_sequence, when);
		snprintf(text, sizeof(text), "manifest sequence %" PRId64 " in force until %s",
			 s->in_force_sequence, when);
	}
	(void) fgw_store_event_add(s->store, NULL, 0, "release", text, fgw_wall_ms());
}

void rsrc_poll_end(struct fgw_release_source *s, enum fgw_poll_result result)
{
	enum fgw_manifest_freshness f = FGW_MANIFEST_FRESHNESS_UNKNOWN;
	int64_t now;

	s->polls[result]++;
	now = rsrc_judge_now(s);
	if (now == INT64_MIN)
		f = FGW_MANIFEST_FRESHNESS_CLOCK_UNTRUSTED;
	else if (s->in_force_sequence > 0)
		f = s->in_force_expires > now ? FGW_MANIFEST_FRESHNESS_FRESH
					      : FGW_MANIFEST_FRESHNESS_EXPIRED;
	/* once per change: expired, and fresh again after an expiry */
	if (f == FGW_MANIFEST_FRESHNESS_EXPIRED && s->freshness != f)
		announce(s, f);
	else if (f == FGW_MANIFEST_FRESHNESS_FRESH &&
		 s->freshness == FGW_MANIFEST_FRESHNESS_EXPIRED)
		announce(s, f);
	s->freshness = f;
}

FGW_EXPORT void fgw_release_source_get_status(struct fgw_release_source *s,
					      struct fgw_release_status *ret)
{
	*ret = (struct fgw_release_status){
	    .state = s->state,
	    .freshness = s->freshness,
	    .sequence = s->in_force_sequence,
	    .expires = s->in_force_expires,
	};
	for (int i = 0; i < _FGW_POLL_RESULT_MAX; i++)
		ret->polls[i] = s->polls[i];
}
