/*
 * The fake bluetoothd's D-Bus face (bluez-fake.h): its objects and properties as bluetoothd
 * builds them, and its answers to method calls, as each test scripts them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bluez-fake-int.h"
#include "bluez-private.h"
#include "util.h"

/* ---- objects and properties ---- */

int fk_device_props(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d)
{
	int r = sd_bus_message_open_container(m, 'a', "{sv}");

	if (r >= 0 && !d->no_address_prop)
		r = sd_bus_message_append(m, "{sv}", "Address", "s", d->addr);
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "AddressType", "s", "random");
	if (r >= 0 && d->name[0])
		r = sd_bus_message_append(m, "{sv}", "Name", "s", d->name);
	if (r >= 0 && d->rssi_as_string)
		r = sd_bus_message_append(m, "{sv}", "RSSI", "s", "-40");
	else if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "RSSI", "n", d->rssi);
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "UUIDs", "as", 1, FGW_BLUEZ_SMP_SERVICE_UUID);
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "Connected", "b", d->connected);
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "ServicesResolved", "b", d->resolved);
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "Adapter", "o", adapter_path(d->adapter));
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "ManufacturerData", "a{qv}", 1, 0x59, "ay", 2,
					  0x01, 0x02);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	return r;
}

static int adapter_props(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d)
{
	return sd_bus_message_append(m, "a{sv}", 4, "Address", "s", "00:AA:01:00:00:00", "Powered",
				     "b", f->powered, "Discovering", "b", f->discovering, "Roles",
				     "as", 2, "central", "peripheral");
}

static int service_props(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d)
{
	return sd_bus_message_append(m, "a{sv}", 3, "UUID", "s", FGW_BLUEZ_SMP_SERVICE_UUID,
				     "Device", "o", d->path, "Primary", "b", 1);
}

static int char_props(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d)
{
	char sp[160];
	int r;

	svc_path(d, sp, sizeof(sp));
	r = sd_bus_message_open_container(m, 'a', "{sv}");
	if (r >= 0 && !d->char_without_uuid)
		r = sd_bus_message_append(m, "{sv}", "UUID", "s", FGW_BLUEZ_SMP_CHAR_UUID);
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "Service", "o", sp);
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "Flags", "as", 2, "write-without-response",
					  "notify");
	if (r >= 0 && !f->no_acquire)
		r = sd_bus_message_append(m, "{sv}{sv}", "WriteAcquired", "b", 0, "NotifyAcquired",
					  "b", 0);
	if (r >= 0)
		r = sd_bus_message_append(m, "{sv}", "MTU", "q", f->mtu);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	return r;
}

/* One interface with its properties: {s: a{sv}}. */
static int append_iface(struct fake_bluez *f, sd_bus_message *m, const char *iface,
			fk_props_fn props, struct fake_dev *d)
{
	int r = sd_bus_message_open_container(m, 'e', "sa{sv}");

	if (r >= 0)
		r = sd_bus_message_append(m, "s", iface);
	if (r >= 0)
		r = props(f, m, d);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	return r;
}

/* An object's path and its first interface: o, {s: a{sv}}..., left open for more. */
static int append_path_iface(struct fake_bluez *f, sd_bus_message *m, const char *path,
			     const char *iface, fk_props_fn props, struct fake_dev *d)
{
	int r = sd_bus_message_append(m, "o", path);

	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "{sa{sv}}");
	if (r >= 0)
		r = append_iface(f, m, iface, props, d);
	return r;
}

/* One object of a GetManagedObjects answer: {o: {s: a{sv}}...}, left open for more interfaces
 * when @open. */
static int append_object(struct fake_bluez *f, sd_bus_message *m, const char *path,
			 const char *iface, fk_props_fn props, struct fake_dev *d, bool open)
{
	int r = sd_bus_message_open_container(m, 'e', "oa{sa{sv}}");

	if (r >= 0)
		r = append_path_iface(f, m, path, iface, props, d);
	if (r >= 0 && !open)
		r = sd_bus_message_close_container(m);
	if (r >= 0 && !open)
		r = sd_bus_message_close_container(m);
	return r;
}

