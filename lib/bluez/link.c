/*
 * Connection manager: one fgw_bluez_link per wanted connection, each an explicit state machine
 * (bluez.h lists the states), a FIFO of links waiting for one of max_connections slots, and the
 * opening sequence up to the characteristic (Connect, ServicesResolved). The data path is in
 * link-io.c, the security steps in secure.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bluez-private.h"
#include "util.h"

/* Disconnect() of a released link: bluetoothd answers once the link is down (about 2 s). */
#define RELEASE_TIMEOUT_USEC (10 * 1000 * 1000ull)
/* After a "busy" answer to Connect(), the adapter gets no new attempt for this long. */
#define BUSY_RETRY_MS 500

static const char *const link_state_names[_FGW_BLUEZ_LINK_STATE_MAX] = {
    [FGW_BLUEZ_LINK_STATE_SEARCHING] = "searching",
    [FGW_BLUEZ_LINK_STATE_WAITING] = "waiting",
    [FGW_BLUEZ_LINK_STATE_CONNECTING] = "connecting",
    [FGW_BLUEZ_LINK_STATE_RESOLVING] = "resolving",
    [FGW_BLUEZ_LINK_STATE_PAIRING] = "pairing",
    [FGW_BLUEZ_LINK_STATE_ACQUIRING] = "acquiring",
    [FGW_BLUEZ_LINK_STATE_READY] = "ready",
    [FGW_BLUEZ_LINK_STATE_FAILED] = "failed",
};

FGW_EXPORT const char *fgw_bluez_link_state_to_string(enum fgw_bluez_link_state s)
{
	if ((int) s < 0 || s >= _FGW_BLUEZ_LINK_STATE_MAX)
		return NULL;
	return link_state_names[s];
}

void bz_link_set_error(struct fgw_bluez_link *l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(l->error, sizeof(l->error), fmt, ap);
	va_end(ap);
}

int bz_link_reply(struct fgw_bluez_link *l, sd_bus_message *m, const char *what, char *text)
{
	int r;

	l->call_slot = sd_bus_slot_unref(l->call_slot);
	r = bz_reply_error(m, text, BZ_REPLY_TEXT);
	if (r == -ENOTCONN && what) {
		bz_link_not_connected(l, what, text);
		return 1;
	}
	return r;
}

void bz_link_enter_state(struct fgw_bluez_link *l, enum fgw_bluez_link_state s)
{
	fgw_debug("bluez: link %s: %s -> %s", l->addr, fgw_bluez_link_state_to_string(l->state),
		  fgw_bluez_link_state_to_string(s));
	l->state = s;
}

/* ---- slots ---- */

static int on_release_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct bz_release *rel = user_data;
	struct fgw_bluez *b = rel->b;

	/* Whatever the answer (done, NotConnected, timeout), the attempt no longer holds the
	 * radio. */
	bz_list_del(&rel->node);
	sd_bus_slot_unref(rel->slot);
	free(rel->dev_path);
	free(rel->adapter_path);
	free(rel);
	b->active--;
	bz_kick(b);
	return 0;
}

/*
 * Gives the link's slot back. With @disconnect, Device1.Disconnect() is sent first (it also
 * cancels a pending Connect) and the slot stays taken until bluetoothd answers.
 */
static void link_release_slot(struct fgw_bluez_link *l, bool disconnect)
{
	struct fgw_bluez *b = l->b;
	sd_bus_message *m = NULL;
	struct bz_release *rel;
	struct bz_adapter *a;
	int r;

	if (!l->holds_slot || !b)
		return;
	l->holds_slot = false;
	a = bz_adapter_used(b, l->adapter_path);
	if (disconnect && l->dev_path && b->bluez_owner && a &&
	    a->state == FGW_BLUEZ_ADAPTER_STATE_ON && (rel = calloc(1, sizeof(*rel)))) {
		rel->b = b;
		rel->dev_path = strdup(l->dev_path);
		rel->adapter_path = strdup(a->path);
		r = rel->dev_path && rel->adapter_path ? 0 : -ENOMEM;
		if (r >= 0)
			r = sd_bus_message_new_method_call(b->bus, &m, BLUEZ_SERVICE, l->dev_path,
							   BLUEZ_DEVICE_IFACE, "Disconnect");
		if (r >= 0)
			r = bz_call(b, m, &rel->slot, on_release_reply, rel, RELEASE_TIMEOUT_USEC);
		sd_bus_message_unref(m);
		if (r >= 0) {
			bz_list_add_tail(&b->releases, &rel->node);
			return;
		}
		free(rel->dev_path);
		free(rel->adapter_path);
		free(rel);
	}
	b->active--;
	bz_kick(b);
}

