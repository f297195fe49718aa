/* Fleet records on a real SQLite file: devices, slots, jobs, events, rollout control. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "store-private.h"
#include "test-store-fixture.h"
#include "util.h"

static int setup(void **state)
{
	return store_fx_setup(state, "fleet", STORE_FX_R1_R2);
}

static int teardown(void **state)
{
	return store_fx_teardown(state);
}

static void test_devices(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_device_rec d;
	int rssi = -60;

	assert_int_equal(fgw_store_device_get(f->s, "AA:00:00:00:00:01", &d), -ENOENT);
	assert_int_equal(
	    fgw_store_device_seen(f->s, "AA:00:00:00:00:01", "ble", "dev-1", &rssi, 1000), 0);
	/* A later sighting without name/RSSI keeps them and moves last_seen. */
	assert_int_equal(fgw_store_device_seen(f->s, "AA:00:00:00:00:01", "ble", NULL, NULL, 2000),
			 0);
	assert_int_equal(fgw_store_device_set_probe(f->s, "AA:00:00:00:00:01", "nrf5340dk", 2), 0);
	assert_int_equal(fgw_store_device_set_group(f->s, "AA:00:00:00:00:01", "lab"), 0);
	assert_int_equal(fgw_store_device_get(f->s, "AA:00:00:00:00:01", &d), 0);
	assert_string_equal(d.name, "dev-1");
	assert_true(d.has_rssi);
	assert_int_equal(d.rssi, -60);
	assert_int_equal(d.last_seen, 2000);
	assert_string_equal(d.board, "nrf5340dk");
	assert_string_equal(d.grp, "lab");
	assert_int_equal(d.bootloader_mode, 2);
	assert_int_equal(fgw_store_device_set_probe(f->s, "AA:00:00:00:00:09", NULL, 1), -ENOENT);
	/* The transport column is checked by the schema. */
	assert_true(fgw_store_device_seen(f->s, "x", "serial", NULL, NULL, 1) < 0);
}

static int nslots;
static void count_slot(const struct fgw_store_image *img, void *ud)
{
	struct fgw_store_image *last = ud;
	*last = *img;
	nslots++;
}

