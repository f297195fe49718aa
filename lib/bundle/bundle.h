/*
 * bundle: everything the gateway proves about a release before a byte of it goes over the
 * air, as plain functions (bytes and files in, structs out; no event loop, no network):
 *  - keys: Ed25519 manifest keys and MCUboot image keys (Ed25519, ECDSA-P256, RSA-2048/3072);
 *  - the signed release manifest (docs/manifest.md): Ed25519 signature over the exact bytes,
 *    every field validated, sequence (rollback) and expiry checks;
 *  - MCUboot images (protocol-notes §5): header, protected and unprotected TLV areas with every
 *    bounds check, SHA-256 TLV recomputed, signature TLV verified; and a writer for them;
 *  - NCS dual-core bundles (dfu_application.zip, protocol-notes §6.2): manifest.json checked
 *    against the entries, entry names and sizes bounded, each image parsed and verified; and a
 *    writer for them.
 * Refusals come back as a negative errno plus a struct fgw_reject naming the reason (a stable
 * string for logs, the database and the API) and the check that failed. All functions are
 * thread-safe on distinct objects, so callers may run them in a worker thread.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------- */
/* Refusal reasons                                                                           */

enum fgw_reject_reason {
	FGW_REJECT_NONE,
	FGW_REJECT_MALFORMED_MANIFEST,	/* not JSON, a field missing, out of range, ... */
	FGW_REJECT_BAD_SIGNATURE,	/* no trusted key verifies the manifest signature */
	FGW_REJECT_UNKNOWN_KEY,		/* signed only by keys the gateway does not trust */
	FGW_REJECT_ROLLBACK,		/* sequence not above the last accepted one */
	FGW_REJECT_EXPIRED,		/* `expires` is not in the future */
	FGW_REJECT_ID_REUSED,		/* a known release id now points to another bundle */
	FGW_REJECT_OVERSIZE,		/* the server sent more than the declared size */
	FGW_REJECT_SIZE_MISMATCH,	/* the download ended before the declared size */
	FGW_REJECT_SHA_MISMATCH,	/* bundle SHA-256 differs from the manifest's */
	FGW_REJECT_BAD_ZIP,		/* not a zip, truncated, corrupt entry */
	FGW_REJECT_ZIP_PATH,		/* an entry name that could escape a directory */
	FGW_REJECT_ZIP_LIMIT,		/* too many entries, or an entry/total too large */
	FGW_REJECT_BAD_NCS_MANIFEST,	/* the zip's manifest.json is wrong or disagrees */
	FGW_REJECT_MISSING_IMAGE,	/* image 0 absent, or a listed file not in the zip */
	FGW_REJECT_BAD_MAGIC,		/* MCUboot header magic */
	FGW_REJECT_BAD_HEADER,		/* header sizes, flags */
	FGW_REJECT_BAD_TLV,		/* TLV area layout, a length past the end, ... */
	FGW_REJECT_HASH_MISMATCH,	/* SHA256 TLV differs from the recomputed hash */
	FGW_REJECT_BAD_IMAGE_SIGNATURE, /* signature TLV missing, for another key, or invalid */
	FGW_REJECT_VERSION_MISMATCH,	/* image version differs from what was declared */
	FGW_REJECT_BOARD_MISMATCH,	/* app image board differs from the release target */
	FGW_REJECT_WRONG_CHANNEL,	/* the manifest's `channel` is not the gateway's */
	FGW_REJECT_IO,			/* the cache could not be read or written */
	_FGW_REJECT_REASON_MAX,
	_FGW_REJECT_REASON_INVALID = -EINVAL,
};

/* "bad-signature", "rollback", ...: the names logs, the database and the API use. */
const char *fgw_reject_reason_to_string(enum fgw_reject_reason r);

/* Why something was refused. @detail is a static string naming the failed check. */
struct fgw_reject {
	enum fgw_reject_reason reason;
	const char *detail;
	int image; /* MCUboot image index the refusal is about, -1 if none */
};

/* ---------------------------------------------------------------------------------------- */
/* Keys                                                                                      */

enum fgw_key_type {
	FGW_KEY_TYPE_ED25519,
	FGW_KEY_TYPE_ECDSA_P256,
	FGW_KEY_TYPE_RSA_2048,
	FGW_KEY_TYPE_RSA_3072,
	_FGW_KEY_TYPE_MAX,
	_FGW_KEY_TYPE_INVALID = -EINVAL,
};

