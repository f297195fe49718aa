/* The lib/release unit tests' fixture of release-fixture.h. */
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <zip.h>

#include "release-fixture.h"

void write_all(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
}

int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	f->param = *state;
	f->app_fd = -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/fgw-test-rel-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->srv, sizeof(f->srv), "%s/srv", f->dir);
	snprintf(f->cache, sizeof(f->cache), "%s/cache", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/t.db", f->dir);
	mkdir(f->srv, 0755);
	snprintf(f->key_a, sizeof(f->key_a), "%s/a.pem", f->dir);
	snprintf(f->pub_a, sizeof(f->pub_a), "%s/a.pub.pem", f->dir);
	snprintf(f->key_b, sizeof(f->key_b), "%s/b.pem", f->dir);
	snprintf(f->boot, sizeof(f->boot), "%s/boot.pem", f->dir);
	snprintf(f->boot_pub, sizeof(f->boot_pub), "%s/boot.pub.pem", f->dir);
	snprintf(f->boot2, sizeof(f->boot2), "%s/boot2.pem", f->dir);
	if (fgw_key_generate(FGW_KEY_TYPE_ED25519, &f->a) < 0 ||
	    fgw_key_generate(FGW_KEY_TYPE_ED25519, &f->b) < 0 ||
	    fgw_key_generate(FGW_KEY_TYPE_ECDSA_P256, &f->m) < 0 ||
	    fgw_key_generate(FGW_KEY_TYPE_ECDSA_P256, &f->m2) < 0 ||
	    fgw_key_save(f->a, f->key_a, f->pub_a) < 0 ||
	    fgw_key_save(f->m, f->boot, f->boot_pub) < 0)
		return -1;
	if (fgw_store_open(f->db, 5000, &f->store) < 0 || fgw_store_migrate(f->store, NULL, 0) < 0)
		return -1;
	uv_loop_init(&f->loop);
	*state = f;
	return 0;
}

void source_stop(struct fix *f)
{
	f->src = fgw_release_source_free(f->src);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

int teardown(void **state)
{
	struct fix *f = *state;
	char cmd[128];

	source_stop(f);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	if (f->app_fd >= 0)
		close(f->app_fd);
	free(f->app);
	fgw_store_free(f->store);
	fgw_key_free(f->a);
	fgw_key_free(f->b);
	fgw_key_free(f->m);
	fgw_key_free(f->m2);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	(void) !system(cmd);
	free(f);
	return 0;
}

static void on_verified(const struct fgw_release_info *info, void *user_data)
{
	struct fix *f = user_data;

	assert_true(info->n_images >= 1);
	assert_int_equal(info->images[0].index, 0);
	if (f->app_fd >= 0)
		close(f->app_fd);
	f->app_fd = dup(info->images[0].fd);
	f->app_size = info->images[0].size;
	f->app_trailing = info->images[0].trailing;
	memcpy(f->app_sha, info->images[0].sha256, 32);
	assert_memory_equal(info->images[0].data, f->app, FGW_MIN(f->app_size, f->app_len));
	assert_int_equal(access(info->bundle_path, R_OK), 0);
	if (f->n_verified < 8) {
		snprintf(f->verified[f->n_verified], 64, "%s", info->release->id);
		f->restored[f->n_verified] = info->restored;
	}
	f->n_verified++;
}

static void on_cycle(const char *result, void *user_data)
{
	struct fix *f = user_data;

	f->cycles++;
	snprintf(f->result, sizeof(f->result), "%s", result);
}

void source_start(struct fix *f)
{
	char url[160];
	const char *keys[] = {f->pub_a};
	struct fgw_release_source_options o = {
	    .manifest_url = url,
	    .trusted_keys = keys,
	    .n_trusted_keys = 1,
	    .mcuboot_key = f->boot_pub,
	    .cache_dir = f->cache,
	    .cache_budget_bytes = f->budget,
	    .clock_floor_s = f->clock_floor,
	    .channel = f->channel,
	};

	snprintf(url, sizeof(url), "file://%s/manifest.json", f->srv);
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &f->src), 0);
	fgw_release_source_set_verified_cb(f->src, on_verified, f);
	fgw_release_source_set_cycle_cb(f->src, on_cycle, f);
	assert_int_equal(fgw_release_source_start(f->src), 0);
}

