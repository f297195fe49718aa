/* devices.security (migration 0003) on a real SQLite file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store.h"
#include "util.h"

struct fx {
	char dir[64];
	char path[128];
	struct fgw_store *s;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/fgw-test-sec-XXXXXX");
	if (!f || !mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	if (fgw_store_open(f->path, 1000, &f->s) < 0 || fgw_store_migrate(f->s, NULL, 0) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	fgw_store_free(f->s);
	unlink(f->path);
	unlink(strcat(strcpy((char[160]){0}, f->path), "-wal"));
	unlink(strcat(strcpy((char[160]){0}, f->path), "-shm"));
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_security(void **state)
{
	struct fx *f = *state;
	char buf[32];

	assert_int_equal(fgw_store_device_security_get(f->s, "C0:00:00:00:00:01", buf, sizeof(buf)),
			 -ENOENT);
	assert_int_equal(fgw_store_device_security_set(f->s, "C0:00:00:00:00:01", "none"), -ENOENT);
	assert_int_equal(fgw_store_device_seen(f->s, "C0:00:00:00:00:01", "ble", "d", NULL, 1), 0);
	/* a new device is unknown until learned */
	assert_int_equal(fgw_store_device_security_get(f->s, "C0:00:00:00:00:01", buf, sizeof(buf)),
			 0);
	assert_string_equal(buf, "unknown");
	assert_int_equal(fgw_store_device_security_set(f->s, "C0:00:00:00:00:01", "authenticated"),
			 0);
	assert_int_equal(fgw_store_device_security_set(f->s, "C0:00:00:00:00:01", "bogus"),
			 -EINVAL);
	/* seen again: the level stays */
	assert_int_equal(fgw_store_device_seen(f->s, "C0:00:00:00:00:01", "ble", "d", NULL, 2), 0);
	assert_int_equal(fgw_store_device_security_get(f->s, "C0:00:00:00:00:01", buf, sizeof(buf)),
			 0);
	assert_string_equal(buf, "authenticated");
	/* and survives a reopen */
	f->s = fgw_store_free(f->s);
	assert_int_equal(fgw_store_open(f->path, 1000, &f->s), 0);
	assert_int_equal(fgw_store_migrate(f->s, NULL, 0), 0);
	assert_int_equal(fgw_store_device_security_get(f->s, "C0:00:00:00:00:01", buf, sizeof(buf)),
			 0);
	assert_string_equal(buf, "authenticated");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_security, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
