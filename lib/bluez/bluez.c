/*
 * The live view of bluetoothd's objects: adapters, devices, GATT services and characteristics,
 * kept from GetManagedObjects and the ObjectManager/Properties signals; the chosen adapter's
 * state (power, discovery filter, discovery); watches. Connections are in link.c.
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

static int new_call(struct fgw_bluez *b, const char *path, const char *iface, const char *member,
		    sd_bus_message **ret)
{
	return sd_bus_message_new_method_call(b->bus, ret, BLUEZ_SERVICE, path, iface, member);
}

/* ---- watches ---- */

static void watches_reap(struct fgw_bluez *b)
{
	struct bz_list *pos, *tmp;

	if (b->dispatching)
		return;
	bz_list_for_each_safe(pos, tmp, &b->watches)
	{
		struct bz_watch *w = container_of(pos, struct bz_watch, node);
		if (w->removed) {
			bz_list_del(&w->node);
			free(w);
		}
	}
}

static void device_info(const struct bz_device *d, struct fgw_bluez_device_info *info)
{
	memset(info, 0, sizeof(*info));
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

static bool device_ours(struct fgw_bluez *b, const struct bz_device *d)
{
	return b->adapter && d->adapter && strcmp(d->adapter, b->adapter->path) == 0;
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

/* Watch callbacks must not free @b (documented); they may add or remove watches. */
static void notify_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
			  const struct bz_device *d)
{
	struct fgw_bluez_device_info info;
	struct bz_list *pos;

	if (!device_ours(b, d) || b->freeing)
		return;
	if (ev != FGW_BLUEZ_DEVICE_LOST && bz_device_too_weak(b, d))
		return;
	device_info(d, &info);
	b->dispatching++;
	bz_list_for_each(pos, &b->watches)
	{
		struct bz_watch *w = container_of(pos, struct bz_watch, node);
		if (!w->removed && w->device_cb)
			w->device_cb(b, ev, &info, w->user_data);
	}
	b->dispatching--;
	watches_reap(b);
}

static void notify_adapter(struct fgw_bluez *b, int err)
{
	struct bz_list *pos;

	if (b->freeing)
		return;
	b->dispatching++;
	bz_list_for_each(pos, &b->watches)
	{
		struct bz_watch *w = container_of(pos, struct bz_watch, node);
		if (!w->removed && w->adapter_cb)
			w->adapter_cb(b, b->adapter_state, err, w->user_data);
	}
	b->dispatching--;
	watches_reap(b);
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

static void remove_watch(struct fgw_bluez *b, unsigned id)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->watches)
	{
		struct bz_watch *w = container_of(pos, struct bz_watch, node);
		if (w->id == id)
			w->removed = true;
	}
	watches_reap(b);
}

FGW_EXPORT unsigned fgw_bluez_add_device_watch(struct fgw_bluez *b, fgw_bluez_device_cb_t cb,
					       void *user_data)
{
	return cb ? add_watch(b, cb, NULL, user_data) : 0;
}

FGW_EXPORT void fgw_bluez_remove_device_watch(struct fgw_bluez *b, unsigned id)
{
	remove_watch(b, id);
}

FGW_EXPORT unsigned fgw_bluez_add_adapter_watch(struct fgw_bluez *b, fgw_bluez_adapter_cb_t cb,
						void *user_data)
{
	return cb ? add_watch(b, NULL, cb, user_data) : 0;
}

FGW_EXPORT void fgw_bluez_remove_adapter_watch(struct fgw_bluez *b, unsigned id)
{
	remove_watch(b, id);
}

/* ---- objects ---- */

static void adapter_free(struct bz_adapter *a)
{
	free(a->path);
	free(a);
}

static void device_free(struct bz_device *d)
{
	free(d->path);
	free(d->adapter);
	free(d->name);
	free(d);
}

static void service_free(struct bz_gatt_service *s)
{
	free(s->path);
	free(s->uuid);
	free(s->device);
	free(s);
}

static void char_free(struct bz_gatt_char *c)
{
	free(c->path);
	free(c->uuid);
	free(c->service);
	free(c);
}

