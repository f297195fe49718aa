/* The fleet's decisions as data: plan, verify, canary, halt, back-off. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fleet-policy.h"

#define OLD_APP 0x11
#define NEW_APP 0x22
#define OLD_NET 0x33
#define NEW_NET 0x44
#define OTHER 0x55

static struct fgw_fleet_slot slot(uint8_t h, bool active, bool confirmed, bool pending)
{
	struct fgw_fleet_slot s = {
	    .present = true, .active = active, .confirmed = confirmed, .pending = pending};
	memset(s.hash, h, 32);
	return s;
}

static struct fgw_fleet_release_view release(void)
{
	struct fgw_fleet_release_view r = {.has = {true, true}};

	memset(r.hash[0], NEW_APP, 32);
	memset(r.hash[1], NEW_NET, 32);
	strcpy(r.version[0], "1.2.0");
	strcpy(r.version[1], "1.2.0");
	return r;
}

/* A real nRF5340 on overwrite-only: app slot 0 running, net core slot 0 never listed. */
static struct fgw_fleet_device_view fresh_device(int mode)
{
	struct fgw_fleet_device_view d = {.mode = mode};

	d.slot[0][0] = slot(OLD_APP, true, true, false);
	return d;
}

static void test_plan_fresh_overwrite(void **state)
{
	struct fgw_fleet_device_view d = fresh_device(FGW_MCUBOOT_MODE_OVERWRITE_ONLY);
	struct fgw_fleet_release_view r = release();
	struct fgw_fleet_plan p;
	const char *why;

	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.action[0], FGW_FLEET_IMAGE_UPLOAD);
	assert_int_equal(p.action[1], FGW_FLEET_IMAGE_UPLOAD);
	assert_int_equal(p.mark, FGW_FLEET_MARK_CONFIRM);
	assert_int_equal(p.images_mask, 3);
	assert_false(p.net_assumed);
	assert_false(p.erase_first[0] || p.erase_first[1]);
}

static void test_plan_swap_marks_test(void **state)
{
	struct fgw_fleet_device_view d = fresh_device(FGW_MCUBOOT_MODE_SWAP_WITHOUT_SCRATCH);
	struct fgw_fleet_release_view r = release();
	struct fgw_fleet_plan p;
	const char *why;

	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.mark, FGW_FLEET_MARK_TEST);
	/* Unknown mode: the manifest policy decides. */
	d.mode = FGW_MCUBOOT_MODE_UNKNOWN;
	r.policy_confirm = true;
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.mark, FGW_FLEET_MARK_CONFIRM);
	d.mode = FGW_MCUBOOT_MODE_DIRECT_XIP;
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), -ENOTSUP);
	assert_non_null(why);
}

static void test_plan_up_to_date(void **state)
{
	struct fgw_fleet_device_view d = fresh_device(FGW_MCUBOOT_MODE_OVERWRITE_ONLY);
	struct fgw_fleet_release_view r = release();
	struct fgw_fleet_plan p;
	const char *why;

	d.slot[0][0] = slot(NEW_APP, true, true, false);
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.action[0], FGW_FLEET_IMAGE_CURRENT);
	/* Net core unreadable and nothing staged: it came with the app core, not flashed again. */
	assert_int_equal(p.action[1], FGW_FLEET_IMAGE_CURRENT);
	assert_true(p.net_assumed);
	assert_int_equal(p.images_mask, 0);

	/* Firmware that reports the net core version: old version means upload it. */
	d.net_version_known = true;
	strcpy(d.net_version, "1.0.0");
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.action[1], FGW_FLEET_IMAGE_UPLOAD);
	assert_int_equal(p.images_mask, 2);
	strcpy(d.net_version, "1.2.0");
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.action[1], FGW_FLEET_IMAGE_CURRENT);
	assert_false(p.net_assumed);
}

static void test_plan_resume_after_crash(void **state)
{
	struct fgw_fleet_device_view d = fresh_device(FGW_MCUBOOT_MODE_OVERWRITE_ONLY);
	struct fgw_fleet_release_view r = release();
	struct fgw_fleet_plan p;
	const char *why;

	/* Net core uploaded and confirmed, app core uploaded but not marked yet. */
	d.slot[0][1] = slot(NEW_APP, false, false, false);
	d.slot[1][1] = slot(NEW_NET, false, false, true);
	d.slot[1][1].permanent = true;
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.action[0], FGW_FLEET_IMAGE_MARK);
	assert_int_equal(p.action[1], FGW_FLEET_IMAGE_STAGED);
	assert_int_equal(p.images_mask, 3);
}

