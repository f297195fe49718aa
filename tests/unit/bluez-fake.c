/*
 * The scripted fake bluetoothd of bluez-fake.h: the private dbus-daemon, joining and leaving the
 * bus, the devices' state and what the test scripts. Its D-Bus face is bluez-fake-bus.c.
 */
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

#include "bluez-fake-int.h"
#include "bluez-private.h"
#include "util.h"

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
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			f->daemon_pid = 0; /* it exited (not installed, bad config): fail now */
			return -ECHILD;
		}
		usleep(10000); /* a poll step of the bounded wait, 5 s in all */
	}
	return -ETIMEDOUT;
}

/* ---- device state ---- */

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

void fk_dev_connected(struct fake_bluez *f, struct fake_dev *d, bool on)
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

/* ---- life cycle ---- */

static int join_bus(struct fake_bluez *f)
{
	sd_bus *bus = NULL;
	sd_bus_slot *slot = NULL;
	int r;

	r = fgw_bus_open(f->address, "fake-bluez", &bus);
	if (r < 0)
		return r;
	r = sd_bus_add_filter(bus, &slot, fk_on_message, f);
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
			fk_dev_connected(f, d, false);
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

void fake_export(struct fake_bluez *f, struct fake_dev *d)
{
	if (d->exported)
		return;
	d->exported = true;
	if (f->on_bus)
		fk_emit_added(f, d->path, BLUEZ_DEVICE_IFACE, fk_device_props, d);
}

void fake_unexport(struct fake_bluez *f, struct fake_dev *d)
{
	if (!d->exported)
		return;
	close_fds(d);
	fk_gatt_unexport(f, d);
	if (d->connected)
		fk_dev_connected(f, d, false);
	d->resolved = false;
	d->exported = false;
	fk_emit_removed(f, d->path, BLUEZ_DEVICE_IFACE);
}

void fake_set_rssi(struct fake_bluez *f, struct fake_dev *d, int16_t rssi)
{
	d->rssi = rssi;
	(void) sd_bus_emit_signal(BUS(f), d->path, DBUS_PROPS_IFACE, "PropertiesChanged",
				  "sa{sv}as", BLUEZ_DEVICE_IFACE, 1, "RSSI", "n", rssi, 0);
}

void fake_set_address(struct fake_bluez *f, struct fake_dev *d, const char *addr, const char *type)
{
	snprintf(d->addr, sizeof(d->addr), "%s", addr);
	(void) sd_bus_emit_signal(BUS(f), d->path, DBUS_PROPS_IFACE, "PropertiesChanged",
				  "sa{sv}as", BLUEZ_DEVICE_IFACE, 2, "Address", "s", addr,
				  "AddressType", "s", type, 0);
}

void fake_drop(struct fake_bluez *f, struct fake_dev *d, bool signal, bool fds)
{
	if (fds)
		close_fds(d);
	if (!signal)
		return;
	if (!d->connected && !d->resolved)
		return;
	fk_dev_connected(f, d, false);
	d->resolved = false;
	close_fds(d);
	(void) sd_bus_emit_signal(BUS(f), d->path, DBUS_PROPS_IFACE, "PropertiesChanged",
				  "sa{sv}as", BLUEZ_DEVICE_IFACE, 2, "ServicesResolved", "b", 0,
				  "Connected", "b", 0, 0);
	fk_gatt_unexport(f, d);
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
	fk_emit_bool(f, ADAPTER_PATH, BLUEZ_ADAPTER_IFACE, "Powered", on);
	if (f->second_adapter)
		fk_emit_bool(f, ADAPTER1_PATH, BLUEZ_ADAPTER_IFACE, "Powered", on);
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
	fk_emit_removed(f, ADAPTER1_PATH, BLUEZ_ADAPTER_IFACE);
}

void fake_finish_held_connect(struct fake_bluez *f, struct fake_dev *d)
{
	if (!d->connect_call)
		return;
	sd_bus_reply_method_return(d->connect_call, NULL);
	d->connect_call = sd_bus_message_unref(d->connect_call);
	d->connect_silent = false;
	fk_finish_connect(f, d);
}

void fake_stall_writes(struct fake_dev *d, bool stall)
{
	if (!d->wpoll_on)
		return;
	if (stall)
		uv_poll_stop(&d->wpoll);
	else
		uv_poll_start(&d->wpoll, UV_READABLE, fk_on_wfd);
}
