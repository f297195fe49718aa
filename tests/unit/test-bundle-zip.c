/* NCS dfu_application.zip: the writer's output opens; every bad zip is refused with a reason. */
#define _GNU_SOURCE /* asprintf, memmem, strndup */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <zip.h>

#include "bundle.h"
#include "util.h"

struct fix {
	char dir[64];
	char path[128];
	struct fgw_key *key, *other;
	uint8_t *app, *net;
	size_t app_len, net_len;
};

static void make_image(const struct fgw_key *key, size_t len, struct fgw_image_version v,
		       uint8_t **ret, size_t *ret_len)
{
	_cleanup_free_ uint8_t *body = malloc(len);
	struct fgw_mcuboot_write_opts o = {.version = v, .key = key};

	for (size_t i = 0; i < len; i++)
		body[i] = (uint8_t) (i * 7 + 3);
	assert_int_equal(fgw_mcuboot_write(body, len, &o, ret, ret_len), 0);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/fgw-test-zip-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/b.zip", f->dir);
	if (fgw_key_generate(FGW_KEY_TYPE_ED25519, &f->key) < 0 ||
	    fgw_key_generate(FGW_KEY_TYPE_ED25519, &f->other) < 0)
		return -1;
	make_image(f->key, 5000, (struct fgw_image_version){1, 2, 3, 4}, &f->app, &f->app_len);
	make_image(f->key, 3000, (struct fgw_image_version){0, 0, 0, 0}, &f->net, &f->net_len);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	(void) !system(cmd);
	fgw_key_free(f->key);
	fgw_key_free(f->other);
	free(f->app);
	free(f->net);
	free(f);
	return 0;
}

static int write_good(struct fix *f)
{
	const struct fgw_bundle_input in[] = {
	    {1, "ipc_radio.bin", "nrf5340dk/nrf5340/cpunet", f->net, f->net_len},
	    {0, "app.bin", "nrf5340dk/nrf5340/cpuapp", f->app, f->app_len},
	};
	return fgw_bundle_write(f->path, "myapp", in, 2);
}

static void test_good(void **state)
{
	struct fix *f = *state;
	struct fgw_bundle *b = NULL;
	struct fgw_reject why;
	const struct fgw_bundle_image *im;

	assert_int_equal(write_good(f), 0);
	assert_int_equal(fgw_bundle_open(f->path, f->key, &b, &why), 0);
	assert_string_equal(b->name, "myapp");
	assert_int_equal(b->n_images, 2);
	assert_int_equal(b->images[0].index, 0); /* sorted */
	im = fgw_bundle_find_image(b, 1);
	assert_non_null(im);
	assert_string_equal(im->file, "ipc_radio.bin");
	assert_string_equal(im->board, "nrf5340dk/nrf5340/cpunet");
	assert_int_equal(im->len, f->net_len);
	assert_memory_equal(im->data, f->net, f->net_len);
	assert_int_equal(im->sig, FGW_SIG_STATUS_VALID);
	im = fgw_bundle_find_image(b, 0);
	assert_int_equal(im->img.version.build, 4);
	assert_string_equal(im->declared_version, "1.2.3+4");
	assert_null(fgw_bundle_find_image(b, 2));
	fgw_bundle_free(b);

	/* without a key: hash checked, signature not */
	assert_int_equal(fgw_bundle_open(f->path, NULL, &b, &why), 0);
	assert_int_equal(b->images[0].sig, FGW_SIG_STATUS_NOT_CHECKED);
	b = fgw_bundle_free(b);

	/* the wrong MCUboot key: refused, naming the first image */
	assert_int_equal(fgw_bundle_open(f->path, f->other, &b, &why), -ENOKEY);
	assert_int_equal(why.reason, FGW_REJECT_BAD_IMAGE_SIGNATURE);
	assert_int_equal(why.image, 0);
	assert_null(b);

	/* the writer refuses what it could not read back */
	const struct fgw_bundle_input dup[] = {{0, "a.bin", NULL, f->app, f->app_len},
					       {0, "b.bin", NULL, f->app, f->app_len}};
	assert_int_equal(fgw_bundle_write(f->path, NULL, dup, 2), -EINVAL);
	const struct fgw_bundle_input bad_name[] = {{0, "../a.bin", NULL, f->app, f->app_len}};
	assert_int_equal(fgw_bundle_write(f->path, NULL, bad_name, 1), -EINVAL);
	const struct fgw_bundle_input not_image[] = {{0, "a.bin", NULL, "hello", 5}};
	assert_int_equal(fgw_bundle_write(f->path, NULL, not_image, 1), -EBADMSG);
}

