/*
 * fotagw-smp: a field engineer's SMP client on top of lib/smp and lib/upload, like the mcumgr
 * CLI but with a pipelined upload. One command per run; --json for every command.
 *
 *   fotagw-smp [--transport udp:HOST[:PORT]|ble:AA:BB:CC:DD:EE:FF] [--json] [--timeout MS]
 *              COMMAND ...
 *     echo TEXT | reset [--force] | params | info
 *     image list | image slots | image upload FILE [--image N] [--window N]
 *     image test HASH | image confirm [HASH] | image erase [--slot N]
 *   fotagw-smp scan [--seconds N]     (BLE devices listing the SMP service)
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smp.h"
#include "transport.h"
#include "upload.h"
#include "util.h"
#ifdef FGW_WITH_BLE
#include "bluez.h"
#include "pair.h"
#include "transport-ble.h"
#endif

#define MAX_IMAGE_SIZE (64u << 20) /* nRF5340 slots are < 1 MiB; refuse absurd files */

enum cmd {
	CMD_ECHO,
	CMD_RESET,
	CMD_PARAMS,
	CMD_INFO,
	CMD_IMAGE_LIST,
	CMD_IMAGE_SLOTS,
	CMD_IMAGE_UPLOAD,
	CMD_IMAGE_TEST,
	CMD_IMAGE_CONFIRM,
	CMD_IMAGE_ERASE,
	CMD_SCAN,
	CMD_PAIR,   /* pair.c */
	CMD_UNPAIR, /* pair.c */
};

struct tool {
	uv_loop_t loop;
	struct fgw_bluez *bluez; /* ble: only; keeps the loop alive until freed */
	unsigned scan_seconds;
	struct fgw_transport *t;
	struct fgw_smp_client *c;
	struct fgw_upload *up;
	enum cmd cmd;
	bool json, tty, force, v1;
	unsigned timeout_ms;
	const char *text, *file;
	bool has_hash;
	uint8_t hash[32];
	int slot;
	unsigned image, window;
	const char *ble_adapter; /* --adapter: NULL = the first one bluetoothd lists */
	int ble_rssi;		 /* --rssi: discovery filter threshold, 0 = none */
	bool ble_rssi_set;
	const char *passkey_file; /* --passkey-file (pair.c) */
	int exit_code;
	int step;		      /* for commands of several requests */
	unsigned retries, tries_left; /* timeouts of idempotent requests are retried */
	int (*last_build)(struct tool *, struct fgw_smp_req *);
	unsigned last_ms;
	cJSON *out;
	/* upload */
	uint8_t *data;
	size_t len;
	struct fgw_smp_params params;
	bool has_params;
	uint64_t last_bar_ms;
};

static void finish(struct tool *tl, int code);

/* ---- output ---- */

static void print_json(struct tool *tl)
{
	char *s = cJSON_PrintUnformatted(tl->out);

	if (s) {
		puts(s);
		free(s);
	}
}

static int fail(struct tool *tl, const char *what, int err, const struct fgw_smp_status *st)
{
	char buf[256];

	if (st)
		fgw_smp_status_format(st, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "%s", strerror(-err));
	if (tl->json) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "error", what);
		cJSON_AddStringToObject(o, "message", buf);
		if (st) {
			cJSON_AddNumberToObject(o, "rc", (double) st->rc);
			if (st->has_err) {
				cJSON_AddNumberToObject(o, "group", st->err_group);
				cJSON_AddNumberToObject(o, "group_rc", st->err_rc);
				cJSON_AddStringToObject(
				    o, "name",
				    fgw_smp_group_rc_to_string(st->err_group, st->err_rc));
			} else {
				cJSON_AddStringToObject(o, "name", fgw_smp_rc_to_string(st->rc));
			}
		} else {
			cJSON_AddNumberToObject(o, "errno", -err);
		}
		cJSON_Delete(tl->out);
		tl->out = o;
		print_json(tl);
	} else {
		fprintf(stderr, "fotagw-smp: %s: %s\n", what, buf);
	}
	finish(tl, 1);
	return -1;
}

static void hex(const uint8_t *h, char out[65])
{
	fgw_hex_encode(h, 32, out);
}

/* ---- transport spec: one switch on the scheme, so ble: can join here ---- */

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
static void ble_options(const struct tool *tl, struct fgw_bluez_options *o);
#endif

static int transport_from_spec(const struct tool *tl, uv_loop_t *loop, const char *spec,
			       struct fgw_bluez **bluez, struct fgw_transport **ret)
{
	const char *colon = strchr(spec, ':');
	char scheme[16], host[128];
	uint16_t port;
	size_t n = colon ? (size_t) (colon - spec) : strlen(spec);
	int r;

