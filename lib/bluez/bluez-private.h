/*
 * bluez internals, shared by the files of lib/bluez (and by the unit tests' fake bluetoothd,
 * which reuses the bus glue). Nothing outside lib/bluez and tests/unit includes this.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>
#include <uv.h>

#include "bluez.h"

#define BLUEZ_SERVICE "org.bluez"
#define BLUEZ_ADAPTER_IFACE "org.bluez.Adapter1"
#define BLUEZ_DEVICE_IFACE "org.bluez.Device1"
#define BLUEZ_SERVICE_IFACE "org.bluez.GattService1"
#define BLUEZ_CHAR_IFACE "org.bluez.GattCharacteristic1"
#define DBUS_PROPS_IFACE "org.freedesktop.DBus.Properties"
#define DBUS_OM_IFACE "org.freedesktop.DBus.ObjectManager"
#define BLUEZ_AGENT_MANAGER_IFACE "org.bluez.AgentManager1"
#define BLUEZ_AGENT_IFACE "org.bluez.Agent1"
#define FGW_AGENT_PATH "/org/fotagw/agent"

/* ---- a minimal intrusive doubly linked list ---- */

struct bz_list {
	struct bz_list *prev, *next;
};

static inline void bz_list_init(struct bz_list *h)
{
	h->prev = h->next = h;
}

static inline bool bz_list_empty(const struct bz_list *h)
{
	return h->next == h;
}

static inline void bz_list_add_tail(struct bz_list *h, struct bz_list *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void bz_list_del(struct bz_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define bz_list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)
#define bz_list_for_each_safe(pos, tmp, head)                                                      \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                           \
	     (pos) = (tmp), (tmp) = (pos)->next)

/* ---- sd-bus on the libuv loop (bus.c) ---- */

struct fgw_busio;
/* The connection failed (sd_bus_process() < 0): @err. Called at most once. */
typedef void (*fgw_busio_fail_cb_t)(struct fgw_busio *io, int err, void *user_data);

/*
 * Drives @bus from @loop: its fd in a uv_poll, its timeout in a uv_timer, and a uv_prepare that
 * refreshes both before the loop sleeps (sd-bus queues writes and replies from anywhere).
 * Takes a reference on @bus.
 */
int fgw_busio_new(uv_loop_t *loop, sd_bus *bus, fgw_busio_fail_cb_t fail_cb, void *user_data,
		  struct fgw_busio **ret);
/* Stops driving the bus, flushes and drops the reference once the handles are closed. */
struct fgw_busio *fgw_busio_free(struct fgw_busio *io);
/* Whether the connection failed (the fail callback ran). */
bool fgw_busio_failed(const struct fgw_busio *io);
/* Opens a bus connection: @address, or the system bus when NULL. Not attached to a loop. */
int fgw_bus_open(const char *address, const char *description, sd_bus **ret);

/* ---- errors (error.c) ---- */

/* From a method reply: 0 if it is not an error; else the errno and a "Name: message" text. */
int bz_reply_error(sd_bus_message *m, char *buf, size_t size);
/* A reply ("Name: message") that says the characteristic needs a secured link. */
bool bz_is_security_error(const char *text);
/* bluetoothd's stale notify session (BlueZ < 5.84 after a drop during AcquireNotify). */
bool bz_is_notify_wedged(const char *text);

/* ---- properties (props.c) ---- */

enum bz_prop_type {
	BZ_PROP_STRING, /* s */
	BZ_PROP_PATH,	/* o */
	BZ_PROP_BOOL,	/* b */
	BZ_PROP_INT16,	/* n */
	BZ_PROP_UINT16, /* q */
	BZ_PROP_STRV,	/* as */
	BZ_PROP_BYTES,	/* ay */
};

struct bz_prop_value {
	enum bz_prop_type type;
	union {
		const char *s;
		bool b;
		int16_t n;
		uint16_t q;
		char **strv; /* NULL-terminated, owned by the reader (freed after the callback) */
		struct {
			const uint8_t *data;
			size_t len;
		} bytes;
	};
};

struct bz_prop_def {
	const char *name;
	enum bz_prop_type type;
	int id;
};

