/*
 * SMP codec against golden frames (tests/data/smp/ NAME.hex, derived by hand from
 * protocol-notes §1–§4 and Zephyr's mcumgr sources, not from this encoder), plus the exact
 * upload-overhead arithmetic and the reassembler.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "golden.h"
#include "smp.h"

static const uint8_t H[32] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa,
			      0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5,
			      0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
static uint8_t H2[32];

/* ---- encoders: each case builds a request and must equal its golden frame byte for byte */

enum enc_kind {
	ENC_ECHO_HI,
	ENC_PARAMS,
	ENC_UPLOAD_FIRST,
	ENC_UPLOAD_FIRST_IMG1,
	ENC_UPLOAD_MID,
	ENC_STATE,
	ENC_STATE_CONFIRM,
	ENC_STATE_CONFIRM_RUNNING,
	ENC_STATE_TEST,
	ENC_ERASE3,
	ENC_SLOT_INFO,
	ENC_RESET,
	ENC_RESET_FORCE,
	ENC_OS_INFO_A,
	ENC_BOOT_MODE,
};

struct enc_case {
	const char *golden;
	enum enc_kind kind;
	uint8_t seq;
};

/* The upload cases, as the engine builds them: straight into the packet. */
static int build_upload(enum enc_kind k, struct fgw_smp_upload_chunk *c)
{
	static const uint8_t magic[] = {0x3d, 0xb8, 0xf3, 0x96};
	static const uint8_t five[] = {1, 2, 3, 4, 5};
	static const uint8_t zero[] = {0};

	switch (k) {
	case ENC_UPLOAD_FIRST:
		*c = (struct fgw_smp_upload_chunk){
		    .total = 1024, .off = 0, .sha = H, .data = magic, .data_len = 4};
		return 1;
	case ENC_UPLOAD_FIRST_IMG1:
		*c = (struct fgw_smp_upload_chunk){
		    .image = 1, .total = 300000, .sha = H2, .data = zero, .data_len = 1};
		return 1;
	case ENC_UPLOAD_MID:
		/* sha/len/image are first-chunk fields: they must not appear at off != 0 */
		*c = (struct fgw_smp_upload_chunk){
		    .image = 1, .total = 1024, .off = 2048, .sha = H, .data = five, .data_len = 5};
		return 1;
	default:
		return 0;
	}
}

static int build(enum enc_kind k, struct fgw_smp_req *r)
{
	switch (k) {
	case ENC_ECHO_HI:
		return fgw_smp_req_echo("hi", r);
	case ENC_PARAMS:
		return fgw_smp_req_params(r);
	case ENC_STATE:
		return fgw_smp_req_img_state(r);
	case ENC_STATE_CONFIRM:
		return fgw_smp_req_img_state_write(H, true, r);
	case ENC_STATE_CONFIRM_RUNNING:
		return fgw_smp_req_img_state_write(NULL, true, r);
	case ENC_STATE_TEST:
		return fgw_smp_req_img_state_write(H2, false, r);
	case ENC_ERASE3:
		return fgw_smp_req_img_erase(3, r);
	case ENC_SLOT_INFO:
		return fgw_smp_req_img_slot_info(r);
	case ENC_RESET:
		return fgw_smp_req_reset(false, r);
	case ENC_RESET_FORCE:
		return fgw_smp_req_reset(true, r);
	case ENC_OS_INFO_A:
		return fgw_smp_req_os_info("a", r);
	case ENC_BOOT_MODE:
		return fgw_smp_req_bootloader_info("mode", r);
	default:
		return -EINVAL;
	}
}

