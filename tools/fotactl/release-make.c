/*
 * fotactl release make-image and make-bundle: MCUboot images and NCS-style bundles for tests,
 * demos and benchmarks, reproducible from a seed, optionally signed.
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "fotactl.h"
#include "release.h"
#include "util.h"

/* ---- make-image / make-bundle ---- */

/* xorshift64*: a reproducible filler for test images, seeded by --seed. */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t) ((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

/* make-image's options, as parsed; the writer's own options are filled in place. */
struct mkimage_args {
	struct fgw_mcuboot_write_opts o;
	const char *out, *payload, *key_path;
	int64_t size, seed;
	bool have_version;
};

/* One option @c (its value in optarg) into @a; 0, or the exit code of a bad value. */
static int mkimage_opt(int c, struct mkimage_args *a, char **argv)
{
	int64_t v;

	switch (c) {
	case 'o':
		a->out = optarg;
		return 0;
	case 'v':
		if (fgw_image_version_parse(optarg, &a->o.version) < 0)
			return rel_bad_value("--image-version", optarg, "expected like 1.2.3+4");
		a->have_version = true;
		return 0;
	case 'p':
		a->payload = optarg;
		return 0;
	case 's':
		if (fgw_parse_int64(optarg, 0, FGW_MCUBOOT_MAX_IMAGE / 2, &a->size) < 0)
			return rel_bad_value("--size", optarg,
					     "bytes, at most half the largest image");
		return 0;
	case 'S':
		if (fgw_parse_int64(optarg, 0, INT64_MAX, &a->seed) < 0)
			return rel_bad_value("--seed", optarg, "a number >= 0");
		return 0;
	case 'k':
		a->key_path = optarg;
		return 0;
	case 'H':
		if (fgw_parse_int64(optarg, 32, 65535, &v) < 0)
			return rel_bad_value("--header-size", optarg, "32..65535");
		a->o.hdr_size = (uint32_t) v;
		return 0;
	case 'L': {
		char *end;
		unsigned long long addr = strtoull(optarg, &end, 0);
		if (*end || end == optarg || addr > UINT32_MAX)
			return rel_bad_value("--load-addr", optarg, "a 32-bit address");
		a->o.load_addr = (uint32_t) addr;
		return 0;
	}
	case 'C':
		if (fgw_parse_int64(optarg, 0, UINT32_MAX, &v) < 0)
			return rel_bad_value("--security-counter", optarg, "0..4294967295");
		a->o.has_sec_cnt = true;
		a->o.sec_cnt = (uint32_t) v;
		return 0;
	default:
		return rel_bad_option(argv);
	}
}

static int mkimage_parse_args(int argc, char **argv, struct mkimage_args *a)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"image-version", required_argument, NULL, 'v'},
	    {"version", required_argument, NULL, 'v'},
	    {"payload", required_argument, NULL, 'p'},
	    {"size", required_argument, NULL, 's'},
	    {"seed", required_argument, NULL, 'S'},
	    {"key", required_argument, NULL, 'k'},
	    {"header-size", required_argument, NULL, 'H'},
	    {"load-addr", required_argument, NULL, 'L'},
	    {"security-counter", required_argument, NULL, 'C'},
	    {},
	};
	int c, r;

	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		r = mkimage_opt(c, a, argv);
		if (r)
			return r;
	}
	if (optind != argc)
		return rel_extra_operand(argv[optind]);
	if (!a->out || !a->have_version || (!a->payload) == (a->size < 0))
		return rel_usage_error(
		    "make-image needs -o, --image-version and one of --payload/--size");
	return 0;
}

/* The image's body: the --payload file, or --size bytes filled from --seed. */
static int mkimage_body(const struct mkimage_args *a, uint8_t **ret_body, size_t *ret_len)
{
	int r;

	if (a->payload) {
		r = rel_read_file(a->payload, FGW_MCUBOOT_MAX_IMAGE / 2, ret_body, ret_len);
		if (r < 0)
			return rel_fail(r, "Failed to read '%s'", a->payload);
		return 0;
	}
	*ret_len = (size_t) a->size;
	*ret_body = malloc(*ret_len ? *ret_len : 1);
	if (!*ret_body)
		return rel_fail(-ENOMEM, "make-image");
	fill(*ret_body, *ret_len, (uint64_t) a->seed);
	return 0;
}

/* The signing key of --key; a public key is refused here, before anything is built. */
static int mkimage_load_key(const char *key_path, struct fgw_key **ret_key)
{
	int r = fgw_key_load_file(key_path, ret_key);

	if (r < 0)
		return rel_fail(r, "Failed to load key '%s'", key_path);
	if (!fgw_key_has_private(*ret_key)) {
		*ret_key = fgw_key_free(*ret_key);
		return rel_fail(0, "'%s' is a public key; signing needs the private key", key_path);
	}
	return 0;
}

