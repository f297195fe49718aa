/*
 * scan: BLE discovery for N seconds, then the devices bluetoothd lists. By default only devices
 * that show the SMP service UUID (the discovery filter). NCS firmware does not advertise it, so
 * --name PREFIX and --all scan without the filter; --all lists every device with a column saying
 * whether SMP was seen. RSSI 127 is the HCI "not available" value, shown as unknown.
 */
#include <errno.h>
#include <string.h>

#include "tool.h"
#include "util.h"
#ifdef FGW_WITH_BLE
#include "bluez.h"

#define RSSI_UNKNOWN 127

void tool_ble_options(const struct tool *tl, struct fgw_bluez_options *o)
{
	fgw_bluez_options_init(o);
	if (tl->ble_adapter)
		o->adapter = tl->ble_adapter;
	if (tl->ble_rssi_set)
		o->rssi_threshold = tl->ble_rssi;
}

static void scan_done(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static bool wanted(const struct tool *tl, const struct fgw_bluez_device_info *info)
{
	if (tl->scan_all)
		return true;
	if (tl->scan_name)
		return info->name && !strncmp(info->name, tl->scan_name, strlen(tl->scan_name));
	return info->smp_service;
}

static void scan_print(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
		       const struct fgw_bluez_device_info *info, void *user_data)
{
	struct tool *tl = user_data;
	cJSON *arr = cJSON_GetObjectItem(tl->out, "devices"), *d;
	bool rssi = info->has_rssi && info->rssi != RSSI_UNKNOWN;
	char r[16];

	(void) b;
	(void) ev;
	if (!wanted(tl, info))
		return;
	if (!tl->json) {
		snprintf(r, sizeof(r), rssi ? "%4d dBm" : "   ? dBm", info->rssi);
		printf("%s  %s  %-3s  ", info->addr, r, info->smp_service ? "smp" : "-");
		print_safe(stdout, info->name ? info->name : "");
		putchar('\n');
		return;
	}
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "addr", info->addr);
	cJSON_AddStringToObject(d, "name", info->name ? info->name : "");
	if (rssi)
		cJSON_AddNumberToObject(d, "rssi", info->rssi);
	cJSON_AddBoolToObject(d, "smp", info->smp_service);
	cJSON_AddItemToArray(arr, d);
}

int scan_run(struct tool *tl)
{
	struct fgw_bluez_options o;
	uv_timer_t timer;
	char why[256];
	bool on;
	int r;

	tool_ble_options(tl, &o);
	o.filter_service = !tl->scan_all && !tl->scan_name;
	r = fgw_bluez_new(&tl->loop, &o, &tl->bluez);
	if (r < 0)
		return tool_failf(tl, 1, "cannot reach bluetoothd", "%s", strerror(-r)), 1;
	uv_timer_init(&tl->loop, &timer);
	uv_timer_start(&timer, scan_done, (tl->scan_seconds ? tl->scan_seconds : 5) * 1000u, 0);
	uv_run(&tl->loop, UV_RUN_DEFAULT);
	on = fgw_bluez_adapter_state(tl->bluez) == FGW_BLUEZ_ADAPTER_STATE_ON;
	if (on) {
		if (!tl->json)
			printf("%-17s  %-8s  %-3s  %s\n", "address", "rssi", "smp", "name");
		cJSON_AddItemToObject(tl->out, "devices", cJSON_CreateArray());
		fgw_bluez_foreach_device(tl->bluez, scan_print, tl);
	} else {
		snprintf(why, sizeof(why), "%s", fgw_bluez_last_error(tl->bluez));
	}
	/* freed before the outcome: with tl->bluez set, finishing would stop the loop that
	 * still has to close the timer */
	tl->bluez = fgw_bluez_free(tl->bluez);
	uv_close((uv_handle_t *) &timer, NULL);
	uv_run(&tl->loop, UV_RUN_DEFAULT);
	if (on)
		tool_done(tl);
	else
		tool_failf(tl, 1, "no usable adapter", "%s", why);
	return tl->exit_code;
}
#else
int scan_run(struct tool *tl)
{
	return tool_failf(tl, 2, "scan", "built without BLE"), 2;
}
#endif
