/* MCUboot images: writer and parser agree, every corruption is refused with the right reason. */
#define _GNU_SOURCE /* asprintf, memmem, strndup */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "bundle.h"
#include "util.h"

static uint8_t *payload(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len ? len : 1);

	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t) (seed >> 16);
	}
	return p;
}

static void make_image(const struct fgw_key *key, size_t len, bool sec_cnt, uint8_t **ret,
		       size_t *ret_len)
{
	_cleanup_free_ uint8_t *body = payload(len, 7);
	struct fgw_mcuboot_write_opts o = {
	    .version = {1, 2, 3, 4},
	    .key = key,
	    .has_sec_cnt = sec_cnt,
	    .sec_cnt = 9,
	    .load_addr = 0x10000,
	};

	assert_int_equal(fgw_mcuboot_write(body, len, &o, ret, ret_len), 0);
}

static void test_roundtrip_unsigned(void **state)
{
	_cleanup_free_ uint8_t *img = NULL;
	struct fgw_mcuboot_image m;
	struct fgw_reject why;
	enum fgw_sig_status sig = -1;
	size_t len;

	make_image(NULL, 1000, true, &img, &len);
	assert_int_equal(fgw_mcuboot_parse(img, len, &m, &why), 0);
	assert_int_equal(m.hdr_size, 0x200);
	assert_int_equal(m.img_size, 1000);
	assert_int_equal(m.protect_tlv_size, 12);
	assert_int_equal(m.load_addr, 0x10000);
	assert_true(m.has_sec_cnt);
	assert_int_equal(m.sec_cnt, 9);
	assert_int_equal(m.version.major, 1);
	assert_int_equal(m.version.minor, 2);
	assert_int_equal(m.version.revision, 3);
	assert_int_equal(m.version.build, 4);
	assert_int_equal(m.tlv_end, len);
	assert_int_equal(m.hashed_size, 0x200 + 1000 + 12);
	assert_int_equal(m.sig_type, 0);
	assert_int_equal(fgw_mcuboot_verify(img, len, &m, NULL, &sig, &why), 0);
	assert_int_equal(sig, FGW_SIG_STATUS_NOT_CHECKED);
}

static void test_signed(void **state)
{
	enum fgw_key_type type = (enum fgw_key_type)(intptr_t) *state;
	struct fgw_key *key = NULL, *other = NULL;
	_cleanup_free_ uint8_t *img = NULL;
	struct fgw_mcuboot_image m;
	struct fgw_reject why;
	enum fgw_sig_status sig;
	size_t len;

	assert_int_equal(fgw_key_generate(type, &key), 0);
	assert_int_equal(fgw_key_generate(type, &other), 0);
	make_image(key, 3000, false, &img, &len);
	assert_int_equal(fgw_mcuboot_parse(img, len, &m, &why), 0);
	assert_true(m.has_keyhash);
	assert_memory_equal(m.keyhash, fgw_key_hash(key), 32);
	assert_int_not_equal(m.sig_type, 0);

	assert_int_equal(fgw_mcuboot_verify(img, len, &m, key, &sig, &why), 0);
	assert_int_equal(sig, FGW_SIG_STATUS_VALID);
	/* no key: hash only */
	assert_int_equal(fgw_mcuboot_verify(img, len, &m, NULL, &sig, &why), 0);
	assert_int_equal(sig, FGW_SIG_STATUS_NOT_CHECKED);
	/* another key of the same type: the KEYHASH says it is not ours */
	assert_int_equal(fgw_mcuboot_verify(img, len, &m, other, &sig, &why), -ENOKEY);
	assert_int_equal(sig, FGW_SIG_STATUS_OTHER_KEY);
	assert_int_equal(why.reason, FGW_REJECT_BAD_IMAGE_SIGNATURE);

	/* flip a bit in the signature (the last TLV): the signature does not verify */
	img[len - 3] ^= 0x01;
	assert_int_equal(fgw_mcuboot_parse(img, len, &m, &why), 0);
	assert_int_equal(fgw_mcuboot_verify(img, len, &m, key, &sig, &why), -EKEYREJECTED);
	assert_int_equal(sig, FGW_SIG_STATUS_INVALID);
	assert_int_equal(why.reason, FGW_REJECT_BAD_IMAGE_SIGNATURE);
	img[len - 3] ^= 0x01;

	/* a body byte changed after signing: the hash no longer matches */
	img[0x200 + 10] ^= 0xff;
	assert_int_equal(fgw_mcuboot_parse(img, len, &m, &why), 0);
	assert_int_equal(fgw_mcuboot_verify(img, len, &m, key, &sig, &why), -EBADMSG);
	assert_int_equal(why.reason, FGW_REJECT_HASH_MISMATCH);

	fgw_key_free(key);
	fgw_key_free(other);
}

