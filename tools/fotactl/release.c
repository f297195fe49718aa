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
#include "release.h"
#include "util.h"

const char fotactl_release_usage[] =
    "release keygen -o KEY.pem [--type ed25519|ecdsa-p256|rsa-2048|rsa-3072] [--public PUB]\n"
    "release sign MANIFEST --key KEY.pem [-o MANIFEST.sig]\n"
    "release verify MANIFEST --key PUB.pem... [--sig SIG] [--sequence N] [--channel C]\n"
    "release inspect BUNDLE.zip|IMAGE.bin [--mcuboot-key PEM] [--json]\n"
    "release make-image -o OUT --image-version V (--payload FILE | --size N [--seed S])\n"
    "                   [--key PEM] [--header-size N] [--load-addr A] [--security-counter N]\n"
    "                   (--version V, followed by a value, is an older spelling)\n"
    "release make-bundle -o OUT --app APP.bin [--net NET.bin] [--app-board B] [--net-board B]\n"
    "                    [--app-file NAME] [--net-file NAME] [--name NAME]\n";

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
				return rel_bad_value("--type", optarg,
						     "ed25519, ecdsa-p256, rsa-2048 or rsa-3072");
			break;
		case 'o':
			out = optarg;
			break;
		case 'p':
			pub = optarg;
			break;
		default:
			return rel_bad_option(argv);
		}
	}
	if (!out && optind < argc)
		out = argv[optind++];
	if (optind != argc)
		return rel_extra_operand(argv[optind]);
	if (!out)
		return rel_usage_error("keygen needs -o KEY.pem");
	if (!pub) {
		size_t n = strlen(out);
		/* KEY.pem -> KEY.pub.pem; anything else gets ".pub" */
		if (n > 4 && strcmp(out + n - 4, ".pem") == 0)
			r = asprintf(&pub_buf, "%.*s.pub.pem", (int) (n - 4), out);
		else
			r = asprintf(&pub_buf, "%s.pub", out);
		if (r < 0)
			return rel_fail(-ENOMEM, "keygen");
		pub = pub_buf;
	}
	r = fgw_key_generate(type, &k);
	if (r < 0)
		return rel_fail(r, "Failed to generate a %s key", fgw_key_type_to_string(type));
	r = fgw_key_save(k, out, pub);
	if (r < 0) {
		fgw_key_free(k);
		return rel_fail(r, "Failed to write '%s' / '%s'", out, pub);
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
			return rel_bad_option(argv);
		}
	}
	if (optind + 1 < argc)
		return rel_extra_operand(argv[optind + 1]);
	if (optind + 1 != argc || !key_path)
		return rel_usage_error("sign needs MANIFEST and --key KEY.pem");
	manifest = argv[optind];
	r = rel_read_file(manifest, FGW_MANIFEST_MAX_BYTES, &json, &len);
	if (r < 0)
		return rel_fail(r, "Failed to read '%s'", manifest);
	/* Never sign what the gateway would refuse to read. */
	r = fgw_manifest_parse(json, len, &m, &why);
	if (r < 0) {
		rel_print_reject("manifest", &why);
		return FOTACTL_EXIT_FAILED;
	}
	if (m->expires <= (int64_t) time(NULL) && !force) {
		fgw_manifest_free(m);
		return rel_fail(0, "'%s' has already expired (use --force to sign anyway)",
				manifest);
	}
	fgw_manifest_free(m);
	r = fgw_key_load_file(key_path, &key);
	if (r < 0)
		return rel_fail(r, "Failed to load key '%s'", key_path);
	r = fgw_manifest_sign(json, len, key, &sig);
	if (r == -EINVAL) {
		fgw_key_free(key);
		return rel_fail(0, "'%s' is not an Ed25519 private key", key_path);
	}
	if (r < 0) {
		fgw_key_free(key);
		return rel_fail(r, "Failed to sign");
	}
	if (!out) {
		if (asprintf(&out_buf, "%s.sig", manifest) < 0) {
			fgw_key_free(key);
			return rel_fail(-ENOMEM, "sign");
		}
		out = out_buf;
	}
	r = fgw_write_file_atomic(out, sig, strlen(sig), 0644);
	if (r < 0) {
		fgw_key_free(key);
		return rel_fail(r, "Failed to write '%s'", out);
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
				return rel_usage_error(msg);
			}
			r = fgw_key_load_file(optarg, &a->keys[a->n_keys]);
			if (r < 0)
				return rel_fail(r, "Failed to load key '%s'", optarg);
			a->n_keys++;
			break;
		case 's':
			a->sig_path = optarg;
			break;
		case 'n':
			if (fgw_parse_int64(optarg, 0, FGW_MANIFEST_MAX_SEQUENCE, &a->stored) < 0)
				return rel_bad_value("--sequence", optarg, "a number >= 0");
			break;
		case 'c':
			a->channel = optarg;
			break;
		default:
			return rel_bad_option(argv);
		}
	}
	if (optind + 1 < argc)
		return rel_extra_operand(argv[optind + 1]);
	if (optind + 1 != argc || a->n_keys == 0)
		return rel_usage_error("verify needs MANIFEST and --key PUB.pem");
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
	r = rel_read_file(manifest, FGW_MANIFEST_MAX_BYTES, &json, &len);
	if (r < 0) {
		rel_fail(r, "Failed to read '%s'", manifest);
		goto out;
	}
	r = rel_read_file(a.sig_path, FGW_MANIFEST_SIG_MAX_BYTES, &sig, &sig_len);
	if (r < 0) {
		rel_fail(r, "Failed to read '%s'", a.sig_path);
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
		rel_print_reject("manifest", &why);
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

int fotactl_keygen(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return cmd_keygen(argc, argv);
}

int fotactl_sign_manifest(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return cmd_sign(argc, argv);
}

static int run_inspect(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return rel_cmd_inspect(ctx, argc, argv);
}

static int run_offline(int (*cmd)(int, char **), int argc, char **argv)
{
	return cmd(argc, argv);
}

#define OFFLINE(f)                                                                                 \
	static int run_##f(const struct fotactl_ctx *ctx, int argc, char **argv)                   \
	{                                                                                          \
		return run_offline(cmd_##f, argc, argv);                                           \
	}
OFFLINE(keygen)
OFFLINE(sign)
OFFLINE(verify)

static int run_make_image(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return rel_cmd_make_image(argc, argv);
}

static int run_make_bundle(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return rel_cmd_make_bundle(argc, argv);
}

/* argv[0] of a subcommand is its prog name, which getopt's messages start with. */
static const struct fotactl_command subs[] = {
    {"keygen", "fotactl release keygen", run_keygen, NULL},
    {"sign", "fotactl release sign", run_sign, NULL},
    {"verify", "fotactl release verify", run_verify, NULL},
    {"inspect", "fotactl release inspect", run_inspect, NULL},
    {"make-image", "fotactl release make-image", run_make_image, NULL},
    {"make-bundle", "fotactl release make-bundle", run_make_bundle, NULL},
};

bool fotactl_release_has_sub(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
		if (strcmp(name, subs[i].name) == 0)
			return true;
	return false;
}

int fotactl_release(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return rel_usage_error("release needs a subcommand");
	if (argv[1][0] == '-') {
		fprintf(stderr, "fotactl: '%s' before the release subcommand: options follow it\n",
			argv[1]);
		return FOTACTL_EXIT_USAGE;
	}
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
		if (strcmp(argv[1], subs[i].name) == 0) {
			argv[1] = (char *) subs[i].prog;
			return subs[i].run(ctx, argc - 1, argv + 1);
		}
	fprintf(stderr, "fotactl: unknown release subcommand '%s' (fotactl release --help)\n",
		argv[1]);
	return FOTACTL_EXIT_USAGE;
}
