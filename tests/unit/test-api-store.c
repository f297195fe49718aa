/* The store's read-only API queries against a real SQLite file with seeded rows. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "store.h"
#include "util.h"

#include "store-tmp.h"
#include "test-api-seed.h"

struct fixture {
	char dir[64];
	char path[128];
	struct fgw_store *s;
	const void *param; /* the case, handed in as the prestate */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->param = *state;
	/* Seeded beside the store through its own connection, as the fleet would write. */
	if (tmp_store_open("fgw-test-api-store", f->dir, f->path, api_seed_sql, &f->s) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tmp_store_remove(f->s, f->dir);
	free(f);
	return 0;
}

/* Collected rows, as "address=state" strings. */
struct rows {
	int n;
	char row[16][96];
	int stop_after; /* callback error after this many rows; 0: never */
};

static int collect_device(const struct fgw_store_device *d, void *user_data)
{
	struct rows *r = user_data;

	if (r->stop_after && r->n == r->stop_after)
		return -ECANCELED;
	assert_non_null(d->state);
	if (r->n < 16)
		snprintf(r->row[r->n], sizeof(r->row[0]), "%s=%s", d->address + 15, d->state);
	r->n++;
	return 0;
}

static int collect_release(const struct fgw_store_release *rel, void *user_data)
{
	struct rows *r = user_data;

	if (r->n < 16)
		snprintf(r->row[r->n], sizeof(r->row[0]), "%s=%s", rel->id, rel->state);
	r->n++;
	return 0;
}

static int collect_count(const char *key, int64_t canary, int64_t count, void *user_data)
{
	struct rows *r = user_data;

	if (r->n < 16)
		snprintf(r->row[r->n], sizeof(r->row[0]), "%s/%lld=%lld", key, (long long) canary,
			 (long long) count);
	r->n++;
	return 0;
}

static void assert_rows(const struct rows *r, const char *const *want)
{
	int n = 0;

	for (; want[n]; n++) {
		assert_true(n < r->n);
		assert_string_equal(r->row[n], want[n]);
	}
	assert_int_equal(r->n, n);
}

struct device_case {
	struct fgw_store_device_filter f;
	const char *want[8];
};

static const char *const st_failed[] = {"failed", "reverted"};
static const char *const st_idle[] = {"idle"};

static const struct device_case dev_all = {
    .f = {0},
    .want = {"0A=uploading", "0B=failed", "0C=failed", "0D=reverted", "0E=done", "0F=idle"},
};
static const struct device_case dev_page2 = {
    .f = {.after = "AA:00:00:00:00:0B", .limit = 2},
    .want = {"0C=failed", "0D=reverted"},
};
static const struct device_case dev_failed = {
    .f = {.states = st_failed, .n_states = 2},
    .want = {"0B=failed", "0C=failed", "0D=reverted"},
};
static const struct device_case dev_idle = {
    .f = {.states = st_idle, .n_states = 1},
    .want = {"0F=idle"},
};
static const struct device_case dev_group = {
    .f = {.group = "field"},
    .want = {"0C=failed", "0D=reverted", "0F=idle"},
};
static const struct device_case dev_r1 = {
    .f = {.release_id = "r1"},
    .want = {"0F=done"},
};
static const struct device_case dev_unknown_release = {
    .f = {.release_id = "nope"},
    .want = {NULL},
};
static const struct device_case dev_past_end = {
    .f = {.after = "AA:00:00:00:00:0F"},
    .want = {NULL},
};

static void test_devices(void **state)
{
	struct fixture *f = *state;
	const struct device_case *c = f->param;
	struct rows r = {0};
	int n = fgw_store_devices_query(f->s, &c->f, collect_device, &r);

	assert_int_equal(n, r.n);
	assert_rows(&r, c->want);
}

static void test_devices_errors(void **state)
{
	struct fixture *f = *state;
	static const char *const empty[] = {""};
	struct fgw_store_device_filter flt = {.states = empty, .n_states = 1};
	struct rows r = {.stop_after = 2};

	/* The callback's error stops the query and comes back as is. */
	assert_int_equal(
	    fgw_store_devices_query(f->s, &(struct fgw_store_device_filter){0}, collect_device, &r),
	    -ECANCELED);
	assert_int_equal(r.n, 2);
	memset(&r, 0, sizeof(r));
	assert_int_equal(fgw_store_devices_query(f->s, &flt, collect_device, &r), -EINVAL);
	assert_int_equal(r.n, 0);
}

static void test_device_find(void **state)
{
	struct fixture *f = *state;
	struct rows r = {0};

	assert_int_equal(fgw_store_device_find(f->s, "AA:00:00:00:00:0B", NULL, collect_device, &r),
			 0);
	assert_int_equal(fgw_store_device_find(f->s, "AA:00:00:00:00:0F", "r1", collect_device, &r),
			 0);
	assert_int_equal(fgw_store_device_find(f->s, "AA:00:00:00:00:0F", NULL, collect_device, &r),
			 0);
	assert_int_equal(fgw_store_device_find(f->s, "AA:00:00:00:00:99", NULL, collect_device, &r),
			 -ENOENT);
	assert_rows(&r, (const char *const[]){"0B=failed", "0F=done", "0F=idle", NULL});
}

static int collect_image(const struct fgw_store_device_image *img, void *user_data)
{
	struct rows *r = user_data;

	snprintf(r->row[r->n++], sizeof(r->row[0]), "%lld/%lld %s %s %lld", (long long) img->image,
		 (long long) img->slot, img->version, img->hash, (long long) img->flags);
	return 0;
}

