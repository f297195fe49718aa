/*
 * From a verified bundle in the cache to what the fleet uploads: each MCUboot image written
 * once as its own file beside the bundle (so uploads map it, never hold it per device), with
 * the file's SHA-256 (the upload's `sha`) and the SHA256 TLV and version as image state will
 * show them. Blocking file work: run it in the libuv thread pool.
 */
#pragma once

#include "fleet.h"

struct fgw_key;

/*
 * Fills @ret->image[] from the bundle at @bundle_path (the id, policy and targets are the
 * caller's). Images go to "<cache_dir>/<bundle_sha256>.image<N>.bin" (kept if already there
 * and intact). -errno, or -EBADMSG when the bundle does not open or verify.
 */
int fgw_release_images_prepare(const char *bundle_path, const char *bundle_sha256_hex,
			       const char *cache_dir, const struct fgw_key *mcuboot_key,
			       struct fgw_fleet_release *ret);

/* Version as Zephyr's image state prints it: "1.2.3", or "1.2.3.4" when build != 0. */
void fgw_release_version_string(uint8_t major, uint8_t minor, uint16_t revision, uint32_t build,
				char *buf, size_t size);