/* A raw zip with arbitrary entries, to build what the writer never would. */
struct entry {
	const char *name;
	const void *data;
	size_t len;
	bool store; /* no compression */
};

static void write_zip(const char *path, const struct entry *e, size_t n)
{
	zip_t *za;
	int err;

	unlink(path);
	za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
	assert_non_null(za);
	for (size_t i = 0; i < n; i++) {
		zip_source_t *src = zip_source_buffer(za, e[i].data, e[i].len, 0);
		zip_int64_t idx = zip_file_add(za, e[i].name, src, ZIP_FL_ENC_RAW);
		assert_true(idx >= 0);
		zip_set_file_compression(za, (zip_uint64_t) idx,
					 e[i].store ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 0);
	}
	assert_int_equal(zip_close(za), 0);
}

static char *ncs_manifest(const char *files_json)
{
	char *s;

	assert_true(asprintf(&s, "{\"format-version\": 1, \"files\": [%s]}", files_json) > 0);
	return s;
}

static char *file_json(int index, const char *file, size_t size, const char *version)
{
	char *s;

	assert_true(asprintf(&s,
			     "{\"type\": \"application\", \"image_index\": \"%d\", \"file\": "
			     "\"%s\", \"size\": %zu%s%s%s}",
			     index, file, size, version ? ", \"version_MCUBOOT\": \"" : "",
			     version ? version : "", version ? "\"" : "") > 0);
	return s;
}

static void expect(struct fix *f, int err, enum fgw_reject_reason reason, int image)
{
	struct fgw_bundle *b = NULL;
	struct fgw_reject why;
	int r = fgw_bundle_open(f->path, f->key, &b, &why);

	if (r != err || why.reason != reason || why.image != image)
		fail_msg("got %d %s image %d (%s), want %d %s image %d", r,
			 fgw_reject_reason_to_string(why.reason), why.image,
			 why.detail ? why.detail : "", err, fgw_reject_reason_to_string(reason),
			 image);
	if (r == 0)
		fgw_bundle_free(b);
	else
		assert_null(b);
}

/* The manifest of the fixture's app (image 0, version 1.2.3+4), net (image 1) or both. */
static char *fix_manifest(const struct fix *f, bool app, bool net)
{
	_cleanup_free_ char *fa = file_json(0, "app.bin", f->app_len, "1.2.3+4");
	_cleanup_free_ char *fn = file_json(1, "net.bin", f->net_len, NULL);
	_cleanup_free_ char *fboth = NULL;

	if (!app || !net)
		return ncs_manifest(app ? fa : fn);
	assert_true(asprintf(&fboth, "%s, %s", fa, fn) > 0);
	return ncs_manifest(fboth);
}

static void test_refuse_paths(void **state)
{
	struct fix *f = *state;
	_cleanup_free_ char *m_both = fix_manifest(f, true, true);
	_cleanup_free_ char *m_app = fix_manifest(f, true, false);
	_cleanup_free_ char *m_evil = NULL;

	/* a well-formed raw zip opens: the baseline for the cases below */
	struct entry good[] = {{"manifest.json", m_both, strlen(m_both), false},
			       {"app.bin", f->app, f->app_len, false},
			       {"net.bin", f->net, f->net_len, false}};
	write_zip(f->path, good, 3);
	expect(f, 0, FGW_REJECT_NONE, -1);

	/* a ../ entry, even one the manifest does not name */
	struct entry evil[] = {{"manifest.json", m_both, strlen(m_both), false},
			       {"app.bin", f->app, f->app_len, false},
			       {"net.bin", f->net, f->net_len, false},
			       {"../evil.bin", "x", 1, false}};
	write_zip(f->path, evil, 4);
	expect(f, -EBADMSG, FGW_REJECT_ZIP_PATH, -1);
	struct entry abs[] = {{"manifest.json", m_app, strlen(m_app), false},
			      {"app.bin", f->app, f->app_len, false},
			      {"/etc/passwd", "x", 1, false}};
	write_zip(f->path, abs, 3);
	expect(f, -EBADMSG, FGW_REJECT_ZIP_PATH, -1);
	struct entry deep[] = {{"manifest.json", m_app, strlen(m_app), false},
			       {"app.bin", f->app, f->app_len, false},
			       {"a/b/../../../x", "x", 1, false}};
	write_zip(f->path, deep, 3);
	expect(f, -EBADMSG, FGW_REJECT_ZIP_PATH, -1);
	/* the manifest itself names a path that escapes */
	m_evil = ncs_manifest("{\"image_index\": 0, \"file\": \"../app.bin\", \"size\": 1}");
	struct entry evil2[] = {{"manifest.json", m_evil, strlen(m_evil), false},
				{"app.bin", f->app, f->app_len, false}};
	write_zip(f->path, evil2, 2);
	expect(f, -EBADMSG, FGW_REJECT_ZIP_PATH, -1);
}