static void test_images(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_image imgs[] = {
	    {0, 0, "1.0.0", "0a0b", FGW_STORE_IMG_ACTIVE | FGW_STORE_IMG_CONFIRMED},
	    {0, 1, "1.1.0", "0c0d", 0},
	    {1, 1, "1.1.0", "", FGW_STORE_IMG_PENDING},
	};
	struct fgw_store_image last;

	assert_int_equal(fgw_store_device_seen(f->s, "AA:00:00:00:00:02", "ble", NULL, NULL, 1), 0);
	assert_int_equal(fgw_store_device_images_set(f->s, "AA:00:00:00:00:02", imgs, 3, 5), 0);
	nslots = 0;
	assert_int_equal(
	    fgw_store_device_slots_foreach(f->s, "AA:00:00:00:00:02", count_slot, &last), 0);
	assert_int_equal(nslots, 3);
	assert_int_equal(last.image, 1);
	assert_string_equal(last.hash, "");
	/* Replaced, not merged. */
	assert_int_equal(fgw_store_device_images_set(f->s, "AA:00:00:00:00:02", imgs, 1, 6), 0);
	nslots = 0;
	fgw_store_device_slots_foreach(f->s, "AA:00:00:00:00:02", count_slot, &last);
	assert_int_equal(nslots, 1);
	/* Unknown device: the foreign key refuses, and the old rows are untouched. */
	assert_true(fgw_store_device_images_set(f->s, "AA:00:00:00:00:99", imgs, 2, 7) < 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM device_images"), 1);
}

static void test_jobs(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_job_rec j, j2;
	bool created;

	assert_int_equal(fgw_store_device_seen(f->s, "AA:00:00:00:00:03", "ble", NULL, NULL, 1), 0);
	assert_int_equal(
	    fgw_store_job_ensure(f->s, "AA:00:00:00:00:03", "r1", true, 100, &j, &created), 0);
	assert_true(created);
	assert_string_equal(j.state, "queued");
	assert_true(j.canary);
	assert_int_equal(j.image, -1);
	assert_int_equal(
	    fgw_store_job_ensure(f->s, "AA:00:00:00:00:03", "r1", false, 200, &j2, &created), 0);
	assert_false(created);
	assert_int_equal(j2.id, j.id);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs"), 1);

	assert_int_equal(
	    fgw_store_job_set_state(f->s, j.id, "queued", "connecting", NULL, NULL, 300), 0);
	/* Wrong "from": nothing written. */
	assert_int_equal(fgw_store_job_set_state(f->s, j.id, "queued", "probing", NULL, NULL, 310),
			 -ESTALE);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE at = 310"), 0);
	assert_int_equal(
	    fgw_store_job_set_state(f->s, j.id, "connecting", "uploading", NULL, "image 1", 320),
	    0);
	assert_int_equal(fgw_store_job_set_progress(f->s, j.id, 1, 4096, 330), 0);
	assert_int_equal(fgw_store_job_set_retry(f->s, j.id, 2, 9999, 340), 0);
	assert_int_equal(fgw_store_job_set_plan(f->s, j.id, 3, 350), 0);
	assert_int_equal(fgw_store_job_set_results(f->s, j.id, "verified", "unverified", 360), 0);
	assert_int_equal(
	    fgw_store_job_set_state(f->s, j.id, "uploading", "failed", "image rejected", NULL, 400),
	    0);
	assert_int_equal(fgw_store_job_get(f->s, j.id, &j2), 0);
	assert_string_equal(j2.state, "failed");
	assert_string_equal(j2.reason, "image rejected");
	assert_int_equal(j2.image, 1);
	assert_int_equal(j2.offset, 4096);
	assert_int_equal(j2.attempts, 2);
	assert_int_equal(j2.next_attempt_at, 9999);
	assert_int_equal(j2.images_mask, 3);
	assert_string_equal(j2.app_result, "verified");
	assert_string_equal(j2.net_result, "unverified");
	assert_int_equal(j2.started_at, 300);
	assert_int_equal(j2.finished_at, 400);
	/* A retry: back to the queue without the old reason or finish time. */
	assert_int_equal(
	    fgw_store_job_set_state(f->s, j.id, "failed", "queued", NULL, "retry", 500), 0);
	assert_int_equal(fgw_store_job_get(f->s, j.id, &j2), 0);
	assert_string_equal(j2.reason, "");
	assert_int_equal(j2.finished_at, 0);
	assert_int_equal(
	    fgw_store_job_set_state(f->s, j.id, "queued", "failed", "again", NULL, 600), 0);
	/* created + 5 transitions; the refused one left no trace */
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE kind = 'job-state'"),
			 6);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE to_state = 'probing'"),
			 0);
	assert_int_equal(fgw_store_job_get(f->s, 12345, &j2), -ENOENT);
	/* No such job: not a stale state, and no event written for it. */
	assert_int_equal(
	    fgw_store_job_set_state(f->s, 12345, "queued", "connecting", NULL, NULL, 1), -ENOENT);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE job_id = 12345"), 0);
	assert_int_equal(fgw_store_job_set_progress(f->s, 12345, 0, 1, 1), -ENOENT);
	/* A job needs a known device and release. */
	assert_true(fgw_store_job_ensure(f->s, "AA:00:00:00:00:03", "nope", false, 1, &j2, NULL) <
		    0);
}

static int collect(const struct fgw_store_job_rec *job, void *ud)
{
	(*(int *) ud)++;
	return 0;
}

static int stop_at_first(const struct fgw_store_job_rec *job, void *ud)
{
	(*(int *) ud)++;
	return -EINTR;
}

