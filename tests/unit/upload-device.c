/* The upload engine's fake device and fixture (upload-device.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cbor.h>
#include <openssl/evp.h>

#include "upload-device.h"
#include "upload-req.h"

void fx_sha256(const uint8_t *d, size_t n, uint8_t out[32])
{
	unsigned len = 32;

	assert_int_equal(EVP_Digest(d, n, out, &len, EVP_sha256(), NULL), 1);
}

/* ---- the fake device ---- */

static void answer_map(struct dev *d, const uint8_t *req, cbor_item_t *map)
{
	unsigned char *buf = NULL;
	size_t size = 0, n = cbor_serialize_alloc(map, &buf, &size);
	uint8_t *pkt = malloc(8 + n);
	struct fgw_smp_hdr h = {.op = FGW_SMP_OP_WRITE_RSP,
				.version = d->f.v1 ? 0 : (req[0] >> 3) & 3,
				.len = (uint16_t) n,
				.group = 1,
				.seq = req[6],
				.id = 1};
	unsigned delay = d->f.delay_ms;

	fgw_smp_hdr_encode(&h, pkt);
	memcpy(pkt + 8, buf, n);
	if (d->slow_next)
		delay = d->f.first_delay;
	d->slow_next = false;
	peer_deliver(d->peer, pkt, 8 + n, d->f.split, delay);
	free(pkt);
	free(buf);
}

static void put(cbor_item_t *m, const char *k, cbor_item_t *v)
{
	cbor_map_add(
	    m, (struct cbor_pair){.key = cbor_move(cbor_build_string(k)), .value = cbor_move(v)});
}

static void answer_off(struct dev *d, const uint8_t *req, uint64_t off, bool last)
{
	cbor_item_t *m = cbor_new_indefinite_map();

	put(m, "off", cbor_build_uint32((uint32_t) off));
	if (last && d->f.image_check) {
		uint8_t h[32];

		fx_sha256(d->slot, d->len, h);
		put(m, "match", cbor_build_bool(memcmp(h, d->sha, 32) == 0));
	}
	answer_map(d, req, m);
	cbor_decref(&m);
}

static void answer_err(struct dev *d, const uint8_t *req, unsigned group, unsigned rc)
{
	cbor_item_t *m = cbor_new_indefinite_map();

	if (group == 0) {
		put(m, "rc", cbor_build_uint8((uint8_t) rc));
	} else {
		cbor_item_t *e = cbor_new_definite_map(2);

		put(e, "group", cbor_build_uint8((uint8_t) group));
		put(e, "rc", cbor_build_uint8((uint8_t) rc));
		put(m, "err", e);
	}
	answer_map(d, req, m);
	cbor_decref(&m);
}

/* The slot already holds @len bytes with this sha (the image check's shortcut, §4.3). */
static bool slot_holds(struct dev *d, uint64_t len, const uint8_t *sha)
{
	uint8_t h[32];

	if (len > d->slot_size)
		return false;
	fx_sha256(d->slot, len, h);
	return memcmp(h, sha, 32) == 0;
}

static void answer_held(struct dev *d, const uint8_t *req)
{
	cbor_item_t *m = cbor_new_indefinite_map();

	put(m, "off", cbor_build_uint32((uint32_t) d->len));
	put(m, "match", cbor_build_bool(true));
	answer_map(d, req, m);
	cbor_decref(&m);
}

/* The pool: a request holds a buffer until its answer goes out (delay_ms later). */
static bool take_buf(struct dev *d)
{
	uint64_t now = uv_now(d->loop);
	unsigned busy = 0, free_i = 0;

	for (unsigned i = 0; i < 64; i++) {
		if (d->buf_until[i] > now)
			busy++;
		else
			free_i = i;
	}
	d->over_cap_now = busy >= d->f.cap;
	if (d->over_cap_now)
		return false;
	d->buf_until[free_i] = now + d->f.delay_ms;
	return true;
}

