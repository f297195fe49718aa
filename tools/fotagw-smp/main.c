/*
 * fotagw-smp: a field engineer's SMP client on top of lib/smp and lib/upload, like the mcumgr
 * CLI but with a pipelined upload and local image checks. One command per run; `fotagw-smp
 * --help` lists them (cli.c). This file opens the transport, runs the loop and cleans up.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"
#include "util.h"
#ifdef FGW_WITH_BLE
#include "bluez.h"
#include "pair.h"
#include "transport-ble.h"
#endif

static int parse_host_port(const char *rest, char *host, size_t size, uint16_t *port)
{
	const char *colon;
	int64_t p = FGW_SMP_UDP_PORT;
	size_t n;

	if (rest[0] == '[') { /* [v6]:port */
		const char *end = strchr(rest, ']');

		if (!end)
			return -EINVAL;
		n = (size_t) (end - rest - 1);
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] && !colon)
			return -EINVAL;
		rest++;
	} else {
		colon = strrchr(rest, ':');
		if (colon && strchr(rest, ':') != colon)
			colon = NULL; /* a bare IPv6 literal */
		n = colon ? (size_t) (colon - rest) : strlen(rest);
	}
	if (n == 0 || n >= size)
		return -EINVAL;
	memcpy(host, rest, n);
	host[n] = '\0';
	if (colon && fgw_parse_int64(colon + 1, 1, 65535, &p) < 0)
		return -EINVAL;
	*port = (uint16_t) p;
	return 0;
}

#ifdef FGW_WITH_BLE
static int ble_transport(struct tool *tl, const char *addr)
{
	struct fgw_bluez_options o;
	int r;

	/* bluetoothd on the system bus (DBUS_SYSTEM_BUS_ADDRESS); scanning only while the link
	 * looks for the device */
	tool_ble_options(tl, &o);
	o.scan = false;
	/* found by address: NCS firmware does not advertise the SMP UUID, so no service filter */
	o.filter_service = false;
	r = fgw_bluez_new(&tl->loop, &o, &tl->bluez);
	if (r < 0)
		return tool_failf(tl, 1, "cannot reach bluetoothd", "%s", strerror(-r)), r;
	r = fgw_transport_ble_new(tl->bluez, addr, &tl->t);
	if (r < 0)
		tool_failf(tl, 2, "usage",
			   "--transport: bad ble address '%s' (want "
			   "ble:AA:BB:CC:DD:EE:FF)",
			   addr);
	if (r == 0 && smp_ble_security(tl->bluez, tl->t, tl->passkey_file) < 0)
		return tool_failf(tl, 2, "usage", "--passkey-file: unusable"), -EINVAL;
	return r;
}

static void on_drained(struct fgw_bluez *b, int err, void *user_data)
{
	uv_stop(user_data);
	if (err < 0)
		fprintf(stderr, "fotagw-smp: %s\n", fgw_bluez_last_error(b));
}

/*
 * Never leave while bluetoothd still holds our Disconnect(): it carries it out ~2 s later, on
 * whatever the next command is doing with the device (BlueZ 5.66 then wedges the SMP
 * characteristic if that is an AcquireNotify). Bounded: 10 s.
 */
static void ble_drain(struct tool *tl)
{
	if (tl->bluez && fgw_bluez_drain(tl->bluez, 10000, on_drained, &tl->loop) == 0)
		uv_run(&tl->loop, UV_RUN_DEFAULT);
}

/* pair / unpair (pair.c), on a ble: transport, without an SMP client. */
static void run_pair(struct tool *tl)
{
	struct fgw_bluez_options o;

	if (strncmp(tl->spec, "ble:", 4) != 0) {
		tool_failf(tl, 2, "usage", "pair/unpair need --transport ble:ADDR");
		return;
	}
	tool_ble_options(tl, &o);
	o.scan = false;
	o.filter_service = false;
	if (fgw_bluez_new(&tl->loop, &o, &tl->bluez) < 0) {
		tool_failf(tl, 1, "cannot reach bluetoothd", "no system bus");
		return;
	}
	tl->exit_code = smp_pair_main(&tl->loop, tl->bluez, tl->spec + 4, tl->cmd == CMD_UNPAIR,
				      tl->passkey_file, tl->json);
}
#endif