#define FIND_BY_PATH(type, list)                                                                   \
	static struct type *type##_find(struct fgw_bluez *b, const char *path)                     \
	{                                                                                          \
		struct bz_list *pos;                                                               \
		bz_list_for_each(pos, &b->list)                                                    \
		{                                                                                  \
			struct type *o = container_of(pos, struct type, node);                     \
			if (strcmp(o->path, path) == 0)                                            \
				return o;                                                          \
		}                                                                                  \
		return NULL;                                                                       \
	}
FIND_BY_PATH(bz_adapter, adapters)
FIND_BY_PATH(bz_device, devices)
FIND_BY_PATH(bz_gatt_service, services)
FIND_BY_PATH(bz_gatt_char, chars)

struct bz_device *bz_device_find_addr(struct fgw_bluez *b, const char *addr)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->devices)
	{
		struct bz_device *d = container_of(pos, struct bz_device, node);
		if (device_ours(b, d) && strcmp(d->addr, addr) == 0)
			return d;
	}
	return NULL;
}

struct bz_gatt_char *bz_find_smp_char(struct fgw_bluez *b, struct bz_device *d)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->chars)
	{
		struct bz_gatt_char *c = container_of(pos, struct bz_gatt_char, node);
		struct bz_gatt_service *s;

		if (!c->uuid || strcasecmp(c->uuid, FGW_BLUEZ_SMP_CHAR_UUID) != 0)
			continue;
		if (!bz_path_has_prefix(c->path, d->path))
			continue;
		/* The Service property is authoritative; the path is the fallback. */
		s = c->service ? bz_gatt_service_find(b, c->service) : NULL;
		if (s && s->uuid && strcasecmp(s->uuid, FGW_BLUEZ_SMP_SERVICE_UUID) != 0)
			continue;
		if (s && s->device && strcmp(s->device, d->path) != 0)
			continue;
		return c;
	}
	return NULL;
}

static int set_str(char **dst, const char *s)
{
	char *n = strdup(s);

	if (!n)
		return -ENOMEM;
	free(*dst);
	*dst = n;
	return 0;
}

enum {
	P_ADDRESS,
	P_NAME,
	P_RSSI,
	P_UUIDS,
	P_CONNECTED,
	P_RESOLVED,
	P_ADAPTER,
	P_PAIRED,
	P_POWERED,
	P_DISCOVERING,
	P_UUID,
	P_DEVICE,
	P_SERVICE,
	P_FLAGS,
	P_WRITE_ACQ,
	P_NOTIFY_ACQ,
	P_MTU,
	P_VALUE,
};

static const struct bz_prop_def adapter_props[] = {
    {"Powered", BZ_PROP_BOOL, P_POWERED},
    {"Discovering", BZ_PROP_BOOL, P_DISCOVERING},
};

static const struct bz_prop_def device_props[] = {
    {"Address", BZ_PROP_STRING, P_ADDRESS},   {"Name", BZ_PROP_STRING, P_NAME},
    {"RSSI", BZ_PROP_INT16, P_RSSI},	      {"UUIDs", BZ_PROP_STRV, P_UUIDS},
    {"Connected", BZ_PROP_BOOL, P_CONNECTED}, {"ServicesResolved", BZ_PROP_BOOL, P_RESOLVED},
    {"Adapter", BZ_PROP_PATH, P_ADAPTER},     {"Paired", BZ_PROP_BOOL, P_PAIRED},
};

static const struct bz_prop_def service_props[] = {
    {"UUID", BZ_PROP_STRING, P_UUID},
    {"Device", BZ_PROP_PATH, P_DEVICE},
};

static const struct bz_prop_def char_props[] = {
    {"UUID", BZ_PROP_STRING, P_UUID},
    {"Service", BZ_PROP_PATH, P_SERVICE},
    {"Flags", BZ_PROP_STRV, P_FLAGS},
    {"WriteAcquired", BZ_PROP_BOOL, P_WRITE_ACQ},
    {"NotifyAcquired", BZ_PROP_BOOL, P_NOTIFY_ACQ},
    {"MTU", BZ_PROP_UINT16, P_MTU},
    {"Value", BZ_PROP_BYTES, P_VALUE},
};

static void adapter_prop(void *obj, int id, const struct bz_prop_value *v)
{
	struct bz_adapter *a = obj;

	if (id == P_POWERED)
		a->powered = v->b;
	else if (id == P_DISCOVERING)
		a->discovering = v->b;
}

