/* The scripted fake bluetoothd of bluez-fake.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "bluez-fake.h"
#include "bluez-private.h"
#include "util.h"

#define ADAPTER_PATH "/org/bluez/hci0"
#define ADAPTER1_PATH "/org/bluez/hci1"

static const char *adapter_path(unsigned idx)
{
	return idx ? ADAPTER1_PATH : ADAPTER_PATH;
}

static sd_bus *BUS(struct fake_bluez *f)
{
	return f->bus;
}

static int daemon_start(struct fake_bluez *f)
{
	char conf[96], sock[96];
	FILE *fp;
	pid_t pid;

	snprintf(f->dir, sizeof(f->dir), "/tmp/fgw-bluez-XXXXXX");
	if (!mkdtemp(f->dir))
		return -errno;
	snprintf(conf, sizeof(conf), "%s/bus.conf", f->dir);
	snprintf(sock, sizeof(sock), "%s/bus", f->dir);
	snprintf(f->address, sizeof(f->address), "unix:path=%s", sock);
	fp = fopen(conf, "w");
	if (!fp)
		return -errno;
	/* A private bus where anyone may own org.bluez (the system bus allows only root). */
	fprintf(
	    fp,
	    "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
	    " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
	    "<busconfig><listen>unix:path=%s</listen><auth>EXTERNAL</auth>\n"
	    "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>\n"
	    "<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>\n"
	    "</policy></busconfig>\n",
	    sock);
	fclose(fp);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2); /* "Failed to set fd limit" as non-root is noise */
		execlp("dbus-daemon", "dbus-daemon", "--nofork", "--nopidfile", "--nosyslog",
		       "--config-file", conf, (char *) NULL);
		_exit(127);
	}
	f->daemon_pid = pid;
	/* Ready when it accepts a connection (the socket file appears before listen()). */
	for (int i = 0; i < 500; i++) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int ok;

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
		ok = fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return 0;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

/* ---- building messages ---- */

static int append_device_props(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d)
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

static int append_adapter_props(struct fake_bluez *f, sd_bus_message *m)
{
	return sd_bus_message_append(m, "a{sv}", 4, "Address", "s", "00:AA:01:00:00:00", "Powered",
				     "b", f->powered, "Discovering", "b", f->discovering, "Roles",
				     "as", 2, "central", "peripheral");
}

static void svc_path(struct fake_dev *d, char *buf, size_t n)
{
	snprintf(buf, n, "%s/service0010", d->path);
}

static void char_path(struct fake_dev *d, char *buf, size_t n)
{
	snprintf(buf, n, "%s/service0010/char0011", d->path);
}

static int append_service_props(sd_bus_message *m, struct fake_dev *d)
{
	return sd_bus_message_append(m, "a{sv}", 3, "UUID", "s", FGW_BLUEZ_SMP_SERVICE_UUID,
				     "Device", "o", d->path, "Primary", "b", 1);
}

static int append_char_props(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d)
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

static void emit_added(struct fake_bluez *f, const char *path, const char *iface,
		       int (*props)(struct fake_bluez *, sd_bus_message *, struct fake_dev *),
		       struct fake_dev *d)
{
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_signal(BUS(f), &m, "/", DBUS_OM_IFACE, "InterfacesAdded");
	if (r >= 0)
		r = sd_bus_message_append(m, "o", path);
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "{sa{sv}}");
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'e', "sa{sv}");
	if (r >= 0)
		r = sd_bus_message_append(m, "s", iface);
	if (r >= 0)
		r = props(f, m, d);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = sd_bus_send(BUS(f), m, NULL);
	sd_bus_message_unref(m);
}

static int svc_props_cb(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d)
{
	return append_service_props(m, d);
}

static void emit_removed(struct fake_bluez *f, const char *path, const char *iface)
{
	(void) sd_bus_emit_signal(BUS(f), "/", DBUS_OM_IFACE, "InterfacesRemoved", "oas", path, 1,
				  iface);
}

static void emit_bool(struct fake_bluez *f, const char *path, const char *iface, const char *name,
		      bool v)
{
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_signal(BUS(f), &m, path, DBUS_PROPS_IFACE, "PropertiesChanged");
	if (r >= 0)
		r = sd_bus_message_append(m, "sa{sv}as", iface, 1, name, "b", v, 0);
	if (r >= 0)
		(void) sd_bus_send(BUS(f), m, NULL);
	sd_bus_message_unref(m);
}

/* ---- device behaviour ---- */

