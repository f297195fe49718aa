/*
 * Private to fotagw-sim --peripheral (peripheral.c: registration, advertising, lifetime;
 * periph-gatt.c: the SMP service and characteristic bluetoothd calls into).
 */
#pragma once

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

static inline void bus_kick(struct sim_periph *p)
{
	sim_busloop_kick(&p->bl);
}

bool pg_notify_on(const struct periph_dev *x);
extern const sd_bus_vtable pg_char_vtable[];
extern const sd_bus_vtable pg_svc_vtable[];
void pg_emit(struct periph_dev *x, const char *prop);
void pg_release_notify(struct periph_dev *x);
void pg_release_write(struct periph_dev *x);