static void test_plan_foreign_pending(void **state)
{
	struct fgw_fleet_device_view d = fresh_device(FGW_MCUBOOT_MODE_SWAP_USING_SCRATCH);
	struct fgw_fleet_release_view r = release();
	struct fgw_fleet_plan p;
	const char *why;

	d.slot[0][1] = slot(OTHER, false, false, true);
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.action[0], FGW_FLEET_IMAGE_UPLOAD);
	assert_true(p.erase_first[0]);
	/* A foreign image that is not pending is simply overwritten. */
	d.slot[0][1].pending = false;
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_false(p.erase_first[0]);
}

static void test_plan_unconfirmed_test_boot(void **state)
{
	struct fgw_fleet_device_view d = {.mode = FGW_MCUBOOT_MODE_SWAP_USING_SCRATCH};
	struct fgw_fleet_release_view r = release();
	struct fgw_fleet_plan p;
	const char *why;

	r.has[1] = false;
	d.slot[0][0] = slot(NEW_APP, true, false, false);
	d.slot[0][1] = slot(OLD_APP, false, true, false);
	assert_int_equal(fgw_fleet_plan(&d, &r, &p, &why), 0);
	assert_int_equal(p.action[0], FGW_FLEET_IMAGE_CURRENT);
	assert_int_equal(p.action[1], FGW_FLEET_IMAGE_NONE);
	assert_true(p.confirm_running);
}

struct verify_case {
	const char *name;
	int mode;
	int image;
	struct fgw_fleet_slot s0, s1;
	const char *net_version; /* NULL: not reported */
	enum fgw_fleet_verdict want;
};

static void test_verify(void **state)
{
	const struct verify_case cases[] = {
	    {"overwrite app ok", 2, 0, slot(NEW_APP, 1, 1, 0), {0}, NULL, FGW_FLEET_VERDICT_OK},
	    {"swap app test boot", 1, 0, slot(NEW_APP, 1, 0, 0), slot(OLD_APP, 0, 1, 0), NULL,
	     FGW_FLEET_VERDICT_NEEDS_CONFIRM},
	    {"swap app confirmed", 3, 0, slot(NEW_APP, 1, 1, 0), slot(OLD_APP, 0, 0, 0), NULL,
	     FGW_FLEET_VERDICT_OK},
	    {"swap app reverted", 1, 0, slot(OLD_APP, 1, 1, 0), slot(NEW_APP, 0, 0, 0), NULL,
	     FGW_FLEET_VERDICT_REVERTED},
	    {"app still pending", 2, 0, slot(OLD_APP, 1, 1, 0), slot(NEW_APP, 0, 0, 1), NULL,
	     FGW_FLEET_VERDICT_NOT_APPLIED},
	    {"app rejected by mcuboot",
	     2,
	     0,
	     slot(OLD_APP, 1, 1, 0),
	     {0},
	     NULL,
	     FGW_FLEET_VERDICT_REJECTED},
	    {"net gone, no version", 2, 1, {0}, {0}, NULL, FGW_FLEET_VERDICT_UNVERIFIED},
	    {"net version new", 2, 1, {0}, {0}, "1.2.0", FGW_FLEET_VERDICT_OK},
	    {"net version old", 2, 1, {0}, {0}, "1.0.0", FGW_FLEET_VERDICT_REJECTED},
	    {"net still staged",
	     2,
	     1,
	     {0},
	     slot(NEW_NET, 0, 0, 1),
	     NULL,
	     FGW_FLEET_VERDICT_NOT_APPLIED},
	    {"net staged, unmarked",
	     2,
	     1,
	     {0},
	     slot(NEW_NET, 0, 0, 0),
	     NULL,
	     FGW_FLEET_VERDICT_NOT_APPLIED},
	    {"net readable and new", 2, 1, slot(NEW_NET, 1, 1, 0), {0}, NULL, FGW_FLEET_VERDICT_OK},
	};
	struct fgw_fleet_release_view r = release();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct verify_case *c = &cases[i];
		struct fgw_fleet_device_view d = {.mode = c->mode};
		enum fgw_fleet_verdict v;

		d.slot[c->image][0] = c->s0;
		d.slot[c->image][1] = c->s1;
		if (c->net_version) {
			d.net_version_known = true;
			strcpy(d.net_version, c->net_version);
		}
		v = fgw_fleet_verify(&d, &r, c->image);
		if (v != c->want)
			fail_msg("%s: got %s, want %s", c->name, fgw_fleet_verdict_to_string(v),
				 fgw_fleet_verdict_to_string(c->want));
	}
}

