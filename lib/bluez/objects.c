/*
 * The object view: bluetoothd's adapters, devices, GATT services and characteristics, as
 * GetManagedObjects, InterfacesAdded/Removed and PropertiesChanged describe them, parsed into
 * plain structs. Every value read here came from another process: types are checked, a
 * malformed entry is skipped with a reason, never trusted.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bluez-private.h"
#include "util.h"

/* ---- objects ---- */

static void adapter_free(struct bz_adapter *a)
{
	bz_adapter_forget(a);
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
	struct type *type##_find(struct fgw_bluez *b, const char *path)                            \
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

/* A copy not heard from for this long loses to one that was: the device moved away from it. */
#define SIGHTING_FRESH_MS 10000

static int device_rssi(const struct bz_device *d)
{
	return d->has_rssi && d->rssi != FGW_BLUEZ_RSSI_INVALID ? d->rssi : -128;
}

bool bz_device_better(struct fgw_bluez *b, const struct bz_device *x, const struct bz_device *y,
		      uint64_t now)
{
	struct bz_adapter *ax = bz_adapter_used(b, x->adapter),
			  *ay = bz_adapter_used(b, y->adapter);
	bool onx = ax && ax->state == FGW_BLUEZ_ADAPTER_STATE_ON;
	bool ony = ay && ay->state == FGW_BLUEZ_ADAPTER_STATE_ON;
	bool fx = now - x->last_seen_ms <= SIGHTING_FRESH_MS;
	bool fy = now - y->last_seen_ms <= SIGHTING_FRESH_MS;

	if (onx != ony)
		return onx;
	if (fx != fy)
		return fx;
	if (device_rssi(x) != device_rssi(y))
		return device_rssi(x) > device_rssi(y);
	return x->last_seen_ms > y->last_seen_ms;
}

struct bz_device *bz_device_find_addr(struct fgw_bluez *b, const char *addr)
{
	struct bz_device *best = NULL;
	uint64_t now = fgw_now_ms();
	struct bz_list *pos;

	bz_list_for_each(pos, &b->devices)
	{
		struct bz_device *d = container_of(pos, struct bz_device, node);
		if (bz_device_ours(b, d) && strcmp(d->addr, addr) == 0 &&
		    (!best || bz_device_better(b, d, best, now)))
			best = d;
	}
	return best;
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

int bz_set_str(char **dst, const char *s)
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
		if (bz_set_str(&d->name, v->s) < 0)
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
		if (bz_set_str(&d->adapter, v->s) < 0)
			u->err = -ENOMEM;
		break;
	}
	u->changed = true;
}

