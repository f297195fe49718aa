/*
 * NCS dfu_application.zip (protocol-notes §6.2): manifest.json checked against the entries,
 * then each image parsed and verified. Entries are read into memory with hard caps; nothing is
 * ever extracted under a name taken from the zip.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zip.h>

#include "bundle-private.h"
#include "util.h"

#define NCS_MANIFEST_NAME "manifest.json"

static void image_done(struct fgw_bundle_image *im)
{
	free(im->file);
	free(im->board);
	free(im->declared_version);
	free(im->data);
}

FGW_EXPORT struct fgw_bundle *fgw_bundle_free(struct fgw_bundle *b)
{
	if (b) {
		for (size_t i = 0; i < b->n_images; i++)
			image_done(&b->images[i]);
		free(b->name);
		free(b);
	}
	return NULL;
}

FGW_EXPORT const struct fgw_bundle_image *fgw_bundle_find_image(const struct fgw_bundle *b,
								int index)
{
	for (size_t i = 0; i < b->n_images; i++)
		if (b->images[i].index == index)
			return &b->images[i];
	return NULL;
}

/* A name that, joined to a directory, stays inside it, and means the same on every OS. */
static bool entry_name_safe(const char *name, size_t len)
{
	const char *seg = name;

	if (len == 0 || len > 255 || name[0] == '/' || name[0] == '\\')
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i < len) {
			unsigned char c = (unsigned char) name[i];
			if (c < 0x20 || c == 0x7f || c == '\\' || c == ':')
				return false;
			if (c != '/')
				continue;
		}
		/* end of a path segment */
		if ((size_t) (name + i - seg) == 2 && seg[0] == '.' && seg[1] == '.')
			return false;
		seg = name + i + 1;
	}
	return true;
}

static int read_entry(zip_t *za, zip_uint64_t idx, size_t cap, uint8_t **ret, size_t *ret_len,
		      struct fgw_reject *why)
{
	uint8_t *buf = NULL;
	size_t len = 0, size = 0;
	zip_file_t *zf;
	int r = 0;

	zf = zip_fopen_index(za, idx, 0);
	if (!zf)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_ZIP, -1,
			      "an entry cannot be opened (unsupported method or corrupt)");
	for (;;) {
		zip_int64_t n;

		/* Grow on demand: the sizes the zip declares are not trusted. */
		if (len == size) {
			size_t nsize = size ? size * 2 : 64 * 1024;
			uint8_t *nbuf;
			if (nsize > cap + 1)
				nsize = cap + 1;
			if (nsize <= len) {
				r = reject(why, -EFBIG, FGW_REJECT_ZIP_LIMIT, -1,
					   "an entry inflates beyond the size limit");
				break;
			}
			nbuf = realloc(buf, nsize);
			if (!nbuf) {
				r = -ENOMEM;
				break;
			}
			buf = nbuf;
			size = nsize;
		}
		n = zip_fread(zf, buf + len, size - len);
		if (n < 0) {
			r = reject(why, -EBADMSG, FGW_REJECT_BAD_ZIP, -1,
				   "an entry is corrupt (inflate or CRC error)");
			break;
		}
		if (n == 0)
			break;
		len += (size_t) n;
		if (len > cap) {
			r = reject(why, -EFBIG, FGW_REJECT_ZIP_LIMIT, -1,
				   "an entry inflates beyond the size limit");
			break;
		}
	}
	if (zip_fclose(zf) != 0 && r == 0)
		r = reject(why, -EBADMSG, FGW_REJECT_BAD_ZIP, -1,
			   "an entry is corrupt (CRC error)");
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* NCS writes most numbers as strings ("image_index": "0"): take either, decimal only. */
static int lenient_uint(const cJSON *it, uint64_t max, uint64_t *ret)
{
	uint64_t v = 0;

	if (cJSON_IsNumber(it)) {
		double d = it->valuedouble;
		if (!(d >= 0 && d <= (double) max) || d != (double) (uint64_t) d)
			return -ERANGE;
		*ret = (uint64_t) d;
		return 0;
	}
	if (!cJSON_IsString(it))
		return -EINVAL;
	const char *s = it->valuestring;
	size_t n = strlen(s);
	if (n == 0 || n > 12)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char) s[i]))
			return -EINVAL;
		v = v * 10 + (uint64_t) (s[i] - '0');
	}
	if (v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

static const char *opt_string(const cJSON *o, const char *name, bool *bad)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!it || cJSON_IsNull(it))
		return NULL;
	if (!cJSON_IsString(it) || strlen(it->valuestring) > 128) {
		*bad = true;
		return NULL;
	}
	return it->valuestring;
}

