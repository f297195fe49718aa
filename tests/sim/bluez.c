/*
 * A fake bluetoothd: owns org.bluez on the bus named by DBUS_SYSTEM_BUS_ADDRESS and exports
 * what BlueZ 5.66 exports to a GATT client (doc/adapter-api.txt, device-api.txt, gatt-api.txt;
 * protocol-notes §8): ObjectManager at /, Adapter1 at /org/bluez/hci0, a Device1 per simulated
 * device once discovered, and after connection the SMP GattService1/GattCharacteristic1 (plus the
 * CCC descriptor) with WriteValue/StartNotify and AcquireWrite/AcquireNotify (SOCK_SEQPACKET).
 */
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

static void bus_kick(struct sim_bluez *b)
{
	sim_busloop_kick(&b->bl);
}

/* ---- small helpers ------------------------------------------------------------------------------
 */

static struct sim_ble_dev *ble_of(struct sim_adapter *ad, struct sim_device *d);

static bool any_discovering(const struct sim_adapter *ad)
{
	for (const struct disc_client *c = ad->clients; c; c = c->next)
		if (c->active)
			return true;
	return false;
}

static void emit(struct sim_bluez *b, const char *path, const char *iface, const char *prop)
{
	int r = sd_bus_emit_properties_changed(b->bus, path, iface, prop, NULL);
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "PropertiesChanged %s.%s failed, ignoring", iface,
			      prop);
}

static void ble_step_at(struct sim_ble_dev *x, int step, double ms);

/* ---- Adapter1
 * ------------------------------------------------------------------------------------ */

static int adapter_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		       sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;

	if (!strcmp(prop, "Address"))
		return sd_bus_message_append(reply, "s", b->addr);
	if (!strcmp(prop, "AddressType"))
		return sd_bus_message_append(reply, "s", "public");
	if (!strcmp(prop, "Name"))
		return sd_bus_message_append(reply, "s", "fotagw-sim");
	if (!strcmp(prop, "Alias"))
		return sd_bus_message_append(reply, "s", b->alias);
	if (!strcmp(prop, "Class"))
		return sd_bus_message_append(reply, "u", 0u);
	if (!strcmp(prop, "Powered"))
		return sd_bus_message_append(reply, "b", b->powered);
	if (!strcmp(prop, "Discoverable"))
		return sd_bus_message_append(reply, "b", b->discoverable);
	if (!strcmp(prop, "DiscoverableTimeout"))
		return sd_bus_message_append(reply, "u", 180u);
	if (!strcmp(prop, "Pairable"))
		return sd_bus_message_append(reply, "b", b->pairable);
	if (!strcmp(prop, "PairableTimeout"))
		return sd_bus_message_append(reply, "u", 0u);
	if (!strcmp(prop, "Discovering"))
		return sd_bus_message_append(reply, "b", any_discovering(b));
	if (!strcmp(prop, "UUIDs"))
		return sd_bus_message_append(reply, "as", 2, GAP_UUID, GATT_UUID);
	if (!strcmp(prop, "Modalias"))
		return sd_bus_message_append(reply, "s", "usb:v1D6Bp0246d0542");
	if (!strcmp(prop, "Roles"))
		return sd_bus_message_append(reply, "as", 2, "central", "peripheral");
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static void ble_disconnect_now(struct sim_ble_dev *x, const char *why);

static int adapter_set(sd_bus *bus, const char *path, const char *iface, const char *prop,
		       sd_bus_message *value, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	const char *s;
	int v, r;

	if (!strcmp(prop, "Alias")) {
		r = sd_bus_message_read(value, "s", &s);
		if (r < 0)
			return r;
		snprintf(b->alias, sizeof(b->alias), "%s", s[0] ? s : "fotagw-sim");
		return 1;
	}
	r = sd_bus_message_read(value, "b", &v);
	if (r < 0)
		return r;
	if (!strcmp(prop, "Powered")) {
		if (b->powered && !v) {
			/* powering off drops every connection and every discovery session */
			for (unsigned i = 0; i < b->b->sim->n_devs; i++) {
				struct sim_ble_dev *x = b->b->sim->devs[i].ble[b->idx];
				if (x && x->conn != CONN_NONE)
					ble_disconnect_now(x, "adapter powered off");
			}
			for (struct disc_client *c = b->clients; c; c = c->next)
				c->active = false;
			emit(b->b, b->path, IFACE_ADAPTER, "Discovering");
		}
		b->powered = v;
	} else if (!strcmp(prop, "Discoverable")) {
		b->discoverable = v;
	} else if (!strcmp(prop, "Pairable")) {
		b->pairable = v;
	}
	return 1;
}

static struct disc_client *client_find(struct sim_adapter *b, const char *sender, bool create)
{
	struct disc_client *c;

	for (c = b->clients; c; c = c->next)
		if (!strcmp(c->sender, sender))
			return c;
	if (!create)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	snprintf(c->sender, sizeof(c->sender), "%s", sender);
	c->next = b->clients;
	b->clients = c;
	return c;
}

static void client_drop(struct sim_adapter *b, struct disc_client *gone)
{
	for (struct disc_client **p = &b->clients; *p; p = &(*p)->next)
		if (*p == gone) {
			*p = gone->next;
			free(gone);
			return;
		}
}

static int m_start_discovery(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	struct disc_client *c;
	bool was = any_discovering(b);

	if (!b->powered)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotReady",
						  "Resource Not Ready");
	c = client_find(b, sd_bus_message_get_sender(m), true);
	if (!c)
		return -ENOMEM;
	if (c->active)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InProgress",
						  "Operation already in progress");
	c->active = true;
	if (!was) {
		emit(b->b, b->path, IFACE_ADAPTER, "Discovering");
		/* what advertises is reported within an advertising interval or so */
		for (unsigned i = 0; i < b->b->sim->n_devs; i++) {
			struct sim_device *d = &b->b->sim->devs[i];
			struct sim_ble_dev *x = sim_device_hears(d, b->idx) ? ble_of(b, d) : NULL;
			if (x)
				x->next_adv_us =
				    sim_now_us() + (uint64_t) (sim_device_rand(d) * 500000.0);
		}
	}
	return sd_bus_reply_method_return(m, NULL);
}

static int m_stop_discovery(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	struct disc_client *c = client_find(b, sd_bus_message_get_sender(m), false);

	if (!b->powered)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotReady",
						  "Resource Not Ready");
	if (!c || !c->active)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed",
						  "No discovery started");
	c->active = false;
	if (!c->has_filter)
		client_drop(b, c);
	if (!any_discovering(b))
		emit(b->b, b->path, IFACE_ADAPTER, "Discovering");
	return sd_bus_reply_method_return(m, NULL);
}

