/*
 * The fake bluetoothd's GATT client side for the SMP service: GattService1,
 * GattCharacteristic1 (WriteValue, StartNotify/StopNotify, AcquireWrite/AcquireNotify over
 * SOCK_SEQPACKET) and the CCC GattDescriptor1, and notifications of the device's answers.
 */
#include "bluez-int.h"
#include "gatt-fd.h"

static void release_write(struct sim_ble_dev *x);
static void release_notify(struct sim_ble_dev *x);

static int service_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		       sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;

	if (!strcmp(prop, "UUID"))
		return sd_bus_message_append(reply, "s", SMP_SVC_UUID);
	if (!strcmp(prop, "Device"))
		return sd_bus_message_append(reply, "o", x->path);
	if (!strcmp(prop, "Primary"))
		return sd_bus_message_append(reply, "b", 1);
	if (!strcmp(prop, "Includes"))
		return sd_bus_message_append(reply, "ao", 0);
	if (!strcmp(prop, "Handle"))
		return sd_bus_message_append(reply, "q", (uint16_t) 0x0010);
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static const sd_bus_vtable service_vtable[] = {
    SD_BUS_VTABLE_START(0),
    BZ_PROPERTY_CONST("UUID", "s", service_get),
    BZ_PROPERTY_CONST("Device", "o", service_get),
    BZ_PROPERTY_CONST("Primary", "b", service_get),
    BZ_PROPERTY_CONST("Includes", "ao", service_get),
    BZ_PROPERTY_CONST("Handle", "q", service_get),
    SD_BUS_VTABLE_END,
};

static bool notifying(const struct sim_ble_dev *x)
{
	return x->notify_fd >= 0 || x->notify_clients;
}

static int char_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;

	if (!strcmp(prop, "UUID"))
		return sd_bus_message_append(reply, "s", SMP_CHR_UUID);
	if (!strcmp(prop, "Service"))
		return sd_bus_message_append(reply, "o", x->svc_path);
	if (!strcmp(prop, "Value"))
		return sd_bus_message_append_array(reply, 'y', x->value, x->value_len);
	if (!strcmp(prop, "Notifying"))
		return sd_bus_message_append(reply, "b", notifying(x));
	if (!strcmp(prop, "Flags"))
		return sd_bus_message_append(reply, "as", 2, "write-without-response", "notify");
	if (!strcmp(prop, "WriteAcquired"))
		return sd_bus_message_append(reply, "b", x->write_fd >= 0);
	if (!strcmp(prop, "NotifyAcquired"))
		return sd_bus_message_append(reply, "b", x->notify_fd >= 0);
	if (!strcmp(prop, "Handle"))
		return sd_bus_message_append(reply, "q", (uint16_t) 0x0012);
	if (!strcmp(prop, "MTU"))
		return sd_bus_message_append(reply, "q", x->mtu);
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static int not_connected(sd_bus_message *m)
{
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed", "Not connected");
}

static bool gatt_usable(const struct sim_ble_dev *x)
{
	return (x->conn == CONN_CONNECTED || x->conn == CONN_DISCONNECTING) && x->services_resolved;
}

struct write_options {
	const char **type;
	uint16_t *offset;
};

static int take_option(sd_bus_message *m, const char *key, const char *type, void *data)
{
	struct write_options *o = data;
	int r;

	if (o->type && !strcmp(key, "type") && !strcmp(type, "s"))
		r = sd_bus_message_read(m, "v", "s", o->type);
	else if (o->offset && !strcmp(key, "offset") && !strcmp(type, "q"))
		r = sd_bus_message_read(m, "v", "q", o->offset);
	else
		return 0;
	return r < 0 ? r : 1;
}

/* Skips an a{sv} of options, returning "type" and "offset" when present. */
static int read_options(sd_bus_message *m, const char **type, uint16_t *offset)
{
	struct write_options o = {type, offset};

	return gatt_read_options(m, take_option, &o);
}

static int m_read_value(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;

	if (!gatt_usable(x))
		return not_connected(m);
	/* the SMP characteristic has no read property: ATT Read Not Permitted */
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted", "Read not permitted");
}

static int m_write_value(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	const void *data;
	size_t len;
	const char *type = NULL;
	uint16_t offset = 0;

	if (sd_bus_message_read_array(m, 'y', &data, &len) < 0 ||
	    read_options(m, &type, &offset) < 0)
		return bz_invalid_args(m);
	if (!gatt_usable(x))
		return not_connected(m);
	if (x->write_fd >= 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted",
						  "Write acquired");
	if (type && strcmp(type, "command") && strcmp(type, "request") && strcmp(type, "reliable"))
		return bz_invalid_args(m);
	if (type && strcmp(type, "command"))
		/* a Write Request to a characteristic without the write property */
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted",
						  "Write not permitted");
	if (offset != 0 || len > (size_t) x->mtu - 3)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed",
						  "Failed to initiate write");
	/* a write command on an unsecured link: sent, and dropped by the device (Zephyr) */
	if (bz_sec_ok(x))
		sim_device_rx_ble_write(x->dev, data, len);
	else
		fgw_debug("%s: write command without the required security, dropped", x->dev->name);
	return sd_bus_reply_method_return(m, NULL);
}

