/*
 * fotactl release inspect: what a bundle or image holds and whether its signatures are good.
 * The zip is untrusted input: names in it are escaped before they reach a terminal, and the
 * --json form is built with cJSON, never printf.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bundle.h"
#include "fotactl.h"
#include "release.h"
#include "util.h"

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

/* One image as a JSON object in @arr; false when out of memory. */
static bool image_json(cJSON *arr, int index, const char *file, const char *board, size_t size,
		       const struct fgw_mcuboot_image *img, enum fgw_sig_status sig)
{
	char ver[FGW_IMAGE_VERSION_STRLEN], hash[65], keyhash[65] = "";
	cJSON *o = cJSON_CreateObject();

	if (!o || !cJSON_AddItemToArray(arr, o))
		return cJSON_Delete(o), false;
	fgw_hex_encode(img->hash, 32, hash);
	if (img->has_keyhash)
		fgw_hex_encode(img->keyhash, 32, keyhash);
	fgw_image_version_format(&img->version, ver);
	return cJSON_AddNumberToObject(o, "index", index) &&
	       cJSON_AddStringToObject(o, "core", core_name(index)) &&
	       cJSON_AddStringToObject(o, "file", file) &&
	       (board ? cJSON_AddStringToObject(o, "board", board)
		      : cJSON_AddNullToObject(o, "board")) &&
	       cJSON_AddStringToObject(o, "version", ver) &&
	       cJSON_AddNumberToObject(o, "size", (double) size) &&
	       cJSON_AddNumberToObject(o, "img_size", img->img_size) &&
	       cJSON_AddNumberToObject(o, "hdr_size", img->hdr_size) &&
	       cJSON_AddNumberToObject(o, "load_addr", img->load_addr) &&
	       cJSON_AddStringToObject(o, "hash", hash) &&
	       cJSON_AddStringToObject(o, "keyhash", keyhash) &&
	       cJSON_AddNumberToObject(o, "sig_tlv", img->sig_type) &&
	       cJSON_AddStringToObject(o, "signature", fgw_sig_status_to_string(sig));
}

/* Text from the zip (file names, board, bundle name) made safe for a terminal. */
static void print_text(const char *label, const char *s)
{
	_cleanup_free_ char *e = fgw_escape_dup(s);

	printf("%s%s\n", label, e ? e : "?");
}