/* Faults that strike before the device reads the request; true: it is answered (or lost). */
static bool early_fault(struct dev *d, const uint8_t *pkt, size_t len, int k)
{
	if (len > d->buf_size) {
		d->too_big++; /* a real device drops it silently */
		return true;
	}
	if (k == d->f.drop_req || (d->f.silence_from != NONE && k >= d->f.silence_from))
		return true;
	if (d->f.always_nomem || (d->f.cap && !take_buf(d) && d->f.cap_nomem)) {
		d->over_cap++;
		answer_err(d, pkt, 0, 2);
		return true;
	}
	if (d->f.cap && d->over_cap_now) {
		d->over_cap++; /* no buffer for its first fragment: gone without a word */
		return true;
	}
	if (k == d->f.disconnect) {
		/* a link loss keeps the device's RAM session */
		peer_drop_link(d->peer, -ECONNRESET, 0);
		return true;
	}
	return false;
}

/* The chunk at offset 0: a resume, a held image, or a new session; true: it is answered. */
static bool first_chunk(struct dev *d, const uint8_t *pkt, const struct upload_req *q, int k)
{
	d->first_chunks++;
	assert_true(q->has_len && q->has_sha && q->data_len >= 32);
	assert_int_equal(q->has_image, false);
	if (d->session && q->sha_len == 32 && !memcmp(q->sha, d->sha, 32) && q->len == d->len) {
		answer_off(d, pkt, d->expected, false);
		return true;
	}
	d->session = false; /* a new sha or len abandons the old session */
	if (d->f.image_check && q->sha_len == 32 && slot_holds(d, q->len, q->sha)) {
		/* Zephyr with the image check: these bytes are there, nothing to upload */
		d->len = q->len;
		memcpy(d->sha, q->sha, 32);
		answer_held(d, pkt);
		return true;
	}
	d->session = true;
	d->slow_next = d->f.first_delay > 0 && k >= d->f.first_delay_from;
	d->len = q->len;
	d->expected = 0;
	memcpy(d->sha, q->sha, 32);
	memset(d->slot, 0xff, d->slot_size);
	return false;
}

/* A chunk in sequence: written to the slot and answered, unless a fault says otherwise. */
static void store_chunk(struct dev *d, const uint8_t *pkt, const struct upload_req *q, int k)
{
	assert_true(q->off + q->data_len <= d->len);
	if (q->off + q->data_len < d->len && q->data_len % 4)
		d->misaligned++;
	memcpy(d->slot + q->off, q->data, q->data_len);
	d->bytes_written += q->data_len;
	d->expected = q->off + q->data_len;
	if (d->f.corrupt && d->expected == d->len)
		d->slot[0] ^= 1;
	/* Zephyr ends the session with the last byte: a repeat of the final chunk gets off 0 */
	if (d->expected == d->len)
		d->session = false;
	if (k == d->f.drop_rsp)
		return;
	if (k == d->f.ahead) {
		/* the device claims more than we sent (e.g. it had it from before): skip ahead */
		d->expected = FGW_MIN(d->len, d->expected + 4096);
	}
	answer_off(d, pkt, d->expected, d->expected == d->len);
}

static void dev_handler(struct peer *p, const uint8_t *pkt, size_t len, void *user_data)
{
	struct dev *d = user_data;
	struct upload_req q;
	struct fgw_smp_hdr h;
	int k = (int) d->k++;

	assert_int_equal(fgw_smp_hdr_decode(pkt, len, &h), 0);
	assert_int_equal(h.group, 1);
	assert_int_equal(h.id, 1);
	/* the request being sent is not yet in the client's table */
	d->max_outstanding =
	    FGW_MAX(d->max_outstanding, (unsigned) fgw_smp_client_pending(d->c) + 1);
	if (early_fault(d, pkt, len, k))
		return;
	if (k == d->f.reboot)
		d->session = false;
	assert_int_equal(upload_req_decode(pkt + 8, len - 8, &q), 0);
	assert_true(q.has_off && q.has_data);
	if (k == d->f.busy) {
		answer_err(d, pkt, 0, d->f.busy_rc ? d->f.busy_rc : 10);
		return;
	}
	if (k == d->f.err_rc) {
		answer_err(d, pkt, d->f.err_group, 9);
		return;
	}
	if (q.off == 0) {
		if (first_chunk(d, pkt, &q, k))
			return;
	} else if (!d->session) {
		answer_off(d, pkt, 0, false);
		return;
	} else if (q.off != d->expected) {
		answer_off(d, pkt, d->expected, false);
		return;
	}
	store_chunk(d, pkt, &q, k);
}

