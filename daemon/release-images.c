#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bundle.h"
#include "release-images.h"
#include "util.h"

void fgw_release_version_string(uint8_t major, uint8_t minor, uint16_t revision, uint32_t build,
				char *buf, size_t size)
{
	if (build)
		snprintf(buf, size, "%u.%u.%u.%u", major, minor, revision, build);
	else
		snprintf(buf, size, "%u.%u.%u", major, minor, revision);
}

int fgw_release_images_prepare(const char *bundle_path, const char *bundle_sha256_hex,
			       const char *cache_dir, const struct fgw_key *mcuboot_key,
			       struct fgw_fleet_release *ret)
{
	struct fgw_bundle *b = NULL;
	struct fgw_reject why = {0};
	int r;

	r = fgw_bundle_open(bundle_path, mcuboot_key, &b, &why);
	if (r < 0)
		return r;
	for (int i = 0; i < 2; i++) {
		const struct fgw_bundle_image *bi = fgw_bundle_find_image(b, i);
		struct fgw_fleet_image *fi = &ret->image[i];
		uint64_t size = 0;

		*fi = (struct fgw_fleet_image){0};
		if (!bi)
			continue;
		snprintf(fi->path, sizeof(fi->path), "%s/%s.image%d.bin", cache_dir,
			 bundle_sha256_hex, i);
		/* Written from the verified bytes; a file already there must hash the same. */
		r = fgw_write_file_atomic(fi->path, bi->data, bi->len, 0640);
		if (r < 0)
			break;
		r = fgw_sha256_file(fi->path, FGW_MCUBOOT_MAX_IMAGE, fi->file_sha, &size);
		if (r < 0)
			break;
		if (size != bi->len) {
			r = -EIO;
			break;
		}
		fi->present = true;
		fi->size = size;
		memcpy(fi->hash, bi->img.hash, 32);
		fgw_release_version_string(bi->img.version.major, bi->img.version.minor,
					   bi->img.version.revision, bi->img.version.build,
					   fi->version, sizeof(fi->version));
	}
	fgw_bundle_free(b);
	if (r >= 0 && !ret->image[0].present)
		r = -EBADMSG; /* the app core image is what every release carries */
	return r < 0 ? r : 0;
}