/* Fires the deadline of run_timed(). */
static void on_deadline(uv_timer_t *t)
{
	*(bool *) t->data = true;
}

/* Runs the loop until *@n differs from @before (@n NULL: until @ms have passed); a timer wakes
 * the loop at @ms, so that nothing hangs. True if the count changed. */
static bool run_timed(struct fix *f, uint64_t ms, const int *n, int before)
{
	uv_timer_t t;
	bool late = false;

	uv_timer_init(&f->loop, &t);
	t.data = &late;
	uv_timer_start(&t, on_deadline, ms, 0);
	while (!late && !(n && *n != before))
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *) &t, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return n && *n != before;
}

/* A cycle is a file:// download and a verification: seconds under valgrind, never a minute. */
#define CYCLE_MAX_MS 60000

void run_cycle(struct fix *f)
{
	int before = f->cycles;

	if (!f->src)
		source_start(f);
	else
		fgw_release_source_poll_now(f->src);
	if (!run_timed(f, CYCLE_MAX_MS, &f->cycles, before))
		fail_msg("no poll cycle ended within %d ms", CYCLE_MAX_MS);
	assert_int_equal(fgw_release_source_get_state(f->src), FGW_RELEASE_SOURCE_STATE_IDLE);
}

void pace(struct fix *f, uint64_t ms)
{
	(void) run_timed(f, ms, NULL, 0);
}

struct fgw_release_status status_of(struct fix *f)
{
	struct fgw_release_status st;

	fgw_release_source_get_status(f->src, &st);
	return st;
}

/* ---- bundles ---- */

static void make_image(struct fix *f, const char *version, size_t len, unsigned seed,
		       const struct fgw_key *key, uint8_t **ret, size_t *ret_len)
{
	uint8_t *body = malloc(len);
	struct fgw_mcuboot_write_opts o = {.key = key};

	for (size_t i = 0; i < len; i++)
		body[i] = (uint8_t) (i * seed + seed);
	assert_int_equal(fgw_image_version_parse(version, &o.version), 0);
	assert_int_equal(fgw_mcuboot_write(body, len, &o, ret, ret_len), 0);
	free(body);
}

static void zadd(zip_t *za, const char *name, const void *data, size_t len)
{
	zip_source_t *src = zip_source_buffer(za, data, len, 0);

	assert_true(zip_file_add(za, name, src, ZIP_FL_ENC_RAW) >= 0);
}

void make_bundle(struct fix *f, const char *name, const char *version, enum corrupt c,
		 char sha_hex[65], uint64_t *size)
{
	uint8_t *app, *net, sha[32];
	size_t app_len, net_len;
	char path[160], *man;
	zip_t *za;
	int err;

	make_image(f, version, 4000, 3, c == C_OTHER_KEY ? f->m2 : f->m, &app, &app_len);
	make_image(f, "0.0.0", 2500, 5, f->m, &net, &net_len);
	switch (c) {
	case C_MAGIC:
		net[0] ^= 0x5a;
		break;
	case C_TLV_LEN: /* unprotected TLV info length claims 100 more bytes */
		app[0x200 + 4000 + 2] += 100;
		break;
	case C_HASH:
		app[0x200 + 100] ^= 0x01;
		break;
	case C_TRAILING:
		app = realloc(app, app_len + 64);
		memset(app + app_len, 0xa5, 64);
		app_len += 64;
		break;
	default:
		break;
	}
	free(f->app);
	f->app = malloc(app_len);
	memcpy(f->app, app, app_len);
	f->app_len = app_len;
	assert_true(asprintf(&man,
			     "{\"format-version\": 1, \"files\": [{\"type\": \"application\", "
			     "\"board\": \"nrf5340dk/nrf5340/cpuapp\", \"image_index\": \"0\", "
			     "\"file\": \"app.bin\", \"size\": %zu}, {\"type\": \"application\", "
			     "\"board\": \"nrf5340dk/nrf5340/cpunet\", \"image_index\": \"1\", "
			     "\"file\": \"net.bin\", \"size\": %zu}]}",
			     app_len, net_len) > 0);
	snprintf(path, sizeof(path), "%s/%s", f->srv, name);
	unlink(path);
	za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
	assert_non_null(za);
	zadd(za, "manifest.json", man, strlen(man));
	zadd(za, "app.bin", app, app_len);
	if (c != C_MISSING_NET)
		zadd(za, "net.bin", net, net_len);
	if (c == C_DOTDOT)
		zadd(za, "../../etc/cron.d/evil", "x", 1);
	assert_int_equal(zip_close(za), 0);
	if (c == C_TRUNCATE) {
		struct stat st;
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(truncate(path, st.st_size * 2 / 3), 0);
	}
	assert_int_equal(fgw_sha256_file(path, UINT64_MAX, sha, size), 0);
	fgw_hex_encode(sha, 32, sha_hex);
	free(man);
	free(app);
	free(net);
}

