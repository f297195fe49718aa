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
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "sim.h"

#define SMP_SVC_UUID "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
#define SMP_CHR_UUID "da2e7828-fbce-4e01-ae9e-261174997c48"
#define IFACE_SERVICE "org.bluez.GattService1"
#define IFACE_CHAR "org.bluez.GattCharacteristic1"
#define IFACE_ADV "org.bluez.LEAdvertisement1"
#define IFACE_GATT_MGR "org.bluez.GattManager1"
#define IFACE_ADV_MGR "org.bluez.LEAdvertisingManager1"
#define TICK_MS 1000	   /* advertisement refresh, registration retries */
#define MAX_ATTR_VALUE 512 /* ATT: longest attribute value */
#define METHOD_TIMEOUT_US (25 * 1000000ull)

enum app_state { APP_NONE, APP_REGISTERING, APP_OK };
enum adv_state { ADV_OFF, ADV_REGISTERING, ADV_ON, ADV_UNREGISTERING };

static const char *const adv_state_names[] = {
    [ADV_OFF] = "off",
    [ADV_REGISTERING] = "registering",
    [ADV_ON] = "on",
    [ADV_UNREGISTERING] = "unregistering",
};

struct periph_dev {
	struct sim_periph *p;
	struct sim_device *dev;
	char adapter_path[64];
	char app_path[64], svc_path[80], chr_path[96], adv_path[64];
	sd_bus_slot *om_slot, *svc_slot, *chr_slot, *adv_slot;
	sd_bus_slot *app_call, *adv_call, *disc_call;
	enum app_state app;
	enum adv_state adv;
	bool adv_announced; /* "advertising" logged since the device came up */
	bool app_error_logged, adv_error_logged;
	uv_timer_t tick;
	int write_fd, notify_fd;
	uv_poll_t *write_poll, *notify_poll; /* one per acquisition: closing ones are not reused */
	bool notifying;			     /* StartNotify session */
	uint16_t mtu;			     /* from the options bluetoothd passes */
	char peer[96];			     /* the central's Device1 on our adapter */
	uint64_t writes;
	uint8_t value[MAX_ATTR_VALUE];
	size_t value_len;
};

struct sim_periph {
	struct sim *sim;
	sd_bus *bus;
	struct sim_busloop bl;
	bool closing; /* shutdown: nothing advertises, no new registrations */
	unsigned n_closing;
	struct periph_dev *devs;
	unsigned n_devs;
	void *agent; /* periph-agent.c */
};

static void bus_kick(struct sim_periph *p)
{
	sim_busloop_kick(&p->bl);
}

static void adv_step(struct periph_dev *x);

/* ---- the SMP characteristic ------------------------------------------------------------------ */