/*
 * Reads an a{sv} at the read position of @m. For each entry whose name is in @defs and whose
 * variant has the expected type, calls @cb(id, value); entries of a wrong type are skipped and
 * counted in *@ret_bad (when non-NULL); unknown names are skipped. -EBADMSG if @m does not hold
 * an a{sv} there.
 */
int bz_read_props(sd_bus_message *m, const struct bz_prop_def *defs, size_t n_defs,
		  void (*cb)(void *obj, int id, const struct bz_prop_value *v), void *obj,
		  unsigned *ret_bad);
/* "as" at the read position into a NULL-terminated vector; -EBADMSG if not an "as". */
int bz_read_strv(sd_bus_message *m, char ***ret);
void bz_strv_free(char **v);
bool bz_strv_contains_case(char *const *v, const char *s);

/* "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF" → "AA:BB:CC:DD:EE:FF"; -EINVAL if not a device path. */
int bz_path_to_addr(const char *path, char ret[18]);
/* Normalises "aa:bb:..:ff" to upper case; -EINVAL if malformed. */
int bz_addr_normalize(const char *in, char ret[18]);
/* @path equals @prefix or lies below it ("/a/b" is below "/a"). */
bool bz_path_has_prefix(const char *path, const char *prefix);

/* ---- the object model (objects.c) ---- */

struct bz_adapter {
	struct bz_list node;
	struct fgw_bluez *b;
	char *path;
	char name[32]; /* last path component, "hci0" */
	bool powered;
	bool discovering;

	/* what we do with it (adapter.c), once the options chose it */
	bool used;
	enum fgw_bluez_adapter_state state;
	bool power_requested; /* Powered=true sent */
	bool filter_set;      /* SetDiscoveryFilter answered */
	bool discovery_on;    /* StartDiscovery answered OK (we own a discovery session) */
	sd_bus_slot *power_slot, *filter_slot, *discovery_slot;
	uint64_t busy_until_ms; /* a Connect() was answered "busy": none before this */
	uint64_t n_busy;
};

struct bz_device {
	struct bz_list node;
	char *path;
	char *adapter; /* Adapter property, else derived from the path */
	char addr[18];
	char *name;
	char *alias;
	int16_t rssi;
	bool has_rssi;
	bool smp_service;
	bool connected;
	bool services_resolved;
	bool paired;
	uint64_t last_seen_ms;
};

struct bz_gatt_service {
	struct bz_list node;
	char *path;
	char *uuid;
	char *device;
};

struct bz_gatt_char {
	struct bz_list node;
	char *path;
	char *uuid;
	char *service;
	bool flag_write_cmd; /* "write-without-response" */
	bool flag_notify;
	bool has_write_acquired; /* the WriteAcquired property exists: AcquireWrite offered */
	bool has_notify_acquired;
	uint16_t mtu;
};

struct bz_watch {
	struct bz_list node;
	unsigned id;
	fgw_bluez_device_cb_t device_cb;
	fgw_bluez_adapter_cb_t adapter_cb;
	void *user_data;
};

/* A Disconnect() in flight for a freed link: holds a connection slot until it answers. */
struct bz_release {
	struct bz_list node;
	struct fgw_bluez *b;
	sd_bus_slot *slot;
	char *dev_path;	    /* a new link to this device waits until the Disconnect is answered */
	char *adapter_path; /* whose slot it holds */
};

struct fgw_bluez {
	uv_loop_t *loop;
	struct fgw_bluez_options opts;
	char *opt_bus_address, *opt_adapter; /* owned copies of the option strings */
	sd_bus *bus;
	struct fgw_busio *io;
	bool freeing;

	char *bluez_owner; /* unique name owning org.bluez, NULL when bluetoothd is gone */
	sd_bus_slot *match_slots[4];
	sd_bus_slot *owner_slot, *objects_slot;
	bool objects_loaded;

	struct bz_list adapters, devices, services, chars;
	enum fgw_bluez_adapter_state adapter_state; /* of all adapters in use */

	struct bz_list watches;
	unsigned next_watch_id;

	struct bz_list links;	 /* every fgw_bluez_link not yet freed */
	struct bz_list releases; /* struct bz_release */
	unsigned active;	 /* slots in use, all adapters: connecting/connected + releases */

