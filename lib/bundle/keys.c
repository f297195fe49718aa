/* Keys: loading, generating and saving, and the raw sign/verify MCUboot and manifests use. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "bundle-private.h"
#include "util.h"

struct fgw_key {
	EVP_PKEY *pkey;
	enum fgw_key_type type;
	bool has_private;
	uint8_t hash[32];
	char id[48];
};

static const char *const key_type_names[_FGW_KEY_TYPE_MAX] = {
    [FGW_KEY_TYPE_ED25519] = "ed25519",
    [FGW_KEY_TYPE_ECDSA_P256] = "ecdsa-p256",
    [FGW_KEY_TYPE_RSA_2048] = "rsa-2048",
    [FGW_KEY_TYPE_RSA_3072] = "rsa-3072",
};

FGW_EXPORT const char *fgw_key_type_to_string(enum fgw_key_type t)
{
	return FGW_ENUM_NAME(key_type_names, t);
}

FGW_EXPORT enum fgw_key_type fgw_key_type_from_string(const char *s)
{
	int v = FGW_ENUM_VALUE(key_type_names, s);

	return v < 0 ? _FGW_KEY_TYPE_INVALID : (enum fgw_key_type) v;
}

int sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return -EIO;
	return 0;
}

EVP_PKEY *key_pkey(const struct fgw_key *k)
{
	return k->pkey;
}

static int classify(EVP_PKEY *pkey, enum fgw_key_type *ret)
{
	char group[64];
	size_t glen = 0;

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_ED25519:
		*ret = FGW_KEY_TYPE_ED25519;
		return 0;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
						   sizeof(group), &glen) != 1)
			return -EOPNOTSUPP;
		if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
			return -EOPNOTSUPP;
		*ret = FGW_KEY_TYPE_ECDSA_P256;
		return 0;
	case EVP_PKEY_RSA:
		switch (EVP_PKEY_get_bits(pkey)) {
		case 2048:
			*ret = FGW_KEY_TYPE_RSA_2048;
			return 0;
		case 3072:
			*ret = FGW_KEY_TYPE_RSA_3072;
			return 0;
		}
		return -EOPNOTSUPP;
	}
	return -EOPNOTSUPP;
}

/* The public key as MCUboot embeds it: PKCS#1 for RSA, SubjectPublicKeyInfo otherwise. */
static int mcuboot_pubkey_der(const struct fgw_key *k, uint8_t **ret, size_t *ret_len)
{
	unsigned char *der = NULL;
	int n;

	if (k->type == FGW_KEY_TYPE_RSA_2048 || k->type == FGW_KEY_TYPE_RSA_3072)
		n = i2d_PublicKey(k->pkey, &der);
	else
		n = i2d_PUBKEY(k->pkey, &der);
	if (n <= 0)
		return -EIO;
	*ret = der;
	*ret_len = (size_t) n;
	return 0;
}

static int key_wrap(EVP_PKEY *pkey, bool has_private, struct fgw_key **ret)
{
	struct fgw_key *k;
	uint8_t *der;
	size_t der_len;
	char hex[17];
	int r;

	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->pkey = pkey;
	k->has_private = has_private;
	r = classify(pkey, &k->type);
	if (r < 0)
		goto fail;
	r = mcuboot_pubkey_der(k, &der, &der_len);
	if (r < 0)
		goto fail;
	r = sha256(der, der_len, k->hash);
	OPENSSL_free(der);
	if (r < 0)
		goto fail;
	fgw_hex_encode(k->hash, 8, hex);
	snprintf(k->id, sizeof(k->id), "%s:%s", key_type_names[k->type], hex);
	*ret = k;
	return 0;
fail:
	free(k); /* the caller still owns @pkey */
	return r;
}