static void gatt_export(struct fake_bluez *f, struct fake_dev *d)
{
	char sp[160], cp[160];

	if (d->gatt)
		return;
	d->gatt = true;
	svc_path(d, sp, sizeof(sp));
	char_path(d, cp, sizeof(cp));
	emit_added(f, sp, BLUEZ_SERVICE_IFACE, svc_props_cb, d);
	emit_added(f, cp, BLUEZ_CHAR_IFACE, append_char_props, d);
}

static void gatt_unexport(struct fake_bluez *f, struct fake_dev *d)
{
	char sp[160], cp[160];

	if (!d->gatt)
		return;
	d->gatt = false;
	svc_path(d, sp, sizeof(sp));
	char_path(d, cp, sizeof(cp));
	emit_removed(f, cp, BLUEZ_CHAR_IFACE);
	emit_removed(f, sp, BLUEZ_SERVICE_IFACE);
}

static void close_fds(struct fake_dev *d)
{
	if (d->wpoll_on) {
		d->wpoll_on = false;
		uv_close((uv_handle_t *) &d->wpoll, NULL);
	}
	if (d->wfd >= 0)
		close(d->wfd);
	if (d->nfd >= 0)
		close(d->nfd);
	d->wfd = d->nfd = -1;
	d->notifying = false;
}

static void dev_connected(struct fake_bluez *f, struct fake_dev *d, bool on)
{
	if (d->connected == on)
		return;
	d->connected = on;
	if (on) {
		f->connected_now++;
		if (f->connected_now > f->connected_max)
			f->connected_max = f->connected_now;
	} else {
		f->connected_now--;
	}
}

void fake_notify(struct fake_bluez *f, struct fake_dev *d, const uint8_t *data, size_t len)
{
	if (d->nfd >= 0) {
		(void) send(d->nfd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else if (d->notifying) {
		char cp[160];
		sd_bus_message *m = NULL;
		int r;

		char_path(d, cp, sizeof(cp));
		r = sd_bus_message_new_signal(BUS(f), &m, cp, DBUS_PROPS_IFACE,
					      "PropertiesChanged");
		if (r >= 0)
			r = sd_bus_message_append(m, "s", BLUEZ_CHAR_IFACE);
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'a', "{sv}");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'e', "sv");
		if (r >= 0)
			r = sd_bus_message_append(m, "s", "Value");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'v', "ay");
		if (r >= 0)
			r = sd_bus_message_append_array(m, 'y', data, len);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_append(m, "as", 0);
		if (r >= 0)
			(void) sd_bus_send(BUS(f), m, NULL);
		sd_bus_message_unref(m);
	}
}

static void record_frame(struct fake_bluez *f, struct fake_dev *d, const uint8_t *data, size_t len)
{
	if (d->n_frames < FAKE_MAX_FRAMES)
		d->frame_len[d->n_frames] = (uint16_t) len;
	d->n_frames++;
	d->rx_bytes += (unsigned) len;
	if (f->echo)
		fake_notify(f, d, data, len);
}

