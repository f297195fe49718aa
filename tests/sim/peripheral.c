/*
 * fotagw-sim --peripheral: the simulated devices exposed through a REAL bluetoothd, as GATT
 * peripherals, one per controller. For each device this client of org.bluez (system bus)
 * registers, on its adapter, a GATT application holding the SMP service and characteristic
 * (GattManager1.RegisterApplication; BlueZ doc/gatt-api.txt, server side) and an advertisement
 * (LEAdvertisingManager1; doc/advertising-api.txt: service UUID, name, discoverable). SMP
 * requests arrive through the characteristic's WriteValue or the fd handed out by AcquireWrite;
 * answers leave as notifications, through the AcquireNotify fd or as PropertiesChanged(Value)
 * after StartNotify. The device model, SMP server and faults are the simulator's own (device.c),
 * only the transport differs.
 *
 * Rules of a bluetoothd-hosted peripheral (docs/simulator.md, shared/vm-bluez README §4):
 * - btvirt reports an advertiser only when advertising is (re-)enabled: the advertisement is
 *   unregistered and registered again every second while the device is up and unconnected,
 *   and an Unregister never overlaps a pending Register (bluetoothd 5.66 aborts then);
 * - a notification from bluetoothd to a bluetoothd central may travel as Handle Multiple Value
 *   Notification (2 more header bytes): responses go out in chunks of at most MTU - 5.
 * A reset (or a fault that drops the link) disconnects the central (Device1.Disconnect on the
 * peer's object of our adapter) and withdraws the advertisement until the device is up again.
 */
#include "periph-int.h"

static const char *const adv_state_names[] = {
    [ADV_OFF] = "off",
    [ADV_REGISTERING] = "registering",
    [ADV_ON] = "on",
    [ADV_UNREGISTERING] = "unregistering",
};

static void adv_step(struct periph_dev *x);

/* ---- the advertisement ------------------------------------------------------------------------
 */

static int adv_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		   sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct periph_dev *x = userdata;

	if (!strcmp(prop, "Type"))
		return sd_bus_message_append(reply, "s", "peripheral");
	if (!strcmp(prop, "ServiceUUIDs"))
		return sd_bus_message_append(reply, "as", 1, SMP_SVC_UUID);
	/* does not fit next to the 128-bit UUID: bluetoothd puts it in the scan response */
	if (!strcmp(prop, "LocalName"))
		return sd_bus_message_append(reply, "s", x->dev->adv_name);
	/* Discoverable puts the Flags field in; without it a plain scan ignores the advert */
	if (!strcmp(prop, "Discoverable"))
		return sd_bus_message_append(reply, "b", 1);
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static int m_adv_release(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct periph_dev *x = userdata;

	fgw_info("%s: advertisement released by bluetoothd", x->dev->name);
	if (x->adv == ADV_ON)
		x->adv = ADV_OFF;
	return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable adv_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Release", "", "", m_adv_release, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Type", "s", adv_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("ServiceUUIDs", "as", adv_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("LocalName", "s", adv_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Discoverable", "b", adv_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};

/* ---- registration and advertising state machine ------------------------------------------- */

static int on_app_registered(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct periph_dev *x = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	x->app_call = sd_bus_slot_unref(x->app_call);
	if (e) {
		x->app = APP_NONE; /* retried at the next tick */
		if (!x->app_error_logged)
			fgw_warning("%s: RegisterApplication on %s failed: %s: %s (retrying)",
				    x->dev->name, x->adapter_path, e->name, e->message);
		x->app_error_logged = true;
		return 0;
	}
	x->app = APP_OK;
	fgw_notice("event: periph-registered, device: %s, adapter: %s", x->dev->name,
		   x->adapter_path);
	adv_step(x);
	return 0;
}

static void app_register(struct periph_dev *x)
{
	int r;

	if (x->app != APP_NONE)
		return;
	r = sd_bus_call_method_async(x->p->bus, &x->app_call, "org.bluez", x->adapter_path,
				     IFACE_GATT_MGR, "RegisterApplication", on_app_registered, x,
				     "oa{sv}", x->app_path, 0);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "%s: cannot call RegisterApplication", x->dev->name);
		return;
	}
	x->app = APP_REGISTERING;
}

/* A central is subscribed: connected. (Not the write fd: bluetoothd keeps the AcquireWrite fd
 * of a characteristic across connections; the notify fd goes with the last subscriber.) */
static bool linked(const struct periph_dev *x)
{
	return x->notify_fd >= 0 || x->notifying;
}

/* Like the NCS SMP sample (one connection), the device advertises only while up and not
 * connected. bluetoothd itself would keep advertising through a connection. */
static bool adv_wanted(const struct periph_dev *x)
{
	return !x->p->closing && x->app == APP_OK && sim_device_reachable(x->dev) && !linked(x);
}

static int on_adv_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct periph_dev *x = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	x->adv_call = sd_bus_slot_unref(x->adv_call);
	if (x->adv == ADV_REGISTERING) {
		if (e) {
			/* expected while a central is connected: bluetoothd does not advertise
			 * connectable then; retried at the next tick */
			if (!x->adv_error_logged)
				fgw_info("%s: RegisterAdvertisement: %s: %s", x->dev->name, e->name,
					 e->message);
			x->adv_error_logged = true;
			x->adv = ADV_OFF;
			return 0;
		}
		x->adv = ADV_ON;
		x->adv_error_logged = false;
		if (!x->adv_announced)
			fgw_notice("event: advertising, device: %s, adapter: %s, boots: %llu",
				   x->dev->name, x->adapter_path,
				   (unsigned long long) x->dev->boots);
		x->adv_announced = true;
	} else if (x->adv == ADV_UNREGISTERING) {
		/* an error here means bluetoothd dropped it already: off either way */
		x->adv = ADV_OFF;
	}
	/* the refresh: register again right after the unregister finished */
	if (x->adv == ADV_OFF && adv_wanted(x) && !e)
		adv_step(x);
	return 0;
}