/* ---- fixture ---- */

void on_done(struct fgw_upload *u, int err, const struct fgw_upload_result *res, void *user_data)
{
	struct fx *f = user_data;

	f->done_calls++;
	f->done_err = err;
	f->res = *res;
	if (f->free_in_done)
		f->u = fgw_upload_free(f->u);
}

static void on_progress(struct fgw_upload *u, uint64_t bytes, uint64_t total, double rate,
			void *user_data)
{
	struct fx *f = user_data;

	f->progress_calls++;
	assert_true(bytes <= total);
	f->last_progress = bytes;
	if (f->fail_sends_in_progress && bytes > total / 2)
		peer_fail_sends(f->peer, f->fail_sends_in_progress);
	if (f->cancel_in_progress && bytes > total / 2)
		fgw_upload_cancel(u);
}

void on_state(struct fgw_smp_client *c, int err, void *user_data)
{
}

struct fx *fx_new(size_t img_len, size_t mtu, size_t max_packet, size_t buf_size)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(peer_new(&f->loop, mtu, max_packet, &f->peer), 0);
	assert_int_equal(fgw_smp_client_new(&f->loop, peer_transport(f->peer), &f->c), 0);
	assert_int_equal(fgw_upload_new(&f->loop, f->c, &f->u), 0);
	f->dev = (struct dev){.peer = f->peer,
			      .loop = &f->loop,
			      .c = f->c,
			      .buf_size = buf_size,
			      .slot_size = img_len};
	f->dev.f = (struct fault){.drop_req = NONE,
				  .drop_rsp = NONE,
				  .busy = NONE,
				  .err_rc = NONE,
				  .reboot = NONE,
				  .disconnect = NONE,
				  .silence_from = NONE,
				  .ahead = NONE};
	f->dev.slot = malloc(img_len);
	memset(f->dev.slot, 0xff, img_len); /* erased flash */
	f->img = malloc(img_len);
	f->img_len = img_len;
	for (size_t i = 0; i < img_len; i++)
		f->img[i] = (uint8_t) (i * 7 + (i >> 8));
	f->img[0] = 0x3d, f->img[1] = 0xb8, f->img[2] = 0xf3, f->img[3] = 0x96;
	fx_sha256(f->img, img_len, f->sha);
	peer_set_handler(f->peer, dev_handler, &f->dev);
	assert_int_equal(fgw_smp_client_open(f->c, on_state, f), 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_true(fgw_smp_client_is_open(f->c));
	return f;
}

void fx_free(struct fx *f)
{
	fgw_upload_free(f->u);
	fgw_smp_client_free(f->c);
	fgw_transport_free(peer_transport(f->peer));
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f->dev.slot);
	free(f->img);
	free(f);
}

struct fgw_upload_opts quick_opts(uint32_t buf_size, uint32_t buf_count)
{
	struct fgw_upload_opts o;

	fgw_upload_opts_init(&o);
	o.buf_size = buf_size;
	o.buf_count = buf_count;
	/* short, but long enough that a loaded machine does not time out a live answer */
	o.first_timeout_ms = 2000;
	o.chunk_timeout_ms = 500;
	o.last_timeout_ms = 500;
	return o;
}

int run_upload(struct fx *f, uint64_t offset, const struct fgw_upload_opts *o)
{
	struct fgw_upload_image img = {.data = f->img, .len = f->img_len};
	int r;

	memcpy(img.sha256, f->sha, 32);
	f->done_calls = 0;
	r = fgw_upload_start(f->u, &img, offset, o, on_progress, on_done, f);
	if (r < 0)
		return r;
	assert_int_equal(f->done_calls, 0); /* never before start() returned */
	while (f->done_calls == 0 && uv_run(&f->loop, UV_RUN_ONCE))
		;
	assert_int_equal(f->done_calls, 1);
	return 0;
}

void assert_device_has_image(struct fx *f)
{
	uint8_t h[32];

	assert_int_equal(f->dev.len, f->img_len);
	fx_sha256(f->dev.slot, f->img_len, h);
	assert_memory_equal(h, f->sha, 32);
	assert_int_equal(f->res.off, f->img_len);
}
