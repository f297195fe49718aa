/*
 * Links' reactions to the object view (device, characteristic and adapter changes) and the
 * slot pump that starts waiting links: the half of the link machine driven by bluetoothd's
 * objects rather than by replies to our own calls (link.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bluez-private.h"
#include "util.h"

/* ---- reactions to the object view ---- */

static bool release_pending(struct fgw_bluez *b, const char *dev_path)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->releases)
	{
		struct bz_release *rel = container_of(pos, struct bz_release, node);
		if (rel->dev_path && strcmp(rel->dev_path, dev_path) == 0)
			return true;
	}
	return false;
}

unsigned bz_links_searching(struct fgw_bluez *b)
{
	struct bz_list *pos;
	unsigned n = 0;

	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);
		n += l->state == FGW_BLUEZ_LINK_STATE_SEARCHING;
	}
	return n;
}

/* Finds the first link in @states on @path not yet handled in this pass, or NULL. */
static struct fgw_bluez_link *link_on_path(struct fgw_bluez *b, const char *path, bool by_char,
					   unsigned state_mask)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);
		const char *p = by_char ? l->char_path : l->dev_path;

		if ((state_mask & (1u << l->state)) && p && strcmp(p, path) == 0)
			return l;
	}
	return NULL;
}

/* A link in PAIRING is left alone at Connected=false: the Pair() reply says why it ended. */
#define OPENING_OR_OPEN                                                                            \
	((1u << FGW_BLUEZ_LINK_STATE_CONNECTING) | (1u << FGW_BLUEZ_LINK_STATE_RESOLVING) |        \
	 (1u << FGW_BLUEZ_LINK_STATE_PAIRING) | (1u << FGW_BLUEZ_LINK_STATE_ACQUIRING) |           \
	 (1u << FGW_BLUEZ_LINK_STATE_READY))
#define OPENING_AFTER_CONNECT                                                                      \
	((1u << FGW_BLUEZ_LINK_STATE_RESOLVING) | (1u << FGW_BLUEZ_LINK_STATE_ACQUIRING))

void bz_links_adapter_usage(struct fgw_bluez *b, const char *adapter_path, unsigned *ret_slots,
			    unsigned *ret_ready, bool *ret_connecting)
{
	unsigned slots = 0, ready = 0;
	bool connecting = false;
	struct bz_list *pos;

	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);

		if (!l->holds_slot || !l->adapter_path ||
		    strcmp(l->adapter_path, adapter_path) != 0)
			continue;
		slots++;
		ready += l->state == FGW_BLUEZ_LINK_STATE_READY;
		connecting |= l->state == FGW_BLUEZ_LINK_STATE_CONNECTING;
	}
	bz_list_for_each(pos, &b->releases)
	{
		struct bz_release *rel = container_of(pos, struct bz_release, node);
		slots += rel->adapter_path && strcmp(rel->adapter_path, adapter_path) == 0;
	}
	if (ret_slots)
		*ret_slots = slots;
	if (ret_ready)
		*ret_ready = ready;
	if (ret_connecting)
		*ret_connecting = connecting;
}

/*
 * The copy of the link's device to connect through: the best one (bz_device_better) on a
 * powered adapter with a free slot that is not backing off after a busy answer. NULL when
 * every adapter that hears it is full: the link waits.
 */
static struct bz_device *link_pick(struct fgw_bluez *b, struct fgw_bluez_link *l, uint64_t now,
				   uint64_t *ret_retry_ms)
{
	struct bz_device *best = NULL;
	struct bz_list *pos;

	*ret_retry_ms = 0;
	bz_list_for_each(pos, &b->devices)
	{
		struct bz_device *d = container_of(pos, struct bz_device, node);
		struct bz_adapter *a;
		unsigned slots;

		if (strcmp(d->addr, l->addr) != 0 || !(a = bz_adapter_used(b, d->adapter)) ||
		    a->state != FGW_BLUEZ_ADAPTER_STATE_ON)
			continue;
		if (a->busy_until_ms > now) {
			/* backing off: look again when it is over (nothing else may wake us) */
			uint64_t left = a->busy_until_ms - now;
			if (!*ret_retry_ms || left < *ret_retry_ms)
				*ret_retry_ms = left;
			continue;
		}
		bz_links_adapter_usage(b, a->path, &slots, NULL, NULL);
		if (slots >= b->opts.max_connections)
			continue;
		if (!best || bz_device_better(b, d, best, now))
			best = d;
	}
	return best;
}