	if (!colon || n == 0 || n >= sizeof(scheme)) {
		fprintf(stderr,
			"fotagw-smp: bad transport '%s' (want SCHEME:ADDRESS, e.g. "
			"udp:127.0.0.1:1337)\n",
			spec);
		return -EINVAL;
	}
	memcpy(scheme, spec, n);
	scheme[n] = '\0';
	if (!strcmp(scheme, "udp")) {
		r = parse_host_port(colon + 1, host, sizeof(host), &port);
		if (r == 0)
			r = fgw_transport_udp_new(loop, host, port, ret);
		if (r < 0)
			fprintf(stderr,
				"fotagw-smp: bad udp address '%s' (want HOST[:PORT] with an "
				"IP literal or localhost)\n",
				colon + 1);
		return r;
	}
#ifdef FGW_WITH_BLE
	if (!strcmp(scheme, "ble")) {
		struct fgw_bluez_options o;

		/* bluetoothd on the system bus (DBUS_SYSTEM_BUS_ADDRESS); scanning only while
		 * the link looks for the device */
		ble_options(tl, &o);
		o.scan = false;
		r = fgw_bluez_new(loop, &o, bluez);
		if (r < 0) {
			fprintf(stderr, "fotagw-smp: cannot reach bluetoothd: %s\n", strerror(-r));
			return r;
		}
		r = fgw_transport_ble_new(*bluez, colon + 1, ret);
		if (r < 0)
			fprintf(stderr,
				"fotagw-smp: bad ble address '%s' (want AA:BB:CC:DD:EE:FF)\n",
				colon + 1);
		if (r == 0)
			r = smp_ble_security(*bluez, *ret, tl->passkey_file);
		return r;
	}
	fprintf(stderr, "fotagw-smp: unknown transport '%s' (supported: udp, ble)\n", scheme);
#else
	fprintf(stderr, "fotagw-smp: unknown transport '%s' (supported: udp)\n", scheme);
#endif
	return -EPROTONOSUPPORT;
}

#ifdef FGW_WITH_BLE
/* The library's defaults, with --adapter and --rssi on top. */
static void ble_options(const struct tool *tl, struct fgw_bluez_options *o)
{
	fgw_bluez_options_init(o);
	if (tl->ble_adapter)
		o->adapter = tl->ble_adapter;
	if (tl->ble_rssi_set)
		o->rssi_threshold = tl->ble_rssi;
}
#endif

/* ---- requests ---- */

static void on_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data);

static int send_req(struct tool *tl, int (*build)(struct tool *, struct fgw_smp_req *), unsigned ms)
{
	struct fgw_smp_req req;
	int r;

	if (build != tl->last_build) {
		tl->last_build = build;
		tl->tries_left = tl->cmd == CMD_RESET ? 0 : tl->retries;
	}
	tl->last_ms = ms;
	r = build(tl, &req);
	if (r < 0)
		return fail(tl, "cannot build request", r, NULL);
	r = fgw_smp_client_request(tl->c, &req, ms ? ms : tl->timeout_ms, on_rsp, tl, NULL, NULL);
	fgw_smp_req_done(&req);
	if (r < 0)
		return fail(tl, "cannot send request", r, NULL);
	return 0;
}

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
	return fgw_smp_req_params(r);
}
static int b_os_info(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_os_info("a", r);
}
static int b_boot_name(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_bootloader_info(NULL, r);
}
static int b_boot_mode(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_bootloader_info("mode", r);
}
static int b_state(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_img_state(r);
}
static int b_slots(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_img_slot_info(r);
}
static int b_test(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_img_state_write(tl->hash, false, r);
}
static int b_confirm(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_img_state_write(tl->has_hash ? tl->hash : NULL, true, r);
}
static int b_erase(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_img_erase(tl->slot, r);
}

/* ---- printing of answers ---- */

