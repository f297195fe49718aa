/*
 * Private to the fake bluetoothd (bluez.c: adapters, discovery, lifetime; bluez-device.c:
 * Device1, connection attempts, pairing, links; bluez-gatt.c: the SMP service, characteristic
 * and CCC descriptor, WriteValue/StartNotify and AcquireWrite/AcquireNotify). Objects, their
 * states and the functions the three files share (bz_ prefix).
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "sim.h"

#define IFACE_ADAPTER "org.bluez.Adapter1"
#define IFACE_DEVICE "org.bluez.Device1"
#define IFACE_SERVICE "org.bluez.GattService1"
#define IFACE_CHAR "org.bluez.GattCharacteristic1"
#define IFACE_DESC "org.bluez.GattDescriptor1"
#define IFACE_SIMCTL "org.fotagw.SimControl1"
#define SMP_SVC_UUID "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
#define SMP_CHR_UUID "da2e7828-fbce-4e01-ae9e-261174997c48"
#define CCC_UUID "00002902-0000-1000-8000-00805f9b34fb"
#define GAP_UUID "00001800-0000-1000-8000-00805f9b34fb"
#define GATT_UUID "00001801-0000-1000-8000-00805f9b34fb"

/* The three kinds of property bluetoothd's objects have, for the vtables. */
#define BZ_PROPERTY_CONST(name, sig, get)                                                          \
	SD_BUS_PROPERTY(name, sig, get, 0, SD_BUS_VTABLE_PROPERTY_CONST)
#define BZ_PROPERTY(name, sig, get)                                                                \
	SD_BUS_PROPERTY(name, sig, get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)
#define BZ_PROPERTY_RW(name, sig, get, set)                                                        \
	SD_BUS_WRITABLE_PROPERTY(name, sig, get, set, 0,                                           \
				 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED)
#define BLUEZ_MTU 517 /* main.conf [GATT] ExchangeMTU */
#define SCAN_TICK_MS 100
#define ADV_REPORT_MS 1000

enum conn_state { CONN_NONE, CONN_CONNECTING, CONN_CONNECTED, CONN_DISCONNECTING };

enum ble_step {
	STEP_NONE,
	STEP_CONNECT_TIMEOUT, /* no advertisement answered the connection attempt */
	STEP_ESTABLISH,	      /* the device answered: link up */
	STEP_RESOLVE,	      /* GATT discovery done */
	STEP_DISCONNECT_DONE, /* Device1.Disconnect finished */
	STEP_LINK_DROP,	      /* supervision timeout after the device went away */
	STEP_LIMIT_FAIL,      /* the controller refused: too many connections */
};

struct notify_client {
	struct notify_client *next;
	char sender[64];
};

struct sim_adapter;

/* One device as one adapter sees it (BlueZ: a Device1 object under that adapter). */
struct sim_ble_dev {
	struct sim_bluez *b;
	struct sim_adapter *ad;
	struct sim_device *dev;
	char path[64], svc_path[80], chr_path[96], desc_path[112];
	char addr[18]; /* the address it was discovered at (an RPA with rpa_rotate_s) */
	struct sim_ble_dev *next_retired; /* an old RPA's object, left to TemporaryTimeout */
	bool exported, gatt_exported;
	sd_bus_slot *dev_slot, *svc_slot, *chr_slot, *desc_slot;
	enum conn_state conn;
	int services_resolved, paired, trusted, blocked;
	bool resolved_once; /* UUIDs lists the services from the first resolution on */
	char alias[32];
	int16_t rssi;
	uint64_t last_seen_us, next_adv_us;
	uint16_t mtu;
	uv_timer_t timer;
	int step;
	sd_bus_message *pending_connect;
	struct sim_ble_dev
	    *next_attempt; /* queued behind the adapter's one LE connection attempt */
	sd_bus_message *pending_disconnect[8]; /* 5.66 queues every Disconnect until the drop */
	struct acq_pending *acq_notify;	       /* AcquireNotify waiting for its CCC write */
	bool notify_wedged; /* bluetoothd 5.66's stale notify_io: "Notify acquired" for good */
	/* security: bluetoothd's bond (paired, bond_level), the device's (dev_bonded), and the
	 * current link's level (link_sec) */
	int bond_level, link_sec;
	bool dev_bonded;
	struct sim_pairing *pairing;	    /* Pair() or an automatic security raise */
	sd_bus_message *pending_pair;	    /* Device1.Pair() waiting for it */
	sd_bus_message *pending_sec_notify; /* StartNotify waiting for a security raise */
	sd_bus_message *unanswered_acq;	    /* AcquireNotify refused for security: never answered */
	int write_fd, notify_fd;
	/* allocated per acquisition: a closing handle must not be reused for the next one */
	uv_poll_t *write_poll, *notify_poll;
	struct notify_client *notify_clients;
	uint8_t value[512];
	size_t value_len;
};

