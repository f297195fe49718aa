/*
 * fotagw-sim-blectl: a scriptable BLE central over BlueZ's D-Bus API (sd-bus), for the simulator's
 * tests. It reads one command per line on stdin and answers one line on stdout ("ok ..." or
 * "err <D-Bus error name> <message>"), so a test can hold a discovery session, a notify session
 * or acquired fds across steps, which one-shot busctl calls cannot.
 *
 * Commands:
 *   adapter hciN                     later commands go to this adapter (default hci0)
 *   start-discovery | stop-discovery
 *   filter clear | filter pattern=P | filter rssi=N | filter uuid=U
 *   wait-devices N TIMEOUT_MS        until N Device1 objects exist ("ok N ELAPSED_MS")
 *   wait-gone ADDR TIMEOUT_MS        until the Device1 object is removed
 *   connect ADDR [TIMEOUT_MS]        Device1.Connect
 *   disconnect ADDR
 *   remove ADDR                      Adapter1.RemoveDevice
 *   wait-prop ADDR PROP VALUE TIMEOUT_MS    a Device1 boolean property (true/false)
 *   acquire ADDR                     AcquireNotify then AcquireWrite ("ok MTU")
 *   start-notify ADDR | stop-notify ADDR    the WriteValue/StartNotify path instead
 *   smp ADDR HEX TIMEOUT_MS          send one SMP packet in MTU-3 writes, wait for the answer
 *   send ADDR HEX                    send only
 *   recv ADDR TIMEOUT_MS             one SMP response ("ok HEX" or "err timeout")
 *   raw-write ADDR HEX               one write as given (no fragmentation)
 *   close-write ADDR | close-notify ADDR
 *   call PATH IFACE METHOD           a method without arguments, for error checks
 *   get PATH IFACE PROP              b, n, q, s, o properties
 *   events                           PropertiesChanged/InterfacesAdded/Removed seen so far
 *   quit
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#define SMP_CHR_UUID "da2e7828-fbce-4e01-ae9e-261174997c48"
#define MAX_PEERS 64

struct peer {
	char addr[18];
	char path[64];
	char chr[128];
	int wfd, nfd;
	unsigned mtu;
	bool notify_session;
	/* notification reassembly */
	unsigned char rx[65536];
	size_t rx_len;
	/* complete responses waiting to be read */
	unsigned char *done[64];
	size_t done_len[64];
	unsigned n_done;
};

static sd_bus *bus;
static struct peer peers[MAX_PEERS];
static unsigned n_peers;
static char *events;
static size_t events_len;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void add_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void add_event(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = strlen(line);
	if (events_len + n + 2 > 1 << 20)
		return;
	events = realloc(events, events_len + n + 2);
	memcpy(events + events_len, line, n);
	events[events_len + n] = ';';
	events_len += n + 1;
	events[events_len] = '\0';
}

/* The adapter the commands go to ("adapter hciN" switches; devices are per adapter in BlueZ). */
static char adapter_path[32] = "/org/bluez/hci0";

static struct peer *peer_find(const char *addr, bool create)
{
	char path[sizeof(peers[0].path)];

	snprintf(path, sizeof(path), "%s/dev_%.2s_%.2s_%.2s_%.2s_%.2s_%.2s", adapter_path, addr,
		 addr + 3, addr + 6, addr + 9, addr + 12, addr + 15);
	for (unsigned i = 0; i < n_peers; i++)
		if (!strcasecmp(peers[i].path, path))
			return &peers[i];
	if (!create || n_peers == MAX_PEERS)
		return NULL;
	struct peer *p = &peers[n_peers++];
	memset(p, 0, sizeof(*p));
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	snprintf(p->path, sizeof(p->path), "%s", path);
	p->wfd = p->nfd = -1;
	return p;
}

static void response_piece(struct peer *p, const unsigned char *buf, size_t n)
{
	if (p->rx_len + n > sizeof(p->rx)) {
		p->rx_len = 0;
		return;
	}
	memcpy(p->rx + p->rx_len, buf, n);
	p->rx_len += n;
	while (p->rx_len >= 8) {
		size_t total = 8 + ((size_t) p->rx[2] << 8 | p->rx[3]);
		if (p->rx_len < total)
			return;
		if (p->n_done < 64) {
			p->done[p->n_done] = malloc(total);
			memcpy(p->done[p->n_done], p->rx, total);
			p->done_len[p->n_done++] = total;
		}
		memmove(p->rx, p->rx + total, p->rx_len - total);
		p->rx_len -= total;
	}
}