static void print_state(struct tool *tl, const struct fgw_smp_img_state *st)
{
	cJSON *arr = cJSON_AddArrayToObject(tl->out, "images");

	for (size_t i = 0; i < st->n_slots; i++) {
		const struct fgw_smp_img_slot *s = &st->slots[i];
		char h[65] = "";

		if (s->has_hash)
			hex(s->hash, h);
		if (tl->json) {
			cJSON *o = cJSON_CreateObject();

			cJSON_AddNumberToObject(o, "image", s->image);
			cJSON_AddNumberToObject(o, "slot", s->slot);
			cJSON_AddStringToObject(o, "version", s->version);
			if (s->has_hash)
				cJSON_AddStringToObject(o, "hash", h);
			cJSON_AddBoolToObject(o, "bootable", s->bootable);
			cJSON_AddBoolToObject(o, "pending", s->pending);
			cJSON_AddBoolToObject(o, "confirmed", s->confirmed);
			cJSON_AddBoolToObject(o, "active", s->active);
			cJSON_AddBoolToObject(o, "permanent", s->permanent);
			cJSON_AddItemToArray(arr, o);
		} else {
			printf("image %u slot %u\n    version: %s\n    bootable: %s\n    "
			       "flags:%s%s%s%s\n"
			       "    hash: %s\n",
			       s->image, s->slot, s->version, s->bootable ? "true" : "false",
			       s->active ? " active" : "", s->confirmed ? " confirmed" : "",
			       s->pending ? " pending" : "", s->permanent ? " permanent" : "",
			       s->has_hash ? h : "(none)");
		}
	}
	if (tl->json && st->has_split_status)
		cJSON_AddNumberToObject(tl->out, "splitStatus", (double) st->split_status);
	if (!tl->json && st->n_slots == 0)
		printf("no images\n");
}

static int handle_answer(struct tool *tl, const struct fgw_smp_rsp *rsp)
{
	const uint8_t *p = rsp->payload;
	size_t n = rsp->len;
	int r = 0;

	switch (tl->cmd) {
	case CMD_ECHO: {
		char *text = NULL;

		r = fgw_smp_echo_decode(p, n, &text);
		if (r < 0)
			break;
		if (tl->json)
			cJSON_AddStringToObject(tl->out, "r", text);
		else
			printf("%s\n", text);
		free(text);
		break;
	}
	case CMD_RESET:
		if (tl->json)
			cJSON_AddBoolToObject(tl->out, "reset", true);
		else
			printf("reset requested\n");
		break;
	case CMD_PARAMS: {
		struct fgw_smp_params pr;

		r = fgw_smp_params_decode(p, n, &pr);
		if (r < 0)
			break;
		if (tl->json) {
			cJSON_AddNumberToObject(tl->out, "buf_size", pr.buf_size);
			cJSON_AddNumberToObject(tl->out, "buf_count", pr.buf_count);
		} else {
			printf("buf_size: %" PRIu32 "\nbuf_count: %" PRIu32 "\n", pr.buf_size,
			       pr.buf_count);
		}
		break;
	}
	case CMD_INFO:
		/* several answers; each optional: firmware without a command answers rc 8 */
		if (!fgw_smp_status_ok(&rsp->status))
			break;
		if (tl->step == 0) {
			char *text = NULL;

			if (fgw_smp_os_info_decode(p, n, &text) == 0) {
				if (tl->json)
					cJSON_AddStringToObject(tl->out, "os", text);
				else
					printf("os: %s\n", text);
				free(text);
			}
		} else {
			struct fgw_smp_bootloader_info bi;

			if (fgw_smp_bootloader_info_decode(p, n, &bi) < 0)
				break;
			if (bi.bootloader[0]) {
				if (tl->json)
					cJSON_AddStringToObject(tl->out, "bootloader",
								bi.bootloader);
				else
					printf("bootloader: %s\n", bi.bootloader);
			}
			if (bi.has_mode) {
				if (tl->json) {
					cJSON_AddNumberToObject(tl->out, "mode", bi.mode);
					cJSON_AddStringToObject(
					    tl->out, "mode_name",
					    fgw_mcuboot_mode_to_string(bi.mode));
					cJSON_AddBoolToObject(tl->out, "no_downgrade",
							      bi.no_downgrade);
				} else {
					printf("mode: %d (%s)%s\n", bi.mode,
					       fgw_mcuboot_mode_to_string(bi.mode),
					       bi.no_downgrade ? ", downgrade prevention" : "");
				}
			}
		}
		break;
	case CMD_IMAGE_LIST:
	case CMD_IMAGE_TEST:
	case CMD_IMAGE_CONFIRM: {
		struct fgw_smp_img_state *st = calloc(1, sizeof(*st));

		if (!st)
			return -ENOMEM;
		r = fgw_smp_img_state_decode(p, n, st);
		if (r == 0)
			print_state(tl, st);
		free(st);
		break;
	}
	case CMD_IMAGE_SLOTS: {
		struct fgw_smp_slot_info si;
		cJSON *arr;

		r = fgw_smp_slot_info_decode(p, n, &si);
		if (r < 0)
			break;
		arr = cJSON_AddArrayToObject(tl->out, "images");
		for (size_t i = 0; i < si.n_images; i++) {
			cJSON *o = cJSON_CreateObject(), *sl = cJSON_AddArrayToObject(o, "slots");

			cJSON_AddNumberToObject(o, "image", si.images[i].image);
			if (si.images[i].has_max_image_size)
				cJSON_AddNumberToObject(o, "max_image_size",
							(double) si.images[i].max_image_size);
			if (!tl->json)
				printf("image %u\n", si.images[i].image);
			for (size_t j = 0; j < si.images[i].n_slots; j++) {
				cJSON *s = cJSON_CreateObject();

				cJSON_AddNumberToObject(s, "slot", si.images[i].slots[j].slot);
				cJSON_AddNumberToObject(s, "size",
							(double) si.images[i].slots[j].size);
				cJSON_AddItemToArray(sl, s);
				if (!tl->json)
					printf("    slot %u: %" PRIu64 " bytes\n",
					       si.images[i].slots[j].slot,
					       si.images[i].slots[j].size);
			}
			cJSON_AddItemToArray(arr, o);
		}
		break;
	}
	case CMD_IMAGE_ERASE:
		if (tl->json)
			cJSON_AddBoolToObject(tl->out, "erased", true);
		else
			printf("erased\n");
		break;
	case CMD_IMAGE_UPLOAD:
	case CMD_SCAN:
	case CMD_PAIR:
	case CMD_UNPAIR:
		break;
	}
	return r;
}

