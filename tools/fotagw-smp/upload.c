/*
 * image upload: check the file before the first byte goes out (MCUboot header and TLVs with
 * lib/bundle, the SHA256 TLV recomputed, the signature with --key, the size against the slot the
 * device reports), refuse with the reason unless --force; send it with lib/upload; then ask the
 * device with image list whether the hash sits in the expected image and slot, because a
 * single-image device ignores the image number and the wrong core would stay un-updated.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"
#include "util.h"

static void add_problem(struct tool *tl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_problem(struct tool *tl, const char *fmt, ...)
{
	char *p = tl->chk.problems;
	size_t used = strlen(p);
	va_list ap;

	if (used && used + 2 < sizeof(tl->chk.problems)) {
		strcat(p, "; ");
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(p + used, sizeof(tl->chk.problems) - used, fmt, ap);
	va_end(ap);
}

static int read_file(struct tool *tl)
{
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd = open(tl->file, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = -errno;

		if (fd >= 0)
			close(fd);
		return tool_fail_errno(tl, err, "cannot open image", "'%s'", tl->file);
	}
	if (st.st_size <= 0 || (uint64_t) st.st_size > TOOL_MAX_IMAGE_SIZE) {
		close(fd);
		return tool_failf(tl, 1, "bad image file", "'%s': size %lld out of range (1..%u)",
				  tl->file, (long long) st.st_size, TOOL_MAX_IMAGE_SIZE);
	}
	tl->len = (size_t) st.st_size;
	tl->data = malloc(tl->len);
	while (tl->data && got < tl->len && (n = read(fd, tl->data + got, tl->len - got)) > 0)
		got += (size_t) n;
	close(fd);
	if (!tl->data || got != tl->len)
		return tool_failf(tl, 1, "cannot read image", "'%s'", tl->file);
	return 0;
}

static void add_image_json(struct tool *tl, enum fgw_sig_status sig)
{
	char h[65], v[FGW_IMAGE_VERSION_STRLEN];
	cJSON *o = cJSON_AddObjectToObject(tl->out, "file");

	cJSON_AddBoolToObject(o, "mcuboot", tl->chk.parsed);
	if (!tl->chk.parsed)
		return;
	fgw_hex_encode(tl->chk.img.hash, 32, h);
	cJSON_AddStringToObject(o, "hash", h);
	cJSON_AddStringToObject(o, "version", fgw_image_version_format(&tl->chk.img.version, v));
	cJSON_AddStringToObject(o, "signature", fgw_sig_status_to_string(sig));
}

/* Header, TLVs, hash and (with --key) signature: what MCUboot will check at boot. */
static int check_file(struct tool *tl)
{
	struct fgw_reject why = {0};
	enum fgw_sig_status sig = FGW_SIG_STATUS_NOT_CHECKED;
	struct fgw_key *key = NULL;
	int r;

	if (tl->key_path) {
		r = fgw_key_load_file(tl->key_path, &key);
		if (r < 0)
			return tool_fail_errno(tl, r, "cannot load key", "'%s'", tl->key_path);
	}
	r = fgw_mcuboot_parse(tl->data, tl->len, &tl->chk.img, &why);
	if (r < 0) {
		add_problem(tl, "not an MCUboot image (%s: %s)",
			    fgw_reject_reason_to_string(why.reason), why.detail ? why.detail : "");
	} else {
		tl->chk.parsed = true;
		r = fgw_mcuboot_verify(tl->data, tl->len, &tl->chk.img, key, &sig, &why);
		if (r < 0)
			add_problem(tl, "%s (%s)", fgw_reject_reason_to_string(why.reason),
				    why.detail ? why.detail : "");
	}
	fgw_key_free(key);
	add_image_json(tl, sig);
	return 0;
}

int upload_prepare(struct tool *tl)
{
	if (read_file(tl) < 0 || check_file(tl) < 0)
		return tl->exit_code;
	if (!tl->chk.problems[0])
		return 0;
	if (!tl->force) {
		tool_failf(tl, 1, "image refused",
			   "'%s': %s (nothing sent; --force sends it anyway)", tl->file,
			   tl->chk.problems);
		return tl->exit_code;
	}
	tool_warnf(tl, "'%s': %s (sent anyway: --force)", tl->file, tl->chk.problems);
	return 0;
}

/* ---- progress and the outcome ---- */