static const struct enc_case enc_cases[] = {
    {"echo-req-v2", ENC_ECHO_HI, 0x2a},
    {"params-req-v2", ENC_PARAMS, 0},
    {"upload-req-first", ENC_UPLOAD_FIRST, 1},
    {"upload-req-first-image1", ENC_UPLOAD_FIRST_IMG1, 0xff},
    {"upload-req-mid", ENC_UPLOAD_MID, 2},
    {"img-state-req", ENC_STATE, 4},
    {"img-state-write-confirm", ENC_STATE_CONFIRM, 9},
    {"img-state-write-confirm-running", ENC_STATE_CONFIRM_RUNNING, 10},
    {"img-state-write-test", ENC_STATE_TEST, 11},
    {"img-erase-req-slot3", ENC_ERASE3, 5},
    {"img-slot-info-req", ENC_SLOT_INFO, 6},
    {"reset-req", ENC_RESET, 3},
    {"reset-req-force", ENC_RESET_FORCE, 4},
    {"os-info-req-a", ENC_OS_INFO_A, 7},
    {"bootloader-info-req-mode", ENC_BOOT_MODE, 8},
};

/* One case packed as it goes out, with @version and @seq. */
static void pack_case(const struct enc_case *e, uint8_t version, uint8_t *buf, size_t size,
		      size_t *len)
{
	struct fgw_smp_upload_chunk c;
	struct fgw_smp_req r = {0};

	if (build_upload(e->kind, &c)) {
		assert_int_equal(fgw_smp_upload_encode(&c, buf, size, len), 0);
		fgw_smp_hdr_stamp(buf, version, e->seq);
		return;
	}
	assert_int_equal(build(e->kind, &r), 0);
	assert_int_equal(fgw_smp_req_pack(&r, version, e->seq, buf, size, len), 0);
	fgw_smp_req_done(&r);
}

static void test_encoders(void **state)
{
	for (size_t i = 0; i < sizeof(enc_cases) / sizeof(enc_cases[0]); i++) {
		const struct enc_case *e = &enc_cases[i];
		struct fgw_smp_hdr h;
		uint8_t buf[512];
		size_t len, glen;
		uint8_t *g = golden_load(e->golden, &glen);

		printf("encode %s\n", e->golden);
		pack_case(e, FGW_SMP_V2, buf, sizeof(buf), &len);
		assert_int_equal(len, glen);
		assert_memory_equal(buf, g, glen);
		/* and the golden header reads back as what we asked for */
		assert_int_equal(fgw_smp_hdr_decode(g, glen, &h), 0);
		assert_int_equal(h.seq, e->seq);
		assert_int_equal(h.version, FGW_SMP_V2);
		assert_int_equal(h.len, glen - FGW_SMP_HDR_SIZE);
		/* v1 differs only in the version bits of byte 0 */
		pack_case(e, FGW_SMP_V1, buf, sizeof(buf), &len);
		assert_int_equal(buf[0], g[0] & 0x07);
		assert_memory_equal(buf + 1, g + 1, glen - 1);
		/* a packet one byte short of room is refused, never cut */
		if (build_upload(e->kind, &(struct fgw_smp_upload_chunk){0})) {
			struct fgw_smp_upload_chunk c;

			build_upload(e->kind, &c);
			for (size_t n = 0; n < glen; n++)
				assert_int_equal(fgw_smp_upload_encode(&c, buf, n, &len),
						 -EMSGSIZE);
		} else {
			struct fgw_smp_req r = {0};

			assert_int_equal(build(e->kind, &r), 0);
			assert_int_equal(fgw_smp_req_pack(&r, 1, 0, buf, glen - 1, &len),
					 -EMSGSIZE);
			fgw_smp_req_done(&r);
		}
		free(g);
	}
}

static void test_encoder_args(void **state)
{
	struct fgw_smp_req r;

	assert_int_equal(fgw_smp_req_img_state_write(NULL, false, &r), -EINVAL);
	assert_int_equal(fgw_smp_req_echo(NULL, &r), -EINVAL);
}

/* ---- header ---- */

