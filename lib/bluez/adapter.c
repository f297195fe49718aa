/*
 * The adapters we use: which ones the options choose ("hci0", "hci0,hci1", "all", or the
 * first listed), each one's state (absent, off, on) and what we ask of it (power, the
 * discovery filter, a discovery session), and the state of them all together.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* @name is in the comma separated @list (no spaces: the config parser trims them). */
static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t) (end - p) : strlen(p);

		if (len == n && strncmp(p, name, n) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

FGW_EXPORT int fgw_bluez_adapters_parse(const char *text, char *ret, size_t size)
{
	size_t n = 0, words = 0;
	const char *p = text;

	if (!text || !ret || size == 0)
		return -EINVAL;
	ret[0] = '\0';
	while (*p) {
		char name[32];
		size_t len = 0;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		       (*p >= '0' && *p <= '9')) {
			if (len + 1 >= sizeof(name))
				return -EINVAL;
			name[len++] = *p++;
		}
		if (len == 0 || (*p && *p != ' ' && *p != '\t' && *p != ','))
			return -EINVAL;
		name[len] = '\0';
		/* "all" stands alone */
		if ((strcmp(name, "all") == 0 && words > 0) ||
		    (words > 0 && strcmp(ret, "all") == 0))
			return -EINVAL;
		if (words > 0 && in_list(ret, name))
			return -EINVAL;
		if (n + (words > 0) + len + 1 > size)
			return -ENOBUFS;
		if (words > 0)
			ret[n++] = ',';
		memcpy(ret + n, name, len + 1);
		n += len;
		words++;
	}
	return 0;
}

static bool adapter_named(const struct fgw_bluez *b, const struct bz_adapter *a)
{
	const char *want = b->opts.adapter;

	return strcmp(want, "all") == 0 || in_list(want, a->name);
}

static void adapter_use(struct fgw_bluez *b, struct bz_adapter *a)
{
	struct bz_list *pos;

	a->used = true;
	a->state = FGW_BLUEZ_ADAPTER_STATE_ABSENT;
	fgw_debug("bluez: using adapter %s", a->name);
	/* Devices bluetoothd listed before we chose: they are ours now. */
	bz_list_for_each(pos, &b->devices)
	{
		struct bz_device *d = container_of(pos, struct bz_device, node);
		if (d->adapter && strcmp(d->adapter, a->path) == 0)
			bz_notify_device(b, FGW_BLUEZ_DEVICE_FOUND, d);
	}
}

void bz_adapter_choose(struct fgw_bluez *b)
{
	struct bz_adapter *first = NULL;
	struct bz_list *pos;

	bz_list_for_each(pos, &b->adapters)
	{
		struct bz_adapter *a = container_of(pos, struct bz_adapter, node);

		if (b->opts.adapter && b->opts.adapter[0]) {
			if (!a->used && adapter_named(b, a))
				adapter_use(b, a);
			continue;
		}
		if (a->used)
			return; /* the first one is chosen already */
		if (!first || strcmp(a->path, first->path) < 0)
			first = a;
	}
	if (first)
		adapter_use(b, first);
}

struct bz_adapter *bz_adapter_used(struct fgw_bluez *b, const char *path)
{
	struct bz_adapter *a = path ? bz_adapter_find(b, path) : NULL;

	return a && a->used ? a : NULL;
}

void bz_adapter_forget(struct bz_adapter *a)
{
	a->power_slot = sd_bus_slot_unref(a->power_slot);
	a->filter_slot = sd_bus_slot_unref(a->filter_slot);
	a->discovery_slot = sd_bus_slot_unref(a->discovery_slot);
}

/* ---- power ---- */

static int on_power_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct bz_adapter *a = user_data;
	char text[BZ_REPLY_TEXT];
	int r;

	a->power_slot = sd_bus_slot_unref(a->power_slot);
	r = bz_reply_error(m, text, sizeof(text));
	if (r < 0) {
		bz_set_error(a->b, "powering on adapter '%s' failed: %s", a->name, text);
		bz_notify_adapter(a->b, r);
	}
	return 0;
}