static void write_one(void *data, const uint8_t *buf, size_t len)
{
	struct sim_ble_dev *x = data;

	if (len > (size_t) x->mtu - 3 || len > GATT_FD_MAX_VALUE) {
		/* bluetoothd cannot build an ATT PDU that large: dropped silently */
		fgw_debug("%s: %zu-byte write exceeds MTU %u - 3, dropped", x->dev->name, len,
			  x->mtu);
		return;
	}
	if (bz_sec_ok(x))
		sim_device_rx_ble_write(x->dev, buf, len);
	else
		fgw_debug("%s: write command without the required security, dropped", x->dev->name);
}

static void on_write_fd(uv_poll_t *p, int status, int events)
{
	struct sim_ble_dev *x = p->data;

	if (status < 0 || gatt_fd_read(x->write_fd, write_one, x) < 0 || (events & UV_DISCONNECT))
		release_write(x);
}

static void on_notify_fd(uv_poll_t *p, int status, int events)
{
	struct sim_ble_dev *x = p->data;

	/* the client has nothing to say on this one */
	if (status < 0 || gatt_fd_drain(x->notify_fd) < 0 || (events & UV_DISCONNECT))
		release_notify(x);
}

/* Opens the fd pair of an acquisition and answers @m with the client's end. */
static int acquire_open(sd_bus_message *m, struct sim_ble_dev *x, bool write)
{
	uv_loop_t *loop = x->b->sim->loop;
	int peer, r;

	if (write)
		peer = gatt_fd_open(loop, &x->write_fd, &x->write_poll, on_write_fd, x);
	else
		peer = gatt_fd_open(loop, &x->notify_fd, &x->notify_poll, on_notify_fd, x);
	if (peer < 0)
		return peer;
	bz_emit(x->b, x->chr_path, IFACE_CHAR, write ? "WriteAcquired" : "NotifyAcquired");
	if (!write)
		bz_emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
	r = sd_bus_reply_method_return(m, "hq", peer, x->mtu);
	close(peer);
	if (r < 0) {
		if (write)
			release_write(x);
		else
			release_notify(x);
		return r;
	}
	return 1;
}

static void acq_closed(uv_handle_t *h)
{
	free(container_of((uv_timer_t *) h, struct acq_pending, timer));
}

static void acq_end(struct sim_ble_dev *x)
{
	struct acq_pending *a = x->acq_notify;

	x->acq_notify = NULL;
	a->m = sd_bus_message_unref(a->m);
	uv_close((uv_handle_t *) &a->timer, acq_closed);
}

/* The CCC write of a pending AcquireNotify was answered: hand out the fd. */
static void on_acq_written(uv_timer_t *t)
{
	struct acq_pending *a = container_of(t, struct acq_pending, timer);
	struct sim_ble_dev *x = a->x;

	if (acquire_open(a->m, x, false) < 0)
		(void) sd_bus_reply_method_errorf(a->m, "org.bluez.Error.Failed",
						  "Failed allocate notify session");
	acq_end(x);
	bus_kick(x->b);
}

/*
 * The link went down while an AcquireNotify waited for its CCC write. bluetoothd 5.66 keeps
 * the characteristic's notify_io (gatt-client.c, fixed upstream in 476ae809a, BlueZ 5.84):
 * the call is never answered and every later AcquireNotify/StartNotify on it fails with
 * "Notify acquired" until bluetoothd restarts.
 */
void bz_acq_link_lost(struct sim_ble_dev *x)
{
	if (!x->acq_notify)
		return;
	fgw_warning("event: bluez-notify-wedged, device: %s, reason: 'link lost during a pending "
		    "AcquireNotify (BlueZ 5.66 bug)'",
		    x->dev->name);
	x->notify_wedged = true;
	acq_end(x);
}