/* "ed25519", "ecdsa-p256", "rsa-2048", "rsa-3072" */
const char *fgw_key_type_to_string(enum fgw_key_type t);
enum fgw_key_type fgw_key_type_from_string(const char *s);

struct fgw_key;

/*
 * Loads a PEM key: a private key (PKCS#8 or traditional) or a public key (SubjectPublicKeyInfo
 * or PKCS#1 RSA). -ENOENT/-EACCES if the file cannot be read, -EBADMSG if it holds no PEM key,
 * -EOPNOTSUPP for key types MCUboot does not use (e.g. RSA-4096, P-384).
 */
int fgw_key_load_file(const char *path, struct fgw_key **ret);
int fgw_key_load_pem(const void *pem, size_t len, struct fgw_key **ret);
int fgw_key_generate(enum fgw_key_type type, struct fgw_key **ret);
/*
 * Writes the private key (PKCS#8 PEM, mode 0600, refuses to overwrite: -EEXIST) and/or the
 * public key (SubjectPublicKeyInfo PEM). Either path may be NULL. -EINVAL if @private_path is
 * given for a public-only key.
 */
int fgw_key_save(const struct fgw_key *k, const char *private_path, const char *public_path);
struct fgw_key *fgw_key_free(struct fgw_key *k);
enum fgw_key_type fgw_key_get_type(const struct fgw_key *k);
bool fgw_key_has_private(const struct fgw_key *k);
/*
 * SHA-256 of the public key as MCUboot embeds it (DER SubjectPublicKeyInfo for EC and Ed25519,
 * DER PKCS#1 RSAPublicKey for RSA): the KEYHASH TLV value.
 */
const uint8_t *fgw_key_hash(const struct fgw_key *k);
/* "ed25519:0123456789abcdef": type and the first 8 bytes of fgw_key_hash(), for logs. */
const char *fgw_key_id(const struct fgw_key *k);

/* ---------------------------------------------------------------------------------------- */
/* Versions                                                                                  */

struct fgw_image_version {
	uint8_t major;
	uint8_t minor;
	uint16_t revision;
	uint32_t build;
};

#define FGW_IMAGE_VERSION_STRLEN 32 /* "255.255.65535+4294967295" and a NUL fit */

/* "1", "1.2", "1.2.3", each optionally "+build". -EINVAL if malformed, -ERANGE if too big. */
int fgw_image_version_parse(const char *s, struct fgw_image_version *ret);
/* "1.2.3+4" into @buf (FGW_IMAGE_VERSION_STRLEN bytes); returns @buf. */
char *fgw_image_version_format(const struct fgw_image_version *v, char *buf);
/* <0, 0, >0 like strcmp; the build number counts. */
int fgw_image_version_compare(const struct fgw_image_version *a, const struct fgw_image_version *b);

/* ---------------------------------------------------------------------------------------- */
/* Release manifest (docs/manifest.md)                                                       */

#define FGW_MANIFEST_SCHEMA 1
#define FGW_MANIFEST_MAX_BYTES (256 * 1024)
#define FGW_MANIFEST_SIG_MAX_BYTES 4096
#define FGW_MANIFEST_MAX_RELEASES 32
#define FGW_MANIFEST_MAX_GROUPS 32
#define FGW_MANIFEST_MAX_ID 64
#define FGW_MANIFEST_MAX_URL 2048
/* Trusted manifest keys: the one limit the config, the release part and fotactl share. */
#define FGW_MANIFEST_MAX_KEYS 8
#define FGW_BUNDLE_MAX_SIZE ((uint64_t) 256 * 1024 * 1024)
/* Largest sequence: JSON numbers are doubles, integers are exact up to 2^53. */
#define FGW_MANIFEST_MAX_SEQUENCE ((int64_t) 1 << 53)

enum fgw_rollout_mode {
	FGW_ROLLOUT_MODE_TEST_CONFIRM, /* test, boot, then confirm once the device answers */
	FGW_ROLLOUT_MODE_CONFIRM,      /* confirm (permanent) directly */
	_FGW_ROLLOUT_MODE_MAX,
	_FGW_ROLLOUT_MODE_INVALID = -EINVAL,
};

