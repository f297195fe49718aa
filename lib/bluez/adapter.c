/*
 * The adapters we use: which adapter is chosen, its state (absent, off, on) and what we ask of
 * it: power, the discovery filter and a discovery session.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bluez-private.h"
#include "util.h"

static const char *const adapter_state_names[_FGW_BLUEZ_ADAPTER_STATE_MAX] = {
    [FGW_BLUEZ_ADAPTER_STATE_ABSENT] = "absent",
    [FGW_BLUEZ_ADAPTER_STATE_OFF] = "off",
    [FGW_BLUEZ_ADAPTER_STATE_ON] = "on",
};

FGW_EXPORT const char *fgw_bluez_adapter_state_to_string(enum fgw_bluez_adapter_state s)
{
	if ((int) s < 0 || s >= _FGW_BLUEZ_ADAPTER_STATE_MAX)
		return NULL;
	return adapter_state_names[s];
}

/* The adapter we use: the configured name, else the first one listed (lowest path). */
void bz_adapter_choose(struct fgw_bluez *b)
{
	struct bz_adapter *best = NULL;
	struct bz_list *pos;

	if (b->adapter)
		return;
	bz_list_for_each(pos, &b->adapters)
	{
		struct bz_adapter *a = container_of(pos, struct bz_adapter, node);
		if (b->opts.adapter && b->opts.adapter[0]) {
			if (strcmp(a->name, b->opts.adapter) == 0)
				best = a;
		} else if (!best || strcmp(a->path, best->path) < 0) {
			best = a;
		}
	}
	if (!best)
		return;
	b->adapter = best;
	b->power_requested = false;
	b->filter_set = false;
	b->discovery_on = false;
	/* Devices bluetoothd listed before we chose: they are ours now. */
	bz_list_for_each(pos, &b->devices)
	{
		struct bz_device *d = container_of(pos, struct bz_device, node);
		bz_notify_device(b, FGW_BLUEZ_DEVICE_FOUND, d);
	}
}

/* ---- adapter state, power, discovery ---- */

static int on_power_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	char text[256];
	int r;

	b->power_slot = sd_bus_slot_unref(b->power_slot);
	r = bz_reply_error(m, text, sizeof(text));
	if (r < 0) {
		bz_set_error(b, "powering on adapter failed: %s", text);
		bz_notify_adapter(b, r);
	}
	return 0;
}

static void adapter_power_on(struct fgw_bluez *b)
{
	sd_bus_message *m = NULL;
	int r;

	if (!b->opts.power_on || b->power_requested || b->power_slot)
		return;
	b->power_requested = true;
	r = bz_new_call(b, b->adapter->path, DBUS_PROPS_IFACE, "Set", &m);
	if (r >= 0)
		r = sd_bus_message_append(m, "ssv", BLUEZ_ADAPTER_IFACE, "Powered", "b", 1);
	if (r >= 0)
		r = bz_call(b, m, &b->power_slot, on_power_reply, b, 0);
	sd_bus_message_unref(m);
	if (r < 0)
		bz_set_error(b, "cannot send Powered=true: %s", strerror(-r));
}

void bz_adapter_update_state(struct fgw_bluez *b, int err)
{
	enum fgw_bluez_adapter_state s;

	if (!b->adapter)
		s = FGW_BLUEZ_ADAPTER_STATE_ABSENT;
	else if (!b->adapter->powered)
		s = FGW_BLUEZ_ADAPTER_STATE_OFF;
	else
		s = FGW_BLUEZ_ADAPTER_STATE_ON;
	if (s == FGW_BLUEZ_ADAPTER_STATE_OFF)
		adapter_power_on(b);
	if (s != FGW_BLUEZ_ADAPTER_STATE_ON) {
		/* bluetoothd drops filters and sessions with the power; ask again later. */
		b->filter_set = false;
		b->discovery_on = false;
		b->filter_slot = sd_bus_slot_unref(b->filter_slot);
		b->discovery_slot = sd_bus_slot_unref(b->discovery_slot);
	}
	if (s == b->adapter_state && err == 0)
		return;
	if (s != b->adapter_state)
		fgw_debug("bluez: adapter %s: %s -> %s", b->adapter ? b->adapter->name : "-",
			  fgw_bluez_adapter_state_to_string(b->adapter_state),
			  fgw_bluez_adapter_state_to_string(s));
	b->adapter_state = s;
	bz_links_on_adapter_changed(b);
	bz_notify_adapter(b, err);
	bz_discovery_update(b);
	bz_kick(b);
}

