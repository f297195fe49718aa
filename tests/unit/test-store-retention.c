/* Retention (store-retention.c) on a real SQLite file: by age, by count, never what is active. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "store.h"
#include "test-store-fixture.h"

#define DAY_MS (86400LL * 1000)
#define NOW (1000 * DAY_MS)

static int setup(void **state)
{
	/* r0 is an old release, r1 the one in force. */
	return store_fx_setup(
	    state, "retention",
	    "INSERT INTO releases (id, sequence, version, bundle_url, bundle_sha256, "
	    "bundle_size, state, created_at) VALUES "
	    "('r0', 1, '1.0.0', 'a.zip', 'aa', 10, 'superseded', 1), "
	    "('r1', 2, '1.1.0', 'b.zip', 'bb', 10, 'verified', 2)");
}

static int teardown(void **state)
{
	return store_fx_teardown(state);
}

/* @n events, the i-th (1-based) at @first_at + i ms. */
static void add_events(struct store_fx *f, int n, long long first_at)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d) "
		 "INSERT INTO events (at, kind, detail) SELECT %lld + i, 'test', i FROM c",
		 n, first_at);
	raw_exec(f->path, sql);
}

/* Calls fgw_store_prune() until nothing is left to do; checks each call stays in @batch. */
static int prune_all(struct store_fx *f, const struct fgw_store_retention *rt, unsigned batch,
		     struct fgw_store_pruned *sum)
{
	struct fgw_store_pruned p;
	int calls = 0;

	*sum = (struct fgw_store_pruned){0};
	do {
		assert_int_equal(fgw_store_prune(f->s, rt, NOW, batch, &p), 0);
		assert_true(p.events <= batch && p.jobs <= batch && p.devices <= batch);
		sum->events += p.events;
		sum->jobs += p.jobs;
		sum->devices += p.devices;
		assert_true(++calls < 1000);
	} while (p.events + p.jobs + p.devices > 0);
	return calls;
}

static void test_events_by_age(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_retention rt = {.events_max_age_ms = 30 * DAY_MS};
	struct fgw_store_pruned sum;

	add_events(f, 250, NOW - 40 * DAY_MS); /* older than 30 days */
	add_events(f, 50, NOW - 10 * DAY_MS);
	/* 250 old ones in batches of 100: three calls delete, the fourth finds nothing. */
	assert_int_equal(prune_all(f, &rt, 100, &sum), 4);
	assert_int_equal(sum.events, 250);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events"), 50);
	assert_int_equal(raw_int(f->path, "SELECT min(at) FROM events"), NOW - 10 * DAY_MS + 1);
	assert_int_equal(fgw_store_integrity_check(f->s), 0);
}

static void test_events_by_count(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_retention rt = {.events_max = 300};
	struct fgw_store_pruned sum;

	add_events(f, 1000, NOW - DAY_MS);
	prune_all(f, &rt, 128, &sum);
	assert_int_equal(sum.events, 700);
	/* The newest 300 stay. */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events"), 300);
	assert_int_equal(raw_int(f->path, "SELECT min(CAST(detail AS INTEGER)) FROM events"), 701);
	/* Nothing to do under the limit; 0 keeps everything. */
	prune_all(f, &rt, 128, &sum);
	assert_int_equal(sum.events, 0);
	rt = (struct fgw_store_retention){0};
	add_events(f, 500, NOW - 500 * DAY_MS);
	prune_all(f, &rt, 128, &sum);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events"), 800);
}

/* A device last seen @days_ago, with a job of @release in @state finished @days_ago. */
static void add_device(struct store_fx *f, const char *addr, const char *transport, int days_ago,
		       const char *release, const char *state)
{
	char sql[1024];
	long long at = NOW - days_ago * DAY_MS;

	snprintf(
	    sql, sizeof(sql),
	    "INSERT INTO devices (address, transport, last_seen, created_at) "
	    "VALUES ('%s', '%s', %lld, 1); "
	    "INSERT INTO device_images (address, image, slot, read_at) VALUES ('%s', 0, 0, 1);",
	    addr, transport, at, addr);
	raw_exec(f->path, sql);
	if (!release)
		return;
	snprintf(sql, sizeof(sql),
		 "INSERT INTO jobs (address, release_id, state, created_at, updated_at, "
		 "finished_at) VALUES ('%s', '%s', '%s', 1, %lld, "
		 "CASE WHEN '%s' IN ('done', 'failed', 'skipped', 'reverted', 'superseded') "
		 "THEN %lld END); "
		 "INSERT INTO events (at, address, job_id, kind) VALUES (%lld, '%s', "
		 "last_insert_rowid(), 'job-state')",
		 addr, release, state, at, state, at, at, addr);
	raw_exec(f->path, sql);
}