struct fgw_release_policy {
	enum fgw_rollout_mode mode;
	int canary_percent;	 /* 0..100, default 10 */
	double max_failure_rate; /* 0..1, default 0.2 */
	int max_concurrent;	 /* 1..1000, default 4 */
	bool allow_downgrade;	 /* default true; false: uploads carry SMP's `upgrade` flag */
};

struct fgw_manifest_release {
	char *id;
	char *version; /* as written; also parsed into @image_version */
	struct fgw_image_version image_version;
	char *bundle_url; /* as written: absolute, or relative to the manifest URL */
	uint8_t bundle_sha256[32];
	char bundle_sha256_hex[65];
	uint64_t bundle_size;
	char *board;
	char **groups; /* NULL and 0: every group */
	size_t n_groups;
	struct fgw_release_policy policy;
	char *groups_json; /* the groups as a compact JSON array, NULL if none */
	char *policy_json; /* the policy with defaults filled in, as a compact JSON object */
};

#define FGW_MANIFEST_MAX_CHANNEL 64

struct fgw_manifest {
	int schema;
	int64_t sequence;
	int64_t expires; /* Unix seconds */
	char *channel;	 /* the audience: 1..64 of [A-Za-z0-9._-]; NULL when absent */
	struct fgw_manifest_release *releases;
	size_t n_releases;
};

/*
 * Parses and validates every field of a manifest (no signature, sequence or time checks).
 * -EBADMSG with @why (may be NULL) set to FGW_REJECT_MALFORMED_MANIFEST on any problem.
 */
int fgw_manifest_parse(const void *json, size_t len, struct fgw_manifest **ret,
		       struct fgw_reject *why);
struct fgw_manifest *fgw_manifest_free(struct fgw_manifest *m);

/* A deep copy of one release, to keep it beyond its manifest. */
int fgw_manifest_release_dup(const struct fgw_manifest_release *src,
			     struct fgw_manifest_release **ret);
struct fgw_manifest_release *fgw_manifest_release_free(struct fgw_manifest_release *r);

/*
 * Checks @sig (the manifest.json.sig file: one or more lines "BASE64 [KEYID]") against the
 * exact bytes @json with the trusted Ed25519 keys. 0 and *@ret_key (borrowed, may be NULL) when
 * one line verifies with a trusted key. -ENOKEY (FGW_REJECT_UNKNOWN_KEY) when every line names
 * a key id that is not trusted; -EBADMSG (FGW_REJECT_BAD_SIGNATURE) otherwise.
 */
int fgw_manifest_verify_signature(const void *json, size_t len, const void *sig, size_t sig_len,
				  struct fgw_key *const *keys, size_t n_keys,
				  const struct fgw_key **ret_key, struct fgw_reject *why);
/* Signs @json with an Ed25519 private key: *@ret is one line "BASE64 KEYID\n" (free()). */
int fgw_manifest_sign(const void *json, size_t len, const struct fgw_key *key, char **ret);
/*
 * The freshness checks: -ESTALE (FGW_REJECT_ROLLBACK) unless sequence > @stored_sequence,
 * -ETIME (FGW_REJECT_EXPIRED) unless expires > @now_s.
 */
int fgw_manifest_check(const struct fgw_manifest *m, int64_t stored_sequence, int64_t now_s,
		       struct fgw_reject *why);
/*
 * The audience check: -EPERM (FGW_REJECT_WRONG_CHANNEL) unless the manifest's `channel` equals
 * @channel, an absent one counting as "" (so does a NULL @channel).
 */
int fgw_manifest_check_channel(const struct fgw_manifest *m, const char *channel,
			       struct fgw_reject *why);
/* RFC 3339 date-time ("2026-01-31T12:00:00Z", offsets, fractions) to Unix seconds. */
int fgw_rfc3339_parse(const char *s, int64_t *ret);

/* ---------------------------------------------------------------------------------------- */
/* MCUboot images (protocol-notes §5)                                                        */

#define FGW_MCUBOOT_MAX_IMAGE (16u * 1024 * 1024)
#define FGW_MCUBOOT_HEADER_MIN 32

