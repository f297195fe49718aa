/*
 * A fake bluetoothd: owns org.bluez on the bus named by DBUS_SYSTEM_BUS_ADDRESS and exports
 * what BlueZ 5.66 exports to a GATT client (doc/adapter-api.txt, device-api.txt, gatt-api.txt;
 * protocol-notes §8): ObjectManager at /, Adapter1 at /org/bluez/hciN for each of --adapters,
 * a Device1 per simulated device and adapter once discovered, and after connection the SMP
 * GattService1/GattCharacteristic1 (plus the CCC descriptor). This file: adapters, discovery,
 * the test control interface, lifetime; bluez-device.c and bluez-gatt.c the rest.
 */
#include "bluez-int.h"

static bool any_discovering(const struct sim_adapter *ad)
{
	for (const struct disc_client *c = ad->clients; c; c = c->next)
		if (c->active)
			return true;
	return false;
}

void bz_emit(struct sim_bluez *b, const char *path, const char *iface, const char *prop)
{
	int r = sd_bus_emit_properties_changed(b->bus, path, iface, prop, NULL);
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "PropertiesChanged %s.%s failed, ignoring", iface,
			      prop);
}

static int adapter_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		       sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;

	if (!strcmp(prop, "Address"))
		return sd_bus_message_append(reply, "s", b->addr);
	if (!strcmp(prop, "AddressType"))
		return sd_bus_message_append(reply, "s", "public");
	if (!strcmp(prop, "Name"))
		return sd_bus_message_append(reply, "s", "fotagw-sim");
	if (!strcmp(prop, "Alias"))
		return sd_bus_message_append(reply, "s", b->alias);
	if (!strcmp(prop, "Class"))
		return sd_bus_message_append(reply, "u", 0u);
	if (!strcmp(prop, "Powered"))
		return sd_bus_message_append(reply, "b", b->powered);
	if (!strcmp(prop, "Discoverable"))
		return sd_bus_message_append(reply, "b", b->discoverable);
	if (!strcmp(prop, "DiscoverableTimeout"))
		return sd_bus_message_append(reply, "u", 180u);
	if (!strcmp(prop, "Pairable"))
		return sd_bus_message_append(reply, "b", b->pairable);
	if (!strcmp(prop, "PairableTimeout"))
		return sd_bus_message_append(reply, "u", 0u);
	if (!strcmp(prop, "Discovering"))
		return sd_bus_message_append(reply, "b", any_discovering(b));
	if (!strcmp(prop, "UUIDs"))
		return sd_bus_message_append(reply, "as", 2, GAP_UUID, GATT_UUID);
	if (!strcmp(prop, "Modalias"))
		return sd_bus_message_append(reply, "s", "usb:v1D6Bp0246d0542");
	if (!strcmp(prop, "Roles"))
		return sd_bus_message_append(reply, "as", 2, "central", "peripheral");
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static int adapter_set(sd_bus *bus, const char *path, const char *iface, const char *prop,
		       sd_bus_message *value, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	const char *s;
	int v, r;

	if (!strcmp(prop, "Alias")) {
		r = sd_bus_message_read(value, "s", &s);
		if (r < 0)
			return r;
		snprintf(b->alias, sizeof(b->alias), "%s", s[0] ? s : "fotagw-sim");
		return 1;
	}
	r = sd_bus_message_read(value, "b", &v);
	if (r < 0)
		return r;
	if (!strcmp(prop, "Powered")) {
		if (b->powered && !v) {
			/* powering off drops every connection and every discovery session */
			for (unsigned i = 0; i < b->b->sim->n_devs; i++) {
				struct sim_ble_dev *x = b->b->sim->devs[i].ble[b->idx];
				if (x && x->conn != CONN_NONE)
					bz_ble_disconnect_now(x, "adapter powered off");
			}
			for (struct disc_client *c = b->clients; c; c = c->next)
				c->active = false;
			bz_emit(b->b, b->path, IFACE_ADAPTER, "Discovering");
		}
		b->powered = v;
	} else if (!strcmp(prop, "Discoverable")) {
		b->discoverable = v;
	} else if (!strcmp(prop, "Pairable")) {
		b->pairable = v;
	}
	return 1;
}

