/*
 * fotactl release: the release side, offline. Keys, manifest signatures, MCUboot images and
 * NCS bundles, with the same code the gateway verifies them with (lib/bundle).
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
#include "util.h"

const char fotactl_release_usage[] =
    "release keygen -o KEY.pem [--type ed25519|ecdsa-p256|rsa-2048|rsa-3072] [--public PUB]\n"
    "release sign MANIFEST --key KEY.pem [-o MANIFEST.sig]\n"
    "release verify MANIFEST --key PUB.pem... [--sig SIG] [--sequence N] [--channel C]\n"
    "release inspect BUNDLE.zip|IMAGE.bin [--mcuboot-key PEM] [--json]\n"
    "release make-image -o OUT --version V (--payload FILE | --size N [--seed S])\n"
    "                   [--key PEM] [--header-size N] [--load-addr A] [--security-counter N]\n"
    "release make-bundle -o OUT --app APP.bin [--net NET.bin] [--app-board B] [--net-board B]\n"
    "                    [--app-file NAME] [--net-file NAME] [--name NAME]\n";

#define MAX_FILE (256u * 1024 * 1024)

static int fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int err, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fotactl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, ": %s", strerror(err < 0 ? -err : err));
	fputc('\n', stderr);
	return FOTACTL_EXIT_FAILED;
}

static int usage_error(const char *msg)
{
	fprintf(stderr, "fotactl: %s\nUsage:\n%s", msg, fotactl_release_usage);
	return FOTACTL_EXIT_USAGE;
}

static int read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t) st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t) st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t) st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t) st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			free(buf);
			close(fd);
			return r;
		}
		got += (size_t) n;
	}
	close(fd);
	buf[got] = '\0';
	*ret = buf;
	*ret_len = got;
	return 0;
}

static void print_reject(const char *what, const struct fgw_reject *why)
{
	fprintf(stderr, "fotactl: %s refused: %s", what, fgw_reject_reason_to_string(why->reason));
	if (why->image >= 0)
		fprintf(stderr, ", image %d", why->image);
	if (why->detail)
		fprintf(stderr, " (%s)", why->detail);
	fputc('\n', stderr);
}

/* ---- keygen ---- */

static int cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"type", required_argument, NULL, 't'},
	    {"output", required_argument, NULL, 'o'},
	    {"public", required_argument, NULL, 'p'},
	    {},
	};
	enum fgw_key_type type = FGW_KEY_TYPE_ED25519;
	const char *out = NULL, *pub = NULL;
	_cleanup_free_ char *pub_buf = NULL;
	struct fgw_key *k;
	int c, r;

	while ((c = getopt_long(argc, argv, "t:o:", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			type = fgw_key_type_from_string(optarg);
			if (type < 0)
				return usage_error("unknown key type");
			break;
		case 'o':
			out = optarg;
			break;
		case 'p':
			pub = optarg;
			break;
		default:
			return usage_error("bad option");
		}
	}
	if (!out && optind < argc)
		out = argv[optind++];
	if (!out || optind != argc)
		return usage_error("keygen needs -o KEY.pem");
	if (!pub) {
		size_t n = strlen(out);
		/* KEY.pem -> KEY.pub.pem; anything else gets ".pub" */
		if (n > 4 && strcmp(out + n - 4, ".pem") == 0)
			r = asprintf(&pub_buf, "%.*s.pub.pem", (int) (n - 4), out);
		else
			r = asprintf(&pub_buf, "%s.pub", out);
		if (r < 0)
			return fail(-ENOMEM, "keygen");
		pub = pub_buf;
	}
	r = fgw_key_generate(type, &k);
	if (r < 0)
		return fail(r, "Failed to generate a %s key", fgw_key_type_to_string(type));
	r = fgw_key_save(k, out, pub);
	if (r < 0) {
		fgw_key_free(k);
		return fail(r, "Failed to write '%s' / '%s'", out, pub);
	}
	printf("private key: %s\npublic key:  %s\nkey id:      %s\n", out, pub, fgw_key_id(k));
	fgw_key_free(k);
	return FOTACTL_EXIT_OK;
}

/* ---- sign / verify ---- */