/* Property callback context for devices: the device plus what changed, for the events. */
struct device_update {
	struct bz_device *d;
	bool changed;
	bool address_seen;
	bool connected_false;
	int err;
};

static void device_prop(void *obj, int id, const struct bz_prop_value *v)
{
	struct device_update *u = obj;
	struct bz_device *d = u->d;
	char addr[18];

	switch (id) {
	case P_ADDRESS:
		if (bz_addr_normalize(v->s, addr) == 0) {
			memcpy(d->addr, addr, sizeof(addr));
			u->address_seen = true;
		}
		break;
	case P_NAME:
		if (set_str(&d->name, v->s) < 0)
			u->err = -ENOMEM;
		break;
	case P_RSSI:
		d->rssi = v->n;
		d->has_rssi = true;
		break;
	case P_UUIDS:
		d->smp_service = bz_strv_contains_case(v->strv, FGW_BLUEZ_SMP_SERVICE_UUID);
		break;
	case P_CONNECTED:
		d->connected = v->b;
		u->connected_false = !v->b;
		break;
	case P_RESOLVED:
		d->services_resolved = v->b;
		break;
	case P_PAIRED:
		d->paired = v->b;
		break;
	case P_ADAPTER:
		if (set_str(&d->adapter, v->s) < 0)
			u->err = -ENOMEM;
		break;
	}
	u->changed = true;
}

static void service_prop(void *obj, int id, const struct bz_prop_value *v)
{
	struct bz_gatt_service *s = obj;

	if (id == P_UUID)
		(void) set_str(&s->uuid, v->s);
	else if (id == P_DEVICE)
		(void) set_str(&s->device, v->s);
}

struct char_update {
	struct bz_gatt_char *c;
	const uint8_t *value;
	size_t value_len;
	bool has_value;
};

static void char_prop(void *obj, int id, const struct bz_prop_value *v)
{
	struct char_update *u = obj;
	struct bz_gatt_char *c = u->c;

	switch (id) {
	case P_UUID:
		(void) set_str(&c->uuid, v->s);
		break;
	case P_SERVICE:
		(void) set_str(&c->service, v->s);
		break;
	case P_FLAGS:
		c->flag_write_cmd = bz_strv_contains_case(v->strv, "write-without-response");
		c->flag_notify = bz_strv_contains_case(v->strv, "notify");
		break;
	case P_WRITE_ACQ:
		c->has_write_acquired = true;
		break;
	case P_NOTIFY_ACQ:
		c->has_notify_acquired = true;
		break;
	case P_MTU:
		c->mtu = v->q;
		break;
	case P_VALUE:
		u->value = v->bytes.data;
		u->value_len = v->bytes.len;
		u->has_value = true;
		break;
	}
}

static void report_bad_props(struct fgw_bluez *b, const char *path, const char *iface, unsigned bad)
{
	if (bad)
		bz_set_error(b, "%u properties of %s on '%s' have an unexpected type, ignored", bad,
			     iface, path);
}

static void adapter_update_state(struct fgw_bluez *b, int err);

/* The adapter we use: the configured name, else the first one listed (lowest path). */
static void adapter_choose(struct fgw_bluez *b)
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
		notify_device(b, FGW_BLUEZ_DEVICE_FOUND, d);
	}
}