static void test_canary_quota(void **state)
{
	assert_int_equal(fgw_fleet_canary_quota(0, 20), 0);
	assert_int_equal(fgw_fleet_canary_quota(10, 20), 2);
	assert_int_equal(fgw_fleet_canary_quota(10, 21), 3);
	assert_int_equal(fgw_fleet_canary_quota(1, 5), 1);
	assert_int_equal(fgw_fleet_canary_quota(100, 7), 7);
	assert_int_equal(fgw_fleet_canary_quota(150, 7), 7);
}

static void test_halt(void **state)
{
	char why[128];
	struct fgw_fleet_rollout_counts c = {.canary_total = 2};

	/* Canary not finished: no verdict yet, non-canaries wait. */
	c.canary_finished = 1;
	c.canary_failed = 1;
	c.finished = 1;
	c.failed = 1;
	assert_false(fgw_fleet_canary_passed(&c));
	assert_false(fgw_fleet_should_halt(&c, 0.2, why, sizeof(why)));
	/* Canary finished with a failure above the rate: halt. */
	c.canary_finished = 2;
	c.finished = 2;
	assert_true(fgw_fleet_should_halt(&c, 0.2, why, sizeof(why)));
	assert_non_null(strstr(why, "canary"));
	/* Canary clean, then 1 failure in 3 finished: too few to judge at 0.2 (needs 5). */
	c = (struct fgw_fleet_rollout_counts){
	    .canary_total = 2, .canary_finished = 2, .finished = 3, .failed = 1};
	assert_true(fgw_fleet_canary_passed(&c));
	assert_false(fgw_fleet_should_halt(&c, 0.2, why, sizeof(why)));
	c.finished = 5;
	c.failed = 2;
	assert_true(fgw_fleet_should_halt(&c, 0.2, why, sizeof(why)));
	assert_non_null(strstr(why, "failure rate 0.40"));
	c.failed = 1; /* exactly at the rate: carry on */
	assert_false(fgw_fleet_should_halt(&c, 0.2, why, sizeof(why)));
	/* No canary configured: passed from the start. */
	c = (struct fgw_fleet_rollout_counts){0};
	assert_true(fgw_fleet_canary_passed(&c));
}

static void test_backoff(void **state)
{
	assert_int_equal(fgw_fleet_backoff_ms(1, 1000, 60000, 0.0), 500);
	assert_int_equal(fgw_fleet_backoff_ms(1, 1000, 60000, 0.5), 750);
	assert_int_equal(fgw_fleet_backoff_ms(3, 1000, 60000, 0.0), 2000);
	assert_int_equal(fgw_fleet_backoff_ms(10, 1000, 60000, 0.0), 30000);
	assert_true(fgw_fleet_backoff_ms(10, 1000, 60000, 1.0) <= 60000);
	assert_true(fgw_fleet_backoff_ms(200, 1000, 60000, 0.99) <= 60000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plan_fresh_overwrite),
	    cmocka_unit_test(test_plan_swap_marks_test),
	    cmocka_unit_test(test_plan_up_to_date),
	    cmocka_unit_test(test_plan_resume_after_crash),
	    cmocka_unit_test(test_plan_foreign_pending),
	    cmocka_unit_test(test_plan_unconfirmed_test_boot),
	    cmocka_unit_test(test_verify),
	    cmocka_unit_test(test_canary_quota),
	    cmocka_unit_test(test_halt),
	    cmocka_unit_test(test_backoff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
