/*
 * Routing, authentication and error bodies: everything about a request that does not depend
 * on what is asked for. Independent of libmicrohttpd (server.c adapts), so the fuzzer and the
 * unit tests drive exactly the code the daemon runs.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "util.h"

struct route_def {
	const char *pattern; /* "{address}" matches one non-empty path segment */
	const char *method;
	enum api_route route;
	bool mutation; /* needs the bearer token */
};

static const struct route_def routes[] = {
    {"/v1/health", "GET", API_ROUTE_HEALTH, false},
    {"/v1/adapters", "GET", API_ROUTE_ADAPTERS, false},
    {"/v1/devices", "GET", API_ROUTE_DEVICES, false},
    {"/v1/devices/import", "POST", API_ROUTE_DEVICES_IMPORT, true},
    {"/v1/devices/{address}", "GET", API_ROUTE_DEVICE, false},
    {"/v1/devices/{address}", "DELETE", API_ROUTE_DEVICE_FORGET, true},
    {"/v1/devices/{address}/retry", "POST", API_ROUTE_DEVICE_RETRY, true},
    {"/v1/devices/{address}/enroll", "POST", API_ROUTE_DEVICE_ENROLL, true},
    {"/v1/releases", "GET", API_ROUTE_RELEASES, false},
    {"/v1/rollout", "GET", API_ROUTE_ROLLOUT, false},
    {"/v1/rollout/pause", "POST", API_ROUTE_PAUSE, true},
    {"/v1/rollout/resume", "POST", API_ROUTE_RESUME, true},
    {"/metrics", "GET", API_ROUTE_METRICS, false},
    {"/v1/events", "GET", API_ROUTE_EVENTS, false},
    {"/", "GET", API_ROUTE_PAGE, false},
    {"/ui/status.js", "GET", API_ROUTE_PAGE_JS, false},
    {"/ui/status.css", "GET", API_ROUTE_PAGE_CSS, false},
    {"/ui/icon.svg", "GET", API_ROUTE_PAGE_ICON, false},
};

static const char ADDRESS_PARAM[] = "{address}";

static bool pattern_match(const char *pattern, const char *path, const char **ret_addr,
			  size_t *ret_len)
{
	const char *p = pattern, *s = path;

	while (*p) {
		if (strncmp(p, ADDRESS_PARAM, sizeof(ADDRESS_PARAM) - 1) == 0) {
			const char *start = s;
			while (*s && *s != '/')
				s++;
			if (s == start)
				return false;
			*ret_addr = start;
			*ret_len = (size_t) (s - start);
			p += sizeof(ADDRESS_PARAM) - 1;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	return *s == '\0';
}

void api_response_done(struct api_response *resp)
{
	free(resp->body);
	*resp = (struct api_response){0};
}

void api_error(struct api_response *resp, unsigned status, const char *code, const char *fmt, ...)
{
	char msg[512];
	cJSON *o;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	free(resp->body);
	*resp = (struct api_response){.status = status, .content_type = "application/json"};
	o = cJSON_CreateObject();
	if (o && cJSON_AddStringToObject(o, "error", code) &&
	    cJSON_AddStringToObject(o, "message", msg))
		resp->body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!resp->body) {
		/* Out of memory while reporting: a fixed body still tells the client what it is. */
		resp->status = 500;
		resp->body = strdup("{\"error\":\"internal\",\"message\":\"out of memory\"}");
	}
	resp->len = resp->body ? strlen(resp->body) : 0;
}

/* Echoing client text into messages: bounded, so an error body stays small. */
static int echo_len(size_t len)
{
	return (int) FGW_MIN(len, (size_t) 80);
}

int api_route_find(const char *method, const char *path, enum api_route *ret_route,
		   const char **ret_addr, size_t *ret_addr_len, struct api_response *ret_error)
{
	const char *allow = NULL;
	bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		const char *addr = NULL;
		size_t addr_len = 0;

		if (!pattern_match(routes[i].pattern, path, &addr, &addr_len))
			continue;
		if (strcmp(routes[i].method, method) != 0 &&
		    !(is_get && strcmp(routes[i].method, "GET") == 0)) {
			allow =
			    strcmp(routes[i].method, "GET") == 0 ? "GET, HEAD" : routes[i].method;
			continue;
		}
		if (addr && !api_address_valid(addr, addr_len)) {
			api_error(ret_error, 400, "bad_request", "malformed device address '%.*s'",
				  echo_len(addr_len), addr);
			return -EINVAL;
		}
		*ret_route = routes[i].route;
		*ret_addr = addr;
		*ret_addr_len = addr_len;
		return 0;
	}
	if (allow) {
		api_error(ret_error, 405, "method_not_allowed", "%.16s is not allowed on '%.*s'",
			  method, echo_len(strlen(path)), path);
		ret_error->allow = allow;
		return -EPERM;
	}
	api_error(ret_error, 404, "not_found", "no such resource '%.*s'", echo_len(strlen(path)),
		  path);
	return -ENOENT;
}