static void print_bool_or_int(sd_bus_message *m, const char *path, const char *iface,
			      const char *prop)
{
	const char *contents;
	char t;
	union {
		int b;
		int16_t n;
		uint16_t q;
		const char *s;
	} v;

	if (sd_bus_message_peek_type(m, &t, &contents) < 0)
		return;
	if (!strcmp(contents, "b") && sd_bus_message_read(m, "v", "b", &v.b) >= 0)
		add_event("pc %s %s=%s", path, prop, v.b ? "true" : "false");
	else if (!strcmp(contents, "n") && sd_bus_message_read(m, "v", "n", &v.n) >= 0)
		add_event("pc %s %s=%d", path, prop, v.n);
	else if (!strcmp(contents, "q") && sd_bus_message_read(m, "v", "q", &v.q) >= 0)
		add_event("pc %s %s=%u", path, prop, v.q);
	else if (!strcmp(contents, "ay") && !strcmp(iface, "org.bluez.GattCharacteristic1") &&
		 !strcmp(prop, "Value")) {
		const void *data;
		size_t len;
		if (sd_bus_message_enter_container(m, 'v', "ay") >= 0 &&
		    sd_bus_message_read_array(m, 'y', &data, &len) >= 0) {
			for (unsigned i = 0; i < n_peers; i++)
				if (peers[i].chr[0] && !strcmp(peers[i].chr, path))
					response_piece(&peers[i], data, len);
			sd_bus_message_exit_container(m);
		}
	} else
		sd_bus_message_skip(m, "v");
}

static int on_props(sd_bus_message *m, void *ud, sd_bus_error *e)
{
	const char *iface, *path = sd_bus_message_get_path(m);

	if (sd_bus_message_read(m, "s", &iface) < 0 ||
	    sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
		return 0;
	while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
		const char *prop;
		if (sd_bus_message_read(m, "s", &prop) < 0)
			return 0;
		print_bool_or_int(m, path, iface, prop);
		sd_bus_message_exit_container(m);
	}
	return 0;
}

static int on_added(sd_bus_message *m, void *ud, sd_bus_error *e)
{
	const char *path;
	if (sd_bus_message_read(m, "o", &path) >= 0)
		add_event("added %s", path);
	return 0;
}

static int on_removed(sd_bus_message *m, void *ud, sd_bus_error *e)
{
	const char *path;
	if (sd_bus_message_read(m, "o", &path) >= 0)
		add_event("removed %s", path);
	return 0;
}

