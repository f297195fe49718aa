/*
 * lib/release end to end on a real loop, SQLite file and cache directory, with the
 * "server" a file:// directory (nginx runs the HTTP side in tests/release-it). Each refusal
 * of the issue has a case: it is recorded with its reason, and the release verified before
 * stays in force.
 */
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

#include "bundle.h"
#include "release.h"
#include "store.h"

struct fix {
	char dir[64], srv[96], cache[96], db[96];
	char key_a[128], pub_a[128], key_b[128], boot[128], boot_pub[128], boot2[128];
	struct fgw_key *a, *b, *m, *m2;
	uv_loop_t loop;
	struct fgw_store *store;
	struct fgw_release_source *src;
	uint64_t budget;
	int64_t clock_floor;
	const char *channel;	      /* the gateway's */
	const char *manifest_channel; /* what publish() signs, NULL: none */
	const void *param;	      /* the test's initial state (a refusal case) */
	/* what the callbacks saw */
	int cycles;
	char result[160];
	int n_verified;
	char verified[8][64];
	bool restored[8];
	/* the app image as built, and what the last callback handed over for it */
	uint8_t *app;
	size_t app_len;
	int app_fd; /* a dup of the sealed memfd, kept like the fleet's mapping keeps it */
	size_t app_size, app_trailing;
	uint8_t app_sha[32];
};

static void write_all(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
}

static int setup(void **state)
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

static void source_stop(struct fix *f)
{
	f->src = fgw_release_source_free(f->src);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static int teardown(void **state)
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

static void source_start(struct fix *f)
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

static void run_cycle(struct fix *f)
{
	int before = f->cycles;

	if (!f->src)
		source_start(f);
	else
		fgw_release_source_poll_now(f->src);
	while (f->cycles == before)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(fgw_release_source_get_state(f->src), FGW_RELEASE_SOURCE_STATE_IDLE);
}

/* ---- bundles ---- */

enum corrupt {
	C_NONE,
	C_MAGIC,
	C_TLV_LEN,
	C_HASH,
	C_OTHER_KEY,
	C_MISSING_NET,
	C_DOTDOT,
	C_TRUNCATE,
	C_TRAILING, /* unsigned bytes after the app image's TLV area */
};

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

/* Writes srv/<name> and returns its sha256 hex and size. */
static void make_bundle(struct fix *f, const char *name, const char *version, enum corrupt c,
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

struct rel {
	const char *id, *version, *url, *sha;
	uint64_t size;
	const char *board;
};

static void publish(struct fix *f, int64_t seq, int64_t expires_in, const struct rel *rels,
		    size_t n, const struct fgw_key *key, bool tamper)
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

/* ---- database probes ---- */

static void query_text(struct fix *f, const char *sql, char *out, size_t size)
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

static void release_state(struct fix *f, const char *id, char *state, char *reason)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT state FROM releases WHERE id = '%s'", id);
	query_text(f, sql, state, 32);
	snprintf(sql, sizeof(sql), "SELECT reason FROM releases WHERE id = '%s'", id);
	query_text(f, sql, reason, 256);
}

static bool cache_has(struct fix *f, const char *sha, const char *ext)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s%s", f->cache, sha, ext);
	return access(path, F_OK) == 0;
}

/* R1: the good release every case starts from, sequence 5. */
static char r1_sha[65];

static void publish_r1(struct fix *f)
{
	uint64_t size;
	char url[160];

	make_bundle(f, "r1.zip", "1.0.0+1", C_NONE, r1_sha, &size);
	snprintf(url, sizeof(url), "r1.zip"); /* relative to the manifest */
	const struct rel r1 = {"fw-1.0.0", "1.0.0+1", url, r1_sha, size, NULL};
	publish(f, 5, 86400, &r1, 1, f->a, false);
}