/*
 * The one door to FAILED: tears the path down, gives the slot back and reports @err once.
 * The callback may free @l (or other links): callers touch nothing after this.
 */
void bz_link_fail(struct fgw_bluez_link *l, int err, bool disconnect)
{
	if (l->freed || l->state == FGW_BLUEZ_LINK_STATE_FAILED)
		return;
	if (!l->error[0])
		bz_link_set_error(l, "%s", strerror(-err));
	fgw_debug("bluez: link %s failed in state %s: %s", l->addr,
		  fgw_bluez_link_state_to_string(l->state), l->error);
	bz_link_close_path(l);
	link_release_slot(l, disconnect);
	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_FAILED);
	l->state_cb(l, err, l->user_data);
}

/*
 * An open link dropped. After Connected=false the device is down already (@disconnect false);
 * after a hang-up of our fds it may still be connected, so Disconnect() it.
 */
void bz_link_lost(struct fgw_bluez_link *l, const char *why, bool disconnect)
{
	bz_link_set_error(l, "link lost: %s", why);
	bz_link_fail(l, -ECONNRESET, disconnect);
}

void bz_link_ready(struct fgw_bluez_link *l)
{
	uv_timer_stop(&l->timer);
	l->error[0] = '\0';
	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_READY);
	l->state_cb(l, 0, l->user_data);
}

/* ---- opening: connect, resolve, acquire ---- */

/* How long the SMP characteristic may lag behind ServicesResolved. */
#define CHAR_GRACE_MS 3000

/* A connection dropped while opening is tried again this often, within connect_timeout_ms. */
#define MAX_REOPENS 3

void bz_links_on_address_changed(struct fgw_bluez *b, const char *old_addr, const char *new_addr)
{
	struct bz_list *pos;

	bz_list_for_each(pos, &b->links)
	{
		struct fgw_bluez_link *l = container_of(pos, struct fgw_bluez_link, node);
		if (strcmp(l->addr, old_addr) == 0)
			memcpy(l->addr, new_addr, sizeof(l->addr));
	}
}

/* Once connecting, the copy under the adapter the link holds a slot on; before, the best. */
struct bz_device *bz_link_device(struct fgw_bluez_link *l)
{
	struct bz_device *d;

	if (!l->b)
		return NULL;
	if (!l->holds_slot || !l->dev_path)
		return bz_device_find_addr(l->b, l->addr);
	d = bz_device_find(l->b, l->dev_path);
	return d && bz_device_ours(l->b, d) ? d : NULL;
}

void bz_link_call(struct fgw_bluez_link *l, const char *method, bool with_options, bool on_device,
		  uint64_t timeout_usec, sd_bus_message_handler_t cb)
{
	struct fgw_bluez *b = l->b;
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_method_call(
	    b->bus, &m, BLUEZ_SERVICE, on_device ? l->dev_path : l->char_path,
	    on_device ? BLUEZ_DEVICE_IFACE : BLUEZ_CHAR_IFACE, method);
	if (r >= 0 && with_options)
		r = sd_bus_message_append(m, "a{sv}", 0);
	if (r >= 0)
		r = bz_call(b, m, &l->call_slot, cb, l, timeout_usec);
	sd_bus_message_unref(m);
	if (r < 0) {
		bz_link_set_error(l, "cannot send %s: %s", method, strerror(-r));
		bz_link_fail(l, r, true);
	}
}

/* Notifications first, so that no response can be missed, then the write path. */
void bz_link_acquire(struct fgw_bluez_link *l)
{
	struct fgw_bluez *b = l->b;
	struct bz_device *d = bz_link_device(l);
	struct bz_gatt_char *c = d ? bz_find_smp_char(b, d) : NULL;

	if (!c) {
		/* bluetoothd may signal ServicesResolved before the InterfacesAdded of the GATT
		 * objects (seen on a first connection, VM tier): give them a moment (the pump
		 * calls us again on every InterfacesAdded). */
		if (!l->await_char) {
			l->await_char = true;
			bz_link_restart_timer(l, CHAR_GRACE_MS);
		}
		bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_RESOLVING);
		return;
	}
	if (l->await_char) {
		/* The grace timer bounded the listing only: the rest of the connect bound applies
		 * again (left running, it failed a slow subscription as "acquiring took longer
		 * than 20000 ms" 3 s later: VM tier, pairing probe on a loaded host). */
		uint64_t spent = fgw_now_ms() - l->connect_ms;
		unsigned limit = l->b->opts.connect_timeout_ms;

		l->await_char = false;
		bz_link_restart_timer(l, spent < limit ? (unsigned) (limit - spent) : 1u);
	}
	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_ACQUIRING);
	free(l->char_path);
	l->char_path = strdup(c->path);
	if (!l->char_path) {
		bz_link_fail(l, -ENOMEM, true);
		return;
	}
	if (c->mtu)
		bz_link_set_mtu(l, c->mtu);
	bz_link_subscribe(l, d, c);
}