static int cmd_sign(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"output", required_argument, NULL, 'o'},
	    {"force", no_argument, NULL, 'f'},
	    {},
	};
	const char *key_path = NULL, *out = NULL, *manifest;
	_cleanup_free_ char *out_buf = NULL, *sig = NULL;
	_cleanup_free_ uint8_t *json = NULL;
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;
	struct fgw_key *key;
	bool force = false;
	size_t len;
	int c, r;

	while ((c = getopt_long(argc, argv, "k:o:f", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_path = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'f':
			force = true;
			break;
		default:
			return usage_error("bad option");
		}
	}
	if (optind + 1 != argc || !key_path)
		return usage_error("sign needs MANIFEST and --key KEY.pem");
	manifest = argv[optind];
	r = read_file(manifest, FGW_MANIFEST_MAX_BYTES, &json, &len);
	if (r < 0)
		return fail(r, "Failed to read '%s'", manifest);
	/* Never sign what the gateway would refuse to read. */
	r = fgw_manifest_parse(json, len, &m, &why);
	if (r < 0) {
		print_reject("manifest", &why);
		return FOTACTL_EXIT_FAILED;
	}
	if (m->expires <= (int64_t) time(NULL) && !force) {
		fgw_manifest_free(m);
		return fail(0, "'%s' has already expired (use --force to sign anyway)", manifest);
	}
	fgw_manifest_free(m);
	r = fgw_key_load_file(key_path, &key);
	if (r < 0)
		return fail(r, "Failed to load key '%s'", key_path);
	r = fgw_manifest_sign(json, len, key, &sig);
	if (r == -EINVAL) {
		fgw_key_free(key);
		return fail(0, "'%s' is not an Ed25519 private key", key_path);
	}
	if (r < 0) {
		fgw_key_free(key);
		return fail(r, "Failed to sign");
	}
	if (!out) {
		if (asprintf(&out_buf, "%s.sig", manifest) < 0) {
			fgw_key_free(key);
			return fail(-ENOMEM, "sign");
		}
		out = out_buf;
	}
	r = fgw_write_file_atomic(out, sig, strlen(sig), 0644);
	if (r < 0) {
		fgw_key_free(key);
		return fail(r, "Failed to write '%s'", out);
	}
	printf("%s: signed with %s\n", out, fgw_key_id(key));
	fgw_key_free(key);
	return FOTACTL_EXIT_OK;
}

struct verify_args {
	struct fgw_key *keys[FGW_MANIFEST_MAX_KEYS];
	size_t n_keys;
	const char *sig_path, *channel;
	int64_t stored;
};

/* FOTACTL_EXIT_OK, or the exit code of the usage error or key file that failed. */
static int verify_args_parse(int argc, char **argv, struct verify_args *a)
{
	static const struct option opts[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"sig", required_argument, NULL, 's'},
	    {"sequence", required_argument, NULL, 'n'},
	    {"channel", required_argument, NULL, 'c'},
	    {},
	};
	char msg[32];
	int c, r;

	while ((c = getopt_long(argc, argv, "k:s:n:c:", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (a->n_keys == ARRAY_SIZE(a->keys)) {
				snprintf(msg, sizeof(msg), "at most %d keys",
					 FGW_MANIFEST_MAX_KEYS);
				return usage_error(msg);
			}
			r = fgw_key_load_file(optarg, &a->keys[a->n_keys]);
			if (r < 0)
				return fail(r, "Failed to load key '%s'", optarg);
			a->n_keys++;
			break;
		case 's':
			a->sig_path = optarg;
			break;
		case 'n':
			if (fgw_parse_int64(optarg, 0, FGW_MANIFEST_MAX_SEQUENCE, &a->stored) < 0)
				return usage_error("bad --sequence");
			break;
		case 'c':
			a->channel = optarg;
			break;
		default:
			return usage_error("bad option");
		}
	}
	if (optind + 1 != argc || a->n_keys == 0)
		return usage_error("verify needs MANIFEST and --key PUB.pem");
	return FOTACTL_EXIT_OK;
}

/*
 * The gateway's checks, in its order: signature, fields, then (with --channel) the audience,
 * then sequence and expiry.
 */