static void upload_progress(struct fgw_upload *u, uint64_t bytes, uint64_t total, double rate,
			    void *user_data)
{
	struct tool *tl = user_data;
	uint64_t now = fgw_now_ms();
	int width = 40, fill = total ? (int) (bytes * (uint64_t) width / total) : 0;

	(void) u;
	if (!tl->tty || tl->json || (now - tl->last_bar_ms < 100 && bytes < total))
		return;
	tl->last_bar_ms = now;
	fprintf(stderr, "\r[%.*s%*s] %3d%% %8.1f KiB/s", fill,
		"========================================", width - fill, "",
		(int) (total ? bytes * 100 / total : 0), rate / 1024.0);
	fflush(stderr);
}

static void summary_json(struct tool *tl, double secs, double kib, double stream_kib)
{
	const struct fgw_upload_stats *st = &tl->chk.stats;
	cJSON *o = tl->out;

	cJSON_AddNumberToObject(o, "bytes", (double) st->total);
	cJSON_AddNumberToObject(o, "start_off", (double) st->start_off);
	cJSON_AddBoolToObject(o, "resumed", st->start_off > 0 && st->start_off < st->total);
	cJSON_AddBoolToObject(o, "already_held", st->start_off == st->total);
	cJSON_AddBoolToObject(o, "restarted", st->restarts > 0);
	json_add_rounded(o, "seconds", secs, 3);
	json_add_rounded(o, "kib_per_s", kib, 1);
	cJSON_AddNumberToObject(o, "first_ms", (double) st->first_ms);
	json_add_rounded(o, "stream_kib_per_s", stream_kib, 1);
	cJSON_AddNumberToObject(o, "chunks", (double) st->chunks);
	cJSON_AddNumberToObject(o, "retransmissions", (double) st->retransmissions);
	cJSON_AddNumberToObject(o, "timeouts", (double) st->timeouts);
	cJSON_AddNumberToObject(o, "lost", (double) st->lost);
	cJSON_AddNumberToObject(o, "restarts", (double) st->restarts);
	cJSON_AddNumberToObject(o, "bytes_sent", (double) st->bytes_sent);
	cJSON_AddNumberToObject(o, "window", st->window);
	cJSON_AddNumberToObject(o, "chunk_size", (double) st->chunk_size);
	cJSON_AddNumberToObject(o, "packet_size", (double) st->packet_size);
	if (tl->chk.res.has_match)
		cJSON_AddBoolToObject(o, "match", tl->chk.res.match);
}

/* One line that tells a resume, a restart and an image the device already had apart. */
static void summary_text(struct tool *tl, double secs, double kib)
{
	const struct fgw_upload_stats *st = &tl->chk.stats;
	char a[32], b[32], c[32];

	if (st->start_off == st->total) {
		printf("the device already held this image: it answered the first chunk with all "
		       "%s bytes (%" PRIu64 " chunk%s, %s data bytes sent, nothing rewritten)\n",
		       fmt_count(st->total, a), st->chunks, st->chunks == 1 ? "" : "s",
		       fmt_count(st->bytes_sent, b));
	} else if (st->start_off > 0) {
		printf("resumed at %s of %s: %s bytes in %.2f s, %.1f KiB/s, %" PRIu64
		       " chunks, %" PRIu64 " retransmissions\n",
		       fmt_count(st->start_off, a), fmt_count(st->total, b),
		       fmt_count(st->total - st->start_off, c), secs, kib, st->chunks,
		       st->retransmissions);
	} else {
		printf("%s bytes in %.2f s, %.1f KiB/s, %" PRIu64 " chunks, %" PRIu64
		       " retransmissions\n",
		       fmt_count(st->total, a), secs, kib, st->chunks, st->retransmissions);
	}
	if (st->restarts > 0)
		printf("the device restarted the upload: sent again from 0 (%" PRIu64 " time%s, "
		       "%s bytes sent in all)\n",
		       st->restarts, st->restarts == 1 ? "" : "s", fmt_count(st->bytes_sent, a));
}

static void print_summary(struct tool *tl)
{
	const struct fgw_upload_stats *st = &tl->chk.stats;
	double secs = (double) st->elapsed_ms / 1000.0, kib, stream_kib = 0;

	kib = secs > 0 ? (double) (st->total - st->start_off) / 1024.0 / secs : 0;
	/* Goodput once streaming: without the first answer (session open, slot erase). */
	if (st->elapsed_ms > st->first_ms)
		stream_kib = (double) (st->total - st->start_off) / 1024.0 /
			     ((double) (st->elapsed_ms - st->first_ms) / 1000.0);
	if (tl->json)
		summary_json(tl, secs, kib, stream_kib);
	else
		summary_text(tl, secs, kib);
}