void publish(struct fix *f, int64_t seq, int64_t expires_in, const struct rel *rels, size_t n,
	     const struct fgw_key *key, bool tamper)
{
	char path[160], expires[32], *json = NULL, *sig = NULL, *body = strdup("");
	time_t t = time(NULL) + expires_in;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm);
	for (size_t i = 0; i < n; i++) {
		char *next;
		assert_true(
		    asprintf(&next,
			     "%s%s{\"id\": \"%s\", \"version\": \"%s\", \"bundle\": {\"url\": "
			     "\"%s\", \"sha256\": \"%s\", \"size\": %llu}, \"targets\": "
			     "{\"board\": \"%s\", \"groups\": [\"lab\"]}, \"policy\": "
			     "{\"mode\": \"confirm\", \"canary_percent\": 20}}",
			     body, i ? ", " : "", rels[i].id, rels[i].version, rels[i].url,
			     rels[i].sha, (unsigned long long) rels[i].size,
			     rels[i].board ? rels[i].board : "nrf5340dk") > 0);
		free(body);
		body = next;
	}
	char chan[96] = "";
	if (f->manifest_channel)
		snprintf(chan, sizeof(chan), "\"channel\": \"%s\", ", f->manifest_channel);
	assert_true(asprintf(&json,
			     "{\"schema\": 1, \"sequence\": %lld, %s\"expires\": \"%s\", "
			     "\"releases\": [%s]}\n",
			     (long long) seq, chan, expires, body) > 0);
	assert_int_equal(fgw_manifest_sign(json, strlen(json), key, &sig), 0);
	if (tamper) {
		/* one more blank after signing: still valid JSON, but not the signed bytes */
		char *more;
		assert_true(asprintf(&more, "%s ", json) > 0);
		free(json);
		json = more;
	}
	snprintf(path, sizeof(path), "%s/manifest.json", f->srv);
	write_all(path, json, strlen(json));
	snprintf(path, sizeof(path), "%s/manifest.json.sig", f->srv);
	write_all(path, sig, strlen(sig));
	free(json);
	free(sig);
	free(body);
}

struct rel make_r1(struct fix *f)
{
	uint64_t size;

	make_bundle(f, "r1.zip", "1.0.0+1", C_NONE, f->r1_sha, &size);
	/* the url is relative to the manifest */
	return (struct rel){"fw-1.0.0", "1.0.0+1", "r1.zip", f->r1_sha, size, NULL};
}

void publish_r1(struct fix *f)
{
	const struct rel r1 = make_r1(f);

	publish(f, 5, 86400, &r1, 1, f->a, false);
}

/* ---- database probes ---- */

void query_text(struct fix *f, const char *sql, char *out, size_t size)
{
	sqlite3 *db;
	sqlite3_stmt *st;

	out[0] = '\0';
	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(out, size, "%s", (const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

void release_state(struct fix *f, const char *id, char *state, char *reason)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT state FROM releases WHERE id = '%s'", id);
	query_text(f, sql, state, 32);
	snprintf(sql, sizeof(sql), "SELECT reason FROM releases WHERE id = '%s'", id);
	query_text(f, sql, reason, 256);
}

bool cache_has(struct fix *f, const char *sha, const char *ext)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s%s", f->cache, sha, ext);
	return access(path, F_OK) == 0;
}