static int cmd_verify(int argc, char **argv)
{
	struct verify_args a = {0};
	const char *manifest;
	_cleanup_free_ char *sig_buf = NULL;
	_cleanup_free_ uint8_t *json = NULL, *sig = NULL;
	const struct fgw_key *used = NULL;
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;
	size_t len, sig_len;
	int r, ret = verify_args_parse(argc, argv, &a);

	if (ret != FOTACTL_EXIT_OK)
		goto out;
	ret = FOTACTL_EXIT_FAILED;
	manifest = argv[optind];
	if (!a.sig_path) {
		if (asprintf(&sig_buf, "%s.sig", manifest) < 0)
			goto out;
		a.sig_path = sig_buf;
	}
	r = read_file(manifest, FGW_MANIFEST_MAX_BYTES, &json, &len);
	if (r < 0) {
		fail(r, "Failed to read '%s'", manifest);
		goto out;
	}
	r = read_file(a.sig_path, FGW_MANIFEST_SIG_MAX_BYTES, &sig, &sig_len);
	if (r < 0) {
		fail(r, "Failed to read '%s'", a.sig_path);
		goto out;
	}
	r = fgw_manifest_verify_signature(json, len, sig, sig_len, a.keys, a.n_keys, &used, &why);
	if (r == 0)
		r = fgw_manifest_parse(json, len, &m, &why);
	if (r == 0 && a.channel)
		r = fgw_manifest_check_channel(m, a.channel, &why);
	if (r == 0)
		r = fgw_manifest_check(m, a.stored, (int64_t) time(NULL), &why);
	if (r < 0) {
		print_reject("manifest", &why);
		goto out;
	}
	printf("%s: ok, sequence %" PRId64 ", channel %s, %zu release(s), signed by %s\n", manifest,
	       m->sequence, m->channel ? m->channel : "(none)", m->n_releases, fgw_key_id(used));
	ret = FOTACTL_EXIT_OK;
out:
	fgw_manifest_free(m);
	for (size_t i = 0; i < a.n_keys; i++)
		fgw_key_free(a.keys[i]);
	return ret;
}

/* ---- inspect ---- */

static const char *core_name(int index)
{
	switch (index) {
	case 0:
		return "app";
	case 1:
		return "net";
	default:
		return "other";
	}
}

static void print_image(bool json, bool first, int index, const char *file, const char *board,
			size_t size, const struct fgw_mcuboot_image *img, enum fgw_sig_status sig,
			const struct fgw_key *key)
{
	char ver[FGW_IMAGE_VERSION_STRLEN], hash[65], keyhash[65] = "";

	fgw_hex_encode(img->hash, 32, hash);
	if (img->has_keyhash)
		fgw_hex_encode(img->keyhash, 32, keyhash);
	fgw_image_version_format(&img->version, ver);
	if (json) {
		printf("%s{\"index\":%d,\"core\":\"%s\",\"file\":\"%s\",\"board\":%s%s%s,"
		       "\"version\":\"%s\",\"size\":%zu,\"img_size\":%" PRIu32
		       ",\"hdr_size\":%" PRIu32 ",\"load_addr\":%" PRIu32
		       ",\"hash\":\"%s\",\"keyhash\":\"%s\",\"sig_tlv\":%d,\"signature\":\"%s\"}",
		       first ? "" : ",", index, core_name(index), file, board ? "\"" : "",
		       board ? board : "null", board ? "\"" : "", ver, size, img->img_size,
		       img->hdr_size, img->load_addr, hash, keyhash, img->sig_type,
		       fgw_sig_status_to_string(sig));
		return;
	}
	printf("image %d (%s core)\n", index, core_name(index));
	printf("  file:      %s\n", file);
	if (board)
		printf("  board:     %s\n", board);
	printf("  version:   %s\n", ver);
	printf("  size:      %zu (header %" PRIu32 ", body %" PRIu32 ", TLVs to %" PRIu32 ")\n",
	       size, img->hdr_size, img->img_size, img->tlv_end);
	printf("  load addr: 0x%" PRIx32 "\n", img->load_addr);
	printf("  hash:      %s\n", hash);
	if (img->has_keyhash)
		printf("  keyhash:   %s\n", keyhash);
	if (img->has_sec_cnt)
		printf("  sec cnt:   %" PRIu32 "\n", img->sec_cnt);
	printf("  signature: %s", fgw_sig_status_to_string(sig));
	if (sig == FGW_SIG_STATUS_VALID)
		printf(" (%s)", fgw_key_id(key));
	else if (sig == FGW_SIG_STATUS_NOT_CHECKED)
		printf(" (no --mcuboot-key; TLV type 0x%02x)", img->sig_type);
	putchar('\n');
}