static void test_happy(void **state)
{
	struct fix *f = *state;
	char st[32], reason[256], text[64];

	publish_r1(f);
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	assert_int_equal(f->n_verified, 1);
	assert_string_equal(f->verified[0], "fw-1.0.0");
	assert_false(f->restored[0]);
	release_state(f, "fw-1.0.0", st, reason);
	assert_string_equal(st, "verified");
	assert_true(cache_has(f, r1_sha, ".zip"));
	assert_false(cache_has(f, r1_sha, ".part"));
	query_text(f, "SELECT sequence FROM manifest_state", text, sizeof(text));
	assert_string_equal(text, "5");
	query_text(f, "SELECT bundle_url FROM releases", text, sizeof(text));
	assert_non_null(strstr(text, "file:///"));
	query_text(f, "SELECT count(*) FROM events WHERE kind = 'release'", text, sizeof(text));
	assert_true(atoi(text) >= 2);

	/* the store never lowers the rollback guard, whoever asks */
	assert_int_equal(fgw_store_manifest_accept(f->store, 4, NULL, "x", 0), -ESTALE);
	query_text(f, "SELECT sequence FROM manifest_state", text, sizeof(text));
	assert_string_equal(text, "5");

	/* the same manifest again: nothing new */
	run_cycle(f);
	assert_string_equal(f->result, "unchanged");
	assert_int_equal(f->n_verified, 1);

	/* a restart finds it in the cache and announces it again */
	source_stop(f);
	run_cycle(f);
	assert_int_equal(f->n_verified, 2);
	assert_true(f->restored[1]);
	assert_string_equal(f->result, "unchanged");
}

struct refusal {
	const char *name;
	const char *reason;  /* expected reason */
	bool manifest_level; /* the manifest is refused, not a release */
	enum corrupt corrupt;
	int64_t seq, expires_in;
	int size_delta;	     /* declared size = actual + delta */
	bool bad_sha;	     /* declared sha of something else */
	bool untrusted;	     /* signed by key b */
	bool tamper;	     /* manifest changed after signing */
	const char *version; /* release version in the manifest (default 2.0.0+0) */
	const char *board;
};

static const struct refusal refusals[] = {
    {"bad signature", "bad-signature", true, C_NONE, 6, 86400, 0, false, false, true, NULL, NULL},
    {"unknown key", "unknown-key", true, C_NONE, 6, 86400, 0, false, true, false, NULL, NULL},
    {"rollback", "rollback", true, C_NONE, 4, 86400, 0, false, false, false, NULL, NULL},
    {"expired", "expired", true, C_NONE, 6, -60, 0, false, false, false, NULL, NULL},
    {"sha mismatch", "sha-mismatch", false, C_NONE, 6, 86400, 0, true, false, false, NULL, NULL},
    {"oversize", "oversize", false, C_NONE, 6, 86400, -100, false, false, false, NULL, NULL},
    {"short download", "size-mismatch", false, C_NONE, 6, 86400, 100, false, false, false, NULL,
     NULL},
    {"truncated zip", "bad-zip", false, C_TRUNCATE, 6, 86400, 0, false, false, false, NULL, NULL},
    {"zip ../ entry", "zip-path", false, C_DOTDOT, 6, 86400, 0, false, false, false, NULL, NULL},
    {"missing image", "missing-image", false, C_MISSING_NET, 6, 86400, 0, false, false, false, NULL,
     NULL},
    {"bad mcuboot magic", "bad-mcuboot-magic", false, C_MAGIC, 6, 86400, 0, false, false, false,
     NULL, NULL},
    {"tlv length past end", "bad-tlv", false, C_TLV_LEN, 6, 86400, 0, false, false, false, NULL,
     NULL},
    {"hash tlv mismatch", "hash-mismatch", false, C_HASH, 6, 86400, 0, false, false, false, NULL,
     NULL},
    {"bad image signature", "bad-image-signature", false, C_OTHER_KEY, 6, 86400, 0, false, false,
     false, NULL, NULL},
    {"version mismatch", "version-mismatch", false, C_NONE, 6, 86400, 0, false, false, false,
     "2.0.1", NULL},
    {"board mismatch", "board-mismatch", false, C_NONE, 6, 86400, 0, false, false, false, NULL,
     "thingy53"},
};

