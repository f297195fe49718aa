/*
 * bluez: Bluetooth LE through bluetoothd's D-Bus API (org.bluez), on the libuv loop. It keeps a
 * live view of the adapters it is told to use and the devices they see (ObjectManager:
 * GetManagedObjects, InterfacesAdded/Removed, PropertiesChanged), powers the adapter and scans with
 * a discovery filter, and manages connections to devices' SMP characteristic: Device1.Connect, wait
 * for ServicesResolved, find the SMP characteristic, open the data path with AcquireWrite +
 * AcquireNotify (fds polled by libuv) or, when those are not offered, with
 * WriteValue(type=command) + StartNotify. The bus fd sits in a uv_poll and sd-bus' timeout in a
 * uv_timer; no call blocks the loop. Only this part (and the ble transport on top of it) speaks
 * sd-bus. bluetoothd restarts, adapter removal and Powered=false fail the open links cleanly;
 * the view and discovery come back by themselves when the adapter returns.
 *
 * Several adapters: bluetoothd lists one Device1 per adapter that hears a device
 * (/org/bluez/hci0/dev_X and /org/bluez/hci1/dev_X). Here they are one device, reported with
 * the adapter that hears it best (a recent sighting first, then the RSSI); a link connects
 * through that adapter, or the next best one with a free slot. Each adapter has its own
 * max_connections slots and at most one Connect() in flight: a controller takes one LE Create
 * Connection at a time (the kernel answers a second one with EBUSY, bluetoothd passes it on as
 * org.bluez.Error.Failed "le-connection-busy"), so attempts are serialised here, and a busy
 * answer (ours or another client's attempt) makes the link wait and try again, never fail.
 *
 * Facts the code relies on (BlueZ 5.66): there is no Connected=true signal for LE centrals, so
 * "connected" is the Connect() reply plus ServicesResolved; a loss is Connected=false, a hang-up
 * on an acquired fd, the device or characteristic object going away, or the adapter going away,
 * whichever comes first, and it is reported once.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct fgw_bluez;
struct fgw_bluez_link;

#define FGW_BLUEZ_SMP_SERVICE_UUID "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
#define FGW_BLUEZ_SMP_CHAR_UUID "da2e7828-fbce-4e01-ae9e-261174997c48"

/*
 * Largest value written in one ATT write. ATT allows MTU-3, but a bluetoothd-hosted peripheral
 * (the real-BlueZ test tier) silently drops writes of 511+ bytes, and Zephyr's ATT MTU is at
 * most 498 anyway, so the cap costs nothing on real devices.
 */
#define FGW_BLUEZ_MAX_WRITE 510

/* HCI's "RSSI not available": reported as unknown (has_rssi false), never as too weak. */
#define FGW_BLUEZ_RSSI_INVALID 127

struct fgw_bluez_options {
	const char *bus_address; /* NULL: the system bus (honours DBUS_SYSTEM_BUS_ADDRESS) */
	/* Adapters to use: "hci0", a list "hci0,hci1", "all"; NULL or "": the first adapter
	 * bluetoothd lists (the lowest path). */
	const char *adapter;
	bool power_on;	     /* set Powered=true when the adapter is off */
	bool scan;	     /* discover all along; else only while a link looks for its device */
	bool filter_service; /* discovery filter on the SMP service UUID */
	int rssi_threshold;  /* dBm; weaker devices are not reported; 0: no threshold. Applied
			      * here, not in bluetoothd's filter (which would hide 127s) */
	unsigned max_connections;    /* links connecting or connected at once per adapter, >= 1 */
	unsigned connect_timeout_ms; /* finding + connecting + resolving + acquiring */
	unsigned call_timeout_ms;    /* any other D-Bus call */
	unsigned pair_timeout_ms;    /* Device1.Pair(), called asynchronously; 0: 30 s */
	bool acquire;		     /* use AcquireWrite/AcquireNotify when offered */
};

/*
 * An adapter selection as written in a configuration ("all", "hci0", "hci0, hci1" or
 * "hci0 hci1") into the form the options take: "all" or "hci0,hci1" (names of letters and
 * digits, at most 31 characters, no repeats). "" stays "" (the first adapter listed).
 * -EINVAL for anything else (the text is not echoed), -ENOBUFS if @size is too small.
 */
int fgw_bluez_adapters_parse(const char *text, char *ret, size_t size);

/* Defaults: system bus, first adapter, power on, scan, SMP filter, -90 dBm, 8 links, 20 s. */
void fgw_bluez_options_init(struct fgw_bluez_options *opts);

