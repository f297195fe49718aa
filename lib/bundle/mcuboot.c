/*
 * MCUboot images (protocol-notes §5): a hand-written parser, since no library reads them, so
 * every offset read here is checked against the end of its area first, in 64-bit arithmetic.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bundle-private.h"
#include "util.h"

#define IMAGE_MAGIC 0x96f3b83du
#define IMAGE_MAGIC_V1 0x96f3b83cu
#define TLV_INFO_MAGIC 0x6907u
#define TLV_PROT_INFO_MAGIC 0x6908u
#define FLAG_ENCRYPTED_AES128 0x04u
#define FLAG_ENCRYPTED_AES256 0x08u
#define DEFAULT_HDR_SIZE 0x200u

static const char *const sig_status_names[_FGW_SIG_STATUS_MAX] = {
    [FGW_SIG_STATUS_NOT_CHECKED] = "not-checked", [FGW_SIG_STATUS_VALID] = "valid",
    [FGW_SIG_STATUS_INVALID] = "invalid",	  [FGW_SIG_STATUS_MISSING] = "missing",
    [FGW_SIG_STATUS_OTHER_KEY] = "other-key",
};

FGW_EXPORT const char *fgw_sig_status_to_string(enum fgw_sig_status s)
{
	return FGW_ENUM_NAME(sig_status_names, s);
}

static bool is_sig_type(unsigned t)
{
	return t == FGW_MCUBOOT_TLV_RSA2048_PSS || t == FGW_MCUBOOT_TLV_ECDSA_SIG ||
	       t == FGW_MCUBOOT_TLV_RSA3072_PSS || t == FGW_MCUBOOT_TLV_ED25519 ||
	       t == 0x21 /* ECDSA224, no longer supported but still a signature */;
}

#define BAD_TLV(detail) reject(why, -EBADMSG, FGW_REJECT_BAD_TLV, -1, detail)

/*
 * Walks the TLV entries of one area [start + 4, end): the caller has checked the info header
 * and that end lies inside the buffer.
 */
static int walk_area(const uint8_t *b, uint64_t start, uint64_t end, bool prot,
		     struct fgw_mcuboot_image *img, bool *seen_hash, struct fgw_reject *why)
{
	uint64_t pos = start + 4;

	while (pos < end) {
		unsigned type, len;

		if (end - pos < 4)
			return BAD_TLV("TLV entry header runs past the end of its area");
		type = get_le16(b + pos);
		len = get_le16(b + pos + 2);
		if (len > end - pos - 4)
			return BAD_TLV("TLV length runs past the end of its area");
		switch (type) {
		case FGW_MCUBOOT_TLV_SHA256:
			if (prot)
				return BAD_TLV("SHA256 TLV inside the protected (hashed) area");
			if (*seen_hash)
				return BAD_TLV("more than one SHA256 TLV");
			if (len != 32)
				return BAD_TLV("SHA256 TLV is not 32 bytes");
			memcpy(img->hash, b + pos + 4, 32);
			*seen_hash = true;
			break;
		case FGW_MCUBOOT_TLV_KEYHASH:
			if (len != 32)
				return BAD_TLV("KEYHASH TLV is not 32 bytes");
			if (!img->has_keyhash) {
				memcpy(img->keyhash, b + pos + 4, 32);
				img->has_keyhash = true;
			}
			break;
		case FGW_MCUBOOT_TLV_SEC_CNT:
			if (len != 4)
				return BAD_TLV("SEC_CNT TLV is not 4 bytes");
			/* MCUboot honours the security counter only where it is hashed. */
			if (prot) {
				img->sec_cnt = get_le32(b + pos + 4);
				img->has_sec_cnt = true;
			}
			break;
		default:
			if (is_sig_type(type)) {
				if (prot)
					return BAD_TLV("signature TLV inside the protected area");
				if (len == 0)
					return BAD_TLV("empty signature TLV");
				if (!img->sig_type)
					img->sig_type = (int) type;
			}
			break;
		}
		img->n_tlvs++;
		pos += 4 + (uint64_t) len;
	}
	return 0;
}

FGW_EXPORT int fgw_mcuboot_parse(const void *buf, size_t len, struct fgw_mcuboot_image *ret,
				 struct fgw_reject *why)
{
	const uint8_t *b = buf;
	struct fgw_mcuboot_image img = {0};
	uint64_t prot_off, unprot_off, unprot_end;
	uint32_t magic;
	bool seen_hash = false;
	int r;

