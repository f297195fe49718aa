/*
 * fotagw-sim --peripheral: the SMP service and characteristic of a device's GATT application,
 * as bluetoothd calls them: WriteValue and the AcquireWrite fd bring requests into the device's
 * pipeline, answers leave through the AcquireNotify fd or StartNotify's PropertiesChanged.
 */
#include "gatt-fd.h"
#include "periph-int.h"

static int take_option(sd_bus_message *m, const char *key, const char *type, void *data)
{
	struct periph_dev *x = data;
	const char *s;
	uint16_t mtu;
	int r;

	if (!strcmp(key, "device") && !strcmp(type, "o")) {
		r = sd_bus_message_read(m, "v", "o", &s);
		if (r >= 0)
			snprintf(x->peer, sizeof(x->peer), "%s", s);
	} else if (!strcmp(key, "mtu") && !strcmp(type, "q")) {
		r = sd_bus_message_read(m, "v", "q", &mtu);
		if (r >= 0 && mtu >= 23)
			x->mtu = mtu;
	} else {
		return 0;
	}
	return r < 0 ? r : 1;
}

/* Reads the options bluetoothd passes to an application: "device" (the peer) and "mtu". */
static int read_options(sd_bus_message *m, struct periph_dev *x)
{
	return gatt_read_options(m, take_option, x);
}

bool pg_notify_on(const struct periph_dev *x)
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
		return sd_bus_message_append(reply, "b", pg_notify_on(x));
	/* For a server, the presence of these two tells bluetoothd that Acquire* are supported. */
	if (!strcmp(prop, "WriteAcquired"))
		return sd_bus_message_append(reply, "b", x->write_fd >= 0);
	if (!strcmp(prop, "NotifyAcquired"))
		return sd_bus_message_append(reply, "b", x->notify_fd >= 0);
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

void pg_emit(struct periph_dev *x, const char *prop)
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

void pg_release_write(struct periph_dev *x)
{
	if (!gatt_fd_close(&x->write_fd, &x->write_poll))
		return;
	pg_emit(x, "WriteAcquired");
	fgw_info("%s: write fd released", x->dev->name);
}

void pg_release_notify(struct periph_dev *x)
{
	if (!gatt_fd_close(&x->notify_fd, &x->notify_poll))
		return;
	/* notifications off (the central unsubscribed or went away): reassembly restarts */
	sim_device_rx_reset(x->dev);
	pg_emit(x, "NotifyAcquired");
	pg_emit(x, "Notifying");
	fgw_info("%s: notify fd released", x->dev->name);
}

static void write_one(void *data, const uint8_t *buf, size_t len)
{
	struct periph_dev *x = data;

	len = FGW_MIN(len, GATT_FD_MAX_VALUE); /* what a datagram socket's reader gets */
	log_write(x, len, "AcquireWrite fd");
	sim_device_rx_ble_write(x->dev, buf, len);
}

static void on_write_fd(uv_poll_t *h, int status, int events)
{
	struct periph_dev *x = h->data;

	/* an error, or bluetoothd closed it: the central is gone */
	if (status < 0 || gatt_fd_read(x->write_fd, write_one, x) < 0) {
		pg_release_write(x);
		return;
	}
	if (events & UV_DISCONNECT)
		pg_release_write(x);
	bus_kick(x->p);
}

static void on_notify_fd(uv_poll_t *h, int status, int events)
{
	struct periph_dev *x = h->data;

	if (status < 0) {
		pg_release_notify(x);
		return;
	}
	/* bluetoothd has nothing to say on this one */
	if (gatt_fd_drain(x->notify_fd) < 0 || (events & UV_DISCONNECT))
		pg_release_notify(x);
	bus_kick(x->p);
}

/* AcquireWrite/AcquireNotify, server side: bluetoothd asks for an fd when a central first
 * writes a command or subscribes; each datagram is one value. */
static int acquire(sd_bus_message *m, struct periph_dev *x, bool write)
{
	uv_loop_t *loop = x->p->sim->loop;
	int peer, r;

	if (read_options(m, x) < 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InvalidArguments",
						  "Invalid arguments");
	if (write && x->write_fd >= 0)
		pg_release_write(x); /* a new link: the old fd's peer is gone */
	if (!write && x->notify_fd >= 0)
		pg_release_notify(x);
	if (write)
		peer = gatt_fd_open(loop, &x->write_fd, &x->write_poll, on_write_fd, x);
	else
		peer = gatt_fd_open(loop, &x->notify_fd, &x->notify_poll, on_notify_fd, x);
	if (peer < 0)
		return peer;
	if (!write)
		sim_device_rx_reset(x->dev); /* CCC written: a new subscription */
	fgw_info("%s: %s acquired by bluetoothd, mtu %u, peer %s", x->dev->name,
		 write ? "write" : "notify", x->mtu, x->peer);
	pg_emit(x, write ? "WriteAcquired" : "NotifyAcquired");
	if (!write)
		pg_emit(x, "Notifying");
	r = sd_bus_reply_method_return(m, "hq", peer, x->mtu);
	close(peer);
	if (r < 0) {
		if (write)
			pg_release_write(x);
		else
			pg_release_notify(x);
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
		pg_emit(x, "Notifying");
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
		pg_emit(x, "Notifying");
		fgw_info("%s: notifications off (StopNotify)", x->dev->name);
	}
	return sd_bus_reply_method_return(m, NULL);
}

const sd_bus_vtable pg_char_vtable[] = {
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

const sd_bus_vtable pg_svc_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("UUID", "s", svc_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Primary", "b", svc_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};
