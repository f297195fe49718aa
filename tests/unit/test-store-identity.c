/* fgw_store_device_identity_resolved: rename and merge on a real SQLite file. */
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
	return store_fx_setup(state, "ident", STORE_FX_R1_R2);
}

static int teardown(void **state)
{
	return store_fx_teardown(state);
}

#define RPA "4A:00:00:00:00:01"
#define RPA2 "5B:00:00:00:00:02"
#define ID "C0:00:00:00:00:0A"

static long long count_at(struct store_fx *f, const char *table, const char *addr)
{
	char sql[160];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE address = '%s'", table, addr);
	return raw_int(f->path, sql);
}

/* Met under an RPA, with a job and a passkey: everything becomes the identity's. */
static void test_rename(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_job_rec j, j2;
	struct fgw_store_device_rec rd;

	assert_int_equal(fgw_store_device_seen(f->s, RPA, "ble", "d", NULL, 1), 0);
	assert_int_equal(fgw_store_device_security_set(f->s, RPA, "authenticated"), 0);
	assert_int_equal(fgw_store_job_ensure(f->s, RPA, "r1", true, 2, &j, NULL), 0);
	assert_int_equal(fgw_store_device_identity_resolved(f->s, RPA, ID, 3), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM devices"), 1);
	assert_int_equal(count_at(f, "devices", RPA), 0);
	assert_int_equal(count_at(f, "jobs", ID), 1);
	assert_int_equal(count_at(f, "events", RPA), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE kind = "
					  "'device-identity-resolved' AND address = '" ID "'"),
			 1);
	assert_int_equal(fgw_store_job_get(f->s, j.id, &j2), 0);
	assert_string_equal(j2.address, ID);
	assert_true(j2.canary);
	assert_int_equal(fgw_store_device_get(f->s, ID, &rd), 0);
	assert_string_equal(rd.name, "d");
	/* the same address again is nothing; an unknown old one is -ENOENT and changes nothing */
	assert_int_equal(fgw_store_device_identity_resolved(f->s, ID, ID, 4), 0);
	assert_int_equal(fgw_store_device_identity_resolved(f->s, RPA2, ID, 4), -ENOENT);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM devices"), 1);
	assert_int_equal(fgw_store_device_identity_resolved(f->s, NULL, ID, 4), -EINVAL);
}

/* Enrolled by identity, met under an RPA that ran a job: one row, enrolled, with that job. */
static void test_merge(void **state)
{
	struct store_fx *f = *state;
	struct fgw_store_enrollment e = {.address = ID,
					 .board = "nrf5340dk",
					 .label = "door",
					 .grp = "west",
					 .has_passkey = true,
					 .passkey = 123456};
	struct fgw_store_job_rec j, jid, j2;
	struct fgw_store_device_rec rd;
	uint32_t pk;
	char sec[32];

	assert_int_equal(fgw_store_devices_enroll(f->s, &e, 1, "default", 1), 0);
	assert_int_equal(fgw_store_device_seen(f->s, ID, "ble", NULL, NULL, 1), 0);
	assert_int_equal(fgw_store_job_ensure(f->s, ID, "r1", false, 1, &jid, NULL), 0);
	assert_int_equal(fgw_store_device_seen(f->s, RPA, "ble", "meter", NULL, 5), 0);
	assert_int_equal(fgw_store_device_security_set(f->s, RPA, "authenticated"), 0);
	assert_int_equal(fgw_store_job_ensure(f->s, RPA, "r1", true, 6, &j, NULL), 0);
	assert_int_equal(fgw_store_job_set_state(f->s, j.id, "queued", "connecting", NULL, NULL, 7),
			 0);
	assert_int_equal(fgw_store_device_identity_resolved(f->s, RPA, ID, 8), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM devices"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM jobs"), 1);
	/* the running job moved; the identity's own job of that release is gone */
	assert_int_equal(fgw_store_job_get(f->s, j.id, &j2), 0);
	assert_string_equal(j2.address, ID);
	assert_string_equal(j2.state, "connecting");
	assert_int_equal(fgw_store_job_get(f->s, jid.id, &j2), -ENOENT);
	assert_int_equal(fgw_store_device_get(f->s, ID, &rd), 0);
	assert_true(rd.enrolled);
	assert_string_equal(rd.grp, "west");
	assert_string_equal(rd.enrolled_board, "nrf5340dk");
	assert_string_equal(rd.name, "meter");
	assert_int_equal(fgw_store_device_passkey_get(f->s, ID, &pk), 0);
	assert_int_equal(pk, 123456);
	assert_int_equal(fgw_store_device_security_get(f->s, ID, sec, sizeof(sec)), 0);
	assert_string_equal(sec, "authenticated");
	assert_int_equal(count_at(f, "events", RPA), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events WHERE detail LIKE "
					  "'%merged%'"),
			 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