static int iface_added(struct fgw_bluez *b, const char *path, const char *iface, sd_bus_message *m)
{
	unsigned bad = 0;
	int r;

	if (strcmp(iface, BLUEZ_ADAPTER_IFACE) == 0) {
		struct bz_adapter *a = bz_adapter_find(b, path);
		const char *name = strrchr(path, '/');
		bool isnew = !a;

		if (!a) {
			a = calloc(1, sizeof(*a));
			if (!a || !(a->path = strdup(path))) {
				free(a);
				return -ENOMEM;
			}
			snprintf(a->name, sizeof(a->name), "%s", name ? name + 1 : path);
		}
		r = bz_read_props(m, adapter_props, ARRAY_SIZE(adapter_props), adapter_prop, a,
				  &bad);
		if (isnew) {
			if (r < 0) {
				adapter_free(a);
				return r;
			}
			bz_list_add_tail(&b->adapters, &a->node);
		}
		report_bad_props(b, path, iface, bad);
		return r;
	}
	if (strcmp(iface, BLUEZ_DEVICE_IFACE) == 0) {
		struct bz_device *d = bz_device_find(b, path);
		struct device_update u = {0};
		bool isnew = !d;

		if (!d) {
			d = calloc(1, sizeof(*d));
			if (!d || !(d->path = strdup(path))) {
				free(d);
				return -ENOMEM;
			}
		}
		u.d = d;
		r = bz_read_props(m, device_props, ARRAY_SIZE(device_props), device_prop, &u, &bad);
		if (r >= 0 && u.err < 0)
			r = u.err;
		report_bad_props(b, path, iface, bad);
		if (isnew) {
			char *slash;

			if (r < 0) {
				device_free(d);
				return r;
			}
			/* Address and Adapter are always there from bluetoothd; a device without
			 * them is unusable, unless the path says what they are. */
			if (!u.address_seen && bz_path_to_addr(path, d->addr) < 0) {
				bz_set_error(b, "device '%s' has no Address, ignored", path);
				device_free(d);
				return 0;
			}
			if (!d->adapter && (d->adapter = strdup(path)) &&
			    (slash = strrchr(d->adapter, '/')))
				*slash = '\0';
			if (!d->adapter) {
				device_free(d);
				return -ENOMEM;
			}
			d->last_seen_ms = fgw_now_ms();
			bz_list_add_tail(&b->devices, &d->node);
			notify_device(b, FGW_BLUEZ_DEVICE_FOUND, d);
		}
		return r;
	}
	if (strcmp(iface, BLUEZ_SERVICE_IFACE) == 0) {
		struct bz_gatt_service *s = bz_gatt_service_find(b, path);
		bool isnew = !s;

		if (!s) {
			s = calloc(1, sizeof(*s));
			if (!s || !(s->path = strdup(path))) {
				free(s);
				return -ENOMEM;
			}
		}
		r = bz_read_props(m, service_props, ARRAY_SIZE(service_props), service_prop, s,
				  &bad);
		report_bad_props(b, path, iface, bad);
		if (isnew) {
			if (r < 0) {
				service_free(s);
				return r;
			}
			bz_list_add_tail(&b->services, &s->node);
		}
		return r;
	}
	if (strcmp(iface, BLUEZ_CHAR_IFACE) == 0) {
		struct bz_gatt_char *c = bz_gatt_char_find(b, path);
		struct char_update u = {0};
		bool isnew = !c;

		if (!c) {
			c = calloc(1, sizeof(*c));
			if (!c || !(c->path = strdup(path))) {
				free(c);
				return -ENOMEM;
			}
		}
		u.c = c;
		r = bz_read_props(m, char_props, ARRAY_SIZE(char_props), char_prop, &u, &bad);
		report_bad_props(b, path, iface, bad);
		if (isnew) {
			if (r < 0) {
				char_free(c);
				return r;
			}
			bz_list_add_tail(&b->chars, &c->node);
		}
		return r;
	}
	r = sd_bus_message_skip(m, "a{sv}");
	return r < 0 ? -EBADMSG : 0;
}

static void device_remove(struct fgw_bluez *b, struct bz_device *d)
{
	bz_list_del(&d->node);
	bz_links_on_device_removed(b, d);
	notify_device(b, FGW_BLUEZ_DEVICE_LOST, d);
	device_free(d);
}

static void iface_removed(struct fgw_bluez *b, const char *path, const char *iface)
{
	if (strcmp(iface, BLUEZ_ADAPTER_IFACE) == 0) {
		struct bz_adapter *a = bz_adapter_find(b, path);

		if (!a)
			return;
		bz_list_del(&a->node);
		if (b->adapter == a) {
			b->adapter = NULL;
			adapter_choose(b);
			bz_set_error(b, "adapter '%s' was removed", a->name);
			adapter_free(a);
			adapter_update_state(b, -ENODEV);
			return;
		}
		adapter_free(a);
	} else if (strcmp(iface, BLUEZ_DEVICE_IFACE) == 0) {
		struct bz_device *d = bz_device_find(b, path);

		if (d)
			device_remove(b, d);
	} else if (strcmp(iface, BLUEZ_SERVICE_IFACE) == 0) {
		struct bz_gatt_service *s = bz_gatt_service_find(b, path);

		if (s) {
			bz_list_del(&s->node);
			service_free(s);
		}
	} else if (strcmp(iface, BLUEZ_CHAR_IFACE) == 0) {
		struct bz_gatt_char *c = bz_gatt_char_find(b, path);

		if (c) {
			bz_list_del(&c->node);
			bz_links_on_char_removed(b, c);
			char_free(c);
		}
	}
}

