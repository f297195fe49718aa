/*
 * MCUboot image format as the simulated bootloader and img_mgmt see it: header, TLV areas,
 * SHA-256 TLV, signature TLVs (Ed25519, ECDSA P-256, RSA-2048/3072 PSS). Written from MCUboot's
 * docs/design.md and bootutil sources' documented behaviour (protocol-notes §5).
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

#define TLV_INFO_MAGIC 0x6907
#define TLV_PROT_INFO_MAGIC 0x6908
#define TLV_KEYHASH 0x01
#define TLV_SHA256 0x10
#define TLV_RSA2048_PSS 0x20
#define TLV_ECDSA_SIG 0x22
#define TLV_RSA3072_PSS 0x23
#define TLV_ED25519 0x24
#define TLV_AREA_MAX 65535u

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t) (p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
	       (uint32_t) p[3] << 24;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = pread(fd, (uint8_t *) buf + done, n - done, (off_t) (off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		done += (size_t) r;
	}
	return 0;
}

int sim_sha256_fd(int fd, uint64_t len, uint8_t out[SIM_HASH_LEN])
{
	uint8_t buf[16384];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint64_t off = 0;
	int r = 0;

	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		r = -EIO;
		goto out;
	}
	while (off < len) {
		size_t n = (size_t) FGW_MIN((uint64_t) sizeof(buf), len - off);
		r = pread_all(fd, buf, n, off);
		if (r < 0)
			goto out;
		EVP_DigestUpdate(ctx, buf, n);
		off += n;
	}
	if (EVP_DigestFinal_ex(ctx, out, NULL) != 1)
		r = -EIO;
out:
	EVP_MD_CTX_free(ctx);
	return r;
}

/* Parsed layout; everything checked for overflow against the file size. */
struct layout {
	uint32_t hdr_size, img_size, prot_size, flags;
	struct sim_version ver;
	uint64_t prot_off, tlv_off; /* protected info, unprotected info */
	uint32_t tlv_tot;
	uint8_t *tlvs; /* protected + unprotected areas, contiguous as in the file */
	size_t tlvs_len;
};

static int read_layout(int fd, struct layout *l)
{
	uint8_t h[SIM_IMAGE_HDR_LEN], info[4];
	struct stat st;
	int r;

	memset(l, 0, sizeof(*l));
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t) st.st_size < SIM_IMAGE_HDR_LEN)
		return -ENOENT;
	r = pread_all(fd, h, sizeof(h), 0);
	if (r < 0)
		return r;
	if (le32(h) != SIM_IMAGE_MAGIC)
		return -ENOENT;
	l->hdr_size = le16(h + 8);
	l->prot_size = le16(h + 10);
	l->img_size = le32(h + 12);
	l->flags = le32(h + 16);
	l->ver.major = h[20];
	l->ver.minor = h[21];
	l->ver.rev = le16(h + 22);
	l->ver.build = le32(h + 24);
	if (l->hdr_size < SIM_IMAGE_HDR_LEN)
		return -EBADMSG;
	l->prot_off = (uint64_t) l->hdr_size + l->img_size;
	l->tlv_off = l->prot_off + l->prot_size;
	if (l->tlv_off + 4 > (uint64_t) st.st_size)
		return -EBADMSG;
	if (l->prot_size) {
		r = pread_all(fd, info, 4, l->prot_off);
		if (r < 0)
			return r;
		if (le16(info) != TLV_PROT_INFO_MAGIC || le16(info + 2) != l->prot_size ||
		    l->prot_size < 4)
			return -EBADMSG;
	}
	r = pread_all(fd, info, 4, l->tlv_off);
	if (r < 0)
		return r;
	if (le16(info) != TLV_INFO_MAGIC)
		return -EBADMSG;
	l->tlv_tot = le16(info + 2);
	if (l->tlv_tot < 4 || l->tlv_off + l->tlv_tot > (uint64_t) st.st_size)
		return -EBADMSG;
	l->tlvs_len = l->prot_size + l->tlv_tot;
	l->tlvs = malloc(l->tlvs_len);
	if (!l->tlvs)
		return -ENOMEM;
	r = pread_all(fd, l->tlvs, l->tlvs_len, l->prot_off);
	if (r < 0) {
		free(l->tlvs);
		l->tlvs = NULL;
		return r;
	}
	return 0;
}

/* Walks the TLVs of one area [start, end) of l->tlvs (after its info header). */
struct tlv_iter {
	const uint8_t *p, *end;
};

static int tlv_next(struct tlv_iter *it, uint16_t *type, const uint8_t **val, uint16_t *len)
{
	if (it->p == it->end)
		return 0;
	if (it->end - it->p < 4)
		return -EBADMSG;
	*type = le16(it->p);
	*len = le16(it->p + 2);
	if ((size_t) (it->end - it->p - 4) < *len)
		return -EBADMSG;
	*val = it->p + 4;
	it->p += 4 + *len;
	return 1;
}