static void pump(int timeout_ms)
{
	struct pollfd fds[1 + MAX_PEERS];
	unsigned n = 0;
	uint64_t usec;

	while (sd_bus_process(bus, NULL) > 0)
		;
	fds[n++] =
	    (struct pollfd){.fd = sd_bus_get_fd(bus), .events = (short) sd_bus_get_events(bus)};
	for (unsigned i = 0; i < n_peers; i++)
		fds[n++] = (struct pollfd){.fd = peers[i].nfd, .events = POLLIN};
	if (sd_bus_get_timeout(bus, &usec) >= 0 && usec != UINT64_MAX) {
		struct timespec ts;
		uint64_t now;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
		int left = usec > now ? (int) ((usec - now + 999) / 1000) : 0;
		if (left < timeout_ms)
			timeout_ms = left;
	}
	if (poll(fds, n, timeout_ms) < 0)
		return;
	for (unsigned i = 0; i < n_peers; i++) {
		unsigned char buf[1024];
		ssize_t r;
		if (peers[i].nfd < 0 || !(fds[1 + i].revents & (POLLIN | POLLHUP)))
			continue;
		while ((r = recv(peers[i].nfd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			response_piece(&peers[i], buf, (size_t) r);
		if (r == 0) {
			close(peers[i].nfd);
			peers[i].nfd = -1;
			add_event("hup-notify %s", peers[i].addr);
		}
	}
	while (sd_bus_process(bus, NULL) > 0)
		;
}

static void reply_err(const sd_bus_error *e, int r)
{
	if (e && sd_bus_error_is_set(e))
		printf("err %s %s\n", e->name, e->message ? e->message : "");
	else
		printf("err errno %s\n", strerror(-r));
}

static int call0(const char *path, const char *iface, const char *method, uint64_t timeout_us)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, "org.bluez", path, iface, method);
	if (r >= 0)
		r = sd_bus_call(bus, m, timeout_us, &e, &reply);
	if (r < 0)
		reply_err(&e, r);
	sd_bus_error_free(&e);
	sd_bus_message_unref(m);
	sd_bus_message_unref(reply);
	return r;
}

static int count_devices(bool *has, const char *want_path)
{
	sd_bus_message *reply = NULL;
	int n = 0, r;

	r = sd_bus_call_method(bus, "org.bluez", "/", "org.freedesktop.DBus.ObjectManager",
			       "GetManagedObjects", NULL, &reply, "");
	if (r < 0)
		return r;
	if (has)
		*has = false;
	sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
	while (sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}") > 0) {
		const char *path;
		sd_bus_message_read(reply, "o", &path);
		sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
		while (sd_bus_message_enter_container(reply, 'e', "sa{sv}") > 0) {
			const char *iface;
			sd_bus_message_read(reply, "s", &iface);
			if (!strcmp(iface, "org.bluez.Device1") &&
			    !strncmp(path, adapter_path, strlen(adapter_path)) &&
			    path[strlen(adapter_path)] == '/') {
				n++;
				if (has && want_path && !strcmp(path, want_path))
					*has = true;
			}
			sd_bus_message_skip(reply, "a{sv}");
			sd_bus_message_exit_container(reply);
		}
		sd_bus_message_exit_container(reply);
		sd_bus_message_exit_container(reply);
	}
	sd_bus_message_unref(reply);
	return n;
}

static bool get_bool(const char *path, const char *iface, const char *prop, int *v)
{
	return sd_bus_get_property_trivial(bus, "org.bluez", path, iface, prop, NULL, 'b', v) >= 0;
}

static int hex2bin(const char *hex, unsigned char *out, size_t max)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > max)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char) v;
	}
	return (int) (n / 2);
}

static void print_hex(const unsigned char *b, size_t n)
{
	printf("ok ");
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

static int write_one(struct peer *p, const unsigned char *b, size_t n)
{
	if (p->wfd >= 0)
		return send(p->wfd, b, n, MSG_NOSIGNAL) < 0 ? -errno : 0;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	int r = sd_bus_message_new_method_call(bus, &m, "org.bluez", p->chr,
					       "org.bluez.GattCharacteristic1", "WriteValue");
	if (r >= 0)
		r = sd_bus_message_append_array(m, 'y', b, n);
	if (r >= 0)
		r = sd_bus_message_append(m, "a{sv}", 1, "type", "s", "command");
	if (r >= 0)
		r = sd_bus_call(bus, m, 5000000, &e, &reply);
	if (r < 0 && sd_bus_error_is_set(&e))
		fprintf(stderr, "WriteValue: %s %s\n", e.name, e.message);
	sd_bus_error_free(&e);
	sd_bus_message_unref(m);
	sd_bus_message_unref(reply);
	return r;
}

static int send_packet(struct peer *p, const unsigned char *b, size_t n)
{
	size_t frag = p->mtu - 3, off = 0;
	while (off < n) {
		size_t k = n - off < frag ? n - off : frag;
		int r = write_one(p, b + off, k);
		if (r < 0)
			return r;
		off += k;
	}
	return 0;
}

static bool wait_response(struct peer *p, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t) timeout_ms;
	while (!p->n_done && now_ms() < end)
		pump((int) (end - now_ms()));
	return p->n_done > 0;
}

static void pop_response(struct peer *p)
{
	print_hex(p->done[0], p->done_len[0]);
	free(p->done[0]);
	memmove(p->done, p->done + 1, (p->n_done - 1) * sizeof(p->done[0]));
	memmove(p->done_len, p->done_len + 1, (p->n_done - 1) * sizeof(p->done_len[0]));
	p->n_done--;
}