/* a listed file missing; image 0 missing */
static void test_refuse_missing(void **state)
{
	struct fix *f = *state;
	_cleanup_free_ char *m_both = fix_manifest(f, true, true);
	_cleanup_free_ char *m_net = fix_manifest(f, false, true);

	struct entry missing[] = {{"manifest.json", m_both, strlen(m_both), false},
				  {"app.bin", f->app, f->app_len, false}};
	write_zip(f->path, missing, 2);
	expect(f, -EBADMSG, FGW_REJECT_MISSING_IMAGE, 1);
	struct entry no_app[] = {{"manifest.json", m_net, strlen(m_net), false},
				 {"net.bin", f->net, f->net_len, false}};
	write_zip(f->path, no_app, 2);
	expect(f, -EBADMSG, FGW_REJECT_MISSING_IMAGE, 0);
}

static void test_refuse_manifest(void **state)
{
	struct fix *f = *state;
	_cleanup_free_ char *fa = file_json(0, "app.bin", f->app_len, "1.2.3+4");
	_cleanup_free_ char *f0 = file_json(0, "net.bin", f->net_len, NULL);
	_cleanup_free_ char *both0 = NULL, *m_badsize = NULL, *m_dupidx = NULL, *m_type = NULL;

	struct entry no_manifest[] = {{"app.bin", f->app, f->app_len, false}};
	write_zip(f->path, no_manifest, 1);
	expect(f, -EBADMSG, FGW_REJECT_BAD_NCS_MANIFEST, -1);
	struct entry not_json[] = {{"manifest.json", "{files:", 7, false},
				   {"app.bin", f->app, f->app_len, false}};
	write_zip(f->path, not_json, 2);
	expect(f, -EBADMSG, FGW_REJECT_BAD_NCS_MANIFEST, -1);
	m_badsize =
	    ncs_manifest("{\"image_index\": \"0\", \"file\": \"app.bin\", \"size\": \"7\"}");
	struct entry badsize[] = {{"manifest.json", m_badsize, strlen(m_badsize), false},
				  {"app.bin", f->app, f->app_len, false}};
	write_zip(f->path, badsize, 2);
	expect(f, -EBADMSG, FGW_REJECT_BAD_NCS_MANIFEST, 0);
	assert_true(asprintf(&both0, "%s, %s", fa, f0) > 0);
	m_dupidx = ncs_manifest(both0);
	struct entry dupidx[] = {{"manifest.json", m_dupidx, strlen(m_dupidx), false},
				 {"app.bin", f->app, f->app_len, false},
				 {"net.bin", f->net, f->net_len, false}};
	write_zip(f->path, dupidx, 3);
	expect(f, -EBADMSG, FGW_REJECT_BAD_NCS_MANIFEST, -1);
	m_type = ncs_manifest("{\"type\": \"suit-envelope\", \"file\": \"app.bin\", \"size\": 1}");
	struct entry type[] = {{"manifest.json", m_type, strlen(m_type), false},
			       {"app.bin", f->app, f->app_len, false}};
	write_zip(f->path, type, 2);
	expect(f, -EBADMSG, FGW_REJECT_BAD_NCS_MANIFEST, -1);
}

