/*
 * The images of a release (app core, net core) as the fleet prepared them from its bundle:
 * what a device will report after the update. Only the fleet knows them (the database keeps
 * the bundle), so they come through the provider, for the release it runs.
 */
#include "handlers.h"

void api_release_images_json(struct fgw_api *api, struct api_jw *w, const char *release_id)
{
	struct fgw_api_image img[2] = {0};

	if (!api || !api->prov.release_images ||
	    api->prov.release_images(api->prov.user_data, release_id, img) < 0)
		return;
	api_jw_open(w, "images", '[');
	for (int i = 0; i < 2; i++) {
		if (!img[i].present)
			continue;
		api_jw_open(w, NULL, '{');
		api_jw_int(w, "image", i);
		api_jw_str(w, "core", i == 0 ? "app" : "net");
		api_jw_str(w, "version", img[i].version);
		api_jw_int(w, "size", (int64_t) img[i].size);
		api_jw_str(w, "hash", img[i].hash);
		api_jw_close(w, '}');
	}
	api_jw_close(w, ']');
}
