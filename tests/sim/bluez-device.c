/*
 * The fake bluetoothd's Device1 objects (one per device and adapter): properties, Connect with
 * one LE connection attempt at a time per adapter and its connection limit, Disconnect, Pair,
 * the link's life (establish, resolve, supervision timeout) and RPA rotation.
 */
#include "bluez-int.h"

static void ble_step_at(struct sim_ble_dev *x, int step, double ms);

bool bz_dev_advertised_uuid(const struct sim_ble_dev *x, const char *uuid)
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
		bz_ble_disconnect_now(x, "connection attempt cancelled");
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
	/* what a test waits for before it acts while the Disconnect is pending */
	fgw_notice("event: ble-disconnect-pending, device: %s", x->dev->name);
	if (x->conn == CONN_DISCONNECTING)
		return 1;
	x->conn = CONN_DISCONNECTING;
	/* bluetoothd lingers before it tears the link down (about 2 s in 5.66). */
	ble_step_at(x, STEP_DISCONNECT_DONE, x->b->sim->opt.disconnect_ms);
	return 1;
}

bool bz_sec_ok(const struct sim_ble_dev *x)
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
	if (!x->exported)
		return;
	/* a device met under an RPA now shows its identity address */
	if (strcmp(x->addr, x->dev->addr))
		(void) sd_bus_emit_properties_changed(x->b->bus, x->path, IFACE_DEVICE, "Paired",
						      "Bonded", "Address", NULL);
	else
		(void) sd_bus_emit_properties_changed(x->b->bus, x->path, IFACE_DEVICE, "Paired",
						      "Bonded", NULL);
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
		x->dev->link.encrypted = true; /* every packet from now on carries a MIC */
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
		if (level >= 0 && bz_sec_ok(x))
			(void) sd_bus_reply_method_return(m, NULL);
		else
			(void) sd_bus_reply_method_errorf(m, "org.bluez.Error.Failed",
							  "Operation failed with ATT error: 0x0e");
		sd_bus_message_unref(m);
	}
	/* a failed SMP procedure ends the link ("Authentication Failure") */
	if (level < 0)
		bz_ble_disconnect_now(x, "pairing failed");
	bus_kick(x->b);
}

int bz_pair_begin(struct sim_ble_dev *x, const char *caller)
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
	r = bz_pair_begin(x, sd_bus_message_get_sender(m));
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
    /* not const: BlueZ signals both when pairing resolves the identity (device_update_addr);
     * sd-bus refuses to emit a change of a const property, and the Paired with it */
    BZ_PROPERTY("Address", "s", device_get),
    BZ_PROPERTY("AddressType", "s", device_get),
    BZ_PROPERTY("Name", "s", device_get),
    BZ_PROPERTY_RW("Alias", "s", device_get, device_set),
    BZ_PROPERTY("Appearance", "q", device_get),
    BZ_PROPERTY("Paired", "b", device_get),
    BZ_PROPERTY("Bonded", "b", device_get),
    BZ_PROPERTY_RW("Trusted", "b", device_get, device_set),
    BZ_PROPERTY_RW("Blocked", "b", device_get, device_set),
    BZ_PROPERTY("LegacyPairing", "b", device_get),
    BZ_PROPERTY("RSSI", "n", device_get),
    BZ_PROPERTY("Connected", "b", device_get),
    BZ_PROPERTY("UUIDs", "as", device_get),
    BZ_PROPERTY_CONST("Adapter", "o", device_get),
    BZ_PROPERTY("ServicesResolved", "b", device_get),
    BZ_PROPERTY("AdvertisingFlags", "ay", device_get),
    BZ_PROPERTY("WakeAllowed", "b", device_get),
    SD_BUS_VTABLE_END,
};

struct sim_ble_dev *bz_ble_of(struct sim_adapter *ad, struct sim_device *d)
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

void bz_ble_export(struct sim_ble_dev *x)
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

void bz_ble_unexport(struct sim_ble_dev *x)
{
	if (!x->exported)
		return;
	bz_gatt_unexport(x);
	(void) sd_bus_emit_interfaces_removed(x->b->bus, x->path, IFACE_DEVICE, NULL);
	x->dev_slot = sd_bus_slot_unref(x->dev_slot);
	x->exported = false;
	fgw_debug("%s: removed from the bus", x->dev->name);
}