static int cmd_inspect(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"mcuboot-key", required_argument, NULL, 'k'},
	    {"json", no_argument, NULL, 'j'},
	    {},
	};
	const char *key_path = NULL, *path;
	_cleanup_free_ uint8_t *data = NULL;
	struct fgw_bundle *b = NULL;
	struct fgw_key *key = NULL;
	struct fgw_reject why;
	bool json = ctx->json, all_valid = true;
	size_t len;
	int c, r, ret = FOTACTL_EXIT_FAILED;

	while ((c = getopt_long(argc, argv, "k:", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_path = optarg;
			break;
		case 'j':
			json = true;
			break;
		default:
			return usage_error("bad option");
		}
	}
	if (optind + 1 != argc)
		return usage_error("inspect needs one BUNDLE.zip or IMAGE.bin");
	path = argv[optind];
	if (key_path) {
		r = fgw_key_load_file(key_path, &key);
		if (r < 0)
			return fail(r, "Failed to load MCUboot key '%s'", key_path);
	}
	r = read_file(path, MAX_FILE, &data, &len);
	if (r < 0) {
		fail(r, "Failed to read '%s'", path);
		goto out;
	}

	if (len >= 4 && memcmp(data, "PK\x03\x04", 4) == 0) {
		/* Hash-check everything first; signatures per image, so each gets a status. */
		r = fgw_bundle_open_buffer(data, len, NULL, &b, &why);
		if (r < 0) {
			print_reject("bundle", &why);
			goto out;
		}
		if (json)
			printf("{\"file\":\"%s\",\"name\":%s%s%s,\"images\":[", path,
			       b->name ? "\"" : "", b->name ? b->name : "null",
			       b->name ? "\"" : "");
		else
			printf("bundle: %s%s%s%s, %zu image(s)\n", path, b->name ? " (" : "",
			       b->name ? b->name : "", b->name ? ")" : "", b->n_images);
		for (size_t i = 0; i < b->n_images; i++) {
			struct fgw_bundle_image *im = &b->images[i];
			enum fgw_sig_status sig = FGW_SIG_STATUS_NOT_CHECKED;
			if (key)
				(void) fgw_mcuboot_verify(im->data, im->len, &im->img, key, &sig,
							  NULL);
			if (key && sig != FGW_SIG_STATUS_VALID)
				all_valid = false;
			print_image(json, i == 0, im->index, im->file, im->board, im->len, &im->img,
				    sig, key);
		}
		if (json)
			printf("]}\n");
	} else {
		struct fgw_mcuboot_image img;
		enum fgw_sig_status sig = FGW_SIG_STATUS_NOT_CHECKED;

		r = fgw_mcuboot_parse(data, len, &img, &why);
		if (r == 0)
			r = fgw_mcuboot_verify(data, len, &img, NULL, &sig, &why);
		if (r < 0) {
			print_reject("image", &why);
			goto out;
		}
		if (key)
			(void) fgw_mcuboot_verify(data, len, &img, key, &sig, NULL);
		if (key && sig != FGW_SIG_STATUS_VALID)
			all_valid = false;
		if (json)
			printf("{\"file\":\"%s\",\"images\":[", path);
		print_image(json, true, 0, path, NULL, len, &img, sig, key);
		if (json)
			printf("]}\n");
	}
	ret = all_valid ? FOTACTL_EXIT_OK : FOTACTL_EXIT_FAILED;
out:
	fgw_bundle_free(b);
	fgw_key_free(key);
	return ret;
}

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