void fk_emit_added(struct fake_bluez *f, const char *path, const char *iface, fk_props_fn props,
		   struct fake_dev *d)
{
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_signal(BUS(f), &m, "/", DBUS_OM_IFACE, "InterfacesAdded");
	if (r >= 0)
		r = append_path_iface(f, m, path, iface, props, d);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = sd_bus_send(BUS(f), m, NULL);
	sd_bus_message_unref(m);
}

void fk_emit_removed(struct fake_bluez *f, const char *path, const char *iface)
{
	(void) sd_bus_emit_signal(BUS(f), "/", DBUS_OM_IFACE, "InterfacesRemoved", "oas", path, 1,
				  iface);
}

void fk_emit_bool(struct fake_bluez *f, const char *path, const char *iface, const char *name,
		  bool v)
{
	(void) sd_bus_emit_signal(BUS(f), path, DBUS_PROPS_IFACE, "PropertiesChanged", "sa{sv}as",
				  iface, 1, name, "b", v, 0);
}

static void gatt_export(struct fake_bluez *f, struct fake_dev *d)
{
	char sp[160], cp[160];

	if (d->gatt)
		return;
	d->gatt = true;
	svc_path(d, sp, sizeof(sp));
	char_path(d, cp, sizeof(cp));
	fk_emit_added(f, sp, BLUEZ_SERVICE_IFACE, service_props, d);
	fk_emit_added(f, cp, BLUEZ_CHAR_IFACE, char_props, d);
}

void fk_gatt_unexport(struct fake_bluez *f, struct fake_dev *d)
{
	char sp[160], cp[160];

	if (!d->gatt)
		return;
	d->gatt = false;
	svc_path(d, sp, sizeof(sp));
	char_path(d, cp, sizeof(cp));
	fk_emit_removed(f, cp, BLUEZ_CHAR_IFACE);
	fk_emit_removed(f, sp, BLUEZ_SERVICE_IFACE);
}

/* ---- the write path ---- */

static void record_frame(struct fake_bluez *f, struct fake_dev *d, const uint8_t *data, size_t len)
{
	if (d->n_frames < FAKE_MAX_FRAMES)
		d->frame_len[d->n_frames] = (uint16_t) len;
	d->n_frames++;
	d->rx_bytes += (unsigned) len;
	if (f->echo)
		fake_notify(f, d, data, len);
}

void fk_on_wfd(uv_poll_t *h, int status, int events)
{
	struct fake_dev *d = h->data;
	uint8_t buf[1024];

	for (;;) {
		ssize_t n = recv(d->wfd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			/* the client let the write fd go */
			d->wpoll_on = false;
			uv_close((uv_handle_t *) &d->wpoll, NULL);
			close(d->wfd);
			d->wfd = -1;
			return;
		}
		record_frame(d->f, d, buf, (size_t) n);
	}
}

/* ---- method calls ---- */

static struct fake_dev *dev_by_path(struct fake_bluez *f, const char *path, bool *is_char)
{
	for (unsigned i = 0; i < f->n_dev; i++) {
		struct fake_dev *d = &f->dev[i];
		char cp[160];

		if (!d->exported)
			continue;
		char_path(d, cp, sizeof(cp));
		if (strcmp(path, d->path) == 0) {
			*is_char = false;
			return d;
		}
		if (d->gatt && strcmp(path, cp) == 0) {
			*is_char = true;
			return d;
		}
	}
	return NULL;
}

static int reply_error(sd_bus_message *m, const char *name, const char *msg)
{
	return sd_bus_reply_method_errorf(m, name, "%s", msg);
}