static void adapter_power_on(struct fgw_bluez *b, struct bz_adapter *a)
{
	sd_bus_message *m = NULL;
	int r;

	if (!b->opts.power_on || a->power_requested || a->power_slot)
		return;
	a->power_requested = true;
	r = bz_new_call(b, a->path, DBUS_PROPS_IFACE, "Set", &m);
	if (r >= 0)
		r = sd_bus_message_append(m, "ssv", BLUEZ_ADAPTER_IFACE, "Powered", "b", 1);
	if (r >= 0)
		r = bz_call(b, m, &a->power_slot, on_power_reply, a, 0);
	sd_bus_message_unref(m);
	if (r < 0)
		bz_set_error(b, "cannot send Powered=true to '%s': %s", a->name, strerror(-r));
}

/* ---- state ---- */

/* One adapter's state from its properties; true when it changed. */
static bool adapter_refresh(struct fgw_bluez *b, struct bz_adapter *a)
{
	enum fgw_bluez_adapter_state s =
	    a->powered ? FGW_BLUEZ_ADAPTER_STATE_ON : FGW_BLUEZ_ADAPTER_STATE_OFF;

	if (s == FGW_BLUEZ_ADAPTER_STATE_OFF)
		adapter_power_on(b, a);
	if (s != FGW_BLUEZ_ADAPTER_STATE_ON) {
		/* bluetoothd drops filters and sessions with the power; ask again later. */
		a->filter_set = false;
		a->discovery_on = false;
		a->filter_slot = sd_bus_slot_unref(a->filter_slot);
		a->discovery_slot = sd_bus_slot_unref(a->discovery_slot);
	}
	if (s == a->state)
		return false;
	fgw_debug("bluez: adapter %s: %s -> %s", a->name,
		  fgw_bluez_adapter_state_to_string(a->state),
		  fgw_bluez_adapter_state_to_string(s));
	a->state = s;
	return true;
}

void bz_adapter_update_state(struct fgw_bluez *b, int err)
{
	enum fgw_bluez_adapter_state all = FGW_BLUEZ_ADAPTER_STATE_ABSENT;
	bool changed = false;
	struct bz_list *pos;

	bz_list_for_each(pos, &b->adapters)
	{
		struct bz_adapter *a = container_of(pos, struct bz_adapter, node);

		if (!a->used)
			continue;
		changed |= adapter_refresh(b, a);
		if (a->state > all)
			all = a->state;
	}
	if (all == b->adapter_state && err == 0 && !changed)
		return;
	if (all != b->adapter_state)
		fgw_debug("bluez: adapters: %s -> %s",
			  fgw_bluez_adapter_state_to_string(b->adapter_state),
			  fgw_bluez_adapter_state_to_string(all));
	b->adapter_state = all;
	/* Also when only one of several changed: its links fail, waiting ones move. */
	bz_links_on_adapter_changed(b);
	bz_notify_adapter(b, err);
	bz_discovery_update(b);
	bz_kick(b);
}

/* ---- discovery ---- */

static void adapter_discovery_update(struct fgw_bluez *b, struct bz_adapter *a, bool want);

static int on_discovery_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct bz_adapter *a = user_data;
	struct fgw_bluez *b = a->b;
	char text[BZ_REPLY_TEXT];
	int r;

	a->discovery_slot = sd_bus_slot_unref(a->discovery_slot);
	r = bz_reply_error(m, text, sizeof(text));
	if (r < 0 && r != -EINPROGRESS && r != -EALREADY) {
		bz_set_error(b, "discovery request on '%s' failed: %s", a->name, text);
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
	struct bz_adapter *a = user_data;
	char text[BZ_REPLY_TEXT];
	int r;

	a->filter_slot = sd_bus_slot_unref(a->filter_slot);
	r = bz_reply_error(m, text, sizeof(text));
	if (r < 0) {
		/* Discovery still works unfiltered; we check the UUID ourselves. */
		bz_set_error(a->b, "SetDiscoveryFilter on '%s' failed: %s, scanning unfiltered",
			     a->name, text);
		bz_notify_adapter(a->b, r);
	}
	a->filter_set = true;
	bz_discovery_update(a->b);
	return 0;
}