static void tlv_areas(const struct layout *l, struct tlv_iter it[2])
{
	it[0].p = l->tlvs + (l->prot_size ? 4 : 0);
	it[0].end = l->tlvs + l->prot_size;
	it[1].p = l->tlvs + l->prot_size + 4;
	it[1].end = l->tlvs + l->tlvs_len;
}

static int find_sha(const struct layout *l, uint8_t out[SIM_HASH_LEN])
{
	struct tlv_iter it[2];
	int found = 0;

	tlv_areas(l, it);
	for (int a = 0; a < 2; a++) {
		uint16_t t, n;
		const uint8_t *v;
		int r;

		while ((r = tlv_next(&it[a], &t, &v, &n)) > 0) {
			if (t != TLV_SHA256)
				continue;
			if (n != SIM_HASH_LEN || found)
				return -EBADMSG; /* img_mgmt: wrong size or multiple hashes */
			memcpy(out, v, SIM_HASH_LEN);
			found = 1;
		}
		if (r < 0)
			return r;
	}
	return found ? 0 : -ENOENT;
}

int sim_img_read_info(int fd, struct sim_img_info *ret)
{
	struct layout l;
	struct sim_img_info info = {};
	int r;

	r = read_layout(fd, &l);
	if (r < 0)
		return r;
	r = find_sha(&l, info.hash);
	free(l.tlvs);
	if (r < 0)
		return r == -ENOENT ? -EBADMSG : r;
	info.hdr_size = l.hdr_size;
	info.img_size = l.img_size;
	info.prot_size = l.prot_size;
	info.flags = l.flags;
	info.ver = l.ver;
	info.total_len = l.tlv_off + l.tlv_tot;
	*ret = info;
	return 0;
}

static int pubkey_der(EVP_PKEY *key, uint8_t **der, int *len)
{
	/* MCUboot embeds RSA keys as PKCS#1 RSAPublicKey, EC and Ed25519 keys as
	 * SubjectPublicKeyInfo; KEYHASH is the SHA-256 of those bytes. */
	*der = NULL;
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA)
		*len = i2d_PublicKey(key, der);
	else
		*len = i2d_PUBKEY(key, der);
	return *len > 0 ? 0 : -EINVAL;
}

static int key_hash(EVP_PKEY *key, uint8_t out[SIM_HASH_LEN])
{
	uint8_t *der;
	int n, r;

	r = pubkey_der(key, &der, &n);
	if (r < 0)
		return r;
	r = EVP_Digest(der, (size_t) n, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
	OPENSSL_free(der);
	return r;
}

static bool sig_type_fits(EVP_PKEY *key, uint16_t t)
{
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_ED25519:
		return t == TLV_ED25519;
	case EVP_PKEY_EC:
		return t == TLV_ECDSA_SIG;
	case EVP_PKEY_RSA:
		return (t == TLV_RSA2048_PSS && EVP_PKEY_get_bits(key) == 2048) ||
		       (t == TLV_RSA3072_PSS && EVP_PKEY_get_bits(key) == 3072);
	default:
		return false;
	}
}

static bool verify_sig(EVP_PKEY *key, uint16_t t, const uint8_t *sig, size_t sig_len,
		       const uint8_t hash[SIM_HASH_LEN])
{
	bool ok = false;

	if (t == TLV_ED25519) {
		/* Pure Ed25519 whose message is the 32-byte image hash. */
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1)
			ok = EVP_DigestVerify(ctx, sig, sig_len, hash, SIM_HASH_LEN) == 1;
		EVP_MD_CTX_free(ctx);
		return ok;
	}

	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(key, NULL);
	if (!pctx || EVP_PKEY_verify_init(pctx) != 1)
		goto out;
	if (EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1)
		goto out;
	if (t == TLV_ECDSA_SIG) {
		/* imgtool may pad the DER signature with zeros: use the DER length. */
		if (sig_len >= 2 && sig[0] == 0x30 && sig[1] < 0x80 &&
		    (size_t) sig[1] + 2 <= sig_len)
			sig_len = (size_t) sig[1] + 2;
	} else {
		if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1)
			goto out;
	}
	/* The image hash is already the digest: verify it pre-hashed. */
	ok = EVP_PKEY_verify(pctx, sig, sig_len, hash, SIM_HASH_LEN) == 1;
out:
	EVP_PKEY_CTX_free(pctx);
	return ok;
}