static int om_reply(struct fake_bluez *f, sd_bus_message *call)
{
	sd_bus_message *m = NULL;
	int r;

	f->om_calls++;
	if (f->om_bad_replies > 0) {
		f->om_bad_replies--;
		return sd_bus_reply_method_return(call, "s", "surprise");
	}
	r = sd_bus_message_new_method_return(call, &m);
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "{oa{sa{sv}}}");
	for (unsigned a = 0; r >= 0 && f->adapter_present && a < 1u + f->second_adapter; a++) {
		r = append_object(f, m, adapter_path(a), BLUEZ_ADAPTER_IFACE, adapter_props, NULL,
				  true);
		/* an interface we do not know, to be skipped */
		if (r >= 0)
			r = sd_bus_message_append(m, "{sa{sv}}", "org.bluez.LEAdvertisingManager1",
						  1, "ActiveInstances", "y", 0);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
	}
	for (unsigned i = 0; r >= 0 && i < f->n_dev; i++) {
		struct fake_dev *d = &f->dev[i];
		char sp[160], cp[160];

		if (!d->exported)
			continue;
		r = append_object(f, m, d->path, BLUEZ_DEVICE_IFACE, fk_device_props, d, false);
		if (r < 0 || !d->gatt)
			continue;
		svc_path(d, sp, sizeof(sp));
		char_path(d, cp, sizeof(cp));
		r = append_object(f, m, sp, BLUEZ_SERVICE_IFACE, service_props, d, false);
		if (r >= 0)
			r = append_object(f, m, cp, BLUEZ_CHAR_IFACE, char_props, d, false);
	}
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = sd_bus_send(NULL, m, NULL);
	sd_bus_message_unref(m);
	return r;
}

static int adapter_call(struct fake_bluez *f, sd_bus_message *m, const char *member)
{
	if (strcmp(member, "SetDiscoveryFilter") == 0) {
		const char *key, *contents;
		char type;

		f->filter_transport_le = f->filter_uuid_smp = false;
		f->filter_rssi = 0;
		if (sd_bus_message_enter_container(m, 'a', "{sv}") <= 0)
			return reply_error(m, "org.bluez.Error.InvalidArguments", "bad filter");
		while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
			sd_bus_message_read(m, "s", &key);
			sd_bus_message_peek_type(m, &type, &contents);
			if (strcmp(key, "Transport") == 0 && strcmp(contents, "s") == 0) {
				const char *s;
				sd_bus_message_read(m, "v", "s", &s);
				f->filter_transport_le = strcmp(s, "le") == 0;
			} else if (strcmp(key, "RSSI") == 0 && strcmp(contents, "n") == 0) {
				int16_t n;
				sd_bus_message_read(m, "v", "n", &n);
				f->filter_rssi = n;
			} else if (strcmp(key, "UUIDs") == 0 && strcmp(contents, "as") == 0) {
				char **v = NULL;
				sd_bus_message_enter_container(m, 'v', "as");
				bz_read_strv(m, &v);
				sd_bus_message_exit_container(m);
				f->filter_uuid_smp =
				    bz_strv_contains_case(v, FGW_BLUEZ_SMP_SERVICE_UUID);
				bz_strv_free(v);
			} else {
				sd_bus_message_skip(m, "v");
			}
			sd_bus_message_exit_container(m);
		}
		return sd_bus_reply_method_return(m, NULL);
	}
	if (strcmp(member, "StartDiscovery") == 0) {
		if (!f->powered)
			return reply_error(m, "org.bluez.Error.NotReady", "Resource Not Ready");
		f->n_start_discovery++;
		f->discovering = true;
		fk_emit_bool(f, sd_bus_message_get_path(m), BLUEZ_ADAPTER_IFACE, "Discovering",
			     true);
		return sd_bus_reply_method_return(m, NULL);
	}
	if (strcmp(member, "StopDiscovery") == 0) {
		f->discovering = false;
		fk_emit_bool(f, sd_bus_message_get_path(m), BLUEZ_ADAPTER_IFACE, "Discovering",
			     false);
		return sd_bus_reply_method_return(m, NULL);
	}
	return reply_error(m, "org.freedesktop.DBus.Error.UnknownMethod", member);
}