static void test_refusal(void **state)
{
	struct fix *f = *state;
	const struct refusal *c = f->param;
	char sha[65], st[32], reason[256], text[64];
	uint64_t size;

	publish_r1(f);
	run_cycle(f);
	assert_int_equal(f->n_verified, 1);

	make_bundle(f, "r2.zip", "2.0.0+0", c->corrupt, sha, &size);
	const struct rel r2 = {
	    "fw-2.0.0",
	    c->version ? c->version : "2.0.0+0",
	    "r2.zip",
	    c->bad_sha ? "abababababababababababababababababababababababababababababababab" : sha,
	    (uint64_t) ((int64_t) size + c->size_delta),
	    c->board,
	};
	publish(f, c->seq, c->expires_in, &r2, 1, c->untrusted ? f->b : f->a, c->tamper);
	run_cycle(f);

	if (c->manifest_level) {
		snprintf(text, sizeof(text), "rejected: %s", c->reason);
		assert_string_equal(f->result, text);
		release_state(f, "fw-2.0.0", st, reason);
		assert_string_equal(st, ""); /* never recorded */
		query_text(f, "SELECT sequence FROM manifest_state", text, sizeof(text));
		assert_string_equal(text, "5");
		query_text(f, "SELECT last_result FROM manifest_state", text, sizeof(text));
		assert_non_null(strstr(text, c->reason));
	} else {
		assert_string_equal(f->result, "accepted");
		release_state(f, "fw-2.0.0", st, reason);
		assert_string_equal(st, "rejected");
		if (strncmp(reason, c->reason, strlen(c->reason)) != 0)
			fail_msg("%s: reason '%s', want '%s'", c->name, reason, c->reason);
		assert_false(cache_has(f, sha, ".zip"));
		assert_false(cache_has(f, sha, ".part"));
	}
	/* the release verified before stays in force, and nothing new was announced */
	release_state(f, "fw-1.0.0", st, reason);
	assert_string_equal(st, "verified");
	assert_true(cache_has(f, r1_sha, ".zip"));
	assert_int_equal(f->n_verified, 1);

	/* and a refused release is not retried until a newer manifest lists it again */
	if (!c->manifest_level) {
		run_cycle(f);
		release_state(f, "fw-2.0.0", st, reason);
		assert_string_equal(st, "rejected");
		assert_int_equal(f->n_verified, 1);
	}
}

static void test_supersede_retry_prune(void **state)
{
	struct fix *f = *state;
	char sha2[65], st[32], reason[256], path[256];
	uint64_t size2;
	DIR *d;
	struct dirent *de;
	int n_files = 0;

	f->budget = 1; /* anything not in force goes */
	publish_r1(f);
	run_cycle(f);

	/* R2 published before its bundle is on the server: stays pending, then succeeds */
	make_bundle(f, "r2.zip", "2.0.0+0", C_NONE, sha2, &size2);
	snprintf(path, sizeof(path), "%s/r2.zip", f->srv);
	char hidden[256];
	snprintf(hidden, sizeof(hidden), "%s/r2.hidden", f->srv);
	assert_int_equal(rename(path, hidden), 0);
	const struct rel r2 = {"fw-2.0.0", "2.0.0", "r2.zip", sha2, size2, "nrf5340dk"};
	publish(f, 6, 86400, &r2, 1, f->a, false);
	run_cycle(f);
	release_state(f, "fw-2.0.0", st, reason);
	assert_string_equal(st, "pending");
	assert_int_equal(f->n_verified, 1);

	/* a wrong prefix left from an earlier attempt: resumed, mismatched, fetched afresh */
	snprintf(path, sizeof(path), "%s/%s.part", f->cache, sha2);
	write_all(path, "garbage-garbage-garbage", 23);
	snprintf(path, sizeof(path), "%s/r2.zip", f->srv);
	assert_int_equal(rename(hidden, path), 0);
	/* a file that is not the cache's must survive pruning */
	snprintf(path, sizeof(path), "%s/README", f->cache);
	write_all(path, "x", 1);
	run_cycle(f);
	assert_string_equal(f->result, "unchanged");
	release_state(f, "fw-2.0.0", st, reason);
	assert_string_equal(st, "verified");
	assert_int_equal(f->n_verified, 2);
	assert_string_equal(f->verified[1], "fw-2.0.0");
	/* R1 (same board) is superseded, and over budget its bundle is pruned */
	release_state(f, "fw-1.0.0", st, reason);
	assert_string_equal(st, "superseded");
	assert_false(cache_has(f, r1_sha, ".zip"));
	assert_true(cache_has(f, sha2, ".zip"));
	d = opendir(f->cache);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n_files++;
	closedir(d);
	assert_int_equal(n_files, 2); /* R2's zip and the README */
}