/* image_index as a number and size as a number are fine (lenient), absent index = 0 */
static void test_lenient_manifest(void **state)
{
	struct fix *f = *state;
	_cleanup_free_ char *m_intidx = NULL;

	assert_true(
	    asprintf(&m_intidx,
		     "{\"files\": [{\"file\": \"app.bin\", \"size\": %zu}, {\"image_index\": "
		     "1, \"file\": \"net.bin\", \"size\": \"%zu\"}]}",
		     f->app_len, f->net_len) > 0);
	struct entry intidx[] = {{"manifest.json", m_intidx, strlen(m_intidx), false},
				 {"app.bin", f->app, f->app_len, false},
				 {"net.bin", f->net, f->net_len, false}};
	write_zip(f->path, intidx, 3);
	expect(f, 0, FGW_REJECT_NONE, -1);
}

/* declared version differs from the header */
static void test_refuse_version(void **state)
{
	struct fix *f = *state;
	_cleanup_free_ char *fv = file_json(0, "app.bin", f->app_len, "1.2.4");
	_cleanup_free_ char *mv = ncs_manifest(fv);
	struct entry badver[] = {{"manifest.json", mv, strlen(mv), false},
				 {"app.bin", f->app, f->app_len, false}};

	write_zip(f->path, badver, 2);
	expect(f, -EBADMSG, FGW_REJECT_VERSION_MISMATCH, 0);
}

/* MCUboot problems inside the zip are reported with the image index */
static void test_refuse_mcuboot(void **state)
{
	struct fix *f = *state;
	_cleanup_free_ char *m_both = fix_manifest(f, true, true);
	_cleanup_free_ uint8_t *net = malloc(f->net_len);

	memcpy(net, f->net, f->net_len);
	net[0] ^= 0xff;
	struct entry badmagic[] = {{"manifest.json", m_both, strlen(m_both), false},
				   {"app.bin", f->app, f->app_len, false},
				   {"net.bin", net, f->net_len, false}};
	write_zip(f->path, badmagic, 3);
	expect(f, -EBADMSG, FGW_REJECT_BAD_MAGIC, 1);
	net[0] ^= 0xff;
	net[600] ^= 0x01;
	write_zip(f->path, badmagic, 3);
	expect(f, -EBADMSG, FGW_REJECT_HASH_MISMATCH, 1);
}

static void test_limits(void **state)
{
	struct fix *f = *state;
	size_t bomb_len = FGW_MCUBOOT_MAX_IMAGE + 1;
	_cleanup_free_ uint8_t *zeros = calloc(1, bomb_len);
	/* the manifest lies about the size: only the streaming cap can stop it */
	_cleanup_free_ char *fb = file_json(0, "app.bin", 1000, NULL);
	_cleanup_free_ char *mb = ncs_manifest(fb);
	_cleanup_free_ char *big_manifest = malloc(FGW_BUNDLE_MAX_NCS_MANIFEST + 10);
	struct entry many[FGW_BUNDLE_MAX_ENTRIES + 1];
	char names[FGW_BUNDLE_MAX_ENTRIES + 1][16];
	struct stat st;

	/* a zip bomb: 16 MiB + 1 of zeros deflate to a few KiB */
	struct entry bomb[] = {{"manifest.json", mb, strlen(mb), false},
			       {"app.bin", zeros, bomb_len, false}};
	write_zip(f->path, bomb, 2);
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(st.st_size < 100 * 1024);
	expect(f, -EFBIG, FGW_REJECT_ZIP_LIMIT, 0);

	memset(big_manifest, ' ', FGW_BUNDLE_MAX_NCS_MANIFEST + 10);
	big_manifest[0] = '{';
	big_manifest[FGW_BUNDLE_MAX_NCS_MANIFEST + 9] = '}';
	struct entry bigm[] = {
	    {"manifest.json", big_manifest, FGW_BUNDLE_MAX_NCS_MANIFEST + 10, false}};
	write_zip(f->path, bigm, 1);
	expect(f, -EFBIG, FGW_REJECT_ZIP_LIMIT, -1);

	for (size_t i = 0; i < ARRAY_SIZE(many); i++) {
		snprintf(names[i], sizeof(names[i]), "f%zu", i);
		many[i] = (struct entry){names[i], "x", 1, false};
	}
	write_zip(f->path, many, ARRAY_SIZE(many));
	expect(f, -EFBIG, FGW_REJECT_ZIP_LIMIT, -1);
}