	reject_clear(why);
	if (len > FGW_MCUBOOT_MAX_IMAGE)
		return reject(why, -EFBIG, FGW_REJECT_BAD_HEADER, -1, "image larger than 16 MiB");
	if (len < FGW_MCUBOOT_HEADER_MIN)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_HEADER, -1,
			      "shorter than the 32-byte MCUboot header");
	magic = get_le32(b);
	if (magic == IMAGE_MAGIC_V1)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_MAGIC, -1,
			      "legacy v1 image magic, not supported by MCUboot");
	if (magic != IMAGE_MAGIC)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_MAGIC, -1,
			      "not an MCUboot image (header magic)");
	img.load_addr = get_le32(b + 4);
	img.hdr_size = get_le16(b + 8);
	img.protect_tlv_size = get_le16(b + 10);
	img.img_size = get_le32(b + 12);
	img.flags = get_le32(b + 16);
	img.version.major = b[20];
	img.version.minor = b[21];
	img.version.revision = get_le16(b + 22);
	img.version.build = get_le32(b + 24);

	if (img.hdr_size < FGW_MCUBOOT_HEADER_MIN)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_HEADER, -1,
			      "header size smaller than 32 bytes");
	if (img.flags & (FLAG_ENCRYPTED_AES128 | FLAG_ENCRYPTED_AES256))
		return reject(why, -EBADMSG, FGW_REJECT_BAD_HEADER, -1,
			      "encrypted image: its hash cannot be checked without the key");
	prot_off = (uint64_t) img.hdr_size + img.img_size;
	if (prot_off > len)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_HEADER, -1,
			      "header and body sizes run past the end of the file");

	if (img.protect_tlv_size > 0) {
		if (img.protect_tlv_size < 4)
			return BAD_TLV("protected TLV size smaller than its info header");
		if (prot_off + img.protect_tlv_size > len)
			return BAD_TLV("protected TLV area runs past the end of the file");
		if (get_le16(b + prot_off) != TLV_PROT_INFO_MAGIC)
			return BAD_TLV("protected TLV info magic is wrong");
		if (get_le16(b + prot_off + 2) != img.protect_tlv_size)
			return BAD_TLV("protected TLV length disagrees with the header");
		r = walk_area(b, prot_off, prot_off + img.protect_tlv_size, true, &img, &seen_hash,
			      why);
		if (r < 0)
			return r;
	}
	unprot_off = prot_off + img.protect_tlv_size;
	if (unprot_off + 4 > len)
		return BAD_TLV("no TLV area after the image body");
	if (get_le16(b + unprot_off) != TLV_INFO_MAGIC)
		return BAD_TLV("TLV info magic is wrong");
	unprot_end = unprot_off + get_le16(b + unprot_off + 2);
	if (unprot_end < unprot_off + 4)
		return BAD_TLV("TLV area length smaller than its info header");
	if (unprot_end > len)
		return BAD_TLV("TLV area length runs past the end of the file");
	r = walk_area(b, unprot_off, unprot_end, false, &img, &seen_hash, why);
	if (r < 0)
		return r;
	if (!seen_hash)
		return BAD_TLV("no SHA256 TLV");
	img.hashed_size = (uint32_t) unprot_off;
	img.tlv_end = (uint32_t) unprot_end;
	*ret = img;
	return 0;
}

FGW_EXPORT int fgw_mcuboot_verify(const void *buf, size_t len, const struct fgw_mcuboot_image *img,
				  const struct fgw_key *key, enum fgw_sig_status *ret_sig,
				  struct fgw_reject *why)
{
	const uint8_t *b = buf, *keyhash = NULL;
	uint8_t digest[32], pubhash[32];
	bool any_sig = false, invalid = false;
	uint64_t pos, end;
	int want, r;

	reject_clear(why);
	if (img->tlv_end > len || img->hashed_size > img->tlv_end)
		return reject(why, -EINVAL, FGW_REJECT_BAD_HEADER, -1, "image changed since parse");
	r = sha256(b, img->hashed_size, digest);
	if (r < 0)
		return r;
	if (memcmp(digest, img->hash, 32) != 0)
		return reject(why, -EBADMSG, FGW_REJECT_HASH_MISMATCH, -1,
			      "SHA256 TLV does not match the header, body and protected TLVs");
	if (!key) {
		*ret_sig = FGW_SIG_STATUS_NOT_CHECKED;
		return 0;
	}