static void test_cache_rot(void **state)
{
	struct fix *f = *state;
	char path[256], st[32], reason[256];
	FILE *fp;

	publish_r1(f);
	run_cycle(f);
	source_stop(f);
	/* a flipped byte in the cached bundle: found at start, downloaded again */
	snprintf(path, sizeof(path), "%s/%s.zip", f->cache, r1_sha);
	fp = fopen(path, "r+b");
	fseek(fp, 100, SEEK_SET);
	fputc(0xee, fp);
	fclose(fp);
	run_cycle(f);
	assert_int_equal(f->n_verified, 2);
	assert_false(f->restored[1]);
	release_state(f, "fw-1.0.0", st, reason);
	assert_string_equal(st, "verified");

	/* the cache wiped entirely: downloaded again at the next start */
	source_stop(f);
	unlink(path);
	run_cycle(f);
	assert_int_equal(f->n_verified, 3);
	assert_true(cache_has(f, r1_sha, ".zip"));
}

static void test_bad_options(void **state)
{
	struct fix *f = *state;
	const char *keys[] = {f->boot_pub};
	const char *missing[] = {"/nonexistent.pem"};
	struct fgw_release_source_options o = {
	    .manifest_url = "file:///x/manifest.json",
	    .trusted_keys = keys,
	    .n_trusted_keys = 1,
	    .cache_dir = f->cache,
	};
	struct fgw_release_source *s = NULL;

	/* a manifest key must be Ed25519 */
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), -EINVAL);
	o.trusted_keys = missing;
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), -ENOENT);
	o.n_trusted_keys = 0;
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), -EINVAL);
	assert_null(s);
}

/* Every byte of every file in the cache inverted. */
static void rot_cache(struct fix *f)
{
	struct dirent *de;
	DIR *d = opendir(f->cache);

	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[512];
		FILE *fp;
		int c;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", f->cache, de->d_name);
		fp = fopen(path, "r+b");
		assert_non_null(fp);
		while ((c = fgetc(fp)) != EOF) {
			fseek(fp, -1, SEEK_CUR);
			fputc(c ^ 0xff, fp);
			fseek(fp, 0, SEEK_CUR);
		}
		fclose(fp);
	}
	closedir(d);
}

/*
 * Issue #18 item 3: the bytes uploaded are the bytes verified. What the fleet maps is a sealed
 * memfd: the cache rotting after verification changes nothing in it, and nobody, not even the
 * gateway, can write, grow, shrink or unseal it. Bytes after the TLV area are not signed:
 * they are not handed over at all.
 */