/* An AcquireNotify whose CCC write is on the air (own timer: it outlives a closing link). */
struct acq_pending {
	uv_timer_t timer;
	struct sim_ble_dev *x;
	sd_bus_message *m;
};

struct disc_client {
	struct disc_client *next;
	char sender[64];
	bool active;
	bool has_filter;
	char uuids[8][40];
	unsigned n_uuids;
	bool has_rssi;
	int16_t rssi;
	char pattern[64];
};

/* One controller: hciN's Adapter1, its discovery sessions, links and radio. */
struct sim_adapter {
	struct sim_bluez *b;
	unsigned idx;
	char path[32], addr[18];
	sd_bus_slot *slot;
	bool removed; /* unplugged at run time (SimControl1.RemoveAdapter) */
	int powered, discoverable, pairable;
	char alias[64];
	struct disc_client *clients;
	unsigned n_conn;		/* links up, and the attempt on the air */
	struct sim_radio radio;		/* the controller's airtime, shared by its links */
	struct sim_ble_dev *attempt;	/* the one LE Create Connection outstanding */
	struct sim_ble_dev *attempts_q; /* Connect() calls the kernel keeps pending (FIFO) */
	struct sim_ble_dev *retired;	/* objects of addresses the devices no longer use */
};

struct sim_bluez {
	struct sim *sim;
	sd_bus *bus;
	struct sim_busloop bl;
	uv_timer_t scan_timer;
	sd_bus_slot *om_slot, *match_slot, *name_slot, *ctl_slot;
	struct sim_agents *agents;
	struct sim_adapter ads[SIM_MAX_ADAPTERS];
	unsigned n_ads;
	unsigned n_closing;
};

static inline void bus_kick(struct sim_bluez *b)
{
	sim_busloop_kick(&b->bl);
}

void bz_emit(struct sim_bluez *b, const char *path, const char *iface, const char *prop);
int bz_invalid_args(sd_bus_message *m);
bool bz_dev_advertised_uuid(const struct sim_ble_dev *x, const char *uuid);
bool bz_sec_ok(const struct sim_ble_dev *x);
int bz_pair_begin(struct sim_ble_dev *x, const char *caller);
void bz_acq_link_lost(struct sim_ble_dev *x);
struct notify_client **bz_notify_find(struct sim_ble_dev *x, const char *sender);
void bz_notify_drop(struct sim_ble_dev *x, struct notify_client **p);
struct sim_ble_dev *bz_ble_of(struct sim_adapter *ad, struct sim_device *d);
void bz_ble_export(struct sim_ble_dev *x);
void bz_gatt_export(struct sim_ble_dev *x);
void bz_gatt_unexport(struct sim_ble_dev *x);
void bz_ble_unexport(struct sim_ble_dev *x);
void bz_reply_pending_connect(struct sim_ble_dev *x, const char *error, const char *msg);
void bz_ble_disconnect_now(struct sim_ble_dev *x, const char *why);
struct sim_ble_dev *bz_ble_linked(struct sim_bluez *b, struct sim_device *d);
struct sim_ble_dev *bz_rpa_rotate(struct sim_adapter *ad, struct sim_ble_dev *x, uint64_t now);
void bz_retired_expire(struct sim_adapter *ad, uint64_t now, bool all);
void bz_ble_timer_closed(uv_handle_t *h);