static int send_filter(struct fgw_bluez *b, struct bz_adapter *a)
{
	sd_bus_message *m = NULL;
	int r;

	r = bz_new_call(b, a->path, BLUEZ_ADAPTER_IFACE, "SetDiscoveryFilter", &m);
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "{sv}");
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "Transport", "s", "le");
	if (r >= 0 && b->opts.filter_service)
		r = sd_bus_message_append(m, "{sv}", "UUIDs", "as", 1, FGW_BLUEZ_SMP_SERVICE_UUID);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = bz_call(b, m, &a->filter_slot, on_filter_reply, a, 0);
	sd_bus_message_unref(m);
	return r;
}

static void adapter_discovery_update(struct fgw_bluez *b, struct bz_adapter *a, bool want)
{
	sd_bus_message *m = NULL;
	int r;

	if (a->state != FGW_BLUEZ_ADAPTER_STATE_ON)
		return;
	if (a->filter_slot || a->discovery_slot)
		return; /* one request at a time; the reply calls us again */
	if (want && !a->filter_set) {
		r = send_filter(b, a);
		if (r < 0)
			bz_set_error(b, "cannot send SetDiscoveryFilter: %s", strerror(-r));
		return;
	}
	if (want == a->discovery_on)
		return;
	r = bz_new_call(b, a->path, BLUEZ_ADAPTER_IFACE, want ? "StartDiscovery" : "StopDiscovery",
			&m);
	if (r >= 0)
		r = bz_call(b, m, &a->discovery_slot, on_discovery_reply, a, 0);
	sd_bus_message_unref(m);
	if (r < 0) {
		bz_set_error(b, "cannot send %s: %s", want ? "StartDiscovery" : "StopDiscovery",
			     strerror(-r));
		return;
	}
	a->discovery_on = want;
}

void bz_discovery_update(struct fgw_bluez *b)
{
	struct bz_list *pos;
	bool want;

	if (b->freeing || b->adapter_state != FGW_BLUEZ_ADAPTER_STATE_ON)
		return;
	/* Every adapter scans: a device may be heard better by another one. */
	want = b->opts.scan || bz_links_searching(b) > 0;
	bz_list_for_each(pos, &b->adapters)
	{
		struct bz_adapter *a = container_of(pos, struct bz_adapter, node);
		if (a->used)
			adapter_discovery_update(b, a, want);
	}
}

/* PropertiesChanged on an adapter: power and discovery, as bluetoothd now has them. */
void bz_adapter_props_changed(struct fgw_bluez *b, struct bz_adapter *a)
{
	if (!a->used)
		return;
	if (!a->discovering)
		a->discovery_on = false; /* bluetoothd stopped it (power cycle, error) */
	if (!a->powered) {
		a->power_requested = false;
		bz_set_error(b, "adapter '%s' powered off", a->name);
		bz_adapter_update_state(b, -ENETDOWN);
		return;
	}
	bz_adapter_update_state(b, 0);
	bz_discovery_update(b);
}

/* ---- public ---- */

FGW_EXPORT enum fgw_bluez_adapter_state fgw_bluez_adapter_state(struct fgw_bluez *b)
{
	return b->adapter_state;
}

FGW_EXPORT const char *fgw_bluez_adapter_name(struct fgw_bluez *b)
{
	struct bz_adapter *first = NULL;
	struct bz_list *pos;

	bz_list_for_each(pos, &b->adapters)
	{
		struct bz_adapter *a = container_of(pos, struct bz_adapter, node);
		if (a->used && (!first || a->state > first->state))
			first = a;
	}
	return first ? first->name : NULL;
}

FGW_EXPORT size_t fgw_bluez_adapters(struct fgw_bluez *b, struct fgw_bluez_adapter_info *ret,
				     size_t max)
{
	struct bz_list *pos;
	size_t n = 0;

	bz_list_for_each(pos, &b->adapters)
	{
		struct bz_adapter *a = container_of(pos, struct bz_adapter, node);
		struct fgw_bluez_adapter_info *i;

		if (!a->used)
			continue;
		if (n < max) {
			i = &ret[n];
			memset(i, 0, sizeof(*i));
			snprintf(i->name, sizeof(i->name), "%s", a->name);
			i->state = a->state;
			i->busy = a->n_busy;
			bz_links_adapter_usage(b, a->path, &i->links, &i->ready, &i->connecting);
		}
		n++;
	}
	return n;
}
