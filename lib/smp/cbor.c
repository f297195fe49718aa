/* libcbor helpers: build request maps, read response maps of either length form. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smp-private.h"

cbor_item_t *smp_cbor_uint(uint64_t v)
{
	/* libcbor writes an item at the width it was built with: pick the smallest, as zcbor
	 * and every other encoder do, so that packet sizes match fgw_smp_upload_overhead(). */
	if (v <= UINT8_MAX)
		return cbor_build_uint8((uint8_t) v);
	if (v <= UINT16_MAX)
		return cbor_build_uint16((uint16_t) v);
	if (v <= UINT32_MAX)
		return cbor_build_uint32((uint32_t) v);
	return cbor_build_uint64(v);
}

bool smp_cbor_put(cbor_item_t *map, const char *key, cbor_item_t *value)
{
	cbor_item_t *k;
	bool ok;

	if (!value)
		return false;
	k = cbor_build_string(key);
	if (!k) {
		cbor_decref(&value);
		return false;
	}
	ok = cbor_map_add(map, (struct cbor_pair){.key = k, .value = value});
	cbor_decref(&k);
	cbor_decref(&value);
	return ok;
}

int smp_req_finish(cbor_item_t *map, uint8_t op, uint16_t group, uint8_t id,
		   struct fgw_smp_req *ret)
{
	unsigned char *buf = NULL;
	size_t size = 0, n;