static struct disc_client *client_find(struct sim_adapter *b, const char *sender, bool create)
{
	struct disc_client *c;

	for (c = b->clients; c; c = c->next)
		if (!strcmp(c->sender, sender))
			return c;
	if (!create)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	snprintf(c->sender, sizeof(c->sender), "%s", sender);
	c->next = b->clients;
	b->clients = c;
	return c;
}

static void client_drop(struct sim_adapter *b, struct disc_client *gone)
{
	for (struct disc_client **p = &b->clients; *p; p = &(*p)->next)
		if (*p == gone) {
			*p = gone->next;
			free(gone);
			return;
		}
}

static int m_start_discovery(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	struct disc_client *c;
	bool was = any_discovering(b);

	if (!b->powered)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotReady",
						  "Resource Not Ready");
	c = client_find(b, sd_bus_message_get_sender(m), true);
	if (!c)
		return -ENOMEM;
	if (c->active)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InProgress",
						  "Operation already in progress");
	c->active = true;
	if (!was) {
		bz_emit(b->b, b->path, IFACE_ADAPTER, "Discovering");
		/* what advertises is reported within an advertising interval or so */
		for (unsigned i = 0; i < b->b->sim->n_devs; i++) {
			struct sim_device *d = &b->b->sim->devs[i];
			struct sim_ble_dev *x =
			    sim_device_hears(d, b->idx) ? bz_ble_of(b, d) : NULL;
			if (x)
				x->next_adv_us =
				    sim_now_us() + (uint64_t) (sim_device_rand(d) * 500000.0);
		}
	}
	return sd_bus_reply_method_return(m, NULL);
}

static int m_stop_discovery(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	struct disc_client *c = client_find(b, sd_bus_message_get_sender(m), false);

	if (!b->powered)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotReady",
						  "Resource Not Ready");
	if (!c || !c->active)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed",
						  "No discovery started");
	c->active = false;
	if (!c->has_filter)
		client_drop(b, c);
	if (!any_discovering(b))
		bz_emit(b->b, b->path, IFACE_ADAPTER, "Discovering");
	return sd_bus_reply_method_return(m, NULL);
}

int bz_invalid_args(sd_bus_message *m)
{
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.InvalidArguments",
					  "Invalid arguments in method call");
}

static int m_set_discovery_filter(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	struct disc_client f = {}, *c;
	bool has_pathloss = false;
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return bz_invalid_args(m);
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key, *contents;
		char type;

		if (sd_bus_message_read(m, "s", &key) < 0 ||
		    sd_bus_message_peek_type(m, &type, &contents) < 0 || type != 'v')
			return bz_invalid_args(m);
		f.has_filter = true;
		if (!strcmp(key, "UUIDs") && !strcmp(contents, "as")) {
			const char *u;
			if (sd_bus_message_enter_container(m, 'v', "as") < 0 ||
			    sd_bus_message_enter_container(m, 'a', "s") < 0)
				return bz_invalid_args(m);
			while ((r = sd_bus_message_read(m, "s", &u)) > 0) {
				if (f.n_uuids < ARRAY_SIZE(f.uuids))
					snprintf(f.uuids[f.n_uuids++], sizeof(f.uuids[0]), "%s", u);
			}
			if (r < 0 || sd_bus_message_exit_container(m) < 0 ||
			    sd_bus_message_exit_container(m) < 0)
				return bz_invalid_args(m);
		} else if (!strcmp(key, "RSSI") && !strcmp(contents, "n")) {
			if (sd_bus_message_read(m, "v", "n", &f.rssi) < 0)
				return bz_invalid_args(m);
			f.has_rssi = true;
		} else if (!strcmp(key, "Pathloss") && !strcmp(contents, "q")) {
			uint16_t pl;
			if (sd_bus_message_read(m, "v", "q", &pl) < 0)
				return bz_invalid_args(m);
			has_pathloss = true;
		} else if (!strcmp(key, "Transport") && !strcmp(contents, "s")) {
			const char *t;
			if (sd_bus_message_read(m, "v", "s", &t) < 0)
				return bz_invalid_args(m);
			if (strcmp(t, "auto") && strcmp(t, "le") && strcmp(t, "bredr"))
				return bz_invalid_args(m);
		} else if ((!strcmp(key, "DuplicateData") || !strcmp(key, "Discoverable")) &&
			   !strcmp(contents, "b")) {
			int v;
			if (sd_bus_message_read(m, "v", "b", &v) < 0)
				return bz_invalid_args(m);
		} else if (!strcmp(key, "Pattern") && !strcmp(contents, "s")) {
			const char *p;
			if (sd_bus_message_read(m, "v", "s", &p) < 0)
				return bz_invalid_args(m);
			snprintf(f.pattern, sizeof(f.pattern), "%s", p);
		} else {
			return bz_invalid_args(m);
		}
		if (sd_bus_message_exit_container(m) < 0)
			return bz_invalid_args(m);
	}
	if (r < 0 || sd_bus_message_exit_container(m) < 0)
		return bz_invalid_args(m);
	if (f.has_rssi && has_pathloss)
		return bz_invalid_args(m);
	c = client_find(b, sd_bus_message_get_sender(m), true);
	if (!c)
		return -ENOMEM;
	f.next = c->next;
	f.active = c->active;
	memcpy(f.sender, c->sender, sizeof(f.sender));
	*c = f;
	return sd_bus_reply_method_return(m, NULL);
}

