/*
 * The bluez context: bus calls, watches and their dispatch, tracking bluetoothd on the bus
 * (NameOwnerChanged, GetManagedObjects, InterfacesAdded/Removed), life cycle and drain. The
 * object view is in objects.c, the adapters in adapter.c, connections in link.c/link-io.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bluez-private.h"
#include "util.h"

/* After a failed GetManagedObjects (a malformed reply, a timeout): try again this much later. */
#define RELOAD_RETRY_MS 2000

FGW_EXPORT void fgw_bluez_options_init(struct fgw_bluez_options *opts)
{
	*opts = (struct fgw_bluez_options){
	    .power_on = true,
	    .scan = true,
	    .filter_service = true,
	    .rssi_threshold = -90,
	    .max_connections = 8,
	    .connect_timeout_ms = 20000,
	    .call_timeout_ms = 10000,
	    .acquire = true,
	};
}

void bz_set_error(struct fgw_bluez *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b->last_error, sizeof(b->last_error), fmt, ap);
	va_end(ap);
	fgw_debug("bluez: %s", b->last_error);
}

int bz_call(struct fgw_bluez *b, sd_bus_message *m, sd_bus_slot **slot, sd_bus_message_handler_t cb,
	    void *user_data, uint64_t timeout_usec)
{
	if (!timeout_usec)
		timeout_usec = (uint64_t) b->opts.call_timeout_ms * 1000u;
	return sd_bus_call_async(b->bus, slot, m, cb, user_data, timeout_usec);
}

int bz_new_call(struct fgw_bluez *b, const char *path, const char *iface, const char *member,
		sd_bus_message **ret)
{
	return sd_bus_message_new_method_call(b->bus, ret, BLUEZ_SERVICE, path, iface, member);
}

/* ---- watches ---- */

static void device_info(struct fgw_bluez *b, const struct bz_device *d,
			struct fgw_bluez_device_info *info)
{
	struct bz_adapter *a = bz_adapter_used(b, d->adapter);

	memset(info, 0, sizeof(*info));
	if (a)
		snprintf(info->adapter, sizeof(info->adapter), "%s", a->name);
	memcpy(info->addr, d->addr, sizeof(info->addr));
	info->name = d->name;
	/* 127 is HCI's "RSSI not available" (virtual controllers, some real reports): unknown. */
	info->has_rssi = d->has_rssi && d->rssi != FGW_BLUEZ_RSSI_INVALID;
	info->rssi = info->has_rssi ? d->rssi : 0;
	info->paired = d->paired;
	info->smp_service = d->smp_service;
	info->connected = d->connected;
	info->last_seen_ms = d->last_seen_ms;
}

bool bz_device_ours(struct fgw_bluez *b, const struct bz_device *d)
{
	return bz_adapter_used(b, d->adapter) != NULL;
}

/*
 * Our own RSSI threshold. It is not handed to bluetoothd: with an RSSI in the discovery filter
 * the kernel (mgmt is_filter_match) drops every report whose RSSI is invalid (127), so such
 * devices would never be listed. An unknown RSSI passes here.
 */
bool bz_device_too_weak(const struct fgw_bluez *b, const struct bz_device *d)
{
	return b->opts.rssi_threshold && d->has_rssi && d->rssi != FGW_BLUEZ_RSSI_INVALID &&
	       d->rssi < b->opts.rssi_threshold;
}

/* Another adapter in use lists @d's device too (so watches know it already). */
static bool other_copy(struct fgw_bluez *b, const struct bz_device *d)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->devices)
	{
		struct bz_device *o = container_of(pos, struct bz_device, node);
		if (o != d && strcmp(o->addr, d->addr) == 0 && bz_device_ours(b, o))
			return true;
	}
	return false;
}

/* A watch added by a callback is called in the same round (it joins the list's tail). */
static void call_device_watches(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
				const struct fgw_bluez_device_info *info)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->watches)
	{
		struct bz_watch *w = container_of(pos, struct bz_watch, node);
		if (w->device_cb)
			w->device_cb(b, ev, info, w->user_data);
	}
}

/*
 * Watch callbacks must not free @b (documented); they may add watches. Several
 * adapters list the same device: watches hear of it as one, through its best copy. A copy
 * that goes while another remains is an update; a new copy beside a known one too.
 */
