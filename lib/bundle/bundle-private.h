/* Shared by the files of lib/bundle only. */
#pragma once

#include <openssl/evp.h>

#include "bundle.h"

/* Sets *@why (if not NULL) and returns @err, for `return reject(...)`. */
static inline int reject(struct fgw_reject *why, int err, enum fgw_reject_reason reason, int image,
			 const char *detail)
{
	if (why) {
		why->reason = reason;
		why->detail = detail;
		why->image = image;
	}
	return err;
}

static inline void reject_clear(struct fgw_reject *why)
{
	if (why)
		*why = (struct fgw_reject){.reason = FGW_REJECT_NONE, .detail = NULL, .image = -1};
}

static inline uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t) (p[0] | p[1] << 8);
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
	       (uint32_t) p[3] << 24;
}

static inline void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

/* The OpenSSL key inside a struct fgw_key (borrowed). */
EVP_PKEY *key_pkey(const struct fgw_key *k);
/* Signs a 32-byte digest the way MCUboot verifies it for the key's type. */
int key_sign_digest(const struct fgw_key *k, const uint8_t digest[32], uint8_t **ret_sig,
		    size_t *ret_len);
/* Verifies, as MCUboot does; 0 valid, -EKEYREJECTED invalid, -EINVAL sig of wrong shape. */
int key_verify_digest(const struct fgw_key *k, int tlv_type, const uint8_t digest[32],
		      const uint8_t *sig, size_t sig_len);
/* The MCUboot signature TLV type for the key. */
int key_sig_tlv_type(const struct fgw_key *k);

int sha256(const void *data, size_t len, uint8_t out[32]);

/* Base64 (standard alphabet, padded). *@ret is malloc()ed and NUL-terminated. */
int base64_encode(const uint8_t *in, size_t len, char **ret);
/* Decodes exactly; -EINVAL on bad characters, padding or length. */
int base64_decode(const char *in, size_t len, uint8_t *out, size_t out_size, size_t *ret_len);