static void adv_call(struct periph_dev *x, bool reg)
{
	int r;

	if (reg)
		r = sd_bus_call_method_async(x->p->bus, &x->adv_call, "org.bluez", x->adapter_path,
					     IFACE_ADV_MGR, "RegisterAdvertisement", on_adv_reply,
					     x, "oa{sv}", x->adv_path, 0);
	else
		r = sd_bus_call_method_async(x->p->bus, &x->adv_call, "org.bluez", x->adapter_path,
					     IFACE_ADV_MGR, "UnregisterAdvertisement", on_adv_reply,
					     x, "o", x->adv_path);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "%s: cannot call %sAdvertisement", x->dev->name,
			      reg ? "Register" : "Unregister");
		return;
	}
	x->adv = reg ? ADV_REGISTERING : ADV_UNREGISTERING;
	fgw_debug("%s: advertisement %s", x->dev->name, adv_state_names[x->adv]);
}

/* One step toward what the device wants; never while a call is pending. */
static void adv_step(struct periph_dev *x)
{
	if (x->adv == ADV_REGISTERING || x->adv == ADV_UNREGISTERING)
		return;
	if (adv_wanted(x))
		adv_call(x, x->adv == ADV_OFF); /* ON: unregister, the reply registers again */
	else if (x->adv == ADV_ON)
		adv_call(x, false);
	bus_kick(x->p);
}

static void on_tick(uv_timer_t *t)
{
	struct periph_dev *x = container_of(t, struct periph_dev, tick);

	if (x->app == APP_NONE)
		app_register(x);
	adv_step(x);
	bus_kick(x->p);
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct periph_dev *x = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	x->disc_call = sd_bus_slot_unref(x->disc_call);
	if (e)
		fgw_info("%s: Disconnect of %s: %s: %s", x->dev->name, x->peer, e->name,
			 e->message);
	else
		fgw_info("%s: %s disconnected", x->dev->name, x->peer);
	return 0;
}

void sim_periph_device_link_lost(struct sim_periph *p, struct sim_device *d)
{
	struct periph_dev *x = &p->devs[d->index];
	int r;

	/* The device resets or loses its link: the central must see the connection end, and
	 * nothing advertises until the device is up again (adv_wanted checks at every tick). */
	x->adv_announced = false;
	pg_release_write(x);
	pg_release_notify(x);
	x->notifying = false;
	if (x->peer[0] && !x->disc_call) {
		r = sd_bus_call_method_async(p->bus, &x->disc_call, "org.bluez", x->peer,
					     "org.bluez.Device1", "Disconnect", on_disconnected, x,
					     "");
		if (r < 0)
			fgw_log_errno(LOG_WARNING, r, "%s: cannot disconnect %s", d->name, x->peer);
	}
	/* withdraw the advertisement now if the device is gone (state changes right after) */
	uv_timer_start(&x->tick, on_tick, 0, TICK_MS);
	bus_kick(p);
}