#define BAD_NCS(detail) reject(why, -EBADMSG, FGW_REJECT_BAD_NCS_MANIFEST, -1, detail)

static int sdup(char **dst, const char *s)
{
	if (!s)
		return 0;
	*dst = strdup(s);
	return *dst ? 0 : -ENOMEM;
}

static int parse_ncs_file(zip_t *za, const cJSON *f, struct fgw_bundle *b, uint64_t *total,
			  struct fgw_reject *why)
{
	struct fgw_bundle_image *im;
	const char *file, *type, *board, *ver;
	const cJSON *it;
	uint64_t index = 0, size;
	zip_int64_t zi;
	bool bad = false;
	int r;

	if (!cJSON_IsObject(f))
		return BAD_NCS("a files[] entry is not an object");
	file = opt_string(f, "file", &bad);
	type = opt_string(f, "type", &bad);
	board = opt_string(f, "board", &bad);
	ver = opt_string(f, "version_MCUBOOT", &bad);
	if (bad)
		return BAD_NCS("a files[] string member is not a string of at most 128 bytes");
	if (!file)
		return BAD_NCS("a files[] entry has no \"file\"");
	if (!entry_name_safe(file, strlen(file)))
		return reject(why, -EBADMSG, FGW_REJECT_ZIP_PATH, -1,
			      "manifest.json names a file with an unsafe path");
	if (type && strcmp(type, "application") != 0 && strcmp(type, "mcuboot") != 0)
		return BAD_NCS("a files[] type is not an MCUboot application image");
	it = cJSON_GetObjectItemCaseSensitive(f, "image_index");
	if (it && lenient_uint(it, FGW_BUNDLE_MAX_IMAGES - 1, &index) < 0)
		return BAD_NCS("image_index is not a number 0..3");
	if (lenient_uint(cJSON_GetObjectItemCaseSensitive(f, "size"), FGW_MCUBOOT_MAX_IMAGE,
			 &size) < 0)
		return BAD_NCS("size missing or not a number up to 16 MiB");
	for (size_t i = 0; i < b->n_images; i++)
		if (b->images[i].index == (int) index)
			return BAD_NCS("two files have the same image_index");
	if (b->n_images >= FGW_BUNDLE_MAX_IMAGES)
		return BAD_NCS("more than 4 files");

	zi = zip_name_locate(za, file, ZIP_FL_ENC_RAW);
	if (zi < 0)
		return reject(why, -EBADMSG, FGW_REJECT_MISSING_IMAGE, (int) index,
			      "a file manifest.json lists is not in the zip");
	im = &b->images[b->n_images++];
	im->index = (int) index;
	if (sdup(&im->file, file) < 0 || sdup(&im->board, board) < 0 ||
	    sdup(&im->declared_version, ver) < 0)
		return -ENOMEM;
	r = read_entry(za, (zip_uint64_t) zi, FGW_MCUBOOT_MAX_IMAGE, &im->data, &im->len, why);
	if (r < 0) {
		if (why)
			why->image = im->index;
		return r;
	}
	*total += im->len;
	if (*total > FGW_BUNDLE_MAX_TOTAL)
		return reject(why, -EFBIG, FGW_REJECT_ZIP_LIMIT, im->index,
			      "images together exceed 64 MiB");
	if (size != im->len)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_NCS_MANIFEST, im->index,
			      "manifest.json size differs from the file in the zip");
	return 0;
}

static int check_image(struct fgw_bundle_image *im, const struct fgw_key *key,
		       struct fgw_reject *why)
{
	struct fgw_image_version v;
	int r;