void bz_notify_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
		      const struct bz_device *d)
{
	struct fgw_bluez_device_info info;
	struct bz_device *best;

	if (!bz_device_ours(b, d) || b->freeing)
		return;
	best = bz_device_find_addr(b, d->addr);
	if (ev == FGW_BLUEZ_DEVICE_LOST && best)
		ev = FGW_BLUEZ_DEVICE_UPDATED;
	else if (ev == FGW_BLUEZ_DEVICE_FOUND && other_copy(b, d))
		ev = FGW_BLUEZ_DEVICE_UPDATED;
	if (best)
		d = best;
	if (ev != FGW_BLUEZ_DEVICE_LOST && bz_device_too_weak(b, d))
		return;
	device_info(b, d, &info);
	call_device_watches(b, ev, &info);
}

void bz_notify_address_changed(struct fgw_bluez *b, const struct bz_device *d, const char *old_addr)
{
	struct fgw_bluez_device_info info;

	if (!bz_device_ours(b, d) || b->freeing)
		return;
	device_info(b, d, &info);
	memcpy(info.old_addr, old_addr, sizeof(info.old_addr));
	call_device_watches(b, FGW_BLUEZ_DEVICE_ADDRESS_CHANGED, &info);
}

void bz_notify_adapter(struct fgw_bluez *b, int err)
{
	struct bz_list *pos;

	if (b->freeing)
		return;
	bz_list_for_each(pos, &b->watches)
	{
		struct bz_watch *w = container_of(pos, struct bz_watch, node);
		if (w->adapter_cb)
			w->adapter_cb(b, b->adapter_state, err, w->user_data);
	}
}

static unsigned add_watch(struct fgw_bluez *b, fgw_bluez_device_cb_t dcb,
			  fgw_bluez_adapter_cb_t acb, void *user_data)
{
	struct bz_watch *w = calloc(1, sizeof(*w));

	if (!w)
		return 0;
	w->id = ++b->next_watch_id;
	w->device_cb = dcb;
	w->adapter_cb = acb;
	w->user_data = user_data;
	bz_list_add_tail(&b->watches, &w->node);
	return w->id;
}

FGW_EXPORT unsigned fgw_bluez_add_device_watch(struct fgw_bluez *b, fgw_bluez_device_cb_t cb,
					       void *user_data)
{
	return cb ? add_watch(b, cb, NULL, user_data) : 0;
}

FGW_EXPORT unsigned fgw_bluez_add_adapter_watch(struct fgw_bluez *b, fgw_bluez_adapter_cb_t cb,
						void *user_data)
{
	return cb ? add_watch(b, NULL, cb, user_data) : 0;
}

/* ---- signals and the initial load ---- */

bool bz_from_bluez(struct fgw_bluez *b, sd_bus_message *m)
{
	const char *sender = sd_bus_message_get_sender(m);

	/* A signal queued by the previous bluetoothd must not touch the new view. */
	return b->bluez_owner && sender && strcmp(sender, b->bluez_owner) == 0;
}

static void schedule_reload(struct fgw_bluez *b);

static int on_objects_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	const char *sig;
	char text[256];
	int r;

	b->objects_slot = sd_bus_slot_unref(b->objects_slot);
	r = bz_reply_error(m, text, sizeof(text));
	if (r < 0) {
		bz_set_error(b, "GetManagedObjects failed: %s", text);
		goto fail;
	}
	sig = sd_bus_message_get_signature(m, true);
	if (!sig || strcmp(sig, "a{oa{sa{sv}}}") != 0) {
		r = -EBADMSG;
		bz_set_error(b,
			     "GetManagedObjects replied with signature '%s', expected "
			     "'a{oa{sa{sv}}}'",
			     sig ? sig : "");
		goto fail;
	}
	r = bz_objects_parse(b, m);
	if (r < 0)
		goto bad;
	b->objects_loaded = true;
	bz_adapter_choose(b);
	if (!fgw_bluez_adapter_name(b) && b->opts.adapter && b->opts.adapter[0]) {
		bz_set_error(b, "adapter '%s' not found", b->opts.adapter);
		bz_adapter_update_state(b, -ENODEV);
		return 0;
	}
	bz_adapter_update_state(b, 0);
	return 0;
bad:
	bz_set_error(b, "GetManagedObjects reply is malformed (%s)", strerror(r ? -r : EBADMSG));
	r = r == -ENOMEM ? r : -EBADMSG;
	bz_objects_clear(b);
fail:
	bz_adapter_update_state(b, r);
	schedule_reload(b);
	return 0;
}