static int acquire(struct peer *p, const char *method, int *fd)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	uint16_t mtu;
	int raw, r;

	r = sd_bus_call_method(bus, "org.bluez", p->chr, "org.bluez.GattCharacteristic1", method,
			       &e, &reply, "a{sv}", 0);
	if (r < 0) {
		reply_err(&e, r);
		sd_bus_error_free(&e);
		return r;
	}
	r = sd_bus_message_read(reply, "hq", &raw, &mtu);
	if (r >= 0) {
		/* the fd belongs to the message: keep our own copy */
		*fd = fcntl(raw, F_DUPFD_CLOEXEC, 3);
		p->mtu = mtu;
	}
	sd_bus_message_unref(reply);
	return r;
}

static void find_chr(struct peer *p)
{
	snprintf(p->chr, sizeof(p->chr), "%s/service0010/char0011", p->path);
	uint16_t mtu = 23;
	sd_bus_get_property_trivial(bus, "org.bluez", p->chr, "org.bluez.GattCharacteristic1",
				    "MTU", NULL, 'q', &mtu);
	p->mtu = mtu;
}

/* One parsed stdin line; the handlers below answer it with exactly one line on stdout. */
struct req {
	const char *line, *cmd, *a1, *a2, *a3;
	int n;
};

static void cmd_adapter(const struct req *q)
{
	snprintf(adapter_path, sizeof(adapter_path), "/org/bluez/%s", q->a1);
	printf("ok\n");
}

static void cmd_discovery(const struct req *q)
{
	if (call0(adapter_path, "org.bluez.Adapter1",
		  q->cmd[1] == 't' && q->cmd[2] == 'a' ? "StartDiscovery" : "StopDiscovery",
		  5000000) >= 0)
		printf("ok\n");
}

/* "ok" or the error of a call that answers nothing else. */
static void reply_done(sd_bus_error *e, int r)
{
	if (r < 0)
		reply_err(e, r);
	else
		printf("ok\n");
	sd_bus_error_free(e);
}

static int set_filter(const char *spec, sd_bus_error *e)
{
	if (!strcmp(spec, "clear"))
		return sd_bus_call_method(bus, "org.bluez", adapter_path, "org.bluez.Adapter1",
					  "SetDiscoveryFilter", e, NULL, "a{sv}", 0);
	if (!strncmp(spec, "pattern=", 8))
		return sd_bus_call_method(bus, "org.bluez", adapter_path, "org.bluez.Adapter1",
					  "SetDiscoveryFilter", e, NULL, "a{sv}", 1, "Pattern", "s",
					  spec + 8);
	if (!strncmp(spec, "rssi=", 5))
		return sd_bus_call_method(bus, "org.bluez", adapter_path, "org.bluez.Adapter1",
					  "SetDiscoveryFilter", e, NULL, "a{sv}", 1, "RSSI", "n",
					  (int16_t) atoi(spec + 5));
	if (!strncmp(spec, "uuid=", 5))
		return sd_bus_call_method(bus, "org.bluez", adapter_path, "org.bluez.Adapter1",
					  "SetDiscoveryFilter", e, NULL, "a{sv}", 1, "UUIDs", "as",
					  1, spec + 5);
	if (!strncmp(spec, "bogus=", 6))
		return sd_bus_call_method(bus, "org.bluez", adapter_path, "org.bluez.Adapter1",
					  "SetDiscoveryFilter", e, NULL, "a{sv}", 1, "Bogus", "s",
					  "x");
	return -EINVAL;
}

static void cmd_filter(const struct req *q)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r = set_filter(q->a1, &e);

	reply_done(&e, r);
}

static void cmd_wait_devices(const struct req *q)
{
	int want = atoi(q->a1), got = 0;
	uint64_t t0 = now_ms(), end = t0 + (uint64_t) atoi(q->a2);

	while ((got = count_devices(NULL, NULL)) < want && now_ms() < end)
		pump(50);
	if (got >= want)
		printf("ok %d %llu\n", got, (unsigned long long) (now_ms() - t0));
	else
		printf("err timeout %d\n", got);
}

static void cmd_wait_gone(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);
	bool has = true;
	uint64_t t0 = now_ms(), end = t0 + (uint64_t) atoi(q->a2);

	while (count_devices(&has, p->path) >= 0 && has && now_ms() < end)
		pump(100);
	if (!has)
		printf("ok %llu\n", (unsigned long long) (now_ms() - t0));
	else
		printf("err timeout\n");
}