/*
 * Connects to the bus and starts tracking (asynchronously: nothing is reported before this
 * returns). Fails only if the bus cannot be reached or the options are invalid; a missing
 * adapter or bluetoothd is a state (FGW_BLUEZ_ADAPTER_STATE_ABSENT), not an error.
 */
int fgw_bluez_new(uv_loop_t *loop, const struct fgw_bluez_options *opts, struct fgw_bluez **ret);
/*
 * Links still open fail with -ECANCELED (their callback runs) and are detached: they must still
 * be freed with fgw_bluez_link_free(). Memory is released once the loop has closed the handles.
 * Must not be called from a callback of this object. NULL ok.
 */
struct fgw_bluez *fgw_bluez_free(struct fgw_bluez *b);

/*
 * Calls @cb once no Disconnect() of a freed link is pending any more (0), or after @timeout_ms
 * (-ETIMEDOUT). A process must not leave while bluetoothd still holds a Disconnect of its: the
 * link would drop ~2 s later under the next user's AcquireNotify, which wedges bluetoothd 5.66
 * ("Notify acquired" until it restarts). Replaces an earlier pending drain. May call @cb
 * from the loop only (never before return).
 */
typedef void (*fgw_bluez_drain_cb_t)(struct fgw_bluez *b, int err, void *user_data);
int fgw_bluez_drain(struct fgw_bluez *b, unsigned timeout_ms, fgw_bluez_drain_cb_t cb,
		    void *user_data);

/* ---- adapter ---- */

enum fgw_bluez_adapter_state {
	FGW_BLUEZ_ADAPTER_STATE_ABSENT, /* no bluetoothd on the bus, or no (matching) adapter */
	FGW_BLUEZ_ADAPTER_STATE_OFF,	/* adapter present, Powered=false */
	FGW_BLUEZ_ADAPTER_STATE_ON,	/* powered: links may connect */
	_FGW_BLUEZ_ADAPTER_STATE_MAX,
	_FGW_BLUEZ_ADAPTER_STATE_INVALID = -EINVAL,
};
const char *fgw_bluez_adapter_state_to_string(enum fgw_bluez_adapter_state s);

/*
 * Called on every adapter state change. @err explains a step that went wrong (-EBADMSG for a
 * malformed GetManagedObjects reply, -ENODEV for a configured adapter that is not there,
 * -EACCES when powering on is refused, ...); 0 when there is nothing to explain. The last
 * such reason is also in fgw_bluez_last_error().
 */
typedef void (*fgw_bluez_adapter_cb_t)(struct fgw_bluez *b, enum fgw_bluez_adapter_state state,
				       int err, void *user_data);
unsigned fgw_bluez_add_adapter_watch(struct fgw_bluez *b, fgw_bluez_adapter_cb_t cb,
				     void *user_data);
/* Of all adapters in use: ON when one is on, OFF when one is there, else ABSENT. */
enum fgw_bluez_adapter_state fgw_bluez_adapter_state(struct fgw_bluez *b);
/* The first adapter in use ("hci0"; a powered one first), NULL when none. Borrowed until the
 * next loop iteration. */
const char *fgw_bluez_adapter_name(struct fgw_bluez *b);

struct fgw_bluez_adapter_info {
	char name[32]; /* "hci0" */
	enum fgw_bluez_adapter_state state;
	unsigned links;	 /* slots taken: connecting, connected, or disconnecting */
	unsigned ready;	 /* links with an open data path */
	bool connecting; /* a Connect() is in flight (one at a time per adapter) */
	uint64_t busy;	 /* Connect() answers "busy" (controller or kernel) so far */
};
/* Fills up to @max entries, one per adapter in use (as bluetoothd listed them); returns how
 * many exist. */
size_t fgw_bluez_adapters(struct fgw_bluez *b, struct fgw_bluez_adapter_info *ret, size_t max);
/* Human-readable reason of the last failed step ("" if none), for logs. Borrowed. */
const char *fgw_bluez_last_error(struct fgw_bluez *b);
/*
 * True once the D-Bus connection itself is gone (the bus daemon stopped or dropped us): the
 * adapter is then reported absent with -ENETDOWN, as when bluetoothd leaves, but nothing
 * comes back on this object. Free it and make a new one to reconnect.
 */
bool fgw_bluez_bus_lost(struct fgw_bluez *b);

/* ---- pairing agent ---- */

/*
 * Where a device's passkey comes from: 0 and *@ret (0..999999) when known, -ENOENT when not.
 * The passkey is a secret: it never goes to a log.
 */