	n = cbor_serialize_alloc(map, &buf, &size);
	if (n == 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = (struct fgw_smp_req){.op = op, .group = group, .id = id, .payload = buf, .len = n};
	return 0;
}

struct precheck {
	size_t left; /* bytes from the current token on (its head included: a bound is enough) */
	bool bad;
};

static void precheck_array(void *ctx, size_t n)
{
	struct precheck *p = ctx;

	/* Every element takes at least one byte. */
	if (n > p->left)
		p->bad = true;
}

static void precheck_map(void *ctx, size_t n)
{
	struct precheck *p = ctx;

	if (n > p->left / 2)
		p->bad = true;
}

/*
 * libcbor 0.8's cbor_load() allocates a definite array or map for the count its head
 * declares before it reads a single element: five bytes from a device could ask for
 * gigabytes. So walk the tokens first and refuse counts the payload cannot hold.
 */
static int precheck(const uint8_t *payload, size_t len)
{
	struct cbor_callbacks cb = cbor_empty_callbacks;
	struct precheck p = {0};
	size_t off = 0;

	cb.array_start = precheck_array;
	cb.map_start = precheck_map;
	while (off < len) {
		struct cbor_decoder_result r;

		p.left = len - off;
		r = cbor_stream_decode(payload + off, len - off, &cb, &p);
		if (r.status != CBOR_DECODER_FINISHED || r.read == 0 || p.bad)
			return -EBADMSG;
		off += r.read;
	}
	return 0;
}

int smp_cbor_load_map(const uint8_t *payload, size_t len, cbor_item_t **ret)
{
	struct cbor_load_result res;
	cbor_item_t *root;
	int r;

	if (!payload || len == 0)
		return -EBADMSG;
	r = precheck(payload, len);
	if (r < 0)
		return r;
	root = cbor_load(payload, len, &res);
	if (!root)
		return res.error.code == CBOR_ERR_MEMERROR ? -ENOMEM : -EBADMSG;
	/* The payload is exactly one map: trailing bytes mean a framing error upstream. */
	if (res.error.code != CBOR_ERR_NONE || res.read != len || !cbor_isa_map(root)) {
		cbor_decref(&root);
		return -EBADMSG;
	}
	*ret = root;
	return 0;
}

static bool text_equals(const cbor_item_t *k, const char *key)
{
	size_t n = strlen(key);

	if (!cbor_isa_string(k) || !cbor_string_is_definite(k))
		return false;
	return cbor_string_length(k) == n && memcmp(cbor_string_handle(k), key, n) == 0;
}

int smp_cbor_load_field(const uint8_t *payload, size_t len, const char *key, cbor_item_t **ret_root,
			cbor_item_t **ret_value)
{
	cbor_item_t *root, *v;
	int r;

	r = smp_cbor_load_map(payload, len, &root);
	if (r < 0)
		return r;
	v = smp_cbor_get(root, key);
	if (!v) {
		cbor_decref(&root);
		return -ENODATA;
	}
	*ret_root = root;
	*ret_value = v;
	return 0;
}

int smp_cbor_load_array(const uint8_t *payload, size_t len, const char *key, size_t max,
			cbor_item_t **ret_root, cbor_item_t **ret_array)
{
	cbor_item_t *root, *v;
	int r;

	r = smp_cbor_load_field(payload, len, key, &root, &v);
	if (r < 0)
		return r;
	r = !cbor_isa_array(v) ? -EBADMSG : cbor_array_size(v) > max ? -E2BIG : 0;
	if (r < 0) {
		cbor_decref(&root);
		return r;
	}
	*ret_root = root;
	*ret_array = v;
	return 0;
}

cbor_item_t *smp_cbor_get(const cbor_item_t *map, const char *key)
{
	struct cbor_pair *pairs = cbor_map_handle(map);
	size_t n = cbor_map_size(map);

	for (size_t i = 0; i < n; i++)
		if (pairs[i].key && text_equals(pairs[i].key, key))
			return pairs[i].value;
	return NULL;
}

int smp_cbor_get_uint(const cbor_item_t *v, uint64_t max, uint64_t *ret)
{
	uint64_t x;

	if (!cbor_isa_uint(v))
		return -EBADMSG;
	x = cbor_get_int(v);
	if (x > max)
		return -EBADMSG;
	*ret = x;
	return 0;
}

int smp_cbor_get_int(const cbor_item_t *v, int64_t *ret)
{
	uint64_t x;

	if (cbor_isa_uint(v)) {
		x = cbor_get_int(v);
		if (x > INT64_MAX)
			return -EBADMSG;
		*ret = (int64_t) x;
		return 0;
	}
	if (cbor_isa_negint(v)) {
		x = cbor_get_int(v); /* the value is -1 - x */
		if (x > INT64_MAX)
			return -EBADMSG;
		*ret = -1 - (int64_t) x;
		return 0;
	}
	return -EBADMSG;
}

int smp_cbor_get_bool(const cbor_item_t *v, bool *ret)
{
	if (!cbor_is_bool(v))
		return -EBADMSG;
	*ret = cbor_get_bool(v);
	return 0;
}

/* Walks the pieces of a definite or chunked (indefinite) string of either kind. */
static int string_pieces(const cbor_item_t *v, bool text, size_t *ret_len, uint8_t *out,
			 size_t out_size)
{
	size_t total = 0;

	if (text ? !cbor_isa_string(v) : !cbor_isa_bytestring(v))
		return -EBADMSG;
	if (text ? cbor_string_is_definite(v) : cbor_bytestring_is_definite(v)) {
		total = text ? cbor_string_length(v) : cbor_bytestring_length(v);
		if (out) {
			if (total > out_size)
				return -E2BIG;
			if (total)
				memcpy(out,
				       text ? cbor_string_handle(v) : cbor_bytestring_handle(v),
				       total);
		}
		*ret_len = total;
		return 0;
	}
	{
		cbor_item_t **chunks =
		    text ? cbor_string_chunks_handle(v) : cbor_bytestring_chunks_handle(v);
		size_t n = text ? cbor_string_chunk_count(v) : cbor_bytestring_chunk_count(v);

		for (size_t i = 0; i < n; i++) {
			size_t l;
			int r = string_pieces(chunks[i], text, &l, out ? out + total : NULL,
					      out ? out_size - total : 0);
			if (r < 0)
				return r;
			total += l;
		}
	}
	*ret_len = total;
	return 0;
}

int smp_cbor_get_text(const cbor_item_t *v, char *buf, size_t size)
{
	size_t n;
	int r;

	if (size == 0)
		return -E2BIG;
	r = string_pieces(v, true, &n, (uint8_t *) buf, size - 1);
	if (r < 0)
		return r;
	buf[n] = '\0';
	return 0;
}

int smp_cbor_dup_text(const cbor_item_t *v, char **ret)
{
	char *s;
	size_t n;
	int r;

	r = string_pieces(v, true, &n, NULL, 0);
	if (r < 0)
		return r;
	s = malloc(n + 1);
	if (!s)
		return -ENOMEM;
	r = string_pieces(v, true, &n, (uint8_t *) s, n);
	if (r < 0) {
		free(s);
		return r;
	}
	s[n] = '\0';
	*ret = s;
	return 0;
}

int smp_cbor_get_bytes(const cbor_item_t *v, uint8_t *buf, size_t size, size_t *ret_len)
{
	return string_pieces(v, false, ret_len, buf, size);
}