static void test_hdr(void **state)
{
	static const uint8_t echo[] = {0x02, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x01, 0x00};
	static const uint8_t res_bits[] = {0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
	struct fgw_smp_hdr h, big = {.op = 8};
	uint8_t out[8];

	assert_int_equal(fgw_smp_hdr_decode(echo, 7, &h), -EBADMSG);
	assert_int_equal(fgw_smp_hdr_decode(res_bits, 8, &h), -EBADMSG);
	assert_int_equal(fgw_smp_hdr_decode(echo, 8, &h), 0);
	assert_int_equal(h.op, FGW_SMP_OP_WRITE);
	assert_int_equal(h.version, FGW_SMP_V1);
	assert_int_equal(h.len, 0x2e);
	assert_int_equal(h.seq, 1);
	assert_int_equal(fgw_smp_hdr_encode(&h, out), 0);
	assert_memory_equal(out, echo, 8);
	assert_int_equal(fgw_smp_hdr_encode(&big, out), -EINVAL);
	/* a 16-bit group and length are big-endian */
	h = (struct fgw_smp_hdr){
	    .op = 1, .version = 1, .len = 0x1234, .group = 0x4142, .seq = 9, .id = 7};
	assert_int_equal(fgw_smp_hdr_encode(&h, out), 0);
	assert_memory_equal(out, ((uint8_t[]){0x09, 0, 0x12, 0x34, 0x41, 0x42, 9, 7}), 8);
	assert_string_equal(fgw_smp_op_to_string(3), "write-rsp");
	assert_string_equal(fgw_smp_op_to_string(9), "invalid");
	assert_string_equal(fgw_smp_group_to_string(1), "image");
	assert_string_equal(fgw_smp_group_to_string(64), "user");
}

/* ---- responses ---- */

static void test_echo_and_errors(void **state)
{
	struct fgw_smp_status st;
	struct fgw_smp_hdr h;
	char *text = NULL, buf[200];
	size_t glen, n;
	uint8_t *g = golden_load("echo-rsp-v2", &glen);
	const uint8_t *p = golden_payload(g, glen, &n);

	assert_int_equal(fgw_smp_hdr_decode(g, glen, &h), 0);
	assert_int_equal(h.op, FGW_SMP_OP_WRITE_RSP);
	assert_int_equal(h.version, FGW_SMP_V2);
	assert_int_equal(h.seq, 0x2a);
	assert_int_equal(fgw_smp_rsp_decode(p, n, &st, NULL), 0);
	assert_true(fgw_smp_status_ok(&st));
	assert_false(st.has_rc);
	assert_int_equal(fgw_smp_echo_decode(p, n, &text), 0);
	assert_string_equal(text, "hi");
	free(text);
	free(g);

	g = golden_load("echo-rsp-rc-rsn", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_rsp_decode(p, n, &st, NULL), 0);
	assert_false(fgw_smp_status_ok(&st));
	assert_int_equal(st.rc, 3);
	assert_string_equal(st.rsn, "bad");
	assert_string_equal(fgw_smp_status_format(&st, buf, sizeof(buf)),
			    "rc 3 EINVAL (invalid argument): 'bad'");
	assert_int_equal(fgw_smp_echo_decode(p, n, &text), -ENODATA);
	free(g);

	g = golden_load("echo-rsp-legacy-rc0", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_rsp_decode(p, n, &st, NULL), 0);
	assert_true(st.has_rc);
	assert_true(fgw_smp_status_ok(&st));
	assert_int_equal(fgw_smp_echo_decode(p, n, &text), 0);
	assert_string_equal(text, "ok");
	free(text);
	free(g);

	g = golden_load("upload-rsp-v2-no-free-slot", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_rsp_decode(p, n, &st, NULL), 0);
	assert_false(fgw_smp_status_ok(&st));
	assert_true(st.has_err);
	assert_int_equal(st.err_group, 1);
	assert_int_equal(st.err_rc, 9);
	assert_string_equal(fgw_smp_group_rc_to_string(st.err_group, st.err_rc), "NO_FREE_SLOT");
	assert_non_null(
	    strstr(fgw_smp_status_format(&st, buf, sizeof(buf)), "image error 9 NO_FREE_SLOT"));
	free(g);

	g = golden_load("upload-rsp-v1-rc6", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_hdr_decode(g, glen, &h), 0);
	assert_int_equal(h.version, FGW_SMP_V1);
	assert_int_equal(fgw_smp_rsp_decode(p, n, &st, NULL), 0);
	assert_int_equal(st.rc, FGW_SMP_RC_EBADSTATE);
	assert_string_equal(fgw_smp_rc_to_string(st.rc), "EBADSTATE");
	free(g);
}

struct rc_case {
	uint16_t group, rc;
	const char *name;
};

static void test_error_tables(void **state)
{
	char buf[128];
	static const struct rc_case cases[] = {
	    {1, 0, "OK"},
	    {1, 3, "NO_IMAGE"},
	    {1, 9, "NO_FREE_SLOT"},
	    {1, 14, "INVALID_SLOT"},
	    {1, 15, "NO_FREE_MEMORY"},
	    {1, 22, "INVALID_IMAGE_HEADER"},
	    {1, 23, "INVALID_IMAGE_HEADER_MAGIC"},
	    {1, 27, "CURRENT_VERSION_IS_NEWER"},
	    {1, 28, "IMAGE_ALREADY_PENDING"},
	    {1, 32, "IMAGE_CONFIRMATION_DENIED"},
	    {1, 34, "ACTIVE_SLOT_NOT_KNOWN"},
	    {1, 35, "UNKNOWN_RC"},
	    {0, 2, "INVALID_FORMAT"},
	    {0, 3, "QUERY_YIELDS_NO_ANSWER"},
	    {0, 4, "RTC_NOT_SET"},
	    {0, 6, "QUERY_RESPONSE_VALUE_NOT_VALID"},
	    {63, 4, "FLASH_ERASE_FAILED"},
	    {9, 1, "UNKNOWN_RC"}, /* shell group: no table */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_string_equal(fgw_smp_group_rc_to_string(cases[i].group, cases[i].rc),
				    cases[i].name);
	}
	assert_string_equal(fgw_smp_rc_to_string(10), "EBUSY");
	assert_string_equal(fgw_smp_rc_to_string(12), "UNSUPPORTED_TOO_OLD");
	assert_string_equal(fgw_smp_rc_to_string(13), "UNSUPPORTED_TOO_NEW");
	assert_string_equal(fgw_smp_rc_to_string(300), "EPERUSER");
	assert_string_equal(fgw_smp_rc_to_string(-4), "UNKNOWN_RC");
	assert_string_equal(
	    fgw_smp_status_format(&(struct fgw_smp_status){.rc = 300}, buf, sizeof(buf)),
	    "rc 300 EPERUSER (application-defined error)");
	assert_string_equal(
	    fgw_smp_status_format(&(struct fgw_smp_status){.rc = -4}, buf, sizeof(buf)),
	    "rc -4 UNKNOWN_RC (unknown error code)");
	assert_string_equal(
	    fgw_smp_status_format(
		&(struct fgw_smp_status){.has_err = true, .err_group = 9, .err_rc = 1}, buf,
		sizeof(buf)),
	    "shell error 1 UNKNOWN_RC (unknown error code)");
	assert_true(fgw_smp_status_is_busy(&(struct fgw_smp_status){.rc = 10}));
}

static void test_params(void **state)
{
	struct fgw_smp_params pr = {0};
	struct fgw_smp_status st;
	size_t glen, n;
	uint8_t *g = golden_load("params-rsp-v2", &glen);
	const uint8_t *p = golden_payload(g, glen, &n);

	assert_int_equal(fgw_smp_params_decode(p, n, &pr), 0);
	assert_int_equal(pr.buf_size, 2475);
	assert_int_equal(pr.buf_count, 4);
	free(g);

	g = golden_load("params-rsp-v1-enotsup", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_rsp_decode(p, n, &st, NULL), 0);
	assert_int_equal(st.rc, FGW_SMP_RC_ENOTSUP);
	pr.buf_size = 77;
	assert_int_equal(fgw_smp_params_decode(p, n, &pr), -ENODATA);
	assert_int_equal(pr.buf_size, 77); /* untouched on failure */
	free(g);
}

static void test_upload_rsp(void **state)
{
	struct fgw_smp_upload_rsp u;
	size_t glen, n;
	uint8_t *g = golden_load("upload-rsp-off", &glen);
	const uint8_t *p = golden_payload(g, glen, &n);

	assert_int_equal(fgw_smp_rsp_decode(p, n, NULL, &u), 0);
	assert_true(u.has_off);
	assert_int_equal(u.off, 2053);
	assert_false(u.has_match);
	free(g);
	g = golden_load("upload-rsp-final-match", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_rsp_decode(p, n, NULL, &u), 0);
	assert_int_equal(u.off, 1024);
	assert_true(u.has_match);
	assert_true(u.match);
	free(g);
}

static void test_img_state(void **state)
{
	struct fgw_smp_img_state *st = calloc(1, sizeof(*st));
	const struct fgw_smp_img_slot *s;
	size_t glen, n;
	uint8_t *g = golden_load("img-state-rsp-2img", &glen);
	const uint8_t *p = golden_payload(g, glen, &n);

	assert_int_equal(fgw_smp_img_state_decode(p, n, st), 0);
	assert_int_equal(st->n_slots, 3);
	assert_true(st->has_split_status);
	assert_int_equal(st->split_status, 0);
	s = fgw_smp_img_state_find(st, 0, 0);
	assert_non_null(s);
	assert_string_equal(s->version, "1.2.3");
	assert_memory_equal(s->hash, H, 32);
	assert_true(s->bootable && s->confirmed && s->active);
	assert_false(s->pending || s->permanent);
	s = fgw_smp_img_state_find(st, 0, 1);
	assert_non_null(s);
	assert_string_equal(s->version, "1.3.0.7");
	assert_memory_equal(s->hash, H2, 32);
	assert_false(s->pending || s->confirmed || s->active || s->permanent);
	s = fgw_smp_img_state_find(st, 1, 1);
	assert_non_null(s);
	assert_true(s->pending && s->permanent);
	assert_null(fgw_smp_img_state_find(st, 1, 0)); /* net core slot 0: never listed */
	free(g);

	g = golden_load("img-state-rsp-frugal", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_img_state_decode(p, n, st), 0);
	assert_int_equal(st->n_slots, 1);
	assert_false(st->has_split_status);
	s = &st->slots[0];
	assert_int_equal(s->image, 0);
	assert_int_equal(s->slot, 0);
	assert_string_equal(s->version, "2.0.0.7");
	assert_true(s->active && s->confirmed);
	assert_false(s->bootable || s->pending || s->permanent); /* frugal: absent = false */
	free(g);
	free(st);
}

static void test_slot_info(void **state)
{
	struct fgw_smp_slot_info si;
	size_t glen, n;
	uint8_t *g = golden_load("img-slot-info-rsp", &glen);
	const uint8_t *p = golden_payload(g, glen, &n);

	assert_int_equal(fgw_smp_slot_info_decode(p, n, &si), 0);
	assert_int_equal(si.n_images, 2);
	assert_int_equal(si.images[0].image, 0);
	assert_int_equal(si.images[0].n_slots, 2);
	assert_int_equal(si.images[0].slots[1].slot, 1);
	assert_int_equal(si.images[0].slots[1].size, 0x76000);
	assert_true(si.images[0].slots[1].has_upload_image_id);
	assert_false(si.images[0].slots[0].has_upload_image_id);
	assert_true(si.images[0].has_max_image_size);
	assert_int_equal(si.images[0].max_image_size, 0x76000);
	assert_int_equal(si.images[1].image, 1);
	assert_int_equal(si.images[1].slots[0].size, 0x3a000);
	assert_false(si.images[1].has_max_image_size);
	free(g);
}

static void test_os_and_bootloader(void **state)
{
	struct fgw_smp_bootloader_info bi;
	char *out = NULL;
	size_t glen, n;
	uint8_t *g = golden_load("os-info-rsp", &glen);
	const uint8_t *p = golden_payload(g, glen, &n);

	assert_int_equal(fgw_smp_os_info_decode(p, n, &out), 0);
	assert_string_equal(out, "Zephyr unknown 3.7.0 nrf5340dk ");
	free(out);
	free(g);

	g = golden_load("bootloader-info-rsp-mode", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_bootloader_info_decode(p, n, &bi), 0);
	assert_true(bi.has_mode);
	assert_int_equal(bi.mode, FGW_MCUBOOT_MODE_OVERWRITE_ONLY);
	assert_true(bi.no_downgrade);
	assert_string_equal(fgw_mcuboot_mode_to_string(bi.mode), "overwrite-only");
	free(g);

	g = golden_load("bootloader-info-rsp-name", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_bootloader_info_decode(p, n, &bi), 0);
	assert_string_equal(bi.bootloader, "MCUboot");
	assert_false(bi.has_mode);
	assert_false(bi.no_downgrade);
	free(g);

	g = golden_load("bootloader-info-rsp-mode-unknown", &glen);
	p = golden_payload(g, glen, &n);
	assert_int_equal(fgw_smp_bootloader_info_decode(p, n, &bi), 0);
	assert_int_equal(bi.mode, -1);
	assert_string_equal(fgw_mcuboot_mode_to_string(bi.mode), "unknown");
	free(g);
}

/* ---- malformed bodies: each must be refused with the right error, never crash ---- */

struct bad_case {
	const char *what;
	uint8_t in[48];
	size_t len;
	int (*decode)(const uint8_t *, size_t);
	int err;
};

static int dec_status(const uint8_t *p, size_t n)
{
	struct fgw_smp_status st;
	return fgw_smp_rsp_decode(p, n, &st, NULL);
}
static int dec_upload(const uint8_t *p, size_t n)
{
	struct fgw_smp_upload_rsp u;
	return fgw_smp_rsp_decode(p, n, NULL, &u);
}
static int dec_state(const uint8_t *p, size_t n)
{
	static struct fgw_smp_img_state st;
	return fgw_smp_img_state_decode(p, n, &st);
}
static int dec_slot_info(const uint8_t *p, size_t n)
{
	struct fgw_smp_slot_info si;
	return fgw_smp_slot_info_decode(p, n, &si);
}
static int dec_text(const uint8_t *p, size_t n)
{
	char *text = NULL;
	int r = fgw_smp_text_field_decode(p, n, "version", &text);
	free(text);
	return r;
}
static int dec_params(const uint8_t *p, size_t n)
{
	struct fgw_smp_params pr;
	return fgw_smp_params_decode(p, n, &pr);
}

static const struct bad_case bad_cases[] = {
    {"empty", {0}, 0, dec_status, -EBADMSG},
    {"array not map", {0x80}, 1, dec_status, -EBADMSG},
    {"trailing byte", {0xa0, 0x00}, 2, dec_status, -EBADMSG},
    {"truncated map", {0xa1, 0x62, 'r', 'c'}, 4, dec_status, -EBADMSG},
    {"rc is text", {0xa1, 0x62, 'r', 'c', 0x61, 'x'}, 6, dec_status, -EBADMSG},
    {"err without rc",
     {0xa1, 0x63, 'e', 'r', 'r', 0xa1, 0x65, 'g', 'r', 'o', 'u', 'p', 0x01},
     13,
     dec_status,
     -EBADMSG},
    {"err group > 16 bit",
     {0xa1, 0x63, 'e', 'r', 'r', 0xa2, 0x65, 'g', 'r', 'o', 'u',
      'p',  0x1a, 0,   1,   0,	 0,    0x62, 'r', 'c', 0x01},
     21,
     dec_status,
     -EBADMSG},
    {"off negative", {0xa1, 0x63, 'o', 'f', 'f', 0x20}, 6, dec_upload, -EBADMSG},
    {"match not bool", {0xa1, 0x65, 'm', 'a', 't', 'c', 'h', 0x01}, 8, dec_upload, -EBADMSG},
    {"images not array", {0xa1, 0x66, 'i', 'm', 'a', 'g', 'e', 's', 0xa0}, 9, dec_state, -EBADMSG},
    {"state without images", {0xa1, 0x61, 'x', 0x80}, 4, dec_state, -ENODATA},
    {"slot info without images", {0xa0}, 1, dec_slot_info, -ENODATA},
    {"slot info images not array",
     {0xa1, 0x66, 'i', 'm', 'a', 'g', 'e', 's', 0x01},
     9,
     dec_slot_info,
     -EBADMSG},
    {"slot info of 5 images",
     {0xa1, 0x66, 'i', 'm', 'a', 'g', 'e', 's', 0x85, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0},
     14,
     dec_slot_info,
     -E2BIG},
    {"text field absent", {0xa1, 0x61, 'x', 0x61, 'y'}, 5, dec_text, -ENODATA},
    {"text field not text",
     {0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01},
     10,
     dec_text,
     -EBADMSG},
    {"slot entry without slot",
     {0xa1, 0x66, 'i', 'm', 'a', 'g', 'e', 's', 0x81, 0xa0},
     10,
     dec_state,
     -ENODATA},
    {"hash of 2 bytes",
     {0xa1, 0x66, 'i', 'm',  'a',  'g', 'e', 's', 0x81, 0xa2, 0x64, 's',
      'l',  'o',  't', 0x00, 0x64, 'h', 'a', 's', 'h',	0x42, 1,    2},
     24,
     dec_state,
     -EBADMSG},
    {"17 slots",
     {0xa1, 0x66, 'i',	'm',  'a',  'g',  'e',	's',  0x91, 0xa0, 0xa0, 0xa0, 0xa0,
      0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0},
     26,
     dec_state,
     -E2BIG},
    /* libcbor 0.8 would allocate the declared count before reading: refused up front */
    {"map claiming 2^32-1 pairs", {0xba, 0xff, 0xff, 0xff, 0xff, 0x00}, 6, dec_status, -EBADMSG},
    {"array claiming 2^31 items",
     {0xa1, 0x66, 'i', 'm', 'a', 'g', 'e', 's', 0x9a, 0x80, 0, 0, 0},
     13,
     dec_state,
     -EBADMSG},
    {"buf_size > 32 bit",
     {0xa2, 0x68, 'b', 'u', 'f',  '_', 's', 'i', 'z', 'e', 0x1b, 0,   0,   0,	1,
      0,    0,	  0,   0,   0x69, 'b', 'u', 'f', '_', 'c', 'o',	 'u', 'n', 't', 0x01},
     30,
     dec_params,
     -EBADMSG},
};

static void test_bad_bodies(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		printf("bad body: %s\n", bad_cases[i].what);
		assert_int_equal(bad_cases[i].decode(bad_cases[i].in, bad_cases[i].len),
				 bad_cases[i].err);
	}
}

