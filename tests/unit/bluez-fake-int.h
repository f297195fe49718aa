/*
 * Private to the fake bluetoothd: shared by bluez-fake.c (the dbus-daemon, the bus, the devices'
 * state and the test's script) and bluez-fake-bus.c (its objects, signals and answers).
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <systemd/sd-bus.h>

#include "bluez-fake.h"

#define ADAPTER_PATH "/org/bluez/hci0"
#define ADAPTER1_PATH "/org/bluez/hci1"

static inline const char *adapter_path(unsigned idx)
{
	return idx ? ADAPTER1_PATH : ADAPTER_PATH;
}

static inline sd_bus *BUS(struct fake_bluez *f)
{
	return f->bus;
}

static inline void svc_path(struct fake_dev *d, char *buf, size_t n)
{
	snprintf(buf, n, "%s/service0010", d->path);
}

static inline void char_path(struct fake_dev *d, char *buf, size_t n)
{
	snprintf(buf, n, "%s/service0010/char0011", d->path);
}

/* bluez-fake-bus.c */

/* Appends one interface's a{sv}. */
typedef int (*fk_props_fn)(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d);
int fk_device_props(struct fake_bluez *f, sd_bus_message *m, struct fake_dev *d);
void fk_emit_added(struct fake_bluez *f, const char *path, const char *iface, fk_props_fn props,
		   struct fake_dev *d);
void fk_emit_removed(struct fake_bluez *f, const char *path, const char *iface);
void fk_emit_bool(struct fake_bluez *f, const char *path, const char *iface, const char *name,
		  bool v);
void fk_gatt_unexport(struct fake_bluez *f, struct fake_dev *d);
/* Connect() succeeded (also a held one): connected, then resolved unless scripted not to. */
void fk_finish_connect(struct fake_bluez *f, struct fake_dev *d);
/* The AcquireWrite fd is readable. */
void fk_on_wfd(uv_poll_t *h, int status, int events);
/* The bus filter: every method call to org.bluez. */
int fk_on_message(sd_bus_message *m, void *user_data, sd_bus_error *ret_error);

/* bluez-fake.c */

void fk_dev_connected(struct fake_bluez *f, struct fake_dev *d, bool on);