static void test_supersede_and_foreach(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_job_rec a, b, c;
	int n;

	for (int i = 0; i < 3; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "AA:00:00:00:01:%02d", i);
		assert_int_equal(fgw_store_device_seen(f->s, addr, "ble", NULL, NULL, 1), 0);
	}
	assert_int_equal(fgw_store_job_ensure(f->s, "AA:00:00:00:01:00", "r1", false, 1, &a, NULL),
			 0);
	assert_int_equal(fgw_store_job_ensure(f->s, "AA:00:00:00:01:01", "r1", false, 1, &b, NULL),
			 0);
	assert_int_equal(fgw_store_job_ensure(f->s, "AA:00:00:00:01:02", "r2", false, 1, &c, NULL),
			 0);
	assert_int_equal(fgw_store_job_set_state(f->s, b.id, "queued", "uploading", NULL, NULL, 2),
			 0);
	n = 0;
	assert_int_equal(fgw_store_jobs_foreach(f->s, NULL, true, collect, &n), 0);
	assert_int_equal(n, 3);
	/* Only the queued job of the older release is superseded; the running one finishes. */
	assert_int_equal(fgw_store_jobs_supersede(f->s, "r2", 10), 1);
	assert_int_equal(fgw_store_job_get(f->s, a.id, &a), 0);
	assert_string_equal(a.state, "superseded");
	assert_int_equal(a.finished_at, 10);
	assert_int_equal(fgw_store_job_get(f->s, b.id, &b), 0);
	assert_string_equal(b.state, "uploading");
	n = 0;
	assert_int_equal(fgw_store_jobs_foreach(f->s, "r1", true, collect, &n), 0);
	assert_int_equal(n, 1);
	n = 0;
	assert_int_equal(fgw_store_jobs_foreach(f->s, NULL, false, stop_at_first, &n), -EINTR);
	assert_int_equal(n, 1);
	assert_int_equal(
	    raw_int(f->path, "SELECT count(*) FROM events WHERE to_state = 'superseded'"), 1);
}

struct create_ctx {
	int offered, canaries;
};

/* Takes devices in group "g1"; the first one taken is a canary. */
static int take_g1(struct fgw_store_job_new *jn, void *ud)
{
	struct create_ctx *c = ud;

	c->offered++;
	if (!jn->grp || strcmp(jn->grp, "g1") != 0)
		return 0;
	jn->canary = c->canaries++ == 0;
	return 1;
}

static int stop_at_second(struct fgw_store_job_new *jn, void *ud)
{
	int *n = ud;

	return ++*n == 2 ? -EINTR : 1;
}

static void test_jobs_create(void **state)
{
	struct store_fx *f = *state;
	struct create_ctx c = {0};
	int n = 0;

	for (int i = 0; i < 5; i++) {
		char a[32];
		snprintf(a, sizeof(a), "AA:00:00:00:00:%02X", i);
		assert_int_equal(fgw_store_device_seen(f->s, a, "ble", NULL, NULL, 1), 0);
		assert_int_equal(fgw_store_device_set_group(f->s, a, i < 3 ? "g1" : "g2"), 0);
	}
	/* A failing callback rolls everything back. */
	assert_int_equal(fgw_store_jobs_create(f->s, "r1", 10, stop_at_second, &n), -EINTR);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs"), 0);
	assert_int_equal(fgw_store_jobs_create(f->s, "r1", 10, take_g1, &c), 3);
	assert_int_equal(c.offered, 5);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs WHERE release_id = 'r1' "
					  "AND state = 'queued'"),
			 3);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs WHERE canary = 1"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE kind = 'job-state' "
					  "AND to_state = 'queued'"),
			 3);
	/* Only devices without a job for the release are offered again. */
	c = (struct create_ctx){0};
	assert_int_equal(fgw_store_jobs_create(f->s, "r1", 11, take_g1, &c), 0);
	assert_int_equal(c.offered, 2);
}

static int nested_foreach(const struct fgw_store_job_rec *job, void *ud)
{
	struct store_fx *f = ud;
	struct fgw_store_job_rec rec;

	/* The same statement is in use by the caller: the store must hand out another. */
	assert_int_equal(fgw_store_job_get(f->s, job->id, &rec), 0);
	assert_string_equal(rec.address, job->address);
	return 0;
}

static int count_job(const struct fgw_store_job_rec *job, void *ud)
{
	(*(int *) ud)++;
	return 0;
}