/* ---- reassembler ---- */

struct pkts {
	size_t n;
	struct fgw_smp_hdr h[8];
	uint8_t payload[8][256];
	int err;
};

static void feed(struct fgw_smp_reasm *r, const uint8_t *f, size_t len, struct pkts *out)
{
	struct fgw_smp_hdr h;
	const uint8_t *p;
	int e;

	fgw_smp_reasm_feed(r, f, len);
	while ((e = fgw_smp_reasm_next(r, &h, &p)) > 0) {
		assert_true(out->n < 8);
		out->h[out->n] = h;
		memcpy(out->payload[out->n], p, h.len);
		out->n++;
	}
	if (e < 0)
		out->err = e;
}

static void test_reasm_split(void **state)
{
	struct fgw_smp_reasm *r;
	size_t glen;
	uint8_t *g = golden_load("img-state-rsp-2img", &glen);

	assert_int_equal(fgw_smp_reasm_new(1024, &r), 0);
	/* every frame size from 1 byte (header split too) to the whole packet */
	for (size_t fs = 1; fs <= glen; fs++) {
		struct pkts out = {0};

		for (size_t o = 0; o < glen; o += fs)
			feed(r, g + o, FGW_MIN(fs, glen - o), &out);
		assert_int_equal(out.err, 0);
		assert_int_equal(out.n, 1);
		assert_int_equal(out.h[0].len, glen - 8);
		assert_memory_equal(out.payload[0], g + 8, glen - 8);
	}
	fgw_smp_reasm_free(r);
	free(g);
}