static void test_unsigned_with_key(void **state)
{
	struct fgw_key *key = NULL;
	_cleanup_free_ uint8_t *img = NULL;
	struct fgw_mcuboot_image m;
	struct fgw_reject why;
	enum fgw_sig_status sig;
	size_t len;

	assert_int_equal(fgw_key_generate(FGW_KEY_TYPE_ED25519, &key), 0);
	make_image(NULL, 100, false, &img, &len);
	assert_int_equal(fgw_mcuboot_parse(img, len, &m, &why), 0);
	assert_int_equal(fgw_mcuboot_verify(img, len, &m, key, &sig, &why), -ENOKEY);
	assert_int_equal(sig, FGW_SIG_STATUS_MISSING);
	fgw_key_free(key);
}

/* ECDSA signature zero-padded to a fixed length, as imgtool may write it. */
static void test_ecdsa_padded(void **state)
{
	struct fgw_key *key = NULL;
	_cleanup_free_ uint8_t *img = NULL, *padded = NULL;
	struct fgw_mcuboot_image m;
	struct fgw_reject why;
	enum fgw_sig_status sig;
	size_t len, siglen, info;

	assert_int_equal(fgw_key_generate(FGW_KEY_TYPE_ECDSA_P256, &key), 0);
	make_image(key, 64, false, &img, &len);
	assert_int_equal(fgw_mcuboot_parse(img, len, &m, &why), 0);
	/* last TLV is the signature: grow it to 72 bytes with zeros */
	info = m.hashed_size;
	siglen = len - (info + 4 + 36 + 36 + 4);
	assert_true(siglen <= 72);
	padded = calloc(1, len + (72 - siglen));
	memcpy(padded, img, len);
	padded[len - siglen - 2] = 72;
	padded[info + 2] = (uint8_t) (padded[info + 2] + (72 - siglen));
	assert_int_equal(fgw_mcuboot_parse(padded, len + 72 - siglen, &m, &why), 0);
	assert_int_equal(fgw_mcuboot_verify(padded, len + 72 - siglen, &m, key, &sig, &why), 0);
	assert_int_equal(sig, FGW_SIG_STATUS_VALID);
	/* non-zero padding is not a signature */
	padded[len + 72 - siglen - 1] = 1;
	assert_int_equal(fgw_mcuboot_verify(padded, len + 72 - siglen, &m, key, &sig, &why),
			 -EKEYREJECTED);
	fgw_key_free(key);
}

/* Corruptions of a valid unsigned image with a protected area, each with its reason. */
struct corrupt_case {
	const char *name;
	size_t off;	  /* byte offset to overwrite (SIZE_MAX: none) */
	uint32_t value;	  /* little-endian value written at off */
	int width;	  /* 1, 2 or 4 */
	long truncate_by; /* bytes cut from the end */
	int err;
	enum fgw_reject_reason reason;
};

/* layout: hdr 0x200, body 100, prot 12 (info + SEC_CNT), unprot info at 0x270, SHA at 0x274 */
#define BODY 100
#define PROT (0x200 + BODY)
#define UNPROT (PROT + 12)
static const struct corrupt_case corrupt_cases[] = {
    {"magic", 0, 0x12345678, 4, 0, -EBADMSG, FGW_REJECT_BAD_MAGIC},
    {"legacy magic", 0, 0x96f3b83c, 4, 0, -EBADMSG, FGW_REJECT_BAD_MAGIC},
    {"hdr size 16", 8, 16, 2, 0, -EBADMSG, FGW_REJECT_BAD_HEADER},
    {"encrypted", 16, 0x04, 4, 0, -EBADMSG, FGW_REJECT_BAD_HEADER},
    {"body past end", 12, 0x7fffffff, 4, 0, -EBADMSG, FGW_REJECT_BAD_HEADER},
    {"img size +1", 12, BODY + 1, 4, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"prot size 2", 10, 2, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"prot size huge", 10, 0xfff0, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"prot magic", PROT, 0x6907, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"prot tot differs", PROT + 2, 16, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"prot tlv len past area", PROT + 6, 5, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"sec cnt len", PROT + 6, 0, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"tlv info magic", UNPROT, 0x6908, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"tlv tot past end", UNPROT + 2, 4 + 36 + 100, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"tlv tot below 4", UNPROT + 2, 3, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"tlv len past area", UNPROT + 6, 33, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"sha len 31", UNPROT + 2, 4 + 35, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"no sha tlv", UNPROT + 4, 0x11, 2, 0, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"truncated tlv", SIZE_MAX, 0, 0, 5, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"no tlv area", SIZE_MAX, 0, 0, 40, -EBADMSG, FGW_REJECT_BAD_TLV},
    {"header only", SIZE_MAX, 0, 0, BODY + 12 + 40, -EBADMSG, FGW_REJECT_BAD_HEADER},
    {"short", SIZE_MAX, 0, 0, 0x200 + BODY + 12 + 40 - 20, -EBADMSG, FGW_REJECT_BAD_HEADER},
    {"hash differs", UNPROT + 8, 0xdeadbeef, 4, 0, -EBADMSG, FGW_REJECT_HASH_MISMATCH},
    {"body byte", 0x200 + 5, 0x55, 1, 0, -EBADMSG, FGW_REJECT_HASH_MISMATCH},
    {"sec cnt value", PROT + 8, 10, 4, 0, -EBADMSG, FGW_REJECT_HASH_MISMATCH},
};

