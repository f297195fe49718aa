/*
 * The upload path of the SMP codec: the request written straight into the packet (checked by
 * the tests' own strict reader, upload-req.c, never by the codec itself), its size arithmetic,
 * and the one-pass reader of answers (fgw_smp_rsp_decode) on the forms a device may use.
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
#include "upload-req.h"

static const uint8_t H[32] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa,
			      0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5,
			      0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
static uint8_t H2[32];

/* The tests' own reader (upload-req.c) agrees with the hand-derived golden frame. */
static void test_upload_req_decode(void **state)
{
	struct upload_req q;
	size_t glen, n;
	uint8_t *g = golden_load("upload-req-first-image1", &glen);
	const uint8_t *p = golden_payload(g, glen, &n);

	assert_int_equal(upload_req_decode(p, n, &q), 0);
	assert_true(q.has_image && q.has_len && q.has_off && q.has_sha && q.has_data);
	assert_false(q.has_upgrade);
	assert_int_equal(q.image, 1);
	assert_int_equal(q.len, 300000);
	assert_int_equal(q.off, 0);
	assert_int_equal(q.sha_len, 32);
	assert_memory_equal(q.sha, H2, 32);
	assert_int_equal(q.data_len, 1);
	assert_string_equal(q.order, "ilosd");
	/* and refuses a length prefix longer than it needs (24 written as 0x18 0x18 is fine,
	 * 1 as 0x18 0x01 is not) */
	{
		uint8_t bad[] = {0xa1, 0x63, 'o', 'f', 'f', 0x18, 0x01};

		assert_int_equal(upload_req_decode(bad, sizeof(bad), &q), -1);
		bad[6] = 24;
		assert_int_equal(upload_req_decode(bad, sizeof(bad), &q), 0);
	}
	free(g);
}