bool api_token_equal(const char *want, size_t want_len, const char *got, size_t got_len)
{
	unsigned char diff = 0;

	/*
	 * Time depends on the length of the expected token only: every byte of it is compared,
	 * a shorter or longer presented token just compares against zeros.
	 */
	for (size_t i = 0; i < want_len; i++)
		diff |= (unsigned char) want[i] ^ (unsigned char) (i < got_len ? got[i] : 0);
	return (diff | (unsigned char) (want_len != got_len)) == 0;
}

static bool is_mutation(enum api_route route)
{
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (routes[i].route == route)
			return routes[i].mutation;
	return true;
}

static int check_auth(struct fgw_api *api, const struct api_request *req, struct api_response *resp)
{
	static const char scheme[] = "Bearer ";
	const char *why, *tok;

	if (!api->token)
		why = "no API token is configured on the gateway";
	else if (!req->authorization)
		why = "missing Authorization header";
	else if (strncasecmp(req->authorization, scheme, sizeof(scheme) - 1) != 0)
		why = "Authorization is not a Bearer token";
	else {
		tok = req->authorization + sizeof(scheme) - 1;
		while (*tok == ' ')
			tok++;
		if (api_token_equal(api->token, api->token_len, tok, strlen(tok)))
			return 0;
		why = "wrong token";
	}
	api->stats.unauthorized++;
	fgw_notice("event: api-unauthorized, method: %s, path: '%.*s', peer: %s, reason: %s",
		   req->method, echo_len(strlen(req->path)), req->path, req->peer ? req->peer : "?",
		   why);
	api_error(resp, 401, "unauthorized", "%s", why);
	return -EACCES;
}

/* Splits "name:port", "[v6]:port", "v4" into the name part; false if the port is not digits. */
static bool host_name_part(const char *host, char *buf, size_t size, bool *ret_v6)
{
	const char *end, *port = NULL;
	size_t len;

	*ret_v6 = host[0] == '[';
	if (*ret_v6) {
		end = strchr(host, ']');
		if (!end)
			return false;
		host++;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return false;
	} else {
		end = strchr(host, ':');
		if (end)
			port = end + 1;
		else
			end = host + strlen(host);
	}
	if (port) {
		size_t n = strlen(port);
		if (n == 0 || n > 5 || strspn(port, "0123456789") != n)
			return false;
	}
	len = (size_t) (end - host);
	if (len > 0 && host[len - 1] == '.' && !*ret_v6)
		len--; /* "gw.example." is "gw.example" */
	if (len == 0 || len >= size)
		return false;
	memcpy(buf, host, len);
	buf[len] = '\0';
	return true;
}

bool api_host_allowed(const char *allowed, const char *host)
{
	char name[256];
	unsigned char addr[sizeof(struct in6_addr)];
	bool v6;

	if (!host)
		return true;
	if (!host_name_part(host, name, sizeof(name), &v6))
		return false;
	if (v6)
		return inet_pton(AF_INET6, name, addr) == 1;
	if (inet_pton(AF_INET, name, addr) == 1 || strcasecmp(name, "localhost") == 0)
		return true;
	for (const char *p = allowed; p && *p;) {
		size_t n;

		p += strspn(p, " \t");
		n = strcspn(p, " \t");
		if (n && n == strlen(name) && strncasecmp(p, name, n) == 0)
			return true;
		p += n;
	}
	return false;
}

int api_request_head(struct fgw_api *api, const struct api_request *req, enum api_route *ret_route,
		     struct api_response *resp)
{
	const char *addr;
	size_t addr_len;
	int r;

	/* A page on another site whose name was re-pointed at this gateway (DNS rebinding)
	 * reaches us with its own name in Host: answer only to names that are ours. */
	if (!api_host_allowed(api->allowed_hosts, req->host)) {
		api->stats.misdirected++;
		api_error(resp, 421, "misdirected_request",
			  "this gateway does not answer to that Host name; add it to [api] "
			  "allowed_hosts if it is the gateway's");
		return -EPERM;
	}
	if (strlen(req->path) > API_MAX_URL) {
		api_error(resp, 414, "uri_too_long", "request path longer than %d bytes",
			  API_MAX_URL);
		return -E2BIG;
	}
	r = api_route_find(req->method, req->path, ret_route, &addr, &addr_len, resp);
	if (r < 0)
		return r;
	if (is_mutation(*ret_route)) {
		r = check_auth(api, req, resp);
		if (r < 0)
			return r;
	}
	return 0;
}

static char *address_dup(const char *path)
{
	/* "/v1/devices/<address>[/retry]": validated by api_route_find() already. */
	const char *start = path + strlen("/v1/devices/");
	const char *end = strchr(start, '/');

	return strndup(start, end ? (size_t) (end - start) : strlen(start));
}