/* ---- after the upload: where does the device list the hash? ---- */

static int b_state(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_img_state(r);
}

static void on_verify(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	struct fgw_smp_img_state *st = NULL;
	char where[128] = "";
	bool expected = false;
	int r = -ENOMEM;

	if (err < 0 || !fgw_smp_status_ok(&rsp->status)) {
		tool_failf(tl, 1, "placement not confirmed",
			   "uploaded, but image list failed (%s): check with 'image list'",
			   err < 0 ? strerror(-err) : "device error");
		return;
	}
	st = calloc(1, sizeof(*st));
	if (st)
		r = fgw_smp_img_state_decode(rsp->payload, rsp->len, st);
	for (size_t i = 0; r == 0 && i < st->n_slots; i++) {
		const struct fgw_smp_img_slot *s = &st->slots[i];
		size_t n = strlen(where);

		if (!s->has_hash || memcmp(s->hash, tl->chk.img.hash, 32))
			continue;
		if (s->image == tl->image && s->slot == 1)
			expected = true;
		else
			snprintf(where + n, sizeof(where) - n, "%simage %u slot %u", n ? ", " : "",
				 s->image, s->slot);
	}
	free(st);
	if (r < 0) {
		tool_fail(tl, "placement not confirmed", r, NULL);
		return;
	}
	if (tl->json) {
		cJSON *p = cJSON_AddObjectToObject(tl->out, "placement");

		cJSON_AddNumberToObject(p, "image", tl->image);
		cJSON_AddNumberToObject(p, "slot", 1);
		cJSON_AddBoolToObject(p, "confirmed", expected);
		if (where[0])
			cJSON_AddStringToObject(p, "also", where);
	}
	if (!expected) {
		tool_failf(tl, 1, "image misplaced",
			   "the device lists the uploaded hash %s%s, not as image %u slot %u",
			   where[0] ? "as " : "nowhere", where, tl->image, 1);
		return;
	}
	if (!tl->json)
		printf("image list: image %u slot 1 holds the uploaded hash\n", tl->image);
	tool_done(tl);
}

static void explain_refusal(struct tool *tl, const struct fgw_smp_status *st)
{
	/* rc 1 (EUNKNOWN) is what a v1 device says for "not an image" and "too large" alike */
	if (st->has_err || st->rc != 1)
		return;
	if (tl->chk.problems[0])
		tool_warnf(tl, "likely causes found locally: %s", tl->chk.problems);
	else
		tool_warnf(tl, "no local cause found: header, TLVs and hash check out%s",
			   tl->chk.has_limit ? " and the image fits the slot" : "");
}

static void upload_done(struct fgw_upload *u, int err, const struct fgw_upload_result *res,
			void *user_data)
{
	struct tool *tl = user_data;
	char what[96];

	fgw_upload_get_stats(u, &tl->chk.stats);
	tl->chk.res = *res;
	if (tl->tty && !tl->json)
		fputc('\n', stderr);
	if (err == -EREMOTEIO) {
		explain_refusal(tl, &res->status);
		tool_fail(tl, "upload refused by the device", err, &res->status);
		return;
	}
	if (err == -EILSEQ) {
		tool_failf(tl, 1, "upload corrupted",
			   "the device's image check failed (match false)");
		return;
	}
	snprintf(what, sizeof(what), "upload failed at offset %" PRIu64, res->off);
	if (err == -ETIMEDOUT) {
		tool_failf(tl, 1, what,
			   "no answer from %s (%" PRIu64 " timeouts, %" PRIu64 " chunks sent)",
			   tl->spec, tl->chk.stats.timeouts, tl->chk.stats.chunks);
		return;
	}
	if (err == -ENOMEM) {
		tool_failf(tl, 1, what,
			   "the device stayed out of SMP buffers (ENOMEM) at window 1");
		return;
	}
	if (err < 0) {
		tool_fail(tl, what, err, NULL);
		return;
	}
	print_summary(tl);
	if (!tl->chk.parsed) {
		tool_warnf(tl, "not an MCUboot image: its place on the device is not checked");
		tool_done(tl);
		return;
	}
	tl->step = 3;
	send_req(tl, b_state, 0, on_verify);
}