int rel_cmd_make_image(int argc, char **argv)
{
	struct mkimage_args a = {.o = {.hdr_size = 0x200}, .size = -1, .seed = 1};
	_cleanup_free_ uint8_t *body = NULL, *img = NULL;
	struct fgw_mcuboot_image m;
	struct fgw_key *key = NULL;
	size_t len = 0, img_len;
	char hash[65];
	int r;

	r = mkimage_parse_args(argc, argv, &a);
	if (r)
		return r;
	r = mkimage_body(&a, &body, &len);
	if (r)
		return r;
	if (a.key_path) {
		r = mkimage_load_key(a.key_path, &key);
		if (r)
			return r;
		a.o.key = key;
	}
	r = fgw_mcuboot_write(body, len, &a.o, &img, &img_len);
	fgw_key_free(key);
	if (r < 0)
		return rel_fail(r, "Failed to build the image");
	r = fgw_write_file_atomic(a.out, img, img_len, 0644);
	if (r < 0)
		return rel_fail(r, "Failed to write '%s'", a.out);
	if (fgw_mcuboot_parse(img, img_len, &m, NULL) < 0)
		return rel_fail(-EIO, "the image just written does not parse");
	fgw_hex_encode(m.hash, 32, hash);
	printf("%s\n", hash);
	return FOTACTL_EXIT_OK;
}

/* make-bundle's options: the inputs, and how the bundle names them. */
struct mkbundle_args {
	const char *out, *app, *net, *name;
	const char *app_board, *net_board, *app_file, *net_file;
};

static int mkbundle_parse_args(int argc, char **argv, struct mkbundle_args *a)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"app", required_argument, NULL, 'a'},
	    {"net", required_argument, NULL, 'n'},
	    {"app-board", required_argument, NULL, 'A'},
	    {"net-board", required_argument, NULL, 'N'},
	    {"app-file", required_argument, NULL, 'f'},
	    {"net-file", required_argument, NULL, 'F'},
	    {"name", required_argument, NULL, 'm'},
	    {},
	};
	int c;

	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			a->out = optarg;
			break;
		case 'a':
			a->app = optarg;
			break;
		case 'n':
			a->net = optarg;
			break;
		case 'A':
			a->app_board = optarg;
			break;
		case 'N':
			a->net_board = optarg;
			break;
		case 'f':
			a->app_file = optarg;
			break;
		case 'F':
			a->net_file = optarg;
			break;
		case 'm':
			a->name = optarg;
			break;
		default:
			return rel_bad_option(argv);
		}
	}
	if (optind != argc)
		return rel_extra_operand(argv[optind]);
	if (!a->out || !a->app)
		return rel_usage_error("make-bundle needs -o OUT and --app APP.bin");
	return 0;
}

/* Reads the app (and net) image and writes the bundle; 0 or the exit code. */
static int mkbundle_write(const struct mkbundle_args *a)
{
	_cleanup_free_ uint8_t *app_data = NULL, *net_data = NULL;
	struct fgw_bundle_input in[2];
	size_t app_len = 0, net_len = 0, n = 0;
	int r;

	r = rel_read_file(a->app, FGW_MCUBOOT_MAX_IMAGE, &app_data, &app_len);
	if (r < 0)
		return rel_fail(r, "Failed to read '%s'", a->app);
	in[n++] = (struct fgw_bundle_input){0, a->app_file ? a->app_file : "app.bin", a->app_board,
					    app_data, app_len};
	if (a->net) {
		r = rel_read_file(a->net, FGW_MCUBOOT_MAX_IMAGE, &net_data, &net_len);
		if (r < 0)
			return rel_fail(r, "Failed to read '%s'", a->net);
		in[n++] = (struct fgw_bundle_input){1, a->net_file ? a->net_file : "net.bin",
						    a->net_board, net_data, net_len};
	}
	r = fgw_bundle_write(a->out, a->name, in, n);
	if (r == -EBADMSG)
		return rel_fail(0, "an input is not a valid MCUboot image");
	if (r < 0)
		return rel_fail(r, "Failed to write '%s'", a->out);
	return 0;
}

int rel_cmd_make_bundle(int argc, char **argv)
{
	struct mkbundle_args a = {.app_board = "nrf5340dk/nrf5340/cpuapp",
				  .net_board = "nrf5340dk/nrf5340/cpunet"};
	struct fgw_bundle *b = NULL;
	struct fgw_reject why;
	uint8_t sha[32];
	char hex[65];
	uint64_t size;
	int r;

	r = mkbundle_parse_args(argc, argv, &a);
	if (r)
		return r;
	r = mkbundle_write(&a);
	if (r)
		return r;
	/* read it back the way the gateway will */
	r = fgw_bundle_open(a.out, NULL, &b, &why);
	if (r < 0) {
		rel_print_reject("bundle just written", &why);
		return FOTACTL_EXIT_FAILED;
	}
	fgw_bundle_free(b);
	r = fgw_sha256_file(a.out, FGW_BUNDLE_MAX_SIZE, sha, &size);
	if (r < 0)
		return rel_fail(r, "Failed to hash '%s'", a.out);
	fgw_hex_encode(sha, 32, hex);
	/* what the release manifest's bundle object needs */
	printf("{\"sha256\": \"%s\", \"size\": %" PRIu64 "}\n", hex, size);
	return FOTACTL_EXIT_OK;
}
