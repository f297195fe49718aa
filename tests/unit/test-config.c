#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "util.h"

struct diags {
	int n;
	int line[8];
	char key[8][64];
	char msg[8][256];
};

static void collect(const char *file, int line, const char *section, const char *key,
		    const char *message, void *user_data)
{
	struct diags *d = user_data;

	if (d->n < 8) {
		d->line[d->n] = line;
		snprintf(d->key[d->n], sizeof(d->key[0]), "%s.%s", section ? section : "",
			 key ? key : "");
		snprintf(d->msg[d->n], sizeof(d->msg[0]), "%s", message);
	}
	d->n++;
}

struct bad_case {
	const char *text;
	int line;
	const char *key;
	const char *msg_part;
};

static const char good[] = "# comment\n"
			   "[log]\n"
			   "level = debug ; inline comment\n"
			   "[store]\n"
			   "path = /var/lib/fotagw/fotagw.db\n";

static void test_good(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};

	assert_int_equal(fgw_config_load_string(good, "t.conf", &c, collect, &d), 0);
	assert_int_equal(d.n, 0);
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_string_equal(c.db_path, "/var/lib/fotagw/fotagw.db");
	assert_int_equal(c.busy_timeout_ms, 5000); /* default */
	fgw_config_done(&c);
}

static const struct bad_case bad_unknown_key = {
	"[store]\npath = x.db\nbusy_timeout = 4\n", 3, "store.busy_timeout", "unknown key"};
static const struct bad_case bad_unknown_section = {
	"[store]\npath = x.db\n[stor]\npath = y\n", 4, "stor.path", "unknown section"};
static const struct bad_case bad_int = {
	"[store]\npath = x.db\nbusy_timeout_ms = 5s\n", 3, "store.busy_timeout_ms", "bad value"};
static const struct bad_case bad_range = {
	"[store]\npath = x.db\nbusy_timeout_ms = -1\n", 3, "store.busy_timeout_ms", "from 0"};
static const struct bad_case bad_level = {
	"[log]\nlevel = loud\n[store]\npath = x.db\n", 2, "log.level", "bad value 'loud'"};
static const struct bad_case bad_missing = {"[log]\nlevel = info\n", 0, "store.path",
					    "missing required key"};
static const struct bad_case bad_empty = {"[store]\npath =\n", 2, "store.path", "needs a value"};
static const struct bad_case bad_twice = {"[store]\npath = a\npath = b\n", 3, "store.path",
					  "given twice"};
static const struct bad_case bad_syntax = {"[store]\npath = a\nthis is not ini\n", 3, ".",
					   "syntax error"};
static const struct bad_case bad_outside = {"level = 3\n[store]\npath = a\n", 1, ".level",
					    "outside of any"};

static void test_bad(void **state)
{
	const struct bad_case *bc = *state;
	struct fgw_config c = {0};
	struct diags d = {0};

	assert_int_equal(fgw_config_load_string(bc->text, "t.conf", &c, collect, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.line[0], bc->line);
	assert_string_equal(d.key[0], bc->key);
	assert_non_null(strstr(d.msg[0], bc->msg_part));
	assert_null(c.db_path); /* nothing half-loaded */
}

static void test_list_key_lines(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};

	/* A list key may take several lines (a config line has a length limit); each appends. */
	assert_int_equal(fgw_config_load_string("[store]\npath = x.db\n[fleet]\n"
						"udp_devices = 10.0.0.1:1337 10.0.0.2:1337\n"
						"udp_devices = 10.0.0.3:1337\n",
						"t.conf", &c, collect, &d),
			 0);
	assert_int_equal(d.n, 0);
	assert_string_equal(c.udp_devices, "10.0.0.1:1337 10.0.0.2:1337 10.0.0.3:1337");
	fgw_config_done(&c);
}

static void test_long_line(void **state)
{
	char text[1024];
	struct fgw_config c = {0};
	struct diags d = {0};

	snprintf(text, sizeof(text), "[store]\npath = /%0400d\n", 0);
	assert_int_equal(fgw_config_load_string(text, "t.conf", &c, collect, &d), -EINVAL);
	assert_true(d.n >= 1);
	assert_int_equal(d.line[0], 2);
	assert_non_null(strstr(d.msg[0], "longer than"));
}

static void test_several_errors(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};

	assert_int_equal(fgw_config_load_string("[log]\nlevel=x\nfoo=1\n", "t", &c, collect, &d),
			 -EINVAL);
	assert_int_equal(d.n, 3); /* bad level, unknown key, missing store.path */
}