/* The release policy forbids downgrades: the first chunk says "upgrade", later ones do not. */
static void test_upload_upgrade_flag(void **state)
{
	uint8_t data[100] = {0}, buf[256];
	struct fgw_smp_upload_chunk c = {
	    .total = 300000, .sha = H, .data = data, .data_len = sizeof(data), .upgrade = true};
	struct upload_req q;
	size_t len;

	assert_int_equal(fgw_smp_upload_encode(&c, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, fgw_smp_upload_overhead(&c, sizeof(data)) + sizeof(data));
	assert_int_equal(upload_req_decode(buf + 8, len - 8, &q), 0);
	assert_true(q.has_upgrade && q.upgrade);
	assert_string_equal(q.order, "losud");
	assert_ptr_equal(q.data, buf + len - sizeof(data));
	c.off = 1000;
	assert_int_equal(fgw_smp_upload_encode(&c, buf, sizeof(buf), &len), 0);
	assert_int_equal(upload_req_decode(buf + 8, len - 8, &q), 0);
	assert_false(q.has_upgrade);
	assert_string_equal(q.order, "od");
}

/* ---- upload overhead arithmetic must match the encoder exactly ---- */

static void test_upload_sizes(void **state)
{
	static const size_t packets[] = {40,  60,  69,	70,   100,  252,  253,	 255,  256,
					 300, 495, 498, 1024, 1472, 2475, 65535, 70000};
	static const uint64_t offs[] = {
	    0, 1, 23, 24, 255, 256, 65535, 65536, 4294967295ull, 4294967296ull};
	static const uint64_t totals[] = {1024, 300000, 8589934592ull};
	uint8_t *data = calloc(1, 70000), *pkt = malloc(80000);
	size_t checked = 0;

	assert_non_null(data);
	assert_non_null(pkt);
	for (size_t a = 0; a < sizeof(packets) / sizeof(packets[0]); a++)
		for (size_t b = 0; b < sizeof(offs) / sizeof(offs[0]); b++)
			for (size_t t = 0; t < sizeof(totals) / sizeof(totals[0]); t++)
				for (uint32_t img = 0; img < 2; img++)
					for (int sha = 0; sha < 2; sha++) {
						struct fgw_smp_upload_chunk c = {
						    .image = img,
						    .total = totals[t],
						    .off = offs[b],
						    .sha = sha ? H : NULL,
						    .data = data,
						};
						size_t d = fgw_smp_upload_max_data(&c, packets[a]);
						size_t len = 0;

						if (d == 0)
							continue;
						c.data_len = d;
						if (fgw_smp_upload_overhead(&c, d) + d >
						    8 + 65535) {
							/* beyond SMP's 16-bit length: refused */
							assert_int_equal(fgw_smp_upload_encode(
									     &c, pkt, 80000, &len),
									 -EMSGSIZE);
							continue;
						}
						assert_int_equal(
						    fgw_smp_upload_encode(&c, pkt, 80000, &len), 0);
						assert_true(len <= packets[a]);
						assert_int_equal(
						    len, fgw_smp_upload_overhead(&c, d) + d);
						/* exactly its room is enough, one byte less is not
						 */
						assert_int_equal(
						    fgw_smp_upload_encode(&c, pkt, len, &len), 0);
						assert_int_equal(
						    fgw_smp_upload_encode(&c, pkt, len - 1, &len),
						    -EMSGSIZE);
						/* one byte more no longer fits the packet */
						c.data_len = d + 1;
						if (fgw_smp_upload_encode(&c, pkt, 80000, &len) ==
						    0)
							assert_true(len > packets[a]);
						checked++;
					}
	assert_true(checked > 500);
	/* Android's figure: a first chunk (len/off small, sha, image 0) costs 8+1+5+4+4+38+... */
	{
		struct fgw_smp_upload_chunk c = {.total = 300000, .off = 0, .sha = H};

		/* 8 hdr + 1 map + "len"4+5 + "off"4+1 + "sha"4+2+32 + "data"5 + bstr head 3 = 69 */
		assert_int_equal(fgw_smp_upload_overhead(&c, 1000), 69);
		assert_int_equal(fgw_smp_upload_max_data(&c, 2475), 2475 - 69);
	}
	free(pkt);
	free(data);
}

/* ---- the one-pass answer reader ---- */

struct rsp_case {
	const char *what;
	uint8_t in[48];
	size_t len;
	int err;
	int64_t rc;
	bool has_off;
	uint64_t off;
	const char *rsn;
};

/* Forms zcbor and other encoders may use, and what must be refused. */
static const struct rsp_case rsp_cases[] = {
    {"indefinite map, off",
     {0xbf, 0x63, 'o', 'f', 'f', 0x19, 0x01, 0x00, 0xff},
     9,
     0,
     0,
     true,
     256,
     ""},
    {"first off wins",
     {0xa2, 0x63, 'o', 'f', 'f', 0x01, 0x63, 'o', 'f', 'f', 0x02},
     11,
     0,
     0,
     true,
     1,
     ""},
    {"unknown nested value skipped",
     {0xa2, 0x61, 'x', 0x82, 0xa1, 0x01, 0x9f, 0xff, 0xc1, 0x00, 0x62, 'r', 'c', 0x20},
     14,
     0,
     -1,
     false,
     0,
     ""},
    {"chunked rsn",
     {0xa1, 0x63, 'r', 's', 'n', 0x7f, 0x62, 'a', 'b', 0x61, 'c', 0xff},
     12,
     0,
     0,
     false,
     0,
     "abc"},
    {"int key skipped", {0xa2, 0x01, 0x02, 0x63, 'o', 'f', 'f', 0x00}, 8, 0, 0, true, 0, ""},
    {"off as text", {0xa1, 0x63, 'o', 'f', 'f', 0x61, '1'}, 7, -EBADMSG, 0, false, 0, ""},
    {"trailing byte", {0xa1, 0x63, 'o', 'f', 'f', 0x00, 0x00}, 7, -EBADMSG, 0, false, 0, ""},
    {"break outside", {0xa1, 0x61, 'x', 0xff}, 4, -EBADMSG, 0, false, 0, ""},
    {"count beyond payload", {0xbb, 0, 0, 0, 1, 0, 0, 0, 0}, 9, -EBADMSG, 0, false, 0, ""},
    {"broken UTF-8 key", {0xa1, 0x62, 0xc3, 0x28, 0x00}, 5, -EBADMSG, 0, false, 0, ""},
    {"one-byte tag 9 (libcbor refuses it)",
     {0xa1, 0x61, 'x', 0xc9, 0x00},
     5,
     -EBADMSG,
     0,
     false,
     0,
     ""},
    {"err without rc",
     {0xa1, 0x63, 'e', 'r', 'r', 0xa1, 0x65, 'g', 'r', 'o', 'u', 'p', 0x01},
     13,
     -EBADMSG,
     0,
     false,
     0,
     ""},
};

static void test_rsp_one_pass(void **state)
{
	for (size_t i = 0; i < sizeof(rsp_cases) / sizeof(rsp_cases[0]); i++) {
		const struct rsp_case *c = &rsp_cases[i];
		struct fgw_smp_status st;
		struct fgw_smp_upload_rsp up;

		printf("answer: %s\n", c->what);
		assert_int_equal(fgw_smp_rsp_decode(c->in, c->len, &st, &up), c->err);
		if (c->err)
			continue;
		assert_int_equal(st.rc, c->rc);
		assert_int_equal(up.has_off, c->has_off);
		assert_int_equal(up.off, c->off);
		assert_string_equal(st.rsn, c->rsn);
	}
}

/* Nesting deeper than any answer needs is refused, not recursed into without bound. */
static void test_rsp_depth(void **state)
{
	uint8_t deep[200];
	size_t n = 0;

	deep[n++] = 0xa1;
	deep[n++] = 0x61;
	deep[n++] = 'x';
	while (n < sizeof(deep) - 1)
		deep[n++] = 0x81;
	deep[n++] = 0x00;
	assert_int_equal(fgw_smp_rsp_decode(deep, n, NULL, NULL), -EBADMSG);
	/* 20 levels is fine */
	n = 3 + 20;
	deep[n++] = 0x00;
	assert_int_equal(fgw_smp_rsp_decode(deep, n, NULL, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_upload_req_decode), cmocka_unit_test(test_upload_upgrade_flag),
	    cmocka_unit_test(test_upload_sizes),      cmocka_unit_test(test_rsp_one_pass),
	    cmocka_unit_test(test_rsp_depth),
	};

	for (int i = 0; i < 32; i++)
		H2[i] = (uint8_t) (0x10 + i);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
