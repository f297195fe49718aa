/*
 * The response path: any bytes from a device, as one frame and split into small frames,
 * through the reassembler and every response decoder. Must never crash or leak, and the
 * reassembler must find the same packets however the bytes were framed. The one-pass answer
 * decoder (fgw_smp_rsp_decode) is held to a reference built here on libcbor's item tree: what
 * it accepts, the reference accepts too, with the same fields.
 */
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "smp.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define MAX_PKTS 64

struct seen {
	size_t n;
	int err;
	size_t len[MAX_PKTS];
	uint8_t seq[MAX_PKTS];
};

static cbor_item_t *ref_get(cbor_item_t *map, const char *key)
{
	struct cbor_pair *pairs = cbor_map_handle(map);

	for (size_t i = 0; i < cbor_map_size(map); i++) {
		cbor_item_t *k = pairs[i].key;

		if (cbor_isa_string(k) && cbor_string_is_definite(k) &&
		    cbor_string_length(k) == strlen(key) &&
		    !memcmp(cbor_string_handle(k), key, strlen(key)))
			return pairs[i].value;
	}
	return NULL;
}

static bool ref_uint(cbor_item_t *v, uint64_t max, uint64_t want)
{
	return v && cbor_isa_uint(v) && cbor_get_int(v) <= max && cbor_get_int(v) == want;
}

/* The decoder said yes with @st/@up: the tree must agree on every field. */
static void ref_check(const uint8_t *p, size_t n, const struct fgw_smp_status *st,
		      const struct fgw_smp_upload_rsp *up)
{
	struct cbor_load_result res;
	cbor_item_t *root = cbor_load(p, n, &res), *v;

	if (!root) {
		if (res.error.code == CBOR_ERR_MEMERROR)
			return; /* the reference's own limit, not a disagreement */
		abort();
	}
	if (res.read != n || !cbor_isa_map(root))
		abort();
	v = ref_get(root, "rc");
	if (!!v != st->has_rc)
		abort();
	if (v &&
	    !(cbor_isa_uint(v) ? (int64_t) cbor_get_int(v) == st->rc
			       : cbor_isa_negint(v) && -1 - (int64_t) cbor_get_int(v) == st->rc))
		abort();
	v = ref_get(root, "err");
	if (!!v != st->has_err)
		abort();
	if (v && (!cbor_isa_map(v) || !ref_uint(ref_get(v, "group"), 65535, st->err_group) ||
		  !ref_uint(ref_get(v, "rc"), 65535, st->err_rc)))
		abort();
	v = ref_get(root, "rsn");
	if (v && cbor_string_is_definite(v) &&
	    strncmp((const char *) cbor_string_handle(v), st->rsn,
		    strlen(st->rsn) < cbor_string_length(v) ? strlen(st->rsn)
							    : cbor_string_length(v)))
		abort();
	v = ref_get(root, "off");
	if (!!v != up->has_off || (v && !ref_uint(v, UINT64_MAX, up->off)))
		abort();
	v = ref_get(root, "match");
	if (!!v != up->has_match || (v && (!cbor_is_bool(v) || cbor_get_bool(v) != up->match)))
		abort();
	cbor_decref(&root);
}

static void decode_all(const uint8_t *p, size_t n)
{
	struct fgw_smp_status st;
	struct fgw_smp_params pr;
	struct fgw_smp_bootloader_info bi;
	struct fgw_smp_upload_rsp ur;
	struct fgw_smp_slot_info si;
	static struct fgw_smp_img_state is;
	char *text = NULL, buf[256];

	if (fgw_smp_rsp_decode(p, n, &st, &ur) == 0) {
		(void) fgw_smp_status_format(&st, buf, sizeof(buf));
		ref_check(p, n, &st, &ur);
	}
	(void) fgw_smp_params_decode(p, n, &pr);
	(void) fgw_smp_bootloader_info_decode(p, n, &bi);
	(void) fgw_smp_slot_info_decode(p, n, &si);
	(void) fgw_smp_img_state_decode(p, n, &is);
	if (fgw_smp_echo_decode(p, n, &text) == 0)
		free(text);
	if (fgw_smp_os_info_decode(p, n, &text) == 0)
		free(text);
}

static void run(struct fgw_smp_reasm *r, const uint8_t *data, size_t size, size_t split,
		struct seen *s, bool decode)
{
	for (size_t o = 0; o < size && !s->err; o += split) {
		struct fgw_smp_hdr h;
		const uint8_t *p;
		int e;

		fgw_smp_reasm_feed(r, data + o, split < size - o ? split : size - o);
		while ((e = fgw_smp_reasm_next(r, &h, &p)) > 0) {
			if (s->n < MAX_PKTS) {
				s->len[s->n] = h.len;
				s->seq[s->n] = h.seq;
			}
			s->n++;
			if (decode)
				decode_all(p, h.len);
		}
		if (e < 0)
			s->err = e;
	}
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct fgw_smp_reasm *r;
	struct seen whole = {0}, split = {0};

	if (fgw_smp_reasm_new(4096, &r) < 0)
		return 0;
	run(r, data, size, size ? size : 1, &whole, true);
	fgw_smp_reasm_reset(r);
	run(r, data, size, 1 + size % 13, &split, false);
	/* Framing must not change what is found, up to the first error. */
	if (!whole.err && !split.err) {
		if (whole.n != split.n)
			abort();
		for (size_t i = 0; i < whole.n && i < MAX_PKTS; i++)
			if (whole.len[i] != split.len[i] || whole.seq[i] != split.seq[i])
				abort();
	}
	fgw_smp_reasm_free(r);
	/* The payload alone too: most fuzz value is in the CBOR decoders. */
	decode_all(data, size);
	return 0;
}