	r = fgw_mcuboot_parse(im->data, im->len, &im->img, why);
	if (r == 0)
		r = fgw_mcuboot_verify(im->data, im->len, &im->img, key, &im->sig, why);
	if (r < 0) {
		if (why)
			why->image = im->index;
		return r;
	}
	if (im->declared_version) {
		if (fgw_image_version_parse(im->declared_version, &v) < 0)
			return reject(why, -EBADMSG, FGW_REJECT_BAD_NCS_MANIFEST, im->index,
				      "version_MCUBOOT is not a version");
		/* "1.2.3" says nothing about the build number; "1.2.3+4" does. */
		if (!strchr(im->declared_version, '+'))
			v.build = im->img.version.build;
		if (fgw_image_version_compare(&v, &im->img.version) != 0)
			return reject(why, -EBADMSG, FGW_REJECT_VERSION_MISMATCH, im->index,
				      "version_MCUBOOT differs from the image header version");
	}
	return 0;
}

/* Every entry name is checked before any entry is read, so a hostile name is never used. */
static int scan_entries(zip_t *za, zip_int64_t *manifest, struct fgw_reject *why)
{
	zip_int64_t n, mi = -1;

	n = zip_get_num_entries(za, 0);
	if (n < 0)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_ZIP, -1, "cannot count entries");
	if (n > FGW_BUNDLE_MAX_ENTRIES)
		return reject(why, -EFBIG, FGW_REJECT_ZIP_LIMIT, -1, "more than 32 zip entries");
	for (zip_int64_t i = 0; i < n; i++) {
		const char *nm = zip_get_name(za, (zip_uint64_t) i, ZIP_FL_ENC_RAW);
		if (!nm)
			return reject(why, -EBADMSG, FGW_REJECT_BAD_ZIP, -1,
				      "unreadable entry name");
		if (!entry_name_safe(nm, strlen(nm)))
			return reject(
			    why, -EBADMSG, FGW_REJECT_ZIP_PATH, -1,
			    "a zip entry name could escape a directory ('..', '/', '\\')");
		for (zip_int64_t j = 0; j < i; j++) {
			const char *other = zip_get_name(za, (zip_uint64_t) j, ZIP_FL_ENC_RAW);
			if (other && strcmp(other, nm) == 0)
				return reject(why, -EBADMSG, FGW_REJECT_BAD_ZIP, -1,
					      "two zip entries have the same name");
		}
		if (strcmp(nm, NCS_MANIFEST_NAME) == 0)
			mi = i;
	}
	if (mi < 0)
		return BAD_NCS("no manifest.json in the zip");
	*manifest = mi;
	return 0;
}

static int parse_manifest(zip_t *za, zip_int64_t mi, cJSON **ret, struct fgw_reject *why)
{
	_cleanup_free_ uint8_t *mtext = NULL;
	cJSON *root;
	size_t mlen;
	int r;

	r = read_entry(za, (zip_uint64_t) mi, FGW_BUNDLE_MAX_NCS_MANIFEST, &mtext, &mlen, why);
	if (r < 0)
		return r;
	if (memchr(mtext, '\0', mlen))
		return BAD_NCS("manifest.json contains a NUL byte");
	root = cJSON_ParseWithLength((const char *) mtext, mlen);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return BAD_NCS("manifest.json is not a JSON object");
	}
	*ret = root;
	return 0;
}

/* sorted by index, so callers can rely on images[0] being the app core */
static void sort_images(struct fgw_bundle *b)
{
	for (size_t i = 1; i < b->n_images; i++)
		for (size_t j = i; j > 0 && b->images[j - 1].index > b->images[j].index; j--) {
			struct fgw_bundle_image t = b->images[j];
			b->images[j] = b->images[j - 1];
			b->images[j - 1] = t;
		}
}

static int bundle_from_zip(zip_t *za, const struct fgw_key *key, struct fgw_bundle **ret,
			   struct fgw_reject *why)
{
	struct fgw_bundle *b = NULL;
	const cJSON *files, *f, *name;
	cJSON *root = NULL;
	zip_int64_t mi = -1;
	uint64_t total = 0;
	int r;