void api_request_run(struct fgw_api *api, enum api_route route, const struct api_request *req,
		     struct api_response *resp)
{
	_cleanup_free_ char *addr = NULL;

	*resp = (struct api_response){0};
	if (route == API_ROUTE_DEVICE || route == API_ROUTE_DEVICE_RETRY ||
	    route == API_ROUTE_DEVICE_ENROLL || route == API_ROUTE_DEVICE_FORGET) {
		addr = address_dup(req->path);
		if (!addr) {
			api_error(resp, 500, "internal", "out of memory");
			return;
		}
	}
	switch (route) {
	case API_ROUTE_HEALTH:
		api_handle_health(api, req, resp);
		break;
	case API_ROUTE_ADAPTERS:
		api_handle_adapters(api, resp);
		break;
	case API_ROUTE_DEVICES:
		api_handle_devices(api, req, resp);
		break;
	case API_ROUTE_DEVICE:
		api_handle_device(api, addr, resp);
		break;
	case API_ROUTE_DEVICE_RETRY:
		api_handle_retry(api, addr, req, resp);
		break;
	case API_ROUTE_DEVICE_ENROLL:
		api_handle_enroll(api, addr, req, resp);
		break;
	case API_ROUTE_DEVICE_FORGET:
		api_handle_forget(api, addr, req, resp);
		break;
	case API_ROUTE_DEVICES_IMPORT:
		api_handle_import(api, req, resp);
		break;
	case API_ROUTE_RELEASES:
		api_handle_releases(api, resp);
		break;
	case API_ROUTE_ROLLOUT:
		api_handle_rollout(api, resp);
		break;
	case API_ROUTE_PAUSE:
		api_handle_pause(api, req, resp);
		break;
	case API_ROUTE_RESUME:
		api_handle_resume(api, req, resp);
		break;
	case API_ROUTE_METRICS:
		api_handle_metrics(api, resp);
		break;
	case API_ROUTE_EVENTS:
		api_handle_events(api, req, resp);
		break;
	case API_ROUTE_PAGE:
		api_handle_page(api, resp);
		break;
	case API_ROUTE_PAGE_JS:
	case API_ROUTE_PAGE_CSS:
	case API_ROUTE_PAGE_ICON:
		api_handle_page_file(route, resp);
		break;
	case _API_ROUTE_MAX:
	case _API_ROUTE_INVALID:
		api_error(resp, 500, "internal", "unknown route");
		break;
	}
	if (!resp->body)
		api_error(resp, 500, "internal", "out of memory");
}

void fgw_api__handle(struct fgw_api *api, const struct api_request *req, struct api_response *resp)
{
	enum api_route route;

	*resp = (struct api_response){0};
	if (api_request_head(api, req, &route, resp) < 0)
		goto out;
	if (req->body_len > API_MAX_BODY) {
		api->stats.rejected_oversize++;
		api_error(resp, 413, "payload_too_large", "request body larger than %d bytes",
			  API_MAX_BODY);
		goto out;
	}
	api_request_run(api, route, req, resp);
out:
	api_count(api, resp);
}

void api_count(struct fgw_api *api, const struct api_response *resp)
{
	unsigned cls = resp->status / 100;

	if (cls >= 1 && cls <= 5)
		api->stats.requests[cls]++;
	/* Causes of 5xx are logged where they are known; this is the summary. */
	if (resp->status >= 500)
		fgw_debug("api: answered %u", resp->status);
}

/* ---- cursors and addresses ---- */

bool api_address_valid(const char *s, size_t len)
{
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char) s[i];
		if (!isalnum(c) && c != ':' && c != '.' && c != '-' && c != '_' && c != '[' &&
		    c != ']')
			return false;
	}
	return true;
}

/*
 * A cursor is "d" + hex of the last address shown: opaque to clients, checkable here, and
 * no state on the gateway, so it survives restarts and concurrent changes.
 */
int api_cursor_encode(const char *address, char **ret)
{
	size_t len = strlen(address);
	char *c = malloc(2 * len + 2);

	if (!c)
		return -ENOMEM;
	c[0] = 'd';
	fgw_hex_encode((const uint8_t *) address, len, c + 1);
	*ret = c;
	return 0;
}

int api_cursor_decode(const char *cursor, char **ret_address)
{
	size_t hex_len = strlen(cursor);
	char *addr;

	if (cursor[0] != 'd' || hex_len < 3 || (hex_len - 1) % 2 != 0 || hex_len - 1 > 2 * 64)
		return -EINVAL;
	addr = calloc(1, (hex_len - 1) / 2 + 1);
	if (!addr)
		return -ENOMEM;
	if (fgw_hex_decode(cursor + 1, (uint8_t *) addr, (hex_len - 1) / 2) < 0 ||
	    !api_address_valid(addr, strlen(addr)) || strlen(addr) != (hex_len - 1) / 2) {
		free(addr);
		return -EINVAL;
	}
	*ret_address = addr;
	return 0;
}