/* Reads the options bluetoothd passes to an application: "device" (the peer) and "mtu". */
static int read_options(sd_bus_message *m, struct periph_dev *x)
{
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key, *contents, *s;
		uint16_t mtu;
		char t;

		r = sd_bus_message_read(m, "s", &key);
		if (r < 0)
			return r;
		r = sd_bus_message_peek_type(m, &t, &contents);
		if (r < 0)
			return r;
		if (!strcmp(key, "device") && !strcmp(contents, "o")) {
			r = sd_bus_message_read(m, "v", "o", &s);
			if (r >= 0)
				snprintf(x->peer, sizeof(x->peer), "%s", s);
		} else if (!strcmp(key, "mtu") && !strcmp(contents, "q")) {
			r = sd_bus_message_read(m, "v", "q", &mtu);
			if (r >= 0 && mtu >= 23)
				x->mtu = mtu;
		} else {
			r = sd_bus_message_skip(m, "v");
		}
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

static bool notify_on(const struct periph_dev *x)
{
	return x->notify_fd >= 0 || x->notifying;
}

static int char_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct periph_dev *x = userdata;

	if (!strcmp(prop, "UUID"))
		return sd_bus_message_append(reply, "s", SMP_CHR_UUID);
	if (!strcmp(prop, "Service"))
		return sd_bus_message_append(reply, "o", x->svc_path);
	/* Zephyr's SMP characteristic: write without response and notify, with the
	 * permissions of CONFIG_MCUMGR_TRANSPORT_BT_PERM_RW_{ENCRYPT,AUTHEN} when asked */
	if (!strcmp(prop, "Flags")) {
		if (x->dev->cfg.security == SIM_SEC_AUTHEN)
			return sd_bus_message_append(reply, "as", 4, "write-without-response",
						     "encrypt-authenticated-write", "notify",
						     "encrypt-authenticated-notify");
		if (x->dev->cfg.security == SIM_SEC_ENCRYPT)
			return sd_bus_message_append(reply, "as", 4, "write-without-response",
						     "encrypt-write", "notify", "encrypt-notify");
		return sd_bus_message_append(reply, "as", 2, "write-without-response", "notify");
	}
	if (!strcmp(prop, "Value"))
		return sd_bus_message_append_array(reply, 'y', x->value, x->value_len);
	if (!strcmp(prop, "Notifying"))
		return sd_bus_message_append(reply, "b", notify_on(x));
	/* For a server, the presence of these two tells bluetoothd that Acquire* are supported. */
	if (!strcmp(prop, "WriteAcquired"))
		return sd_bus_message_append(reply, "b", x->write_fd >= 0);
	if (!strcmp(prop, "NotifyAcquired"))
		return sd_bus_message_append(reply, "b", x->notify_fd >= 0);
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static void emit(struct periph_dev *x, const char *prop)
{
	int r = sd_bus_emit_properties_changed(x->p->bus, x->chr_path, IFACE_CHAR, prop, NULL);
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "%s: PropertiesChanged %s failed, ignoring",
			      x->dev->name, prop);
}

static void log_write(struct periph_dev *x, size_t len, const char *how)
{
	x->writes++;
	/* the first writes show what bluetoothd hands an application; then a sample */
	if (x->writes <= 3 || x->writes % 500 == 0)
		fgw_info("%s: write #%llu, %zu bytes, via %s, mtu %u, peer %s", x->dev->name,
			 (unsigned long long) x->writes, len, how, x->mtu, x->peer);
}

static int m_read_value(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted", "Read not permitted");
}

static int m_write_value(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct periph_dev *x = userdata;
	const void *data;
	size_t len;

	if (sd_bus_message_read_array(m, 'y', &data, &len) < 0 || read_options(m, x) < 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InvalidArguments",
						  "Invalid arguments");
	log_write(x, len, "WriteValue");
	sim_device_rx_ble_write(x->dev, data, len);
	return sd_bus_reply_method_return(m, NULL);
}

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

static void release_write(struct periph_dev *x)
{
	if (x->write_fd < 0)
		return;
	uv_close((uv_handle_t *) x->write_poll, poll_closed);
	x->write_poll = NULL;
	close(x->write_fd);
	x->write_fd = -1;
	emit(x, "WriteAcquired");
	fgw_info("%s: write fd released", x->dev->name);
}

static void release_notify(struct periph_dev *x)
{
	if (x->notify_fd < 0)
		return;
	uv_close((uv_handle_t *) x->notify_poll, poll_closed);
	x->notify_poll = NULL;
	close(x->notify_fd);
	x->notify_fd = -1;
	/* notifications off (the central unsubscribed or went away): reassembly restarts */
	sim_device_rx_reset(x->dev);
	emit(x, "NotifyAcquired");
	emit(x, "Notifying");
	fgw_info("%s: notify fd released", x->dev->name);
}

static void on_write_fd(uv_poll_t *h, int status, int events)
{
	struct periph_dev *x = h->data;
	uint8_t buf[4096];

	if (status < 0) {
		release_write(x);
		return;
	}
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(x->write_fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			release_write(x);
			return;
		}
		if (n == 0) {
			release_write(x); /* bluetoothd closed it: the central is gone */
			return;
		}
		log_write(x, (size_t) n, "AcquireWrite fd");
		sim_device_rx_ble_write(x->dev, buf, (size_t) n);
	}
	if (events & UV_DISCONNECT)
		release_write(x);
	bus_kick(x->p);
}