FGW_EXPORT int fgw_key_load_pem(const void *pem, size_t len, struct fgw_key **ret)
{
	EVP_PKEY *pkey = NULL;
	bool priv = true;
	BIO *bio;
	int r;

	if (len > 64 * 1024)
		return -EFBIG;
	bio = BIO_new_mem_buf(pem, (int) len);
	if (!bio)
		return -ENOMEM;
	/* Trusted keys are public: asking the private-key decoders first cost the daemon's
	 * start-up about 10 M instructions per key for nothing. */
	if (memmem(pem, len, "-----BEGIN PUBLIC KEY-----", 26) &&
	    !memmem(pem, len, "PRIVATE KEY", 11)) {
		priv = false;
		pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	} else {
		pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		if (!pkey) {
			priv = false;
			(void) BIO_reset(bio);
			pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		}
	}
	if (!pkey) {
		/* MCUboot's own key files may hold a bare PKCS#1 RSA public key. */
		OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(
		    &pkey, "PEM", "type-specific", "RSA", EVP_PKEY_PUBLIC_KEY, NULL, NULL);
		(void) BIO_reset(bio);
		if (!dctx || OSSL_DECODER_from_bio(dctx, bio) != 1) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
		OSSL_DECODER_CTX_free(dctx);
	}
	BIO_free(bio);
	ERR_clear_error(); /* failed attempts leave entries that would confuse later calls */
	if (!pkey)
		return -EBADMSG;
	r = key_wrap(pkey, priv, ret);
	if (r < 0)
		EVP_PKEY_free(pkey);
	return r;
}

FGW_EXPORT int fgw_key_load_file(const char *path, struct fgw_key **ret)
{
	char buf[16 * 1024];
	ssize_t got;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	got = fgw_read_full(fd, buf, sizeof(buf));
	close(fd);
	if (got < 0)
		r = (int) got;
	else if ((size_t) got == sizeof(buf))
		r = -EFBIG;
	else
		r = fgw_key_load_pem(buf, (size_t) got, ret);
	/* A private key may have been read, also when it is refused. */
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}

FGW_EXPORT int fgw_key_generate(enum fgw_key_type type, struct fgw_key **ret)
{
	EVP_PKEY *pkey = NULL;
	int r;

	switch (type) {
	case FGW_KEY_TYPE_ED25519:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	case FGW_KEY_TYPE_ECDSA_P256:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		break;
	case FGW_KEY_TYPE_RSA_2048:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
		break;
	case FGW_KEY_TYPE_RSA_3072:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 3072);
		break;
	case _FGW_KEY_TYPE_MAX:
	case _FGW_KEY_TYPE_INVALID:
		return -EINVAL;
	}
	if (!pkey)
		return -EIO;
	r = key_wrap(pkey, true, ret);
	if (r < 0)
		EVP_PKEY_free(pkey);
	return r;
}

static int write_pem(const char *path, int mode, bool excl, const struct fgw_key *k, bool priv)
{
	BIO *bio;
	FILE *f;
	int fd, r = 0, ok;

	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC), mode);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		r = -errno;
		close(fd);
		return r;
	}
	bio = BIO_new_fp(f, BIO_NOCLOSE);
	if (!bio) {
		fclose(f);
		return -ENOMEM;
	}
	if (priv)
		ok = PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL);
	else
		ok = PEM_write_bio_PUBKEY(bio, k->pkey);
	BIO_free(bio);
	if (ok != 1)
		r = -EIO;
	if (fflush(f) != 0 || fsync(fileno(f)) < 0)
		r = r ?: -errno;
	if (fclose(f) != 0)
		r = r ?: -errno;
	if (r < 0)
		(void) unlink(path);
	return r;
}

FGW_EXPORT int fgw_key_save(const struct fgw_key *k, const char *private_path,
			    const char *public_path)
{
	int r;

	if (private_path) {
		if (!k->has_private)
			return -EINVAL;
		r = write_pem(private_path, 0600, true, k, true);
		if (r < 0)
			return r;
	}
	if (public_path) {
		r = write_pem(public_path, 0644, false, k, false);
		if (r < 0)
			return r;
	}
	return 0;
}

