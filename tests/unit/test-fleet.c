/*
 * The fleet core (fleet.c, job.c, job-upload.c) against fake devices behind the scripted peer
 * transport, with a real store and clocks the test moves: every state of a job, every way it
 * ends, and the failure paths (link loss, silence, refusals, busy answers, a store that
 * refuses a write, a device that never comes back), release changes and restarts.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "fleet-fixture.h"

static void test_swap_test_then_confirm(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	fx_start(x, true);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	fx_assert_history(x, d,
			  "queued>connecting>probing>uploading>marking>resetting>rebooting>"
			  "verifying>confirming>done");
	assert_true(d->s[0].active && d->s[0].confirmed);
	assert_memory_equal(d->s[0].hash, x->rel.image[0].hash, 32);
	assert_int_equal(d->state_writes, 2); /* test mark, then confirm */
	fx_settle(x);
	assert_int_equal(fx_jobs_in_memory(x), 0);
	assert_null(x->fleet->jobs); /* reaped */
}

static void test_overwrite_confirms_at_once(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->mode = FGW_MCUBOOT_MODE_OVERWRITE_ONLY;
	fx_start(x, true);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	fx_assert_history(x, d,
			  "queued>connecting>probing>uploading>marking>resetting>rebooting>"
			  "verifying>done");
	assert_int_equal(d->state_writes, 1);
}

static void test_already_running_is_skipped(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	memcpy(d->s[0].hash, x->rel.image[0].hash, 32);
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "skipped");
	fx_assert_history(x, d, "queued>connecting>probing>skipped");
	assert_int_equal(d->chunks, 0);
}

static void test_unsupported_mode_fails(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_fleet_stats st;

	d->mode = FGW_MCUBOOT_MODE_DIRECT_XIP;
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "failed");
	fx_assert_history(x, d, "queued>connecting>probing>failed");
	fgw_fleet_get_stats(x->fleet, &st);
	assert_int_equal(st.jobs_failed, 1);
	assert_int_equal(st.failures[FLEET_FAIL_REJECTED], 1);
}

static void test_reverted(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->on_boot = FDEV_BOOT_REVERT;
	fx_start(x, true);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "reverted");
	fx_assert_history(x, d,
			  "queued>connecting>probing>uploading>marking>resetting>rebooting>"
			  "verifying>reverted");
}

static void test_rejected_and_not_applied(void **state)
{
	struct fx *x = *state;
	struct fdev *a = fx_device(x, "C0:00:00:00:00:01");
	struct fdev *b = fx_device(x, "C0:00:00:00:00:02");
	struct fgw_fleet_stats st;

	a->on_boot = FDEV_BOOT_REJECT;
	b->on_boot = FDEV_BOOT_NOTHING;
	fx_start(x, true);
	fx_seen(x, a);
	fx_seen(x, b);
	fx_come_back(x, a);
	fx_come_back(x, b);
	assert_state(x, a, "failed");
	assert_state(x, b, "failed");
	fx_assert_reason_has(x, a, "refused by the bootloader");
	fx_assert_reason_has(x, b, "did not run");
	fgw_fleet_get_stats(x->fleet, &st);
	assert_int_equal(st.failures[FLEET_FAIL_REJECTED], 1);
	assert_int_equal(st.failures[FLEET_FAIL_NOT_APPLIED], 1);
}

static void test_never_back(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_fleet_stats st;

	x->o.reboot_timeout_ms = 150;
	d->on_boot = FDEV_BOOT_NEVER_BACK;
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "failed");
	fx_assert_history(x, d,
			  "queued>connecting>probing>uploading>marking>resetting>rebooting>failed");
	fx_assert_reason_has(x, d, "did not come back");
	fgw_fleet_get_stats(x->fleet, &st);
	assert_int_equal(st.failures[FLEET_FAIL_NO_RETURN], 1);
}

/* The reset's answer comes after the reboot deadline: the verdict is due at once (the timer
 * once wrapped around to 2^64 ms, and the job stayed rebooting for ever). */
static void test_reset_answer_after_reboot_deadline(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	x->o.reboot_timeout_ms = 150;
	d->reset_answer_late_ms = 1000;
	d->on_boot = FDEV_BOOT_NEVER_BACK;
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "failed");
	fx_assert_reason_has(x, d, "did not come back");
}