static void cmd_connect(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);
	uint64_t t0 = now_ms();
	int to = q->n >= 3 ? atoi(q->a2) : 30000;

	if (call0(p->path, "org.bluez.Device1", "Connect", (uint64_t) to * 1000) >= 0)
		printf("ok %llu\n", (unsigned long long) (now_ms() - t0));
}

static void cmd_disconnect(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);
	uint64_t t0 = now_ms();

	if (call0(p->path, "org.bluez.Device1", "Disconnect", 30000000) >= 0)
		printf("ok %llu\n", (unsigned long long) (now_ms() - t0));
}

static void cmd_remove(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r = sd_bus_call_method(bus, "org.bluez", adapter_path, "org.bluez.Adapter1",
				   "RemoveDevice", &e, NULL, "o", p->path);

	reply_done(&e, r);
}

static void cmd_wait_prop(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);
	int want = !strcmp(q->a3, "true"), v = -1;
	uint64_t end = now_ms() + 30000;
	char tbuf[16];

	if (sscanf(q->line, "%*s %*s %*s %*s %15s", tbuf) == 1)
		end = now_ms() + (uint64_t) atoi(tbuf);
	while (now_ms() < end) {
		if (get_bool(p->path, "org.bluez.Device1", q->a2, &v) && v == want)
			break;
		pump(20);
	}
	if (v == want)
		printf("ok\n");
	else
		printf("err timeout %d\n", v);
}

static void cmd_acquire(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);

	find_chr(p);
	if (acquire(p, "AcquireNotify", &p->nfd) >= 0 && acquire(p, "AcquireWrite", &p->wfd) >= 0)
		printf("ok %u\n", p->mtu);
}

static void cmd_notify(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);

	find_chr(p);
	if (call0(p->chr, "org.bluez.GattCharacteristic1",
		  q->cmd[2] == 'a' ? "StartNotify" : "StopNotify", 5000000) >= 0) {
		p->notify_session = q->cmd[2] == 'a';
		printf("ok %u\n", p->mtu);
	}
}

/* smp, send and raw-write: raw-write skips fragmentation, only smp waits for the answer. */
static void cmd_write(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);
	static unsigned char pkt[35000];
	int len = hex2bin(q->a2, pkt, sizeof(pkt)), r;

	if (len < 0) {
		printf("err hex\n");
		return;
	}
	if (!p->chr[0])
		find_chr(p);
	r = q->cmd[0] == 'r' ? write_one(p, pkt, (size_t) len) : send_packet(p, pkt, (size_t) len);
	if (r < 0) {
		printf("err write %s\n", strerror(-r));
		return;
	}
	if (q->cmd[1] != 'm') {
		printf("ok\n");
		return;
	}
	if (wait_response(p, q->n >= 4 ? atoi(q->a3) : 5000))
		pop_response(p);
	else
		printf("err timeout\n");
}

static void cmd_recv(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);

	if (wait_response(p, atoi(q->a2)))
		pop_response(p);
	else
		printf("err timeout\n");
}

static void cmd_close(const struct req *q)
{
	struct peer *p = peer_find(q->a1, true);
	int *fd = q->cmd[6] == 'w' ? &p->wfd : &p->nfd;

	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	printf("ok\n");
}

static void cmd_call(const struct req *q)
{
	if (call0(q->a1, q->a2, q->a3, 10000000) >= 0)
		printf("ok\n");
}

static void print_variant(sd_bus_message *reply)
{
	const char *contents;
	char t;

	sd_bus_message_peek_type(reply, &t, &contents);
	if (!strcmp(contents, "b")) {
		int v;
		sd_bus_message_read(reply, "v", "b", &v);
		printf("ok %s\n", v ? "true" : "false");
	} else if (!strcmp(contents, "n")) {
		int16_t v;
		sd_bus_message_read(reply, "v", "n", &v);
		printf("ok %d\n", v);
	} else if (!strcmp(contents, "q")) {
		uint16_t v;
		sd_bus_message_read(reply, "v", "q", &v);
		printf("ok %u\n", v);
	} else if (!strcmp(contents, "s") || !strcmp(contents, "o")) {
		const char *v;
		sd_bus_message_read(reply, "v", contents, &v);
		printf("ok %s\n", v);
	} else if (!strcmp(contents, "as")) {
		const char *v;
		printf("ok");
		sd_bus_message_enter_container(reply, 'v', "as");
		sd_bus_message_enter_container(reply, 'a', "s");
		while (sd_bus_message_read(reply, "s", &v) > 0)
			printf(" %s", v);
		printf("\n");
	} else {
		printf("ok <%s>\n", contents);
	}
}