FGW_EXPORT struct fgw_key *fgw_key_free(struct fgw_key *k)
{
	if (k) {
		EVP_PKEY_free(k->pkey);
		free(k);
	}
	return NULL;
}

FGW_EXPORT enum fgw_key_type fgw_key_get_type(const struct fgw_key *k)
{
	return k->type;
}

FGW_EXPORT bool fgw_key_has_private(const struct fgw_key *k)
{
	return k->has_private;
}

FGW_EXPORT const uint8_t *fgw_key_hash(const struct fgw_key *k)
{
	return k->hash;
}

FGW_EXPORT const char *fgw_key_id(const struct fgw_key *k)
{
	return k->id;
}

int key_sig_tlv_type(const struct fgw_key *k)
{
	switch (k->type) {
	case FGW_KEY_TYPE_ED25519:
		return FGW_MCUBOOT_TLV_ED25519;
	case FGW_KEY_TYPE_ECDSA_P256:
		return FGW_MCUBOOT_TLV_ECDSA_SIG;
	case FGW_KEY_TYPE_RSA_2048:
		return FGW_MCUBOOT_TLV_RSA2048_PSS;
	case FGW_KEY_TYPE_RSA_3072:
		return FGW_MCUBOOT_TLV_RSA3072_PSS;
	case _FGW_KEY_TYPE_MAX:
	case _FGW_KEY_TYPE_INVALID:
		break;
	}
	return 0;
}

/*
 * RSA-PSS as MCUboot checks it: SHA-256, MGF1-SHA-256, salt 32, over the image hash taken as
 * the message digest (pre-hashed), not over the 32 bytes hashed once more.
 */
static int pss_setup(EVP_PKEY_CTX *ctx)
{
	if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) != 1)
		return -EIO;
	return 0;
}

int key_sign_digest(const struct fgw_key *k, const uint8_t digest[32], uint8_t **ret_sig,
		    size_t *ret_len)
{
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *mctx = NULL;
	uint8_t *sig = NULL;
	size_t len = 0;
	int r = -EIO;

	if (!k->has_private)
		return -EINVAL;
	if (k->type == FGW_KEY_TYPE_ED25519) {
		/* Pure Ed25519 whose message is the digest (MCUboot image_ed25519.c). */
		mctx = EVP_MD_CTX_new();
		if (!mctx || EVP_DigestSignInit(mctx, NULL, NULL, NULL, k->pkey) != 1 ||
		    EVP_DigestSign(mctx, NULL, &len, digest, 32) != 1)
			goto out;
		sig = malloc(len);
		if (!sig || EVP_DigestSign(mctx, sig, &len, digest, 32) != 1)
			goto out;
	} else {
		pctx = EVP_PKEY_CTX_new(k->pkey, NULL);
		if (!pctx || EVP_PKEY_sign_init(pctx) != 1)
			goto out;
		if (k->type == FGW_KEY_TYPE_ECDSA_P256) {
			if (EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1)
				goto out;
		} else if (pss_setup(pctx) < 0) {
			goto out;
		}
		if (EVP_PKEY_sign(pctx, NULL, &len, digest, 32) != 1)
			goto out;
		sig = malloc(len);
		if (!sig || EVP_PKEY_sign(pctx, sig, &len, digest, 32) != 1)
			goto out;
	}
	*ret_sig = TAKE_PTR(sig);
	*ret_len = len;
	r = 0;
out:
	free(sig);
	EVP_MD_CTX_free(mctx);
	EVP_PKEY_CTX_free(pctx);
	ERR_clear_error();
	return r;
}

/* Length of a DER SEQUENCE with a short or one/two-byte long form length; 0 if not DER. */
static size_t der_seq_len(const uint8_t *sig, size_t len)
{
	size_t body, hdr;

	if (len < 2 || sig[0] != 0x30)
		return 0;
	if (sig[1] < 0x80) {
		body = sig[1];
		hdr = 2;
	} else if (sig[1] == 0x81 && len >= 3) {
		body = sig[2];
		hdr = 3;
	} else {
		return 0;
	}
	return hdr + body <= len ? hdr + body : 0;
}