	uv_timer_t retry_timer; /* re-reads objects after a failed GetManagedObjects */
	uv_idle_t kick;		/* runs deferred work (link pump) on the next iteration */
	uv_timer_t drain_timer; /* bounds fgw_bluez_drain() */
	fgw_bluez_drain_cb_t drain_cb;
	void *drain_user_data;
	unsigned n_handles; /* handles still open; memory goes when it drops to 0 */

	/* the pairing agent (agent.c) */
	bool agent_on;
	struct fgw_bluez_agent_options agent;
	char *agent_capability;
	sd_bus_slot *agent_vtable_slot, *agent_reg_slot, *agent_default_slot;

	char last_error[256];
};

/* agent.c: bluetoothd (re)appeared: register the agent again; and teardown. */
void bz_agent_register(struct fgw_bluez *b);
void bz_agent_free(struct fgw_bluez *b);

/* ---- links (link.c; the security steps in secure.c) ---- */

/* One SMP packet waiting to go out: the caller's buffer, written in slices, never copied. */
struct bz_packet {
	struct bz_list node;
	struct fgw_buf *buf; /* a reference: the SMP client keeps its own for a resend */
	size_t off;	     /* bytes written (fd) or handed to WriteValue (fallback) so far */
};

/* One WriteValue call in flight on the fallback path (the message holds its own bytes). */
struct bz_write {
	struct fgw_bluez_link *l;
	sd_bus_slot *slot; /* NULL: this entry is free */
	size_t len;
};

/* WriteValue calls in flight on the fallback path: D-Bus keeps them in order. */
#define BZ_FALLBACK_WINDOW 8

struct fgw_bluez_link {
	struct bz_list node; /* in b->links until freed or detached */
	struct fgw_bluez *b; /* NULL once detached by fgw_bluez_free() */
	char addr[18];
	enum fgw_bluez_link_state state;
	bool freed;
	bool holds_slot;
	fgw_bluez_link_state_cb_t state_cb;
	fgw_bluez_link_rx_cb_t rx_cb;
	void *user_data;

	char *dev_path;
	char *adapter_path; /* the adapter of dev_path, whose slot the link holds */
	char *char_path;
	sd_bus_slot *call_slot; /* the one call of the opening sequence in flight */
	sd_bus_slot *get_slot;	/* Get(ServicesResolved), beside it */
	uv_timer_t timer;	/* bounds searching and opening */
	unsigned n_open;	/* open handles; memory goes with the last */

	int write_fd, notify_fd;
	uv_poll_t write_poll, notify_poll;
	bool write_poll_init, notify_poll_init;
	int write_poll_events;
	bool notifying;		  /* StartNotify path */
	bool await_disconnect;	  /* opening hit "Not connected": reconnect at Connected=false */
	unsigned reopens;	  /* reconnects during this opening */
	uint64_t settle_until_ms; /* waiting for someone else's link to the device to go */
	enum fgw_bluez_security security;
	bool paired_here;	/* Pair() succeeded on this link */
	bool probed;		/* StartNotify showed no security is needed */
	uint64_t connect_ms;	/* when Connect() went out */
	uint64_t busy_since_ms; /* the first "busy" answer of this attempt, 0 none */
	bool await_char;	/* resolved, the SMP characteristic not listed yet */
	bool probing;		/* StartNotify probe in flight on an unpaired link */
	unsigned mtu;

	struct bz_list txq; /* packets not yet written whole */
	struct bz_write writes[BZ_FALLBACK_WINDOW];
	unsigned n_inflight;
	size_t tx_bytes;

	char error[256];
};

/* Size of the text buffer of the reply handlers ("Name: message"). */
#define BZ_REPLY_TEXT 256
#define BZ_ATT_MTU_MIN 23

/*
 * The prologue of every reply to a link's opening step: the call is over, decode the reply.
 * With @what set, "Not connected" is handled here (wait for the disconnect, then connect
 * again) and 1 is returned: the handler returns at once. Else 0, or the reply's errno with
 * "Name: message" in @text (BZ_REPLY_TEXT bytes).
 */
int bz_link_reply(struct fgw_bluez_link *l, sd_bus_message *m, const char *what, char *text);