/* ---- upload ---- */

static void upload_progress(struct fgw_upload *u, uint64_t bytes, uint64_t total, double rate,
			    void *user_data)
{
	struct tool *tl = user_data;
	uint64_t now = fgw_now_ms();
	int width = 40, fill = total ? (int) (bytes * (uint64_t) width / total) : 0;

	if (!tl->tty || tl->json || (now - tl->last_bar_ms < 100 && bytes < total))
		return;
	tl->last_bar_ms = now;
	fprintf(stderr, "\r[%.*s%*s] %3d%% %8.1f KiB/s", fill,
		"========================================", width - fill, "",
		(int) (total ? bytes * 100 / total : 0), rate / 1024.0);
	fflush(stderr);
}

static void upload_done(struct fgw_upload *u, int err, const struct fgw_upload_result *res,
			void *user_data)
{
	struct tool *tl = user_data;
	struct fgw_upload_stats st;
	double secs, kib, stream_kib = 0;

	fgw_upload_get_stats(u, &st);
	if (tl->tty && !tl->json)
		fputc('\n', stderr);
	if (err == -EREMOTEIO) {
		fail(tl, "upload refused by the device", err, &res->status);
		return;
	}
	if (err == -EILSEQ) {
		fail(tl, "upload corrupted: the device's image check failed (match false)", err,
		     NULL);
		return;
	}
	if (err < 0) {
		char what[96];

		snprintf(what, sizeof(what), "upload failed at offset %" PRIu64, res->off);
		fail(tl, what, err, NULL);
		return;
	}
	secs = (double) st.elapsed_ms / 1000.0;
	kib = secs > 0 ? (double) (st.total - st.start_off) / 1024.0 / secs : 0;
	/* Goodput once streaming: without the first answer (session open, slot erase). */
	if (st.elapsed_ms > st.first_ms)
		stream_kib = (double) (st.total - st.start_off) / 1024.0 /
			     ((double) (st.elapsed_ms - st.first_ms) / 1000.0);
	if (tl->json) {
		cJSON_AddNumberToObject(tl->out, "bytes", (double) st.total);
		cJSON_AddNumberToObject(tl->out, "start_off", (double) st.start_off);
		cJSON_AddNumberToObject(tl->out, "seconds", secs);
		cJSON_AddNumberToObject(tl->out, "kib_per_s", kib);
		cJSON_AddNumberToObject(tl->out, "first_ms", (double) st.first_ms);
		cJSON_AddNumberToObject(tl->out, "stream_kib_per_s", stream_kib);
		cJSON_AddNumberToObject(tl->out, "chunks", (double) st.chunks);
		cJSON_AddNumberToObject(tl->out, "retransmissions", (double) st.retransmissions);
		cJSON_AddNumberToObject(tl->out, "timeouts", (double) st.timeouts);
		cJSON_AddNumberToObject(tl->out, "lost", (double) st.lost);
		cJSON_AddNumberToObject(tl->out, "restarts", (double) st.restarts);
		cJSON_AddNumberToObject(tl->out, "bytes_sent", (double) st.bytes_sent);
		cJSON_AddNumberToObject(tl->out, "window", st.window);
		cJSON_AddNumberToObject(tl->out, "chunk_size", (double) st.chunk_size);
		cJSON_AddNumberToObject(tl->out, "packet_size", (double) st.packet_size);
		if (res->has_match)
			cJSON_AddBoolToObject(tl->out, "match", res->match);
		print_json(tl);
	} else if (st.start_off == st.total) {
		printf("the device already holds this image: nothing sent\n");
	} else {
		printf("%" PRIu64 " bytes, %.2f s, %.1f KiB/s, %" PRIu64 " chunks, %" PRIu64
		       " retransmissions\n",
		       st.total - st.start_off, secs, kib, st.chunks, st.retransmissions);
	}
	finish(tl, 0);
}