static void service_prop(void *obj, int id, const struct bz_prop_value *v)
{
	struct bz_gatt_service *s = obj;

	if (id == P_UUID)
		(void) bz_set_str(&s->uuid, v->s);
	else if (id == P_DEVICE)
		(void) bz_set_str(&s->device, v->s);
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
		(void) bz_set_str(&c->uuid, v->s);
		break;
	case P_SERVICE:
		(void) bz_set_str(&c->service, v->s);
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

/* One allocator for the four object kinds, which differ only in where their path is kept. */
static void *obj_new(size_t size, size_t path_off, const char *path)
{
	void *o = calloc(1, size);
	char *copy = o ? strdup(path) : NULL;

	if (!copy) {
		free(o);
		return NULL;
	}
	memcpy((char *) o + path_off, &copy, sizeof(copy));
	return o;
}

#define OBJ_NEW(type, p) ((type *) obj_new(sizeof(type), offsetof(type, path), (p)))

static int adapter_added(struct fgw_bluez *b, const char *path, const char *iface,
			 sd_bus_message *m)
{
	struct bz_adapter *a = bz_adapter_find(b, path);
	const char *name = strrchr(path, '/');
	bool isnew = !a;
	unsigned bad = 0;
	int r;

	if (!a) {
		a = OBJ_NEW(struct bz_adapter, path);
		if (!a)
			return -ENOMEM;
		snprintf(a->name, sizeof(a->name), "%s", name ? name + 1 : path);
		a->b = b;
	}
	r = bz_read_props(m, adapter_props, ARRAY_SIZE(adapter_props), adapter_prop, a, &bad);
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

/* Takes ownership of d: it is either listed (and announced) or freed. */
static int device_register(struct fgw_bluez *b, const char *path, struct bz_device *d,
			   const struct device_update *u)
{
	char *slash;

	/* Address and Adapter are always there from bluetoothd; a device without
	 * them is unusable, unless the path says what they are. */
	if (!u->address_seen && bz_path_to_addr(path, d->addr) < 0) {
		bz_set_error(b, "device '%s' has no Address, ignored", path);
		device_free(d);
		return 0;
	}
	if (!d->adapter && (d->adapter = strdup(path)) && (slash = strrchr(d->adapter, '/')))
		*slash = '\0';
	if (!d->adapter) {
		device_free(d);
		return -ENOMEM;
	}
	d->last_seen_ms = fgw_now_ms();
	bz_list_add_tail(&b->devices, &d->node);
	bz_notify_device(b, FGW_BLUEZ_DEVICE_FOUND, d);
	return 0;
}

static int device_added(struct fgw_bluez *b, const char *path, const char *iface, sd_bus_message *m)
{
	struct device_update u = {.d = bz_device_find(b, path)};
	bool isnew = !u.d;
	unsigned bad = 0;
	int r;

	if (!u.d && !(u.d = OBJ_NEW(struct bz_device, path)))
		return -ENOMEM;
	r = bz_read_props(m, device_props, ARRAY_SIZE(device_props), device_prop, &u, &bad);
	if (r >= 0 && u.err < 0)
		r = u.err;
	report_bad_props(b, path, iface, bad);
	if (!isnew)
		return r;
	if (r < 0) {
		device_free(u.d);
		return r;
	}
	return device_register(b, path, u.d, &u);
}

static int service_added(struct fgw_bluez *b, const char *path, const char *iface,
			 sd_bus_message *m)
{
	struct bz_gatt_service *s = bz_gatt_service_find(b, path);
	bool isnew = !s;
	unsigned bad = 0;
	int r;

	if (!s && !(s = OBJ_NEW(struct bz_gatt_service, path)))
		return -ENOMEM;
	r = bz_read_props(m, service_props, ARRAY_SIZE(service_props), service_prop, s, &bad);
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

static int char_added(struct fgw_bluez *b, const char *path, const char *iface, sd_bus_message *m)
{
	struct bz_gatt_char *c = bz_gatt_char_find(b, path);
	struct char_update u = {0};
	bool isnew = !c;
	unsigned bad = 0;
	int r;

	if (!c && !(c = OBJ_NEW(struct bz_gatt_char, path)))
		return -ENOMEM;
	u.c = c;
	r = bz_read_props(m, char_props, ARRAY_SIZE(char_props), char_prop, &u, &bad);
	report_bad_props(b, path, iface, bad);
	if (isnew && r < 0)
		char_free(c);
	else if (isnew)
		bz_list_add_tail(&b->chars, &c->node);
	return r;
}

static int iface_added(struct fgw_bluez *b, const char *path, const char *iface, sd_bus_message *m)
{
	int r;

	if (strcmp(iface, BLUEZ_ADAPTER_IFACE) == 0)
		return adapter_added(b, path, iface, m);
	if (strcmp(iface, BLUEZ_DEVICE_IFACE) == 0)
		return device_added(b, path, iface, m);
	if (strcmp(iface, BLUEZ_SERVICE_IFACE) == 0)
		return service_added(b, path, iface, m);
	if (strcmp(iface, BLUEZ_CHAR_IFACE) == 0)
		return char_added(b, path, iface, m);
	r = sd_bus_message_skip(m, "a{sv}");
	return r < 0 ? -EBADMSG : 0;
}

static void device_remove(struct fgw_bluez *b, struct bz_device *d)
{
	bz_list_del(&d->node);
	bz_links_on_device_removed(b, d);
	bz_notify_device(b, FGW_BLUEZ_DEVICE_LOST, d);
	device_free(d);
}

void bz_iface_removed(struct fgw_bluez *b, const char *path, const char *iface)
{
	if (strcmp(iface, BLUEZ_ADAPTER_IFACE) == 0) {
		struct bz_adapter *a = bz_adapter_find(b, path);

		if (!a)
			return;
		bz_list_del(&a->node);
		if (a->used) {
			/* Its links fail (bz_adapter_update_state); their jobs come back through
			 * the adapters that still hear the device. */
			struct bz_list *pos, *tmp;

			bz_set_error(b, "adapter '%s' was removed", a->name);
			/* bluetoothd removes its devices first; if not, they go here. */
			bz_list_for_each_safe(pos, tmp, &b->devices)
			{
				struct bz_device *d = container_of(pos, struct bz_device, node);
				if (d->adapter && strcmp(d->adapter, a->path) == 0)
					device_remove(b, d);
			}
			adapter_free(a);
			bz_adapter_choose(b);
			bz_adapter_update_state(b, -ENODEV);
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
void bz_objects_clear(struct fgw_bluez *b)
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
	bz_list_for_each_safe(pos, tmp, &b->adapters)
	{
		struct bz_adapter *a = container_of(pos, struct bz_adapter, node);
		bz_list_del(&a->node);
		adapter_free(a);
	}
}

/* Reads "a{sa{sv}}" (interfaces and their properties) of object @path. */
int bz_read_interfaces(struct fgw_bluez *b, const char *path, sd_bus_message *m)
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

/* Replaces the view with a GetManagedObjects reply's "a{oa{sa{sv}}}" (read position at start). */
int bz_objects_parse(struct fgw_bluez *b, sd_bus_message *m)
{
	const char *path;
	int r;

	bz_objects_clear(b);
	r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
	if (r <= 0)
		return -EBADMSG;
	while ((r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
		r = sd_bus_message_read_basic(m, 'o', &path);
		if (r <= 0)
			return -EBADMSG;
		r = bz_read_interfaces(b, path, m);
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return -EBADMSG;
	}
	return r < 0 ? -EBADMSG : 0;
}

static void device_changed(struct fgw_bluez *b, struct bz_device *d, sd_bus_message *m)
{
	struct device_update u = {.d = d};
	unsigned bad = 0;
	char **inval = NULL;
	char old_addr[18];

	memcpy(old_addr, d->addr, sizeof(old_addr));

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
	/* BlueZ re-keys a bonded device's object on its identity address (device_update_addr);
	 * an unchanged Address is nothing new. */
	if (strcmp(old_addr, d->addr) != 0) {
		bz_links_on_address_changed(b, old_addr, d->addr);
		bz_notify_address_changed(b, d, old_addr);
	}
	bz_links_on_device_changed(b, d, u.connected_false);
	bz_notify_device(b, FGW_BLUEZ_DEVICE_UPDATED, d);
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
	bz_adapter_props_changed(b, a);
}

int bz_on_properties_changed(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez *b = user_data;
	const char *path = sd_bus_message_get_path(m), *iface;

	if (!bz_from_bluez(b, m) || !b->objects_loaded || !path)
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