int sim_img_validate(int fd, EVP_PKEY *key, const char **why)
{
	struct layout l;
	uint8_t tlv_hash[SIM_HASH_LEN], calc[SIM_HASH_LEN], khash[SIM_HASH_LEN];
	struct tlv_iter it[2];
	bool sig_ok = false;
	int r;

	*why = NULL;
	r = read_layout(fd, &l);
	if (r == -ENOENT) {
		*why = "bad magic";
		return -EBADMSG;
	}
	if (r < 0) {
		*why = "bad TLV layout";
		return -EBADMSG;
	}
	r = find_sha(&l, tlv_hash);
	if (r < 0) {
		*why = "no valid SHA256 TLV";
		goto bad;
	}
	r = sim_sha256_fd(fd, l.tlv_off, calc);
	if (r < 0 || memcmp(calc, tlv_hash, SIM_HASH_LEN) != 0) {
		*why = "hash mismatch";
		goto bad;
	}
	if (key) {
		bool keyhash_ok = true; /* no KEYHASH TLV: the only key is tried */
		uint16_t t, n;
		const uint8_t *v;

		if (key_hash(key, khash) < 0) {
			*why = "key";
			goto bad;
		}
		tlv_areas(&l, it);
		for (int a = 0; a < 2 && !sig_ok; a++) {
			while (!sig_ok && (r = tlv_next(&it[a], &t, &v, &n)) > 0) {
				if (t == TLV_KEYHASH)
					keyhash_ok = n == SIM_HASH_LEN && !memcmp(v, khash, n);
				else if (sig_type_fits(key, t) && keyhash_ok)
					sig_ok = verify_sig(key, t, v, n, tlv_hash);
			}
			if (r < 0) {
				*why = "bad TLV";
				goto bad;
			}
		}
		if (!sig_ok) {
			*why = "no valid signature";
			goto bad;
		}
	}
	free(l.tlvs);
	return 0;
bad:
	free(l.tlvs);
	return -EBADMSG;
}

static int sign_hash(EVP_PKEY *key, const uint8_t hash[SIM_HASH_LEN], uint16_t *type, uint8_t *sig,
		     size_t *sig_len)
{
	int id = EVP_PKEY_get_base_id(key);
	int r = -EIO;

	if (id == EVP_PKEY_ED25519) {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		*type = TLV_ED25519;
		if (ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
		    EVP_DigestSign(ctx, sig, sig_len, hash, SIM_HASH_LEN) == 1)
			r = 0;
		EVP_MD_CTX_free(ctx);
		return r;
	}
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(key, NULL);
	if (!pctx || EVP_PKEY_sign_init(pctx) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1)
		goto out;
	if (id == EVP_PKEY_EC) {
		*type = TLV_ECDSA_SIG;
	} else if (id == EVP_PKEY_RSA) {
		*type = EVP_PKEY_get_bits(key) == 3072 ? TLV_RSA3072_PSS : TLV_RSA2048_PSS;
		if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1)
			goto out;
	} else {
		r = -EOPNOTSUPP;
		goto out;
	}
	if (EVP_PKEY_sign(pctx, sig, sig_len, hash, SIM_HASH_LEN) == 1)
		r = 0;
out:
	EVP_PKEY_CTX_free(pctx);
	return r;
}

static bool key_is_private(EVP_PKEY *key)
{
	/* A public-only key cannot produce a signature of any size. */
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(key, NULL);
	bool ok = pctx && EVP_PKEY_sign_init(pctx) == 1;
	EVP_PKEY_CTX_free(pctx);
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
		uint8_t raw[64];
		size_t n = sizeof(raw);
		ok = EVP_PKEY_get_raw_private_key(key, raw, &n) == 1;
	}
	return ok;
}

/* Header and a seeded xorshift body: the same seed gives the same image. */
static void img_fill(uint8_t *img, uint32_t hdr_size, const struct sim_version *ver,
		     uint32_t body_size, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	put32(img, SIM_IMAGE_MAGIC);
	put16(img + 8, (uint16_t) hdr_size);
	put32(img + 12, body_size);
	img[20] = ver->major;
	img[21] = ver->minor;
	put16(img + 22, ver->rev);
	put32(img + 24, ver->build);
	for (uint32_t i = 0; i < body_size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		img[hdr_size + i] = (uint8_t) x;
	}
}