static int props_call(struct fake_bluez *f, sd_bus_message *m, const char *path, const char *member)
{
	const char *iface, *name;
	bool is_char;
	struct fake_dev *d;

	if (sd_bus_message_read(m, "ss", &iface, &name) < 0)
		return reply_error(m, "org.freedesktop.DBus.Error.InvalidArgs", "args");
	if (strcmp(member, "Set") == 0 &&
	    (strcmp(path, ADAPTER_PATH) == 0 ||
	     (f->second_adapter && strcmp(path, ADAPTER1_PATH) == 0)) &&
	    strcmp(name, "Powered") == 0) {
		int v = 0;
		f->n_set_powered++;
		if (f->refuse_power)
			return reply_error(m, "org.bluez.Error.NotAuthorized", "Not Authorized");
		if (sd_bus_message_read(m, "v", "b", &v) < 0)
			return reply_error(m, "org.freedesktop.DBus.Error.InvalidArgs", "type");
		sd_bus_reply_method_return(m, NULL);
		fake_set_powered(f, v);
		return 1;
	}
	if (strcmp(member, "Get") == 0 && (d = dev_by_path(f, path, &is_char)) && !is_char &&
	    strcmp(name, "ServicesResolved") == 0)
		return sd_bus_reply_method_return(m, "v", "b", d->resolved);
	return reply_error(m, "org.freedesktop.DBus.Error.InvalidArgs", "no such property");
}

void fk_finish_connect(struct fake_bluez *f, struct fake_dev *d)
{
	fk_dev_connected(f, d, true);
	if (d->no_resolve)
		return;
	gatt_export(f, d);
	d->resolved = true;
	/* 5.66: no Connected=true signal; ServicesResolved=true is. */
	fk_emit_bool(f, d->path, BLUEZ_DEVICE_IFACE, "ServicesResolved", true);
}

static int device_call(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d,
		       const char *member)
{
	if (strcmp(member, "Connect") == 0) {
		d->n_connects++;
		if (d->connect_silent) {
			d->connect_call = sd_bus_message_ref(m);
			return 1;
		}
		if (d->connect_busy > 0) {
			d->connect_busy--;
			return reply_error(m, "org.bluez.Error.Failed", "le-connection-busy");
		}
		if (d->connect_error)
			return reply_error(m, d->connect_error, d->connect_message ?: "");
		if (d->connected)
			return reply_error(m, "org.bluez.Error.AlreadyConnected",
					   "Already Connected");
		sd_bus_reply_method_return(m, NULL);
		fk_finish_connect(f, d);
		return 1;
	}
	if (strcmp(member, "Disconnect") == 0) {
		d->n_disconnects++;
		if (d->connect_call) {
			reply_error(d->connect_call, "org.bluez.Error.Failed",
				    "le-connection-abort-by-local");
			d->connect_call = sd_bus_message_unref(d->connect_call);
		}
		fake_drop(f, d, true, true);
		return sd_bus_reply_method_return(m, NULL);
	}
	return reply_error(m, "org.freedesktop.DBus.Error.UnknownMethod", member);
}

static int make_pair(struct fake_bluez *f, struct fake_dev *d, bool write, sd_bus_message *m)
{
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return reply_error(m, "org.bluez.Error.Failed", "socketpair");
	if (write && f->write_sndbuf > 0)
		(void) setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &f->write_sndbuf,
				  sizeof(f->write_sndbuf));
	if (write && f->acquire_bad_signature)
		r = sd_bus_reply_method_return(m, "s", "fd?");
	else if (!write && f->acquire_notify_no_mtu)
		r = sd_bus_reply_method_return(m, "h", sv[1]);
	else
		r = sd_bus_reply_method_return(m, "hq", sv[1], f->mtu);
	close(sv[1]); /* sd-bus sent its own duplicate */
	if (write) {
		d->wfd = sv[0];
		uv_poll_init(f->loop, &d->wpoll, d->wfd);
		d->wpoll.data = d;
		d->wpoll_on = true;
		uv_poll_start(&d->wpoll, UV_READABLE, fk_on_wfd);
	} else {
		d->nfd = sv[0];
	}
	return r;
}

