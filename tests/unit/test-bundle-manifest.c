/* Release manifest: every field validated, signatures, rotation, rollback and expiry. */
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

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const char good[] =
    "{\"schema\": 1, \"sequence\": 42, \"expires\": \"2100-01-01T00:00:00Z\",\n"
    " \"releases\": [\n"
    "  {\"id\": \"fw-1.2.3\", \"version\": \"1.2.3+4\",\n"
    "   \"bundle\": {\"url\": \"bundles/fw-1.2.3.zip\", \"sha256\": \"" SHA "\", \"size\": 1234},\n"
    "   \"targets\": {\"board\": \"nrf5340dk/nrf5340/cpuapp\", \"groups\": [\"canary\", "
    "\"lab\"]},\n"
    "   \"policy\": {\"mode\": \"test-confirm\", \"canary_percent\": 5,\n"
    "              \"max_failure_rate\": 0.1, \"max_concurrent\": 8}},\n"
    "  {\"id\": \"fw-b\", \"version\": \"2.0.0\",\n"
    "   \"bundle\": {\"url\": \"https://cdn.example.com/b.zip\", \"sha256\": \"" SHA
    "\", \"size\": 1},\n"
    "   \"targets\": {\"board\": \"thingy53\"}, \"policy\": {\"mode\": \"confirm\"},\n"
    "   \"future_field\": true}\n"
    " ]}\n";

static void test_good(void **state)
{
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;
	const struct fgw_manifest_release *r;

	assert_int_equal(fgw_manifest_parse(good, strlen(good), &m, &why), 0);
	assert_int_equal(m->schema, 1);
	assert_int_equal(m->sequence, 42);
	assert_int_equal(m->expires, 4102444800);
	assert_int_equal(m->n_releases, 2);
	r = &m->releases[0];
	assert_string_equal(r->id, "fw-1.2.3");
	assert_string_equal(r->version, "1.2.3+4");
	assert_int_equal(r->image_version.build, 4);
	assert_string_equal(r->bundle_url, "bundles/fw-1.2.3.zip");
	assert_string_equal(r->bundle_sha256_hex, SHA);
	assert_int_equal(r->bundle_sha256[0], 0x01);
	assert_int_equal(r->bundle_size, 1234);
	assert_string_equal(r->board, "nrf5340dk/nrf5340/cpuapp");
	assert_int_equal(r->n_groups, 2);
	assert_string_equal(r->groups[1], "lab");
	assert_string_equal(r->groups_json, "[\"canary\",\"lab\"]");
	assert_int_equal(r->policy.mode, FGW_ROLLOUT_MODE_TEST_CONFIRM);
	assert_int_equal(r->policy.canary_percent, 5);
	assert_int_equal(r->policy.max_concurrent, 8);
	assert_true(r->policy.max_failure_rate > 0.09 && r->policy.max_failure_rate < 0.11);
	r = &m->releases[1];
	assert_int_equal(r->n_groups, 0);
	assert_null(r->groups_json);
	assert_int_equal(r->policy.mode, FGW_ROLLOUT_MODE_CONFIRM);
	/* defaults filled in */
	assert_int_equal(r->policy.canary_percent, 10);
	assert_int_equal(r->policy.max_concurrent, 4);
	assert_non_null(strstr(r->policy_json, "\"mode\":\"confirm\""));
	fgw_manifest_free(m);
}

/* Each case replaces one substring of the good manifest. */
struct bad_case {
	const char *from, *to;
};