/* MCUboot TLV types this code acts on. */
enum {
	FGW_MCUBOOT_TLV_KEYHASH = 0x01,
	FGW_MCUBOOT_TLV_PUBKEY = 0x02,
	FGW_MCUBOOT_TLV_SHA256 = 0x10,
	FGW_MCUBOOT_TLV_RSA2048_PSS = 0x20,
	FGW_MCUBOOT_TLV_ECDSA_SIG = 0x22,
	FGW_MCUBOOT_TLV_RSA3072_PSS = 0x23,
	FGW_MCUBOOT_TLV_ED25519 = 0x24,
	FGW_MCUBOOT_TLV_SEC_CNT = 0x50,
};

enum fgw_sig_status {
	FGW_SIG_STATUS_NOT_CHECKED, /* no MCUboot key configured */
	FGW_SIG_STATUS_VALID,	    /* a signature TLV verifies with the key */
	FGW_SIG_STATUS_INVALID,	    /* a signature TLV for the key does not verify */
	FGW_SIG_STATUS_MISSING,	    /* no signature TLV at all */
	FGW_SIG_STATUS_OTHER_KEY,   /* signed, but not with the configured key (type/keyhash) */
	_FGW_SIG_STATUS_MAX,
	_FGW_SIG_STATUS_INVALID = -EINVAL,
};
/* "not-checked", "valid", "invalid", "missing", "other-key" */
const char *fgw_sig_status_to_string(enum fgw_sig_status s);

struct fgw_mcuboot_image {
	uint32_t load_addr;
	uint32_t hdr_size;
	uint32_t protect_tlv_size;
	uint32_t img_size;
	uint32_t flags;
	struct fgw_image_version version;
	uint8_t hash[32];     /* the SHA256 TLV */
	uint32_t hashed_size; /* hdr_size + img_size + protect_tlv_size: what the hash covers */
	uint32_t tlv_end;     /* end of the unprotected TLV area; bytes after it are padding */
	int sig_type;	      /* type of the first signature TLV, 0 if none */
	bool has_keyhash;
	uint8_t keyhash[32]; /* the first KEYHASH TLV */
	bool has_sec_cnt;
	uint32_t sec_cnt;
	unsigned n_tlvs;
};

/*
 * Parses the header and both TLV areas with every bounds check; does not hash. -EBADMSG with
 * FGW_REJECT_BAD_MAGIC, _BAD_HEADER or _BAD_TLV; -EFBIG beyond FGW_MCUBOOT_MAX_IMAGE.
 */
int fgw_mcuboot_parse(const void *buf, size_t len, struct fgw_mcuboot_image *ret,
		      struct fgw_reject *why);
/*
 * Recomputes the hash (-EBADMSG, FGW_REJECT_HASH_MISMATCH) and, if @key is not NULL, checks
 * the signature: 0 only with FGW_SIG_STATUS_VALID; -EKEYREJECTED (INVALID) or -ENOKEY
 * (MISSING, OTHER_KEY) with FGW_REJECT_BAD_IMAGE_SIGNATURE. Without a key: 0 and NOT_CHECKED.
 * @img must come from fgw_mcuboot_parse() of the same bytes.
 */
int fgw_mcuboot_verify(const void *buf, size_t len, const struct fgw_mcuboot_image *img,
		       const struct fgw_key *key, enum fgw_sig_status *ret_sig,
		       struct fgw_reject *why);

struct fgw_mcuboot_write_opts {
	struct fgw_image_version version;
	uint32_t hdr_size; /* 0: 0x200, as NCS builds */
	uint32_t load_addr;
	uint32_t flags;
	bool has_sec_cnt; /* adds a protected SEC_CNT TLV */
	uint32_t sec_cnt;
	const struct fgw_key *key; /* private key; NULL: unsigned (SHA256 TLV only) */
};

/*
 * Builds an image: header, @payload, optional protected TLVs, then SHA256, KEYHASH and the
 * signature TLV (the order imgtool and NCS use). *@ret_buf is malloc()ed.
 */
int fgw_mcuboot_write(const void *payload, size_t len, const struct fgw_mcuboot_write_opts *o,
		      uint8_t **ret_buf, size_t *ret_len);

/* ---------------------------------------------------------------------------------------- */
/* NCS bundles: dfu_application.zip (protocol-notes §6.2)                                     */