int key_verify_digest(const struct fgw_key *k, int tlv_type, const uint8_t digest[32],
		      const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *mctx = NULL;
	int r = -EKEYREJECTED, ok;

	if (tlv_type != key_sig_tlv_type(k))
		return -EINVAL;
	switch (k->type) {
	case FGW_KEY_TYPE_ED25519:
		if (sig_len != 64)
			return -EKEYREJECTED;
		mctx = EVP_MD_CTX_new();
		if (!mctx || EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, k->pkey) != 1) {
			r = -EIO;
			break;
		}
		ok = EVP_DigestVerify(mctx, sig, sig_len, digest, 32);
		r = ok == 1 ? 0 : -EKEYREJECTED;
		break;
	case FGW_KEY_TYPE_ECDSA_P256:
	case FGW_KEY_TYPE_RSA_2048:
	case FGW_KEY_TYPE_RSA_3072:
		if (k->type == FGW_KEY_TYPE_ECDSA_P256) {
			/* imgtool may pad the DER signature with zeros up to a fixed length. */
			size_t der = der_seq_len(sig, sig_len);
			if (der == 0)
				return -EKEYREJECTED;
			for (size_t i = der; i < sig_len; i++)
				if (sig[i] != 0)
					return -EKEYREJECTED;
			sig_len = der;
		} else if (sig_len != (size_t) EVP_PKEY_get_size(k->pkey)) {
			return -EKEYREJECTED;
		}
		pctx = EVP_PKEY_CTX_new(k->pkey, NULL);
		if (!pctx || EVP_PKEY_verify_init(pctx) != 1) {
			r = -EIO;
			break;
		}
		if (k->type == FGW_KEY_TYPE_ECDSA_P256) {
			if (EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1) {
				r = -EIO;
				break;
			}
		} else if (pss_setup(pctx) < 0) {
			r = -EIO;
			break;
		}
		ok = EVP_PKEY_verify(pctx, sig, sig_len, digest, 32);
		r = ok == 1 ? 0 : -EKEYREJECTED;
		break;
	case _FGW_KEY_TYPE_MAX:
	case _FGW_KEY_TYPE_INVALID:
		r = -EINVAL;
		break;
	}
	EVP_MD_CTX_free(mctx);
	EVP_PKEY_CTX_free(pctx);
	ERR_clear_error();
	return r;
}

int base64_encode(const uint8_t *in, size_t len, char **ret)
{
	char *out;
	int n;

	if (len > 1024 * 1024)
		return -EFBIG;
	out = malloc(4 * ((len + 2) / 3) + 1);
	if (!out)
		return -ENOMEM;
	n = EVP_EncodeBlock((unsigned char *) out, in, (int) len);
	out[n] = '\0';
	*ret = out;
	return 0;
}

int base64_decode(const char *in, size_t len, uint8_t *out, size_t out_size, size_t *ret_len)
{
	_cleanup_free_ uint8_t *tmp = NULL;
	size_t pad = 0, n;
	int got;

	if (len == 0 || len % 4 != 0 || len > 1024 * 1024)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			     (c >= '0' && c <= '9') || c == '+' || c == '/';
		if (c == '=' && i >= len - 2) {
			pad++;
			continue;
		}
		if (!alpha || pad > 0)
			return -EINVAL;
	}
	n = len / 4 * 3 - pad;
	if (n > out_size)
		return -EINVAL;
	tmp = malloc(len / 4 * 3);
	if (!tmp)
		return -ENOMEM;
	/* EVP_DecodeBlock counts padding as zero bytes; the real length is computed above. */
	got = EVP_DecodeBlock(tmp, (const unsigned char *) in, (int) len);
	if (got < 0 || (size_t) got != len / 4 * 3)
		return -EINVAL;
	memcpy(out, tmp, n);
	*ret_len = n;
	return 0;
}