void bz_links_pump(struct fgw_bluez *b)
{
	struct bz_list *pos;
	bool on = b->adapter_state == FGW_BLUEZ_ADAPTER_STATE_ON;
	uint64_t now = fgw_now_ms();

again:
	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);
		bool known = on && bz_link_device(l);

		if (l->state == FGW_BLUEZ_LINK_STATE_SEARCHING && known) {
			uv_timer_stop(&l->timer);
			bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_WAITING);
		} else if (l->state == FGW_BLUEZ_LINK_STATE_WAITING && !known) {
			bz_link_start_timer(l);
			bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_SEARCHING);
		}
	}
	/* Links whose characteristic was not listed yet at ServicesResolved: look again. */
	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);
		struct bz_device *d;

		if (l->state == FGW_BLUEZ_LINK_STATE_RESOLVING && l->await_char &&
		    (d = bz_link_device(l)) && bz_find_smp_char(b, d)) {
			bz_link_acquire(l);
			goto again; /* it may have failed: the list may have changed */
		}
	}
	/* FIFO: b->links is in request order; each adapter takes one attempt at a time. */
	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);
		struct bz_device *d;
		bool connecting = false;
		uint64_t retry_ms;
		int r;

		if (l->state != FGW_BLUEZ_LINK_STATE_WAITING)
			continue;
		d = link_pick(b, l, now, &retry_ms);
		if (!d) {
			/* every adapter that hears it is full (a slot coming free kicks us) or
			 * backing off */
			if (retry_ms)
				bz_link_restart_timer(l, (unsigned) retry_ms + 1);
			continue;
		}
		bz_links_adapter_usage(b, d->adapter, NULL, NULL, &connecting);
		if (connecting)
			continue;
		/* A freed link's Disconnect() to the same device would cut the new connection. */
		if (release_pending(b, d->path))
			continue;
		if (!link_on_path(b, d->path, false, OPENING_OR_OPEN) && bz_link_settling(l, d))
			continue;
		r = bz_link_connect(l, d);
		if (r < 0) {
			bz_link_fail(l, r, true);
			goto again; /* the callback may have changed the list */
		}
	}
	bz_discovery_update(b);
}

void bz_links_on_device_changed(struct fgw_bluez *b, struct bz_device *d, bool connected_false)
{
	struct fgw_bluez_link *l;

	if (connected_false) {
		/* Links still opening connect again; open ones are lost. Each step may free
		 * links: look the next one up afresh. */
		while ((l = link_on_path(b, d->path, false, OPENING_AFTER_CONNECT)))
			bz_link_reopen(l, "Connected=false");
		while ((l = link_on_path(b, d->path, false, 1u << FGW_BLUEZ_LINK_STATE_READY)))
			bz_link_lost(l, "Connected=false", false);
		return;
	}
	if (d->services_resolved &&
	    (l = link_on_path(b, d->path, false, 1u << FGW_BLUEZ_LINK_STATE_RESOLVING)) &&
	    !l->await_disconnect)
		bz_link_acquire(l);
	bz_kick(b);
}

void bz_links_on_device_removed(struct fgw_bluez *b, struct bz_device *d)
{
	struct fgw_bluez_link *l;

	while ((l = link_on_path(b, d->path, false, OPENING_OR_OPEN))) {
		bz_link_set_error(l, "device object '%s' removed", d->path);
		bz_link_fail(l, -ECONNRESET, false);
	}
	bz_kick(b);
}

void bz_links_on_char_removed(struct fgw_bluez *b, struct bz_gatt_char *c)
{
	struct fgw_bluez_link *l;

	while ((l = link_on_path(b, c->path, true,
				 (1u << FGW_BLUEZ_LINK_STATE_ACQUIRING) |
				     (1u << FGW_BLUEZ_LINK_STATE_READY))))
		bz_link_lost(l, "SMP characteristic removed", false);
}

void bz_links_on_adapter_changed(struct fgw_bluez *b)
{
	struct bz_list *pos;

again:
	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);
		struct bz_adapter *a = bz_adapter_used(b, l->adapter_path);

		/* Only the links of an adapter that went off or away: the others carry on. */
		if (((1u << l->state) & OPENING_OR_OPEN) &&
		    (!a || a->state != FGW_BLUEZ_ADAPTER_STATE_ON)) {
			bz_link_set_error(l, "adapter lost: %s", b->last_error);
			bz_link_fail(l, -ENETDOWN, false);
			goto again;
		}
	}
	bz_kick(b);
}

void bz_links_detach_all(struct fgw_bluez *b)
{
	struct fgw_bluez_link *l;

	while (!bz_list_empty(&b->links)) {
		l = container_of(b->links.next, struct fgw_bluez_link, node);
		if (l->state != FGW_BLUEZ_LINK_STATE_FAILED) {
			bz_link_set_error(l, "bluez context freed");
			bz_link_fail(l, -ECANCELED, true);
			continue; /* the callback may have freed it */
		}
		bz_list_del(&l->node);
		l->b = NULL;
	}
}