#define FGW_BUNDLE_MAX_IMAGES 4
#define FGW_BUNDLE_MAX_ENTRIES 32
#define FGW_BUNDLE_MAX_NCS_MANIFEST (64 * 1024)
#define FGW_BUNDLE_MAX_TOTAL ((uint64_t) 64 * 1024 * 1024) /* all images, uncompressed */

struct fgw_bundle_image {
	int index;		/* MCUboot image number: 0 app core, 1 net core */
	char *file;		/* entry name in the zip */
	char *board;		/* NULL if the manifest has none */
	char *declared_version; /* version_MCUBOOT (or version), NULL if none */
	uint8_t *data;		/* the whole entry */
	size_t len;
	struct fgw_mcuboot_image img;
	enum fgw_sig_status sig;
};

struct fgw_bundle {
	char *name; /* manifest.json "name", NULL if none */
	size_t n_images;
	struct fgw_bundle_image images[FGW_BUNDLE_MAX_IMAGES]; /* sorted by index */
};

/*
 * Opens a dfu_application.zip, validates manifest.json against the entries and parses and
 * verifies every image (with @mcuboot_key if not NULL, see fgw_mcuboot_verify()). Every zip
 * entry name is checked (no "..", no absolute path, no backslash); entries are read with hard
 * caps, whatever sizes the zip declares. -EBADMSG, -EFBIG, -ENOKEY, -EKEYREJECTED with @why.
 */
int fgw_bundle_open(const char *path, const struct fgw_key *mcuboot_key, struct fgw_bundle **ret,
		    struct fgw_reject *why);
int fgw_bundle_open_buffer(const void *data, size_t len, const struct fgw_key *mcuboot_key,
			   struct fgw_bundle **ret, struct fgw_reject *why);
struct fgw_bundle *fgw_bundle_free(struct fgw_bundle *b);
/* The image with MCUboot index @index, or NULL. Borrowed from @b. */
const struct fgw_bundle_image *fgw_bundle_find_image(const struct fgw_bundle *b, int index);

/* One image for fgw_bundle_write(); @data must be a valid MCUboot image. */
struct fgw_bundle_input {
	int index;
	const char *file;  /* entry name */
	const char *board; /* e.g. "nrf5340dk/nrf5340/cpuapp" */
	const void *data;
	size_t len;
};

/*
 * Writes a dfu_application.zip the way NCS does (manifest.json with string-valued numbers,
 * "version_MCUBOOT" from each image header) to a temporary file beside @path, fsync()s it and
 * renames it over @path. Each input must parse as an MCUboot image (-EBADMSG otherwise).
 * @name may be NULL.
 */
int fgw_bundle_write(const char *path, const char *name, const struct fgw_bundle_input *in,
		     size_t n_in);

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                     */

/* SHA-256 and size of a file, refusing more than @max_size bytes (-EFBIG). */
int fgw_sha256_file(const char *path, uint64_t max_size, uint8_t ret_hash[32], uint64_t *ret_size);
/*
 * Reads a whole file of at most @max_size bytes (-EFBIG beyond) into *@ret_data (free()),
 * hashing it as it is read, so the bytes hashed are the bytes returned.
 */
int fgw_file_load_sha256(const char *path, uint64_t max_size, uint8_t **ret_data, size_t *ret_len,
			 uint8_t ret_hash[32]);
/*
 * For work in threads the caller does not own (libuv's pool): frees OpenSSL's per-thread state
 * of the calling thread now. Left to thread exit, it is lost when OpenSSL's atexit cleanup runs
 * before the pool's threads end.
 */
void fgw_bundle_thread_done(void);
/* Incremental SHA-256, to hash bytes while they are written somewhere. */
struct fgw_sha256_ctx;
int fgw_sha256_begin(struct fgw_sha256_ctx **ret);
int fgw_sha256_update(struct fgw_sha256_ctx *c, const void *data, size_t len);
/* Writes the digest and frees @c; with @ret_hash NULL it only frees. */
int fgw_sha256_end(struct fgw_sha256_ctx *c, uint8_t ret_hash[32]);
/* Writes @len bytes to @path atomically: temp file, fsync, rename, fsync of the directory. */
int fgw_write_file_atomic(const char *path, const void *data, size_t len, int mode);