static int on_resolved_get(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez_link *l = user_data;
	int v = 0;

	l->get_slot = sd_bus_slot_unref(l->get_slot);
	/* Insurance only: an error or odd reply just leaves us waiting for the signal. */
	if (sd_bus_message_is_method_error(m, NULL) || sd_bus_message_read(m, "v", "b", &v) < 0)
		return 0;
	if (v && l->state == FGW_BLUEZ_LINK_STATE_RESOLVING && !l->await_disconnect)
		bz_link_acquire(l);
	return 0;
}

/*
 * The controller (or the kernel, for one LE Create Connection at a time) was busy: an attempt
 * of another client, or a controller that cannot take one more link now. Not the device's
 * fault: give the slot back, keep the adapter off new attempts for a moment, wait again.
 */
static void link_busy(struct fgw_bluez_link *l, const char *text)
{
	struct bz_adapter *a = bz_adapter_used(l->b, l->adapter_path);
	uint64_t now = fgw_now_ms();

	if (a) {
		a->busy_until_ms = now + BUSY_RETRY_MS;
		a->n_busy++;
	}
	if (!l->busy_since_ms)
		l->busy_since_ms = now;
	if (now - l->busy_since_ms >= l->b->opts.connect_timeout_ms) {
		bz_link_set_error(l, "Connect: %s, for %u ms", text, l->b->opts.connect_timeout_ms);
		bz_link_fail(l, -EBUSY, false);
		return;
	}
	fgw_debug("bluez: link %s: %s, trying again", l->addr, text);
	bz_link_drop_path(l);
	link_release_slot(l, false);
	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_WAITING);
	bz_link_restart_timer(l, BUSY_RETRY_MS);
}

static int on_connect_reply(sd_bus_message *m, void *user_data, sd_bus_error *ret_error)
{
	struct fgw_bluez_link *l = user_data;
	struct bz_device *d;
	sd_bus_message *get = NULL;
	char text[BZ_REPLY_TEXT];
	int r;

	r = bz_link_reply(l, m, NULL, text);
	bz_kick(l->b); /* the adapter may take the next attempt */
	if (r == -EBUSY) {
		link_busy(l, text);
		return 0;
	}
	l->busy_since_ms = 0;
	/* AlreadyConnected is success; InProgress means an earlier Connect (ours, from a freed
	 * link, or another client's) is still running: wait for its outcome. */
	if (r < 0 && r != -EALREADY && r != -EINPROGRESS) {
		d = bz_link_device(l);
		if (d && d->paired && bz_bond_refused(l, text)) {
			bz_link_set_error(l,
					  "Connect: %s, at once, with a bond held: the device "
					  "refused our key (it lost its bond?)",
					  text);
			bz_link_fail(l, -EKEYEXPIRED, true);
			return 0;
		}
		bz_link_set_error(l, "Connect: %s", text);
		bz_link_fail(l, r, true);
		return 0;
	}
	d = bz_link_device(l);
	if (!d) {
		bz_link_set_error(l, "device '%s' went away while connecting", l->addr);
		bz_link_fail(l, -ECONNRESET, false);
		return 0;
	}
	/* BlueZ 5.66 sends no Connected=true for LE centrals: the reply is our evidence. */
	if (r == 0 || r == -EALREADY)
		d->connected = true;
	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_RESOLVING);
	if (d->services_resolved) {
		bz_link_acquire(l);
		return 0;
	}
	r = sd_bus_message_new_method_call(l->b->bus, &get, BLUEZ_SERVICE, l->dev_path,
					   DBUS_PROPS_IFACE, "Get");
	if (r >= 0)
		r = sd_bus_message_append(get, "ss", BLUEZ_DEVICE_IFACE, "ServicesResolved");
	if (r >= 0)
		r = bz_call(l->b, get, &l->get_slot, on_resolved_get, l, 0);
	sd_bus_message_unref(get);
	/* Failing to send the Get is harmless: the signal will come or the timer fires. */
	return 0;
}

