/*
 * fotagw-smp internals: one struct tool per run, shared by the files of the tool. cli.c reads
 * the command line and prints help, main.c opens the transport and runs the loop, request.c
 * sends requests (with retries) and hands answers to the command's handler, os.c and image.c
 * run the os and image commands, upload.c checks an image locally and uploads it, out.c writes
 * every outcome (text, or with --json exactly one JSON object with an `ok` field), scan.c lists
 * BLE devices. A new subcommand is a row in cli.c's table plus a run function.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "bundle.h"
#include "smp.h"
#include "transport.h"
#include "upload.h"

#define TOOL_MAX_IMAGE_SIZE (64u << 20) /* nRF5340 slots are < 1 MiB; refuse absurd files */

enum cmd {
	CMD_NONE, /* no command given: only --help and --version make sense */
	CMD_ECHO,
	CMD_RESET,
	CMD_PARAMS,
	CMD_INFO,
	CMD_IMAGE, /* "image" without a subcommand: for `image --help` */
	CMD_IMAGE_LIST,
	CMD_IMAGE_SLOTS,
	CMD_IMAGE_UPLOAD,
	CMD_IMAGE_TEST,
	CMD_IMAGE_CONFIRM,
	CMD_IMAGE_ERASE,
	CMD_SCAN,
	CMD_PAIR,   /* pair.c */
	CMD_UNPAIR, /* pair.c */
	_CMD_MAX,
};

struct tool;
/* A command's answer handler: @err and @rsp as fgw_smp_rsp_cb_t, after retries. */
typedef void (*tool_answer_fn)(struct tool *tl, int err, const struct fgw_smp_rsp *rsp);
typedef int (*tool_build_fn)(struct tool *tl, struct fgw_smp_req *req);

/* What the upload learnt before and after sending (upload.c). */
struct upload_check {
	bool parsed; /* the file parses as an MCUboot image */
	struct fgw_mcuboot_image img;
	char problems[512]; /* local findings, "; "-separated: the likely causes of a refusal */
	bool has_limit;	    /* the device reported a slot size for the target image */
	uint64_t limit;
	struct fgw_upload_stats stats;
	struct fgw_upload_result res;
};

struct tool {
	uv_loop_t loop;
	struct fgw_bluez *bluez; /* ble: only; keeps the loop alive until freed */
	struct fgw_transport *t;
	struct fgw_smp_client *c;
	struct fgw_upload *up;
	enum cmd cmd;
	const char *spec; /* --transport as given */
	bool json, tty, force, v1;
	unsigned timeout_ms, retries;
	const char *text, *file, *key_path;
	bool has_hash;
	uint8_t hash[32];
	int slot;
	unsigned image, window;
	/* scan and ble */
	unsigned scan_seconds;
	const char *scan_name; /* --name PREFIX: no SMP filter, names starting with PREFIX */
	bool scan_all;	       /* --all: no SMP filter, every device, with an SMP column */
	const char *ble_adapter;
	int ble_rssi;
	bool ble_rssi_set;
	const char *passkey_file; /* --passkey-file (pair.c) */
	/* run state */
	int exit_code; /* < 0 while running */
	int step;      /* for commands of several requests */
	unsigned tries_left;
	tool_build_fn last_build;
	tool_answer_fn answer;
	unsigned last_ms;
	cJSON *out; /* the result object being built (without `ok`, added at the end) */
	cJSON *warnings;
	/* upload */
	uint8_t *data;
	size_t len;
	struct fgw_smp_params params;
	bool has_params;
	uint64_t last_bar_ms;
	struct upload_check chk;
};

/* cli.c: 0 to run, or the exit code (0 after --help/--version, 2 for a usage error). */
int cli_parse(struct tool *tl, int argc, char **argv, bool *ret_exit);

/* out.c */
void out_init(struct tool *tl);
/* Success: prints the result (JSON with "ok": true) and ends the run with exit 0. */
void tool_done(struct tool *tl);
/* Failure: @what, then the device status, or strerror(-err); exit 1. Returns -1. */
int tool_fail(struct tool *tl, const char *what, int err, const struct fgw_smp_status *st);
/* Failure with a message of our own (and @code as exit code). Returns -1. */
int tool_failf(struct tool *tl, int code, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A local failure: "@fmt...: strerror(-err)", with "errno" in JSON; exit 1. Returns -1. */
int tool_fail_errno(struct tool *tl, int err, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A warning on stderr, and in the JSON result's "warnings". */
void tool_warnf(struct tool *tl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ends the run with @code (closes the client); the first code wins. */
void tool_finish(struct tool *tl, int code);
/* 1,234,567 */
const char *fmt_count(uint64_t n, char buf[32]);
/* Device text on a terminal: fgw_escape_text() rules (controls, bad UTF-8 as \\xNN). */
void print_safe(FILE *f, const char *s);
/* Adds @v rounded to @decimals places (no 17-digit noise in JSON). */
void json_add_rounded(cJSON *o, const char *key, double v, int decimals);

/* request.c */
int send_req(struct tool *tl, tool_build_fn build, unsigned ms, tool_answer_fn answer);
void run_command(struct tool *tl);

/* os.c */
void os_run(struct tool *tl);

/* image.c */
void image_run(struct tool *tl);
/* Prints an image state answer; 0 or -errno when it does not decode. */
int image_print_state(struct tool *tl, const struct fgw_smp_rsp *rsp, cJSON *into);

/* upload.c */
/* Reads the file and checks it (header, TLVs, hash, signature): 0, or the exit code. */
int upload_prepare(struct tool *tl);
void upload_run(struct tool *tl);

/* scan.c: the exit code. */
int scan_run(struct tool *tl);
#ifdef FGW_WITH_BLE
struct fgw_bluez_options;
void tool_ble_options(const struct tool *tl, struct fgw_bluez_options *o);
#endif
