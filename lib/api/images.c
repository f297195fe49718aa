/*
 * The images of a release (app core, net core) as the fleet prepared them from its bundle:
 * what a device will report after the update. Only the fleet knows them (the database keeps
 * the bundle), so they come through the provider, for the release it runs.
 */
#include <errno.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "api-private.h"

int api_release_images_json(struct fgw_api *api, cJSON *o, const char *release_id)
{
	struct fgw_api_image img[2] = {0};
	cJSON *arr;

	if (!api || !api->prov.release_images ||
	    api->prov.release_images(api->prov.user_data, release_id, img) < 0)
		return 0;
	arr = cJSON_AddArrayToObject(o, "images");
	if (!arr)
		return -ENOMEM;
	for (int i = 0; i < 2; i++) {
		cJSON *e;
		char size[24];

		if (!img[i].present)
			continue;
		e = cJSON_CreateObject();
		if (!e)
			return -ENOMEM;
		cJSON_AddItemToArray(arr, e);
		snprintf(size, sizeof(size), "%llu", (unsigned long long) img[i].size);
		if (!cJSON_AddNumberToObject(e, "image", i) ||
		    !cJSON_AddStringToObject(e, "core", i == 0 ? "app" : "net") ||
		    !cJSON_AddStringToObject(e, "version", img[i].version) ||
		    !cJSON_AddItemToObject(e, "size", cJSON_CreateRaw(size)) ||
		    !cJSON_AddStringToObject(e, "hash", img[i].hash))
			return -ENOMEM;
	}
	return 0;
}