static void test_sealed_images(void **state)
{
	struct fix *f = *state;
	uint8_t buf[8192], sha[32];
	char sha_hex[65], url[32];
	uint64_t size;
	int seals;
	ssize_t n;
	void *p;

	make_bundle(f, "r1.zip", "1.0.0+1", C_TRAILING, sha_hex, &size);
	snprintf(url, sizeof(url), "r1.zip");
	const struct rel r1 = {"fw-1.0.0", "1.0.0+1", url, sha_hex, size, NULL};
	publish(f, 5, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_int_equal(f->n_verified, 1);
	assert_true(f->app_fd >= 0);
	assert_int_equal(f->app_trailing, 64);
	assert_int_equal(f->app_size, f->app_len - 64);

	rot_cache(f);
	assert_true(cache_has(f, sha_hex, ".zip"));

	seals = fcntl(f->app_fd, F_GET_SEALS);
	assert_int_equal(seals & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
			 F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
	assert_int_equal(pwrite(f->app_fd, "x", 1, 0), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(f->app_fd, 1), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(fcntl(f->app_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), -1);
	assert_int_equal(errno, EPERM);
	p = mmap(NULL, f->app_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->app_fd, 0);
	assert_true(p == MAP_FAILED);

	/* what a device would get: the verified image, to the end of its TLV area */
	assert_true(f->app_size <= sizeof(buf));
	n = pread(f->app_fd, buf, sizeof(buf), 0);
	assert_int_equal(n, (ssize_t) f->app_size);
	assert_memory_equal(buf, f->app, f->app_size);
	struct fgw_sha256_ctx *ctx;
	assert_int_equal(fgw_sha256_begin(&ctx), 0);
	assert_int_equal(fgw_sha256_update(ctx, buf, (size_t) n), 0);
	assert_int_equal(fgw_sha256_end(ctx, sha), 0);
	assert_memory_equal(sha, f->app_sha, 32);

	/* the rotten cache is found at the next start: fetched again, never handed over */
	source_stop(f);
	run_cycle(f);
	assert_int_equal(f->n_verified, 2);
	assert_false(f->restored[1]);
	n = pread(f->app_fd, buf, sizeof(buf), 0);
	assert_memory_equal(buf, f->app, f->app_size);
}

static void test_key_limit(void **state)
{
	struct fix *f = *state;
	const char *keys[FGW_MANIFEST_MAX_KEYS + 1];
	struct fgw_release_source_options o = {
	    .manifest_url = "file:///x/manifest.json",
	    .trusted_keys = keys,
	    .n_trusted_keys = FGW_MANIFEST_MAX_KEYS + 1,
	    .cache_dir = f->cache,
	};
	struct fgw_release_source *s = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		keys[i] = f->pub_a;
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), -EINVAL);
	assert_null(s);
	o.n_trusted_keys = FGW_MANIFEST_MAX_KEYS;
	assert_int_equal(fgw_release_source_new(&f->loop, f->store, &o, &s), 0);
	s = fgw_release_source_free(s);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void on_pace(uv_timer_t *t)
{
	*(bool *) t->data = true;
}

/* Lets the loop run for @ms between polls: the condition waited for is the wall clock's. */
static void pace(struct fix *f, uint64_t ms)
{
	uv_timer_t t;
	bool fired = false;

	uv_timer_init(&f->loop, &t);
	t.data = &fired;
	uv_timer_start(&t, on_pace, ms, 0);
	while (!fired)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *) &t, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

static struct fgw_release_status status_of(struct fix *f)
{
	struct fgw_release_status st;

	fgw_release_source_get_status(f->src, &st);
	return st;
}

/*
 * Issue #18 item 2: `expires` of the manifest in force is judged after every poll, so a
 * manifest served unchanged past its expiry (replayed, or a frozen server) raises the alarm:
 * an event, the status the metric and health read. A newer manifest clears it.
 */
static void test_expiry_recheck(void **state)
{
	struct fix *f = *state;
	struct fgw_release_status st;
	char text[64];
	uint64_t size;
	time_t until;

	make_bundle(f, "r1.zip", "1.0.0+1", C_NONE, r1_sha, &size);
	const struct rel r1 = {"fw-1.0.0", "1.0.0+1", "r1.zip", r1_sha, size, NULL};
	publish(f, 5, 2, &r1, 1, f->a, false);
	until = time(NULL) + 2;
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	st = status_of(f);
	assert_int_equal(st.freshness, FGW_MANIFEST_FRESHNESS_FRESH);
	assert_int_equal(st.sequence, 5);
	assert_int_equal(st.polls[FGW_POLL_RESULT_ACCEPTED], 1);
	/* the same bytes, polled until their `expires` has passed: each poll re-judges them */
	while (status_of(f).freshness == FGW_MANIFEST_FRESHNESS_FRESH) {
		assert_true(time(NULL) <= until + 5);
		pace(f, 100);
		run_cycle(f);
		assert_string_equal(f->result, "unchanged");
	}
	st = status_of(f);
	assert_int_equal(st.freshness, FGW_MANIFEST_FRESHNESS_EXPIRED);
	assert_true(st.polls[FGW_POLL_RESULT_UNCHANGED] >= 1);
	query_text(f, "SELECT count(*) FROM events WHERE detail LIKE '%sequence 5 expired%'", text,
		   sizeof(text));
	assert_string_equal(text, "1");
	run_cycle(f); /* still expired: no second event */
	query_text(f, "SELECT count(*) FROM events WHERE detail LIKE '%sequence 5 expired%'", text,
		   sizeof(text));
	assert_string_equal(text, "1");

	publish(f, 6, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	assert_int_equal(status_of(f).freshness, FGW_MANIFEST_FRESHNESS_FRESH);
}

/* Before the clock floor (the build date by default) expiry is not judged at all. */
static void test_clock_untrusted(void **state)
{
	struct fix *f = *state;
	uint64_t size;

	f->clock_floor = (int64_t) time(NULL) + 10 * 365 * 86400;
	make_bundle(f, "r1.zip", "1.0.0+1", C_NONE, r1_sha, &size);
	const struct rel r1 = {"fw-1.0.0", "1.0.0+1", "r1.zip", r1_sha, size, NULL};
	publish(f, 5, -3600, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	assert_int_equal(status_of(f).freshness, FGW_MANIFEST_FRESHNESS_CLOCK_UNTRUSTED);
	assert_int_equal(f->n_verified, 1);
}

/*
 * Issue #18 item 4: a manifest is bound to its audience. Its signed `channel` must equal the
 * gateway's; one for another channel, or none when the gateway has one, is refused, and so
 * is one with a channel when the gateway has none.
 */
static void test_channel(void **state)
{
	struct fix *f = *state;
	struct fgw_release_status st;
	uint64_t size;

	f->channel = "eu-prod";
	make_bundle(f, "r1.zip", "1.0.0+1", C_NONE, r1_sha, &size);
	const struct rel r1 = {"fw-1.0.0", "1.0.0+1", "r1.zip", r1_sha, size, NULL};
	f->manifest_channel = "us-beta";
	publish(f, 5, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "rejected: wrong-channel");
	f->manifest_channel = NULL;
	publish(f, 5, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "rejected: wrong-channel");
	assert_int_equal(f->n_verified, 0);
	f->manifest_channel = "eu-prod";
	publish(f, 5, 86400, &r1, 1, f->a, false);
	run_cycle(f);
	assert_string_equal(f->result, "accepted");
	assert_int_equal(f->n_verified, 1);
	st = status_of(f);
	assert_int_equal(st.polls[FGW_POLL_RESULT_REJECTED], 2);
	assert_int_equal(st.polls[FGW_POLL_RESULT_ACCEPTED], 1);

	/* the gateway moved to no channel: even the manifest in force is refused now */
	source_stop(f);
	f->channel = NULL;
	run_cycle(f);
	assert_string_equal(f->result, "rejected: wrong-channel");
}

int main(void)
{
	struct CMUnitTest tests[64] = {
	    cmocka_unit_test_setup_teardown(test_happy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_supersede_retry_prune, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache_rot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sealed_images, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expiry_recheck, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_clock_untrusted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_channel, setup, teardown),
	};
	size_t n = 9;

	for (size_t i = 0; i < ARRAY_SIZE(refusals); i++)
		tests[n++] = (struct CMUnitTest){refusals[i].name, test_refusal, setup, teardown,
						 (void *) &refusals[i]};
	fgw_log_set_level(getenv("FGW_TEST_DEBUG") ? LOG_DEBUG : LOG_ERR);
	return _cmocka_run_group_tests("release", tests, n, NULL, NULL);
}