static int reenter(const struct fgw_store_job_rec *job, void *ud)
{
	struct store_fx *f = ud;
	int n = 0;

	assert_int_equal(fgw_store_jobs_foreach(f->s, NULL, false, count_job, &n), 0);
	assert_int_equal(n, 2);
	return 0;
}

static void test_statement_cache(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_device_rec d;
	struct fgw_store_job_rec j;
	uint64_t before;
	sqlite3 *db;
	int log = -1, ckpt = -1;

	assert_int_equal(fgw_store_device_seen(f->s, "AA:00:00:00:00:01", "ble", "x", NULL, 1), 0);
	assert_int_equal(fgw_store_device_seen(f->s, "AA:00:00:00:00:02", "ble", "y", NULL, 1), 0);
	assert_int_equal(fgw_store_job_ensure(f->s, "AA:00:00:00:00:01", "r1", false, 2, &j, NULL),
			 0);
	assert_int_equal(fgw_store_job_ensure(f->s, "AA:00:00:00:00:02", "r1", false, 2, &j, NULL),
			 0);
	assert_int_equal(fgw_store_device_get(f->s, "AA:00:00:00:00:01", &d), 0);
	before = f->s->n_prepared;
	for (int i = 0; i < 50; i++) {
		assert_int_equal(fgw_store_device_get(f->s, "AA:00:00:00:00:01", &d), 0);
		assert_int_equal(fgw_store_device_get(f->s, "BB:00:00:00:00:01", &d), -ENOENT);
		assert_int_equal(
		    fgw_store_device_seen(f->s, "AA:00:00:00:00:02", "ble", NULL, NULL, 10 + i), 0);
	}
	/* The SELECT and the upsert were compiled once each, not 150 times. */
	assert_true(f->s->n_prepared - before <= 1);
	assert_int_equal(fgw_store_device_get(f->s, "AA:00:00:00:00:02", &d), 0);
	assert_int_equal(d.last_seen, 59);
	/* A cached statement held by a caller is not handed out twice. */
	assert_int_equal(fgw_store_jobs_foreach(f->s, NULL, false, nested_foreach, f), 0);
	assert_int_equal(fgw_store_jobs_foreach(f->s, NULL, false, reenter, f), 0);
	/* Statements are reset after use: no read snapshot pins the WAL, it checkpoints whole. */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM jobs", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(
	    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &ckpt),
	    SQLITE_OK);
	assert_int_equal(log, 0);
	sqlite3_close(db);
	/* More distinct statements than the cache holds: evicted ones still work. */
	for (int i = 0; i < FGW_STORE_STMT_CACHE + 8; i++) {
		char sql[96];
		sqlite3_stmt *st;
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		assert_int_equal(fgw_store__prepare(f->s, sql, &st), 0);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(st, 0), i);
		fgw_store__finish(f->s, st);
	}
	assert_int_equal(fgw_store_device_get(f->s, "AA:00:00:00:00:01", &d), 0);
}

/* How many OpenEphemeral steps SQLite compiles @sql to: each builds a b-tree per execution. */
static int ephemeral_tables(struct store_fx *f, const char *sql)
{
	char explain[1024];
	sqlite3_stmt *st;
	int n = 0;

	snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
	assert_int_equal(fgw_store__prepare(f->s, explain, &st), 0);
	while (sqlite3_step(st) == SQLITE_ROW)
		n += strcmp((const char *) sqlite3_column_text(st, 1), "OpenEphemeral") == 0;
	fgw_store__finish(f->s, st);
	return n;
}

static const char *const job_states[] = {
    "queued",	 "connecting", "probing", "uploading", "marking",  "resetting", "rebooting",
    "verifying", "confirming", "done",	  "skipped",   "reverted", "failed",	"superseded"};