static void test_corrupt(void **state)
{
	const struct corrupt_case *c = *state;
	_cleanup_free_ uint8_t *img = NULL;
	struct fgw_mcuboot_image m;
	struct fgw_reject why;
	enum fgw_sig_status sig;
	size_t len;
	int r;

	make_image(NULL, BODY, true, &img, &len);
	assert_int_equal(len, UNPROT + 40);
	if (c->off != SIZE_MAX)
		for (int i = 0; i < c->width; i++)
			img[c->off + (size_t) i] = (uint8_t) (c->value >> (8 * i));
	len -= (size_t) c->truncate_by;
	r = fgw_mcuboot_parse(img, len, &m, &why);
	if (r == 0)
		r = fgw_mcuboot_verify(img, len, &m, NULL, &sig, &why);
	if (r != c->err || why.reason != c->reason)
		fail_msg("%s: got %d '%s' (%s), want %d '%s'", c->name, r,
			 fgw_reject_reason_to_string(why.reason), why.detail ? why.detail : "",
			 c->err, fgw_reject_reason_to_string(c->reason));
	assert_non_null(why.detail);
}

/* Duplicate SHA256 TLVs: mcumgr refuses them, so do we. */
static void test_duplicate_sha(void **state)
{
	_cleanup_free_ uint8_t *img = NULL, *big = NULL;
	struct fgw_mcuboot_image m;
	struct fgw_reject why;
	size_t len;

	make_image(NULL, BODY, false, &img, &len);
	big = malloc(len + 36);
	memcpy(big, img, len);
	memcpy(big + len, img + len - 36, 36);
	big[0x200 + BODY + 2] = 4 + 72;
	assert_int_equal(fgw_mcuboot_parse(big, len + 36, &m, &why), -EBADMSG);
	assert_int_equal(why.reason, FGW_REJECT_BAD_TLV);
}

