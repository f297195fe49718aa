/*
 * The fake bluetoothd's GATT client side for the SMP service: GattService1,
 * GattCharacteristic1 (WriteValue, StartNotify/StopNotify, AcquireWrite/AcquireNotify over
 * SOCK_SEQPACKET) and the CCC GattDescriptor1, and notifications of the device's answers.
 */
#include "bluez-int.h"

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
    SD_BUS_PROPERTY("UUID", "s", service_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Device", "o", service_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Primary", "b", service_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Includes", "ao", service_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Handle", "q", service_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
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

/* Skips an a{sv} of options, returning "type" and "offset" when present. */
static int read_options(sd_bus_message *m, const char **type, uint16_t *offset)
{
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key, *contents;
		char t;

		r = sd_bus_message_read(m, "s", &key);
		if (r < 0)
			return r;
		r = sd_bus_message_peek_type(m, &t, &contents);
		if (r < 0)
			return r;
		if (type && !strcmp(key, "type") && !strcmp(contents, "s"))
			r = sd_bus_message_read(m, "v", "s", type);
		else if (offset && !strcmp(key, "offset") && !strcmp(contents, "q"))
			r = sd_bus_message_read(m, "v", "q", offset);
		else
			r = sd_bus_message_skip(m, "v");
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

static void on_write_fd(uv_poll_t *p, int status, int events)
{
	struct sim_ble_dev *x = p->data;
	uint8_t buf[4096];

	if (status < 0) {
		release_write(x);
		return;
	}
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(x->write_fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			release_write(x);
			return;
		}
		if (n == 0) {
			release_write(x); /* the client closed its end */
			return;
		}
		if ((size_t) n > (size_t) x->mtu - 3 || (size_t) n > sizeof(buf)) {
			/* bluetoothd cannot build an ATT PDU that large: dropped silently */
			fgw_debug("%s: %zd-byte write exceeds MTU %u - 3, dropped", x->dev->name, n,
				  x->mtu);
			continue;
		}
		if (bz_sec_ok(x))
			sim_device_rx_ble_write(x->dev, buf, (size_t) n);
		else
			fgw_debug("%s: write command without the required security, dropped",
				  x->dev->name);
	}
	if (events & UV_DISCONNECT)
		release_write(x);
}

static void on_notify_fd(uv_poll_t *p, int status, int events)
{
	struct sim_ble_dev *x = p->data;
	uint8_t buf[64];

	if (status < 0) {
		release_notify(x);
		return;
	}
	for (;;) {
		ssize_t n = recv(x->notify_fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue; /* the client has nothing to say here */
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		release_notify(x);
		return;
	}
	if (events & UV_DISCONNECT)
		release_notify(x);
}

/* Opens the fd pair of an acquisition and answers @m with the client's end. */
static int acquire_open(sd_bus_message *m, struct sim_ble_dev *x, bool write)
{
	int sv[2], r;
	uv_poll_t *poll;

	poll = calloc(1, sizeof(*poll));
	if (!poll)
		return -ENOMEM;
	/* SOCK_NONBLOCK is a file status flag: it travels with the fd to the client. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		free(poll);
		return -errno;
	}
	uv_poll_init(x->b->sim->loop, poll, sv[0]);
	poll->data = x;
	uv_poll_start(poll, UV_READABLE | UV_DISCONNECT, write ? on_write_fd : on_notify_fd);
	if (write) {
		x->write_fd = sv[0];
		x->write_poll = poll;
	} else {
		x->notify_fd = sv[0];
		x->notify_poll = poll;
	}
	bz_emit(x->b, x->chr_path, IFACE_CHAR, write ? "WriteAcquired" : "NotifyAcquired");
	if (!write)
		bz_emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
	r = sd_bus_reply_method_return(m, "hq", sv[1], x->mtu);
	close(sv[1]);
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

static void poll_closed(uv_handle_t *h)
{
	free(h);
}

static void release_write(struct sim_ble_dev *x)
{
	if (x->write_fd < 0)
		return;
	uv_close((uv_handle_t *) x->write_poll, poll_closed);
	x->write_poll = NULL;
	close(x->write_fd);
	x->write_fd = -1;
	if (x->gatt_exported)
		bz_emit(x->b, x->chr_path, IFACE_CHAR, "WriteAcquired");
}

static void release_notify(struct sim_ble_dev *x)
{
	if (x->notify_fd < 0)
		return;
	uv_close((uv_handle_t *) x->notify_poll, poll_closed);
	x->notify_poll = NULL;
	close(x->notify_fd);
	x->notify_fd = -1;
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
    SD_BUS_PROPERTY("UUID", "s", char_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Service", "o", char_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Value", "ay", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Notifying", "b", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Flags", "as", char_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("WriteAcquired", "b", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("NotifyAcquired", "b", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Handle", "q", char_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("MTU", "q", char_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
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
    SD_BUS_PROPERTY("UUID", "s", desc_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Characteristic", "o", desc_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Value", "ay", desc_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Handle", "q", desc_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
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