void sim_periph_device_advertising(struct sim_periph *p, struct sim_device *d)
{
	struct periph_dev *x = &p->devs[d->index];

	uv_timer_start(&x->tick, on_tick, 0, TICK_MS);
}

bool sim_periph_notify(struct sim_periph *p, struct sim_device *d, const uint8_t *buf, size_t len)
{
	struct periph_dev *x = &p->devs[d->index];
	size_t frag, off = 0;

	if (!pg_notify_on(x))
		return false;
	/* MTU - 5: bluetoothd may send it as a Handle Multiple Value Notification */
	frag = FGW_MIN((size_t) x->mtu - 5, (size_t) MAX_ATTR_VALUE);
	while (off < len) {
		size_t n = FGW_MIN(frag, len - off);
		if (x->notify_fd >= 0) {
			if (send(x->notify_fd, buf + off, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				fgw_info("%s: notification dropped: %m", d->name);
		} else {
			memcpy(x->value, buf + off, n);
			x->value_len = n;
			pg_emit(x, "Value");
		}
		off += n;
	}
	bus_kick(p);
	return true;
}

/* ---- lifetime ----------------------------------------------------------------------------------
 */

static int on_alias_set(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct periph_dev *x = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	if (e)
		fgw_warning("%s: cannot set the Alias of %s: %s: %s", x->dev->name, x->adapter_path,
			    e->name, e->message);
	return 0;
}

/* bluetoothd serves the adapter's alias as the GAP Device Name, which a central reads after
 * connecting and then shows as the device's Name: make it the advertised name, as a Zephyr
 * device's CONFIG_BT_DEVICE_NAME is both. */
static void set_alias(struct sim_periph *p, struct periph_dev *x)
{
	int r = sd_bus_call_method_async(
	    p->bus, NULL, "org.bluez", x->adapter_path, "org.freedesktop.DBus.Properties", "Set",
	    on_alias_set, x, "ssv", "org.bluez.Adapter1", "Alias", "s", x->dev->adv_name);
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "%s: cannot set the adapter's Alias", x->dev->name);
}

static int dev_export(struct sim_periph *p, struct periph_dev *x)
{
	int r;

	/* the application root is an ObjectManager listing the service and the characteristic;
	 * the advertisement lives beside it, not below it */
	r = sd_bus_add_object_manager(p->bus, &x->om_slot, x->app_path);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &x->svc_slot, x->svc_path, IFACE_SERVICE,
					     pg_svc_vtable, x);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &x->chr_slot, x->chr_path, IFACE_CHAR,
					     pg_char_vtable, x);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &x->adv_slot, x->adv_path, IFACE_ADV,
					     adv_vtable, x);
	return r;
}

int sim_periph_new(struct sim *sim, struct sim_periph **ret)
{
	struct sim_periph *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->sim = sim;
	p->devs = calloc(sim->n_devs, sizeof(*p->devs));
	if (!p->devs) {
		free(p);
		return -ENOMEM;
	}
	/* the real bluetoothd: the system bus (DBUS_SYSTEM_BUS_ADDRESS if set) */
	r = sd_bus_open_system(&p->bus);
	if (r < 0) {
		free(p->devs);
		free(p);
		return r;
	}
	sd_bus_set_method_call_timeout(p->bus, METHOD_TIMEOUT_US);
	p->n_devs = sim->n_devs;
	for (unsigned i = 0; i < p->n_devs; i++) {
		struct periph_dev *x = &p->devs[i];

		x->p = p;
		x->dev = &sim->devs[i];
		x->write_fd = x->notify_fd = -1;
		x->mtu = 23;
		snprintf(x->adapter_path, sizeof(x->adapter_path), "/org/bluez/%s",
			 sim->opt.adapters[i]);
		snprintf(x->app_path, sizeof(x->app_path), "/org/fotagw/sim/dev%04u/app", i);
		snprintf(x->svc_path, sizeof(x->svc_path), "%s/service0", x->app_path);
		snprintf(x->chr_path, sizeof(x->chr_path), "%s/char0", x->svc_path);
		snprintf(x->adv_path, sizeof(x->adv_path), "/org/fotagw/sim/dev%04u/adv", i);
		uv_timer_init(sim->loop, &x->tick);
		x->tick.data = p;
		r = dev_export(p, x);
		if (r < 0) {
			fgw_log_errno(LOG_ERR, r, "%s: cannot export the GATT application",
				      x->dev->name);
			p->n_devs = i + 1;
			sim_busloop_init(&p->bl, sim->loop, p->bus);
			sim_periph_free(p);
			return r;
		}
	}
	sim_busloop_init(&p->bl, sim->loop, p->bus);
	/* before the applications: a central may pair as soon as it sees us */
	p->agent = sim_periph_agent_start(p->bus, sim);
	for (unsigned i = 0; i < p->n_devs; i++) {
		set_alias(p, &p->devs[i]);
		app_register(&p->devs[i]);
		uv_timer_start(&p->devs[i].tick, on_tick, TICK_MS, TICK_MS);
	}
	bus_kick(p);
	fgw_notice("event: periph-ready, devices: %u", p->n_devs);
	*ret = p;
	return 0;
}