static const struct bad_case bad_cases[] = {
    {"\"schema\": 1", "\"schema\": 2"},
    {"\"schema\": 1,", ""},
    {"\"schema\": 1", "\"schema\": \"1\""},
    {"\"sequence\": 42", "\"sequence\": 0"},
    {"\"sequence\": 42", "\"sequence\": -3"},
    {"\"sequence\": 42", "\"sequence\": 4.5"},
    {"\"sequence\": 42", "\"sequence\": 1e300"},
    {"\"sequence\": 42", "\"sequence\": \"42\""},
    {"\"sequence\": 42,", ""},
    {"2100-01-01T00:00:00Z", "2100-01-01"},
    {"2100-01-01T00:00:00Z", "tomorrow"},
    {"2100-01-01T00:00:00Z", "2100-13-01T00:00:00Z"},
    {"2100-01-01T00:00:00Z", "2100-02-30T00:00:00Z"},
    {"2100-01-01T00:00:00Z", "2100-01-01T00:00:00"},
    {"\"releases\": [", "\"releases\": {\"x\": ["},
    {"\"id\": \"fw-1.2.3\"", "\"id\": \"\""},
    {"\"id\": \"fw-1.2.3\"", "\"id\": \"../etc\""},
    {"\"id\": \"fw-1.2.3\"", "\"id\": \"a b\""},
    {"\"id\": \"fw-1.2.3\"", "\"id\": 7"},
    {"\"id\": \"fw-b\"", "\"id\": \"fw-1.2.3\""}, /* duplicate id */
    {"\"version\": \"1.2.3+4\"", "\"version\": \"1.2.3-rc1\""},
    {"\"version\": \"1.2.3+4\",", ""},
    {"\"url\": \"bundles/fw-1.2.3.zip\"", "\"url\": \"\""},
    {"\"url\": \"bundles/fw-1.2.3.zip\"", "\"url\": \"a b.zip\""},
    {"\"sha256\": \"" SHA "\", \"size\": 1234", "\"sha256\": \"abc\", \"size\": 1234"},
    {"\"sha256\": \"" SHA "\", \"size\": 1234", "\"sha256\": \"" SHA "00\", \"size\": 1234"},
    {"\"size\": 1234", "\"size\": 0"},
    {"\"size\": 1234", "\"size\": 268435457"},
    {"\"size\": 1234", "\"size\": \"1234\""},
    {"\"board\": \"nrf5340dk/nrf5340/cpuapp\"", "\"board\": \"\""},
    {"\"board\": \"nrf5340dk/nrf5340/cpuapp\"", "\"board\": \"x;rm\""},
    {"[\"canary\", \"lab\"]", "[\"canary\", \"canary\"]"},
    {"[\"canary\", \"lab\"]", "[\"canary\", 3]"},
    {"[\"canary\", \"lab\"]", "\"canary\""},
    {"\"mode\": \"test-confirm\"", "\"mode\": \"yolo\""},
    {"\"mode\": \"test-confirm\",", ""},
    {"\"canary_percent\": 5", "\"canary_percent\": 101"},
    {"\"max_failure_rate\": 0.1", "\"max_failure_rate\": 1.5"},
    {"\"max_failure_rate\": 0.1", "\"max_failure_rate\": \"low\""},
    {"\"max_concurrent\": 8", "\"max_concurrent\": 0"},
    {"\"policy\": {\"mode\": \"confirm\"}", "\"policy\": null"},
    {"\"targets\": {\"board\": \"thingy53\"}, ", ""},
    {"\"sequence\": 42,", "\"sequence\": 42, \"sequence\": 43,"}, /* duplicate member */
    {" ]}\n", " ]} x"},						  /* trailing text */
    {"{\"schema\"", "[{\"schema\""},
    {"\"sequence\": 42,", "\"sequence\": 42, \"channel\": \"\","},
    {"\"sequence\": 42,", "\"sequence\": 42, \"channel\": \"eu prod\","},
    {"\"sequence\": 42,", "\"sequence\": 42, \"channel\": 7,"},
    {"\"max_concurrent\": 8", "\"max_concurrent\": 8, \"allow_downgrade\": \"no\""},
};

static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	char *out;

	assert_non_null(at);
	out = malloc(strlen(s) + strlen(to) + 1);
	sprintf(out, "%.*s%s%s", (int) (at - s), s, to, at + strlen(from));
	return out;
}