/* Every prefix of a valid image is refused cleanly; trailing padding is accepted. */
static void test_prefixes_and_padding(void **state)
{
	_cleanup_free_ uint8_t *img = NULL, *padded = NULL;
	struct fgw_mcuboot_image m;
	struct fgw_key *key;
	struct fgw_reject why;
	enum fgw_sig_status sig;
	size_t len;

	assert_int_equal(fgw_key_generate(FGW_KEY_TYPE_ED25519, &key), 0);
	make_image(key, 50, true, &img, &len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(fgw_mcuboot_parse(img, i, &m, &why), -EBADMSG);
	padded = malloc(len + 4096);
	memcpy(padded, img, len);
	memset(padded + len, 0xff, 4096);
	assert_int_equal(fgw_mcuboot_parse(padded, len + 4096, &m, &why), 0);
	assert_int_equal(m.tlv_end, len);
	assert_int_equal(fgw_mcuboot_verify(padded, len + 4096, &m, key, &sig, &why), 0);
	assert_int_equal(sig, FGW_SIG_STATUS_VALID);
	fgw_key_free(key);
}

struct version_case {
	const char *s;
	int err;
	struct fgw_image_version v;
	const char *formatted;
};

static const struct version_case version_cases[] = {
    {"1.2.3+4", 0, {1, 2, 3, 4}, "1.2.3+4"},
    {"1.2.3", 0, {1, 2, 3, 0}, "1.2.3+0"},
    {"1", 0, {1, 0, 0, 0}, "1.0.0+0"},
    {"0.0.0+0", 0, {0, 0, 0, 0}, "0.0.0+0"},
    {"255.255.65535+4294967295", 0, {255, 255, 65535, 4294967295u}, "255.255.65535+4294967295"},
    {"256.0.0", -ERANGE, {0, 0, 0, 0}, NULL},
    {"1.2.65536", -ERANGE, {0, 0, 0, 0}, NULL},
    {"1.2.3+4294967296", -ERANGE, {0, 0, 0, 0}, NULL},
    {"1.2.3.4", -EINVAL, {0, 0, 0, 0}, NULL},
    {"1..3", -EINVAL, {0, 0, 0, 0}, NULL},
    {"", -EINVAL, {0, 0, 0, 0}, NULL},
    {"v1.2", -EINVAL, {0, 0, 0, 0}, NULL},
    {"1.2.3+", -EINVAL, {0, 0, 0, 0}, NULL},
    {"1.2.3-rc1", -EINVAL, {0, 0, 0, 0}, NULL},
    {" 1.2", -EINVAL, {0, 0, 0, 0}, NULL},
};

static void test_versions(void **state)
{
	char buf[FGW_IMAGE_VERSION_STRLEN];

	for (size_t i = 0; i < ARRAY_SIZE(version_cases); i++) {
		const struct version_case *c = &version_cases[i];
		struct fgw_image_version v;

		assert_int_equal(fgw_image_version_parse(c->s, &v), c->err);
		if (c->err)
			continue;
		assert_int_equal(fgw_image_version_compare(&v, &c->v), 0);
		assert_string_equal(fgw_image_version_format(&v, buf), c->formatted);
	}
	struct fgw_image_version a = {1, 2, 3, 4}, b = {1, 2, 3, 5}, c = {1, 3, 0, 0};
	assert_true(fgw_image_version_compare(&a, &b) < 0);
	assert_true(fgw_image_version_compare(&c, &b) > 0);
}

static void test_key_files(void **state)
{
	char dir[] = "/tmp/fgw-test-keys-XXXXXX", priv[128], pub[128];
	struct fgw_key *k, *kpub, *kpriv;

	assert_non_null(mkdtemp(dir));
	snprintf(priv, sizeof(priv), "%s/k.pem", dir);
	snprintf(pub, sizeof(pub), "%s/k.pub.pem", dir);
	for (int t = 0; t < _FGW_KEY_TYPE_MAX; t++) {
		assert_int_equal(fgw_key_generate(t, &k), 0);
		assert_int_equal(fgw_key_save(k, priv, pub), 0);
		assert_int_equal(fgw_key_save(k, priv, NULL), -EEXIST); /* never overwrite */
		assert_int_equal(fgw_key_load_file(pub, &kpub), 0);
		assert_int_equal(fgw_key_load_file(priv, &kpriv), 0);
		assert_false(fgw_key_has_private(kpub));
		assert_true(fgw_key_has_private(kpriv));
		assert_int_equal(fgw_key_get_type(kpub), t);
		assert_string_equal(fgw_key_id(kpub), fgw_key_id(k));
		assert_string_equal(fgw_key_id(kpriv), fgw_key_id(k));
		assert_non_null(strstr(fgw_key_id(k), fgw_key_type_to_string(t)));
		assert_int_equal(fgw_key_save(kpub, priv, NULL), -EINVAL);
		fgw_key_free(k);
		fgw_key_free(kpub);
		fgw_key_free(kpriv);
		unlink(priv);
		unlink(pub);
	}
	assert_int_equal(fgw_key_load_file("/nonexistent/key.pem", &k), -ENOENT);
	assert_int_equal(fgw_key_load_pem("not a key", 9, &k), -EBADMSG);
	rmdir(dir);
}

int main(void)
{
	struct CMUnitTest tests[64] = {
	    cmocka_unit_test(test_roundtrip_unsigned),
	    cmocka_unit_test_prestate(test_signed, (void *) (intptr_t) FGW_KEY_TYPE_ED25519),
	    cmocka_unit_test_prestate(test_signed, (void *) (intptr_t) FGW_KEY_TYPE_ECDSA_P256),
	    cmocka_unit_test_prestate(test_signed, (void *) (intptr_t) FGW_KEY_TYPE_RSA_2048),
	    cmocka_unit_test_prestate(test_signed, (void *) (intptr_t) FGW_KEY_TYPE_RSA_3072),
	    cmocka_unit_test(test_unsigned_with_key),
	    cmocka_unit_test(test_ecdsa_padded),
	    cmocka_unit_test(test_duplicate_sha),
	    cmocka_unit_test(test_prefixes_and_padding),
	    cmocka_unit_test(test_versions),
	    cmocka_unit_test(test_key_files),
	};
	size_t n = 11;

	for (size_t i = 0; i < ARRAY_SIZE(corrupt_cases); i++)
		tests[n++] = (struct CMUnitTest){
		    .name = corrupt_cases[i].name,
		    .test_func = test_corrupt,
		    .initial_state = (void *) &corrupt_cases[i],
		};
	fgw_log_set_level(LOG_ERR);
	return _cmocka_run_group_tests("bundle-mcuboot", tests, n, NULL, NULL);
}