/* Forgets every object (bluetoothd left, or a reload): devices are reported lost. */
static void objects_clear(struct fgw_bluez *b)
{
	struct bz_list *pos, *tmp;

	bz_list_for_each_safe(pos, tmp, &b->chars)
	{
		struct bz_gatt_char *c = container_of(pos, struct bz_gatt_char, node);
		bz_list_del(&c->node);
		bz_links_on_char_removed(b, c);
		char_free(c);
	}
	bz_list_for_each_safe(pos, tmp, &b->services)
	{
		struct bz_gatt_service *s = container_of(pos, struct bz_gatt_service, node);
		bz_list_del(&s->node);
		service_free(s);
	}
	while (!bz_list_empty(&b->devices))
		device_remove(b, container_of(b->devices.next, struct bz_device, node));
	b->adapter = NULL;
	bz_list_for_each_safe(pos, tmp, &b->adapters)
	{
		struct bz_adapter *a = container_of(pos, struct bz_adapter, node);
		bz_list_del(&a->node);
		adapter_free(a);
	}
}

/* Reads "a{sa{sv}}" (interfaces and their properties) of object @path. */
static int read_interfaces(struct fgw_bluez *b, const char *path, sd_bus_message *m)
{
	const char *iface;
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
	if (r <= 0)
		return -EBADMSG;
	while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
		r = sd_bus_message_read_basic(m, 's', &iface);
		if (r <= 0)
			return -EBADMSG;
		r = iface_added(b, path, iface, m);
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return -EBADMSG;
	}
	if (r < 0)
		return -EBADMSG;
	return sd_bus_message_exit_container(m) < 0 ? -EBADMSG : 0;
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
		notify_adapter(b, r);
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
	r = new_call(b, b->adapter->path, DBUS_PROPS_IFACE, "Set", &m);
	if (r >= 0)
		r = sd_bus_message_append(m, "ssv", BLUEZ_ADAPTER_IFACE, "Powered", "b", 1);
	if (r >= 0)
		r = bz_call(b, m, &b->power_slot, on_power_reply, b, 0);
	sd_bus_message_unref(m);
	if (r < 0)
		bz_set_error(b, "cannot send Powered=true: %s", strerror(-r));
}

static void adapter_update_state(struct fgw_bluez *b, int err)
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
	notify_adapter(b, err);
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
			notify_adapter(b, r);
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
		notify_adapter(b, r);
	}
	b->filter_set = true;
	bz_discovery_update(b);
	return 0;
}