static void on_link_timer(uv_timer_t *t)
{
	struct fgw_bluez_link *l = t->data;
	struct fgw_bluez *b = l->b;
	int err = -ETIMEDOUT;

	if (l->state == FGW_BLUEZ_LINK_STATE_SEARCHING) {
		if (!b || b->adapter_state != FGW_BLUEZ_ADAPTER_STATE_ON) {
			bz_link_set_error(l, "no powered adapter within %u ms (%s)",
					  b ? b->opts.connect_timeout_ms : 0,
					  b && b->last_error[0] ? b->last_error : "no detail");
		} else {
			/* Never listed: out of range, not a failed connection. */
			bz_link_set_error(l, "device not found within %u ms",
					  b->opts.connect_timeout_ms);
			err = -EHOSTDOWN;
		}
	} else if (l->state == FGW_BLUEZ_LINK_STATE_RESOLVING && l->await_char) {
		bz_link_set_error(l, "no SMP characteristic (%s) on '%s'", FGW_BLUEZ_SMP_CHAR_UUID,
				  l->addr);
		err = -ENOENT;
	} else if (l->state == FGW_BLUEZ_LINK_STATE_WAITING) {
		bz_kick(b); /* the settle time is over: connect anyway */
		return;
	} else if (l->state == FGW_BLUEZ_LINK_STATE_PAIRING) {
		bz_link_pair_timeout(l);
		return;
	} else {
		bz_link_set_error(l, "%s took longer than %u ms",
				  fgw_bluez_link_state_to_string(l->state),
				  b ? b->opts.connect_timeout_ms : 0);
	}
	bz_link_fail(l, err, true);
}

void bz_link_start_timer(struct fgw_bluez_link *l)
{
	uv_timer_start(&l->timer, on_link_timer, l->b->opts.connect_timeout_ms, 0);
}

void bz_link_restart_timer(struct fgw_bluez_link *l, unsigned ms)
{
	uv_timer_start(&l->timer, on_link_timer, ms, 0);
}

/*
 * The device is connected, but not by a link of ours that is opening or open: most likely a
 * Disconnect() still lingering in bluetoothd (it waits ~2 s), from a freed link or another
 * process. Connecting now would have that disconnect land on our AcquireNotify, which wedges
 * bluetoothd 5.66. Wait for Connected=false, for at most SETTLE_MS (someone may really hold
 * the link).
 */
#define SETTLE_MS 5000

bool bz_link_settling(struct fgw_bluez_link *l, struct bz_device *d)
{
	uint64_t now = fgw_now_ms();

	if (!d->connected) {
		l->settle_until_ms = 0;
		return false;
	}
	if (!l->settle_until_ms) {
		l->settle_until_ms = now + SETTLE_MS;
		fgw_debug("bluez: link %s: device still connected, waiting for Connected=false",
			  l->addr);
		uv_timer_start(&l->timer, on_link_timer, SETTLE_MS, 0);
		return true;
	}
	if (now < l->settle_until_ms)
		return true;
	fgw_info("bluez: %s still connected after %u ms (another client?), connecting anyway",
		 l->addr, SETTLE_MS);
	return false;
}

static int link_send_connect(struct fgw_bluez_link *l)
{
	struct fgw_bluez *b = l->b;
	sd_bus_message *m = NULL;
	int r;

	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_CONNECTING);
	r = sd_bus_message_new_method_call(b->bus, &m, BLUEZ_SERVICE, l->dev_path,
					   BLUEZ_DEVICE_IFACE, "Connect");
	/* Our timer decides; the call's own timeout is only a backstop behind it. */
	if (r >= 0)
		r = bz_call(b, m, &l->call_slot, on_connect_reply, l,
			    ((uint64_t) b->opts.connect_timeout_ms + 5000u) * 1000u);
	sd_bus_message_unref(m);
	if (r < 0)
		bz_link_set_error(l, "cannot send Connect: %s", strerror(-r));
	return r;
}