static void test_reload(void **state)
{
	struct fgw_config cur = {0}, next = {0};
	struct diags d = {0};

	assert_int_equal(fgw_config_load_string(good, "a", &cur, NULL, NULL), 0);
	assert_int_equal(fgw_config_load_string("[log]\nlevel=err\n[store]\npath=/other.db\n", "b",
						&next, NULL, NULL),
			 0);
	/* level applies, the database path needs a restart and is said so */
	assert_int_equal(fgw_config_apply_reload(&cur, &next, collect, &d), 1);
	assert_int_equal(cur.log_level, LOG_ERR);
	assert_string_equal(cur.db_path, "/var/lib/fotagw/fotagw.db");
	assert_int_equal(d.n, 2);
	assert_string_equal(d.key[0], "log.level");
	assert_string_equal(d.msg[0], "applied");
	assert_string_equal(d.key[1], "store.path");
	fgw_config_done(&cur);
	fgw_config_done(&next);
}

/*
 * ble.name_prefix: fleet-glue.c reads it from the daemon's configuration at each BlueZ device
 * report, so the reloaded value is the one in force for the next advertisement.
 */
static void test_reload_name_prefix(void **state)
{
	struct fgw_config cur = {0}, next = {0};

	assert_int_equal(fgw_config_load_string(good, "a", &cur, NULL, NULL), 0);
	assert_int_equal(fgw_config_load_string("[store]\npath=/var/lib/fotagw/fotagw.db\n"
						"[ble]\nname_prefix=sensor-\n",
						"b", &next, NULL, NULL),
			 0);
	assert_true(fgw_config_apply_reload(&cur, &next, NULL, NULL) > 0);
	assert_string_equal(cur.ble_name_prefix, "sensor-");
	fgw_config_done(&cur);
	fgw_config_done(&next);
}

static void test_example_file(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};

	/* The shipped, documented example must load as it is. */
	assert_int_equal(fgw_config_load_file(FGW_SOURCE_DIR "/config/fotagw.conf", &c, collect, &d),
			 0);
	assert_int_equal(d.n, 0);
	fgw_config_done(&c);
	assert_int_equal(fgw_config_load_file("/nonexistent/x.conf", &c, collect, &d), -ENOENT);
}

static void test_api_section(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};

	/* Defaults: on, loopback only, no token (every POST refused). */
	assert_int_equal(fgw_config_load_string(good, "t.conf", &c, collect, &d), 0);
	assert_true(c.api_enabled);
	assert_string_equal(c.api_listen, "127.0.0.1");
	assert_int_equal(c.api_port, 8370);
	assert_string_equal(c.api_token_file, "");
	assert_int_equal(c.api_max_connections, 32);
	assert_int_equal(c.api_timeout_s, 15);
	fgw_config_done(&c);
	assert_int_equal(fgw_config_load_string("[store]\npath = x\n[api]\nenabled = no\n"
						"listen = ::1\nport = 9000\ntoken_file = /t\n",
						"t.conf", &c, collect, &d),
			 0);
	assert_false(c.api_enabled);
	assert_string_equal(c.api_listen, "::1");
	assert_int_equal(c.api_port, 9000);
	assert_string_equal(c.api_token_file, "/t");
	fgw_config_done(&c);
	assert_int_equal(fgw_config_load_string("[store]\npath = x\n[api]\nport = 0\n", "t.conf",
						&c, collect, &d),
			 -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.key[0], "api.port");
}

static void test_ble_section(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};

	/* Defaults: first adapter, powered, scanning with the SMP filter, 8 links, 20 s. */
	assert_int_equal(fgw_config_load_string(good, "t.conf", &c, collect, &d), 0);
	assert_true(c.ble_enabled);
	assert_string_equal(c.ble_adapter, "");
	assert_true(c.ble_power_on);
	assert_true(c.ble_scan);
	assert_true(c.ble_filter_service);
	assert_int_equal(c.ble_rssi_threshold, -90);
	assert_int_equal(c.ble_max_connections, 8);
	assert_int_equal(c.ble_connect_timeout_s, 20);
	assert_true(c.ble_acquire);
	fgw_config_done(&c);
	assert_int_equal(fgw_config_load_string("[store]\npath = x\n[ble]\nadapter = hci1\n"
						"rssi_threshold = -70\nmax_connections = 2\n"
						"acquire = no\n",
						"t.conf", &c, collect, &d),
			 0);
	assert_string_equal(c.ble_adapter, "hci1");
	assert_int_equal(c.ble_rssi_threshold, -70);
	assert_int_equal(c.ble_max_connections, 2);
	assert_false(c.ble_acquire);
	fgw_config_done(&c);
	assert_int_equal(fgw_config_load_string("[store]\npath = x\n[ble]\nmax_connections = 0\n"
						"rssi_threshold = 5\n",
						"t.conf", &c, collect, &d),
			 -EINVAL);
	assert_int_equal(d.n, 2);
	assert_string_equal(d.key[0], "ble.max_connections");
	assert_string_equal(d.key[1], "ble.rssi_threshold");
}