/* Migration 0006: the state and security CHECKs hold as before, without a b-tree per use. */
static void test_cheap_checks(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_job_rec j;

	assert_int_equal(fgw_store_device_seen(f->s, "AA:00:00:00:00:07", "ble", NULL, NULL, 1), 0);
	assert_int_equal(fgw_store_job_ensure(f->s, "AA:00:00:00:00:07", "r1", false, 2, &j, NULL),
			 0);
	assert_int_equal(ephemeral_tables(f, "UPDATE jobs SET state = ?2 WHERE id = ?1"), 0);
	assert_int_equal(ephemeral_tables(f, "INSERT INTO devices (address, created_at) "
					     "VALUES ('AA:00:00:00:00:08', 1)"),
			 0);
	/* Every state the fleet uses passes, anything else is refused and changes nothing. */
	for (size_t i = 0; i < ARRAY_SIZE(job_states); i++) {
		char sql[160];
		snprintf(sql, sizeof(sql), "UPDATE jobs SET state = '%s' WHERE id = %lld",
			 job_states[i], (long long) j.id);
		assert_int_equal(fgw_store__exec(f->s, sql), 0);
	}
	assert_int_equal(fgw_store_job_set_state(f->s, j.id, "superseded", "bogus", NULL, NULL, 3),
			 -EEXIST);
	assert_int_equal(fgw_store__exec(f->s, "UPDATE jobs SET state = 'Queued'"), -EEXIST);
	assert_int_equal(fgw_store_job_get(f->s, j.id, &j), 0);
	assert_string_equal(j.state, "superseded");
	assert_int_equal(fgw_store__exec(f->s, "UPDATE devices SET security = 'authenticated'"), 0);
	assert_int_equal(fgw_store__exec(f->s, "UPDATE devices SET security = 'weak'"), -EEXIST);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM devices WHERE security = "
					  "'authenticated'"),
			 1);
	assert_int_equal(fgw_store_integrity_check(f->s), 0);
}