static void start_upload(struct tool *tl)
{
	struct fgw_upload_image img = {.data = tl->data, .len = tl->len, .image = tl->image};
	struct fgw_upload_opts o;
	unsigned len = 32;
	int r;

	/* The file's SHA-256 is the session tag (protocol-notes §4.3), not the MCUboot hash. */
	if (EVP_Digest(tl->data, tl->len, img.sha256, &len, EVP_sha256(), NULL) != 1) {
		fail(tl, "cannot hash the image", -EIO, NULL);
		return;
	}
	fgw_upload_opts_init(&o);
	if (tl->has_params) {
		o.buf_size = tl->params.buf_size;
		o.buf_count = tl->params.buf_count;
	}
	o.window = tl->window;
	r = fgw_upload_new(&tl->loop, tl->c, &tl->up);
	if (r == 0)
		r = fgw_upload_start(tl->up, &img, 0, &o, upload_progress, upload_done, tl);
	if (r < 0)
		fail(tl, "cannot start the upload", r, NULL);
}

/* ---- flow ---- */

static void on_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct tool *tl = user_data;
	int r;

	if (err == -ETIMEDOUT && tl->tries_left > 0) {
		/* a lost datagram: every command but reset is safe to send again */
		tl->tries_left--;
		send_req(tl, tl->last_build, tl->last_ms);
		return;
	}
	if (tl->cmd == CMD_IMAGE_UPLOAD) {
		/* the params probe: without params the engine assumes one MTU per packet */
		if (err == 0 && fgw_smp_status_ok(&rsp->status) &&
		    fgw_smp_params_decode(rsp->payload, rsp->len, &tl->params) == 0)
			tl->has_params = true;
		else if (err < 0 && err != -ETIMEDOUT)
			(void) fail(tl, "params", err, NULL);
		if (err == 0 || err == -ETIMEDOUT)
			start_upload(tl);
		return;
	}
	if (tl->cmd == CMD_RESET && (err == -ETIMEDOUT || err == -ECONNRESET)) {
		/* the device may go away before its answer: still a reset */
		err = 0;
		rsp = NULL;
	}
	if (err < 0) {
		if (tl->cmd == CMD_INFO && err == -ETIMEDOUT && tl->step > 0)
			err = 0; /* an optional part */
		else {
			fail(tl, "request failed", err, NULL);
			return;
		}
	}
	if (rsp && !fgw_smp_status_ok(&rsp->status) && tl->cmd != CMD_INFO) {
		fail(tl, "device error", 0, &rsp->status);
		return;
	}
	if (rsp) {
		r = handle_answer(tl, rsp);
		if (r < 0) {
			fail(tl, "bad answer", r, NULL);
			return;
		}
	}
	if (tl->cmd == CMD_INFO && tl->step < 2) {
		tl->step++;
		send_req(tl, tl->step == 1 ? b_boot_name : b_boot_mode, 0);
		return;
	}
	if (tl->json)
		print_json(tl);
	finish(tl, 0);
}

static void run_command(struct tool *tl)
{
	switch (tl->cmd) {
	case CMD_ECHO:
		send_req(tl, b_echo, 0);
		break;
	case CMD_RESET:
		send_req(tl, b_reset, 0);
		break;
	case CMD_PARAMS:
		send_req(tl, b_params, 0);
		break;
	case CMD_INFO:
		send_req(tl, b_os_info, 0);
		break;
	case CMD_IMAGE_LIST:
		send_req(tl, b_state, 0);
		break;
	case CMD_IMAGE_SLOTS:
		send_req(tl, b_slots, 0);
		break;
	case CMD_IMAGE_UPLOAD:
		send_req(tl, b_params, FGW_MIN(tl->timeout_ms, 5000u));
		break;
	case CMD_IMAGE_TEST:
		send_req(tl, b_test, 0);
		break;
	case CMD_IMAGE_CONFIRM:
		send_req(tl, b_confirm, 0);
		break;
	case CMD_IMAGE_ERASE:
		/* erase is synchronous on the device: tens of seconds on external flash */
		send_req(tl, b_erase, FGW_MAX(tl->timeout_ms, 75000u));
		break;
	case CMD_SCAN: /* handled in main(), without a transport */
	case CMD_PAIR:
	case CMD_UNPAIR:
		finish(tl, 2);
		break;
	}
}