static void on_notify_fd(uv_poll_t *h, int status, int events)
{
	struct periph_dev *x = h->data;
	uint8_t buf[64];

	if (status < 0) {
		release_notify(x);
		return;
	}
	for (;;) {
		ssize_t n = recv(x->notify_fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue; /* bluetoothd has nothing to say on this one */
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		release_notify(x);
		bus_kick(x->p);
		return;
	}
	if (events & UV_DISCONNECT)
		release_notify(x);
	bus_kick(x->p);
}

/* AcquireWrite/AcquireNotify, server side: bluetoothd asks for an fd when a central first
 * writes a command or subscribes; each datagram is one value. */
static int acquire(sd_bus_message *m, struct periph_dev *x, bool write)
{
	int sv[2], r;
	uv_poll_t *h;

	if (read_options(m, x) < 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InvalidArguments",
						  "Invalid arguments");
	if (write && x->write_fd >= 0)
		release_write(x); /* a new link: the old fd's peer is gone */
	if (!write && x->notify_fd >= 0)
		release_notify(x);
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		free(h);
		return -errno;
	}
	uv_poll_init(x->p->sim->loop, h, sv[0]);
	h->data = x;
	uv_poll_start(h, UV_READABLE | UV_DISCONNECT, write ? on_write_fd : on_notify_fd);
	if (write) {
		x->write_fd = sv[0];
		x->write_poll = h;
	} else {
		x->notify_fd = sv[0];
		x->notify_poll = h;
		sim_device_rx_reset(x->dev); /* CCC written: a new subscription */
	}
	fgw_info("%s: %s acquired by bluetoothd, mtu %u, peer %s", x->dev->name,
		 write ? "write" : "notify", x->mtu, x->peer);
	emit(x, write ? "WriteAcquired" : "NotifyAcquired");
	if (!write)
		emit(x, "Notifying");
	r = sd_bus_reply_method_return(m, "hq", sv[1], x->mtu);
	close(sv[1]);
	if (r < 0) {
		if (write)
			release_write(x);
		else
			release_notify(x);
	}
	return r;
}

static int m_acquire_write(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	return acquire(m, userdata, true);
}

static int m_acquire_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	return acquire(m, userdata, false);
}

static int m_start_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct periph_dev *x = userdata;

	if (!x->notifying) {
		x->notifying = true;
		sim_device_rx_reset(x->dev);
		emit(x, "Notifying");
		fgw_info("%s: notifications on (StartNotify)", x->dev->name);
	}
	return sd_bus_reply_method_return(m, NULL);
}

static int m_stop_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct periph_dev *x = userdata;

	if (x->notifying) {
		x->notifying = false;
		sim_device_rx_reset(x->dev);
		emit(x, "Notifying");
		fgw_info("%s: notifications off (StopNotify)", x->dev->name);
	}
	return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable char_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("ReadValue", "a{sv}", "ay", m_read_value, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("WriteValue", "aya{sv}", "", m_write_value, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("AcquireWrite", "a{sv}", "hq", m_acquire_write, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("AcquireNotify", "a{sv}", "hq", m_acquire_notify, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("StartNotify", "", "", m_start_notify, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("StopNotify", "", "", m_stop_notify, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("UUID", "s", char_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Service", "o", char_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Flags", "as", char_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Value", "ay", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Notifying", "b", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("WriteAcquired", "b", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("NotifyAcquired", "b", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_VTABLE_END,
};

static int svc_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		   sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	if (!strcmp(prop, "UUID"))
		return sd_bus_message_append(reply, "s", SMP_SVC_UUID);
	if (!strcmp(prop, "Primary"))
		return sd_bus_message_append(reply, "b", 1);
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static const sd_bus_vtable svc_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("UUID", "s", svc_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Primary", "b", svc_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};

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
	release_write(x);
	release_notify(x);
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

	if (!notify_on(x))
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
			emit(x, "Value");
		}
		off += n;
	}
	bus_kick(p);
	return true;
}

/* ---- sd-bus in libuv (as in bluez.c) ----------------------------------------------------------
 */

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
					     svc_vtable, x);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &x->chr_slot, x->chr_path, IFACE_CHAR,
					     char_vtable, x);
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
		release_write(&p->devs[i]);
		release_notify(&p->devs[i]);
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

		release_write(x);
		release_notify(x);
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