/* [release]: defaults, values, and a range check. */
static void test_release_keys(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};

	assert_int_equal(fgw_config_load_string(good, "t.conf", &c, collect, &d), 0);
	assert_string_equal(c.release_manifest_url, "");
	assert_int_equal(c.release_poll_interval_s, 300);
	assert_string_equal(c.release_cache_dir, "/var/cache/fotagw");
	assert_int_equal(c.release_cache_budget_mib, 512);
	assert_int_equal(c.release_download_timeout_s, 1800);
	assert_int_equal(c.release_low_speed_limit_bytes, 100);
	assert_int_equal(c.release_low_speed_time_s, 60);
	fgw_config_done(&c);
	assert_int_equal(fgw_config_load_string("[store]\npath = x.db\n[release]\n"
						"manifest_url = https://r.example/manifest.json\n"
						"trusted_keys = /etc/fotagw/a.pem /etc/fotagw/b.pem\n"
						"mcuboot_key = /etc/fotagw/boot.pem\n"
						"poll_interval_s = 60\ncache_budget_mib = 0\n",
						"t.conf", &c, collect, &d),
			 0);
	assert_string_equal(c.release_manifest_url, "https://r.example/manifest.json");
	assert_string_equal(c.release_trusted_keys, "/etc/fotagw/a.pem /etc/fotagw/b.pem");
	assert_string_equal(c.release_mcuboot_key, "/etc/fotagw/boot.pem");
	assert_int_equal(c.release_poll_interval_s, 60);
	assert_int_equal(c.release_cache_budget_mib, 0);
	fgw_config_done(&c);
	assert_int_equal(fgw_config_load_string("[store]\npath = x.db\n[release]\n"
						"poll_interval_s = 1\n",
						"t.conf", &c, collect, &d),
			 -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.key[0], "release.poll_interval_s");
}

/* Issue 18 item 5: credentials in the manifest URL are refused, pointing to the TLS options. */
static void test_release_url_userinfo(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};

	assert_int_equal(fgw_config_load_string("[store]\npath = x.db\n[release]\n"
						"manifest_url = https://u:pw@r.example/m.json\n",
						"t.conf", &c, collect, &d),
			 -EINVAL);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.line[0], 4);
	assert_string_equal(d.key[0], "release.manifest_url");
	assert_non_null(strstr(d.msg[0], "client_cert"));
	/* an '@' after the host is not userinfo */
	assert_int_equal(fgw_config_load_string("[store]\npath = x.db\n[release]\n"
						"manifest_url = https://r.example/a@b/m.json?x=@\n",
						"t.conf", &c, collect, &d),
			 0);
	fgw_config_done(&c);
}

/* One limit on trusted keys (FGW_MANIFEST_MAX_KEYS, 8): one more is a config error. */
static void test_release_key_limit(void **state)
{
	struct fgw_config c = {0};
	struct diags d = {0};
	char text[1024], *p = text;

	p += sprintf(p, "[store]\npath = x.db\n[release]\ntrusted_keys = k0 k1 k2 k3\n");
	p += sprintf(p, "trusted_keys = k4 k5 k6 k7\n");
	assert_int_equal(fgw_config_load_string(text, "t.conf", &c, collect, &d), 0);
	assert_string_equal(c.release_trusted_keys, "k0 k1 k2 k3 k4 k5 k6 k7");
	fgw_config_done(&c);
	sprintf(p, "trusted_keys = k8\n");
	assert_int_equal(fgw_config_load_string(text, "t.conf", &c, collect, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.line[0], 6);
	assert_string_equal(d.key[0], "release.trusted_keys");
	assert_non_null(strstr(d.msg[0], "at most 8 entries"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_unknown_key),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_unknown_section),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_int),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_range),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_level),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_missing),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_empty),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_twice),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_syntax),
		cmocka_unit_test_prestate(test_bad, (void *) &bad_outside),
		cmocka_unit_test(test_list_key_lines),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_several_errors),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_reload_name_prefix),
		cmocka_unit_test(test_example_file),
		cmocka_unit_test(test_release_keys),
		cmocka_unit_test(test_release_key_limit),
		cmocka_unit_test(test_release_url_userinfo),
		cmocka_unit_test(test_api_section),
		cmocka_unit_test(test_ble_section),
	};
	fgw_log_set_level(LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