/* link.c, for secure.c and link-io.c */
void bz_link_set_error(struct fgw_bluez_link *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bz_link_enter_state(struct fgw_bluez_link *l, enum fgw_bluez_link_state s);
/* The one door to FAILED; the callback may free @l: touch nothing after it. */
void bz_link_fail(struct fgw_bluez_link *l, int err, bool disconnect);
struct bz_device *bz_link_device(struct fgw_bluez_link *l);
/* Calls @method on the link's characteristic (or, with @on_device, its device). */
void bz_link_call(struct fgw_bluez_link *l, const char *method, bool with_options, bool on_device,
		  uint64_t timeout_usec, sd_bus_message_handler_t cb);
/* An opening step answered "Not connected": wait for Connected=false, then reconnect. */
void bz_link_not_connected(struct fgw_bluez_link *l, const char *what, const char *text);
void bz_link_acquire_notify(struct fgw_bluez_link *l);
void bz_link_start_notify(struct fgw_bluez_link *l);
void bz_link_restart_timer(struct fgw_bluez_link *l, unsigned ms);
/* link.c, for link-view.c: the steps that open a link. */
void bz_link_acquire(struct fgw_bluez_link *l);
void bz_link_start_timer(struct fgw_bluez_link *l);
bool bz_link_settling(struct fgw_bluez_link *l, struct bz_device *d);
int bz_link_connect(struct fgw_bluez_link *l, struct bz_device *d);
void bz_link_reopen(struct fgw_bluez_link *l, const char *why);
/* link_acquire() once the characteristic is known: pair, probe or subscribe (secure.c). */
void bz_link_subscribe(struct fgw_bluez_link *l, struct bz_device *d, struct bz_gatt_char *c);
/*
 * A Connect() of a bonded device failed at once with bluetoothd's ATT connect error: the
 * kernel starts encryption with the stored key right away (device_connect_le() at
 * BT_IO_SEC_MEDIUM) and a device that lost the bond refuses it (secure.c).
 */
bool bz_bond_refused(struct fgw_bluez_link *l, const char *text);
/* The link dropped while probing an unpaired device: fail it as "pairing required". */
bool bz_link_probe_dropped(struct fgw_bluez_link *l, const char *why);
/* The link timer fired while pairing: cancel the pairing (secure.c). */
void bz_link_pair_timeout(struct fgw_bluez_link *l);
/* A failed subscription: classifies "Notify acquired" and security errors (secure.c). */
void bz_link_subscribe_failed(struct fgw_bluez_link *l, const char *what, int err,
			      const char *text);

/* link-io.c, for link.c: the data path */
void bz_link_handle_closed(uv_handle_t *h);
/* Closes the data path (fds, polls, queued frames, the opening call); keeps the timer. */
void bz_link_drop_path(struct fgw_bluez_link *l);
void bz_link_close_path(struct fgw_bluez_link *l);
void bz_link_set_mtu(struct fgw_bluez_link *l, unsigned mtu);
/* An open link dropped; @disconnect when the device may still be connected. */
void bz_link_lost(struct fgw_bluez_link *l, const char *why, bool disconnect);
void bz_link_ready(struct fgw_bluez_link *l);

/* Called by bluez.c when the view changes, for link.c to react. */
/* @connected_false: the change carried Connected=false (the only disconnect signal 5.66 has). */
void bz_links_on_device_changed(struct fgw_bluez *b, struct bz_device *d, bool connected_false);
/* The device object that had @old_addr now has @new_addr: links on the old one follow it. */
void bz_links_on_address_changed(struct fgw_bluez *b, const char *old_addr, const char *new_addr);
void bz_links_on_device_removed(struct fgw_bluez *b, struct bz_device *d);
void bz_links_on_char_removed(struct fgw_bluez *b, struct bz_gatt_char *c);
void bz_links_on_char_value(struct fgw_bluez *b, struct bz_gatt_char *c, const uint8_t *data,
			    size_t len);
void bz_links_on_adapter_changed(struct fgw_bluez *b);
/* Slots taken on the adapter at @adapter_path (links and pending Disconnects), links ready
 * on it, and whether a Connect() is in flight there. Any pointer may be NULL. */
void bz_links_adapter_usage(struct fgw_bluez *b, const char *adapter_path, unsigned *ret_slots,
			    unsigned *ret_ready, bool *ret_connecting);
/* Starts waiting links when slots are free and devices known; safe to call any time. */
void bz_links_pump(struct fgw_bluez *b);
/* fgw_bluez_free(): fail every link with -ECANCELED and detach it. */
void bz_links_detach_all(struct fgw_bluez *b);
/* Number of links searching for their device (they want discovery on). */
unsigned bz_links_searching(struct fgw_bluez *b);

/* bluez.c: calls, watches, signals */
int bz_new_call(struct fgw_bluez *b, const char *path, const char *iface, const char *member,
		sd_bus_message **ret);
/* The device is under an adapter we use. */
bool bz_device_ours(struct fgw_bluez *b, const struct bz_device *d);
void bz_notify_address_changed(struct fgw_bluez *b, const struct bz_device *d,
			       const char *old_addr);
void bz_notify_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
		      const struct bz_device *d);