static int send_filter(struct fgw_bluez *b)
{
	sd_bus_message *m = NULL;
	int r;

	r = new_call(b, b->adapter->path, BLUEZ_ADAPTER_IFACE, "SetDiscoveryFilter", &m);
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
	r = new_call(b, b->adapter->path, BLUEZ_ADAPTER_IFACE,
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

/* ---- signals and the initial load ---- */

static bool from_bluez(struct fgw_bluez *b, sd_bus_message *m)
{
	const char *sender = sd_bus_message_get_sender(m);

	/* A signal queued by the previous bluetoothd must not touch the new view. */
	return b->bluez_owner && sender && strcmp(sender, b->bluez_owner) == 0;
}

/* Replaces the view with a GetManagedObjects reply's "a{oa{sa{sv}}}" (read position at start). */
int bz_objects_parse(struct fgw_bluez *b, sd_bus_message *m)
{
	const char *path;
	int r;

	objects_clear(b);
	r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
	if (r <= 0)
		return -EBADMSG;
	while ((r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
		r = sd_bus_message_read_basic(m, 'o', &path);
		if (r <= 0)
			return -EBADMSG;
		r = read_interfaces(b, path, m);
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return -EBADMSG;
	}
	return r < 0 ? -EBADMSG : 0;
}

void bz_objects_clear(struct fgw_bluez *b)
{
	objects_clear(b);
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
	adapter_choose(b);
	if (!b->adapter && b->opts.adapter && b->opts.adapter[0]) {
		bz_set_error(b, "adapter '%s' not found", b->opts.adapter);
		adapter_update_state(b, -ENODEV);
		return 0;
	}
	adapter_update_state(b, 0);
	return 0;
bad:
	bz_set_error(b, "GetManagedObjects reply is malformed (%s)", strerror(r ? -r : EBADMSG));
	r = r == -ENOMEM ? r : -EBADMSG;
	objects_clear(b);
fail:
	adapter_update_state(b, r);
	schedule_reload(b);
	return 0;
}

static void load_objects(struct fgw_bluez *b)
{
	sd_bus_message *m = NULL;
	int r;

	b->objects_slot = sd_bus_slot_unref(b->objects_slot);
	r = new_call(b, "/", DBUS_OM_IFACE, "GetManagedObjects", &m);
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
	b->power_slot = sd_bus_slot_unref(b->power_slot);
	uv_timer_stop(&b->retry_timer);
	objects_clear(b);
	bz_set_error(b, "bluetoothd left the bus");
	adapter_update_state(b, -ENETDOWN);
}

static void bluez_appeared(struct fgw_bluez *b, const char *owner)
{
	if (set_str(&b->bluez_owner, owner) < 0) {
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
		notify_adapter(b, -ENETDOWN);
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

	if (!from_bluez(b, m) || !b->objects_loaded)
		return 0;
	if (sd_bus_message_read_basic(m, 'o', &path) <= 0)
		goto bad;
	r = read_interfaces(b, path, m);
	if (r < 0)
		goto bad;
	adapter_choose(b);
	adapter_update_state(b, 0);
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

	if (!from_bluez(b, m) || !b->objects_loaded)
		return 0;
	if (sd_bus_message_read_basic(m, 'o', &path) <= 0 || bz_read_strv(m, &ifaces) < 0) {
		bz_set_error(b, "malformed InterfacesRemoved signal ignored");
		return 0;
	}
	for (char **i = ifaces; *i; i++)
		iface_removed(b, path, *i);
	bz_strv_free(ifaces);
	return 0;
}

static void device_changed(struct fgw_bluez *b, struct bz_device *d, sd_bus_message *m)
{
	struct device_update u = {.d = d};
	unsigned bad = 0;
	char **inval = NULL;

	if (bz_read_props(m, device_props, ARRAY_SIZE(device_props), device_prop, &u, &bad) < 0 ||
	    bz_read_strv(m, &inval) < 0) {
		bz_set_error(b, "malformed PropertiesChanged for '%s' ignored", d->path);
		return;
	}
	report_bad_props(b, d->path, BLUEZ_DEVICE_IFACE, bad);
	for (char **i = inval; *i; i++) {
		if (strcmp(*i, "RSSI") == 0)
			d->has_rssi = false;
		else if (strcmp(*i, "Name") == 0) {
			free(d->name);
			d->name = NULL;
		}
	}
	bz_strv_free(inval);
	/* Any news from bluetoothd about a device means it was heard from. */
	d->last_seen_ms = fgw_now_ms();
	bz_links_on_device_changed(b, d, u.connected_false);
	notify_device(b, FGW_BLUEZ_DEVICE_UPDATED, d);
}

static void char_changed(struct fgw_bluez *b, struct bz_gatt_char *c, sd_bus_message *m)
{
	struct char_update u = {.c = c};
	unsigned bad = 0;

	if (bz_read_props(m, char_props, ARRAY_SIZE(char_props), char_prop, &u, &bad) < 0) {
		bz_set_error(b, "malformed PropertiesChanged for '%s' ignored", c->path);
		return;
	}
	report_bad_props(b, c->path, BLUEZ_CHAR_IFACE, bad);
	if (u.has_value)
		bz_links_on_char_value(b, c, u.value, u.value_len);
}

static void adapter_changed(struct fgw_bluez *b, struct bz_adapter *a, sd_bus_message *m)
{
	unsigned bad = 0;

	if (bz_read_props(m, adapter_props, ARRAY_SIZE(adapter_props), adapter_prop, a, &bad) < 0) {
		bz_set_error(b, "malformed PropertiesChanged for '%s' ignored", a->path);
		return;
	}
	report_bad_props(b, a->path, BLUEZ_ADAPTER_IFACE, bad);
	if (a != b->adapter)
		return;
	if (!a->discovering)
		b->discovery_on = false; /* bluetoothd stopped it (power cycle, error) */
	if (!a->powered) {
		b->power_requested = false;
		bz_set_error(b, "adapter '%s' powered off", a->name);
		adapter_update_state(b, -ENETDOWN);
		return;
	}
	adapter_update_state(b, 0);
	bz_discovery_update(b);
}

static int on_properties_changed(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	const char *path = sd_bus_message_get_path(m), *iface;

	if (!from_bluez(b, m) || !b->objects_loaded || !path)
		return 0;
	if (sd_bus_message_read_basic(m, 's', &iface) <= 0) {
		bz_set_error(b, "malformed PropertiesChanged signal ignored");
		return 0;
	}
	if (strcmp(iface, BLUEZ_CHAR_IFACE) == 0) {
		struct bz_gatt_char *c = bz_gatt_char_find(b, path);
		if (c)
			char_changed(b, c, m);
	} else if (strcmp(iface, BLUEZ_DEVICE_IFACE) == 0) {
		struct bz_device *d = bz_device_find(b, path);
		if (d)
			device_changed(b, d, m);
	} else if (strcmp(iface, BLUEZ_ADAPTER_IFACE) == 0) {
		struct bz_adapter *a = bz_adapter_find(b, path);
		if (a)
			adapter_changed(b, a, m);
	}
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
		notify_adapter(b, -ENETDOWN);
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

static int add_match(struct fgw_bluez *b, sd_bus_slot **slot, const char *rule,
		     sd_bus_message_handler_t cb)
{
	/* Asynchronous AddMatch: the bus daemon handles it before any later call of ours. */
	return sd_bus_add_match_async(b->bus, slot, rule, cb, NULL, b);
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
	b->want_scan = opts->scan;
	b->adapter_state = FGW_BLUEZ_ADAPTER_STATE_ABSENT;
	if ((opts->bus_address && !(b->opt_bus_address = strdup(opts->bus_address))) ||
	    (opts->adapter && !(b->opt_adapter = strdup(opts->adapter)))) {
		r = -ENOMEM;
		goto fail;
	}
	b->opts.bus_address = b->opt_bus_address;
	b->opts.adapter = b->opt_adapter;

	r = fgw_bus_open(b->opts.bus_address, "fotagw-bluez", &b->bus);
	if (r < 0)
		goto fail;
	r = add_match(b, &b->match_slots[0],
		      "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
		      "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.bluez'",
		      on_name_owner_changed);
	if (r >= 0)
		r = add_match(b, &b->match_slots[1],
			      "type='signal',sender='org.bluez',interface='" DBUS_OM_IFACE
			      "',member='InterfacesAdded'",
			      on_interfaces_added);
	if (r >= 0)
		r = add_match(b, &b->match_slots[2],
			      "type='signal',sender='org.bluez',interface='" DBUS_OM_IFACE
			      "',member='InterfacesRemoved'",
			      on_interfaces_removed);
	if (r >= 0)
		r = add_match(b, &b->match_slots[3],
			      "type='signal',sender='org.bluez',interface='" DBUS_PROPS_IFACE
			      "',member='PropertiesChanged',path_namespace='/org/bluez'",
			      on_properties_changed);
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
		free(rel);
	}
	for (size_t i = 0; i < ARRAY_SIZE(b->match_slots); i++)
		b->match_slots[i] = sd_bus_slot_unref(b->match_slots[i]);
	b->owner_slot = sd_bus_slot_unref(b->owner_slot);
	b->objects_slot = sd_bus_slot_unref(b->objects_slot);
	b->power_slot = sd_bus_slot_unref(b->power_slot);
	b->filter_slot = sd_bus_slot_unref(b->filter_slot);
	/* Our discovery session ends when we leave the bus; no StopDiscovery needed. */
	b->discovery_slot = sd_bus_slot_unref(b->discovery_slot);
	objects_clear(b);
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

FGW_EXPORT enum fgw_bluez_adapter_state fgw_bluez_adapter_state(struct fgw_bluez *b)
{
	return b->adapter_state;
}

FGW_EXPORT const char *fgw_bluez_adapter_name(struct fgw_bluez *b)
{
	return b->adapter ? b->adapter->name : NULL;
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
	device_info(d, ret);
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
		if (!device_ours(b, d) || bz_device_too_weak(b, d))
			continue;
		device_info(d, &info);
		cb(b, FGW_BLUEZ_DEVICE_FOUND, &info, user_data);
	}
}