static void test_bad(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		_cleanup_free_ char *text = replace(good, bad_cases[i].from, bad_cases[i].to);
		struct fgw_manifest *m = NULL;
		struct fgw_reject why;
		int r = fgw_manifest_parse(text, strlen(text), &m, &why);

		if (r != -EBADMSG)
			fail_msg("case %zu ('%s' -> '%s') parsed: %d", i, bad_cases[i].from,
				 bad_cases[i].to, r);
		assert_int_equal(why.reason, FGW_REJECT_MALFORMED_MANIFEST);
		assert_non_null(why.detail);
		assert_null(m);
	}
}

static void test_bad_bytes(void **state)
{
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;
	char nul[] = "{\"schema\": 1}\0garbage";
	_cleanup_free_ char *big = calloc(1, FGW_MANIFEST_MAX_BYTES + 2);

	assert_int_equal(fgw_manifest_parse(nul, sizeof(nul) - 1, &m, &why), -EBADMSG);
	assert_int_equal(fgw_manifest_parse("", 0, &m, &why), -EBADMSG);
	assert_int_equal(fgw_manifest_parse("{", 1, &m, &why), -EBADMSG);
	memset(big, ' ', FGW_MANIFEST_MAX_BYTES + 1);
	assert_int_equal(fgw_manifest_parse(big, FGW_MANIFEST_MAX_BYTES + 1, &m, &why), -EBADMSG);
	/* an empty releases list is a valid manifest (nothing to roll out) */
	const char *empty = "{\"schema\":1,\"sequence\":1,\"expires\":\"2100-01-01T00:00:00Z\","
			    "\"releases\":[]}";
	assert_int_equal(fgw_manifest_parse(empty, strlen(empty), &m, &why), 0);
	assert_int_equal(m->n_releases, 0);
	fgw_manifest_free(m);
}

struct keys {
	struct fgw_key *a, *b, *a_pub, *ec;
};

static int keys_setup(void **state)
{
	struct keys *k = calloc(1, sizeof(*k));

	if (fgw_key_generate(FGW_KEY_TYPE_ED25519, &k->a) < 0 ||
	    fgw_key_generate(FGW_KEY_TYPE_ED25519, &k->b) < 0 ||
	    fgw_key_generate(FGW_KEY_TYPE_ECDSA_P256, &k->ec) < 0)
		return -1;
	/* public half of a through a file round trip */
	char dir[] = "/tmp/fgw-test-man-XXXXXX", path[64];
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/a.pub", dir);
	if (fgw_key_save(k->a, NULL, path) < 0 || fgw_key_load_file(path, &k->a_pub) < 0)
		return -1;
	unlink(path);
	rmdir(dir);
	*state = k;
	return 0;
}

static int keys_teardown(void **state)
{
	struct keys *k = *state;

	fgw_key_free(k->a);
	fgw_key_free(k->b);
	fgw_key_free(k->a_pub);
	fgw_key_free(k->ec);
	free(k);
	return 0;
}

static int verify(const char *json, const char *sig, struct fgw_key *const *keys, size_t n,
		  enum fgw_reject_reason *reason)
{
	struct fgw_reject why = {0};
	const struct fgw_key *used = NULL;
	int r = fgw_manifest_verify_signature(json, strlen(json), sig, strlen(sig), keys, n, &used,
					      &why);
	*reason = why.reason;
	if (r == 0)
		assert_non_null(used);
	return r;
}