static void test_link_lost_while_uploading_retries(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_store_job_rec rec;
	bool created;

	d->drop_at_chunk = 3;
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "queued");
	assert_true(fx_wait_state(x, d->address, "uploading", FX_WAIT_MS));
	fx_come_back(x, d);
	assert_state(x, d, "done");
	fx_assert_history(x, d,
			  "queued>connecting>probing>uploading>queued>connecting>probing>uploading>"
			  "marking>resetting>rebooting>verifying>confirming>done");
	assert_int_equal(fgw_store_job_ensure(x->store, d->address, "r1", false, 0, &rec, &created),
			 0);
	assert_int_equal(rec.attempts, 1);
}

static void test_silent_device_gives_up(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_fleet_stats st;

	d->silent = true;
	x->o.request_timeout_ms = 200; /* silence is what this test waits for */
	fx_start(x, true);
	fx_seen(x, d);
	assert_true(fx_wait_state(x, d->address, "failed", 3 * FX_WAIT_MS));
	fx_assert_reason_has(x, d, "gave up after 2 attempts");
	fx_assert_history(x, d,
			  "queued>connecting>probing>queued>connecting>probing>queued>connecting>"
			  "probing>failed");
	fgw_fleet_get_stats(x->fleet, &st);
	assert_int_equal(st.failures[FLEET_FAIL_UNREACHABLE], 1);
}

static void test_upload_refused(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->upload_rc = 3; /* EINVAL: the device will say it again, no retry */
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "failed");
	fx_assert_history(x, d, "queued>connecting>probing>uploading>failed");
	fx_assert_reason_has(x, d, "refused");
}

static void test_busy_answers_pass(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->busy_image_state = 1; /* transient: queued again */
	d->busy_resets = 1;	 /* a reset hook refuses once: forced */
	fx_start(x, true);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	assert_int_equal(d->resets, 2);
	assert_int_equal(d->forced_resets, 1);
	fx_assert_history(x, d,
			  "queued>connecting>probing>queued>connecting>probing>uploading>marking>"
			  "resetting>rebooting>verifying>confirming>done");
}

static void test_foreign_pending_image_erased(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->s[1] = (struct fdev_slot){.present = true, .pending = true};
	memset(d->s[1].hash, 0x22, 32);
	snprintf(d->s[1].version, sizeof(d->s[1].version), "1.5.0");
	fx_start(x, true);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	assert_int_equal(d->erases, 1);
}

/* Issue #18 item 3: the slot's hash field after a failed image check proves nothing. */
static void test_failed_image_check_is_erased_not_marked(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->check_fails = 1;
	fx_start(x, true);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	fx_assert_history(x, d,
			  "queued>connecting>probing>uploading>queued>connecting>probing>uploading>"
			  "marking>resetting>rebooting>verifying>confirming>done");
	assert_int_equal(d->corrupt_marks, 0);
	assert_int_equal(d->erases, 1);
	assert_false(d->s[0].corrupt); /* what booted is the bytes uploaded again */
	assert_true(d->s[0].active && d->s[0].confirmed);
}

/* #18 item 3: the memory of a failed image check survives a restart of the daemon. */
static void test_failed_image_check_survives_restart(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_store_job_rec rec;
	unsigned full;
	char buf[512];

	d->check_fails = 1;
	x->o.backoff_base_ms = x->o.backoff_max_ms = 60000; /* held queued across the restart */
	fx_start(x, true);
	fx_seen(x, d);
	for (uint64_t end = fgw_now_ms() + FX_WAIT_MS;
	     !strstr(fx_history(x, d->address, buf, sizeof(buf)), "uploading>queued") &&
	     fgw_now_ms() < end;)
		uv_run(&x->loop, UV_RUN_ONCE);
	assert_non_null(strstr(buf, "uploading>queued"));
	full = d->chunks; /* one whole upload, whose check failed */
	fx_stop(x);
	assert_int_equal(fgw_store_job_ensure(x->store, d->address, "r1", false, 0, &rec, NULL), 0);
	assert_int_equal(rec.distrust_slots, 1);

	fx_start(x, true);
	fx_advance(x, 61000);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	/* Erased and uploaded whole again, never marked on the strength of its hash field. */
	assert_int_equal(d->corrupt_marks, 0);
	assert_int_equal(d->erases, 1);
	assert_int_equal(d->chunks - full, full);
	assert_false(d->s[0].corrupt);
	assert_int_equal(fgw_store_job_ensure(x->store, d->address, "r1", false, 0, &rec, NULL), 0);
	assert_int_equal(rec.distrust_slots, 0);
}