static int acquire(sd_bus_message *m, struct sim_ble_dev *x, bool write)
{
	struct acq_pending *a;

	if (read_options(m, NULL, NULL) < 0)
		return bz_invalid_args(m);
	if (x->b->sim->opt.no_acquire)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotSupported",
						  "Operation is not supported");
	if (!gatt_usable(x))
		return not_connected(m);
	if (write && x->write_fd >= 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted",
						  "Write acquired");
	if (!write && (x->notify_fd >= 0 || x->acq_notify || x->notify_wedged))
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted",
						  "Notify acquired");
	if (!write && x->notify_clients)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InProgress",
						  "Operation already in progress");
	if (write)
		return acquire_open(m, x, true);
	if (!bz_sec_ok(x)) {
		/* BlueZ 5.66 (VM tier): an AcquireNotify whose CCC write is refused for security
		 * is never answered (and bluetoothd crashes ~30 s later, fixed in 5.84). */
		fgw_warning("event: bluez-acquire-notify-unanswered, device: %s, reason: "
			    "'AcquireNotify on an unsecured link to a protected characteristic'",
			    x->dev->name);
		if (!x->unanswered_acq)
			x->unanswered_acq = sd_bus_message_ref(m);
		return 1;
	}
	/* AcquireNotify answers once the CCC write is acknowledged: a request and its
	 * response, one connection event each way. */
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->x = x;
	a->m = sd_bus_message_ref(m);
	uv_timer_init(x->b->sim->loop, &a->timer);
	uv_timer_start(&a->timer, on_acq_written,
		       (uint64_t) (2 * x->dev->cfg.link.interval_ms + 1.999), 0);
	x->acq_notify = a;
	return 1;
}

static int m_acquire_write(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	return acquire(m, userdata, true);
}

static int m_acquire_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	return acquire(m, userdata, false);
}

static void release_write(struct sim_ble_dev *x)
{
	if (!gatt_fd_close(&x->write_fd, &x->write_poll))
		return;
	if (x->gatt_exported)
		bz_emit(x->b, x->chr_path, IFACE_CHAR, "WriteAcquired");
}

static void release_notify(struct sim_ble_dev *x)
{
	if (!gatt_fd_close(&x->notify_fd, &x->notify_poll))
		return;
	/* notifications off (CCC 0): the device resets its reassembly */
	sim_device_rx_reset(x->dev);
	if (x->gatt_exported) {
		bz_emit(x->b, x->chr_path, IFACE_CHAR, "NotifyAcquired");
		bz_emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
	}
}

struct notify_client **bz_notify_find(struct sim_ble_dev *x, const char *sender)
{
	struct notify_client **p;

	for (p = &x->notify_clients; *p; p = &(*p)->next)
		if (!strcmp((*p)->sender, sender))
			return p;
	return NULL;
}

static int m_start_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	const char *sender = sd_bus_message_get_sender(m);
	struct notify_client *c;
	bool was = notifying(x);

	if (!gatt_usable(x))
		return not_connected(m);
	if (x->notify_fd >= 0 || x->acq_notify || x->notify_wedged)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted",
						  "Notify acquired");
	if (bz_notify_find(x, sender) || x->pending_sec_notify)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InProgress",
						  "Operation already in progress");
	if (!bz_sec_ok(x)) {
		/* The CCC write gets Insufficient Authentication/Encryption; bt_att raises the
		 * security itself (change_security()), which pairs through the default agent. */
		int r = x->pairing ? 0 : bz_pair_begin(x, NULL);
		if (r < 0)
			return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted",
							  "Not paired");
		x->pending_sec_notify = sd_bus_message_ref(m);
		return 1;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	snprintf(c->sender, sizeof(c->sender), "%s", sender);
	c->next = x->notify_clients;
	x->notify_clients = c;
	if (!was)
		bz_emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
	return sd_bus_reply_method_return(m, NULL);
}

void bz_notify_drop(struct sim_ble_dev *x, struct notify_client **p)
{
	struct notify_client *c = *p;

	*p = c->next;
	free(c);
	if (!x->notify_clients) {
		sim_device_rx_reset(x->dev);
		if (x->gatt_exported)
			bz_emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
	}
}

static int m_stop_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	struct notify_client **p = bz_notify_find(x, sd_bus_message_get_sender(m));

	if (!p)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed",
						  "No notify session started");
	bz_notify_drop(x, p);
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
    BZ_PROPERTY_CONST("UUID", "s", char_get),
    BZ_PROPERTY_CONST("Service", "o", char_get),
    BZ_PROPERTY("Value", "ay", char_get),
    BZ_PROPERTY("Notifying", "b", char_get),
    BZ_PROPERTY_CONST("Flags", "as", char_get),
    BZ_PROPERTY("WriteAcquired", "b", char_get),
    BZ_PROPERTY("NotifyAcquired", "b", char_get),
    BZ_PROPERTY_CONST("Handle", "q", char_get),
    BZ_PROPERTY("MTU", "q", char_get),
    SD_BUS_VTABLE_END,
};