/* The TLV area: SHA-256, and with a private key its hash and the signature. */
static int img_tlvs(const uint8_t *img, size_t img_len, EVP_PKEY *key, uint8_t *tlvs,
		    size_t *out_len)
{
	uint8_t hash[SIM_HASH_LEN];
	size_t tlv_len = 4;
	int r;

	if (EVP_Digest(img, img_len, hash, NULL, EVP_sha256(), NULL) != 1)
		return -EIO;
	put16(tlvs + tlv_len, TLV_SHA256);
	put16(tlvs + tlv_len + 2, SIM_HASH_LEN);
	memcpy(tlvs + tlv_len + 4, hash, SIM_HASH_LEN);
	tlv_len += 4 + SIM_HASH_LEN;
	if (key && key_is_private(key)) {
		uint8_t sig[512];
		size_t sig_len = sizeof(sig);
		uint16_t type;

		put16(tlvs + tlv_len, TLV_KEYHASH);
		put16(tlvs + tlv_len + 2, SIM_HASH_LEN);
		r = key_hash(key, tlvs + tlv_len + 4);
		if (r < 0)
			return r;
		tlv_len += 4 + SIM_HASH_LEN;
		r = sign_hash(key, hash, &type, sig, &sig_len);
		if (r < 0)
			return r;
		put16(tlvs + tlv_len, type);
		put16(tlvs + tlv_len + 2, (uint16_t) sig_len);
		memcpy(tlvs + tlv_len + 4, sig, sig_len);
		tlv_len += 4 + sig_len;
	}
	put16(tlvs, TLV_INFO_MAGIC);
	put16(tlvs + 2, (uint16_t) tlv_len);
	*out_len = tlv_len;
	return 0;
}

/* Written to PATH.tmp, then renamed: a reader never sees half an image. */
static int img_write(const char *path, const uint8_t *img, size_t img_len, const uint8_t *tlvs,
		     size_t tlv_len)
{
	char tmp[600];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, img, img_len) != (ssize_t) img_len ||
	    write(fd, tlvs, tlv_len) != (ssize_t) tlv_len) {
		close(fd);
		(void) unlink(tmp);
		return -EIO;
	}
	if (close(fd) < 0)
		return -errno;
	return rename(tmp, path) < 0 ? -errno : 0;
}

int sim_img_generate(const char *path, const struct sim_version *ver, uint32_t body_size,
		     uint64_t seed, EVP_PKEY *key)
{
	const uint32_t hdr_size = 0x200;
	uint8_t tlvs[4 + 4 + 32 + 4 + 32 + 4 + 512];
	size_t tlv_len = 0;
	uint8_t *img = calloc(1, (size_t) hdr_size + body_size);
	int r;

	if (!img)
		return -ENOMEM;
	img_fill(img, hdr_size, ver, body_size, seed);
	r = img_tlvs(img, (size_t) hdr_size + body_size, key, tlvs, &tlv_len);
	if (r == 0)
		r = img_write(path, img, (size_t) hdr_size + body_size, tlvs, tlv_len);
	free(img);
	return r;
}

int sim_version_parse(const char *s, struct sim_version *ret)
{
	unsigned long v[4] = {0, 0, 0, 0};
	const unsigned long max[4] = {255, 255, 65535, 4294967295ul};
	const char *p = s;
	char *end;
	int n = 0;

	/* "1.2.3", "1.2.3+4" (imgtool) or "1.2.3.4" (as img_mgmt prints it). */
	while (n < 4) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		errno = 0;
		v[n] = strtoul(p, &end, 10);
		if (errno || v[n] > max[n])
			return -EINVAL;
		n++;
		p = end;
		if (*p == '\0')
			break;
		if ((*p == '.' && n < 4) || (*p == '+' && n == 3)) {
			p++;
			continue;
		}
		return -EINVAL;
	}
	if (*p != '\0' || n < 1)
		return -EINVAL;
	ret->major = (uint8_t) v[0];
	ret->minor = (uint8_t) v[1];
	ret->rev = (uint16_t) v[2];
	ret->build = (uint32_t) v[3];
	return 0;
}

void sim_version_format(const struct sim_version *v, char *out, size_t n)
{
	if (v->build)
		snprintf(out, n, "%u.%u.%u.%u", v->major, v->minor, v->rev, v->build);
	else
		snprintf(out, n, "%u.%u.%u", v->major, v->minor, v->rev);
}

int sim_version_cmp(const struct sim_version *a, const struct sim_version *b, bool with_build)
{
	uint64_t x = (uint64_t) a->major << 24 | (uint64_t) a->minor << 16 | a->rev;
	uint64_t y = (uint64_t) b->major << 24 | (uint64_t) b->minor << 16 | b->rev;

	if (x != y)
		return x < y ? -1 : 1;
	if (with_build && a->build != b->build)
		return a->build < b->build ? -1 : 1;
	return 0;
}

int sim_key_load(const char *path, EVP_PKEY **ret)
{
	FILE *f = fopen(path, "re");
	EVP_PKEY *k;

	if (!f)
		return -errno;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	if (!k) {
		rewind(f);
		k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	}
	fclose(f);
	if (!k)
		return -EBADMSG;
	*ret = k;
	return 0;
}
