/*
 * A scripted org.bluez peer for lib/bluez's unit tests: a private dbus-daemon (own config in a
 * temp dir) and a fake bluetoothd on the test's libuv loop that exports one adapter, devices,
 * the SMP service and characteristic, and answers as the test tells it — including wrong
 * signatures, missing properties, errors and silence. Not the simulator: failure paths only.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#define FAKE_MAX_DEVICES 24
#define FAKE_MAX_FRAMES 256

struct fake_bluez;

struct fake_dev {
	struct fake_bluez *f;
	bool exported; /* the Device1 object exists */
	char addr[18];
	char path[96];
	char name[32];
	int16_t rssi;
	bool connected;
	bool resolved;
	bool gatt;		/* service + characteristic objects exist */
	bool no_address_prop;	/* Device1 without Address */
	bool rssi_as_string;	/* RSSI with the wrong type */
	bool char_without_uuid; /* the SMP characteristic lacks UUID */
	/* Connect(): 0 = succeed, else reply with this error name/message */
	const char *connect_error, *connect_message;
	bool connect_silent;   /* never answer Connect() (fake_finish_held_connect() does) */
	unsigned connect_busy; /* answer this many Connect() "le-connection-busy" first */
	unsigned adapter;      /* 0: hci0, 1: hci1 */
	bool no_resolve;       /* never set ServicesResolved */
	int wfd, nfd;	       /* our ends of AcquireWrite / AcquireNotify */
	uv_poll_t wpoll;
	bool wpoll_on;
	bool notifying; /* StartNotify */
	unsigned n_connects, n_disconnects;
	/* what arrived on the write path */
	unsigned n_frames;
	uint16_t frame_len[FAKE_MAX_FRAMES];
	bool write_value_not_command; /* a WriteValue without type=command was seen */
	unsigned rx_bytes;
	void *connect_call; /* held Connect() message while silent */
};

struct fake_bluez {
	uv_loop_t *loop;
	char dir[64];
	char address[160];
	int daemon_pid;
	void *bus; /* sd_bus * */
	void *io;  /* struct fgw_busio * */
	void *filter_slot;
	bool on_bus;

	bool adapter_present;
	bool second_adapter; /* hci1 too (set before fake_start); power is shared */
	bool powered;
	bool discovering;
	bool refuse_power; /* Set Powered fails with NotAuthorized */
	uint16_t mtu;
	bool no_acquire;		/* no WriteAcquired/NotifyAcquired, AcquireX unsupported */
	bool acquire_bad_signature;	/* AcquireWrite answers "s" */
	bool acquire_notify_no_mtu;	/* AcquireNotify answers "h" */
	unsigned acquire_not_connected; /* AcquireNotify: "Not connected" + a late disconnect */
	unsigned om_bad_replies;	/* GetManagedObjects answers "s" this many times */
	unsigned om_calls;
	bool echo;	  /* echo every write back as a notification */
	int write_sndbuf; /* > 0: SO_SNDBUF of the AcquireWrite fd handed out (a slow reader) */

	/* recorded */
	bool filter_transport_le, filter_uuid_smp;
	int filter_rssi;
	unsigned n_start_discovery, n_set_powered;
	unsigned connected_now, connected_max;

	struct fake_dev dev[FAKE_MAX_DEVICES];
	unsigned n_dev;
};

/* Starts dbus-daemon in a temp dir and the fake on it. Returns 0, or -errno. */
int fake_start(struct fake_bluez *f, uv_loop_t *loop);
/* Stops everything (drains the loop a little). */
void fake_stop(struct fake_bluez *f);

/* Adds a device (exported at once if @now, else only after fake_export()). */
struct fake_dev *fake_add_device(struct fake_bluez *f, const char *addr, const char *name,
				 bool now);
/* The same, under adapter @adapter (0: hci0, 1: hci1): one object per adapter, as BlueZ. */
struct fake_dev *fake_add_device_on(struct fake_bluez *f, unsigned adapter, const char *addr,
				    const char *name, bool now);
/* hci1 goes away (unplugged): its devices' objects, then the adapter's. */
void fake_remove_adapter1(struct fake_bluez *f);
/* Answers a held (connect_silent) Connect() with success. */
void fake_finish_held_connect(struct fake_bluez *f, struct fake_dev *d);
void fake_export(struct fake_bluez *f, struct fake_dev *d);
void fake_unexport(struct fake_bluez *f, struct fake_dev *d);
void fake_set_rssi(struct fake_bluez *f, struct fake_dev *d, int16_t rssi);
/* PropertiesChanged Address (+ AddressType), as BlueZ's device_update_addr after pairing. */
void fake_set_address(struct fake_bluez *f, struct fake_dev *d, const char *addr, const char *type);
/* Drops the link from the device side: Connected=false (if @signal) and/or fds closed. */
void fake_drop(struct fake_bluez *f, struct fake_dev *d, bool signal, bool close_fds);
void fake_set_powered(struct fake_bluez *f, bool on);
/* bluetoothd leaves the bus (all objects go with it) / comes back with a new unique name. */
void fake_leave(struct fake_bluez *f);
int fake_return(struct fake_bluez *f);
/* Sends a notification as the device would (acquired fd or PropertiesChanged Value). */
void fake_notify(struct fake_bluez *f, struct fake_dev *d, const uint8_t *data, size_t len);
/* Stops (or resumes) reading the AcquireWrite fd: bluetoothd behind, the writer sees EAGAIN. */
void fake_stall_writes(struct fake_dev *d, bool stall);