static void on_state(struct fgw_smp_client *c, int err, void *user_data)
{
	struct tool *tl = user_data;

	if (err < 0) {
#ifdef FGW_WITH_BLE
		if (tl->bluez && *fgw_transport_ble_last_error(tl->t))
			fprintf(stderr, "fotagw-smp: %s\n", fgw_transport_ble_last_error(tl->t));
		if (tl->bluez)
			smp_ble_hint(err);
#endif
		if (tl->exit_code < 0)
			fail(tl, "link lost", err, NULL);
		return;
	}
	if (tl->exit_code < 0 && tl->step == 0 && !tl->up)
		run_command(tl);
}

static void finish(struct tool *tl, int code)
{
	if (tl->exit_code < 0)
		tl->exit_code = code;
	if (tl->c)
		fgw_smp_client_close(tl->c);
	if (tl->bluez)
		uv_stop(&tl->loop); /* bluez' bus handles would keep the loop running */
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fotagw-smp [--transport udp:HOST[:PORT]|ble:AA:BB:CC:DD:EE:FF] [--json]\n"
		"                  [--timeout MS] COMMAND\n"
		"  echo TEXT                     liveness: the device echoes TEXT\n"
		"  reset [--force]               reboot the device\n"
		"  params                        SMP buffer size and count\n"
		"  info                          OS info, bootloader and its mode\n"
		"  image list                    slots with version, hash and flags\n"
		"  image slots                   slot sizes\n"
		"  image upload FILE [--image N] [--window N]\n"
		"  image test HASH               boot HASH once at the next reset\n"
		"  image confirm [HASH]          make HASH permanent (none: the running image)\n"
		"  image erase [--slot N]        erase a slot (default: the device's choice)\n"
		"  scan [--seconds N]            BLE devices with the SMP service (default 5 s)\n"
		"  pair | unpair                 (ble) bond with the device / forget the bond\n"
		"options: --retries N (resend a timed-out request, not reset; default 2),\n"
		"         --adapter hciN (ble; default: the first one bluetoothd lists),\n"
		"         --rssi DBM (ble discovery threshold, default -90; 0: none),\n"
		"         --passkey-file F (ble: the device's six-digit passkey; pairs first),\n"
		"         --v1 (SMP v1 headers), -v (debug log), --help\n"
		"HASH is the MCUboot image hash (SHA256 TLV) as 64 hex digits.\n");
}

static int read_file(struct tool *tl)
{
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd = open(tl->file, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "fotagw-smp: cannot open '%s': %m\n", tl->file);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_size <= 0 || (uint64_t) st.st_size > MAX_IMAGE_SIZE) {
		fprintf(stderr, "fotagw-smp: '%s': size %lld out of range\n", tl->file,
			(long long) st.st_size);
		close(fd);
		return -1;
	}
	tl->len = (size_t) st.st_size;
	tl->data = malloc(tl->len);
	while (tl->data && got < tl->len && (n = read(fd, tl->data + got, tl->len - got)) > 0)
		got += (size_t) n;
	close(fd);
	if (!tl->data || got != tl->len) {
		fprintf(stderr, "fotagw-smp: cannot read '%s'\n", tl->file);
		return -1;
	}
	return 0;
}

