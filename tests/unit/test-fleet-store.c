/*
 * What the fleet writes to its store, counted: the commits a whole job costs, and that the
 * writes a probe's answer makes (image state, board, plan) go in one transaction with the
 * transition they lead to, committed before the job acts on it (store.h, batches).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "fleet-fixture.h"
#include "store-private.h"
#include "test-store-fixture.h"

static int count_commit(void *ud)
{

	(*(unsigned *) ud)++;
	return 0; /* let it commit */
}

/*
 * From the first sighting to "done": the sighting and its default group, the job (with its
 * event), eight transitions and the upload's progress (the fixture flushes it at every
 * chunk: 8). The probe's image state, board and plan ride with probing -> uploading, the
 * verification's image state and results with verifying -> done: without the batches those
 * were five commits more (24).
 */
static void test_job_commits(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");
	unsigned commits = 0;

	d->mode = FGW_MCUBOOT_MODE_OVERWRITE_ONLY;
	fx_start(x, true);
	sqlite3_commit_hook(x->store->db, count_commit, &commits);
	fx_seen(x, d);
	fx_come_back(x, d);
	assert_state(x, d, "done");
	sqlite3_commit_hook(x->store->db, NULL, NULL);
	assert_int_equal(commits, 1 + 1 + 1 + 8 + 8);
	/* The batched writes are there, as the device reported them after the update. */
	assert_int_equal(raw_int(x->db, "SELECT count(*) FROM device_images WHERE image = 0 AND "
					"slot = 0 AND flags & 1"),
			 1);
	assert_int_equal(raw_int(x->db, "SELECT images_mask FROM jobs"), 1);
	assert_int_equal(raw_int(x->db, "SELECT count(*) FROM jobs WHERE app_result = 'verified'"),
			 1);
	assert_int_equal(raw_int(x->db, "SELECT bootloader_mode FROM devices"),
			 FGW_MCUBOOT_MODE_OVERWRITE_ONLY);
}

/*
 * A transition the store refuses is not acted on, but what the device said before it (image
 * state, board, plan) is kept: the refusal undoes only the transition's own writes.
 */
static void test_refused_transition_keeps_the_batch(void **state)
{
	struct fx *x = *state;
	struct fdev *d = fx_device(x, "C0:00:00:00:00:01");

	fx_refuse_state(x, "uploading");
	fx_start(x, true);
	fx_seen(x, d);
	assert_state(x, d, "probing");
	fx_wait_store_failed(x);
	assert_string_equal(fx_job_state(x, d->address, "r1"), "probing");
	assert_int_equal(d->chunks, 0);
	assert_int_equal(raw_int(x->db, "SELECT count(*) FROM device_images"), 1);
	assert_int_equal(raw_int(x->db, "SELECT images_mask FROM jobs"), 1);
	assert_int_equal(raw_int(x->db, "SELECT count(*) FROM events WHERE to_state = 'uploading'"),
			 0);
	/* No transaction is left open: another connection can write. */
	assert_int_equal(raw_int(x->db, "SELECT count(*) FROM jobs"), 1);
	assert_true(sqlite3_get_autocommit(x->store->db));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_job_commits, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_refused_transition_keeps_the_batch, fx_setup,
					    fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