typedef int (*fgw_bluez_passkey_cb_t)(const char *addr, uint32_t *ret, void *user_data);

struct fgw_bluez_agent_options {
	/* "KeyboardOnly" when passkeys are known (passkey entry on our side, authenticated
	 * keys), "NoInputNoOutput" for Just Works. */
	const char *capability;
	fgw_bluez_passkey_cb_t passkey_cb; /* NULL: no passkey for anyone */
	void *user_data;
	bool allow_confirmation; /* accept numeric comparison (RequestConfirmation) */
	bool make_default;	 /* RequestDefaultAgent: also answer pairings bluetoothd starts */
};

/*
 * Exports an org.bluez.Agent1 on our bus connection and registers it (AgentManager1
 * RegisterAgent, RequestDefaultAgent if asked), again whenever bluetoothd comes back.
 * Device1.Pair() from this connection asks this agent (BlueZ's agent_get(sender)). It answers
 * RequestPasskey from @passkey_cb, refuses RequestConfirmation unless allowed, and rejects
 * everything else (PIN codes, authorizations) with org.bluez.Error.Rejected and a logged
 * reason. -EINVAL for an unknown capability, -EALREADY when started already.
 */
int fgw_bluez_agent_start(struct fgw_bluez *b, const struct fgw_bluez_agent_options *opts);
/*
 * A new capability for the running agent ("KeyboardOnly" or "NoInputNoOutput"), e.g. once
 * the first device with its own passkey is enrolled: registered again with bluetoothd.
 * -EINVAL if the agent is not running or the capability is not one of those.
 */
int fgw_bluez_agent_set_capability(struct fgw_bluez *b, const char *capability);

/*
 * A passkey as kept in a file or a systemd credential: exactly six decimal digits, optional
 * surrounding white space (a trailing newline). -EINVAL otherwise; the text is never echoed.
 */
int fgw_bluez_passkey_parse(const char *text, size_t len, uint32_t *ret);
/* Reads and parses @path (at most 64 bytes). -errno of open/read, -EINVAL if malformed. */
int fgw_bluez_passkey_read(const char *path, uint32_t *ret);

/*
 * Forgets the bond bluetoothd holds for @addr (Adapter1.RemoveDevice; the device object goes
 * too and comes back when seen again). @cb gets 0, -ENOENT when not listed, or an error.
 */
typedef void (*fgw_bluez_done_cb_t)(struct fgw_bluez *b, int err, const char *text,
				    void *user_data);
int fgw_bluez_remove_device(struct fgw_bluez *b, const char *addr, fgw_bluez_done_cb_t cb,
			    void *user_data);

/* ---- devices ---- */

struct fgw_bluez_device_info {
	char addr[18];	  /* "AA:BB:CC:DD:EE:FF" */
	const char *name; /* Name, else Alias, else NULL; borrowed */
	int16_t rssi;	  /* dBm; valid if has_rssi */
	bool has_rssi;
	bool smp_service; /* the SMP service UUID is listed (advertised or resolved) */
	bool connected;
	bool paired;	       /* bluetoothd holds a bond (Paired) */
	uint64_t last_seen_ms; /* fgw_now_ms() when bluetoothd last told us about it */
	char adapter[32];      /* the adapter that hears it best ("hci0") */
	char old_addr[18];     /* FGW_BLUEZ_DEVICE_ADDRESS_CHANGED only: the address it had */
};

enum fgw_bluez_device_event {
	FGW_BLUEZ_DEVICE_FOUND,	  /* first seen by an adapter in use */
	FGW_BLUEZ_DEVICE_UPDATED, /* RSSI, name, UUIDs, connection or best adapter changed */
	FGW_BLUEZ_DEVICE_LOST,	  /* no adapter in use lists it any more */
	/* bluetoothd resolved the device's identity (pairing gave its IRK): the same object now
	 * has another Address; info->old_addr had it. Links follow the object to the new one. */
	FGW_BLUEZ_DEVICE_ADDRESS_CHANGED,
};
typedef void (*fgw_bluez_device_cb_t)(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
				      const struct fgw_bluez_device_info *info, void *user_data);
/* A watch lives as long as @b (nothing removes one earlier). Returns an id > 0, 0 on
 * allocation failure. */