	/*
	 * A KEYHASH (or PUBKEY) names the key of the signature that follows it; an unnamed
	 * signature is tried with the key. Any one valid signature with our key is enough.
	 */
	want = key_sig_tlv_type(key);
	pos = (uint64_t) img->hashed_size + 4;
	end = img->tlv_end;
	while (pos + 4 <= end) {
		unsigned type = get_le16(b + pos), tlen = get_le16(b + pos + 2);
		const uint8_t *v = b + pos + 4;

		if (tlen > end - pos - 4)
			break; /* parse() refused this already */
		if (type == FGW_MCUBOOT_TLV_KEYHASH) {
			keyhash = v;
		} else if (type == FGW_MCUBOOT_TLV_PUBKEY) {
			if (sha256(v, tlen, pubhash) < 0)
				return -EIO;
			keyhash = pubhash;
		} else if (is_sig_type(type)) {
			any_sig = true;
			if ((int) type == want &&
			    (!keyhash || memcmp(keyhash, fgw_key_hash(key), 32) == 0)) {
				r = key_verify_digest(key, (int) type, digest, v, tlen);
				if (r == 0) {
					*ret_sig = FGW_SIG_STATUS_VALID;
					return 0;
				}
				if (r == -EIO)
					return r;
				invalid = true;
			}
			keyhash = NULL;
		}
		pos += 4 + (uint64_t) tlen;
	}
	if (invalid) {
		*ret_sig = FGW_SIG_STATUS_INVALID;
		return reject(why, -EKEYREJECTED, FGW_REJECT_BAD_IMAGE_SIGNATURE, -1,
			      "image signature does not verify with the MCUboot key");
	}
	*ret_sig = any_sig ? FGW_SIG_STATUS_OTHER_KEY : FGW_SIG_STATUS_MISSING;
	return reject(why, -ENOKEY, FGW_REJECT_BAD_IMAGE_SIGNATURE, -1,
		      any_sig ? "image is signed, but not with the configured MCUboot key"
			      : "image carries no signature TLV");
}

static uint8_t *put_tlv(uint8_t *p, uint16_t type, const void *v, uint16_t len)
{
	put_le16(p, type);
	put_le16(p + 2, len);
	memcpy(p + 4, v, len);
	return p + 4 + len;
}

FGW_EXPORT int fgw_mcuboot_write(const void *payload, size_t len,
				 const struct fgw_mcuboot_write_opts *o, uint8_t **ret_buf,
				 size_t *ret_len)
{
	_cleanup_free_ uint8_t *sig = NULL;
	uint32_t hdr_size = o->hdr_size ? o->hdr_size : DEFAULT_HDR_SIZE;
	uint32_t prot_size = o->has_sec_cnt ? 4 + 8 : 0;
	size_t sig_len = 0, unprot_size, total;
	uint8_t digest[32], cnt[4], *b, *p;
	int r;

	if (hdr_size < FGW_MCUBOOT_HEADER_MIN || hdr_size > UINT16_MAX)
		return -EINVAL;
	if (o->flags & (FLAG_ENCRYPTED_AES128 | FLAG_ENCRYPTED_AES256))
		return -EINVAL;
	if (o->key && !fgw_key_has_private(o->key))
		return -EINVAL;
	if (len > FGW_MCUBOOT_MAX_IMAGE - hdr_size - 4096)
		return -EFBIG;
	/* Signature sizes are known up front: ECDSA DER at most 72, RSA the modulus size. */
	unprot_size = 4 + 4 + 32 + (o->key ? 4 + 32 + 4 + 512 : 0);
	total = hdr_size + len + prot_size + unprot_size;
	b = calloc(1, total);
	if (!b)
		return -ENOMEM;
	put_le32(b, IMAGE_MAGIC);
	put_le32(b + 4, o->load_addr);
	put_le16(b + 8, (uint16_t) hdr_size);
	put_le16(b + 10, (uint16_t) prot_size);
	put_le32(b + 12, (uint32_t) len);
	put_le32(b + 16, o->flags);
	b[20] = o->version.major;
	b[21] = o->version.minor;
	put_le16(b + 22, o->version.revision);
	put_le32(b + 24, o->version.build);
	if (len > 0)
		memcpy(b + hdr_size, payload, len);
	p = b + hdr_size + len;
	if (o->has_sec_cnt) {
		put_le16(p, TLV_PROT_INFO_MAGIC);
		put_le16(p + 2, (uint16_t) prot_size);
		put_le32(cnt, o->sec_cnt);
		p = put_tlv(p + 4, FGW_MCUBOOT_TLV_SEC_CNT, cnt, 4);
	}
	r = sha256(b, (size_t) (p - b), digest);
	if (r < 0)
		goto fail;
	if (o->key) {
		r = key_sign_digest(o->key, digest, &sig, &sig_len);
		if (r < 0)
			goto fail;
		if (sig_len > 512) {
			r = -EIO;
			goto fail;
		}
	}
	{
		uint8_t *info = p;
		p = put_tlv(p + 4, FGW_MCUBOOT_TLV_SHA256, digest, 32);
		if (o->key) {
			p = put_tlv(p, FGW_MCUBOOT_TLV_KEYHASH, fgw_key_hash(o->key), 32);
			p = put_tlv(p, (uint16_t) key_sig_tlv_type(o->key), sig,
				    (uint16_t) sig_len);
		}
		put_le16(info, TLV_INFO_MAGIC);
		put_le16(info + 2, (uint16_t) (p - info));
	}
	*ret_buf = b;
	*ret_len = (size_t) (p - b);
	return 0;
fail:
	free(b);
	return r;
}