static void test_broken_zip(void **state)
{
	struct fix *f = *state;
	_cleanup_free_ uint8_t *buf = NULL;
	struct fgw_bundle *b = NULL;
	struct fgw_reject why;
	struct stat st;
	size_t len;
	FILE *fp;

	assert_int_equal(write_good(f), 0);
	assert_int_equal(stat(f->path, &st), 0);
	len = (size_t) st.st_size;
	buf = malloc(len);
	fp = fopen(f->path, "rb");
	assert_int_equal(fread(buf, 1, len, fp), len);
	fclose(fp);
	assert_int_equal(fgw_bundle_open_buffer(buf, len, f->key, &b, &why), 0);
	fgw_bundle_free(b);

	/* every truncation of the file is refused, never crashes */
	for (size_t cut = 0; cut < len; cut += (cut < 200 || len - cut < 200) ? 1 : 97) {
		b = NULL;
		int r = fgw_bundle_open_buffer(buf, cut, f->key, &b, &why);
		if (r == 0)
			fail_msg("truncated to %zu of %zu bytes and still opened", cut, len);
		assert_true(why.reason == FGW_REJECT_BAD_ZIP ||
			    why.reason == FGW_REJECT_MISSING_IMAGE ||
			    why.reason == FGW_REJECT_BAD_NCS_MANIFEST);
	}
	/* truncated on disk, as a cut download would leave it */
	assert_int_equal(truncate(f->path, (off_t) len / 2), 0);
	assert_int_equal(fgw_bundle_open(f->path, f->key, &b, &why), -EBADMSG);
	assert_int_equal(why.reason, FGW_REJECT_BAD_ZIP);
	/* not a zip at all */
	assert_int_equal(fgw_bundle_open_buffer("hello world", 11, NULL, &b, &why), -EBADMSG);
	assert_int_equal(why.reason, FGW_REJECT_BAD_ZIP);
	assert_int_equal(fgw_bundle_open("/nonexistent.zip", NULL, &b, &why), -ENOENT);

	/* a stored entry with a flipped data byte: CRC error */
	{
		_cleanup_free_ char *fa = file_json(0, "app.bin", f->app_len, NULL);
		_cleanup_free_ char *ma = ncs_manifest(fa);
		struct entry e[] = {{"manifest.json", ma, strlen(ma), true},
				    {"app.bin", f->app, f->app_len, true}};
		write_zip(f->path, e, 2);
		/* find app.bin's stored bytes in the file and flip one well inside them */
		struct stat st2;
		assert_int_equal(stat(f->path, &st2), 0);
		_cleanup_free_ uint8_t *zb = malloc((size_t) st2.st_size);
		fp = fopen(f->path, "r+b");
		assert_int_equal(fread(zb, 1, (size_t) st2.st_size, fp), (size_t) st2.st_size);
		uint8_t *at = memmem(zb, (size_t) st2.st_size, f->app + 0x200, 64);
		assert_non_null(at);
		fseek(fp, (long) (at - zb) + 100, SEEK_SET);
		fputc(at[100] ^ 0xff, fp);
		fclose(fp);
		assert_int_equal(fgw_bundle_open(f->path, f->key, &b, &why), -EBADMSG);
		assert_int_equal(why.reason, FGW_REJECT_BAD_ZIP);
	}
}

static void test_files(void **state)
{
	struct fix *f = *state;
	char path[160];
	uint8_t h[32], h2[32];
	uint64_t size;

	snprintf(path, sizeof(path), "%s/atomic.bin", f->dir);
	assert_int_equal(fgw_write_file_atomic(path, f->app, f->app_len, 0644), 0);
	assert_int_equal(fgw_sha256_file(path, UINT64_MAX, h, &size), 0);
	assert_int_equal(size, f->app_len);
	assert_int_equal(fgw_sha256_file(path, f->app_len - 1, h2, &size), -EFBIG);
	assert_int_equal(fgw_sha256_file("/nonexistent", 10, h2, &size), -ENOENT);
	/* the same bytes rewritten: same hash, and no temp file left behind */
	assert_int_equal(fgw_write_file_atomic(path, f->app, f->app_len, 0600), 0);
	assert_int_equal(fgw_sha256_file(path, UINT64_MAX, h2, &size), 0);
	assert_memory_equal(h, h2, 32);
	snprintf(path, sizeof(path), "ls %s | grep -c tmp", f->dir);
	assert_int_not_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_good, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_manifest, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lenient_manifest, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_mcuboot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_broken_zip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_files, setup, teardown),
	};
	fgw_log_set_level(LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