static int m_get_discovery_filters(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	return sd_bus_reply_method_return(m, "as", 7, "UUIDs", "RSSI", "Pathloss", "Transport",
					  "DuplicateData", "Discoverable", "Pattern");
}

static int m_remove_device(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	const char *path;

	if (sd_bus_message_read(m, "o", &path) < 0)
		return bz_invalid_args(m);
	for (unsigned i = 0; i < b->b->sim->n_devs; i++) {
		struct sim_ble_dev *x = b->b->sim->devs[i].ble[b->idx];
		if (x && x->exported && !strcmp(x->path, path)) {
			if (x->conn != CONN_NONE)
				bz_ble_disconnect_now(x, "device removed");
			/* the bond goes with the device object (the device keeps its own) */
			x->paired = 0;
			x->bond_level = 0;
			bz_ble_unexport(x);
			return sd_bus_reply_method_return(m, NULL);
		}
	}
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.DoesNotExist", "Does Not Exist");
}

static const sd_bus_vtable adapter_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("StartDiscovery", "", "", m_start_discovery, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("StopDiscovery", "", "", m_stop_discovery, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("SetDiscoveryFilter", "a{sv}", "", m_set_discovery_filter,
		  SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("GetDiscoveryFilters", "", "as", m_get_discovery_filters,
		  SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("RemoveDevice", "o", "", m_remove_device, SD_BUS_VTABLE_UNPRIVILEGED),
    BZ_PROPERTY_CONST("Address", "s", adapter_get),
    BZ_PROPERTY_CONST("AddressType", "s", adapter_get),
    BZ_PROPERTY_CONST("Name", "s", adapter_get),
    BZ_PROPERTY_RW("Alias", "s", adapter_get, adapter_set),
    BZ_PROPERTY_CONST("Class", "u", adapter_get),
    BZ_PROPERTY_RW("Powered", "b", adapter_get, adapter_set),
    BZ_PROPERTY_RW("Discoverable", "b", adapter_get, adapter_set),
    BZ_PROPERTY_CONST("DiscoverableTimeout", "u", adapter_get),
    BZ_PROPERTY_RW("Pairable", "b", adapter_get, adapter_set),
    BZ_PROPERTY_CONST("PairableTimeout", "u", adapter_get),
    BZ_PROPERTY("Discovering", "b", adapter_get),
    BZ_PROPERTY_CONST("UUIDs", "as", adapter_get),
    BZ_PROPERTY_CONST("Modalias", "s", adapter_get),
    BZ_PROPERTY_CONST("Roles", "as", adapter_get),
    SD_BUS_VTABLE_END,
};

static bool filter_match(const struct disc_client *c, const struct sim_ble_dev *x)
{
	const struct sim_device *d = x->dev;

	if (!c->has_filter)
		return true;
	/* The kernel applies bluetoothd's merged RSSI threshold (mgmt.c is_filter_match): with
	 * a threshold, a report whose RSSI is invalid (127) is dropped as well. */
	if (c->has_rssi && (x->rssi == 127 || x->rssi < c->rssi))
		return false;
	if (c->pattern[0] && strncasecmp(x->addr, c->pattern, strlen(c->pattern)) != 0 &&
	    strncmp(d->adv_name, c->pattern, strlen(c->pattern)) != 0)
		return false;
	if (c->n_uuids) {
		bool any = false;
		for (unsigned i = 0; i < c->n_uuids; i++)
			any = any || bz_dev_advertised_uuid(x, c->uuids[i]);
		if (!any)
			return false;
	}
	return true;
}

static bool wanted(const struct sim_adapter *b, const struct sim_ble_dev *x)
{
	for (const struct disc_client *c = b->clients; c; c = c->next)
		if (c->active && filter_match(c, x))
			return true;
	return false;
}

static void scan_adapter(struct sim_adapter *ad, uint64_t now)
{
	struct sim_bluez *b = ad->b;
	bool discovering = ad->powered && any_discovering(ad);

	for (unsigned i = 0; i < b->sim->n_devs; i++) {
		struct sim_device *d = &b->sim->devs[i];
		struct sim_ble_dev *x = d->ble[ad->idx];
		bool heard = sim_device_hears(d, ad->idx);

		if (discovering && heard && !x)
			x = bz_ble_of(ad, d);
		if (!x)
			continue;
		x = bz_rpa_rotate(ad, x, now);
		/* An advertising device (up, not connected) is seen about once a second, by each
		 * adapter in range with its own RSSI. */
		if (discovering && heard && sim_device_reachable(d) && x->conn == CONN_NONE &&
		    !bz_ble_linked(b, d) && now >= x->next_adv_us) {
			int mean = sim_device_rssi(d, ad->idx);
			int16_t rssi = (int16_t) (mean + (int) (sim_device_rand(d) * 13) - 6);

			if (mean == 127)
				rssi = 127; /* "not available" in every report */

			x->next_adv_us =
			    now + ADV_REPORT_MS * 1000 + (uint64_t) (sim_device_rand(d) * 200000.0);
			x->rssi = rssi;
			if (!wanted(ad, x))
				continue;
			x->last_seen_us = now;
			if (!x->exported)
				bz_ble_export(x);
			else
				bz_emit(b, x->path, IFACE_DEVICE, "RSSI");
		}
		/* Unpaired devices nobody has seen for TemporaryTimeout disappear. */
		if (x->exported && x->conn == CONN_NONE && !x->paired &&
		    now - x->last_seen_us > (uint64_t) (b->sim->opt.temporary_timeout_ms * 1000.0))
			bz_ble_unexport(x);
	}
}

static void scan_tick(uv_timer_t *t)
{
	struct sim_bluez *b = container_of(t, struct sim_bluez, scan_timer);
	uint64_t now = sim_now_us();

	for (unsigned k = 0; k < b->n_ads; k++) {
		if (!b->ads[k].removed)
			scan_adapter(&b->ads[k], now);
		bz_retired_expire(&b->ads[k], now, b->ads[k].removed);
	}
	bus_kick(b);
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_bluez *b = userdata;
	const char *name, *old, *new;
	struct disc_client *c;

	if (sd_bus_message_read(m, "sss", &name, &old, &new) < 0 || new[0] || name[0] != ':')
		return 0;
	/* a client left the bus: its discovery sessions and notify sessions end */
	for (unsigned k = 0; k < b->n_ads; k++) {
		struct sim_adapter *ad = &b->ads[k];

		c = client_find(ad, name, false);
		if (c) {
			bool was = any_discovering(ad);
			client_drop(ad, c);
			if (was && !any_discovering(ad) && !ad->removed)
				bz_emit(b, ad->path, IFACE_ADAPTER, "Discovering");
		}
		for (unsigned i = 0; i < b->sim->n_devs; i++) {
			struct sim_ble_dev *x = b->sim->devs[i].ble[k];
			struct notify_client **p = x ? bz_notify_find(x, name) : NULL;
			if (p)
				bz_notify_drop(x, p);
		}
	}
	sim_agents_client_gone(b->agents, name);
	return 0;
}

/*
 * org.fotagw.SimControl1.RemoveAdapter("hciN"): the controller is unplugged. As bluetoothd does
 * when the kernel reports the index removed (adapter_remove()): every link through it drops, its
 * device objects and then the adapter object leave the bus (InterfacesRemoved); nothing of it
 * comes back.
 */
static int m_remove_adapter(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_bluez *b = userdata;
	struct sim_adapter *ad = NULL;
	const char *name;

	if (sd_bus_message_read(m, "s", &name) < 0)
		return bz_invalid_args(m);
	for (unsigned k = 0; k < b->n_ads; k++)
		if (!b->ads[k].removed && !strcmp(b->ads[k].path + 11, name))
			ad = &b->ads[k];
	if (!ad)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NoSuchAdapter",
						  "No such adapter");
	fgw_notice("event: adapter-removed, adapter: %s", name);
	for (unsigned i = 0; i < b->sim->n_devs; i++) {
		struct sim_ble_dev *x = b->sim->devs[i].ble[ad->idx];
		if (!x)
			continue;
		bz_ble_disconnect_now(x, "adapter removed");
		x->paired = 0;
		bz_ble_unexport(x);
	}
	while (ad->clients)
		client_drop(ad, ad->clients);
	(void) sd_bus_emit_interfaces_removed(b->bus, ad->path, IFACE_ADAPTER, NULL);
	ad->slot = sd_bus_slot_unref(ad->slot);
	ad->removed = true;
	return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable simctl_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("RemoveAdapter", "s", "", m_remove_adapter, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

static int on_name_acquired(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct sim_bluez *b = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	b->name_slot = sd_bus_slot_unref(b->name_slot);
	if (e) {
		fgw_error("cannot take org.bluez: %s: %s", e->name, e->message);
		return 0;
	}
	fgw_notice("event: bluez-ready, name: org.bluez, adapters: %u, devices: %u", b->n_ads,
		   b->sim->n_devs);
	return 0;
}

int sim_bluez_new(struct sim *sim, bool wait, struct sim_bluez **ret)
{
	struct sim_bluez *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return -ENOMEM;
	b->sim = sim;
	b->n_ads = sim->opt.n_bluez_adapters ? sim->opt.n_bluez_adapters : 1;
	for (unsigned k = 0; k < b->n_ads; k++) {
		struct sim_adapter *ad = &b->ads[k];
		ad->b = b;
		ad->idx = k;
		ad->powered = 1;
		ad->pairable = 1;
		snprintf(ad->path, sizeof(ad->path), "/org/bluez/hci%u", k);
		snprintf(ad->addr, sizeof(ad->addr), "00:AA:01:00:00:%02X", k);
		snprintf(ad->alias, sizeof(ad->alias), "fotagw-sim");
	}
	/* sd_bus_open_system() honours DBUS_SYSTEM_BUS_ADDRESS */
	r = sd_bus_open_system(&b->bus);
	if (r < 0)
		goto fail;
	r = sd_bus_add_object_manager(b->bus, &b->om_slot, "/");
	if (r < 0)
		goto fail;
	for (unsigned k = 0; k < b->n_ads; k++) {
		r = sd_bus_add_object_vtable(b->bus, &b->ads[k].slot, b->ads[k].path, IFACE_ADAPTER,
					     adapter_vtable, &b->ads[k]);
		if (r < 0)
			goto fail;
	}
	r = sd_bus_add_object_vtable(b->bus, &b->ctl_slot, "/org/fotagw/sim", IFACE_SIMCTL,
				     simctl_vtable, b);
	if (r < 0)
		goto fail;
	r = sim_agents_new(b->bus, sim->loop, &b->agents);
	if (r < 0)
		goto fail;
	r = sd_bus_match_signal(b->bus, &b->match_slot, "org.freedesktop.DBus",
				"/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged",
				on_name_owner_changed, b);
	if (r < 0)
		goto fail;
	/* Startup, before the loop runs: a blocking call is acceptable there (the ready line
	 * promises the name); a restart (SIGUSR1) asks without blocking the loop. */
	if (wait)
		r = sd_bus_request_name(b->bus, "org.bluez", 0);
	else
		r = sd_bus_request_name_async(b->bus, &b->name_slot, "org.bluez", 0,
					      on_name_acquired, b);
	if (r < 0)
		goto fail;
	sim_busloop_init(&b->bl, sim->loop, b->bus);
	uv_timer_init(sim->loop, &b->scan_timer);
	uv_timer_start(&b->scan_timer, scan_tick, SCAN_TICK_MS, SCAN_TICK_MS);
	for (unsigned i = 0; i < sim->n_devs; i++)
		memset(sim->devs[i].ble, 0, sizeof(sim->devs[i].ble));
	bus_kick(b);
	if (wait)
		fgw_notice("event: bluez-ready, name: org.bluez, adapters: %u, devices: %u",
			   b->n_ads, sim->n_devs);
	*ret = b;
	return 0;
fail:
	sd_bus_slot_unref(b->name_slot);
	sd_bus_slot_unref(b->match_slot);
	b->agents = sim_agents_free(b->agents);
	for (unsigned k = 0; k < b->n_ads; k++)
		sd_bus_slot_unref(b->ads[k].slot);
	sd_bus_slot_unref(b->ctl_slot);
	sd_bus_slot_unref(b->om_slot);
	sd_bus_flush_close_unref(b->bus);
	free(b);
	return r;
}

void bz_ble_timer_closed(uv_handle_t *h)
{
	struct sim_ble_dev *x = container_of((uv_timer_t *) h, struct sim_ble_dev, timer);
	free(x);
}

static void bluez_closed(uv_handle_t *h)
{
	struct sim_bluez *b = h->data;

	if (--b->n_closing == 0)
		free(b);
}

struct sim_bluez *sim_bluez_free(struct sim_bluez *b)
{
	if (!b)
		return NULL;
	for (unsigned k = 0; k < b->n_ads; k++) {
		for (unsigned i = 0; i < b->sim->n_devs; i++) {
			struct sim_ble_dev *x = b->sim->devs[i].ble[k];
			if (!x)
				continue;
			bz_ble_disconnect_now(x, "shutdown");
			bz_reply_pending_connect(x, "org.bluez.Error.Failed",
						 "le-connection-abort-by-local");
			bz_ble_unexport(x);
			b->sim->devs[i].ble[k] = NULL;
			uv_close((uv_handle_t *) &x->timer, bz_ble_timer_closed);
		}
		bz_retired_expire(&b->ads[k], 0, true);
		while (b->ads[k].clients)
			client_drop(&b->ads[k], b->ads[k].clients);
		b->ads[k].slot = sd_bus_slot_unref(b->ads[k].slot);
	}
	b->ctl_slot = sd_bus_slot_unref(b->ctl_slot);
	b->name_slot = sd_bus_slot_unref(b->name_slot);
	sd_bus_slot_unref(b->match_slot);
	b->agents = sim_agents_free(b->agents);
	sd_bus_slot_unref(b->om_slot);
	if (!b->bl.dead)
		(void) sd_bus_flush(b->bus); /* shutdown: last signals out */
	sd_bus_close_unref(b->bus);
	b->scan_timer.data = b;
	b->n_closing = 4;
	sim_busloop_close(&b->bl, b, bluez_closed);
	uv_close((uv_handle_t *) &b->scan_timer, bluez_closed);
	return NULL;
}