static void load_objects(struct fgw_bluez *b)
{
	sd_bus_message *m = NULL;
	int r;

	b->objects_slot = sd_bus_slot_unref(b->objects_slot);
	r = bz_new_call(b, "/", DBUS_OM_IFACE, "GetManagedObjects", &m);
	if (r >= 0)
		r = bz_call(b, m, &b->objects_slot, on_objects_reply, b, 0);
	sd_bus_message_unref(m);
	if (r < 0) {
		bz_set_error(b, "cannot send GetManagedObjects: %s", strerror(-r));
		schedule_reload(b);
	}
}

static void on_retry_timer(uv_timer_t *t)
{
	struct fgw_bluez *b = t->data;

	if (b->bluez_owner && !b->freeing)
		load_objects(b);
}

static void schedule_reload(struct fgw_bluez *b)
{
	uv_timer_start(&b->retry_timer, on_retry_timer, RELOAD_RETRY_MS, 0);
}

static void bluez_gone(struct fgw_bluez *b)
{
	free(b->bluez_owner);
	b->bluez_owner = NULL;
	b->objects_loaded = false;
	b->objects_slot = sd_bus_slot_unref(b->objects_slot);
	uv_timer_stop(&b->retry_timer);
	bz_objects_clear(b);
	bz_set_error(b, "bluetoothd left the bus");
	bz_adapter_update_state(b, -ENETDOWN);
}

static void bluez_appeared(struct fgw_bluez *b, const char *owner)
{
	if (bz_set_str(&b->bluez_owner, owner) < 0) {
		bz_set_error(b, "out of memory");
		return;
	}
	/* before anything else of ours: bluetoothd handles our calls in order, so a Pair()
	 * sent later finds the agent registered */
	bz_agent_register(b);
	load_objects(b);
}

static int on_name_owner_changed(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	const char *name, *old_owner, *new_owner;

	if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
	    strcmp(name, BLUEZ_SERVICE) != 0)
		return 0;
	if (b->bluez_owner)
		bluez_gone(b);
	if (*new_owner)
		bluez_appeared(b, new_owner);
	return 0;
}

static int on_get_name_owner(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	const char *owner;

	b->owner_slot = sd_bus_slot_unref(b->owner_slot);
	if (sd_bus_message_is_method_error(m, NULL)) {
		/* NameHasNoOwner: bluetoothd is not running; NameOwnerChanged will tell. */
		bz_set_error(b, "bluetoothd is not on the bus");
		bz_notify_adapter(b, -ENETDOWN);
		return 0;
	}
	if (sd_bus_message_read(m, "s", &owner) < 0)
		return 0;
	if (!b->bluez_owner)
		bluez_appeared(b, owner);
	return 0;
}

static int on_interfaces_added(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	const char *path;
	int r;

	if (!bz_from_bluez(b, m) || !b->objects_loaded)
		return 0;
	if (sd_bus_message_read_basic(m, 'o', &path) <= 0)
		goto bad;
	r = bz_read_interfaces(b, path, m);
	if (r < 0)
		goto bad;
	bz_adapter_choose(b);
	bz_adapter_update_state(b, 0);
	bz_kick(b);
	return 0;
bad:
	bz_set_error(b, "malformed InterfacesAdded signal ignored");
	return 0;
}

static int on_interfaces_removed(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	const char *path;
	char **ifaces = NULL;

	if (!bz_from_bluez(b, m) || !b->objects_loaded)
		return 0;
	if (sd_bus_message_read_basic(m, 'o', &path) <= 0 || bz_read_strv(m, &ifaces) < 0) {
		bz_set_error(b, "malformed InterfacesRemoved signal ignored");
		return 0;
	}
	for (char **i = ifaces; *i; i++)
		bz_iface_removed(b, path, *i);
	bz_strv_free(ifaces);
	return 0;
}

/* ---- life cycle ---- */

static void on_kick(uv_idle_t *h)
{
	struct fgw_bluez *b = h->data;

	uv_idle_stop(h);
	if (!b->freeing) {
		bz_links_pump(b);
		bz_drain_check(b);
	}
}

static void drain_done(struct fgw_bluez *b, int err)
{
	fgw_bluez_drain_cb_t cb = b->drain_cb;

	b->drain_cb = NULL;
	uv_timer_stop(&b->drain_timer);
	if (cb)
		cb(b, err, b->drain_user_data);
}

void bz_drain_check(struct fgw_bluez *b)
{
	if (b->drain_cb && bz_list_empty(&b->releases))
		drain_done(b, 0);
}