static void test_unseen_devices_stay_in_the_store(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	char a[32];

	/* Registered in an earlier run, not seen in this one. */
	for (int i = 0; i < 50; i++) {
		snprintf(a, sizeof(a), "C0:00:00:00:01:%02X", i);
		assert_int_equal(fgw_store_device_seen(x->store, a, "ble", NULL, NULL, 1), 0);
		assert_int_equal(fgw_store_device_set_group(x->store, a, "default"), 0);
	}
	assert_int_equal(fgw_store_device_seen(x->store, d->address, "ble", NULL, NULL, 1), 0);
	assert_int_equal(fgw_store_device_set_group(x->store, d->address, "default"), 0);
	fx_start(x, true);
	/* Every target has its queued job row, made in one go; none is in memory. */
	assert_string_equal(fx_job_state(x, a, "r1"), "queued");
	assert_string_equal(fx_job_state(x, d->address, "r1"), "queued");
	assert_int_equal(fx_jobs_in_memory(x), 0);
	assert_int_equal(x->fleet->n_targets, 51);
	fx_seen(x, d);
	assert_int_equal(fx_jobs_in_memory(x), 1);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	fx_assert_history(x, d,
			  "queued>connecting>probing>uploading>marking>resetting>rebooting>"
			  "verifying>confirming>done");
	assert_string_equal(fx_job_state(x, a, "r1"), "queued");
}

static void test_out_of_range_burns_no_attempt(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fgw_store_job_rec rec;
	char buf[256];

	x->transport_err = -EHOSTDOWN;
	fx_start(x, true);
	fx_seen(x, d);
	/* It went to connecting, found no device and went back without burning an attempt (as
	 * often as the scheduler looked again meanwhile: only ever back to queued). */
	for (int i = 0; i < 1000 && !strstr(fx_history(x, d->address, buf, sizeof(buf)),
					    "queued>connecting>queued");
	     i++)
		uv_run(&x->loop, UV_RUN_ONCE);
	fx_history(x, d->address, buf, sizeof(buf));
	assert_true(strncmp(buf, "queued>connecting>queued", 24) == 0);
	for (const char *p = strstr(buf, "connecting"); p; p = strstr(p + 1, "connecting"))
		assert_true(strncmp(p, "connecting>queued", 17) == 0 ||
			    strcmp(p, "connecting") == 0);
	assert_int_equal(fgw_store_job_ensure(x->store, d->address, "r1", false, 0, &rec, NULL), 0);
	assert_int_equal(rec.attempts, 0);
	x->transport_err = 0;
	fx_come_back(x, d);
	assert_state(x, d, "done");
}

static void test_store_refusal_stops_the_job(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fdev *e = fx_device(x, "C0:00:00:00:00:02");

	fx_refuse_state(x, "uploading");
	x->o.max_connections = 1;
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "probing");
	/* Not persisted, so not acted on: the job stays where it was, no job starts. */
	fx_wait_store_failed(x);
	fx_seen(x, e);
	fx_settle(x);
	assert_string_equal(fx_job_state(x, d->address, "r1"), "probing");
	assert_int_equal(d->chunks, 0);
	assert_int_equal(e->links, 0);
	assert_null(fleet_dev_find(x->fleet, d->address)->job->conn);
}

static void test_terminal_is_reaped_later(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	struct fleet_job *job;

	x->transport_err = -EHOSTDOWN; /* keep it queued */
	fx_start(x, true);
	fx_seen(x, d);
	job = x->fleet->jobs;
	assert_non_null(job);
	assert_int_equal(job->state, FGW_JOB_STATE_QUEUED);
	assert_int_equal(job_enter_state(job, FGW_JOB_STATE_FAILED, "test", NULL), 0);
	/* The callee did not free its caller: the job is still there, finished and counted. */
	assert_ptr_equal(x->fleet->jobs, job);
	assert_int_equal(job->state, FGW_JOB_STATE_FAILED);
	assert_null(fleet_dev_find(x->fleet, d->address)->job);
	assert_int_equal(x->fleet->counts.failed, 1);
	fx_settle(x);
	assert_null(x->fleet->jobs);
}

