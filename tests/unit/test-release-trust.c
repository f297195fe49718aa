/*
 * lib/release's promises about what it hands over and when it trusts a manifest (issue #18):
 * sealed images that nothing can change, expiry judged after every poll, the clock floor, and
 * the channel a manifest is bound to. The refusals and the cache are in test-release.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "release-fixture.h"

/* Every byte of every file in the cache inverted. */
static void rot_cache(struct fix *f)
{
	struct dirent *de;
	DIR *d = opendir(f->cache);

	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[512];
		FILE *fp;
		int c;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", f->cache, de->d_name);
		fp = fopen(path, "r+b");
		assert_non_null(fp);
		while ((c = fgetc(fp)) != EOF) {
			fseek(fp, -1, SEEK_CUR);
			fputc(c ^ 0xff, fp);
			fseek(fp, 0, SEEK_CUR);
		}
		fclose(fp);
	}
	closedir(d);
}

/*
 * Issue #18 item 3: the bytes uploaded are the bytes verified. What the fleet maps is a sealed
 * memfd: the cache rotting after verification changes nothing in it, and nobody, not even the
 * gateway, can write, grow, shrink or unseal it. Bytes after the TLV area are not signed:
 * they are not handed over at all.
 */
static void test_sealed_images(void **state)
{
	struct fix *f = *state;
	uint8_t buf[8192], sha[32];
	char sha_hex[65], url[32];
	uint64_t size;
	int seals;
	ssize_t n;
	void *p;

	make_bundle(f, "r1.zip", "1.0.0+1", C_TRAILING, sha_hex, &size);
	snprintf(url, sizeof(url), "r1.zip");
	const struct rel r1 = {"fw-1.0.0", "1.0.0+1", url, sha_hex, size, NULL};
	publish(f, 5, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_int_equal(f->n_verified, 1);
	assert_true(f->app_fd >= 0);
	assert_int_equal(f->app_trailing, 64);
	assert_int_equal(f->app_size, f->app_len - 64);

	rot_cache(f);
	assert_true(cache_has(f, sha_hex, ".zip"));

	seals = fcntl(f->app_fd, F_GET_SEALS);
	assert_int_equal(seals & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
			 F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
	assert_int_equal(pwrite(f->app_fd, "x", 1, 0), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(f->app_fd, 1), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(fcntl(f->app_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), -1);
	assert_int_equal(errno, EPERM);
	p = mmap(NULL, f->app_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->app_fd, 0);
	assert_true(p == MAP_FAILED);

	/* what a device would get: the verified image, to the end of its TLV area */
	assert_true(f->app_size <= sizeof(buf));
	n = pread(f->app_fd, buf, sizeof(buf), 0);
	assert_int_equal(n, (ssize_t) f->app_size);
	assert_memory_equal(buf, f->app, f->app_size);
	struct fgw_sha256_ctx *ctx;
	assert_int_equal(fgw_sha256_begin(&ctx), 0);
	assert_int_equal(fgw_sha256_update(ctx, buf, (size_t) n), 0);
	assert_int_equal(fgw_sha256_end(ctx, sha), 0);
	assert_memory_equal(sha, f->app_sha, 32);

	/* the rotten cache is found at the next start: fetched again, never handed over */
	source_stop(f);
	run_cycle(f);
	assert_int_equal(f->n_verified, 2);
	assert_false(f->restored[1]);
	n = pread(f->app_fd, buf, sizeof(buf), 0);
	assert_memory_equal(buf, f->app, f->app_size);
}

/*
 * Issue #18 item 2: `expires` of the manifest in force is judged after every poll, so a
 * manifest served unchanged past its expiry (replayed, or a frozen server) raises the alarm:
 * an event, the status the metric and health read. A newer manifest clears it.
 */
static void test_expiry_recheck(void **state)
{
	struct fix *f = *state;
	struct fgw_release_status st;
	char text[64];
	time_t until;

	const struct rel r1 = make_r1(f);
	publish(f, 5, 2, &r1, 1, f->a, false);
	until = time(NULL) + 2;
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	st = status_of(f);
	assert_int_equal(st.freshness, FGW_MANIFEST_FRESHNESS_FRESH);
	assert_int_equal(st.sequence, 5);
	assert_int_equal(st.polls[FGW_POLL_RESULT_ACCEPTED], 1);
	/* the same bytes, polled until their `expires` has passed: each poll re-judges them */
	while (status_of(f).freshness == FGW_MANIFEST_FRESHNESS_FRESH) {
		assert_true(time(NULL) <= until + 5);
		pace(f, 100);
		run_cycle(f);
		assert_string_equal(f->result, "unchanged");
	}
	st = status_of(f);
	assert_int_equal(st.freshness, FGW_MANIFEST_FRESHNESS_EXPIRED);
	assert_true(st.polls[FGW_POLL_RESULT_UNCHANGED] >= 1);
	query_text(f, "SELECT count(*) FROM events WHERE detail LIKE '%sequence 5 expired%'", text,
		   sizeof(text));
	assert_string_equal(text, "1");
	run_cycle(f); /* still expired: no second event */
	query_text(f, "SELECT count(*) FROM events WHERE detail LIKE '%sequence 5 expired%'", text,
		   sizeof(text));
	assert_string_equal(text, "1");

	publish(f, 6, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	assert_int_equal(status_of(f).freshness, FGW_MANIFEST_FRESHNESS_FRESH);
}

/* Before the clock floor (the build date by default) expiry is not judged at all. */
static void test_clock_untrusted(void **state)
{
	struct fix *f = *state;

	f->clock_floor = (int64_t) time(NULL) + 10 * 365 * 86400;
	const struct rel r1 = make_r1(f);
	publish(f, 5, -3600, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	assert_int_equal(status_of(f).freshness, FGW_MANIFEST_FRESHNESS_CLOCK_UNTRUSTED);
	assert_int_equal(f->n_verified, 1);
}

/*
 * Issue #18 item 4: a manifest is bound to its audience. Its signed `channel` must equal the
 * gateway's; one for another channel, or none when the gateway has one, is refused, and so
 * is one with a channel when the gateway has none.
 */
static void test_channel(void **state)
{
	struct fix *f = *state;
	struct fgw_release_status st;

	f->channel = "eu-prod";
	const struct rel r1 = make_r1(f);
	f->manifest_channel = "us-beta";
	publish(f, 5, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "rejected: wrong-channel");
	f->manifest_channel = NULL;
	publish(f, 5, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "rejected: wrong-channel");
	assert_int_equal(f->n_verified, 0);
	f->manifest_channel = "eu-prod";
	publish(f, 5, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	assert_int_equal(f->n_verified, 1);
	st = status_of(f);
	assert_int_equal(st.polls[FGW_POLL_RESULT_REJECTED], 2);
	assert_int_equal(st.polls[FGW_POLL_RESULT_ACCEPTED], 1);

	/* the gateway moved to no channel: even the manifest in force is refused now */
	source_stop(f);
	f->channel = NULL;
	run_cycle(f);
	assert_string_equal(f->result, "rejected: wrong-channel");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_sealed_images, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expiry_recheck, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_clock_untrusted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_channel, setup, teardown),
	};

	fgw_log_set_level(getenv("FGW_TEST_DEBUG") ? LOG_DEBUG : LOG_ERR);
	return cmocka_run_group_tests_name("release-trust", tests, NULL, NULL);
}