void bz_reply_pending_connect(struct sim_ble_dev *x, const char *error, const char *msg)
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
void bz_ble_disconnect_now(struct sim_ble_dev *x, const char *why)
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
	bz_acq_link_lost(x);
	pair_cancel(x);
	if (x->unanswered_acq)
		x->unanswered_acq = sd_bus_message_unref(x->unanswered_acq);
	bz_reply_pending_connect(x, "org.bluez.Error.Failed", "le-connection-abort-by-local");
	if (x->services_resolved) {
		x->services_resolved = 0;
		if (x->exported)
			bz_emit(b, x->path, IFACE_DEVICE, "ServicesResolved");
	}
	/* BlueZ drops the GATT database of an unbonded device on disconnect */
	bz_gatt_unexport(x);
	/* the services stay listed in UUIDs: no signal for them */
	if (was_connected && x->exported)
		bz_emit(b, x->path, IFACE_DEVICE, "Connected");
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
		bz_reply_pending_connect(x, "org.bluez.Error.Failed", "le-connection-refused");
		break;
	case STEP_CONNECT_TIMEOUT:
		fgw_notice("event: ble-connect-failed, device: %s, reason: 'no answer'",
			   x->dev->name);
		bz_ble_disconnect_now(x, "connection attempt timed out");
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
			bz_ble_disconnect_now(x, "encryption failed: key missing");
			break;
		}
		x->link_sec = x->paired ? x->bond_level : 0;
		sim_link_reset(&x->dev->link, sim_now_us());
		x->dev->link.encrypted = x->link_sec > 0;
		/* LE Connection Complete: the attempt is over, the link takes its share */
		attempt_done(x->ad, x);
		if (sim_radio_join(&x->ad->radio, &x->dev->link) < 0)
			fgw_warning("%s: more links than the radio model holds", x->dev->name);
		sim_device_rx_reset(x->dev);
		bz_ble_export(x);
		/* As measured with bluetoothd 5.66 (docs/simulator.md): Connected=true is signalled
		 * at link-up, Connect replies only once the services are resolved. (The reference
		 * harness once saw no Connected=true signal at all: clients must not wait for it.)
		 */
		bz_emit(b, x->path, IFACE_DEVICE, "Connected");
		fgw_notice("event: ble-connected, device: %s, adapter: %s, mtu: %u", x->dev->name,
			   x->ad->path + 11, x->mtu);
		/* GATT discovery: a few connection events */
		ble_step_at(x, STEP_RESOLVE, 6 * x->dev->cfg.link.interval_ms + 30);
		break;
	case STEP_RESOLVE:
		if (x->conn != CONN_CONNECTED)
			break;
		bz_gatt_export(x);
		x->services_resolved = 1;
		x->resolved_once = true;
		/* one signal, in bluetoothd's order */
		if (sd_bus_emit_properties_changed(b->bus, x->path, IFACE_DEVICE, "UUIDs",
						   "ServicesResolved", NULL) < 0)
			fgw_warning("%s: PropertiesChanged ServicesResolved failed, ignoring",
				    x->dev->name);
		bz_reply_pending_connect(x, NULL, NULL);
		break;
	case STEP_DISCONNECT_DONE:
		bz_ble_disconnect_now(x, "Disconnect() by client");
		break;
	case STEP_LINK_DROP:
		bz_ble_disconnect_now(x, "supervision timeout");
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
		x = bz_ble_of(&b->ads[k], d);
		if (!x)
			continue;
		x->next_adv_us = sim_now_us();
		if (x->conn == CONN_CONNECTING && x->ad->attempt == x &&
		    x->step == STEP_CONNECT_TIMEOUT)
			ble_step_at(x, STEP_ESTABLISH, 2 * d->cfg.link.interval_ms + 20);
	}
}

/* The device's link: the Device1 of the adapter it is connected through. */
struct sim_ble_dev *bz_ble_linked(struct sim_bluez *b, struct sim_device *d)
{
	for (unsigned k = 0; k < b->n_ads; k++)
		if (d->ble[k] && d->ble[k]->conn != CONN_NONE && d->ble[k]->conn != CONN_CONNECTING)
			return d->ble[k];
	return NULL;
}

/*
 * rpa_rotate_s: the device advertises from a new resolvable private address. Without the IRK
 * (not bonded through this adapter) BlueZ sees a new device: the old object stays until
 * TemporaryTimeout and a new Device1 appears. A bonded device is resolved with its IRK and keeps
 * its object. A connected device does not advertise, so nothing changes until it is free.
 */
struct sim_ble_dev *bz_rpa_rotate(struct sim_adapter *ad, struct sim_ble_dev *x, uint64_t now)
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
	return bz_ble_of(ad, d);
}

/* Objects of old RPAs: gone after TemporaryTimeout like any device nobody sees. */
void bz_retired_expire(struct sim_adapter *ad, uint64_t now, bool all)
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
		bz_ble_disconnect_now(x, "shutdown");
		bz_reply_pending_connect(x, "org.bluez.Error.Failed",
					 "le-connection-abort-by-local");
		bz_ble_unexport(x);
		uv_close((uv_handle_t *) &x->timer, bz_ble_timer_closed);
	}
}