static int collect_event(const struct fgw_store_event *e, void *user_data)
{
	struct rows *r = user_data;

	snprintf(r->row[r->n++], sizeof(r->row[0]), "%lld %s>%s job=%s", (long long) e->at,
		 e->from_state, e->to_state, e->job_id == FGW_STORE_NULL ? "null" : "set");
	return 0;
}

static void test_images_events(void **state)
{
	struct fixture *f = *state;
	struct rows r = {0};

	assert_int_equal(
	    fgw_store_device_images_foreach(f->s, "AA:00:00:00:00:0A", collect_image, &r), 3);
	assert_rows(&r, (const char *const[]){"0/0 1.0.0 aa00 3", "0/1 1.1.0 bb00 0",
					      "1/1 1.1.0 bb01 4", NULL});
	memset(&r, 0, sizeof(r));
	assert_int_equal(
	    fgw_store_device_events_foreach(f->s, "AA:00:00:00:00:0A", 2, collect_event, &r), 2);
	assert_rows(&r, (const char *const[]){"3 probing>uploading job=null",
					      "2 connecting>probing job=null", NULL});
	memset(&r, 0, sizeof(r));
	assert_int_equal(fgw_store_device_images_foreach(f->s, "nope", collect_image, &r), 0);
}

static void test_releases(void **state)
{
	struct fixture *f = *state;
	struct rows r = {0};

	/* r3 is newer but pending: the current release is the newest verified one, r2. */
	assert_int_equal(fgw_store_current_release(f->s, collect_release, &r), 0);
	assert_rows(&r, (const char *const[]){"r2=verified", NULL});
	memset(&r, 0, sizeof(r));
	assert_int_equal(fgw_store_releases_foreach(f->s, collect_release, &r), 4);
	assert_rows(&r, (const char *const[]){"r3=pending", "r2=verified", "r1=superseded",
					      "r0=verified", NULL});
	memset(&r, 0, sizeof(r));
	assert_int_equal(fgw_store_release_counts(f->s, collect_count, &r), 3);
	assert_rows(&r,
		    (const char *const[]){"pending/0=1", "superseded/0=1", "verified/0=2", NULL});
}

static void test_counts(void **state)
{
	struct fixture *f = *state;
	struct rows r = {0};

	assert_true(fgw_store_state_counts(f->s, "r2", collect_count, &r) > 0);
	assert_rows(&r, (const char *const[]){"done/0=1", "failed/0=1", "failed/1=1", "idle/0=1",
					      "reverted/0=1", "uploading/1=1", NULL});
	memset(&r, 0, sizeof(r));
	assert_int_equal(fgw_store_state_counts(f->s, NULL, collect_count, &r), 1);
	assert_rows(&r, (const char *const[]){"idle/0=6", NULL});
	memset(&r, 0, sizeof(r));
	assert_int_equal(fgw_store_failure_reasons(f->s, "r2", collect_count, &r), 2);
	assert_rows(&r, (const char *const[]){"image rejected/0=2", "revert seen/0=1", NULL});
	memset(&r, 0, sizeof(r));
	/* Most recent failure first. */
	assert_int_equal(fgw_store_failures_foreach(f->s, "r2", 2, collect_device, &r), 2);
	assert_rows(&r, (const char *const[]){"0D=reverted", "0C=failed", NULL});
}

static int copy_rollout(const struct fgw_store_rollout *ro, void *user_data)
{
	snprintf(user_data, 96, "%d %s %s", ro->halted, ro->halted_by, ro->halted_reason);
	return 0;
}

static int copy_manifest(const struct fgw_store_manifest_state *m, void *user_data)
{
	snprintf(user_data, 96, "%lld %s %lld %s", (long long) m->sequence, m->etag,
		 (long long) m->last_poll_at, m->last_result);
	return 0;
}

static void test_single_rows(void **state)
{
	struct fixture *f = *state;
	char buf[96] = "";

	assert_int_equal(fgw_store_rollout_get(f->s, "r2", copy_rollout, buf), 0);
	assert_string_equal(buf, "1 operator lunch");
	assert_int_equal(fgw_store_rollout_get(f->s, "r1", copy_rollout, buf), -ENOENT);
	assert_int_equal(fgw_store_manifest_state_get(f->s, copy_manifest, buf), 0);
	assert_string_equal(buf, "3 \"e\" 1000 not-modified");
}

static void test_states_table(void **state)
{
	const char *const *st = fgw_store_device_states();
	int n = 0;

	for (; st[n]; n++)
		;
	/* The schema's 14 job states plus idle and unenrolled (no job either). */
	assert_int_equal(n, 16);
	assert_string_equal(st[n - 2], "idle");
	assert_string_equal(st[n - 1], "unenrolled");
}

/* Named after the function and its case, so a failure says which case. */
#define T(fn, param)                                                                               \
	{                                                                                          \
#fn " " #param, fn, setup, teardown, (void *) (param)                              \
	}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_devices, &dev_all),
	    T(test_devices, &dev_page2),
	    T(test_devices, &dev_failed),
	    T(test_devices, &dev_idle),
	    T(test_devices, &dev_group),
	    T(test_devices, &dev_r1),
	    T(test_devices, &dev_unknown_release),
	    T(test_devices, &dev_past_end),
	    T(test_devices_errors, NULL),
	    T(test_device_find, NULL),
	    T(test_images_events, NULL),
	    T(test_releases, NULL),
	    T(test_counts, NULL),
	    T(test_single_rows, NULL),
	    cmocka_unit_test(test_states_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