static void test_release_change(void **state)
{
	struct fx *x = *state;
	struct fdev *a = fx_device(x, "C0:00:00:00:00:01");
	struct fdev *b = fx_device(x, "C0:00:00:00:00:02");
	struct fgw_fleet_release *r2 = &x->rel2;

	x->o.max_connections = 1;
	fx_start(x, true);
	fx_seen(x, a);
	assert_true(fx_wait_state(x, a->address, "uploading", FX_WAIT_MS));
	fx_seen(x, b);
	assert_string_equal(fx_job_state(x, b->address, "r1"), "queued");
	*r2 = x->rel;
	snprintf(r2->id, sizeof(r2->id), "r2");
	snprintf(r2->version, sizeof(r2->version), "3.0.0");
	fx_image(x, "app2.bin", 5000, 9, &r2->image[0]);
	snprintf(r2->image[0].version, sizeof(r2->image[0].version), "3.0.0");
	assert_int_equal(fgw_fleet_set_release(x->fleet, r2), 0);
	/* The queued job is superseded; the running one finishes its release. */
	assert_string_equal(fx_job_state(x, b->address, "r1"), "superseded");
	assert_string_equal(fx_job_state(x, b->address, "r2"), "queued");
	fx_come_back(x, a);
	assert_true(strcmp(fx_job_state(x, a->address, "r2"), "") == 0 ||
		    strcmp(fx_job_state(x, a->address, "r2"), "queued") == 0);
	for (int i = 0; i < 1000 && strcmp(fx_job_state(x, a->address, "r1"), "done") != 0; i++)
		uv_run(&x->loop, UV_RUN_ONCE);
	assert_string_equal(fx_job_state(x, a->address, "r1"), "done");
	fx_settle(x);
	/* Then its turn for the new release: it gets a job and runs it, as does the other. */
	assert_string_not_equal(fx_job_state(x, a->address, "r2"), "");
	x->rel = *r2; /* fx_wait_state and come_back look at the release in view */
	fx_come_back(x, b);
	assert_state(x, b, "done");
	fx_come_back(x, a);
	assert_state(x, a, "done");
	assert_memory_equal(a->s[0].hash, r2->image[0].hash, 32);
}

static void test_restart_resumes(void **state)
{
	struct fx *x = *state;
	struct fdev *a = fx_device(x, "C0:00:00:00:00:01");
	struct fdev *b = fx_device(x, "C0:00:00:00:00:02");

	fx_start(x, true);
	fx_seen(x, a);
	fx_seen(x, b);
	b->drop_at_chunk = 0;
	assert_true(fx_wait_state(x, a->address, "rebooting", FX_WAIT_MS));
	b->silent = true; /* stuck in probing when the daemon stops */
	fx_stop(x);
	b->silent = false;
	fx_start(x, true);
	/* The reset may have happened: verify, never upload again. Probing starts over. */
	assert_string_equal(fx_job_state(x, a->address, "r1"), "rebooting");
	fx_seen(x, b);
	fx_come_back(x, a);
	assert_state(x, a, "done");
	assert_int_equal(a->resets, 1);
	fx_come_back(x, b);
	assert_state(x, b, "done");
}

static void test_operator_retry(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->mode = FGW_MCUBOOT_MODE_DIRECT_XIP;
	fx_start(x, true);
	assert_int_equal(fgw_fleet_retry(x->fleet, d->address), -ENOENT);
	fx_seen(x, d);
	assert_state(x, d, "failed");
	d->mode = FGW_MCUBOOT_MODE_SWAP_WITHOUT_SCRATCH;
	assert_int_equal(fgw_fleet_retry(x->fleet, d->address), 0);
	assert_int_equal(x->fleet->counts.failed, 0);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	assert_int_equal(fgw_fleet_retry(x->fleet, d->address), -EALREADY);
}