static void cmd_get(const struct req *q)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	int r = sd_bus_get_property(bus, "org.bluez", q->a1, q->a2, q->a3, &e, &reply, "v");

	if (r < 0) {
		/* the signature is unknown beforehand: ask for the variant */
		sd_bus_error_free(&e);
		r = sd_bus_call_method(bus, "org.bluez", q->a1, "org.freedesktop.DBus.Properties",
				       "Get", &e, &reply, "ss", q->a2, q->a3);
	}
	if (r < 0) {
		reply_err(&e, r);
		sd_bus_error_free(&e);
		return;
	}
	print_variant(reply);
	sd_bus_message_unref(reply);
}

static void cmd_events(const struct req *q)
{
	uint64_t end = now_ms() + 100;

	(void) q;
	while (now_ms() < end)
		pump((int) (end - now_ms()));
	printf("ok %s\n", events ? events : "");
	free(events);
	events = NULL;
	events_len = 0;
}

static const struct {
	const char *name;
	void (*fn)(const struct req *q);
} commands[] = {
    {"adapter", cmd_adapter},
    {"start-discovery", cmd_discovery},
    {"stop-discovery", cmd_discovery},
    {"filter", cmd_filter},
    {"wait-devices", cmd_wait_devices},
    {"wait-gone", cmd_wait_gone},
    {"connect", cmd_connect},
    {"disconnect", cmd_disconnect},
    {"remove", cmd_remove},
    {"wait-prop", cmd_wait_prop},
    {"acquire", cmd_acquire},
    {"start-notify", cmd_notify},
    {"stop-notify", cmd_notify},
    {"smp", cmd_write},
    {"send", cmd_write},
    {"raw-write", cmd_write},
    {"recv", cmd_recv},
    {"close-write", cmd_close},
    {"close-notify", cmd_close},
    {"call", cmd_call},
    {"get", cmd_get},
    {"events", cmd_events},
};

static void dispatch(const struct req *q)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (!strcmp(q->cmd, commands[i].name)) {
			commands[i].fn(q);
			return;
		}
	}
	printf("err unknown-command %s\n", q->cmd);
}

static void cleanup(void)
{
	for (unsigned i = 0; i < n_peers; i++) {
		if (peers[i].wfd >= 0)
			close(peers[i].wfd);
		if (peers[i].nfd >= 0)
			close(peers[i].nfd);
		while (peers[i].n_done)
			free(peers[i].done[--peers[i].n_done]);
	}
	free(events);
	sd_bus_flush_close_unref(bus);
}

int main(void)
{
	char line[70000];
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	r = sd_bus_open_system(&bus);
	if (r < 0) {
		fprintf(stderr, "bus: %s\n", strerror(-r));
		return 1;
	}
	sd_bus_match_signal(bus, NULL, "org.bluez", NULL, "org.freedesktop.DBus.Properties",
			    "PropertiesChanged", on_props, NULL);
	sd_bus_match_signal(bus, NULL, "org.bluez", "/", "org.freedesktop.DBus.ObjectManager",
			    "InterfacesAdded", on_added, NULL);
	sd_bus_match_signal(bus, NULL, "org.bluez", "/", "org.freedesktop.DBus.ObjectManager",
			    "InterfacesRemoved", on_removed, NULL);
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) {
		char cmd[32] = "", a1[256] = "", a2[70000] = "", a3[64] = "";
		struct req q = {line, cmd, a1, a2, a3, 0};

		line[strcspn(line, "\n")] = '\0';
		q.n = sscanf(line, "%31s %255s %69999s %63s", cmd, a1, a2, a3);
		if (q.n < 1)
			continue;
		pump(0);
		if (!strcmp(cmd, "quit")) {
			printf("ok\n");
			break;
		}
		dispatch(&q);
	}
	cleanup();
	return 0;
}