unsigned fgw_bluez_add_device_watch(struct fgw_bluez *b, fgw_bluez_device_cb_t cb, void *user_data);
/* Fills @ret for a known device. -ENOENT if bluetoothd does not list it. */
int fgw_bluez_device_get(struct fgw_bluez *b, const char *addr, struct fgw_bluez_device_info *ret);
/* Calls @cb(FGW_BLUEZ_DEVICE_FOUND) for each known device; @cb must not free @b. */
void fgw_bluez_foreach_device(struct fgw_bluez *b, fgw_bluez_device_cb_t cb, void *user_data);

/* ---- links: the connection manager ---- */

enum fgw_bluez_link_state {
	FGW_BLUEZ_LINK_STATE_SEARCHING,	 /* adapter off or device not listed: scanning for it */
	FGW_BLUEZ_LINK_STATE_WAITING,	 /* device known; no slot free, or its adapter is busy
					  * connecting another link (FIFO) */
	FGW_BLUEZ_LINK_STATE_CONNECTING, /* Device1.Connect sent */
	FGW_BLUEZ_LINK_STATE_RESOLVING,	 /* connected, waiting for ServicesResolved */
	FGW_BLUEZ_LINK_STATE_PAIRING,	 /* Device1.Pair() in flight (security required) */
	FGW_BLUEZ_LINK_STATE_ACQUIRING,	 /* opening the notify and write paths */
	FGW_BLUEZ_LINK_STATE_READY,	 /* data path open; state_cb(0) was called */
	FGW_BLUEZ_LINK_STATE_FAILED,	 /* failed or lost; state_cb(<0) was called */
	_FGW_BLUEZ_LINK_STATE_MAX,
	_FGW_BLUEZ_LINK_STATE_INVALID = -EINVAL,
};
const char *fgw_bluez_link_state_to_string(enum fgw_bluez_link_state s);

/*
 * Link outcome, called once: 0 when the link is READY, or < 0 when opening failed or an open
 * link was lost; after a failure only fgw_bluez_link_free() is left. May free the link.
 *
 * Errors (the D-Bus error behind them is in fgw_bluez_link_error()):
 *   -EHOSTDOWN     the device was not listed by bluetoothd within connect_timeout_ms (out of
 *                  range: not seen advertising)
 *   -ETIMEDOUT     the attempt took longer than connect_timeout_ms (org.bluez.Error.Failed
 *                  "le-connection-abort-by-local", D-Bus NoReply/Timeout too)
 *   -EINPROGRESS   org.bluez.Error.InProgress (another client is connecting/acquiring)
 *   -EAGAIN        org.bluez.Error.NotAvailable
 *   -ENETDOWN      adapter off or gone, bluetoothd left the bus (NotReady, ServiceUnknown)
 *   -ECONNREFUSED  org.bluez.Error.Failed for a connection ("le-connection-*")
 *   -EIO           org.bluez.Error.Failed otherwise
 *   -EPERM         org.bluez.Error.NotPermitted     -EACCES  NotAuthorized / Authentication*
 *   -ENODEV        DoesNotExist, UnknownObject      -EOPNOTSUPP  NotSupported, UnknownMethod
 *   -ENOTCONN      NotConnected                     -EINVAL  InvalidArguments, Invalid*
 *   -ENOENT        the device has no SMP characteristic
 *   -EBUSY         the adapter answered every attempt "busy" for connect_timeout_ms
 *                  (le-connection-busy, ...-concurrent-connection-limit)
 *   -EBADMSG       a reply or property with an unexpected signature or missing field
 *   -ECONNRESET    an open link was lost (Connected=false, fd hang-up, object removed)
 *   -ECANCELED     fgw_bluez_free() while the link was open
 *   -ENOKEY        the SMP characteristic needs a secured link and none was set up: the
 *                  subscription was refused with an ATT security error ("pairing required")
 *   -EKEYREJECTED  pairing failed: wrong passkey, refused by either side, no usable agent
 *                  (AuthenticationFailed/Rejected/Canceled/Timeout from Device1.Pair)
 *   -EKEYEXPIRED   a bonded device refused the connection at once: it lost its bond
 *                  (reflashed, reset); remove ours (fgw_bluez_remove_device) and pair again
 *   -EUCLEAN       bluetoothd holds a stale notify session on the characteristic
 *                  ("Notify acquired", BlueZ < 5.84): only restarting bluetoothd clears it
 */
typedef void (*fgw_bluez_link_state_cb_t)(struct fgw_bluez_link *l, int err, void *user_data);
/* One notification (one ATT Handle Value Notification's value). May free the link. */
typedef void (*fgw_bluez_link_rx_cb_t)(struct fgw_bluez_link *l, const uint8_t *data, size_t len,
				       void *user_data);

