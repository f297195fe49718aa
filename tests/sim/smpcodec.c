/*
 * SMP framing and request decoding for the simulated devices: pure functions (bytes in, structs
 * out), fuzzed by fuzz-sim-smp. The handlers that act on a device are in smp.c.
 */
#include <cbor.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "sim.h"

#define MGMT_ERR_EINVAL 3

int smp_hdr_decode(const uint8_t *buf, size_t len, struct smp_hdr *ret)
{
	if (len < SMP_HDR_LEN)
		return -EBADMSG;
	ret->op = buf[0] & 0x07;
	ret->ver = (buf[0] >> 3) & 0x03;
	ret->flags = buf[1];
	ret->len = (uint16_t) (buf[2] << 8 | buf[3]);
	ret->group = (uint16_t) (buf[4] << 8 | buf[5]);
	ret->seq = buf[6];
	ret->id = buf[7];
	return 0;
}

void smp_hdr_encode(const struct smp_hdr *h, uint8_t out[SMP_HDR_LEN])
{
	out[0] = (uint8_t) ((h->ver & 3) << 3 | (h->op & 7));
	out[1] = h->flags;
	out[2] = h->len >> 8;
	out[3] = h->len & 0xff;
	out[4] = h->group >> 8;
	out[5] = h->group & 0xff;
	out[6] = h->seq;
	out[7] = h->id;
}

/*
 * libcbor preallocates definite arrays and maps from their declared size, so nine bytes claiming
 * 2^32 entries would make the device allocate gigabytes (zcbor on a real device allocates
 * nothing). Before decoding, walk the token stream once and refuse any declared count or length
 * that the remaining bytes cannot hold (every element takes at least one byte).
 */
static bool cbor_counts_sane(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t major = p[i] >> 5, info = p[i] & 0x1f;
		uint64_t arg = info;
		size_t w = 0;

		i++;
		if (info == 24)
			w = 1;
		else if (info == 25)
			w = 2;
		else if (info == 26)
			w = 4;
		else if (info == 27)
			w = 8;
		else if (info > 27)
			continue; /* indefinite start, break, or reserved: no count to check */
		if (w > n - i)
			return false;
		if (w) {
			arg = 0;
			for (size_t k = 0; k < w; k++)
				arg = arg << 8 | p[i + k];
			i += w;
		}
		if (major == 2 || major == 3) {
			if (arg > n - i)
				return false;
			i += (size_t) arg; /* string content is not made of tokens */
		} else if (major == 4 && arg > n - i) {
			return false;
		} else if (major == 5 && arg > (n - i) / 2) {
			return false;
		}
	}
	return true;
}

int smp_req_decode(const uint8_t *buf, size_t len, struct smp_req *r)
{
	struct cbor_load_result res;
	size_t n;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = smp_hdr_decode(buf, len, &r->hdr);
	if (rc < 0)
		return rc;
	if ((size_t) r->hdr.len != len - SMP_HDR_LEN)
		return -EBADMSG;
	if (r->hdr.len == 0)
		return 0; /* Zephyr treats an absent payload like an empty map */
	if (!cbor_counts_sane(buf + SMP_HDR_LEN, r->hdr.len)) {
		r->err = MGMT_ERR_EINVAL;
		return 0;
	}
	r->root = cbor_load(buf + SMP_HDR_LEN, r->hdr.len, &res);
	if (!r->root || res.error.code != CBOR_ERR_NONE) {
		r->err = MGMT_ERR_EINVAL;
		return 0;
	}
	if (!cbor_isa_map(r->root)) {
		r->err = MGMT_ERR_EINVAL;
		return 0;
	}
	n = cbor_map_size(r->root);
	struct cbor_pair *pairs = cbor_map_handle(r->root);
	for (size_t i = 0; i < n; i++) {
		cbor_item_t *k = pairs[i].key;
		size_t klen;

		/* Zephyr matches text keys only; anything else is skipped like an unknown key. */
		if (!cbor_isa_string(k) || !cbor_string_is_definite(k))
			continue;
		klen = cbor_string_length(k);
		if (klen == 0 || klen >= sizeof(r->keys[0].name))
			continue;
		char name[sizeof(r->keys[0].name)];
		memcpy(name, cbor_string_handle(k), klen);
		name[klen] = '\0';
		if (memchr(name, '\0', klen))
			continue;
		for (size_t j = 0; j < r->n_keys; j++) {
			if (!strcmp(r->keys[j].name, name)) {
				r->err = MGMT_ERR_EINVAL; /* zcbor bulk decode rejects duplicates */
				return 0;
			}
		}
		if (r->n_keys == SMP_MAX_KEYS)
			continue;
		strcpy(r->keys[r->n_keys].name, name);
		r->keys[r->n_keys].value = pairs[i].value;
		r->n_keys++;
	}
	return 0;
}

void smp_req_done(struct smp_req *r)
{
	if (r->root)
		cbor_decref(&r->root);
	r->root = NULL;
}