int bz_link_connect(struct fgw_bluez_link *l, struct bz_device *d)
{
	char *path, *apath;

	path = strdup(d->path);
	apath = strdup(d->adapter);
	if (!path || !apath) {
		free(path);
		free(apath);
		return -ENOMEM;
	}
	free(l->dev_path);
	l->dev_path = path;
	free(l->adapter_path);
	l->adapter_path = apath;
	l->holds_slot = true;
	l->connect_ms = fgw_now_ms();
	l->b->active++;
	l->error[0] = '\0';
	l->reopens = 0;
	bz_link_start_timer(l);
	return link_send_connect(l);
}

/*
 * The connection went down while we were opening it: typically the Disconnect() of an earlier
 * user (another process, a previous run) completing just after our Connect() was answered.
 * Connect again, keeping the slot and the running timer.
 */
void bz_link_reopen(struct fgw_bluez_link *l, const char *why)
{
	int r;

	if (bz_link_probe_dropped(l, why))
		return;
	if (l->reopens >= MAX_REOPENS) {
		bz_link_set_error(l, "connection dropped while opening, %u times (%s)", l->reopens,
				  why);
		bz_link_fail(l, -ECONNRESET, true);
		return;
	}
	l->reopens++;
	fgw_debug("bluez: link %s: %s while opening, connecting again", l->addr, why);
	bz_link_drop_path(l);
	r = link_send_connect(l);
	if (r < 0)
		bz_link_fail(l, r, true);
}

/* An opening step answered "Not connected": wait for Connected=false, then connect again. */
void bz_link_not_connected(struct fgw_bluez_link *l, const char *what, const char *text)
{
	struct bz_device *d = bz_link_device(l);

	if (!d || !d->connected) {
		bz_link_reopen(l, text);
		return;
	}
	bz_link_drop_path(l);
	l->await_disconnect = true;
	bz_link_enter_state(l, FGW_BLUEZ_LINK_STATE_RESOLVING);
	fgw_debug("bluez: link %s: %s: %s, waiting for the disconnect", l->addr, what, text);
}

/* ---- public ---- */

FGW_EXPORT int fgw_bluez_connect(struct fgw_bluez *b, const char *addr,
				 fgw_bluez_link_state_cb_t state_cb, fgw_bluez_link_rx_cb_t rx_cb,
				 void *user_data, struct fgw_bluez_link **ret)
{
	struct fgw_bluez_link *l;
	char a[18];

	if (!b || !state_cb || !rx_cb || !ret || b->freeing || bz_addr_normalize(addr, a) < 0)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->b = b;
	memcpy(l->addr, a, sizeof(a));
	l->state_cb = state_cb;
	l->rx_cb = rx_cb;
	l->user_data = user_data;
	l->write_fd = l->notify_fd = -1;
	l->mtu = BZ_ATT_MTU_MIN;
	bz_list_init(&l->txq);
	uv_timer_init(b->loop, &l->timer);
	l->timer.data = l;
	l->n_open = 1;
	l->state = FGW_BLUEZ_LINK_STATE_SEARCHING;
	bz_link_start_timer(l);
	bz_list_add_tail(&b->links, &l->node);
	/* Everything else happens on the loop, so no callback runs before we return. */
	bz_kick(b);
	*ret = l;
	return 0;
}

FGW_EXPORT struct fgw_bluez_link *fgw_bluez_link_free(struct fgw_bluez_link *l)
{
	if (!l || l->freed)
		return NULL;
	l->freed = true;
	bz_link_close_path(l);
	if (l->b) {
		bz_list_del(&l->node);
		link_release_slot(l, true);
		bz_discovery_update(l->b);
	}
	uv_close((uv_handle_t *) &l->timer, bz_link_handle_closed);
	return NULL;
}

FGW_EXPORT enum fgw_bluez_link_state fgw_bluez_link_state(struct fgw_bluez_link *l)
{
	return l->state;
}

FGW_EXPORT const char *fgw_bluez_link_addr(struct fgw_bluez_link *l)
{
	return l->addr;
}

FGW_EXPORT const char *fgw_bluez_link_error(struct fgw_bluez_link *l)
{
	return l->error;
}

FGW_EXPORT const char *fgw_bluez_link_adapter(struct fgw_bluez_link *l)
{
	const char *slash;

	if (!l->adapter_path)
		return NULL;
	slash = strrchr(l->adapter_path, '/');
	return slash ? slash + 1 : l->adapter_path;
}

FGW_EXPORT unsigned fgw_bluez_active_links(struct fgw_bluez *b)
{
	return b->active;
}