/*
 * Starts opening a link to @addr ("AA:BB:CC:DD:EE:FF", either case), through the adapter that
 * hears it best with a free slot. Requests beyond max_connections (per adapter), or behind
 * another Connect() of the same adapter, wait in FIFO order (state WAITING) without a time limit;
 * connect_timeout_ms applies while searching and again from the moment the attempt gets its slot.
 * The slot is held until the link is freed and bluetoothd has disconnected the device. A connection
 * that drops while opening (Connected=false, or "Not connected" from an Acquire*: typically an
 * earlier user's Disconnect() completing) is connected again, up to 3 times within the timeout.
 * Returns -EINVAL for a bad address; otherwise 0 and @state_cb follows (never before return).
 */
int fgw_bluez_connect(struct fgw_bluez *b, const char *addr, fgw_bluez_link_state_cb_t state_cb,
		      fgw_bluez_link_rx_cb_t rx_cb, void *user_data, struct fgw_bluez_link **ret);
/* Security a link sets up before it subscribes (what the device's SMP characteristic needs). */
enum fgw_bluez_security {
	FGW_BLUEZ_SECURITY_UNKNOWN, /* not known yet: subscribe with StartNotify first, which
				     * fails cleanly on a protected characteristic */
	FGW_BLUEZ_SECURITY_NONE,    /* open: AcquireNotify straight away */
	FGW_BLUEZ_SECURITY_ENCRYPT, /* pair (unless bonded) before subscribing */
	FGW_BLUEZ_SECURITY_AUTHEN,  /* same; the pairing must be authenticated (passkey) */
	_FGW_BLUEZ_SECURITY_MAX,
	_FGW_BLUEZ_SECURITY_INVALID = -EINVAL,
};
const char *fgw_bluez_security_to_string(enum fgw_bluez_security s);
enum fgw_bluez_security fgw_bluez_security_from_string(const char *s);
/*
 * Sets what the link does before subscribing; call right after fgw_bluez_connect() (no
 * callback runs before the loop does). Never AcquireNotify on an unpaired protected
 * characteristic: bluetoothd 5.66 never answers it and later crashes.
 */
void fgw_bluez_link_set_security(struct fgw_bluez_link *l, enum fgw_bluez_security sec);
/* true once the link paired the device itself (Device1.Pair() succeeded on this link). */
bool fgw_bluez_link_paired(struct fgw_bluez_link *l);

/* Disconnects (if connected) and frees; no callback follows. NULL ok. */
struct fgw_bluez_link *fgw_bluez_link_free(struct fgw_bluez_link *l);

/*
 * Queues one SMP packet, written in slices of fgw_bluez_link_write_size() bytes straight from
 * @packet (the link keeps a reference until its last slice is out; nothing is copied but by
 * the kernel or into a WriteValue message). 0 when queued, -ENOTCONN unless READY, -ENOBUFS
 * when more than 128 KiB are queued already, -ENOMEM. Never calls back from inside.
 */
struct fgw_buf;
int fgw_bluez_link_send(struct fgw_bluez_link *l, struct fgw_buf *packet);
enum fgw_bluez_link_state fgw_bluez_link_state(struct fgw_bluez_link *l);
/* ATT MTU from AcquireWrite/AcquireNotify or the MTU property (23 if unknown). */
unsigned fgw_bluez_link_mtu(struct fgw_bluez_link *l);
/* Bytes per write: min(MTU - 3, FGW_BLUEZ_MAX_WRITE). */
size_t fgw_bluez_link_write_size(struct fgw_bluez_link *l);
/* true when both directions use acquired fds, false on the WriteValue/StartNotify path. */
bool fgw_bluez_link_acquired(struct fgw_bluez_link *l);
const char *fgw_bluez_link_addr(struct fgw_bluez_link *l);
/* Why the link failed, e.g. "org.bluez.Error.Failed: le-connection-abort-by-local". Borrowed. */
const char *fgw_bluez_link_error(struct fgw_bluez_link *l);

/* The adapter the link connects through ("hci0"), NULL before it connects. Borrowed. */
const char *fgw_bluez_link_adapter(struct fgw_bluez_link *l);

/* Links connecting or connected now, over all adapters (max_connections bounds each one). */
unsigned fgw_bluez_active_links(struct fgw_bluez *b);

/*
 * Maps a D-Bus error name (and message, which refines org.bluez.Error.Failed) to a negative
 * errno, as listed above. Exposed for the transport and tests.
 */
int fgw_bluez_error_to_errno(const char *name, const char *message);