static int invalid_args(sd_bus_message *m)
{
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.InvalidArguments",
					  "Invalid arguments in method call");
}

static int m_set_discovery_filter(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	struct disc_client f = {}, *c;
	bool has_pathloss = false;
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return invalid_args(m);
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key, *contents;
		char type;

		if (sd_bus_message_read(m, "s", &key) < 0 ||
		    sd_bus_message_peek_type(m, &type, &contents) < 0 || type != 'v')
			return invalid_args(m);
		f.has_filter = true;
		if (!strcmp(key, "UUIDs") && !strcmp(contents, "as")) {
			const char *u;
			if (sd_bus_message_enter_container(m, 'v', "as") < 0 ||
			    sd_bus_message_enter_container(m, 'a', "s") < 0)
				return invalid_args(m);
			while ((r = sd_bus_message_read(m, "s", &u)) > 0) {
				if (f.n_uuids < ARRAY_SIZE(f.uuids))
					snprintf(f.uuids[f.n_uuids++], sizeof(f.uuids[0]), "%s", u);
			}
			if (r < 0 || sd_bus_message_exit_container(m) < 0 ||
			    sd_bus_message_exit_container(m) < 0)
				return invalid_args(m);
		} else if (!strcmp(key, "RSSI") && !strcmp(contents, "n")) {
			if (sd_bus_message_read(m, "v", "n", &f.rssi) < 0)
				return invalid_args(m);
			f.has_rssi = true;
		} else if (!strcmp(key, "Pathloss") && !strcmp(contents, "q")) {
			uint16_t pl;
			if (sd_bus_message_read(m, "v", "q", &pl) < 0)
				return invalid_args(m);
			has_pathloss = true;
		} else if (!strcmp(key, "Transport") && !strcmp(contents, "s")) {
			const char *t;
			if (sd_bus_message_read(m, "v", "s", &t) < 0)
				return invalid_args(m);
			if (strcmp(t, "auto") && strcmp(t, "le") && strcmp(t, "bredr"))
				return invalid_args(m);
		} else if ((!strcmp(key, "DuplicateData") || !strcmp(key, "Discoverable")) &&
			   !strcmp(contents, "b")) {
			int v;
			if (sd_bus_message_read(m, "v", "b", &v) < 0)
				return invalid_args(m);
		} else if (!strcmp(key, "Pattern") && !strcmp(contents, "s")) {
			const char *p;
			if (sd_bus_message_read(m, "v", "s", &p) < 0)
				return invalid_args(m);
			snprintf(f.pattern, sizeof(f.pattern), "%s", p);
		} else {
			return invalid_args(m);
		}
		if (sd_bus_message_exit_container(m) < 0)
			return invalid_args(m);
	}
	if (r < 0 || sd_bus_message_exit_container(m) < 0)
		return invalid_args(m);
	if (f.has_rssi && has_pathloss)
		return invalid_args(m);
	c = client_find(b, sd_bus_message_get_sender(m), true);
	if (!c)
		return -ENOMEM;
	f.next = c->next;
	f.active = c->active;
	memcpy(f.sender, c->sender, sizeof(f.sender));
	*c = f;
	return sd_bus_reply_method_return(m, NULL);
}

static int m_get_discovery_filters(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	return sd_bus_reply_method_return(m, "as", 7, "UUIDs", "RSSI", "Pathloss", "Transport",
					  "DuplicateData", "Discoverable", "Pattern");
}

static void ble_unexport(struct sim_ble_dev *x);

static int m_remove_device(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_adapter *b = userdata;
	const char *path;

	if (sd_bus_message_read(m, "o", &path) < 0)
		return invalid_args(m);
	for (unsigned i = 0; i < b->b->sim->n_devs; i++) {
		struct sim_ble_dev *x = b->b->sim->devs[i].ble[b->idx];
		if (x && x->exported && !strcmp(x->path, path)) {
			if (x->conn != CONN_NONE)
				ble_disconnect_now(x, "device removed");
			/* the bond goes with the device object (the device keeps its own) */
			x->paired = 0;
			x->bond_level = 0;
			ble_unexport(x);
			return sd_bus_reply_method_return(m, NULL);
		}
	}
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.DoesNotExist", "Does Not Exist");
}