static int on_discovery_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	const char *member = sd_bus_message_get_member(m);
	char text[256];
	int r;

	(void) member;
	b->discovery_slot = sd_bus_slot_unref(b->discovery_slot);
	r = bz_reply_error(m, text, sizeof(text));
	if (r < 0 && r != -EINPROGRESS && r != -EALREADY) {
		bz_set_error(b, "discovery request failed: %s", text);
		/* NotReady (power just went) comes back through the adapter state. */
		if (r != -ENETDOWN)
			bz_notify_adapter(b, r);
		return 0;
	}
	/* The reply tells nothing of which call it was; the flag we set before sending does. */
	bz_discovery_update(b);
	return 0;
}

static int on_filter_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	char text[256];
	int r;

	b->filter_slot = sd_bus_slot_unref(b->filter_slot);
	r = bz_reply_error(m, text, sizeof(text));
	if (r < 0) {
		/* Discovery still works unfiltered; we check the UUID ourselves. */
		bz_set_error(b, "SetDiscoveryFilter failed: %s, scanning unfiltered", text);
		bz_notify_adapter(b, r);
	}
	b->filter_set = true;
	bz_discovery_update(b);
	return 0;
}

static int send_filter(struct fgw_bluez *b)
{
	sd_bus_message *m = NULL;
	int r;

	r = bz_new_call(b, b->adapter->path, BLUEZ_ADAPTER_IFACE, "SetDiscoveryFilter", &m);
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "{sv}");
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "Transport", "s", "le");
	if (r >= 0 && b->opts.filter_service)
		r = sd_bus_message_append(m, "{sv}", "UUIDs", "as", 1, FGW_BLUEZ_SMP_SERVICE_UUID);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = bz_call(b, m, &b->filter_slot, on_filter_reply, b, 0);
	sd_bus_message_unref(m);
	return r;
}

void bz_discovery_update(struct fgw_bluez *b)
{
	sd_bus_message *m = NULL;
	bool want;
	int r;

	if (b->freeing || b->adapter_state != FGW_BLUEZ_ADAPTER_STATE_ON)
		return;
	if (b->filter_slot || b->discovery_slot)
		return; /* one request at a time; the reply calls us again */
	want = b->want_scan || bz_links_searching(b) > 0;
	if (want && !b->filter_set) {
		r = send_filter(b);
		if (r < 0)
			bz_set_error(b, "cannot send SetDiscoveryFilter: %s", strerror(-r));
		return;
	}
	if (want == b->discovery_on)
		return;
	r = bz_new_call(b, b->adapter->path, BLUEZ_ADAPTER_IFACE,
			want ? "StartDiscovery" : "StopDiscovery", &m);
	if (r >= 0)
		r = bz_call(b, m, &b->discovery_slot, on_discovery_reply, b, 0);
	sd_bus_message_unref(m);
	if (r < 0) {
		bz_set_error(b, "cannot send %s: %s", want ? "StartDiscovery" : "StopDiscovery",
			     strerror(-r));
		return;
	}
	b->discovery_on = want;
}

FGW_EXPORT void fgw_bluez_set_scan(struct fgw_bluez *b, bool on)
{
	b->want_scan = on;
	bz_discovery_update(b);
}

FGW_EXPORT enum fgw_bluez_adapter_state fgw_bluez_adapter_state(struct fgw_bluez *b)
{
	return b->adapter_state;
}

FGW_EXPORT const char *fgw_bluez_adapter_name(struct fgw_bluez *b)
{
	return b->adapter ? b->adapter->name : NULL;
}

/* PropertiesChanged on an adapter: power and discovery, as bluetoothd now has them. */
void bz_adapter_props_changed(struct fgw_bluez *b, struct bz_adapter *a)
{
	if (a != b->adapter)
		return;
	if (!a->discovering)
		b->discovery_on = false; /* bluetoothd stopped it (power cycle, error) */
	if (!a->powered) {
		b->power_requested = false;
		bz_set_error(b, "adapter '%s' powered off", a->name);
		bz_adapter_update_state(b, -ENETDOWN);
		return;
	}
	bz_adapter_update_state(b, 0);
	bz_discovery_update(b);
}
