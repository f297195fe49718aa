/*
 * The upload engine's adaptive window (upload.h): Zephyr shares buf_count buffers between the
 * requests waiting, the one being reassembled and the answer being sent, and drops (BLE) or
 * refuses with rc 2 what finds none; so start at one request in flight, widen while answers come
 * back without loss, halve at once when one does not.
 */
#include <errno.h>

#include "upload-private.h"

/* Chunks sent before the last loss are answered with what the device knew then: not news. */
bool upload_is_stale(struct fgw_upload *u, const struct chunk *k)
{
	return k->sent_order < u->stale_before;
}

/*
 * A lost chunk, a timeout or rc 2: the device ran out of buffers (or the link lost a
 * packet). Halve at once, and do not try the window that lost again for a while: with
 * Zephyr's pool the loss repeats at the same window.
 */
void upload_narrow(struct fgw_upload *u, const char *why)
{
	unsigned lost_at = u->window;

	u->stats.narrowed++;
	if (u->window >= u->ceiling && u->ceiling < u->limit)
		u->probe_after =
		    FGW_MIN(u->probe_after * 2, 1024u); /* a failed probe: wait longer */
	u->ceiling = FGW_MAX(lost_at > 1 ? lost_at - 1 : 1, 1u);
	u->window = FGW_MAX(u->window / 2, 1u);
	u->clean = 0;
	u->stale_before = u->next_order;
	fgw_debug("upload %s: %s at window %u: window %u, ceiling %u",
		  fgw_smp_client_peer(u->client), why, lost_at, u->window, u->ceiling);
}

/* An answer in order, without loss: after a whole window of them, one more in flight. */
void upload_widen(struct fgw_upload *u)
{
	u->nomem_in_row = 0;
	if (++u->clean < u->window)
		return;
	if (u->window < u->ceiling) {
		u->window++;
		u->clean = 0;
	} else if (u->ceiling < u->limit && u->clean >= u->probe_after) {
		/* The loss that set the ceiling may have been the radio's: try again, rarely. */
		u->ceiling++;
		u->window++;
		u->clean = 0;
	}
}

void upload_rtt_sample(struct fgw_upload *u, const struct chunk *k)
{
	double ms = (double) (fgw_now_ms() - k->sent_ms);

	if (k->off == 0 || k->off + k->len >= u->img.len)
		return; /* erase and image check times say nothing about the link */
	u->srtt_ms = u->srtt_ms > 0 ? u->srtt_ms * 0.875 + ms * 0.125 : ms;
}

FGW_EXPORT unsigned fgw_upload_window_limit(const struct fgw_upload_opts *o)
{
	unsigned w = o->window ? o->window : o->window_cap ? o->window_cap : FGW_UPLOAD_MAX_WINDOW;

	/* Zephyr answers from the same pool of buf_count buffers its requests wait in. */
	if (o->buf_count > 0)
		w = FGW_MIN(w, o->buf_count > 1 ? o->buf_count - 1 : 1);
	else if (!o->window)
		w = 1; /* no params: nothing says the device has a second buffer */
	return FGW_MIN(FGW_MAX(w, 1u), (unsigned) FGW_UPLOAD_MAX_WINDOW);
}

/* Adaptive from 1, or the caller's window (clamped); see upload.h. */
void upload_window_init(struct fgw_upload *u, const struct fgw_upload_opts *o)
{
	u->limit = fgw_upload_window_limit(o);
	u->window = o->window ? u->limit : 1;
	u->ceiling = u->limit;
	u->clean = 0;
	/* Over BLE the link layer retransmits: a lost chunk is the device's pool, and a probe
	 * above the ceiling costs a loss (the chunk and those behind it). Rarely, then. */
	u->probe_after = 256;
	u->nomem_in_row = 0;
	u->stale_before = 0;
	u->srtt_ms = 0;
}