/* Tells the adapter watches the (aggregate) adapter state, with @err as the reason. */
void bz_notify_adapter(struct fgw_bluez *b, int err);
/* A signal from the bluetoothd we track (not from a previous instance). */
bool bz_from_bluez(struct fgw_bluez *b, sd_bus_message *m);

/* objects.c: the object view */
struct bz_adapter *bz_adapter_find(struct fgw_bluez *b, const char *path);
struct bz_device *bz_device_find(struct fgw_bluez *b, const char *path);
struct bz_gatt_service *bz_gatt_service_find(struct fgw_bluez *b, const char *path);
struct bz_gatt_char *bz_gatt_char_find(struct fgw_bluez *b, const char *path);
int bz_set_str(char **dst, const char *s);
/* Reads "a{sa{sv}}" (interfaces and their properties) of object @path into the view. */
int bz_read_interfaces(struct fgw_bluez *b, const char *path, sd_bus_message *m);
void bz_iface_removed(struct fgw_bluez *b, const char *path, const char *iface);
int bz_on_properties_changed(sd_bus_message *m, void *user_data, sd_bus_error *ret_error);

/* adapter.c: the adapters we use */
/* Marks the adapters the options name (or the first one listed) as used. */
void bz_adapter_choose(struct fgw_bluez *b);
/* The adapter in use at @path, or NULL. */
struct bz_adapter *bz_adapter_used(struct fgw_bluez *b, const char *path);
/* An adapter object goes away (removed, or the view is cleared): cancels our calls on it. */
void bz_adapter_forget(struct bz_adapter *a);
/* Recomputes the adapter state; tells watches and links when it changed or @err is set. */
void bz_adapter_update_state(struct fgw_bluez *b, int err);
void bz_adapter_props_changed(struct fgw_bluez *b, struct bz_adapter *a);

/* For on_objects_reply() and the fuzzer: parse a GetManagedObjects reply into the view, and
 * forget it. With b->freeing set nothing is reported and no loop handle is touched. */
int bz_objects_parse(struct fgw_bluez *b, sd_bus_message *m);
void bz_objects_clear(struct fgw_bluez *b);
/*
 * The copy of @addr that hears it best: on an adapter in use, a powered one first, then a
 * recent sighting, then the stronger RSSI. NULL when no adapter in use lists it.
 */
struct bz_device *bz_device_find_addr(struct fgw_bluez *b, const char *addr);
/* true when @x is a better copy than @y (the order above). */
bool bz_device_better(struct fgw_bluez *b, const struct bz_device *x, const struct bz_device *y,
		      uint64_t now);
/* Below the configured RSSI threshold (an invalid RSSI, 127, is unknown, never too weak). */
bool bz_device_too_weak(const struct fgw_bluez *b, const struct bz_device *d);
struct bz_gatt_char *bz_find_smp_char(struct fgw_bluez *b, struct bz_device *d);
/* Re-evaluates whether discovery should run (scan wanted or a link searching). */
void bz_discovery_update(struct fgw_bluez *b);
/* Completes a pending fgw_bluez_drain() once no release is left. */
void bz_drain_check(struct fgw_bluez *b);
/* Schedules bz_links_pump() on the next loop iteration. */
void bz_kick(struct fgw_bluez *b);
/* Async call to org.bluez with the configured call timeout. */
int bz_call(struct fgw_bluez *b, sd_bus_message *m, sd_bus_slot **slot, sd_bus_message_handler_t cb,
	    void *user_data, uint64_t timeout_usec);
void bz_set_error(struct fgw_bluez *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