static void test_signature(void **state)
{
	struct keys *k = *state;
	_cleanup_free_ char *sig_a = NULL, *sig_b = NULL, *bare = NULL, *two = NULL,
			    *other_id = NULL, *tampered = NULL;
	enum fgw_reject_reason why;
	char *space;

	assert_int_equal(fgw_manifest_sign(good, strlen(good), k->a, &sig_a), 0);
	assert_int_equal(fgw_manifest_sign(good, strlen(good), k->b, &sig_b), 0);
	assert_int_equal(fgw_manifest_sign(good, strlen(good), k->a_pub, &bare), -EINVAL);
	assert_int_equal(fgw_manifest_sign(good, strlen(good), k->ec, &bare), -EINVAL);
	assert_non_null(strstr(sig_a, fgw_key_id(k->a)));

	/* trusted by its public half */
	assert_int_equal(verify(good, sig_a, &k->a_pub, 1, &why), 0);
	/* rotation: several trusted keys, any one verifies */
	struct fgw_key *both[] = {k->b, k->a_pub};
	assert_int_equal(verify(good, sig_a, both, 2, &why), 0);
	assert_int_equal(verify(good, sig_b, both, 2, &why), 0);
	/* a key we do not trust, named by its id: unknown key */
	assert_int_equal(verify(good, sig_b, &k->a_pub, 1, &why), -ENOKEY);
	assert_int_equal(why, FGW_REJECT_UNKNOWN_KEY);
	/* a bare signature (no id) from an untrusted key: bad signature */
	bare = strndup(sig_b, (size_t) (strchr(sig_b, ' ') - sig_b));
	assert_int_equal(verify(good, bare, &k->a_pub, 1, &why), -EBADMSG);
	assert_int_equal(why, FGW_REJECT_BAD_SIGNATURE);
	/* a bare signature from the trusted key is fine */
	free(bare);
	bare = strndup(sig_a, (size_t) (strchr(sig_a, ' ') - sig_a));
	assert_int_equal(verify(good, bare, &k->a_pub, 1, &why), 0);
	/* a changed manifest byte: bad signature */
	tampered = strdup(good);
	tampered[strlen(tampered) - 3] = ' ';
	assert_int_equal(verify(tampered, sig_a, &k->a_pub, 1, &why), -EBADMSG);
	assert_int_equal(why, FGW_REJECT_BAD_SIGNATURE);
	/* a valid signature with a forged id claiming the trusted key: still checked */
	space = strchr(sig_b, ' ');
	assert_true(
	    asprintf(&other_id, "%.*s %s\n", (int) (space - sig_b), sig_b, fgw_key_id(k->a)) > 0);
	assert_int_equal(verify(good, other_id, &k->a_pub, 1, &why), -EBADMSG);
	assert_int_equal(why, FGW_REJECT_BAD_SIGNATURE);
	/* two lines, during a rotation: the old key's line, then the new one's */
	assert_true(asprintf(&two, "%s\r\n%s", sig_b, sig_a) > 0);
	assert_int_equal(verify(good, two, &k->a_pub, 1, &why), 0);
	/* no trusted keys at all */
	assert_int_equal(verify(good, sig_a, NULL, 0, &why), -ENOKEY);
	/* malformed signature files */
	const char *bad_sigs[] = {"",	  "\n\n",     "not-base64!",
				  "QUJD", "QUJD x y", "QUJDRA== ed25519:00"};
	for (size_t i = 0; i < ARRAY_SIZE(bad_sigs); i++) {
		int r = verify(good, bad_sigs[i], &k->a_pub, 1, &why);
		assert_true(r == -EBADMSG || r == -ENOKEY);
	}
}

static void test_check(void **state)
{
	struct fgw_manifest m = {.schema = 1, .sequence = 10, .expires = 1000};
	struct fgw_reject why;

	assert_int_equal(fgw_manifest_check(&m, 9, 999, &why), 0);
	assert_int_equal(fgw_manifest_check(&m, 10, 999, &why), -ESTALE);
	assert_int_equal(why.reason, FGW_REJECT_ROLLBACK);
	assert_int_equal(fgw_manifest_check(&m, 11, 999, &why), -ESTALE);
	assert_int_equal(fgw_manifest_check(&m, 9, 1000, &why), -ETIME);
	assert_int_equal(why.reason, FGW_REJECT_EXPIRED);
	assert_string_equal(fgw_reject_reason_to_string(FGW_REJECT_ROLLBACK), "rollback");
	for (int i = 0; i < _FGW_REJECT_REASON_MAX; i++)
		assert_non_null(fgw_reject_reason_to_string(i));
}

