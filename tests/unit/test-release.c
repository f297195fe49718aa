/*
 * lib/release end to end on a real loop, SQLite file and cache directory, with the
 * "server" a file:// directory (nginx runs the HTTP side in tests/release-it). Each refusal
 * of the issue has a case: it is recorded with its reason, and the release verified before
 * stays in force.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "release-fixture.h"

static void test_happy(void **state)
{
	struct fix *f = *state;
	char st[32], reason[256], text[64];

	publish_r1(f);
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	assert_int_equal(f->n_verified, 1);
	assert_string_equal(f->verified[0], "fw-1.0.0");
	assert_false(f->restored[0]);
	release_state(f, "fw-1.0.0", st, reason);
	assert_string_equal(st, "verified");
	assert_true(cache_has(f, f->r1_sha, ".zip"));
	assert_false(cache_has(f, f->r1_sha, ".part"));
	query_text(f, "SELECT sequence FROM manifest_state", text, sizeof(text));
	assert_string_equal(text, "5");
	query_text(f, "SELECT bundle_url FROM releases", text, sizeof(text));
	assert_non_null(strstr(text, "file:///"));
	query_text(f, "SELECT count(*) FROM events WHERE kind = 'release'", text, sizeof(text));
	assert_true(atoi(text) >= 2);

	/* the store never lowers the rollback guard, whoever asks */
	assert_int_equal(fgw_store_manifest_accept(f->store, 4, NULL, "x", 0), -ESTALE);
	query_text(f, "SELECT sequence FROM manifest_state", text, sizeof(text));
	assert_string_equal(text, "5");

	/* the same manifest again: nothing new */
	run_cycle(f);
	assert_string_equal(f->result, "unchanged");
	assert_int_equal(f->n_verified, 1);

	/* a restart finds it in the cache and announces it again */
	source_stop(f);
	run_cycle(f);
	assert_int_equal(f->n_verified, 2);
	assert_true(f->restored[1]);
	assert_string_equal(f->result, "unchanged");
}

struct refusal {
	const char *name;
	const char *reason;  /* expected reason */
	bool manifest_level; /* the manifest is refused, not a release */
	enum corrupt corrupt;
	int64_t seq, expires_in;
	int size_delta;	     /* declared size = actual + delta */
	bool bad_sha;	     /* declared sha of something else */
	bool untrusted;	     /* signed by key b */
	bool tamper;	     /* manifest changed after signing */
	const char *version; /* release version in the manifest (default 2.0.0+0) */
	const char *board;
};

static const struct refusal refusals[] = {
    {"bad signature", "bad-signature", true, C_NONE, 6, 86400, 0, false, false, true, NULL, NULL},
    {"unknown key", "unknown-key", true, C_NONE, 6, 86400, 0, false, true, false, NULL, NULL},
    {"rollback", "rollback", true, C_NONE, 4, 86400, 0, false, false, false, NULL, NULL},
    {"expired", "expired", true, C_NONE, 6, -60, 0, false, false, false, NULL, NULL},
    {"sha mismatch", "sha-mismatch", false, C_NONE, 6, 86400, 0, true, false, false, NULL, NULL},
    {"oversize", "oversize", false, C_NONE, 6, 86400, -100, false, false, false, NULL, NULL},
    {"short download", "size-mismatch", false, C_NONE, 6, 86400, 100, false, false, false, NULL,
     NULL},
    {"truncated zip", "bad-zip", false, C_TRUNCATE, 6, 86400, 0, false, false, false, NULL, NULL},
    {"zip ../ entry", "zip-path", false, C_DOTDOT, 6, 86400, 0, false, false, false, NULL, NULL},
    {"missing image", "missing-image", false, C_MISSING_NET, 6, 86400, 0, false, false, false, NULL,
     NULL},
    {"bad mcuboot magic", "bad-mcuboot-magic", false, C_MAGIC, 6, 86400, 0, false, false, false,
     NULL, NULL},
    {"tlv length past end", "bad-tlv", false, C_TLV_LEN, 6, 86400, 0, false, false, false, NULL,
     NULL},
    {"hash tlv mismatch", "hash-mismatch", false, C_HASH, 6, 86400, 0, false, false, false, NULL,
     NULL},
    {"bad image signature", "bad-image-signature", false, C_OTHER_KEY, 6, 86400, 0, false, false,
     false, NULL, NULL},
    {"version mismatch", "version-mismatch", false, C_NONE, 6, 86400, 0, false, false, false,
     "2.0.1", NULL},
    {"board mismatch", "board-mismatch", false, C_NONE, 6, 86400, 0, false, false, false, NULL,
     "thingy53"},
};

