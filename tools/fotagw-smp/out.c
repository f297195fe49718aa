/*
 * Outcomes: text on stdout (results) and stderr (errors, warnings), or with --json exactly one
 * JSON object on stdout per run, whatever happened, with "ok" first so that a consumer never has
 * to guess from other fields. Device errors are spelled by their own kind: a v2 group error has
 * "group", "group_rc" and "name", a v1 error "rc" and "name"; never an "rc": 0 beside a failure.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"
#include "util.h"

void out_init(struct tool *tl)
{
	tl->out = cJSON_CreateObject();
}

/* Prints {"ok": ok, ...tl->out, "warnings": [...]} and empties tl->out. */
static void print_json(struct tool *tl, bool ok)
{
	cJSON *o = cJSON_CreateObject(), *item;
	char *s;

	cJSON_AddBoolToObject(o, "ok", ok);
	while (tl->out && (item = tl->out->child)) {
		char *key = item->string;

		cJSON_DetachItemViaPointer(tl->out, item);
		item->string = NULL;
		cJSON_AddItemToObject(o, key, item);
		free(key);
	}
	if (tl->warnings) {
		cJSON_AddItemToObject(o, "warnings", tl->warnings);
		tl->warnings = NULL;
	}
	s = cJSON_PrintUnformatted(o);
	if (s) {
		puts(s);
		free(s);
	}
	fflush(stdout);
	cJSON_Delete(o);
}

void tool_finish(struct tool *tl, int code)
{
	if (tl->exit_code < 0)
		tl->exit_code = code;
	if (tl->c)
		fgw_smp_client_close(tl->c);
	if (tl->bluez)
		uv_stop(&tl->loop); /* bluez' bus handles would keep the loop running */
}

void tool_done(struct tool *tl)
{
	if (tl->exit_code >= 0)
		return;
	if (tl->json)
		print_json(tl, true);
	tool_finish(tl, 0);
}

static void add_status(cJSON *o, const struct fgw_smp_status *st)
{
	if (st->has_err) {
		cJSON_AddNumberToObject(o, "group", st->err_group);
		cJSON_AddNumberToObject(o, "group_rc", st->err_rc);
		cJSON_AddStringToObject(o, "name",
					fgw_smp_group_rc_to_string(st->err_group, st->err_rc));
	} else {
		cJSON_AddNumberToObject(o, "rc", (double) st->rc);
		cJSON_AddStringToObject(o, "name", fgw_smp_rc_to_string(st->rc));
	}
}

static int fail_message(struct tool *tl, int code, const char *what, const char *msg,
			const struct fgw_smp_status *st, int err)
{
	if (tl->exit_code >= 0)
		return -1;
	if (tl->json) {
		cJSON_DeleteItemFromObject(tl->out, "error");
		cJSON_DeleteItemFromObject(tl->out, "message");
		cJSON_AddStringToObject(tl->out, "error", what);
		cJSON_AddStringToObject(tl->out, "message", msg);
		if (st)
			add_status(tl->out, st);
		else if (err < 0)
			cJSON_AddNumberToObject(tl->out, "errno", -err);
		print_json(tl, false);
	} else {
		/* @msg may carry the device's own words (rsn): escaped */
		fprintf(stderr, "fotagw-smp: %s: ", what);
		print_safe(stderr, msg);
		fputc('\n', stderr);
	}
	tool_finish(tl, code);
	return -1;
}

int tool_fail(struct tool *tl, const char *what, int err, const struct fgw_smp_status *st)
{
	char buf[256];

	if (st)
		fgw_smp_status_format(st, buf, sizeof(buf));
	else if (err == -ECONNREFUSED && tl->t && !strncmp(fgw_transport_peer(tl->t), "udp:", 4))
		snprintf(buf, sizeof(buf), "connection refused (nothing listens on %s)",
			 fgw_transport_peer(tl->t) + 4);
	else if (err == -ETIMEDOUT && tl->t)
		snprintf(buf, sizeof(buf), "no answer from %s within %u ms", tl->spec,
			 tl->last_ms ? tl->last_ms : tl->timeout_ms);
	else
		snprintf(buf, sizeof(buf), "%s", strerror(-err));
	return fail_message(tl, 1, what, buf, st, err);
}

int tool_failf(struct tool *tl, int code, const char *what, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return fail_message(tl, code, what, buf, NULL, 0);
}

int tool_fail_errno(struct tool *tl, int err, const char *what, const char *fmt, ...)
{
	char buf[1024];
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n = strlen(buf);
	snprintf(buf + n, sizeof(buf) - n, ": %s", strerror(-err));
	return fail_message(tl, 1, what, buf, NULL, err);
}

void tool_warnf(struct tool *tl, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (tl->json) {
		if (!tl->warnings)
			tl->warnings = cJSON_CreateArray();
		cJSON_AddItemToArray(tl->warnings, cJSON_CreateString(buf));
	} else {
		fprintf(stderr, "fotagw-smp: warning: %s\n", buf);
	}
}

const char *fmt_count(uint64_t n, char buf[32])
{
	char digits[24];
	int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long) n), o = 0;

	for (int i = 0; i < len; i++) {
		if (i > 0 && (len - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}

void print_safe(FILE *f, const char *s)
{
	char *e = fgw_escape_dup(s);

	fputs(e ? e : "(out of memory)", f);
	free(e);
}

void json_add_rounded(cJSON *o, const char *key, double v, int decimals)
{
	double scale = pow(10.0, decimals);

	cJSON_AddNumberToObject(o, key, round(v * scale) / scale);
}