static void on_drain_timer(uv_timer_t *t)
{
	struct fgw_bluez *b = t->data;

	bz_set_error(b, "a Disconnect() was still pending after the drain timeout");
	drain_done(b, -ETIMEDOUT);
}

FGW_EXPORT int fgw_bluez_drain(struct fgw_bluez *b, unsigned timeout_ms, fgw_bluez_drain_cb_t cb,
			       void *user_data)
{
	if (!b || !cb || b->freeing)
		return -EINVAL;
	b->drain_cb = cb;
	b->drain_user_data = user_data;
	uv_timer_start(&b->drain_timer, on_drain_timer, timeout_ms, 0);
	/* Checked on the loop, so that @cb never runs before we return. */
	bz_kick(b);
	return 0;
}

void bz_kick(struct fgw_bluez *b)
{
	if (!b->freeing)
		uv_idle_start(&b->kick, on_kick);
}

static void on_bus_failed(struct fgw_busio *io, int err, void *user_data)
{
	struct fgw_bluez *b = user_data;

	/* The system bus itself went away: nothing comes back without a restart of ours. */
	bz_set_error(b, "D-Bus connection lost: %s", strerror(-err));
	if (b->bluez_owner)
		bluez_gone(b);
	else
		bz_notify_adapter(b, -ENETDOWN);
}

static void handle_closed(uv_handle_t *h)
{
	struct fgw_bluez *b = h->data;

	if (--b->n_handles > 0)
		return;
	free(b->opt_bus_address);
	free(b->opt_adapter);
	free(b);
}

/* The signals the view follows, one slot each in b->match_slots. */
static const struct {
	const char *rule;
	sd_bus_message_handler_t cb;
} matches[] = {
    {"type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
     "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.bluez'",
     on_name_owner_changed},
    {"type='signal',sender='org.bluez',interface='" DBUS_OM_IFACE "',member='InterfacesAdded'",
     on_interfaces_added},
    {"type='signal',sender='org.bluez',interface='" DBUS_OM_IFACE "',member='InterfacesRemoved'",
     on_interfaces_removed},
    {"type='signal',sender='org.bluez',interface='" DBUS_PROPS_IFACE
     "',member='PropertiesChanged',path_namespace='/org/bluez'",
     bz_on_properties_changed},
};

static int add_matches(struct fgw_bluez *b)
{
	int r = 0;

	_Static_assert(ARRAY_SIZE(matches) == ARRAY_SIZE(b->match_slots), "one slot a match");
	/* Asynchronous AddMatch: the bus daemon handles it before any later call of ours. */
	for (size_t i = 0; i < ARRAY_SIZE(matches) && r >= 0; i++)
		r = sd_bus_add_match_async(b->bus, &b->match_slots[i], matches[i].rule,
					   matches[i].cb, NULL, b);
	return r;
}

FGW_EXPORT int fgw_bluez_new(uv_loop_t *loop, const struct fgw_bluez_options *opts,
			     struct fgw_bluez **ret)
{
	struct fgw_bluez *b;
	sd_bus_message *m = NULL;
	int r;

	if (!loop || !opts || !ret || opts->max_connections < 1 || opts->connect_timeout_ms < 1 ||
	    opts->rssi_threshold < -127 || opts->rssi_threshold > 20)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->loop = loop;
	b->opts = *opts;
	if (!b->opts.call_timeout_ms)
		b->opts.call_timeout_ms = 10000;
	bz_list_init(&b->adapters);
	bz_list_init(&b->devices);
	bz_list_init(&b->services);
	bz_list_init(&b->chars);
	bz_list_init(&b->watches);
	bz_list_init(&b->links);
	bz_list_init(&b->releases);
	b->adapter_state = FGW_BLUEZ_ADAPTER_STATE_ABSENT;
	if (opts->bus_address && !(b->opt_bus_address = strdup(opts->bus_address))) {
		r = -ENOMEM;
		goto fail;
	}
	if (opts->adapter) {
		size_t size = strlen(opts->adapter) + 1;

		b->opt_adapter = malloc(size);
		r = b->opt_adapter ? fgw_bluez_adapters_parse(opts->adapter, b->opt_adapter, size)
				   : -ENOMEM;
		if (r < 0)
			goto fail;
	}
	b->opts.bus_address = b->opt_bus_address;
	b->opts.adapter = b->opt_adapter;