/* A batch: one transaction from its first write to the next transition (or its end). */
static void test_batch(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_image img = {.image = 0, .slot = 0, .version = "1.0.0", .flags = 3};
	struct fgw_store_job_rec j;

	assert_int_equal(fgw_store_device_seen(f->s, "AA:00:00:00:00:09", "ble", NULL, NULL, 1), 0);
	assert_int_equal(fgw_store_job_ensure(f->s, "AA:00:00:00:00:09", "r1", false, 2, &j, NULL),
			 0);
	/* Nothing written: no transaction, nothing to commit. */
	assert_int_equal(fgw_store_batch_begin(f->s), 0);
	assert_int_equal(fgw_store_batch_begin(f->s), -EALREADY);
	assert_true(sqlite3_get_autocommit(f->s->db));
	assert_int_equal(fgw_store_batch_end(f->s), 0);
	assert_int_equal(fgw_store_batch_end(f->s), 0);

	/* Writes wait for the transition, then all are there at once. */
	assert_int_equal(fgw_store_batch_begin(f->s), 0);
	assert_int_equal(fgw_store_device_images_set(f->s, "AA:00:00:00:00:09", &img, 1, 3), 0);
	assert_int_equal(fgw_store_device_set_probe(f->s, "AA:00:00:00:00:09", "nrf5340dk", 2), 0);
	assert_int_equal(fgw_store_job_set_plan(f->s, j.id, 3, 3), 0);
	assert_false(sqlite3_get_autocommit(f->s->db));
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM device_images"), 0);
	assert_int_equal(raw_int(f->path, "SELECT images_mask FROM jobs"), 0);
	assert_int_equal(fgw_store_job_set_state(f->s, j.id, "queued", "connecting", NULL, NULL, 4),
			 0);
	assert_true(sqlite3_get_autocommit(f->s->db));
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM device_images"), 1);
	assert_int_equal(raw_int(f->path, "SELECT images_mask FROM jobs"), 3);
	assert_int_equal(raw_int(f->path, "SELECT bootloader_mode FROM devices"), 2);
	/* The transition ended the batch: what follows commits on its own. */
	assert_int_equal(fgw_store_job_set_plan(f->s, j.id, 1, 5), 0);
	assert_int_equal(raw_int(f->path, "SELECT images_mask FROM jobs"), 1);
	assert_int_equal(fgw_store_batch_end(f->s), 0);

	/* A refused transition and a failed write undo only themselves. */
	assert_int_equal(fgw_store_batch_begin(f->s), 0);
	assert_int_equal(fgw_store_job_set_plan(f->s, j.id, 2, 6), 0);
	assert_true(fgw_store_job_ensure(f->s, "AA:00:00:00:00:09", "nope", false, 6, &j, NULL) <
		    0);
	assert_int_equal(fgw_store_job_set_state(f->s, j.id, "queued", "probing", NULL, NULL, 6),
			 -ESTALE);
	assert_true(sqlite3_get_autocommit(f->s->db));
	assert_int_equal(raw_int(f->path, "SELECT images_mask FROM jobs"), 2);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE at = 6"), 0);

	/* Without a transition, the end commits. */
	assert_int_equal(fgw_store_batch_begin(f->s), 0);
	assert_int_equal(fgw_store_job_set_results(f->s, j.id, "verified", NULL, 7), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs WHERE app_result IS NULL"), 1);
	assert_int_equal(fgw_store_batch_end(f->s), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs WHERE app_result IS NULL"), 0);
}

/* The statements a job runs were compiled when the store was migrated: the job compiles none. */
static void test_job_statements_warm(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_image img = {.image = 0, .slot = 1, .version = "1.1.0", .flags = 4};
	struct fgw_store_job_rec j;
	uint64_t before = f->s->n_prepared;

	assert_int_equal(fgw_store_device_seen(f->s, "AA:00:00:00:00:0B", "udp", NULL, NULL, 1), 0);
	assert_int_equal(fgw_store_job_ensure(f->s, "AA:00:00:00:00:0B", "r1", false, 2, &j, NULL),
			 0);
	assert_int_equal(fgw_store_batch_begin(f->s), 0);
	assert_int_equal(fgw_store_device_images_set(f->s, "AA:00:00:00:00:0B", &img, 1, 3), 0);
	assert_int_equal(fgw_store_device_set_probe(f->s, "AA:00:00:00:00:0B", NULL, 3), 0);
	assert_int_equal(fgw_store_job_set_plan(f->s, j.id, 1, 3), 0);
	assert_int_equal(fgw_store_job_set_state(f->s, j.id, "queued", "uploading", NULL, NULL, 3),
			 0);
	assert_int_equal(fgw_store_job_set_progress(f->s, j.id, 0, 4096, 4), 0);
	assert_int_equal(fgw_store_job_set_distrust(f->s, j.id, 1, 4), 0);
	assert_int_equal(fgw_store_job_set_retry(f->s, j.id, 1, 5, 4), 0);
	assert_int_equal(fgw_store_job_set_results(f->s, j.id, "verified", NULL, 6), 0);
	assert_int_equal(
	    fgw_store_device_get(f->s, "AA:00:00:00:00:0B", &(struct fgw_store_device_rec){0}), 0);
	assert_int_equal(f->s->n_prepared, before);
}

static void test_rollout(void **state)
{
	struct store_fx *f = *state;
	char by[32], reason[64];
	bool halted = true;

	assert_int_equal(
	    fgw_store_rollout_state(f->s, "r1", &halted, by, sizeof(by), reason, sizeof(reason)),
	    0);
	assert_false(halted);
	assert_int_equal(fgw_store_rollout_set(f->s, "r1", true, "policy", "failure rate 0.50", 5),
			 0);
	assert_int_equal(
	    fgw_store_rollout_state(f->s, "r1", &halted, by, sizeof(by), reason, sizeof(reason)),
	    0);
	assert_true(halted);
	assert_string_equal(by, "policy");
	assert_string_equal(reason, "failure rate 0.50");
	assert_int_equal(fgw_store_rollout_set(f->s, "r1", false, "operator", NULL, 6), 0);
	assert_int_equal(fgw_store_rollout_state(f->s, "r1", &halted, NULL, 0, NULL, 0), 0);
	assert_false(halted);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE kind = 'rollout'"), 2);
	assert_true(fgw_store_rollout_set(f->s, "unknown-release", true, "x", "y", 7) < 0);
	assert_int_equal(fgw_store_integrity_check(f->s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_devices, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_images, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_jobs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_supersede_and_foreach, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rollout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_jobs_create, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_statement_cache, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cheap_checks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_job_statements_warm, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