	r = scan_entries(za, &mi, why);
	if (r < 0)
		return r;
	r = parse_manifest(za, mi, &root, why);
	if (r < 0)
		return r;
	b = calloc(1, sizeof(*b));
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	name = cJSON_GetObjectItemCaseSensitive(root, "name");
	if (cJSON_IsString(name) && strlen(name->valuestring) <= 128 &&
	    sdup(&b->name, name->valuestring) < 0) {
		r = -ENOMEM;
		goto out;
	}
	files = cJSON_GetObjectItemCaseSensitive(root, "files");
	if (!cJSON_IsArray(files) || cJSON_GetArraySize(files) == 0) {
		r = BAD_NCS("manifest.json has no files[]");
		goto out;
	}
	cJSON_ArrayForEach(f, files)
	{
		r = parse_ncs_file(za, f, b, &total, why);
		if (r < 0)
			goto out;
	}
	if (!fgw_bundle_find_image(b, 0)) {
		r = reject(why, -EBADMSG, FGW_REJECT_MISSING_IMAGE, 0,
			   "no image 0 (application core) in the bundle");
		goto out;
	}
	sort_images(b);
	for (size_t i = 0; i < b->n_images; i++) {
		r = check_image(&b->images[i], key, why);
		if (r < 0)
			goto out;
	}
	*ret = TAKE_PTR(b);
	r = 0;
out:
	cJSON_Delete(root);
	fgw_bundle_free(b);
	return r;
}

static int zip_open_error(int zerr, bool from_file, struct fgw_reject *why)
{
	switch (zerr) {
	case ZIP_ER_NOENT:
		if (from_file)
			return reject(why, -ENOENT, FGW_REJECT_IO, -1,
				      "the bundle file does not exist");
		break;
	case ZIP_ER_MEMORY:
		return -ENOMEM;
	case ZIP_ER_OPEN:
	case ZIP_ER_READ:
		if (from_file)
			return reject(why, -EIO, FGW_REJECT_IO, -1, "cannot read the bundle file");
		break;
	default:
		break;
	}
	return reject(why, -EBADMSG, FGW_REJECT_BAD_ZIP, -1,
		      "not a zip archive, or truncated or inconsistent");
}

FGW_EXPORT int fgw_bundle_open(const char *path, const struct fgw_key *mcuboot_key,
			       struct fgw_bundle **ret, struct fgw_reject *why)
{
	zip_t *za;
	int zerr = 0, r;

	reject_clear(why);
	za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
	if (!za)
		return zip_open_error(zerr, true, why);
	r = bundle_from_zip(za, mcuboot_key, ret, why);
	zip_discard(za);
	return r;
}

FGW_EXPORT int fgw_bundle_open_buffer(const void *data, size_t len,
				      const struct fgw_key *mcuboot_key, struct fgw_bundle **ret,
				      struct fgw_reject *why)
{
	zip_error_t zerr;
	zip_source_t *src;
	zip_t *za;
	int r;

	reject_clear(why);
	zip_error_init(&zerr);
	src = zip_source_buffer_create(data, len, 0, &zerr);
	if (!src) {
		zip_error_fini(&zerr);
		return -ENOMEM;
	}
	za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
	if (!za) {
		r = zip_open_error(zip_error_code_zip(&zerr), false, why);
		zip_source_free(src);
		zip_error_fini(&zerr);
		return r;
	}
	zip_error_fini(&zerr);
	r = bundle_from_zip(za, mcuboot_key, ret, why);
	zip_discard(za);
	return r;
}

/* ---- writer ---- */

static cJSON *ncs_file_json(const struct fgw_bundle_input *in, const struct fgw_mcuboot_image *img,
			    int64_t now)
{
	char idx[16], prim[16], sec[16], ver[FGW_IMAGE_VERSION_STRLEN];
	cJSON *f = cJSON_CreateObject();

	/* numbers as strings where NCS's generate_zip.py writes strings */
	snprintf(idx, sizeof(idx), "%d", in->index);
	snprintf(prim, sizeof(prim), "%d", 2 * in->index + 1);
	snprintf(sec, sizeof(sec), "%d", 2 * in->index + 2);
	if (!f || !cJSON_AddStringToObject(f, "type", "application") ||
	    (in->board && !cJSON_AddStringToObject(f, "board", in->board)) ||
	    !cJSON_AddNumberToObject(f, "load_address", img->load_addr) ||
	    !cJSON_AddStringToObject(f, "image_index", idx) ||
	    !cJSON_AddStringToObject(f, "slot_index_primary", prim) ||
	    !cJSON_AddStringToObject(f, "slot_index_secondary", sec) ||
	    !cJSON_AddStringToObject(f, "version_MCUBOOT",
				     fgw_image_version_format(&img->version, ver)) ||
	    !cJSON_AddNumberToObject(f, "size", (double) in->len) ||
	    !cJSON_AddStringToObject(f, "file", in->file) ||
	    !cJSON_AddNumberToObject(f, "modtime", (double) now)) {
		cJSON_Delete(f);
		return NULL;
	}
	return f;
}