static int parse_args(struct tool *tl, int argc, char **argv, const char **ret_transport)
{
	static const struct option opts[] = {
	    {"transport", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"timeout", required_argument, NULL, 'T'},
	    {"image", required_argument, NULL, 'i'},
	    {"window", required_argument, NULL, 'w'},
	    {"slot", required_argument, NULL, 's'},
	    {"force", no_argument, NULL, 'f'},
	    {"v1", no_argument, NULL, '1'},
	    {"retries", required_argument, NULL, 'r'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"seconds", required_argument, NULL, 'S'},
	    {"adapter", required_argument, NULL, 'A'},
	    {"rssi", required_argument, NULL, 'R'},
	    {"passkey-file", required_argument, NULL, 'P'},
	    {},
	};
	int c, n;
	int64_t v;
	char **pos;

	while ((c = getopt_long(argc, argv, "t:jvh", opts, NULL)) >= 0) {
		switch (c) {
		case 't':
			*ret_transport = optarg;
			break;
		case 'j':
			tl->json = true;
			break;
		case 'T':
			if (fgw_parse_int64(optarg, 1, 3600000, &v) < 0)
				goto bad;
			tl->timeout_ms = (unsigned) v;
			break;
		case 'i':
			if (fgw_parse_int64(optarg, 0, 15, &v) < 0)
				goto bad;
			tl->image = (unsigned) v;
			break;
		case 'w':
			if (fgw_parse_int64(optarg, 1, FGW_UPLOAD_MAX_WINDOW, &v) < 0)
				goto bad;
			tl->window = (unsigned) v;
			break;
		case 's':
			if (fgw_parse_int64(optarg, 0, 255, &v) < 0)
				goto bad;
			tl->slot = (int) v;
			break;
		case 'f':
			tl->force = true;
			break;
		case '1':
			tl->v1 = true;
			break;
		case 'r':
			if (fgw_parse_int64(optarg, 0, 100, &v) < 0)
				goto bad;
			tl->retries = (unsigned) v;
			break;
		case 'v':
			fgw_log_set_level(LOG_DEBUG);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'S':
			if (fgw_parse_int64(optarg, 1, 3600, &v) < 0)
				goto bad;
			tl->scan_seconds = (unsigned) v;
			break;
		case 'A':
			tl->ble_adapter = optarg;
			break;
		case 'R':
			if (fgw_parse_int64(optarg, -127, 0, &v) < 0)
				goto bad;
			tl->ble_rssi = (int) v;
			tl->ble_rssi_set = true;
			break;
		case 'P':
			tl->passkey_file = optarg;
			break;
		default:
			usage(stderr);
			return -1;
		}
	}
	pos = argv + optind;
	n = argc - optind;
	if (n >= 2 && !strcmp(pos[0], "echo") && n == 2) {
		tl->cmd = CMD_ECHO;
		tl->text = pos[1];
	} else if (n == 1 && !strcmp(pos[0], "reset")) {
		tl->cmd = CMD_RESET;
	} else if (n == 1 && !strcmp(pos[0], "params")) {
		tl->cmd = CMD_PARAMS;
	} else if (n == 1 && !strcmp(pos[0], "info")) {
		tl->cmd = CMD_INFO;
	} else if (n == 1 && !strcmp(pos[0], "scan")) {
		tl->cmd = CMD_SCAN;
	} else if (n == 1 && (!strcmp(pos[0], "pair") || !strcmp(pos[0], "unpair"))) {
		tl->cmd = pos[0][0] == 'p' ? CMD_PAIR : CMD_UNPAIR;
	} else if (n >= 2 && !strcmp(pos[0], "image")) {
		const char *sub = pos[1];

		if (!strcmp(sub, "list") && n == 2)
			tl->cmd = CMD_IMAGE_LIST;
		else if (!strcmp(sub, "slots") && n == 2)
			tl->cmd = CMD_IMAGE_SLOTS;
		else if (!strcmp(sub, "upload") && n == 3) {
			tl->cmd = CMD_IMAGE_UPLOAD;
			tl->file = pos[2];
		} else if (!strcmp(sub, "test") && n == 3)
			tl->cmd = CMD_IMAGE_TEST;
		else if (!strcmp(sub, "confirm") && (n == 2 || n == 3))
			tl->cmd = CMD_IMAGE_CONFIRM;
		else if (!strcmp(sub, "erase") && n == 2)
			tl->cmd = CMD_IMAGE_ERASE;
		else
			goto usage;
		if (n == 3 && (tl->cmd == CMD_IMAGE_TEST || tl->cmd == CMD_IMAGE_CONFIRM)) {
			if (strlen(pos[2]) != 64 || fgw_hex_decode(pos[2], tl->hash, 32) < 0) {
				fprintf(stderr, "fotagw-smp: '%s' is not a 64-digit hex hash\n",
					pos[2]);
				return -1;
			}
			tl->has_hash = true;
		}
	} else {
		goto usage;
	}
	return 0;
bad:
	fprintf(stderr, "fotagw-smp: bad value '%s'\n", optarg);
	return -1;
usage:
	usage(stderr);
	return -1;
}

#ifdef FGW_WITH_BLE
static void scan_done(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void scan_print(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
		       const struct fgw_bluez_device_info *info, void *user_data)
{
	struct tool *tl = user_data;
	cJSON *arr = cJSON_GetObjectItem(tl->out, "devices"), *d;

	if (!info->smp_service)
		return;
	if (!tl->json) {
		/* 127 (not available) comes as has_rssi false: unknown, not weak */
		if (info->has_rssi)
			printf("%s  %4d dBm  %s\n", info->addr, info->rssi,
			       info->name ? info->name : "");
		else
			printf("%s     ? dBm  %s\n", info->addr, info->name ? info->name : "");
		return;
	}
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "addr", info->addr);
	cJSON_AddStringToObject(d, "name", info->name ? info->name : "");
	if (info->has_rssi)
		cJSON_AddNumberToObject(d, "rssi", info->rssi);
	cJSON_AddItemToArray(arr, d);
}