static void periph_closed(uv_handle_t *h)
{
	struct sim_periph *p = h->data;

	if (--p->n_closing == 0) {
		free(p->devs);
		free(p);
	}
}

static bool calls_pending(const struct sim_periph *p)
{
	for (unsigned i = 0; i < p->n_devs; i++)
		if (p->devs[i].adv_call || p->devs[i].app_call || p->devs[i].disc_call)
			return true;
	return false;
}

/* Shutdown: the loop is ending, so blocking calls (bounded) are fine here. A GATT application
 * that leaves while a central of the same bluetoothd is still connected to it makes 5.66's GATT
 * client remove the service under that connection, and bluetoothd crashed there (VM tier).
 * So: advertisement withdrawn (through the state machine, never overlapping a pending
 * Register), the central disconnected, the application unregistered, then the bus left. */
static void periph_shutdown(struct sim_periph *p)
{
	uint64_t end = sim_now_us() + 5000000;
	int r;

	if (p->bl.dead)
		return;
	p->closing = true;
	(void) sd_bus_set_method_call_timeout(p->bus, 5000000);
	for (unsigned i = 0; i < p->n_devs; i++) {
		pg_release_write(&p->devs[i]);
		pg_release_notify(&p->devs[i]);
		adv_step(&p->devs[i]);
	}
	while (calls_pending(p) && sim_now_us() < end) {
		r = sd_bus_process(p->bus, NULL);
		if (r < 0)
			return;
		if (r == 0 && sd_bus_wait(p->bus, 100000) < 0)
			return;
	}
	for (unsigned i = 0; i < p->n_devs; i++) {
		struct periph_dev *x = &p->devs[i];
		int connected = 0;

		if (x->peer[0] &&
		    sd_bus_get_property_trivial(p->bus, "org.bluez", x->peer, "org.bluez.Device1",
						"Connected", NULL, 'b', &connected) >= 0 &&
		    connected) {
			fgw_info("%s: disconnecting %s before leaving", x->dev->name, x->peer);
			(void) sd_bus_call_method(p->bus, "org.bluez", x->peer, "org.bluez.Device1",
						  "Disconnect", NULL, NULL, "");
		}
		if (x->app == APP_OK &&
		    sd_bus_call_method(p->bus, "org.bluez", x->adapter_path, IFACE_GATT_MGR,
				       "UnregisterApplication", NULL, NULL, "o", x->app_path) >= 0)
			x->app = APP_NONE;
	}
}

struct sim_periph *sim_periph_free(struct sim_periph *p)
{
	if (!p)
		return NULL;
	periph_shutdown(p);
	p->agent = sim_periph_agent_free(p->agent);
	for (unsigned i = 0; i < p->n_devs; i++) {
		struct periph_dev *x = &p->devs[i];

		pg_release_write(x);
		pg_release_notify(x);
		x->app_call = sd_bus_slot_unref(x->app_call);
		x->adv_call = sd_bus_slot_unref(x->adv_call);
		x->disc_call = sd_bus_slot_unref(x->disc_call);
		/* leaving the bus is enough: bluetoothd drops the application and the
		 * advertisement of a client that disconnects */
		x->adv_slot = sd_bus_slot_unref(x->adv_slot);
		x->chr_slot = sd_bus_slot_unref(x->chr_slot);
		x->svc_slot = sd_bus_slot_unref(x->svc_slot);
		x->om_slot = sd_bus_slot_unref(x->om_slot);
		x->tick.data = p;
		p->n_closing++;
		uv_close((uv_handle_t *) &x->tick, periph_closed);
	}
	if (!p->bl.dead)
		(void) sd_bus_flush(p->bus);
	sd_bus_flush_close_unref(p->bus);
	p->bus = NULL;
	p->n_closing += 3;
	sim_busloop_close(&p->bl, p, periph_closed);
	return NULL;
}