static int dir_of(const char *path, char *buf, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return snprintf(buf, size, ".") < (int) size ? 0 : -ENAMETOOLONG;
	if ((size_t) (slash - path) + 2 > size)
		return -ENAMETOOLONG;
	if (slash == path)
		slash++;
	memcpy(buf, path, (size_t) (slash - path));
	buf[slash - path] = '\0';
	return 0;
}

/* The inputs are checked here, before any file exists, so a bad call leaves nothing behind. */
static int ncs_manifest_text(const char *name, const struct fgw_bundle_input *in, size_t n_in,
			     int64_t now, char **ret)
{
	cJSON *root = NULL, *files;
	int r = 0;

	if (n_in == 0 || n_in > FGW_BUNDLE_MAX_IMAGES)
		return -EINVAL;
	root = cJSON_CreateObject();
	if (!root || !cJSON_AddNumberToObject(root, "format-version", 1) ||
	    !cJSON_AddNumberToObject(root, "time", (double) now) ||
	    (name && !cJSON_AddStringToObject(root, "name", name)) ||
	    !(files = cJSON_AddArrayToObject(root, "files"))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n_in; i++) {
		struct fgw_mcuboot_image img;
		cJSON *f;

		if (!in[i].file || !entry_name_safe(in[i].file, strlen(in[i].file)) ||
		    strcmp(in[i].file, NCS_MANIFEST_NAME) == 0 || in[i].index < 0 ||
		    in[i].index >= FGW_BUNDLE_MAX_IMAGES) {
			r = -EINVAL;
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (in[j].index == in[i].index || strcmp(in[j].file, in[i].file) == 0) {
				r = -EINVAL;
				goto out;
			}
		r = fgw_mcuboot_parse(in[i].data, in[i].len, &img, NULL);
		if (r < 0)
			goto out;
		f = ncs_file_json(&in[i], &img, now);
		if (!f) {
			r = -ENOMEM;
			goto out;
		}
		cJSON_AddItemToArray(files, f);
	}
	*ret = cJSON_Print(root);
	if (!*ret)
		r = -ENOMEM;
out:
	cJSON_Delete(root);
	return r < 0 ? r : 0;
}

/* The buffers are borrowed, not copied: they must outlive zip_close(). */
static int add_zip_entries(zip_t *za, const char *mtext, const struct fgw_bundle_input *in,
			   size_t n_in)
{
	zip_source_t *src = zip_source_buffer(za, mtext, strlen(mtext), 0);

	if (!src || zip_file_add(za, NCS_MANIFEST_NAME, src, ZIP_FL_ENC_UTF_8) < 0) {
		zip_source_free(src);
		return -EIO;
	}
	for (size_t i = 0; i < n_in; i++) {
		zip_int64_t idx;

		src = zip_source_buffer(za, in[i].data, in[i].len, 0);
		if (!src)
			return -ENOMEM;
		idx = zip_file_add(za, in[i].file, src, ZIP_FL_ENC_UTF_8);
		if (idx < 0) {
			zip_source_free(src);
			return -EIO;
		}
		(void) zip_set_file_compression(za, (zip_uint64_t) idx, ZIP_CM_DEFLATE, 0);
	}
	return 0;
}

FGW_EXPORT int fgw_bundle_write(const char *path, const char *name,
				const struct fgw_bundle_input *in, size_t n_in)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	_cleanup_free_ char *mtext = NULL;
	zip_t *za = NULL;
	int zerr, fd, r;

	r = ncs_manifest_text(name, in, n_in, (int64_t) time(NULL), &mtext);
	if (r < 0)
		return r;
	r = dir_of(path, dir, sizeof(dir));
	if (r < 0)
		return r;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int) sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	close(fd);
	za = zip_open(tmp, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
	if (!za) {
		r = -EIO;
		goto out_unlink;
	}
	r = add_zip_entries(za, mtext, in, n_in);
	if (r < 0)
		goto out_discard;
	if (zip_close(za) < 0) {
		r = -EIO;
		goto out_discard;
	}
	r = fgw_fsync_path(tmp);
	if (r < 0)
		goto out_unlink;
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto out_unlink;
	}
	return fgw_fsync_path(dir);

out_discard:
	zip_discard(za);
out_unlink:
	(void) unlink(tmp);
	return r;
}