static void test_reasm_packed(void **state)
{
	struct fgw_smp_reasm *r;
	size_t l1, l2, l3;
	uint8_t *a = golden_load("echo-rsp-v2", &l1);
	uint8_t *b = golden_load("upload-rsp-off", &l2);
	uint8_t *c = golden_load("params-rsp-v2", &l3);
	uint8_t all[512];
	struct pkts out = {0};

	memcpy(all, a, l1);
	memcpy(all + l1, b, l2);
	memcpy(all + l1 + l2, c, l3);
	assert_int_equal(fgw_smp_reasm_new(512, &r), 0);
	/* frame 1: A and the start of B's header; frame 2: the rest of B and all of C */
	feed(r, all, l1 + 3, &out);
	assert_int_equal(out.n, 1);
	feed(r, all + l1 + 3, l2 + l3 - 3, &out);
	assert_int_equal(out.err, 0);
	assert_int_equal(out.n, 3);
	assert_int_equal(out.h[0].seq, 0x2a);
	assert_int_equal(out.h[1].group, 1);
	assert_memory_equal(out.payload[1], b + 8, l2 - 8);
	assert_int_equal(out.h[2].id, 6);
	assert_memory_equal(out.payload[2], c + 8, l3 - 8);
	fgw_smp_reasm_free(r);
	free(a);
	free(b);
	free(c);
}