static const sd_bus_vtable adapter_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("StartDiscovery", "", "", m_start_discovery, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("StopDiscovery", "", "", m_stop_discovery, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("SetDiscoveryFilter", "a{sv}", "", m_set_discovery_filter,
		  SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("GetDiscoveryFilters", "", "as", m_get_discovery_filters,
		  SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("RemoveDevice", "o", "", m_remove_device, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Address", "s", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("AddressType", "s", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Name", "s", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_WRITABLE_PROPERTY("Alias", "s", adapter_get, adapter_set, 0,
			     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Class", "u", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_WRITABLE_PROPERTY("Powered", "b", adapter_get, adapter_set, 0,
			     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_WRITABLE_PROPERTY("Discoverable", "b", adapter_get, adapter_set, 0,
			     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("DiscoverableTimeout", "u", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_WRITABLE_PROPERTY("Pairable", "b", adapter_get, adapter_set, 0,
			     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("PairableTimeout", "u", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Discovering", "b", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("UUIDs", "as", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Modalias", "s", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Roles", "as", adapter_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};

/* ---- Device1
 * ------------------------------------------------------------------------------------- */

static bool dev_advertised_uuid(const struct sim_ble_dev *x, const char *uuid)
{
	return x->dev->cfg.adv_smp_uuid && !strcasecmp(uuid, SMP_SVC_UUID);
}

static int device_get(sd_bus *bus, const char *path, const char *iface, const char *prop,
		      sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	struct sim_device *d = x->dev;

	/* Once bonded, BlueZ knows the IRK and shows the identity address (the path stays). */
	if (!strcmp(prop, "Address"))
		return sd_bus_message_append(reply, "s", x->paired ? d->addr : x->addr);
	if (!strcmp(prop, "AddressType"))
		return sd_bus_message_append(reply, "s",
					     "random"); /* C0:… is a static random address */
	if (!strcmp(prop, "Name"))
		return sd_bus_message_append(reply, "s", d->adv_name);
	if (!strcmp(prop, "Alias"))
		return sd_bus_message_append(reply, "s", x->alias[0] ? x->alias : d->adv_name);
	if (!strcmp(prop, "Appearance"))
		return sd_bus_message_append(reply, "q", (uint16_t) 0);
	if (!strcmp(prop, "Paired"))
		return sd_bus_message_append(reply, "b", x->paired);
	if (!strcmp(prop, "Bonded"))
		return sd_bus_message_append(reply, "b", x->paired);
	if (!strcmp(prop, "Trusted"))
		return sd_bus_message_append(reply, "b", x->trusted);
	if (!strcmp(prop, "Blocked"))
		return sd_bus_message_append(reply, "b", x->blocked);
	if (!strcmp(prop, "LegacyPairing"))
		return sd_bus_message_append(reply, "b", 0);
	if (!strcmp(prop, "RSSI"))
		return sd_bus_message_append(reply, "n", x->rssi);
	if (!strcmp(prop, "Connected"))
		return sd_bus_message_append(
		    reply, "b", x->conn == CONN_CONNECTED || x->conn == CONN_DISCONNECTING);
	if (!strcmp(prop, "UUIDs")) {
		if (x->resolved_once)
			return sd_bus_message_append(reply, "as", 3, GAP_UUID, GATT_UUID,
						     SMP_SVC_UUID);
		if (d->cfg.adv_smp_uuid)
			return sd_bus_message_append(reply, "as", 1, SMP_SVC_UUID);
		return sd_bus_message_append(reply, "as", 0);
	}
	if (!strcmp(prop, "Adapter"))
		return sd_bus_message_append(reply, "o", x->ad->path);
	if (!strcmp(prop, "ServicesResolved"))
		return sd_bus_message_append(reply, "b", x->services_resolved);
	if (!strcmp(prop, "AdvertisingFlags"))
		return sd_bus_message_append_array(reply, 'y', "\x06", 1);
	if (!strcmp(prop, "WakeAllowed"))
		return sd_bus_message_append(reply, "b", 0);
	return sd_bus_error_setf(err, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", prop);
}

static int device_set(sd_bus *bus, const char *path, const char *iface, const char *prop,
		      sd_bus_message *value, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	const char *s;
	int v, r;

	if (!strcmp(prop, "Alias")) {
		r = sd_bus_message_read(value, "s", &s);
		if (r < 0)
			return r;
		snprintf(x->alias, sizeof(x->alias), "%s", s);
		return 1;
	}
	r = sd_bus_message_read(value, "b", &v);
	if (r < 0)
		return r;
	if (!strcmp(prop, "Trusted"))
		x->trusted = v;
	else if (!strcmp(prop, "Blocked"))
		x->blocked = v;
	return 1;
}

/*
 * One LE connection attempt at a time per controller. bluetoothd 5.66 device_connect_le() opens
 * an ATT socket; the kernel's l2cap_chan_connect() on a central that does not advertise calls
 * hci_connect_le_scan(), which only adds the device to the pending LE connections: the second
 * Connect() is not refused (hci_connect_le()'s -EBUSY is for an advertising adapter), it waits
 * until the kernel's single LE Create Connection is done. So attempts queue here, in order.
 */
/* The device answers a connection request: it advertises (up, in range of this adapter) and has
 * no link through another adapter (the NCS sample stops advertising once connected). */
static bool dev_connectable(const struct sim_ble_dev *x)
{
	const struct sim_device *d = x->dev;

	if (!sim_device_reachable(d) || !sim_device_hears(d, x->ad->idx) || d->ble[x->ad->idx] != x)
		return false;
	for (unsigned k = 0; k < SIM_MAX_ADAPTERS; k++)
		if (d->ble[k] && d->ble[k] != x && d->ble[k]->conn != CONN_NONE &&
		    d->ble[k]->conn != CONN_CONNECTING)
			return false;
	return true;
}

static void attempt_start(struct sim_adapter *b, struct sim_ble_dev *x)
{
	b->attempt = x;
	if (b->n_conn >= b->b->sim->opt.max_connections) {
		/* The controller refuses the new link: LE Connection Complete with 0x0d
		 * (Connection Rejected due to Limited Resources); the kernel's bt_to_errno() makes
		 * that ECONNREFUSED and bluetoothd's btd_error_le_errno() "le-connection-refused".
		 */
		ble_step_at(x, STEP_LIMIT_FAIL, 2 * x->dev->cfg.link.interval_ms + 20);
		return;
	}
	b->n_conn++;
	fgw_debug("%s: connecting through %s", x->dev->name, b->path);
	if (dev_connectable(x))
		ble_step_at(x, STEP_ESTABLISH, 2 * x->dev->cfg.link.interval_ms + 20);
	else
		ble_step_at(x, STEP_CONNECT_TIMEOUT, b->b->sim->opt.connect_timeout_ms);
}

static void attempt_queue(struct sim_adapter *b, struct sim_ble_dev *x)
{
	struct sim_ble_dev **p = &b->attempts_q;

	if (!b->attempt) {
		attempt_start(b, x);
		return;
	}
	fgw_notice("event: ble-connect-queued, device: %s, behind: %s", x->dev->name,
		   b->attempt->dev->name);
	while (*p)
		p = &(*p)->next_attempt;
	x->next_attempt = NULL;
	*p = x;
}

/* @x's attempt ended (link up, failed, cancelled) or it left the queue. */
static void attempt_done(struct sim_adapter *b, struct sim_ble_dev *x)
{
	for (struct sim_ble_dev **p = &b->attempts_q; *p; p = &(*p)->next_attempt)
		if (*p == x) {
			*p = x->next_attempt;
			x->next_attempt = NULL;
			break;
		}
	if (b->attempt != x)
		return;
	b->attempt = NULL;
	if (b->attempts_q) {
		struct sim_ble_dev *next = b->attempts_q;
		b->attempts_q = next->next_attempt;
		next->next_attempt = NULL;
		attempt_start(b, next);
	}
}

static int m_connect(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	struct sim_adapter *b = x->ad;

	if (!b->powered)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotReady",
						  "Resource Not Ready");
	if (x->blocked)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed", "Device blocked");
	switch (x->conn) {
	case CONN_CONNECTED:
		if (x->pending_connect) /* still resolving services for another caller */
			return sd_bus_reply_method_errorf(m, "org.bluez.Error.InProgress",
							  "In Progress");
		return sd_bus_reply_method_return(m, NULL);
	case CONN_DISCONNECTING:
		/* bluetoothd 5.66 (VM tier): within the ~2 s a Disconnect lingers the link is
		 * still up, a Connect succeeds on it, and the pending Disconnect still drops it */
		fgw_notice("event: ble-connect-while-disconnecting, device: %s", x->dev->name);
		return sd_bus_reply_method_return(m, NULL);
	case CONN_CONNECTING:
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InProgress", "In Progress");
	case CONN_NONE:
		break;
	}
	x->pending_connect = sd_bus_message_ref(m);
	x->conn = CONN_CONNECTING;
	attempt_queue(b, x);
	return 1;
}

static int m_disconnect(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;

	switch (x->conn) {
	case CONN_NONE:
		return sd_bus_reply_method_return(m, NULL);
	case CONN_CONNECTING:
		ble_disconnect_now(x, "connection attempt cancelled");
		return sd_bus_reply_method_return(m, NULL);
	case CONN_DISCONNECTING:
	case CONN_CONNECTED:
		break;
	}
	/* device.c device_request_disconnect(): every caller is answered once the link is down */
	for (size_t i = 0; i < ARRAY_SIZE(x->pending_disconnect); i++)
		if (!x->pending_disconnect[i]) {
			x->pending_disconnect[i] = sd_bus_message_ref(m);
			break;
		}
	if (x->conn == CONN_DISCONNECTING)
		return 1;
	x->conn = CONN_DISCONNECTING;
	/* bluetoothd lingers before it tears the link down (about 2 s in 5.66). */
	ble_step_at(x, STEP_DISCONNECT_DONE, x->b->sim->opt.disconnect_ms);
	return 1;
}

static bool sec_ok(const struct sim_ble_dev *x)
{
	return x->link_sec >= x->dev->cfg.security;
}

/* SMP over the air: pairing request/response, public keys, confirm, random, DHKey check and
 * key distribution, about a connection event each. */
static double smp_ms(const struct sim_ble_dev *x)
{
	return 8 * x->dev->cfg.link.interval_ms + 10;
}

static void pair_emit(struct sim_ble_dev *x)
{
	if (x->exported)
		(void) sd_bus_emit_properties_changed(x->b->bus, x->path, IFACE_DEVICE, "Paired",
						      "Bonded", "Address", NULL);
}

static void on_paired(void *user_data, int level, const char *err_name, const char *err_msg)
{
	struct sim_ble_dev *x = user_data;
	sd_bus_message *m = x->pending_pair;

	x->pairing = NULL;
	x->pending_pair = NULL;
	if (level >= 0) {
		x->paired = 1;
		x->dev_bonded = true;
		x->bond_level = x->link_sec = level;
		fgw_notice("event: paired, device: %s, level: %s", x->dev->name,
			   level == SIM_SEC_AUTHEN ? "authenticated" : "unauthenticated");
		pair_emit(x);
		if (m)
			(void) sd_bus_reply_method_return(m, NULL);
	} else if (m) {
		(void) sd_bus_reply_method_errorf(m, err_name, "%s", err_msg);
	}
	sd_bus_message_unref(m);
	if (x->pending_sec_notify) {
		/* bt_att's change_security() retried the CCC write at the new level */
		m = x->pending_sec_notify;
		x->pending_sec_notify = NULL;
		if (level >= 0 && sec_ok(x))
			(void) sd_bus_reply_method_return(m, NULL);
		else
			(void) sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed",
							  "Operation failed with ATT error: 0x0e");
		sd_bus_message_unref(m);
	}
	/* a failed SMP procedure ends the link ("Authentication Failure") */
	if (level < 0)
		ble_disconnect_now(x, "pairing failed");
	bus_kick(x->b);
}

static int pair_begin(struct sim_ble_dev *x, const char *caller)
{
	return sim_pair_start(x->b->agents, caller, x->path, x->dev->cfg.passkey, smp_ms(x),
			      on_paired, x, &x->pairing);
}

static int m_pair(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	int r;

	if (x->pairing)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InProgress", "In Progress");
	if (x->paired)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.AlreadyExists",
						  "Already Exists");
	/* Simplification: bluetoothd 5.66 would connect first; fotagw pairs connected links. */
	if (x->conn != CONN_CONNECTED)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.ConnectionAttemptFailed",
						  "Page Timeout");
	r = pair_begin(x, sd_bus_message_get_sender(m));
	if (r < 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed", "%s", strerror(-r));
	x->pending_pair = sd_bus_message_ref(m);
	return 1;
}

/* device.c device_cancel_bonding(): the Pair() caller gets AuthenticationCanceled. */
static void pair_cancel(struct sim_ble_dev *x)
{
	if (!x->pairing)
		return;
	x->pairing = sim_pair_free(x->pairing);
	on_paired(x, -1, "org.bluez.Error.AuthenticationCanceled", "Authentication Canceled");
}

static int m_cancel_pairing(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;

	if (x->pairing) {
		pair_cancel(x);
		return sd_bus_reply_method_return(m, NULL);
	}
	/* cancel_pairing() without a bonding request removes the bond */
	if (x->paired) {
		x->paired = 0;
		pair_emit(x);
	}
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.DoesNotExist", "Does Not Exist");
}

static int m_profile(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotSupported",
					  "Operation is not supported");
}

static const sd_bus_vtable device_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Connect", "", "", m_connect, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("Disconnect", "", "", m_disconnect, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("Pair", "", "", m_pair, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("CancelPairing", "", "", m_cancel_pairing, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("ConnectProfile", "s", "", m_profile, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("DisconnectProfile", "s", "", m_profile, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Address", "s", device_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("AddressType", "s", device_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Name", "s", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_WRITABLE_PROPERTY("Alias", "s", device_get, device_set, 0,
			     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Appearance", "q", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Paired", "b", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Bonded", "b", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_WRITABLE_PROPERTY("Trusted", "b", device_get, device_set, 0,
			     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_WRITABLE_PROPERTY("Blocked", "b", device_get, device_set, 0,
			     SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("LegacyPairing", "b", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("RSSI", "n", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Connected", "b", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("UUIDs", "as", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Adapter", "o", device_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("ServicesResolved", "b", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("AdvertisingFlags", "ay", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("WakeAllowed", "b", device_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_VTABLE_END,
};

/* ---- GATT: service, SMP characteristic, CCC descriptor
 * ------------------------------------------- */

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
		return invalid_args(m);
	if (!gatt_usable(x))
		return not_connected(m);
	if (x->write_fd >= 0)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted",
						  "Write acquired");
	if (type && strcmp(type, "command") && strcmp(type, "request") && strcmp(type, "reliable"))
		return invalid_args(m);
	if (type && strcmp(type, "command"))
		/* a Write Request to a characteristic without the write property */
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NotPermitted",
						  "Write not permitted");
	if (offset != 0 || len > (size_t) x->mtu - 3)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed",
						  "Failed to initiate write");
	/* a write command on an unsecured link: sent, and dropped by the device (Zephyr) */
	if (sec_ok(x))
		sim_device_rx_ble_write(x->dev, data, len);
	else
		fgw_debug("%s: write command without the required security, dropped", x->dev->name);
	return sd_bus_reply_method_return(m, NULL);
}

static void release_write(struct sim_ble_dev *x);
static void release_notify(struct sim_ble_dev *x);

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
		if (sec_ok(x))
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
	emit(x->b, x->chr_path, IFACE_CHAR, write ? "WriteAcquired" : "NotifyAcquired");
	if (!write)
		emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
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
static void acq_link_lost(struct sim_ble_dev *x)
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
		return invalid_args(m);
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
	if (!sec_ok(x)) {
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
		emit(x->b, x->chr_path, IFACE_CHAR, "WriteAcquired");
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
		emit(x->b, x->chr_path, IFACE_CHAR, "NotifyAcquired");
		emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
	}
}

static struct notify_client **notify_find(struct sim_ble_dev *x, const char *sender)
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
	if (notify_find(x, sender) || x->pending_sec_notify)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.InProgress",
						  "Operation already in progress");
	if (!sec_ok(x)) {
		/* The CCC write gets Insufficient Authentication/Encryption; bt_att raises the
		 * security itself (change_security()), which pairs through the default agent. */
		int r = x->pairing ? 0 : pair_begin(x, NULL);
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
		emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
	return sd_bus_reply_method_return(m, NULL);
}

static void notify_drop(struct sim_ble_dev *x, struct notify_client **p)
{
	struct notify_client *c = *p;

	*p = c->next;
	free(c);
	if (!x->notify_clients) {
		sim_device_rx_reset(x->dev);
		if (x->gatt_exported)
			emit(x->b, x->chr_path, IFACE_CHAR, "Notifying");
	}
}

static int m_stop_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_ble_dev *x = userdata;
	struct notify_client **p = notify_find(x, sd_bus_message_get_sender(m));

	if (!p)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed",
						  "No notify session started");
	notify_drop(x, p);
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
		return invalid_args(m);
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

/* ---- object lifetime
 * ----------------------------------------------------------------------------- */

static struct sim_ble_dev *ble_of(struct sim_adapter *ad, struct sim_device *d)
{
	struct sim_bluez *b = ad->b;
	struct sim_ble_dev *x = d->ble[ad->idx];

	if (x || ad->removed)
		return x;
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->b = b;
	x->ad = ad;
	x->dev = d;
	x->write_fd = x->notify_fd = -1;
	x->rssi = (int16_t) sim_device_rssi(d, ad->idx);
	x->mtu = 23;
	sim_device_adv_addr(d, sim_now_us(), x->addr);
	snprintf(x->path, sizeof(x->path), "%s/dev_%.2s_%.2s_%.2s_%.2s_%.2s_%.2s", ad->path,
		 x->addr, x->addr + 3, x->addr + 6, x->addr + 9, x->addr + 12, x->addr + 15);
	snprintf(x->svc_path, sizeof(x->svc_path), "%s/service0010", x->path);
	snprintf(x->chr_path, sizeof(x->chr_path), "%s/char0011", x->svc_path);
	snprintf(x->desc_path, sizeof(x->desc_path), "%s/desc0013", x->chr_path);
	uv_timer_init(b->sim->loop, &x->timer);
	d->ble[ad->idx] = x;
	return x;
}

static void ble_export(struct sim_ble_dev *x)
{
	int r;

	if (x->exported)
		return;
	r = sd_bus_add_object_vtable(x->b->bus, &x->dev_slot, x->path, IFACE_DEVICE, device_vtable,
				     x);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "%s: cannot export Device1, ignoring", x->dev->name);
		return;
	}
	x->exported = true;
	(void) sd_bus_emit_interfaces_added(x->b->bus, x->path, IFACE_DEVICE, NULL);
	fgw_debug("%s: discovered", x->dev->name);
}

static void gatt_export(struct sim_ble_dev *x)
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

static void gatt_unexport(struct sim_ble_dev *x)
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

static void ble_unexport(struct sim_ble_dev *x)
{
	if (!x->exported)
		return;
	gatt_unexport(x);
	(void) sd_bus_emit_interfaces_removed(x->b->bus, x->path, IFACE_DEVICE, NULL);
	x->dev_slot = sd_bus_slot_unref(x->dev_slot);
	x->exported = false;
	fgw_debug("%s: removed from the bus", x->dev->name);
}

static void reply_pending_connect(struct sim_ble_dev *x, const char *error, const char *msg)
{
	sd_bus_message *m = x->pending_connect;

	if (!m)
		return;
	x->pending_connect = NULL;
	if (error)
		(void) sd_bus_reply_method_errorf(m, error, "%s", msg);
	else
		(void) sd_bus_reply_method_return(m, NULL);
	sd_bus_message_unref(m);
}

/* Tears the link down now: properties, GATT objects, fds, pending calls. */
static void ble_disconnect_now(struct sim_ble_dev *x, const char *why)
{
	struct sim_bluez *b = x->b;
	struct sim_adapter *ad = x->ad;
	bool was_connected = x->conn == CONN_CONNECTED || x->conn == CONN_DISCONNECTING;

	if (x->conn == CONN_NONE)
		return;
	fgw_notice("event: ble-disconnected, device: %s, reason: '%s'", x->dev->name, why);
	uv_timer_stop(&x->timer);
	x->step = STEP_NONE;
	/* a queued attempt never counted as a link */
	if ((was_connected || ad->attempt == x) && ad->n_conn > 0)
		ad->n_conn--;
	attempt_done(ad, x);
	sim_radio_leave(&x->dev->link);
	x->conn = CONN_NONE;
	x->link_sec = 0;
	acq_link_lost(x);
	pair_cancel(x);
	if (x->unanswered_acq)
		x->unanswered_acq = sd_bus_message_unref(x->unanswered_acq);
	reply_pending_connect(x, "org.bluez.Error.Failed", "le-connection-abort-by-local");
	if (x->services_resolved) {
		x->services_resolved = 0;
		if (x->exported)
			emit(b, x->path, IFACE_DEVICE, "ServicesResolved");
	}
	/* BlueZ drops the GATT database of an unbonded device on disconnect */
	gatt_unexport(x);
	/* the services stay listed in UUIDs: no signal for them */
	if (was_connected && x->exported)
		emit(b, x->path, IFACE_DEVICE, "Connected");
	sim_device_rx_reset(x->dev);
	for (size_t i = 0; i < ARRAY_SIZE(x->pending_disconnect); i++)
		if (x->pending_disconnect[i]) {
			(void) sd_bus_reply_method_return(x->pending_disconnect[i], NULL);
			x->pending_disconnect[i] = sd_bus_message_unref(x->pending_disconnect[i]);
		}
	x->last_seen_us = sim_now_us();
}

static void ble_step_cb(uv_timer_t *t)
{
	struct sim_ble_dev *x = container_of(t, struct sim_ble_dev, timer);
	struct sim_bluez *b = x->b;
	int step = x->step;

	x->step = STEP_NONE;
	switch ((enum ble_step) step) {
	case STEP_NONE:
		break;
	case STEP_LIMIT_FAIL:
		fgw_notice("event: ble-connect-refused, device: %s, reason: 'connection limit %u'",
			   x->dev->name, b->sim->opt.max_connections);
		x->conn = CONN_NONE;
		attempt_done(x->ad, x);
		reply_pending_connect(x, "org.bluez.Error.Failed", "le-connection-refused");
		break;
	case STEP_CONNECT_TIMEOUT:
		fgw_notice("event: ble-connect-failed, device: %s, reason: 'no answer'",
			   x->dev->name);
		ble_disconnect_now(x, "connection attempt timed out");
		break;
	case STEP_ESTABLISH:
		if (!dev_connectable(x)) {
			ble_step_at(x, STEP_CONNECT_TIMEOUT, b->sim->opt.connect_timeout_ms);
			break;
		}
		x->conn = CONN_CONNECTED;
		x->mtu = (uint16_t) FGW_MIN(BLUEZ_MTU, x->dev->cfg.link.mtu);
		/* device_connect_le(): a paired device is connected at BT_IO_SEC_MEDIUM, so the
		 * link is encrypted with the stored key at once. A device that lost its bond
		 * answers with "PIN or Key Missing": the kernel drops the link and the ATT
		 * connect fails (att_connect_cb -> "le-connection-abort-by-local"). */
		if (x->paired && !x->dev_bonded) {
			fgw_notice("event: encryption-failed, device: %s, reason: 'PIN or Key "
				   "Missing (the device lost its bond)'",
				   x->dev->name);
			x->conn = CONN_CONNECTING;
			ble_disconnect_now(x, "encryption failed: key missing");
			break;
		}
		x->link_sec = x->paired ? x->bond_level : 0;
		sim_link_reset(&x->dev->link, sim_now_us());
		/* LE Connection Complete: the attempt is over, the link takes its share */
		attempt_done(x->ad, x);
		if (sim_radio_join(&x->ad->radio, &x->dev->link) < 0)
			fgw_warning("%s: more links than the radio model holds", x->dev->name);
		sim_device_rx_reset(x->dev);
		ble_export(x);
		/* As measured with bluetoothd 5.66 (docs/simulator.md): Connected=true is signalled
		 * at link-up, Connect replies only once the services are resolved. (The reference
		 * harness once saw no Connected=true signal at all: clients must not wait for it.)
		 */
		emit(b, x->path, IFACE_DEVICE, "Connected");
		fgw_notice("event: ble-connected, device: %s, adapter: %s, mtu: %u", x->dev->name,
			   x->ad->path + 11, x->mtu);
		/* GATT discovery: a few connection events */
		ble_step_at(x, STEP_RESOLVE, 6 * x->dev->cfg.link.interval_ms + 30);
		break;
	case STEP_RESOLVE:
		if (x->conn != CONN_CONNECTED)
			break;
		gatt_export(x);
		x->services_resolved = 1;
		x->resolved_once = true;
		/* one signal, in bluetoothd's order */
		if (sd_bus_emit_properties_changed(b->bus, x->path, IFACE_DEVICE, "UUIDs",
						   "ServicesResolved", NULL) < 0)
			fgw_warning("%s: PropertiesChanged ServicesResolved failed, ignoring",
				    x->dev->name);
		reply_pending_connect(x, NULL, NULL);
		break;
	case STEP_DISCONNECT_DONE:
		ble_disconnect_now(x, "Disconnect() by client");
		break;
	case STEP_LINK_DROP:
		ble_disconnect_now(x, "supervision timeout");
		break;
	}
	bus_kick(b);
}

static void ble_step_at(struct sim_ble_dev *x, int step, double ms)
{
	x->step = step;
	uv_timer_start(&x->timer, ble_step_cb, ms < 0 ? 0 : (uint64_t) (ms + 0.999), 0);
}

void sim_bluez_device_link_lost(struct sim_bluez *b, struct sim_device *d)
{
	for (unsigned k = 0; k < b->n_ads; k++) {
		struct sim_ble_dev *x = d->ble[k];

		if (!x || x->conn != CONN_CONNECTED)
			continue;
		/* The central notices only when the supervision timeout expires. */
		ble_step_at(x, STEP_LINK_DROP, d->cfg.link.supervision_ms);
	}
}

void sim_bluez_device_advertising(struct sim_bluez *b, struct sim_device *d)
{
	/* bond_lost: this boot comes up without the bonds (a reflash, a factory reset) */
	for (unsigned k = 0; k < b->n_ads; k++) {
		struct sim_ble_dev *bx = d->ble[k];
		if (bx && bx->dev_bonded && d->cfg.bond_lost) {
			fgw_notice("event: bond-lost, device: %s", d->name);
			for (unsigned j = 0; j < b->n_ads; j++)
				if (d->ble[j])
					d->ble[j]->dev_bonded = false;
			d->cfg.bond_lost = false;
		}
	}
	for (unsigned k = 0; k < b->n_ads; k++) {
		struct sim_ble_dev *x;

		if (b->ads[k].removed || !sim_device_hears(d, k))
			continue;
		x = ble_of(&b->ads[k], d);
		if (!x)
			continue;
		x->next_adv_us = sim_now_us();
		if (x->conn == CONN_CONNECTING && x->ad->attempt == x &&
		    x->step == STEP_CONNECT_TIMEOUT)
			ble_step_at(x, STEP_ESTABLISH, 2 * d->cfg.link.interval_ms + 20);
	}
}

/* The device's link: the Device1 of the adapter it is connected through. */
static struct sim_ble_dev *ble_linked(struct sim_bluez *b, struct sim_device *d)
{
	for (unsigned k = 0; k < b->n_ads; k++)
		if (d->ble[k] && d->ble[k]->conn != CONN_NONE && d->ble[k]->conn != CONN_CONNECTING)
			return d->ble[k];
	return NULL;
}

bool sim_bluez_notify(struct sim_bluez *b, struct sim_device *d, const uint8_t *buf, size_t len)
{
	struct sim_ble_dev *x = ble_linked(b, d);
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
			emit(b, x->chr_path, IFACE_CHAR, "Value");
		}
		off += n;
	}
	bus_kick(b);
	return true;
}

/* ---- discovery
 * ----------------------------------------------------------------------------------- */

static bool filter_match(const struct disc_client *c, const struct sim_ble_dev *x)
{
	const struct sim_device *d = x->dev;

	if (!c->has_filter)
		return true;
	/* The kernel applies bluetoothd's merged RSSI threshold (mgmt.c is_filter_match): with
	 * a threshold, a report whose RSSI is invalid (127) is dropped as well. */
	if (c->has_rssi && (x->rssi == 127 || x->rssi < c->rssi))
		return false;
	if (c->pattern[0] && strncasecmp(x->addr, c->pattern, strlen(c->pattern)) != 0 &&
	    strncmp(d->adv_name, c->pattern, strlen(c->pattern)) != 0)
		return false;
	if (c->n_uuids) {
		bool any = false;
		for (unsigned i = 0; i < c->n_uuids; i++)
			any = any || dev_advertised_uuid(x, c->uuids[i]);
		if (!any)
			return false;
	}
	return true;
}

static bool wanted(const struct sim_adapter *b, const struct sim_ble_dev *x)
{
	for (const struct disc_client *c = b->clients; c; c = c->next)
		if (c->active && filter_match(c, x))
			return true;
	return false;
}

/*
 * rpa_rotate_s: the device advertises from a new resolvable private address. Without the IRK
 * (not bonded through this adapter) BlueZ sees a new device: the old object stays until
 * TemporaryTimeout and a new Device1 appears. A bonded device is resolved with its IRK and keeps
 * its object. A connected device does not advertise, so nothing changes until it is free.
 */
static struct sim_ble_dev *rpa_rotate(struct sim_adapter *ad, struct sim_ble_dev *x, uint64_t now)
{
	struct sim_device *d = x->dev;
	char cur[18];

	if (d->cfg.rpa_rotate_s <= 0 || x->paired || x->conn != CONN_NONE || x->pending_connect)
		return x;
	sim_device_adv_addr(d, now, cur);
	if (!strcmp(cur, x->addr))
		return x;
	fgw_notice("event: rpa-rotated, device: %s, adapter: %s, address: %s", d->name,
		   ad->path + 11, cur);
	d->ble[ad->idx] = NULL;
	x->next_retired = ad->retired;
	ad->retired = x;
	return ble_of(ad, d);
}

static void ble_timer_closed(uv_handle_t *h);

/* Objects of old RPAs: gone after TemporaryTimeout like any device nobody sees. */
static void retired_expire(struct sim_adapter *ad, uint64_t now, bool all)
{
	for (struct sim_ble_dev **p = &ad->retired; *p;) {
		struct sim_ble_dev *x = *p;

		if (!all && (x->conn != CONN_NONE ||
			     now - x->last_seen_us <=
				 (uint64_t) (ad->b->sim->opt.temporary_timeout_ms * 1000.0))) {
			p = &x->next_retired;
			continue;
		}
		*p = x->next_retired;
		ble_disconnect_now(x, "shutdown");
		reply_pending_connect(x, "org.bluez.Error.Failed", "le-connection-abort-by-local");
		ble_unexport(x);
		uv_close((uv_handle_t *) &x->timer, ble_timer_closed);
	}
}

static void scan_adapter(struct sim_adapter *ad, uint64_t now)
{
	struct sim_bluez *b = ad->b;
	bool discovering = ad->powered && any_discovering(ad);

	for (unsigned i = 0; i < b->sim->n_devs; i++) {
		struct sim_device *d = &b->sim->devs[i];
		struct sim_ble_dev *x = d->ble[ad->idx];
		bool heard = sim_device_hears(d, ad->idx);

		if (discovering && heard && !x)
			x = ble_of(ad, d);
		if (!x)
			continue;
		x = rpa_rotate(ad, x, now);
		/* An advertising device (up, not connected) is seen about once a second, by each
		 * adapter in range with its own RSSI. */
		if (discovering && heard && sim_device_reachable(d) && x->conn == CONN_NONE &&
		    !ble_linked(b, d) && now >= x->next_adv_us) {
			int mean = sim_device_rssi(d, ad->idx);
			int16_t rssi = (int16_t) (mean + (int) (sim_device_rand(d) * 13) - 6);

			if (mean == 127)
				rssi = 127; /* "not available" in every report */

			x->next_adv_us =
			    now + ADV_REPORT_MS * 1000 + (uint64_t) (sim_device_rand(d) * 200000.0);
			x->rssi = rssi;
			if (!wanted(ad, x))
				continue;
			x->last_seen_us = now;
			if (!x->exported)
				ble_export(x);
			else
				emit(b, x->path, IFACE_DEVICE, "RSSI");
		}
		/* Unpaired devices nobody has seen for TemporaryTimeout disappear. */
		if (x->exported && x->conn == CONN_NONE && !x->paired &&
		    now - x->last_seen_us > (uint64_t) (b->sim->opt.temporary_timeout_ms * 1000.0))
			ble_unexport(x);
	}
}

static void scan_tick(uv_timer_t *t)
{
	struct sim_bluez *b = container_of(t, struct sim_bluez, scan_timer);
	uint64_t now = sim_now_us();

	for (unsigned k = 0; k < b->n_ads; k++) {
		if (!b->ads[k].removed)
			scan_adapter(&b->ads[k], now);
		retired_expire(&b->ads[k], now, b->ads[k].removed);
	}
	bus_kick(b);
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_bluez *b = userdata;
	const char *name, *old, *new;
	struct disc_client *c;

	if (sd_bus_message_read(m, "sss", &name, &old, &new) < 0 || new[0] || name[0] != ':')
		return 0;
	/* a client left the bus: its discovery sessions and notify sessions end */
	for (unsigned k = 0; k < b->n_ads; k++) {
		struct sim_adapter *ad = &b->ads[k];

		c = client_find(ad, name, false);
		if (c) {
			bool was = any_discovering(ad);
			client_drop(ad, c);
			if (was && !any_discovering(ad) && !ad->removed)
				emit(b, ad->path, IFACE_ADAPTER, "Discovering");
		}
		for (unsigned i = 0; i < b->sim->n_devs; i++) {
			struct sim_ble_dev *x = b->sim->devs[i].ble[k];
			struct notify_client **p = x ? notify_find(x, name) : NULL;
			if (p)
				notify_drop(x, p);
		}
	}
	sim_agents_client_gone(b->agents, name);
	return 0;
}

/* ---- test control: unplugging an adapter
 * ------------------------------------------------------------- */

/*
 * org.fotagw.SimControl1.RemoveAdapter("hciN"): the controller is unplugged. As bluetoothd does
 * when the kernel reports the index removed (adapter_remove()): every link through it drops, its
 * device objects and then the adapter object leave the bus (InterfacesRemoved); nothing of it
 * comes back.
 */
static int m_remove_adapter(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct sim_bluez *b = userdata;
	struct sim_adapter *ad = NULL;
	const char *name;

	if (sd_bus_message_read(m, "s", &name) < 0)
		return invalid_args(m);
	for (unsigned k = 0; k < b->n_ads; k++)
		if (!b->ads[k].removed && !strcmp(b->ads[k].path + 11, name))
			ad = &b->ads[k];
	if (!ad)
		return sd_bus_reply_method_errorf(m, "org.bluez.Error.NoSuchAdapter",
						  "No such adapter");
	fgw_notice("event: adapter-removed, adapter: %s", name);
	for (unsigned i = 0; i < b->sim->n_devs; i++) {
		struct sim_ble_dev *x = b->sim->devs[i].ble[ad->idx];
		if (!x)
			continue;
		ble_disconnect_now(x, "adapter removed");
		x->paired = 0;
		ble_unexport(x);
	}
	while (ad->clients)
		client_drop(ad, ad->clients);
	(void) sd_bus_emit_interfaces_removed(b->bus, ad->path, IFACE_ADAPTER, NULL);
	ad->slot = sd_bus_slot_unref(ad->slot);
	ad->removed = true;
	return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable simctl_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("RemoveAdapter", "s", "", m_remove_adapter, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

/* ---- sd-bus in libuv
 * ----------------------------------------------------------------------------- */

static int on_name_acquired(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct sim_bluez *b = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(m);

	b->name_slot = sd_bus_slot_unref(b->name_slot);
	if (e) {
		fgw_error("cannot take org.bluez: %s: %s", e->name, e->message);
		return 0;
	}
	fgw_notice("event: bluez-ready, name: org.bluez, adapters: %u, devices: %u", b->n_ads,
		   b->sim->n_devs);
	return 0;
}

int sim_bluez_new(struct sim *sim, bool wait, struct sim_bluez **ret)
{
	struct sim_bluez *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return -ENOMEM;
	b->sim = sim;
	b->n_ads = sim->opt.n_bluez_adapters ? sim->opt.n_bluez_adapters : 1;
	for (unsigned k = 0; k < b->n_ads; k++) {
		struct sim_adapter *ad = &b->ads[k];
		ad->b = b;
		ad->idx = k;
		ad->powered = 1;
		ad->pairable = 1;
		snprintf(ad->path, sizeof(ad->path), "/org/bluez/hci%u", k);
		snprintf(ad->addr, sizeof(ad->addr), "00:AA:01:00:00:%02X", k);
		snprintf(ad->alias, sizeof(ad->alias), "fotagw-sim");
	}
	/* sd_bus_open_system() honours DBUS_SYSTEM_BUS_ADDRESS */
	r = sd_bus_open_system(&b->bus);
	if (r < 0)
		goto fail;
	r = sd_bus_add_object_manager(b->bus, &b->om_slot, "/");
	if (r < 0)
		goto fail;
	for (unsigned k = 0; k < b->n_ads; k++) {
		r = sd_bus_add_object_vtable(b->bus, &b->ads[k].slot, b->ads[k].path, IFACE_ADAPTER,
					     adapter_vtable, &b->ads[k]);
		if (r < 0)
			goto fail;
	}
	r = sd_bus_add_object_vtable(b->bus, &b->ctl_slot, "/org/fotagw/sim", IFACE_SIMCTL,
				     simctl_vtable, b);
	if (r < 0)
		goto fail;
	r = sim_agents_new(b->bus, sim->loop, &b->agents);
	if (r < 0)
		goto fail;
	r = sd_bus_match_signal(b->bus, &b->match_slot, "org.freedesktop.DBus",
				"/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged",
				on_name_owner_changed, b);
	if (r < 0)
		goto fail;
	/* Startup, before the loop runs: a blocking call is acceptable there (the ready line
	 * promises the name); a restart (SIGUSR1) asks without blocking the loop. */
	if (wait)
		r = sd_bus_request_name(b->bus, "org.bluez", 0);
	else
		r = sd_bus_request_name_async(b->bus, &b->name_slot, "org.bluez", 0,
					      on_name_acquired, b);
	if (r < 0)
		goto fail;
	sim_busloop_init(&b->bl, sim->loop, b->bus);
	uv_timer_init(sim->loop, &b->scan_timer);
	uv_timer_start(&b->scan_timer, scan_tick, SCAN_TICK_MS, SCAN_TICK_MS);
	for (unsigned i = 0; i < sim->n_devs; i++)
		memset(sim->devs[i].ble, 0, sizeof(sim->devs[i].ble));
	bus_kick(b);
	if (wait)
		fgw_notice("event: bluez-ready, name: org.bluez, adapters: %u, devices: %u",
			   b->n_ads, sim->n_devs);
	*ret = b;
	return 0;
fail:
	sd_bus_slot_unref(b->name_slot);
	sd_bus_slot_unref(b->match_slot);
	b->agents = sim_agents_free(b->agents);
	for (unsigned k = 0; k < b->n_ads; k++)
		sd_bus_slot_unref(b->ads[k].slot);
	sd_bus_slot_unref(b->ctl_slot);
	sd_bus_slot_unref(b->om_slot);
	sd_bus_flush_close_unref(b->bus);
	free(b);
	return r;
}

static void ble_timer_closed(uv_handle_t *h)
{
	struct sim_ble_dev *x = container_of((uv_timer_t *) h, struct sim_ble_dev, timer);
	free(x);
}

static void bluez_closed(uv_handle_t *h)
{
	struct sim_bluez *b = h->data;

	if (--b->n_closing == 0)
		free(b);
}

struct sim_bluez *sim_bluez_free(struct sim_bluez *b)
{
	if (!b)
		return NULL;
	for (unsigned k = 0; k < b->n_ads; k++) {
		for (unsigned i = 0; i < b->sim->n_devs; i++) {
			struct sim_ble_dev *x = b->sim->devs[i].ble[k];
			if (!x)
				continue;
			ble_disconnect_now(x, "shutdown");
			reply_pending_connect(x, "org.bluez.Error.Failed",
					      "le-connection-abort-by-local");
			ble_unexport(x);
			b->sim->devs[i].ble[k] = NULL;
			uv_close((uv_handle_t *) &x->timer, ble_timer_closed);
		}
		retired_expire(&b->ads[k], 0, true);
		while (b->ads[k].clients)
			client_drop(&b->ads[k], b->ads[k].clients);
		b->ads[k].slot = sd_bus_slot_unref(b->ads[k].slot);
	}
	b->ctl_slot = sd_bus_slot_unref(b->ctl_slot);
	b->name_slot = sd_bus_slot_unref(b->name_slot);
	sd_bus_slot_unref(b->match_slot);
	b->agents = sim_agents_free(b->agents);
	sd_bus_slot_unref(b->om_slot);
	if (!b->bl.dead)
		(void) sd_bus_flush(b->bus); /* shutdown: last signals out */
	sd_bus_close_unref(b->bus);
	b->scan_timer.data = b;
	b->n_closing = 4;
	sim_busloop_close(&b->bl, b, bluez_closed);
	uv_close((uv_handle_t *) &b->scan_timer, bluez_closed);
	return NULL;
}