static void test_refusal(void **state)
{
	struct fix *f = *state;
	const struct refusal *c = f->param;
	char sha[65], st[32], reason[256], text[64];
	uint64_t size;

	publish_r1(f);
	run_cycle(f);
	assert_int_equal(f->n_verified, 1);

	make_bundle(f, "r2.zip", "2.0.0+0", c->corrupt, sha, &size);
	const struct rel r2 = {
	    "fw-2.0.0",
	    c->version ? c->version : "2.0.0+0",
	    "r2.zip",
	    c->bad_sha ? "abababababababababababababababababababababababababababababababab" : sha,
	    (uint64_t) ((int64_t) size + c->size_delta),
	    c->board,
	};
	publish(f, c->seq, c->expires_in, &r2, 1, c->untrusted ? f->b : f->a, c->tamper);
	run_cycle(f);

	if (c->manifest_level) {
		snprintf(text, sizeof(text), "rejected: %s", c->reason);
		assert_string_equal(f->result, text);
		release_state(f, "fw-2.0.0", st, reason);
		assert_string_equal(st, ""); /* never recorded */
		query_text(f, "SELECT sequence FROM manifest_state", text, sizeof(text));
		assert_string_equal(text, "5");
		query_text(f, "SELECT last_result FROM manifest_state", text, sizeof(text));
		assert_non_null(strstr(text, c->reason));
	} else {
		assert_string_equal(f->result, "accepted");
		release_state(f, "fw-2.0.0", st, reason);
		assert_string_equal(st, "rejected");
		if (strncmp(reason, c->reason, strlen(c->reason)) != 0)
			fail_msg("%s: reason '%s', want '%s'", c->name, reason, c->reason);
		assert_false(cache_has(f, sha, ".zip"));
		assert_false(cache_has(f, sha, ".part"));
	}
	/* the release verified before stays in force, and nothing new was announced */
	release_state(f, "fw-1.0.0", st, reason);
	assert_string_equal(st, "verified");
	assert_true(cache_has(f, f->r1_sha, ".zip"));
	assert_int_equal(f->n_verified, 1);

	/* and a refused release is not retried until a newer manifest lists it again */
	if (!c->manifest_level) {
		run_cycle(f);
		release_state(f, "fw-2.0.0", st, reason);
		assert_string_equal(st, "rejected");
		assert_int_equal(f->n_verified, 1);
	}
}

static void test_supersede_retry_prune(void **state)
{
	struct fix *f = *state;
	char sha2[65], st[32], reason[256], path[256];
	uint64_t size2;
	DIR *d;
	struct dirent *de;
	int n_files = 0;

	f->budget = 1; /* anything not in force goes */
	publish_r1(f);
	run_cycle(f);

	/* R2 published before its bundle is on the server: stays pending, then succeeds */
	make_bundle(f, "r2.zip", "2.0.0+0", C_NONE, sha2, &size2);
	snprintf(path, sizeof(path), "%s/r2.zip", f->srv);
	char hidden[256];
	snprintf(hidden, sizeof(hidden), "%s/r2.hidden", f->srv);
	assert_int_equal(rename(path, hidden), 0);
	const struct rel r2 = {"fw-2.0.0", "2.0.0", "r2.zip", sha2, size2, "nrf5340dk"};
	publish(f, 6, 86400, &r2, 1, f->a, false);
	run_cycle(f);
	release_state(f, "fw-2.0.0", st, reason);
	assert_string_equal(st, "pending");
	assert_int_equal(f->n_verified, 1);

	/* a wrong prefix left from an earlier attempt: resumed, mismatched, fetched afresh */
	snprintf(path, sizeof(path), "%s/%s.part", f->cache, sha2);
	write_all(path, "garbage-garbage-garbage", 23);
	snprintf(path, sizeof(path), "%s/r2.zip", f->srv);
	assert_int_equal(rename(hidden, path), 0);
	/* a file that is not the cache's must survive pruning */
	snprintf(path, sizeof(path), "%s/README", f->cache);
	write_all(path, "x", 1);
	run_cycle(f);
	assert_string_equal(f->result, "unchanged");
	release_state(f, "fw-2.0.0", st, reason);
	assert_string_equal(st, "verified");
	assert_int_equal(f->n_verified, 2);
	assert_string_equal(f->verified[1], "fw-2.0.0");
	/* R1 (same board) is superseded, and over budget its bundle is pruned */
	release_state(f, "fw-1.0.0", st, reason);
	assert_string_equal(st, "superseded");
	assert_false(cache_has(f, f->r1_sha, ".zip"));
	assert_true(cache_has(f, sha2, ".zip"));
	d = opendir(f->cache);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n_files++;
	closedir(d);
	assert_int_equal(n_files, 2); /* R2's zip and the README */
}