static void test_reasm_errors(void **state)
{
	static const uint8_t huge[] = {0x09, 0, 0x10, 0x00, 0, 0, 0, 6, 0xa0};
	static const uint8_t bad[] = {0xe9, 0, 0, 1, 0, 0, 0, 6, 0xa0};
	struct fgw_smp_reasm *r;
	struct pkts out = {0};
	size_t glen;
	uint8_t *g = golden_load("echo-rsp-v2", &glen);

	assert_int_equal(fgw_smp_reasm_new(64, &r), 0);
	feed(r, huge, sizeof(huge), &out);
	assert_int_equal(out.err, -EMSGSIZE);
	out.err = 0;
	/* a header with reserved bits set: dropped, the next frame starts afresh */
	feed(r, bad, sizeof(bad), &out);
	assert_int_equal(out.n, 0);
	assert_int_equal(out.err, -EBADMSG);
	out.err = 0;
	feed(r, g, glen, &out);
	assert_int_equal(out.err, 0);
	assert_int_equal(out.n, 1);
	/* reset drops a partial packet */
	feed(r, g, 9, &out);
	fgw_smp_reasm_reset(r);
	feed(r, g, glen, &out);
	assert_int_equal(out.n, 2);
	assert_int_equal(fgw_smp_reasm_new(4, &(struct fgw_smp_reasm *){NULL}), -EINVAL);
	fgw_smp_reasm_free(r);
	free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encoders),	 cmocka_unit_test(test_encoder_args),
	    cmocka_unit_test(test_hdr),		 cmocka_unit_test(test_echo_and_errors),
	    cmocka_unit_test(test_error_tables), cmocka_unit_test(test_params),
	    cmocka_unit_test(test_upload_rsp),	 cmocka_unit_test(test_img_state),
	    cmocka_unit_test(test_slot_info),	 cmocka_unit_test(test_os_and_bootloader),
	    cmocka_unit_test(test_bad_bodies),	 cmocka_unit_test(test_reasm_split),
	    cmocka_unit_test(test_reasm_packed), cmocka_unit_test(test_reasm_errors),
	};

	for (int i = 0; i < 32; i++)
		H2[i] = (uint8_t) (0x10 + i);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