static int char_call(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d,
		     const char *member)
{
	if (strcmp(member, "AcquireWrite") == 0 || strcmp(member, "AcquireNotify") == 0) {
		bool write = member[7] == 'W';
		if (f->no_acquire)
			return reply_error(m, "org.bluez.Error.NotSupported", "Not Supported");
		if (!write && f->acquire_not_connected) {
			/* an earlier user's Disconnect() completing just after our Connect() */
			f->acquire_not_connected--;
			reply_error(m, "org.bluez.Error.Failed", "Not connected");
			fake_drop(f, d, true, true);
			return 1;
		}
		if ((write && d->wfd >= 0) || (!write && d->nfd >= 0))
			return reply_error(m, "org.bluez.Error.NotPermitted", "already acquired");
		return make_pair(f, d, write, m);
	}
	if (strcmp(member, "StartNotify") == 0) {
		d->notifying = true;
		return sd_bus_reply_method_return(m, NULL);
	}
	if (strcmp(member, "StopNotify") == 0) {
		d->notifying = false;
		return sd_bus_reply_method_return(m, NULL);
	}
	if (strcmp(member, "WriteValue") == 0) {
		const void *data;
		size_t len;
		const char *key, *val;
		bool command = false;

		if (d->wfd >= 0)
			return reply_error(m, "org.bluez.Error.NotPermitted", "Write acquired");
		if (sd_bus_message_read_array(m, 'y', &data, &len) < 0)
			return reply_error(m, "org.bluez.Error.InvalidArguments", "value");
		if (sd_bus_message_enter_container(m, 'a', "{sv}") > 0) {
			while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
				sd_bus_message_read(m, "s", &key);
				if (strcmp(key, "type") == 0 &&
				    sd_bus_message_read(m, "v", "s", &val) >= 0)
					command = strcmp(val, "command") == 0;
				else
					sd_bus_message_skip(m, "v");
				sd_bus_message_exit_container(m);
			}
		}
		if (!command)
			d->write_value_not_command = true;
		if (len > (size_t) f->mtu - 3)
			return reply_error(m, "org.bluez.Error.Failed", "Failed to initiate write");
		sd_bus_reply_method_return(m, NULL);
		record_frame(f, d, data, len);
		return 1;
	}
	return reply_error(m, "org.freedesktop.DBus.Error.UnknownMethod", member);
}

int fk_on_message(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fake_bluez *f = user_data;
	const char *path = sd_bus_message_get_path(m), *iface = sd_bus_message_get_interface(m),
		   *member = sd_bus_message_get_member(m);
	struct fake_dev *d;
	bool is_char = false;

	if (!sd_bus_message_is_method_call(m, NULL, NULL) || !path || !member)
		return 0;
	if (!sd_bus_message_get_destination(m) ||
	    strcmp(sd_bus_message_get_destination(m), BLUEZ_SERVICE) != 0)
		return 0;
	if (iface && strcmp(iface, DBUS_OM_IFACE) == 0 && strcmp(path, "/") == 0)
		return om_reply(f, m) < 0 ? 1 : 1;
	if (iface && strcmp(iface, DBUS_PROPS_IFACE) == 0) {
		props_call(f, m, path, member);
		return 1;
	}
	if (f->adapter_present && (strcmp(path, ADAPTER_PATH) == 0 ||
				   (f->second_adapter && strcmp(path, ADAPTER1_PATH) == 0))) {
		adapter_call(f, m, member);
		return 1;
	}
	d = dev_by_path(f, path, &is_char);
	if (!d) {
		reply_error(m, "org.freedesktop.DBus.Error.UnknownObject", path);
		return 1;
	}
	if (is_char)
		char_call(f, m, d, member);
	else
		device_call(f, m, d, member);
	return 1;
}