/* One switch on the scheme, so that other transports can join here. */
static int transport_from_spec(struct tool *tl)
{
	const char *spec = tl->spec, *colon = strchr(spec, ':');
	char scheme[16], host[128];
	uint16_t port;
	size_t n = colon ? (size_t) (colon - spec) : strlen(spec);
	int r;

	if (!colon || n == 0 || n >= sizeof(scheme))
		return tool_failf(tl, 2, "usage",
				  "--transport: bad value '%s' (want SCHEME:ADDRESS, "
				  "e.g. udp:127.0.0.1:1337)",
				  spec);
	memcpy(scheme, spec, n);
	scheme[n] = '\0';
	if (!strcmp(scheme, "udp")) {
		r = parse_host_port(colon + 1, host, sizeof(host), &port);
		if (r == 0)
			r = fgw_transport_udp_new(&tl->loop, host, port, &tl->t);
		if (r < 0)
			tool_failf(tl, 2, "usage",
				   "--transport: bad udp address '%s' (want "
				   "HOST[:PORT] with an IP literal or localhost)",
				   colon + 1);
		return r;
	}
#ifdef FGW_WITH_BLE
	if (!strcmp(scheme, "ble"))
		return ble_transport(tl, colon + 1);
	return tool_failf(tl, 2, "usage",
			  "--transport: unknown transport '%s' (supported: udp, ble)", scheme);
#else
	return tool_failf(tl, 2, "usage", "--transport: unknown transport '%s' (supported: udp)",
			  scheme);
#endif
}

static void on_state(struct fgw_smp_client *c, int err, void *user_data)
{
	struct tool *tl = user_data;

	(void) c;
	if (tl->exit_code >= 0)
		return;
	if (err < 0) {
#ifdef FGW_WITH_BLE
		if (tl->bluez && *fgw_transport_ble_last_error(tl->t))
			fprintf(stderr, "fotagw-smp: %s\n", fgw_transport_ble_last_error(tl->t));
		if (tl->bluez)
			smp_ble_hint(err);
#endif
		tool_fail(tl, "link lost", err, NULL);
		return;
	}
	if (!tl->last_build)
		run_command(tl);
}

static void run_device_command(struct tool *tl)
{
	int r;

	if (tl->cmd == CMD_IMAGE_UPLOAD && upload_prepare(tl) != 0)
		return;
	if (transport_from_spec(tl) < 0)
		return;
	r = fgw_smp_client_new(&tl->loop, tl->t, &tl->c);
	if (r == 0) {
		if (tl->v1)
			fgw_smp_client_set_version(tl->c, FGW_SMP_V1);
		r = fgw_smp_client_open(tl->c, on_state, tl);
	}
	if (r < 0)
		tool_failf(tl, 1, "cannot open", "%s: %s", tl->spec, strerror(-r));
	else
		uv_run(&tl->loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv)
{
	struct tool tl = {.timeout_ms = 10000, .slot = -1, .exit_code = -1, .retries = 2};
	bool done;
	int r;

	fgw_log_set_level(LOG_WARNING);
	tl.spec = "udp:127.0.0.1:1337";
	tl.tty = isatty(STDERR_FILENO);
	out_init(&tl);
	r = cli_parse(&tl, argc, argv, &done);
	if (done) {
		cJSON_Delete(tl.out);
		return r;
	}
	if (uv_loop_init(&tl.loop) < 0) {
		cJSON_Delete(tl.out);
		return 1;
	}
	if (tl.cmd == CMD_SCAN)
		scan_run(&tl);
#ifdef FGW_WITH_BLE
	else if (tl.cmd == CMD_PAIR || tl.cmd == CMD_UNPAIR)
		run_pair(&tl);
#endif
	else
		run_device_command(&tl);
	tl.up = fgw_upload_free(tl.up);
	tl.c = fgw_smp_client_free(tl.c);
	tl.t = fgw_transport_free(tl.t);
#ifdef FGW_WITH_BLE
	ble_drain(&tl);
	tl.bluez = fgw_bluez_free(tl.bluez);
#endif
	uv_run(&tl.loop, UV_RUN_DEFAULT);
	(void) uv_loop_close(&tl.loop);
	cJSON_Delete(tl.out);
	cJSON_Delete(tl.warnings);
	free(tl.data);
	return tl.exit_code < 0 ? 1 : tl.exit_code;
}