/* Discovery for N seconds with the SMP service filter, then the devices bluetoothd lists. */
static int run_scan(struct tool *tl)
{
	struct fgw_bluez_options o;
	uv_timer_t timer;
	int r;

	ble_options(tl, &o);
	r = fgw_bluez_new(&tl->loop, &o, &tl->bluez);
	if (r < 0) {
		fprintf(stderr, "fotagw-smp: cannot reach bluetoothd: %s\n", strerror(-r));
		return 1;
	}
	uv_timer_init(&tl->loop, &timer);
	uv_timer_start(&timer, scan_done, (tl->scan_seconds ? tl->scan_seconds : 5) * 1000u, 0);
	uv_run(&tl->loop, UV_RUN_DEFAULT);
	r = fgw_bluez_adapter_state(tl->bluez) == FGW_BLUEZ_ADAPTER_STATE_ON ? 0 : 1;
	if (r)
		fprintf(stderr, "fotagw-smp: no usable adapter: %s\n",
			fgw_bluez_last_error(tl->bluez));
	cJSON_AddItemToObject(tl->out, "devices", cJSON_CreateArray());
	fgw_bluez_foreach_device(tl->bluez, scan_print, tl);
	if (tl->json)
		print_json(tl);
	tl->bluez = fgw_bluez_free(tl->bluez);
	uv_close((uv_handle_t *) &timer, NULL);
	uv_run(&tl->loop, UV_RUN_DEFAULT);
	return r;
}
#endif

#ifdef FGW_WITH_BLE
/* pair / unpair (pair.c) on a ble: transport, without an SMP client. */
static int run_pair(struct tool *tl, const char *spec)
{
	struct fgw_bluez_options o;
	int code;

	if (strncmp(spec, "ble:", 4) != 0) {
		fprintf(stderr, "fotagw-smp: pair/unpair need --transport ble:ADDR\n");
		return 2;
	}
	ble_options(tl, &o);
	o.scan = false;
	if (fgw_bluez_new(&tl->loop, &o, &tl->bluez) < 0) {
		fprintf(stderr, "fotagw-smp: cannot reach bluetoothd\n");
		return 1;
	}
	code = smp_pair_main(&tl->loop, tl->bluez, spec + 4, tl->cmd == CMD_UNPAIR,
			     tl->passkey_file, tl->json);
	tl->bluez = fgw_bluez_free(tl->bluez);
	uv_run(&tl->loop, UV_RUN_DEFAULT);
	return code;
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
#endif

int main(int argc, char **argv)
{
	struct tool tl = {.timeout_ms = 10000, .slot = -1, .exit_code = -1, .retries = 2};
	const char *spec = "udp:127.0.0.1:1337";
	int r, code;

	fgw_log_set_level(LOG_WARNING);
	if (parse_args(&tl, argc, argv, &spec) < 0)
		return 2;
	tl.tty = isatty(STDERR_FILENO);
	tl.out = cJSON_CreateObject();
	if (tl.cmd == CMD_IMAGE_UPLOAD && read_file(&tl) < 0) {
		cJSON_Delete(tl.out);
		return 1;
	}
	if (uv_loop_init(&tl.loop) < 0) {
		cJSON_Delete(tl.out);
		free(tl.data);
		return 1;
	}
	if (tl.cmd == CMD_SCAN) {
#ifdef FGW_WITH_BLE
		code = run_scan(&tl);
#else
		fprintf(stderr, "fotagw-smp: built without BLE\n");
		code = 2;
#endif
		(void) uv_loop_close(&tl.loop);
		cJSON_Delete(tl.out);
		return code;
	}
#ifdef FGW_WITH_BLE
	if (tl.cmd == CMD_PAIR || tl.cmd == CMD_UNPAIR) {
		code = run_pair(&tl, spec);
		(void) uv_loop_close(&tl.loop);
		cJSON_Delete(tl.out);
		return code;
	}
#endif
	r = transport_from_spec(&tl, &tl.loop, spec, &tl.bluez, &tl.t);
	if (r < 0) {
		(void) uv_loop_close(&tl.loop);
		cJSON_Delete(tl.out);
		free(tl.data);
		return 2;
	}
	r = fgw_smp_client_new(&tl.loop, tl.t, &tl.c);
	if (r == 0) {
		if (tl.v1)
			fgw_smp_client_set_version(tl.c, FGW_SMP_V1);
		r = fgw_smp_client_open(tl.c, on_state, &tl);
	}
	if (r < 0) {
		fprintf(stderr, "fotagw-smp: cannot open %s: %s\n", spec, strerror(-r));
		tl.exit_code = 1;
	} else {
		uv_run(&tl.loop, UV_RUN_DEFAULT);
	}
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
	free(tl.data);
	code = tl.exit_code < 0 ? 1 : tl.exit_code;
	return code;
}