static void print_image(int index, const char *file, const char *board, size_t size,
			const struct fgw_mcuboot_image *img, enum fgw_sig_status sig,
			const struct fgw_key *key)
{
	char ver[FGW_IMAGE_VERSION_STRLEN], hash[65], keyhash[65] = "";

	fgw_hex_encode(img->hash, 32, hash);
	if (img->has_keyhash)
		fgw_hex_encode(img->keyhash, 32, keyhash);
	fgw_image_version_format(&img->version, ver);
	printf("image %d (%s core)\n", index, core_name(index));
	print_text("  file:      ", file);
	if (board)
		print_text("  board:     ", board);
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

/* What one inspect prints: a cJSON document for --json, text as it goes otherwise. */
struct inspect_out {
	bool json;
	bool failed; /* out of memory while building the document */
	cJSON *root, *images;
};

static void out_begin(struct inspect_out *o, const char *path, const struct fgw_bundle *b)
{
	if (!o->json) {
		_cleanup_free_ char *p = fgw_escape_dup(path), *n = fgw_escape_dup(b->name);

		printf("bundle: %s%s%s%s, %zu image(s)\n", p ? p : "?", b->name ? " (" : "",
		       b->name && n ? n : "", b->name ? ")" : "", b->n_images);
		return;
	}
	o->root = cJSON_CreateObject();
	o->failed = !o->root || !cJSON_AddStringToObject(o->root, "file", path) ||
		    (b && !(b->name ? cJSON_AddStringToObject(o->root, "name", b->name)
				    : cJSON_AddNullToObject(o->root, "name"))) ||
		    !(o->images = cJSON_AddArrayToObject(o->root, "images"));
}

static void out_image(struct inspect_out *o, int index, const char *file, const char *board,
		      size_t size, const struct fgw_mcuboot_image *img, enum fgw_sig_status sig,
		      const struct fgw_key *key)
{
	if (!o->json)
		print_image(index, file, board, size, img, sig, key);
	else if (!o->failed && !image_json(o->images, index, file, board, size, img, sig))
		o->failed = true;
}

/* Prints the JSON document; FOTACTL_EXIT_OK, or FAILED if it could not be built. */
static int out_end(struct inspect_out *o)
{
	char *text = NULL;

	if (o->json && !o->failed)
		text = cJSON_PrintUnformatted(o->root);
	cJSON_Delete(o->root);
	if (!o->json)
		return FOTACTL_EXIT_OK;
	if (!text)
		return rel_fail(-ENOMEM, "Failed to build the JSON output");
	printf("%s\n", text);
	free(text);
	return FOTACTL_EXIT_OK;
}

/* Hash-checks everything first; then each image's signature, so each gets a status. */
static int inspect_bundle(struct inspect_out *o, const char *path, const uint8_t *data, size_t len,
			  const struct fgw_key *key, bool *all_valid)
{
	struct fgw_bundle *b = NULL;
	struct fgw_reject why;

	if (fgw_bundle_open_buffer(data, len, NULL, &b, &why) < 0) {
		rel_print_reject("bundle", &why);
		return FOTACTL_EXIT_FAILED;
	}
	out_begin(o, path, b);
	for (size_t i = 0; i < b->n_images; i++) {
		struct fgw_bundle_image *im = &b->images[i];
		enum fgw_sig_status sig = FGW_SIG_STATUS_NOT_CHECKED;

		if (key)
			(void) fgw_mcuboot_verify(im->data, im->len, &im->img, key, &sig, NULL);
		if (key && sig != FGW_SIG_STATUS_VALID)
			*all_valid = false;
		out_image(o, im->index, im->file, im->board, im->len, &im->img, sig, key);
	}
	fgw_bundle_free(b);
	return out_end(o);
}

static int inspect_image(struct inspect_out *o, const char *path, const uint8_t *data, size_t len,
			 const struct fgw_key *key, bool *all_valid)
{
	struct fgw_mcuboot_image img;
	enum fgw_sig_status sig = FGW_SIG_STATUS_NOT_CHECKED;
	struct fgw_reject why;
	int r;

	r = fgw_mcuboot_parse(data, len, &img, &why);
	if (r == 0)
		r = fgw_mcuboot_verify(data, len, &img, NULL, &sig, &why);
	if (r < 0) {
		rel_print_reject("image", &why);
		return FOTACTL_EXIT_FAILED;
	}
	if (key)
		(void) fgw_mcuboot_verify(data, len, &img, key, &sig, NULL);
	if (key && sig != FGW_SIG_STATUS_VALID)
		*all_valid = false;
	if (o->json) {
		o->root = cJSON_CreateObject();
		o->failed = !o->root || !cJSON_AddStringToObject(o->root, "file", path) ||
			    !(o->images = cJSON_AddArrayToObject(o->root, "images"));
	}
	out_image(o, 0, path, NULL, len, &img, sig, key);
	return out_end(o);
}

int rel_cmd_inspect(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"mcuboot-key", required_argument, NULL, 'k'},
	    {"json", no_argument, NULL, 'j'},
	    {},
	};
	const char *key_path = NULL;
	_cleanup_free_ uint8_t *data = NULL;
	struct inspect_out o = {.json = ctx->json};
	struct fgw_key *key = NULL;
	bool all_valid = true;
	size_t len;
	int c, r, ret;

	while ((c = getopt_long(argc, argv, "k:", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_path = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		default:
			return rel_bad_option(argv);
		}
	}
	if (optind + 1 < argc)
		return rel_extra_operand(argv[optind + 1]);
	if (optind + 1 != argc)
		return rel_usage_error("inspect needs one BUNDLE.zip or IMAGE.bin");
	if (key_path) {
		r = fgw_key_load_file(key_path, &key);
		if (r < 0)
			return rel_fail(r, "Failed to load MCUboot key '%s'", key_path);
	}
	r = rel_read_file(argv[optind], MAX_FILE, &data, &len);
	if (r < 0)
		ret = rel_fail(r, "Failed to read '%s'", argv[optind]);
	else if (len >= 4 && memcmp(data, "PK\x03\x04", 4) == 0)
		ret = inspect_bundle(&o, argv[optind], data, len, key, &all_valid);
	else
		ret = inspect_image(&o, argv[optind], data, len, key, &all_valid);
	fgw_key_free(key);
	return ret == FOTACTL_EXIT_OK && !all_valid ? FOTACTL_EXIT_FAILED : ret;
}