static int desc_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	uint8_t ccc[2] = {notifying(x) ? 1 : 0, 0};

	if (!strcmp(prop, "UUID"))
		return sd_bus_message_append(reply, "s", CCC_UUID);
	if (!strcmp(prop, "Characteristic"))
		return sd_bus_message_append(reply, "o", x->chr_path);
	if (!strcmp(prop, "Value"))
		return sd_bus_message_append_array(reply, 'y', ccc, 2);
	if (!strcmp(prop, "Handle"))
		return sd_bus_message_append(reply, "q", (uint16_t) 0x0013);
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static int m_desc_read(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	sd_bus_message *reply = NULL;
	uint8_t ccc[2] = {notifying(x) ? 1 : 0, 0};
	int r;

	if (read_options(m, NULL, NULL) < 0)
		return bz_invalid_args(m);
	if (!gatt_usable(x))
		return not_connected(m);
	r = sd_bus_message_new_method_return(m, &reply);
	if (r >= 0)
		r = sd_bus_message_append_array(reply, 'y', ccc, 2);
	if (r >= 0)
		r = sd_bus_send(NULL, reply, NULL);
	sd_bus_message_unref(reply);
	return r;
}

static const sd_bus_vtable desc_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("ReadValue", "a{sv}", "ay", m_desc_read, SD_BUS_VTABLE_UNPRIVILEGED),
    BZ_PROPERTY_CONST("UUID", "s", desc_get),
    BZ_PROPERTY_CONST("Characteristic", "o", desc_get),
    BZ_PROPERTY("Value", "ay", desc_get),
    BZ_PROPERTY_CONST("Handle", "q", desc_get),
    SD_BUS_VTABLE_END,
};

void bz_gatt_export(struct sim_ble_dev *x)
{
	sd_bus *bus = x->b->bus;

	if (x->gatt_exported)
		return;
	if (sd_bus_add_object_vtable(bus, &x->svc_slot, x->svc_path, IFACE_SERVICE, service_vtable,
				     x) < 0 ||
	    sd_bus_add_object_vtable(bus, &x->chr_slot, x->chr_path, IFACE_CHAR, char_vtable, x) <
		0 ||
	    sd_bus_add_object_vtable(bus, &x->desc_slot, x->desc_path, IFACE_DESC, desc_vtable, x) <
		0) {
		fgw_warning("%s: cannot export GATT objects, ignoring", x->dev->name);
		x->svc_slot = sd_bus_slot_unref(x->svc_slot);
		x->chr_slot = sd_bus_slot_unref(x->chr_slot);
		x->desc_slot = sd_bus_slot_unref(x->desc_slot);
		return;
	}
	x->gatt_exported = true;
	(void) sd_bus_emit_interfaces_added(bus, x->svc_path, IFACE_SERVICE, NULL);
	(void) sd_bus_emit_interfaces_added(bus, x->chr_path, IFACE_CHAR, NULL);
	(void) sd_bus_emit_interfaces_added(bus, x->desc_path, IFACE_DESC, NULL);
}

void bz_gatt_unexport(struct sim_ble_dev *x)
{
	sd_bus *bus = x->b->bus;

	release_write(x);
	release_notify(x);
	while (x->notify_clients) {
		struct notify_client *c = x->notify_clients;
		x->notify_clients = c->next;
		free(c);
	}
	if (!x->gatt_exported)
		return;
	(void) sd_bus_emit_interfaces_removed(bus, x->desc_path, IFACE_DESC, NULL);
	(void) sd_bus_emit_interfaces_removed(bus, x->chr_path, IFACE_CHAR, NULL);
	(void) sd_bus_emit_interfaces_removed(bus, x->svc_path, IFACE_SERVICE, NULL);
	x->desc_slot = sd_bus_slot_unref(x->desc_slot);
	x->chr_slot = sd_bus_slot_unref(x->chr_slot);
	x->svc_slot = sd_bus_slot_unref(x->svc_slot);
	x->gatt_exported = false;
}

bool sim_bluez_notify(struct sim_bluez *b, struct sim_device *d, const uint8_t *buf, size_t len)
{
	struct sim_ble_dev *x = bz_ble_linked(b, d);
	size_t frag, off = 0;

	if (!x || !gatt_usable(x) || !notifying(x))
		return false;
	/* Zephyr sends a response as notifications of at most MTU - 3 bytes. */
	frag = (size_t) x->mtu - 3;
	while (off < len) {
		size_t n = FGW_MIN(frag, len - off);
		if (x->notify_fd >= 0) {
			if (send(x->notify_fd, buf + off, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				fgw_debug("%s: notification dropped: %m", d->name);
		} else {
			memcpy(x->value, buf + off, n);
			x->value_len = n;
			bz_emit(b, x->chr_path, IFACE_CHAR, "Value");
		}
		off += n;
	}
	bus_kick(b);
	return true;
}