static void start_upload(struct tool *tl)
{
	struct fgw_upload_image img = {.data = tl->data, .len = tl->len, .image = tl->image};
	struct fgw_upload_opts o;
	unsigned len = 32;
	int r;

	/* The file's SHA-256 is the session tag (protocol-notes §4.3), not the MCUboot hash. */
	if (EVP_Digest(tl->data, tl->len, img.sha256, &len, EVP_sha256(), NULL) != 1) {
		tool_fail(tl, "cannot hash the image", -EIO, NULL);
		return;
	}
	fgw_upload_opts_init(&o);
	if (tl->has_params) {
		o.buf_size = tl->params.buf_size;
		o.buf_count = tl->params.buf_count;
	}
	o.window = tl->window;
	/* No answer to params: a device that never answered gets no 40 s erase wait (#21). */
	o.device_silent = !tl->has_params;
	o.chunk_timeout_ms = FGW_MIN(tl->timeout_ms, o.chunk_timeout_ms);
	o.max_timeouts = tl->retries + 1;
	if (o.window > fgw_upload_window_limit(&o))
		tool_warnf(tl,
			   "--window %u clamped to %u: the device has %" PRIu32
			   " SMP buffers and needs one for each answer",
			   o.window, fgw_upload_window_limit(&o), o.buf_count);
	tl->step = 2;
	r = fgw_upload_new(&tl->loop, tl->c, &tl->up);
	if (r == 0)
		r = fgw_upload_start(tl->up, &img, 0, &o, upload_progress, upload_done, tl);
	if (r < 0)
		tool_fail(tl, "cannot start the upload", r, NULL);
}

/* ---- before: params (packet size, window) and slot info (size, image number) ---- */

static int b_params(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_params(r);
}
static int b_slots(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_img_slot_info(r);
}

static void check_slots(struct tool *tl, const struct fgw_smp_slot_info *si)
{
	char a[32], b[32];

	for (size_t i = 0; i < si->n_images; i++) {
		if (si->images[i].image != tl->image)
			continue;
		if (si->images[i].has_max_image_size) {
			tl->chk.has_limit = true;
			tl->chk.limit = si->images[i].max_image_size;
		}
		for (size_t j = 0; !tl->chk.has_limit && j < si->images[i].n_slots; j++) {
			if (si->images[i].slots[j].slot != 1)
				continue;
			tl->chk.has_limit = true;
			tl->chk.limit = si->images[i].slots[j].size;
		}
		if (tl->chk.has_limit && tl->len > tl->chk.limit)
			add_problem(tl,
				    "%s bytes do not fit image %u's slot (the device takes at "
				    "most %s)",
				    fmt_count(tl->len, a), tl->image, fmt_count(tl->chk.limit, b));
		return;
	}
	add_problem(tl, "the device reports no image %u in its slot info", tl->image);
}

static void on_slots(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	struct fgw_smp_slot_info si;
	size_t before = strlen(tl->chk.problems);

	if (err < 0 && err != -ETIMEDOUT) {
		tool_fail(tl, "slot info", err, NULL);
		return;
	}
	/* older firmware has no slot info (rc 8): the device's own size check has to do */
	if (err == 0 && fgw_smp_status_ok(&rsp->status) &&
	    fgw_smp_slot_info_decode(rsp->payload, rsp->len, &si) == 0)
		check_slots(tl, &si);
	if (strlen(tl->chk.problems) > before) {
		if (!tl->force) {
			tool_failf(tl, 1, "image refused",
				   "'%s': %s (nothing sent; --force sends "
				   "it anyway)",
				   tl->file, tl->chk.problems + before + (before ? 2 : 0));
			return;
		}
		tool_warnf(tl, "%s (sent anyway: --force)",
			   tl->chk.problems + before + (before ? 2 : 0));
	}
	start_upload(tl);
}

static void on_params(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	/* without params the engine assumes one MTU per packet and window 1 */
	if (err == 0 && fgw_smp_status_ok(&rsp->status) &&
	    fgw_smp_params_decode(rsp->payload, rsp->len, &tl->params) == 0)
		tl->has_params = true;
	else if (err < 0 && err != -ETIMEDOUT) {
		tool_fail(tl, "params", err, NULL);
		return;
	}
	tl->step = 1;
	send_req(tl, b_slots, FGW_MIN(tl->timeout_ms, 5000u), on_slots);
}

void upload_run(struct tool *tl)
{
	send_req(tl, b_params, FGW_MIN(tl->timeout_ms, 5000u), on_params);
}
