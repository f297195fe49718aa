/*
 * fotagw-smp's BLE security: --passkey-file for any ble: command, and the pair / unpair
 * commands. Kept apart from fotagw-smp.c, which only dispatches here. The passkey is read
 * from a file (never a command line) and never printed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bluez.h"
#include "pair.h"
#include "transport-ble.h"
#include "util.h"

#define UNPAIR_LOOKUP_MS 5000
#define PAIR_DRAIN_MS 10000

struct sec {
	uint32_t passkey;
	bool has_passkey;
};

static int give_passkey(const char *addr, uint32_t *ret, void *user_data)
{
	struct sec *s = user_data;

	if (!s->has_passkey)
		return -ENOENT;
	*ret = s->passkey;
	return 0;
}

static struct sec g_sec; /* the tool's one passkey, for the agent callback */

int smp_ble_security(struct fgw_bluez *b, struct fgw_transport *t, const char *passkey_file)
{
	struct fgw_bluez_agent_options o = {
	    .capability = "KeyboardOnly", .passkey_cb = give_passkey, .user_data = &g_sec};
	int r;

	if (!passkey_file)
		return 0; /* unknown security: the link probes, and says when pairing is needed */
	r = fgw_bluez_passkey_read(passkey_file, &g_sec.passkey);
	if (r < 0) {
		fprintf(stderr, "fotagw-smp: cannot use passkey file '%s': %s\n", passkey_file,
			r == -EINVAL ? "not six digits" : strerror(-r));
		return r;
	}
	g_sec.has_passkey = true;
	r = fgw_bluez_agent_start(b, &o);
	if (r < 0) {
		fprintf(stderr, "fotagw-smp: cannot start the pairing agent: %s\n", strerror(-r));
		return r;
	}
	if (t)
		fgw_transport_ble_set_security(t, FGW_BLUEZ_SECURITY_AUTHEN);
	return 0;
}

void smp_ble_hint(int err)
{
	if (err == -ENOKEY)
		fprintf(stderr,
			"fotagw-smp: the device needs pairing: give --passkey-file FILE, "
			"or run 'fotagw-smp --transport ble:ADDR --passkey-file FILE pair'\n");
	else if (err == -EKEYREJECTED)
		fprintf(stderr, "fotagw-smp: pairing was refused: check the passkey\n");
	else if (err == -EUCLEAN)
		fprintf(stderr, "fotagw-smp: bluetoothd must be restarted "
				"(systemctl restart bluetooth)\n");
}

/* ---- pair / unpair ---- */

struct pairing {
	uv_loop_t *loop;
	struct fgw_bluez *b;
	struct fgw_bluez_link *l;
	const char *addr;
	bool json;
	int code;
	uv_timer_t timer;
	unsigned waited_ms;
};

static void stop(struct pairing *p, int code)
{
	p->code = code;
	uv_stop(p->loop);
}

static void print_result(struct pairing *p, const char *what, bool ok, const char *detail)
{
	if (p->json) {
		cJSON *o = cJSON_CreateObject();
		char *s;

		cJSON_AddStringToObject(o, "device", p->addr);
		cJSON_AddBoolToObject(o, what, ok);
		if (detail)
			cJSON_AddStringToObject(o, ok ? "detail" : "error", detail);
		s = cJSON_PrintUnformatted(o);
		if (s)
			puts(s);
		free(s);
		cJSON_Delete(o);
	} else if (ok) {
		printf("%s: %s%s%s\n", p->addr, what, detail ? " " : "", detail ? detail : "");
	} else {
		fprintf(stderr, "fotagw-smp: %s %s failed: %s\n", what, p->addr, detail);
	}
}

static void on_pair_link(struct fgw_bluez_link *l, int err, void *user_data)
{
	struct pairing *p = user_data;

	if (err == 0)
		print_result(p, "paired", true,
			     fgw_bluez_link_paired(l) ? "(new bond, stored by bluetoothd)"
						      : "(bond already held by bluetoothd)");
	else {
		print_result(p, "paired", false, fgw_bluez_link_error(l));
		smp_ble_hint(err);
	}
	stop(p, err == 0 ? 0 : 1);
}

static void on_pair_rx(struct fgw_bluez_link *l, const uint8_t *data, size_t len, void *ud)
{
}

static void on_removed(struct fgw_bluez *b, int err, const char *text, void *user_data)
{
	struct pairing *p = user_data;

	if (err < 0)
		print_result(p, "unpaired", false, text);
	else
		print_result(p, "unpaired", true, "(bond removed from bluetoothd)");
	stop(p, err < 0 ? 1 : 0);
}

static void on_lookup(uv_timer_t *t)
{
	struct pairing *p = t->data;
	struct fgw_bluez_device_info info;
	int r;

	p->waited_ms += 100;
	if (fgw_bluez_adapter_state(p->b) == FGW_BLUEZ_ADAPTER_STATE_ON &&
	    fgw_bluez_device_get(p->b, p->addr, &info) == 0) {
		uv_timer_stop(t);
		r = fgw_bluez_remove_device(p->b, p->addr, on_removed, p);
		if (r < 0) {
			print_result(p, "unpaired", false, strerror(-r));
			stop(p, 1);
		}
		return;
	}
	if (p->waited_ms >= UNPAIR_LOOKUP_MS) {
		uv_timer_stop(t);
		print_result(p, "unpaired", true, "(bluetoothd holds no bond for it)");
		stop(p, 0);
	}
}

static void on_drained(struct fgw_bluez *b, int err, void *user_data)
{
	uv_stop(user_data);
}

int smp_pair_main(uv_loop_t *loop, struct fgw_bluez *b, const char *addr, bool unpair,
		  const char *passkey_file, bool json)
{
	struct pairing p = {.loop = loop, .b = b, .addr = addr, .json = json, .code = 1};
	int r;

	uv_timer_init(loop, &p.timer);
	p.timer.data = &p;
	if (unpair) {
		uv_timer_start(&p.timer, on_lookup, 100, 100);
	} else {
		r = smp_ble_security(b, NULL, passkey_file);
		if (r == 0)
			r = fgw_bluez_connect(b, addr, on_pair_link, on_pair_rx, &p, &p.l);
		if (r < 0) {
			uv_close((uv_handle_t *) &p.timer, NULL);
			uv_run(loop, UV_RUN_NOWAIT);
			return 2;
		}
		/* with a passkey an authenticated bond, without one Just Works */
		fgw_bluez_link_set_security(p.l, passkey_file ? FGW_BLUEZ_SECURITY_AUTHEN
							      : FGW_BLUEZ_SECURITY_ENCRYPT);
	}
	uv_run(loop, UV_RUN_DEFAULT);
	p.l = fgw_bluez_link_free(p.l);
	if (fgw_bluez_drain(b, PAIR_DRAIN_MS, on_drained, loop) == 0)
		uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *) &p.timer, NULL);
	uv_run(loop, UV_RUN_NOWAIT); /* the timer lives on this stack: let the close finish */
	return p.code;
}
