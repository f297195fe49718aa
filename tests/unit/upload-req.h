/*
 * An upload request as a device reads it, decoded by the tests' own strict CBOR reader (not
 * lib/smp's, and not libcbor's): definite lengths only, every head at its shortest form, as
 * zcbor and every other encoder write them. The check the codec's encoder is held to.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct upload_req {
	bool has_image, has_len, has_off, has_sha, has_data, has_upgrade;
	uint32_t image;
	uint64_t len;
	uint64_t off;
	size_t sha_len;
	uint8_t sha[32];
	bool upgrade;
	const uint8_t *data; /* borrowed from the payload */
	size_t data_len;
	char order[8]; /* the keys as they came: 'i'mage 'l'en 'o'ff 's'ha 'u'pgrade 'd'ata */
};

/* 0, or -1 on anything malformed, non-minimal, unknown or repeated. */
int upload_req_decode(const uint8_t *payload, size_t len, struct upload_req *ret);