static void test_cache_rot(void **state)
{
	struct fix *f = *state;
	char path[256], st[32], reason[256];
	FILE *fp;

	publish_r1(f);
	run_cycle(f);
	source_stop(f);
	/* a flipped byte in the cached bundle: found at start, downloaded again */
	snprintf(path, sizeof(path), "%s/%s.zip", f->cache, f->r1_sha);
	fp = fopen(path, "r+b");
	fseek(fp, 100, SEEK_SET);
	fputc(0xee, fp);
	fclose(fp);
	run_cycle(f);
	assert_int_equal(f->n_verified, 2);
	assert_false(f->restored[1]);
	release_state(f, "fw-1.0.0", st, reason);
	assert_string_equal(st, "verified");

	/* the cache wiped entirely: downloaded again at the next start */
	source_stop(f);
	unlink(path);
	run_cycle(f);
	assert_int_equal(f->n_verified, 3);
	assert_true(cache_has(f, f->r1_sha, ".zip"));
}

static void test_bad_options(void **state)
{
	struct fix *f = *state;
	const char *keys[] = {f->boot_pub};
	const char *missing[] = {"/nonexistent.pem"};
	struct fgw_release_source_options o = {
	    .manifest_url = "file:///x/manifest.json",
	    .trusted_keys = keys,
	    .n_trusted_keys = 1,
	    .cache_dir = f->cache,
	};
	struct fgw_release_source *s = NULL;

	/* a manifest key must be Ed25519 */
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), -EINVAL);
	o.trusted_keys = missing;
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), -ENOENT);
	o.n_trusted_keys = 0;
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), -EINVAL);
	assert_null(s);
}

static void test_key_limit(void **state)
{
	struct fix *f = *state;
	const char *keys[FGW_MANIFEST_MAX_KEYS + 1];
	struct fgw_release_source_options o = {
	    .manifest_url = "file:///x/manifest.json",
	    .trusted_keys = keys,
	    .n_trusted_keys = FGW_MANIFEST_MAX_KEYS + 1,
	    .cache_dir = f->cache,
	};
	struct fgw_release_source *s = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		keys[i] = f->pub_a;
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), -EINVAL);
	assert_null(s);
	o.n_trusted_keys = FGW_MANIFEST_MAX_KEYS;
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), 0);
	s = fgw_release_source_free(s);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

int main(void)
{
	struct CMUnitTest tests[64] = {
	    cmocka_unit_test_setup_teardown(test_happy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_supersede_retry_prune, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache_rot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_limit, setup, teardown),
	};
	size_t n = 5;

	for (size_t i = 0; i < ARRAY_SIZE(refusals); i++)
		tests[n++] = (struct CMUnitTest){refusals[i].name, test_refusal, setup, teardown,
						 (void *) &refusals[i]};
	fgw_log_set_level(getenv("FGW_TEST_DEBUG") ? LOG_DEBUG : LOG_ERR);
	return _cmocka_run_group_tests("release", tests, n, NULL, NULL);
}