static void test_allow_downgrade(void **state)
{
	_cleanup_free_ char *text = replace(good, "\"max_concurrent\": 8",
					    "\"max_concurrent\": 8, \"allow_downgrade\": false");
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;

	assert_int_equal(fgw_manifest_parse(text, strlen(text), &m, &why), 0);
	assert_false(m->releases[0].policy.allow_downgrade);
	assert_non_null(strstr(m->releases[0].policy_json, "\"allow_downgrade\":false"));
	assert_true(m->releases[1].policy.allow_downgrade);
	fgw_manifest_free(m);
}

static void test_channel(void **state)
{
	_cleanup_free_ char *text =
	    replace(good, "\"sequence\": 42,", "\"sequence\": 42, \"channel\": \"eu-prod.2\",");
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;

	assert_int_equal(fgw_manifest_parse(text, strlen(text), &m, &why), 0);
	assert_string_equal(m->channel, "eu-prod.2");
	assert_int_equal(fgw_manifest_check_channel(m, "eu-prod.2", &why), 0);
	assert_int_equal(fgw_manifest_check_channel(m, "eu-prod", &why), -EPERM);
	assert_int_equal(why.reason, FGW_REJECT_WRONG_CHANNEL);
	assert_int_equal(fgw_manifest_check_channel(m, NULL, &why), -EPERM);
	fgw_manifest_free(m);
	assert_int_equal(fgw_manifest_parse(good, strlen(good), &m, &why), 0);
	assert_null(m->channel);
	assert_int_equal(fgw_manifest_check_channel(m, NULL, &why), 0);
	assert_int_equal(fgw_manifest_check_channel(m, "", &why), 0);
	assert_true(m->releases[0].policy.allow_downgrade); /* the default */
	assert_int_equal(fgw_manifest_check_channel(m, "eu-prod", &why), -EPERM);
	assert_string_equal(fgw_reject_reason_to_string(why.reason), "wrong-channel");
	fgw_manifest_free(m);
}

struct time_case {
	const char *s;
	int err;
	int64_t t;
};

static const struct time_case time_cases[] = {
    {"1970-01-01T00:00:00Z", 0, 0},
    {"2026-03-01T12:30:00Z", 0, 1772368200},
    {"2026-03-01T12:30:00.123456Z", 0, 1772368200},
    {"2026-03-01T14:30:00+02:00", 0, 1772368200},
    {"2026-03-01T10:00:00-02:30", 0, 1772368200},
    {"2026-03-01t12:30:00z", 0, 1772368200},
    {"2024-02-29T00:00:00Z", 0, 1709164800},
    {"2023-02-29T00:00:00Z", -EINVAL, 0},
    {"2026-03-01T24:00:00Z", -EINVAL, 0},
    {"2026-03-01T12:60:00Z", -EINVAL, 0},
    {"2026-03-01 12:30:00Z", -EINVAL, 0},
    {"2026-03-01T12:30:00.Z", -EINVAL, 0},
    {"2026-03-01T12:30:00+0200", -EINVAL, 0},
    {"2026-3-01T12:30:00Z", -EINVAL, 0},
    {"2026-03-01T12:30:00Zjunk", -EINVAL, 0},
    {"", -EINVAL, 0},
};

static void test_rfc3339(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(time_cases); i++) {
		int64_t t = -1;
		int r = fgw_rfc3339_parse(time_cases[i].s, &t);
		if (r != time_cases[i].err || (r == 0 && t != time_cases[i].t))
			fail_msg("'%s': %d %lld", time_cases[i].s, r, (long long) t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_bad_bytes),
	    cmocka_unit_test_setup_teardown(test_signature, keys_setup, keys_teardown),
	    cmocka_unit_test(test_check),
	    cmocka_unit_test(test_channel),
	    cmocka_unit_test(test_allow_downgrade),
	    cmocka_unit_test(test_rfc3339),
	};
	fgw_log_set_level(LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
