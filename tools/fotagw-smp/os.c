/*
 * The os group commands: echo, reset, params and info. Text answers from the device are
 * escaped before they reach a terminal.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"
#include "util.h"

static int b_echo(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_echo(tl->text, r);
}
static int b_reset(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_reset(tl->force, r);
}
static int b_params(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_params(r);
}
static int b_os_info(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_os_info("a", r);
}
static int b_boot_name(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_bootloader_info(NULL, r);
}
static int b_boot_mode(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_bootloader_info("mode", r);
}

/* Common path of single-answer commands: link errors and device errors end the run. */
static bool answer_ok(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	if (err < 0) {
		tool_fail(tl, "request failed", err, NULL);
		return false;
	}
	if (!fgw_smp_status_ok(&rsp->status)) {
		tool_fail(tl, "device error", 0, &rsp->status);
		return false;
	}
	return true;
}

static void on_echo(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	char *text = NULL;
	int r;

	if (!answer_ok(tl, err, rsp))
		return;
	r = fgw_smp_echo_decode(rsp->payload, rsp->len, &text);
	if (r < 0) {
		tool_fail(tl, "bad answer", r, NULL);
		return;
	}
	if (tl->json) {
		cJSON_AddStringToObject(tl->out, "r", text);
	} else {
		print_safe(stdout, text);
		putchar('\n');
	}
	free(text);
	tool_done(tl);
}

static size_t cbor_str_head(size_t n)
{
	return n < 24 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5;
}

/* Echo text that cannot fit one packet: say so with the limit, before sending anything. */
static bool echo_fits(struct tool *tl)
{
	struct fgw_smp_req req;
	size_t limit = fgw_smp_client_max_packet(tl->c), n = strlen(tl->text), other, fit;

	if (fgw_smp_req_echo(tl->text, &req) < 0)
		return true; /* send_req reports it */
	other = 8 + req.len - n - cbor_str_head(n);
	fgw_smp_req_done(&req);
	if (other + cbor_str_head(n) + n <= limit)
		return true;
	fit = limit > other + 5 ? limit - other - 1 : 0;
	while (fit > 0 && other + cbor_str_head(fit) + fit > limit)
		fit--;
	tool_failf(tl, 1, "echo text too long",
		   "%zu bytes; at most %zu bytes of text fit one %zu-byte packet to %s", n, fit,
		   limit, tl->spec);
	return false;
}

/*
 * Zephyr answers a reset and reboots CONFIG_MCUMGR_GRP_OS_RESET_MS (250 ms) later. No answer
 * at all is not a success: the request or its answer was lost, or the device is not there. A
 * BLE link that drops right after the request is the device going down: a reset, said so.
 */
static void on_reset(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	bool dropped = err == -ECONNRESET || err == -ENOTCONN;

	if (err == -ETIMEDOUT) {
		tool_failf(tl, 1, "no answer to reset",
			   "the device may not have reset (nothing from %s within %u ms)", tl->spec,
			   tl->last_ms);
		return;
	}
	if (!dropped && !answer_ok(tl, err, rsp))
		return;
	if (tl->json) {
		cJSON_AddBoolToObject(tl->out, "reset", true);
		cJSON_AddStringToObject(tl->out, "how", dropped ? "link-dropped" : "answered");
	} else if (dropped) {
		printf("reset: no answer, but the link dropped right after the request (taken as "
		       "the device resetting)\n");
	} else {
		printf("reset: the device answered and is resetting\n");
	}
	tool_done(tl);
}

static void on_params(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	struct fgw_smp_params pr;
	int r;

	if (!answer_ok(tl, err, rsp))
		return;
	r = fgw_smp_params_decode(rsp->payload, rsp->len, &pr);
	if (r < 0) {
		tool_fail(tl, "bad answer", r, NULL);
		return;
	}
	if (tl->json) {
		cJSON_AddNumberToObject(tl->out, "buf_size", pr.buf_size);
		cJSON_AddNumberToObject(tl->out, "buf_count", pr.buf_count);
	} else {
		printf("buf_size: %" PRIu32 "\nbuf_count: %" PRIu32 "\n", pr.buf_size,
		       pr.buf_count);
	}
	tool_done(tl);
}

/* ---- info: os info, then bootloader name and mode; the last two are optional ---- */

static void on_info(struct tool *tl, int err, const struct fgw_smp_rsp *rsp);

static void info_print_boot(struct tool *tl, const struct fgw_smp_bootloader_info *bi)
{
	if (tl->step == 1 && bi->bootloader[0]) {
		if (tl->json)
			cJSON_AddStringToObject(tl->out, "bootloader", bi->bootloader);
		else {
			printf("bootloader: ");
			print_safe(stdout, bi->bootloader);
			putchar('\n');
		}
	}
	if (tl->step == 2 && bi->has_mode) {
		if (tl->json) {
			cJSON_AddNumberToObject(tl->out, "mode", bi->mode);
			cJSON_AddStringToObject(tl->out, "mode_name",
						fgw_mcuboot_mode_to_string(bi->mode));
			cJSON_AddBoolToObject(tl->out, "no_downgrade", bi->no_downgrade);
		} else {
			printf("mode: %d (%s)%s\n", bi->mode, fgw_mcuboot_mode_to_string(bi->mode),
			       bi->no_downgrade ? ", downgrade prevention" : "");
		}
	}
}

static void info_os(struct tool *tl, const struct fgw_smp_rsp *rsp)
{
	char *text = NULL;

	if (!fgw_smp_status_ok(&rsp->status) ||
	    fgw_smp_os_info_decode(rsp->payload, rsp->len, &text) < 0) {
		tool_warnf(tl, "os info: not supported by the device");
		return;
	}
	if (tl->json) {
		cJSON_AddStringToObject(tl->out, "os", text);
	} else {
		printf("os: ");
		print_safe(stdout, text);
		putchar('\n');
	}
	free(text);
}

static void on_info(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	struct fgw_smp_bootloader_info bi;
	bool ok;

	if (err < 0 && !(err == -ETIMEDOUT && tl->step > 0)) {
		tool_fail(tl, "request failed", err, NULL);
		return;
	}
	if (tl->step == 0) {
		info_os(tl, rsp);
	} else {
		ok = err == 0 && fgw_smp_status_ok(&rsp->status) &&
		     fgw_smp_bootloader_info_decode(rsp->payload, rsp->len, &bi) == 0;
		if (ok) {
			info_print_boot(tl, &bi);
		} else if (tl->step == 1) {
			/* without bootloader info there is no mode either */
			if (tl->json)
				cJSON_AddStringToObject(tl->out, "bootloader_info",
							"not supported");
			else
				printf("bootloader info: not supported\n");
			tool_done(tl);
			return;
		}
	}
	if (tl->step < 2) {
		tl->step++;
		send_req(tl, tl->step == 1 ? b_boot_name : b_boot_mode, 0, on_info);
		return;
	}
	tool_done(tl);
}

void os_run(struct tool *tl)
{
	switch (tl->cmd) {
	case CMD_ECHO:
		if (echo_fits(tl))
			send_req(tl, b_echo, 0, on_echo);
		break;
	case CMD_RESET:
		send_req(tl, b_reset, 0, on_reset);
		break;
	case CMD_PARAMS:
		send_req(tl, b_params, 0, on_params);
		break;
	case CMD_INFO:
		send_req(tl, b_os_info, 0, on_info);
		break;
	default:
		tool_finish(tl, 2);
		break;
	}
}