static int cmd_make_image(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
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
				return usage_error("bad --version (expected like 1.2.3+4)");
			have_version = true;
			break;
		case 'p':
			payload = optarg;
			break;
		case 's':
			if (fgw_parse_int64(optarg, 0, FGW_MCUBOOT_MAX_IMAGE / 2, &size) < 0)
				return usage_error("bad --size");
			break;
		case 'S':
			if (fgw_parse_int64(optarg, 0, INT64_MAX, &seed) < 0)
				return usage_error("bad --seed");
			break;
		case 'k':
			key_path = optarg;
			break;
		case 'H':
			if (fgw_parse_int64(optarg, 32, 65535, &v) < 0)
				return usage_error("bad --header-size (32..65535)");
			o.hdr_size = (uint32_t) v;
			break;
		case 'L': {
			char *end;
			unsigned long long a = strtoull(optarg, &end, 0);
			if (*end || end == optarg || a > UINT32_MAX)
				return usage_error("bad --load-addr");
			o.load_addr = (uint32_t) a;
			break;
		}
		case 'C':
			if (fgw_parse_int64(optarg, 0, UINT32_MAX, &v) < 0)
				return usage_error("bad --security-counter");
			o.has_sec_cnt = true;
			o.sec_cnt = (uint32_t) v;
			break;
		default:
			return usage_error("bad option");
		}
	}
	if (optind != argc || !out || !have_version || (!payload) == (size < 0))
		return usage_error("make-image needs -o, --version and one of --payload/--size");
	if (payload) {
		r = read_file(payload, FGW_MCUBOOT_MAX_IMAGE / 2, &body, &len);
		if (r < 0)
			return fail(r, "Failed to read '%s'", payload);
	} else {
		len = (size_t) size;
		body = malloc(len ? len : 1);
		if (!body)
			return fail(-ENOMEM, "make-image");
		fill(body, len, (uint64_t) seed);
	}
	if (key_path) {
		r = fgw_key_load_file(key_path, &key);
		if (r < 0)
			return fail(r, "Failed to load key '%s'", key_path);
		if (!fgw_key_has_private(key)) {
			fgw_key_free(key);
			return fail(0, "'%s' is a public key; signing needs the private key",
				    key_path);
		}
		o.key = key;
	}
	r = fgw_mcuboot_write(body, len, &o, &img, &img_len);
	fgw_key_free(key);
	if (r < 0)
		return fail(r, "Failed to build the image");
	r = fgw_write_file_atomic(out, img, img_len, 0644);
	if (r < 0)
		return fail(r, "Failed to write '%s'", out);
	{
		struct fgw_mcuboot_image m;
		if (fgw_mcuboot_parse(img, img_len, &m, NULL) < 0)
			return fail(-EIO, "the image just written does not parse");
		fgw_hex_encode(m.hash, 32, hash);
	}
	printf("%s\n", hash);
	return FOTACTL_EXIT_OK;
}

static int cmd_make_bundle(int argc, char **argv)
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
			return usage_error("bad option");
		}
	}
	if (optind != argc || !out || !app)
		return usage_error("make-bundle needs -o OUT and --app APP.bin");
	r = read_file(app, FGW_MCUBOOT_MAX_IMAGE, &app_data, &app_len);
	if (r < 0)
		return fail(r, "Failed to read '%s'", app);
	in[n++] = (struct fgw_bundle_input){0, app_file ? app_file : "app.bin", app_board, app_data,
					    app_len};
	if (net) {
		r = read_file(net, FGW_MCUBOOT_MAX_IMAGE, &net_data, &net_len);
		if (r < 0)
			return fail(r, "Failed to read '%s'", net);
		in[n++] = (struct fgw_bundle_input){1, net_file ? net_file : "net.bin", net_board,
						    net_data, net_len};
	}
	r = fgw_bundle_write(out, name, in, n);
	if (r == -EBADMSG)
		return fail(0, "an input is not a valid MCUboot image");
	if (r < 0)
		return fail(r, "Failed to write '%s'", out);
	/* read it back the way the gateway will */
	r = fgw_bundle_open(out, NULL, &b, &why);
	if (r < 0) {
		print_reject("bundle just written", &why);
		return FOTACTL_EXIT_FAILED;
	}
	fgw_bundle_free(b);
	r = fgw_sha256_file(out, FGW_BUNDLE_MAX_SIZE, sha, &size);
	if (r < 0)
		return fail(r, "Failed to hash '%s'", out);
	fgw_hex_encode(sha, 32, hex);
	/* what the release manifest's bundle object needs */
	printf("{\"sha256\": \"%s\", \"size\": %" PRIu64 "}\n", hex, size);
	return FOTACTL_EXIT_OK;
}

int fotactl_keygen(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return cmd_keygen(argc, argv);
}

int fotactl_sign_manifest(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return cmd_sign(argc, argv);
}

int fotactl_release(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	const char *sub;

	if (argc < 2)
		return usage_error("release needs a subcommand");
	sub = argv[1];
	argc--;
	argv++;
	if (strcmp(sub, "keygen") == 0)
		return cmd_keygen(argc, argv);
	if (strcmp(sub, "sign") == 0)
		return cmd_sign(argc, argv);
	if (strcmp(sub, "verify") == 0)
		return cmd_verify(argc, argv);
	if (strcmp(sub, "inspect") == 0)
		return cmd_inspect(ctx, argc, argv);
	if (strcmp(sub, "make-image") == 0)
		return cmd_make_image(argc, argv);
	if (strcmp(sub, "make-bundle") == 0)
		return cmd_make_bundle(argc, argv);
	return usage_error("unknown release subcommand");
}
