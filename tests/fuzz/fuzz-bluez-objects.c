/*
 * Fuzzes lib/bluez's reading of bluetoothd's object tree: the input is a small program that
 * builds a GetManagedObjects-shaped reply ("a{oa{sa{sv}}}", or something else when the program
 * says so) with chosen paths, interfaces, property names and variant types; the parser must
 * take what fits, skip what does not, and never crash or leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bluez-private.h"
#include "util.h"

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t next(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static const char *const paths[] = {
    "/org/bluez/hci0",
    "/org/bluez/hci1",
    "/org/bluez/hci0/dev_C0_00_00_00_00_01",
    "/org/bluez/hci0/dev_C0_00_00_00_00_02",
    "/org/bluez/hci0/dev_zz",
    "/org/bluez/hci0/dev_C0_00_00_00_00_01/service0010",
    "/org/bluez/hci0/dev_C0_00_00_00_00_01/service0010/char0011",
    "/org/bluez/hci0/dev_C0_00_00_00_00_02/service0010/char0011",
    "/",
};

static const char *const ifaces[] = {
    BLUEZ_ADAPTER_IFACE,
    BLUEZ_DEVICE_IFACE,
    BLUEZ_SERVICE_IFACE,
    BLUEZ_CHAR_IFACE,
    "org.freedesktop.DBus.Introspectable",
    "org.bluez.LEAdvertisingManager1",
};

static const char *const names[] = {
    "Address", "Name",		"RSSI",		  "UUIDs", "Connected", "ServicesResolved",
    "Adapter", "Powered",	"Discovering",	  "UUID",  "Device",	"Service",
    "Flags",   "WriteAcquired", "NotifyAcquired", "MTU",   "Value",	"X",
};

static const char *const strings[] = {
    "C0:00:00:00:00:01",
    "c0:00:00:00:00:02",
    "garbage",
    FGW_BLUEZ_SMP_SERVICE_UUID,
    FGW_BLUEZ_SMP_CHAR_UUID,
    "",
    "write-without-response",
    "notify",
};

#define PICK(in, a) (a)[next(in) % ARRAY_SIZE(a)]

/* One variant of a type the program chooses. */
static int append_variant(sd_bus_message *m, struct in *in, int depth)
{
	uint8_t t = next(in) % 11;
	int r;

	switch (t) {
	case 0:
		return sd_bus_message_append(m, "v", "s", PICK(in, strings));
	case 1:
		return sd_bus_message_append(m, "v", "o", PICK(in, paths));
	case 2:
		return sd_bus_message_append(m, "v", "b", next(in) & 1);
	case 3:
		return sd_bus_message_append(m, "v", "n", (int16_t) (next(in) << 8 | next(in)));
	case 4:
		return sd_bus_message_append(m, "v", "q", (uint16_t) (next(in) << 8 | next(in)));
	case 5: {
		unsigned k = next(in) % 5;
		r = sd_bus_message_open_container(m, 'v', "as");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'a', "s");
		for (unsigned i = 0; r >= 0 && i < k; i++)
			r = sd_bus_message_append(m, "s", PICK(in, strings));
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		return r;
	}
	case 6: {
		uint8_t buf[32];
		size_t k = next(in) % sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = next(in);
		r = sd_bus_message_open_container(m, 'v', "ay");
		if (r >= 0)
			r = sd_bus_message_append_array(m, 'y', buf, k);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		return r;
	}
	case 7:
		return sd_bus_message_append(m, "v", "i", (int32_t) next(in));
	case 8:
		return sd_bus_message_append(m, "v", "a{qv}", 1, 0x59, "ay", 1, next(in));
	case 9:
		if (depth > 2)
			return sd_bus_message_append(m, "v", "y", next(in));
		r = sd_bus_message_open_container(m, 'v', "v");
		if (r >= 0)
			r = append_variant(m, in, depth + 1);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		return r;
	default:
		return sd_bus_message_append(m, "v", "(ss)", "a", "b");
	}
}

static int append_props(sd_bus_message *m, struct in *in)
{
	unsigned k = next(in) % 8;
	int r = sd_bus_message_open_container(m, 'a', "{sv}");

	for (unsigned i = 0; r >= 0 && i < k; i++) {
		r = sd_bus_message_open_container(m, 'e', "sv");
		if (r >= 0)
			r = sd_bus_message_append(m, "s", PICK(in, names));
		if (r >= 0)
			r = append_variant(m, in, 0);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
	}
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	return r;
}

static int build(sd_bus *bus, struct in *in, sd_bus_message **ret)
{
	sd_bus_message *m = NULL;
	unsigned n_obj;
	int r;

	r = sd_bus_message_new_signal(bus, &m, "/", "org.example.Fuzz", "Objects");
	if (r < 0)
		return r;
	if (next(in) % 16 == 0) {
		/* not the shape at all */
		r = sd_bus_message_append(m, "as", 1, "x");
		goto out;
	}
	n_obj = next(in) % 8;
	r = sd_bus_message_open_container(m, 'a', "{oa{sa{sv}}}");
	for (unsigned i = 0; r >= 0 && i < n_obj; i++) {
		unsigned n_if = next(in) % 3;
		r = sd_bus_message_open_container(m, 'e', "oa{sa{sv}}");
		if (r >= 0)
			r = sd_bus_message_append(m, "o", PICK(in, paths));
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'a', "{sa{sv}}");
		for (unsigned j = 0; r >= 0 && j < n_if; j++) {
			r = sd_bus_message_open_container(m, 'e', "sa{sv}");
			if (r >= 0)
				r = sd_bus_message_append(m, "s", PICK(in, ifaces));
			if (r >= 0)
				r = append_props(m, in);
			if (r >= 0)
				r = sd_bus_message_close_container(m);
		}
		if (r >= 0)
			r = sd_bus_message_close_container(m);
		if (r >= 0)
			r = sd_bus_message_close_container(m);
	}
	if (r >= 0)
		r = sd_bus_message_close_container(m);
out:
	if (r >= 0)
		r = sd_bus_message_seal(m, 1, 0);
	if (r >= 0)
		r = sd_bus_message_rewind(m, true);
	if (r < 0) {
		sd_bus_message_unref(m);
		return r;
	}
	*ret = m;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sd_bus *bus;
	struct fgw_bluez b = {0};
	struct in in = {data, size};
	sd_bus_message *m = NULL;

	if (!bus) {
		/* A bus object that is "open" (messages need one), never used for I/O. */
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
		    sd_bus_new(&bus) < 0 || sd_bus_set_fd(bus, sv[0], sv[0]) < 0 ||
		    sd_bus_start(bus) < 0)
			abort();
		close(sv[1]);
	}
	fgw_bluez_options_init(&b.opts);
	bz_list_init(&b.adapters);
	bz_list_init(&b.devices);
	bz_list_init(&b.services);
	bz_list_init(&b.chars);
	bz_list_init(&b.watches);
	bz_list_init(&b.links);
	bz_list_init(&b.releases);
	b.freeing = true; /* no reports, no loop handles */
	if (build(bus, &in, &m) < 0)
		return 0;
	(void) bz_objects_parse(&b, m);
	/* the view must be usable whatever came in */
	(void) bz_device_find_addr(&b, "C0:00:00:00:00:01");
	bz_objects_clear(&b);
	sd_bus_message_unref(m);
	return 0;
}