static void test_failed_canary_halts(void **state)
{
	struct fx *x = *state;
	struct fdev *a = fx_device(x, "C0:00:00:00:00:01");
	struct fdev *b = fx_device(x, "C0:00:00:00:00:02");
	struct fgw_fleet_stats st;

	x->rel.canary_percent = 50;
	x->rel.max_failure_rate = 0.2;
	a->mode = FGW_MCUBOOT_MODE_DIRECT_XIP;
	fx_start(x, true);
	fx_seen(x, a); /* the first target is the canary */
	fx_seen(x, b);
	assert_state(x, a, "failed");
	fx_settle(x);
	fgw_fleet_get_stats(x->fleet, &st);
	assert_true(st.halted);
	assert_string_equal(st.halted_by, "policy");
	assert_string_equal(fx_job_state(x, b->address, "r1"), "queued");
	assert_int_equal(b->links, 0);
	assert_int_equal(fgw_fleet_resume(x->fleet), 0);
	fx_come_back(x, b);
	assert_state(x, b, "done");
}

static void test_unconfirmed_test_boot_is_confirmed(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	/* An earlier run reset it into the release, then lost it before confirming. */
	memcpy(d->s[0].hash, x->rel.image[0].hash, 32);
	snprintf(d->s[0].version, sizeof(d->s[0].version), "2.0.0");
	d->s[0].confirmed = false;
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "done");
	fx_assert_history(x, d, "queued>connecting>probing>confirming>done");
	assert_true(d->s[0].confirmed);
	assert_int_equal(d->chunks, 0);
}

static void test_mark_refused(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	d->mark_rc = 6; /* EBADSTATE: the device says it again, no retry */
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "failed");
	fx_assert_history(x, d, "queued>connecting>probing>uploading>marking>failed");
	fx_assert_reason_has(x, d, "mark image");
	assert_int_equal(d->resets, 0);
}

static void test_verify_interrupted_waits_again(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "rebooting");
	d->busy_image_state = 1; /* after the reset only the ceiling ends the wait */
	fx_come_back(x, d);
	assert_true(fx_wait_state(x, d->address, "verifying", FX_WAIT_MS));
	fx_come_back(x, d);
	assert_state(x, d, "done");
	fx_assert_history(x, d,
			  "queued>connecting>probing>uploading>marking>resetting>rebooting>"
			  "verifying>rebooting>verifying>confirming>done");
	assert_int_equal(d->resets, 1);
}

static int64_t last_seen(struct fx *x, const char *address)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_open(x->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT last_seen FROM devices WHERE address = ?",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/*
 * A name of 64 bytes or more (longer than the store keeps) must not defeat the sighting
 * throttle: the same long name again within 10 s writes nothing (issue 18 item 6). Before,
 * the comparison was against the truncated stored name, so every advert was a write.
 */
static void test_long_name_sightings_are_throttled(void **state)
{
	struct fx *x = *state;
	char name[200];
	int rssi = -50;
	int64_t first;

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	fx_start(x, false);
	fgw_fleet_device_seen(x->fleet, "C0:00:00:00:00:0A", "ble", name, &rssi);
	first = last_seen(x, "C0:00:00:00:00:0A");
	assert_true(first > 0);
	for (int i = 0; i < 5; i++) {
		fx_advance(x, 1000);
		fgw_fleet_device_seen(x->fleet, "C0:00:00:00:00:0A", "ble", name, &rssi);
	}
	assert_int_equal(last_seen(x, "C0:00:00:00:00:0A"), first);
	/* After the throttle interval the sighting is written again. */
	fx_advance(x, 6000);
	fgw_fleet_device_seen(x->fleet, "C0:00:00:00:00:0A", "ble", name, &rssi);
	assert_true(last_seen(x, "C0:00:00:00:00:0A") > first);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_swap_test_then_confirm, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_overwrite_confirms_at_once, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_already_running_is_skipped, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unsupported_mode_fails, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reverted, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_rejected_and_not_applied, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_never_back, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reset_answer_after_reboot_deadline, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_link_lost_while_uploading_retries, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_silent_device_gives_up, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_upload_refused, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_busy_answers_pass, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_pending_image_erased, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_failed_image_check_is_erased_not_marked, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_failed_image_check_survives_restart, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unseen_devices_stay_in_the_store, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_range_burns_no_attempt, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_store_refusal_stops_the_job, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_terminal_is_reaped_later, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_release_change, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_restart_resumes, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_operator_retry, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_failed_canary_halts, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unconfirmed_test_boot_is_confirmed, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_mark_refused, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_long_name_sightings_are_throttled, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_verify_interrupted_waits_again, fx_setup,
					    fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
