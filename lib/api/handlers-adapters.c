/*
 * GET /v1/adapters: per BLE adapter, its state, links, the fleet's concurrent-upload limit,
 * the aggregate goodput and its share of the adapter's ceiling. The ceiling is an estimate
 * (BlueZ does not tell the PHY, interval or data length of a link): the configured
 * [ble] ceiling_bytes_per_s, said so in the answer.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "util.h"

static cJSON *adapter_json(const struct fgw_api_adapter *a)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;

	ok = ok && cJSON_AddStringToObject(o, "name", a->name);
	ok = ok && cJSON_AddStringToObject(o, "state", a->state ? a->state : "absent");
	ok = ok && cJSON_AddNumberToObject(o, "links", a->links);
	ok = ok && cJSON_AddNumberToObject(o, "ready_links", a->ready);
	ok = ok && cJSON_AddNumberToObject(o, "upload_limit", a->upload_limit);
	ok = ok && cJSON_AddNumberToObject(o, "goodput_bytes_per_second",
					   isfinite(a->goodput_bps) ? a->goodput_bps : 0);
	ok = ok && cJSON_AddNumberToObject(o, "ceiling_bytes_per_second", a->ceiling_bps);
	ok = ok && cJSON_AddStringToObject(o, "ceiling_source", "configured");
	ok =
	    ok && cJSON_AddNumberToObject(o, "ceiling_share",
					  a->ceiling_bps > 0 ? a->goodput_bps / a->ceiling_bps : 0);
	ok = ok && cJSON_AddNumberToObject(o, "connect_busy_total", (double) a->busy);
	ok = ok && cJSON_AddNumberToObject(o, "links_refused_total", (double) a->refused);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

void api_handle_adapters(struct fgw_api *api, struct api_response *resp)
{
	struct fgw_api_adapter a[FGW_API_MAX_ADAPTERS];
	size_t n = 0;
	cJSON *root, *arr;
	char *text = NULL;
	bool ok;

	if (api->prov.adapters)
		n = api->prov.adapters(api->prov.user_data, a, ARRAY_SIZE(a));
	if (n > ARRAY_SIZE(a))
		n = ARRAY_SIZE(a);
	root = cJSON_CreateObject();
	arr = root ? cJSON_AddArrayToObject(root, "adapters") : NULL;
	ok = arr != NULL;
	for (size_t i = 0; ok && i < n; i++) {
		cJSON *o = adapter_json(&a[i]);
		ok = o && cJSON_AddItemToArray(arr, o);
	}
	if (ok)
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text) {
		api_error(resp, 500, "internal", "out of memory");
		return;
	}
	*resp = (struct api_response){
	    .status = 200,
	    .body = text,
	    .len = strlen(text),
	    .content_type = "application/json",
	};
}
