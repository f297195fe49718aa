/*
 * Enrollment through the API: POST /v1/devices/{address}/enroll (JSON), POST
 * /v1/devices/import (the CSV of handlers-devices-csv.c, all or nothing) and DELETE
 * /v1/devices/{address}. Each needs the token (router.c) and goes through the provider, so
 * the running fleet takes it at once. A passkey is accepted here and never sent back or
 * logged: it goes to the store's device_passkeys table, which no read of the API touches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "util.h"

static void reply_object(struct api_response *resp, unsigned status, cJSON *root)
{
	char *text = root ? cJSON_PrintUnformatted(root) : NULL;

	cJSON_Delete(root);
	if (!text) {
		api_error(resp, 500, "internal", "out of memory");
		return;
	}
	*resp = (struct api_response){.status = status,
				      .body = text,
				      .len = strlen(text),
				      .content_type = "application/json"};
}

/* 0 with @addr normalized, or -EINVAL after answering 400. */
static int device_address(const char *address, char addr[40], struct api_response *resp)
{
	if (fgw_address_normalize(address, addr) == 0)
		return 0;
	api_error(resp, 400, "bad_request",
		  "a device address is AA:BB:CC:DD:EE:FF (BLE) or udp:HOST:PORT");
	return -EINVAL;
}

static void reply_fleet_off(struct api_response *resp, const char *what)
{
	api_error(resp, 503, "unavailable", "%s is not available: the fleet is not running", what);
}

/* {"address": @addr, @key: true}: one device's change was done. */
static void reply_device_changed(struct api_response *resp, const char *addr, const char *key)
{
	cJSON *root = cJSON_CreateObject();

	if (root && (!cJSON_AddStringToObject(root, "address", addr) ||
		     !cJSON_AddBoolToObject(root, key, true))) {
		cJSON_Delete(root);
		root = NULL;
	}
	reply_object(resp, 200, root);
}

static void reply_enroll_error(struct api_response *resp, int r, const char *what)
{
	if (r == -EINVAL)
		api_error(resp, 400, "bad_request", "%s: refused by the fleet", what);
	else if (r == -ENOENT)
		api_error(resp, 404, "not_found", "%s: no such device", what);
	else if (r == -EBUSY)
		api_error(resp, 409, "conflict",
			  "%s: its update is in progress; try again when it "
			  "has finished",
			  what);
	else
		api_error(resp, r == -EBUSY || r == -EROFS ? 503 : 500, "internal", "%s failed: %s",
			  what, strerror(-r));
}

/* A text field of the enroll body: absent, or a clean string under 64 bytes. */
static int body_text(cJSON *body, const char *key, char *buf, size_t size,
		     struct api_response *resp)
{
	cJSON *it = cJSON_GetObjectItemCaseSensitive(body, key);

	buf[0] = '\0';
	if (!it || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsString(it) || strlen(it->valuestring) >= size ||
	    !fgw_text_is_clean(it->valuestring, strlen(it->valuestring))) {
		api_error(resp, 400, "bad_request",
			  "'%s' must be a string of at most %zu bytes without control characters",
			  key, size - 1);
		return -EINVAL;
	}
	snprintf(buf, size, "%s", it->valuestring);
	return 0;
}

static int body_passkey(cJSON *body, struct fgw_api_enrollment *e, struct api_response *resp)
{
	cJSON *it = cJSON_GetObjectItemCaseSensitive(body, "passkey");
	const char *s = cJSON_IsString(it) ? it->valuestring : NULL;

	if (!it || cJSON_IsNull(it))
		return 0;
	e->passkey = 0;
	for (int i = 0; s && i < 6; i++) {
		if (s[i] < '0' || s[i] > '9') {
			s = NULL;
			break;
		}
		e->passkey = e->passkey * 10 + (uint32_t) (s[i] - '0');
	}
	if (!s || strlen(s) != 6) {
		e->passkey = 0;
		api_error(resp, 400, "bad_request", "'passkey' must be a string of six digits");
		return -EINVAL;
	}
	e->has_passkey = true;
	return 0;
}

static int parse_enroll_body(const struct api_request *req, struct fgw_api_enrollment *e,
			     char text[3][64], struct api_response *resp)
{
	static const char *const keys[] = {"passkey", "board", "group", "label"};
	cJSON *body = NULL, *it;
	int r = 0;

	if (req->body && req->body_len > 0)
		body = cJSON_ParseWithLength(req->body, req->body_len);
	if (req->body && req->body_len > 0 && !cJSON_IsObject(body)) {
		cJSON_Delete(body);
		api_error(resp, 400, "bad_request", "request body must be a JSON object");
		return -EINVAL;
	}
	cJSON_ArrayForEach(it, body)
	{
		bool known = false;
		for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
			known |= strcmp(keys[i], it->string) == 0;
		if (!known) {
			api_error(resp, 400, "bad_request", "unknown field '%.64s'", it->string);
			r = -EINVAL;
			break;
		}
	}
	if (r == 0)
		r = body_passkey(body, e, resp);
	if (r == 0)
		r = body_text(body, "board", text[0], 64, resp);
	if (r == 0)
		r = body_text(body, "group", text[1], 64, resp);
	if (r == 0)
		r = body_text(body, "label", text[2], 64, resp);
	/* the body held the passkey: wipe cJSON's copy before it goes back to the heap */
	it = cJSON_GetObjectItemCaseSensitive(body, "passkey");
	if (cJSON_IsString(it))
		explicit_bzero(it->valuestring, strlen(it->valuestring));
	cJSON_Delete(body);
	e->board = text[0];
	e->group = text[1];
	e->label = text[2];
	return r;
}