	r = fgw_bus_open(b->opts.bus_address, "fotagw-bluez", &b->bus);
	if (r < 0)
		goto fail;
	r = add_matches(b);
	if (r >= 0)
		r = sd_bus_message_new_method_call(b->bus, &m, "org.freedesktop.DBus",
						   "/org/freedesktop/DBus", "org.freedesktop.DBus",
						   "GetNameOwner");
	if (r >= 0)
		r = sd_bus_message_append(m, "s", BLUEZ_SERVICE);
	if (r >= 0)
		r = bz_call(b, m, &b->owner_slot, on_get_name_owner, b, 0);
	sd_bus_message_unref(m);
	if (r < 0)
		goto fail;
	r = fgw_busio_new(loop, b->bus, on_bus_failed, b, &b->io);
	if (r < 0)
		goto fail;
	uv_timer_init(loop, &b->retry_timer);
	uv_idle_init(loop, &b->kick);
	uv_timer_init(loop, &b->drain_timer);
	b->retry_timer.data = b->kick.data = b->drain_timer.data = b;
	b->n_handles = 3;
	*ret = b;
	return 0;
fail:
	for (size_t i = 0; i < ARRAY_SIZE(b->match_slots); i++)
		sd_bus_slot_unref(b->match_slots[i]);
	sd_bus_slot_unref(b->owner_slot);
	sd_bus_flush_close_unref(b->bus);
	free(b->opt_bus_address);
	free(b->opt_adapter);
	free(b);
	return r;
}

FGW_EXPORT struct fgw_bluez *fgw_bluez_free(struct fgw_bluez *b)
{
	struct bz_list *pos, *tmp;

	if (!b || b->freeing)
		return NULL;
	bz_links_detach_all(b);
	b->freeing = true;
	bz_agent_free(b);
	b->drain_cb = NULL;
	bz_list_for_each_safe(pos, tmp, &b->releases)
	{
		struct bz_release *rel = container_of(pos, struct bz_release, node);
		bz_list_del(&rel->node);
		sd_bus_slot_unref(rel->slot);
		free(rel->dev_path);
		free(rel->adapter_path);
		free(rel);
	}
	for (size_t i = 0; i < ARRAY_SIZE(b->match_slots); i++)
		b->match_slots[i] = sd_bus_slot_unref(b->match_slots[i]);
	b->owner_slot = sd_bus_slot_unref(b->owner_slot);
	b->objects_slot = sd_bus_slot_unref(b->objects_slot);
	/* Our discovery sessions end when we leave the bus; no StopDiscovery needed. */
	bz_objects_clear(b);
	bz_list_for_each_safe(pos, tmp, &b->watches)
	{
		struct bz_watch *w = container_of(pos, struct bz_watch, node);
		bz_list_del(&w->node);
		free(w);
	}
	free(b->bluez_owner);
	b->bluez_owner = NULL;
	b->io = fgw_busio_free(b->io);
	b->bus = sd_bus_unref(b->bus);
	uv_close((uv_handle_t *) &b->retry_timer, handle_closed);
	uv_close((uv_handle_t *) &b->kick, handle_closed);
	uv_close((uv_handle_t *) &b->drain_timer, handle_closed);
	return NULL;
}

FGW_EXPORT const char *fgw_bluez_last_error(struct fgw_bluez *b)
{
	return b->last_error;
}

FGW_EXPORT int fgw_bluez_device_get(struct fgw_bluez *b, const char *addr,
				    struct fgw_bluez_device_info *ret)
{
	struct bz_device *d;
	char a[18];

	if (bz_addr_normalize(addr, a) < 0)
		return -EINVAL;
	d = bz_device_find_addr(b, a);
	if (!d)
		return -ENOENT;
	device_info(b, d, ret);
	return 0;
}

FGW_EXPORT void fgw_bluez_foreach_device(struct fgw_bluez *b, fgw_bluez_device_cb_t cb,
					 void *user_data)
{
	struct fgw_bluez_device_info info;
	struct bz_list *pos;

	bz_list_for_each(pos, &b->devices)
	{
		struct bz_device *d = container_of(pos, struct bz_device, node);
		/* each device once, as its best copy */
		if (!bz_device_ours(b, d) || bz_device_find_addr(b, d->addr) != d ||
		    bz_device_too_weak(b, d))
			continue;
		device_info(b, d, &info);
		cb(b, FGW_BLUEZ_DEVICE_FOUND, &info, user_data);
	}
}