static void on_wfd(uv_poll_t *h, int status, int events)
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
		r = sd_bus_message_open_container(m, 'e', "oa{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_append(m, "o", adapter_path(a));
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'a', "{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'e', "sa{sv}");
		if (r >= 0)
			r = sd_bus_message_append(m, "s", BLUEZ_ADAPTER_IFACE);
		if (r >= 0)
			r = append_adapter_props(f, m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
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
		r = sd_bus_message_open_container(m, 'e', "oa{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_append(m, "o", d->path);
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'a', "{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'e', "sa{sv}");
		if (r >= 0)
			r = sd_bus_message_append(m, "s", BLUEZ_DEVICE_IFACE);
		if (r >= 0)
			r = append_device_props(f, m, d);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r < 0 || !d->gatt)
			continue;
		svc_path(d, sp, sizeof(sp));
		char_path(d, cp, sizeof(cp));
		r = sd_bus_message_open_container(m, 'e', "oa{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_append(m, "o", sp);
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'a', "{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'e', "sa{sv}");
		if (r >= 0)
			r = sd_bus_message_append(m, "s", BLUEZ_SERVICE_IFACE);
		if (r >= 0)
			r = append_service_props(m, d);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'e', "oa{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_append(m, "o", cp);
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'a', "{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'e', "sa{sv}");
		if (r >= 0)
			r = sd_bus_message_append(m, "s", BLUEZ_CHAR_IFACE);
		if (r >= 0)
			r = append_char_props(f, m, d);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
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
		emit_bool(f, sd_bus_message_get_path(m), BLUEZ_ADAPTER_IFACE, "Discovering", true);
		return sd_bus_reply_method_return(m, NULL);
	}
	if (strcmp(member, "StopDiscovery") == 0) {
		f->discovering = false;
		emit_bool(f, sd_bus_message_get_path(m), BLUEZ_ADAPTER_IFACE, "Discovering", false);
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

static void finish_connect(struct fake_bluez *f, struct fake_dev *d)
{
	dev_connected(f, d, true);
	if (d->no_resolve)
		return;
	gatt_export(f, d);
	d->resolved = true;
	/* 5.66: no Connected=true signal; ServicesResolved=true is. */
	emit_bool(f, d->path, BLUEZ_DEVICE_IFACE, "ServicesResolved", true);
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
		finish_connect(f, d);
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
		uv_poll_start(&d->wpoll, UV_READABLE, on_wfd);
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

static int on_message(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
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

/* ---- life cycle ---- */

static int join_bus(struct fake_bluez *f)
{
	sd_bus *bus = NULL;
	sd_bus_slot *slot = NULL;
	int r;

	r = fgw_bus_open(f->address, "fake-bluez", &bus);
	if (r < 0)
		return r;
	r = sd_bus_add_filter(bus, &slot, on_message, f);
	if (r >= 0)
		r = sd_bus_request_name(bus, BLUEZ_SERVICE, 0);
	if (r >= 0)
		r = fgw_busio_new(f->loop, bus, NULL, NULL, (struct fgw_busio **) &f->io);
	if (r < 0) {
		sd_bus_slot_unref(slot);
		sd_bus_flush_close_unref(bus);
		return r;
	}
	f->bus = bus;
	f->filter_slot = slot;
	f->on_bus = true;
	return 0;
}

int fake_start(struct fake_bluez *f, uv_loop_t *loop)
{
	int r;

	f->loop = loop;
	f->adapter_present = true;
	f->mtu = f->mtu ?: 247;
	f->echo = true;
	for (unsigned i = 0; i < FAKE_MAX_DEVICES; i++)
		f->dev[i].wfd = f->dev[i].nfd = -1;
	r = daemon_start(f);
	if (r < 0)
		return r;
	return join_bus(f);
}

void fake_leave(struct fake_bluez *f)
{
	if (!f->on_bus)
		return;
	for (unsigned i = 0; i < f->n_dev; i++) {
		struct fake_dev *d = &f->dev[i];
		close_fds(d);
		if (d->connected)
			dev_connected(f, d, false);
		d->resolved = false;
		d->gatt = false;
		if (d->connect_call)
			d->connect_call = sd_bus_message_unref(d->connect_call);
	}
	f->discovering = false;
	f->on_bus = false;
	f->filter_slot = sd_bus_slot_unref(f->filter_slot);
	f->io = fgw_busio_free(f->io);
	sd_bus_close(BUS(f));
	f->bus = sd_bus_unref(BUS(f));
}

int fake_return(struct fake_bluez *f)
{
	return join_bus(f);
}

void fake_stop(struct fake_bluez *f)
{
	char path[160];

	if (!f->loop)
		return; /* never started */
	fake_leave(f);
	for (int i = 0; i < 20; i++)
		uv_run(f->loop, UV_RUN_NOWAIT);
	if (f->daemon_pid > 0) {
		kill(f->daemon_pid, SIGTERM);
		waitpid(f->daemon_pid, NULL, 0);
		f->daemon_pid = 0;
	}
	snprintf(path, sizeof(path), "%s/bus.conf", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/bus", f->dir);
	unlink(path);
	rmdir(f->dir);
}

struct fake_dev *fake_add_device(struct fake_bluez *f, const char *addr, const char *name, bool now)
{
	return fake_add_device_on(f, 0, addr, name, now);
}

struct fake_dev *fake_add_device_on(struct fake_bluez *f, unsigned adapter, const char *addr,
				    const char *name, bool now)
{
	struct fake_dev *d = &f->dev[f->n_dev++];
	char u[18];

	d->f = f;
	snprintf(d->addr, sizeof(d->addr), "%s", addr);
	snprintf(u, sizeof(u), "%s", addr);
	for (char *p = u; *p; p++)
		if (*p == ':')
			*p = '_';
	d->adapter = adapter;
	snprintf(d->path, sizeof(d->path), "%s/dev_%s", adapter_path(adapter), u);
	snprintf(d->name, sizeof(d->name), "%s", name ? name : "");
	d->rssi = -50;
	d->wfd = d->nfd = -1;
	if (now)
		fake_export(f, d);
	return d;
}

static int dev_props_cb(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d)
{
	return append_device_props(f, m, d);
}

void fake_export(struct fake_bluez *f, struct fake_dev *d)
{
	if (d->exported)
		return;
	d->exported = true;
	if (f->on_bus)
		emit_added(f, d->path, BLUEZ_DEVICE_IFACE, dev_props_cb, d);
}

void fake_unexport(struct fake_bluez *f, struct fake_dev *d)
{
	if (!d->exported)
		return;
	close_fds(d);
	gatt_unexport(f, d);
	if (d->connected)
		dev_connected(f, d, false);
	d->resolved = false;
	d->exported = false;
	emit_removed(f, d->path, BLUEZ_DEVICE_IFACE);
}

void fake_set_rssi(struct fake_bluez *f, struct fake_dev *d, int16_t rssi)
{
	sd_bus_message *m = NULL;
	int r;

	d->rssi = rssi;
	r = sd_bus_message_new_signal(BUS(f), &m, d->path, DBUS_PROPS_IFACE, "PropertiesChanged");
	if (r >= 0)
		r = sd_bus_message_append(m, "sa{sv}as", BLUEZ_DEVICE_IFACE, 1, "RSSI", "n", rssi,
					  0);
	if (r >= 0)
		(void) sd_bus_send(BUS(f), m, NULL);
	sd_bus_message_unref(m);
}

void fake_set_address(struct fake_bluez *f, struct fake_dev *d, const char *addr, const char *type)
{
	sd_bus_message *m = NULL;
	int r;

	snprintf(d->addr, sizeof(d->addr), "%s", addr);
	r = sd_bus_message_new_signal(BUS(f), &m, d->path, DBUS_PROPS_IFACE, "PropertiesChanged");
	if (r >= 0)
		r = sd_bus_message_append(m, "sa{sv}as", BLUEZ_DEVICE_IFACE, 2, "Address", "s",
					  addr, "AddressType", "s", type, 0);
	if (r >= 0)
		(void) sd_bus_send(BUS(f), m, NULL);
	sd_bus_message_unref(m);
}

void fake_drop(struct fake_bluez *f, struct fake_dev *d, bool signal, bool fds)
{
	if (fds)
		close_fds(d);
	if (!signal)
		return;
	if (!d->connected && !d->resolved)
		return;
	dev_connected(f, d, false);
	d->resolved = false;
	close_fds(d);
	{
		sd_bus_message *m = NULL;
		int r = sd_bus_message_new_signal(BUS(f), &m, d->path, DBUS_PROPS_IFACE,
						  "PropertiesChanged");
		if (r >= 0)
			r = sd_bus_message_append(m, "sa{sv}as", BLUEZ_DEVICE_IFACE, 2,
						  "ServicesResolved", "b", 0, "Connected", "b", 0,
						  0);
		if (r >= 0)
			(void) sd_bus_send(BUS(f), m, NULL);
		sd_bus_message_unref(m);
	}
	gatt_unexport(f, d);
}

void fake_set_powered(struct fake_bluez *f, bool on)
{
	if (f->powered == on)
		return;
	f->powered = on;
	if (!on) {
		for (unsigned i = 0; i < f->n_dev; i++)
			fake_drop(f, &f->dev[i], true, true);
		f->discovering = false;
	}
	emit_bool(f, ADAPTER_PATH, BLUEZ_ADAPTER_IFACE, "Powered", on);
	if (f->second_adapter)
		emit_bool(f, ADAPTER1_PATH, BLUEZ_ADAPTER_IFACE, "Powered", on);
}

void fake_remove_adapter1(struct fake_bluez *f)
{
	if (!f->second_adapter)
		return;
	/* bluetoothd: the adapter's devices go first, then the adapter */
	for (unsigned i = 0; i < f->n_dev; i++)
		if (f->dev[i].adapter == 1)
			fake_unexport(f, &f->dev[i]);
	f->second_adapter = false;
	emit_removed(f, ADAPTER1_PATH, BLUEZ_ADAPTER_IFACE);
}

void fake_finish_held_connect(struct fake_bluez *f, struct fake_dev *d)
{
	if (!d->connect_call)
		return;
	sd_bus_reply_method_return(d->connect_call, NULL);
	d->connect_call = sd_bus_message_unref(d->connect_call);
	d->connect_silent = false;
	finish_connect(f, d);
}

void fake_stall_writes(struct fake_dev *d, bool stall)
{
	if (!d->wpoll_on)
		return;
	if (stall)
		uv_poll_stop(&d->wpoll);
	else
		uv_poll_start(&d->wpoll, UV_READABLE, on_wfd);
}