void api_handle_enroll(struct fgw_api *api, const char *address, const struct api_request *req,
		       struct api_response *resp)
{
	struct fgw_api_enrollment e = {0};
	char text[3][64], addr[40];
	int r;

	if (device_address(address, addr, resp) < 0)
		return;
	e.address = addr;
	if (parse_enroll_body(req, &e, text, resp) < 0)
		return;
	if (!api->prov.enroll) {
		reply_fleet_off(resp, "enrollment");
		return;
	}
	r = api->prov.enroll(api->prov.user_data, &e, 1);
	explicit_bzero(&e.passkey, sizeof(e.passkey));
	fgw_notice("event: api-enroll, device: %s, peer: %s, result: %s", addr,
		   req->peer ? req->peer : "?", r == 0 ? "ok" : strerror(-r));
	if (r < 0) {
		reply_enroll_error(resp, r, "enroll");
		return;
	}
	reply_device_changed(resp, addr, "enrolled");
}

static void reply_csv_errors(struct api_response *resp, const struct api_csv_result *res)
{
	char msg[96];
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
	bool ok = root && arr;

	snprintf(msg, sizeof(msg), "%zu bad line(s); nothing was enrolled", res->total_errors);
	for (size_t i = 0; ok && i < res->n_errors; i++)
		ok = cJSON_AddItemToArray(arr, cJSON_CreateString(res->errors[i]));
	if (ok)
		ok = cJSON_AddStringToObject(root, "error", "bad_request") &&
		     cJSON_AddStringToObject(root, "message", msg) &&
		     cJSON_AddNumberToObject(root, "bad_lines", (double) res->total_errors);
	if (ok)
		ok = cJSON_AddItemToObject(root, "errors", arr);
	else
		cJSON_Delete(arr);
	if (!ok) {
		cJSON_Delete(root);
		root = NULL;
	}
	reply_object(resp, 400, root);
}

void api_handle_import(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp)
{
	struct api_csv_result res;
	struct fgw_api_enrollment *e;
	cJSON *root;
	int r;

	r = api_enroll_csv_parse(req->body ? req->body : "", req->body ? req->body_len : 0, &res);
	if (r == -ENOMEM) {
		api_error(resp, 500, "internal", "out of memory");
		return;
	}
	if (r < 0) {
		reply_csv_errors(resp, &res);
		api_csv_result_done(&res);
		return;
	}
	if (!api->prov.enroll) {
		api_csv_result_done(&res);
		reply_fleet_off(resp, "enrollment");
		return;
	}
	e = calloc(res.n, sizeof(*e));
	if (!e) {
		api_csv_result_done(&res);
		api_error(resp, 500, "internal", "out of memory");
		return;
	}
	for (size_t i = 0; i < res.n; i++)
		e[i] = (struct fgw_api_enrollment){
		    .address = res.rows[i].address,
		    .board = res.rows[i].board,
		    .group = res.rows[i].group,
		    .label = res.rows[i].label,
		    .has_passkey = res.rows[i].has_passkey,
		    .passkey = res.rows[i].passkey,
		};
	r = api->prov.enroll(api->prov.user_data, e, res.n);
	explicit_bzero(e, res.n * sizeof(*e));
	free(e);
	fgw_notice("event: api-import, devices: %zu, peer: %s, result: %s", res.n,
		   req->peer ? req->peer : "?", r == 0 ? "ok" : strerror(-r));
	root = r == 0 ? cJSON_CreateObject() : NULL;
	if (root && !cJSON_AddNumberToObject(root, "enrolled", (double) res.n)) {
		cJSON_Delete(root);
		root = NULL;
	}
	api_csv_result_done(&res);
	if (r < 0)
		reply_enroll_error(resp, r, "import");
	else
		reply_object(resp, 200, root);
}

void api_handle_forget(struct fgw_api *api, const char *address, const struct api_request *req,
		       struct api_response *resp)
{
	char addr[40];
	int r;

	if (device_address(address, addr, resp) < 0)
		return;
	if (!api->prov.forget) {
		reply_fleet_off(resp, "forget");
		return;
	}
	r = api->prov.forget(api->prov.user_data, addr);
	fgw_notice("event: api-forget, device: %s, peer: %s, result: %s", addr,
		   req->peer ? req->peer : "?", r == 0 ? "ok" : strerror(-r));
	if (r < 0) {
		reply_enroll_error(resp, r, "forget");
		return;
	}
	reply_device_changed(resp, addr, "forgotten");
}
