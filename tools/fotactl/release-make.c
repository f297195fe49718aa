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

int rel_cmd_make_image(int argc, char **argv)
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
	struct fgw_mcuboot_write_opts o = {.hdr_size = 0x200};
	const char *out = NULL, *payload = NULL, *key_path = NULL;
	_cleanup_free_ uint8_t *body = NULL, *img = NULL;
	struct fgw_key *key = NULL;
	int64_t size = -1, seed = 1, v;
	bool have_version = false;
	size_t len = 0, img_len;
	char hash[65];
	int c, r;

	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'v':
			if (fgw_image_version_parse(optarg, &o.version) < 0)
				return rel_bad_value("--image-version", optarg,
						     "expected like 1.2.3+4");
			have_version = true;
			break;
		case 'p':
			payload = optarg;
			break;
		case 's':
			if (fgw_parse_int64(optarg, 0, FGW_MCUBOOT_MAX_IMAGE / 2, &size) < 0)
				return rel_bad_value("--size", optarg,
						     "bytes, at most half the largest image");
			break;
		case 'S':
			if (fgw_parse_int64(optarg, 0, INT64_MAX, &seed) < 0)
				return rel_bad_value("--seed", optarg, "a number >= 0");
			break;
		case 'k':
			key_path = optarg;
			break;
		case 'H':
			if (fgw_parse_int64(optarg, 32, 65535, &v) < 0)
				return rel_bad_value("--header-size", optarg, "32..65535");
			o.hdr_size = (uint32_t) v;
			break;
		case 'L': {
			char *end;
			unsigned long long a = strtoull(optarg, &end, 0);
			if (*end || end == optarg || a > UINT32_MAX)
				return rel_bad_value("--load-addr", optarg, "a 32-bit address");
			o.load_addr = (uint32_t) a;
			break;
		}
		case 'C':
			if (fgw_parse_int64(optarg, 0, UINT32_MAX, &v) < 0)
				return rel_bad_value("--security-counter", optarg, "0..4294967295");
			o.has_sec_cnt = true;
			o.sec_cnt = (uint32_t) v;
			break;
		default:
			return rel_bad_option(argv);
		}
	}
	if (optind != argc)
		return rel_extra_operand(argv[optind]);
	if (!out || !have_version || (!payload) == (size < 0))
		return rel_usage_error(
		    "make-image needs -o, --image-version and one of --payload/--size");
	if (payload) {
		r = rel_read_file(payload, FGW_MCUBOOT_MAX_IMAGE / 2, &body, &len);
		if (r < 0)
			return rel_fail(r, "Failed to read '%s'", payload);
	} else {
		len = (size_t) size;
		body = malloc(len ? len : 1);
		if (!body)
			return rel_fail(-ENOMEM, "make-image");
		fill(body, len, (uint64_t) seed);
	}
	if (key_path) {
		r = fgw_key_load_file(key_path, &key);
		if (r < 0)
			return rel_fail(r, "Failed to load key '%s'", key_path);
		if (!fgw_key_has_private(key)) {
			fgw_key_free(key);
			return rel_fail(0, "'%s' is a public key; signing needs the private key",
					key_path);
		}
		o.key = key;
	}
	r = fgw_mcuboot_write(body, len, &o, &img, &img_len);
	fgw_key_free(key);
	if (r < 0)
		return rel_fail(r, "Failed to build the image");
	r = fgw_write_file_atomic(out, img, img_len, 0644);
	if (r < 0)
		return rel_fail(r, "Failed to write '%s'", out);
	{
		struct fgw_mcuboot_image m;
		if (fgw_mcuboot_parse(img, img_len, &m, NULL) < 0)
			return rel_fail(-EIO, "the image just written does not parse");
		fgw_hex_encode(m.hash, 32, hash);
	}
	printf("%s\n", hash);
	return FOTACTL_EXIT_OK;
}

int rel_cmd_make_bundle(int argc, char **argv)
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
	const char *out = NULL, *app = NULL, *net = NULL, *name = NULL;
	const char *app_board = "nrf5340dk/nrf5340/cpuapp", *net_board = "nrf5340dk/nrf5340/cpunet";
	const char *app_file = NULL, *net_file = NULL;
	_cleanup_free_ uint8_t *app_data = NULL, *net_data = NULL;
	struct fgw_bundle_input in[2];
	struct fgw_bundle *b = NULL;
	struct fgw_reject why;
	size_t app_len = 0, net_len = 0, n = 0;
	uint8_t sha[32];
	char hex[65];
	uint64_t size;
	int c, r;

	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'a':
			app = optarg;
			break;
		case 'n':
			net = optarg;
			break;
		case 'A':
			app_board = optarg;
			break;
		case 'N':
			net_board = optarg;
			break;
		case 'f':
			app_file = optarg;
			break;
		case 'F':
			net_file = optarg;
			break;
		case 'm':
			name = optarg;
			break;
		default:
			return rel_bad_option(argv);
		}
	}
	if (optind != argc)
		return rel_extra_operand(argv[optind]);
	if (!out || !app)
		return rel_usage_error("make-bundle needs -o OUT and --app APP.bin");
	r = rel_read_file(app, FGW_MCUBOOT_MAX_IMAGE, &app_data, &app_len);
	if (r < 0)
		return rel_fail(r, "Failed to read '%s'", app);
	in[n++] = (struct fgw_bundle_input){0, app_file ? app_file : "app.bin", app_board, app_data,
					    app_len};
	if (net) {
		r = rel_read_file(net, FGW_MCUBOOT_MAX_IMAGE, &net_data, &net_len);
		if (r < 0)
			return rel_fail(r, "Failed to read '%s'", net);
		in[n++] = (struct fgw_bundle_input){1, net_file ? net_file : "net.bin", net_board,
						    net_data, net_len};
	}
	r = fgw_bundle_write(out, name, in, n);
	if (r == -EBADMSG)
		return rel_fail(0, "an input is not a valid MCUboot image");
	if (r < 0)
		return rel_fail(r, "Failed to write '%s'", out);
	/* read it back the way the gateway will */
	r = fgw_bundle_open(out, NULL, &b, &why);
	if (r < 0) {
		rel_print_reject("bundle just written", &why);
		return FOTACTL_EXIT_FAILED;
	}
	fgw_bundle_free(b);
	r = fgw_sha256_file(out, FGW_BUNDLE_MAX_SIZE, sha, &size);
	if (r < 0)
		return rel_fail(r, "Failed to hash '%s'", out);
	fgw_hex_encode(sha, 32, hex);
	/* what the release manifest's bundle object needs */
	printf("{\"sha256\": \"%s\", \"size\": %" PRIu64 "}\n", hex, size);
	return FOTACTL_EXIT_OK;
}