static long long jobs_of(struct store_fx *f, const char *addr)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM jobs WHERE address = '%s'", addr);
	return raw_int(f->path, sql);
}

static bool device_kept(struct store_fx *f, const char *addr)
{
	struct fgw_store_device_rec d;

	return fgw_store_device_get(f->s, addr, &d) == 0;
}

static void test_jobs_by_age(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_retention rt = {.jobs_max_age_ms = 90 * DAY_MS};
	struct fgw_store_pruned sum;

	add_device(f, "C0:00:00:00:00:01", "ble", 100, "r0", "done");	   /* goes */
	add_device(f, "C0:00:00:00:00:02", "ble", 100, "r0", "failed");	   /* goes */
	add_device(f, "C0:00:00:00:00:03", "ble", 100, "r1", "done");	   /* in force */
	add_device(f, "C0:00:00:00:00:04", "ble", 10, "r0", "done");	   /* recent */
	add_device(f, "C0:00:00:00:00:05", "ble", 100, "r0", "uploading"); /* running */
	add_device(f, "C0:00:00:00:00:06", "ble", 100, "r1", "queued");	   /* not terminal */
	prune_all(f, &rt, 1, &sum);
	assert_int_equal(sum.jobs, 2);
	assert_int_equal(sum.devices, 0);
	assert_int_equal(jobs_of(f, "C0:00:00:00:00:01"), 0);
	assert_int_equal(jobs_of(f, "C0:00:00:00:00:02"), 0);
	assert_int_equal(jobs_of(f, "C0:00:00:00:00:03"), 1);
	assert_int_equal(jobs_of(f, "C0:00:00:00:00:04"), 1);
	assert_int_equal(jobs_of(f, "C0:00:00:00:00:05"), 1);
	assert_int_equal(jobs_of(f, "C0:00:00:00:00:06"), 1);
	/* Their events stay (the audit trail is pruned by its own rule), unlinked. */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE job_id IS NULL"), 2);
	assert_true(device_kept(f, "C0:00:00:00:00:01"));
}

static void test_devices_forgotten(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_retention rt = {.devices_max_age_ms = 365 * DAY_MS};
	struct fgw_store_pruned sum;

	add_device(f, "C0:00:00:00:00:01", "ble", 400, "r1", "done");	   /* goes */
	add_device(f, "C0:00:00:00:00:02", "ble", 400, NULL, NULL);	   /* goes */
	add_device(f, "C0:00:00:00:00:03", "ble", 400, "r1", "uploading"); /* active */
	add_device(f, "C0:00:00:00:00:04", "ble", 400, "r1", "queued");	   /* r1's queued job */
	add_device(f, "C0:00:00:00:00:05", "ble", 30, "r1", "done");	   /* seen lately */
	add_device(f, "udp:192.0.2.1:1337", "udp", 400, "r0", "done");	   /* configured */
	add_device(f, "C0:00:00:00:00:06", "ble", 400, NULL, NULL); /* enrolled by an operator */
	raw_exec(f->path, "UPDATE devices SET enrolled = 1 WHERE address = 'C0:00:00:00:00:06'");
	prune_all(f, &rt, 1, &sum);
	assert_int_equal(sum.devices, 2);
	assert_false(device_kept(f, "C0:00:00:00:00:01"));
	assert_false(device_kept(f, "C0:00:00:00:00:02"));
	assert_true(device_kept(f, "C0:00:00:00:00:03"));
	assert_true(device_kept(f, "C0:00:00:00:00:04"));
	assert_true(device_kept(f, "C0:00:00:00:00:05"));
	assert_true(device_kept(f, "udp:192.0.2.1:1337"));
	assert_true(device_kept(f, "C0:00:00:00:00:06"));
	/* Its slots and jobs went with it; nothing dangles. */
	assert_int_equal(jobs_of(f, "C0:00:00:00:00:01"), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM device_images WHERE address "
					  "NOT IN (SELECT address FROM devices)"),
			 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
	/* A device that comes back is simply new again. */
	assert_int_equal(fgw_store_device_seen(f->s, "C0:00:00:00:00:01", "ble", "x", NULL, NOW),
			 0);
	assert_true(device_kept(f, "C0:00:00:00:00:01"));
}

static void test_prune_errors(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_retention rt = {.events_max = 1};

	assert_int_equal(fgw_store_prune(f->s, &rt, NOW, 0, NULL), -EINVAL);
	assert_int_equal(fgw_store_prune(f->s, NULL, NOW, 10, NULL), -EINVAL);
	assert_int_equal(fgw_store_prune(f->s, &rt, NOW, 10, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_events_by_age, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_events_by_count, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_jobs_by_age, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_devices_forgotten, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prune_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
