/* Internal to lib/smp: libcbor helpers shared by the message files. */
#pragma once

#include <cbor.h>

#include "smp.h"

static inline void smp_cbor_decrefp(cbor_item_t **p)
{
	if (*p)
		cbor_decref(p);
}
#define _cleanup_cbor_ _cleanup_(smp_cbor_decrefp)

/* Builds the smallest CBOR unsigned integer for @v (libcbor serializes each width as is). */
cbor_item_t *smp_cbor_uint(uint64_t v);
/* Adds key -> value to @map, taking the value's reference also on failure. */
bool smp_cbor_put(cbor_item_t *map, const char *key, cbor_item_t *value);
/* Serializes @map as a request body into @ret. */
int smp_req_finish(cbor_item_t *map, uint8_t op, uint16_t group, uint8_t id,
		   struct fgw_smp_req *ret);

/* Loads @payload and checks it is a map. -EBADMSG otherwise. */
int smp_cbor_load_map(const uint8_t *payload, size_t len, cbor_item_t **ret);
/*
 * smp_cbor_load_map() and the value of @key in it, borrowed from *@ret_root (the caller's to
 * free): -ENODATA without @key. _array: that value is an array of at most @max elements,
 * -EBADMSG if it is no array, -E2BIG if it is longer. Nothing to free on failure.
 */
int smp_cbor_load_field(const uint8_t *payload, size_t len, const char *key, cbor_item_t **ret_root,
			cbor_item_t **ret_value);
int smp_cbor_load_array(const uint8_t *payload, size_t len, const char *key, size_t max,
			cbor_item_t **ret_root, cbor_item_t **ret_array);
/* Value for text key @key in @map, or NULL. */
cbor_item_t *smp_cbor_get(const cbor_item_t *map, const char *key);
/* Typed readers: -EBADMSG on a wrong type or range. */
int smp_cbor_get_uint(const cbor_item_t *v, uint64_t max, uint64_t *ret);
int smp_cbor_get_int(const cbor_item_t *v, int64_t *ret);
int smp_cbor_get_bool(const cbor_item_t *v, bool *ret);
/* Copies a text string (definite or chunked) into @buf of @size; -E2BIG if it does not fit. */
int smp_cbor_get_text(const cbor_item_t *v, char *buf, size_t size);
/* Text string as a new NUL-terminated string. */
int smp_cbor_dup_text(const cbor_item_t *v, char **ret);
/* Byte string (definite or chunked) length and copy. */
int smp_cbor_get_bytes(const cbor_item_t *v, uint8_t *buf, size_t size, size_t *ret_len);
