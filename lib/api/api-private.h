/*
 * For the api part's own files, its unit tests and its fuzzer: the request and response as
 * the router sees them, independent of libmicrohttpd, so routing, auth, limits and every
 * handler can be driven without a socket.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"

struct cJSON;

/* Limits on what a client may send; bigger requests get 413/414/431 with a JSON body. */
#define API_MAX_BODY (64 * 1024)
#define API_MAX_URL 2048
#define API_MAX_HEADERS 64
#define API_DEFAULT_LIMIT 100
#define API_MAX_LIMIT 1000
#define API_DEVICE_EVENTS 20
#define API_ROLLOUT_FAILURES 20
#define API_EVENTS_DEFAULT 50
#define API_EVENTS_MAX 1000

struct api_request {
	const char *method;
	const char *path; /* decoded, without the query string */
	/* Query argument @key (decoded) or NULL; @ctx is arg_ctx. */
	const char *(*arg)(void *ctx, const char *key);
	void *arg_ctx;
	const char *authorization; /* header value or NULL */
	const char *host;	   /* Host header value or NULL (HTTP/1.0) */
	const char *body;	   /* NULL when there was none */
	size_t body_len;
	const char *peer; /* for logs */
};

struct api_response {
	unsigned status;
	char *body; /* malloc'd, owned by the response */
	size_t len;
	const char *content_type;
	const char *allow; /* for 405 */
	const char *csp;   /* Content-Security-Policy, for the status page and its files */
};

enum api_route {
	API_ROUTE_HEALTH,
	API_ROUTE_ADAPTERS,
	API_ROUTE_DEVICES,
	API_ROUTE_DEVICE,
	API_ROUTE_DEVICE_RETRY,
	API_ROUTE_DEVICE_ENROLL,
	API_ROUTE_DEVICE_FORGET,
	API_ROUTE_DEVICES_IMPORT,
	API_ROUTE_RELEASES,
	API_ROUTE_ROLLOUT,
	API_ROUTE_PAUSE,
	API_ROUTE_RESUME,
	API_ROUTE_METRICS,
	API_ROUTE_EVENTS,
	API_ROUTE_PAGE,
	API_ROUTE_PAGE_JS,
	API_ROUTE_PAGE_CSS,
	API_ROUTE_PAGE_ICON,
	_API_ROUTE_MAX,
	_API_ROUTE_INVALID = -EINVAL,
};

/* Counters the API keeps about itself, shown in /metrics. */
struct api_stats {
	uint64_t requests[6]; /* by status class: index 1..5 = 1xx..5xx */
	uint64_t unauthorized;
	uint64_t rejected_oversize;
	uint64_t database_errors; /* store queries that failed while answering */
	uint64_t misdirected;	  /* Host header not ours (DNS rebinding) */
};

struct fgw_api {
	uv_loop_t *loop;
	struct fgw_store *store;
	struct fgw_api_provider prov;
	char *token;
	size_t token_len;
	char *allowed_hosts; /* space-separated names besides IP literals and localhost */
	struct api_stats stats;

	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;
	bool poll_open, timer_open;
	int n_handles; /* open uv handles; the memory goes when the last one closes */
	uint16_t port;
};

/* The route of @method @path, with the device address in @ret_addr (borrowed from @path). */
int api_route_find(const char *method, const char *path, enum api_route *ret_route,
		   const char **ret_addr, size_t *ret_addr_len, struct api_response *ret_error);
/*
 * What can be decided from the request line and headers alone: route, auth. 0 and the
 * route, or a negative errno with @resp holding the error response to send.
 */
int api_request_head(struct fgw_api *api, const struct api_request *req, enum api_route *ret_route,
		     struct api_response *resp);
/* Runs @route for the complete @req; @resp always holds a response afterwards. */
void api_request_run(struct fgw_api *api, enum api_route route, const struct api_request *req,
		     struct api_response *resp);
/* Both of the above; what the fuzzer and unit tests call. */
void fgw_api__handle(struct fgw_api *api, const struct api_request *req, struct api_response *resp);
/* Counts @resp in the API's own statistics. */
void api_count(struct fgw_api *api, const struct api_response *resp);

/* Fills @resp with {"error": @code, "message": ...}. */
void api_error(struct api_response *resp, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void api_response_done(struct api_response *resp);

/*
 * Whether a Host header names this gateway: an IP literal (with or without port), localhost,
 * or one of the names in @allowed (space-separated, case-insensitive). A request without Host
 * (HTTP/1.0) passes: browsers always send one, and a browser is what DNS rebinding abuses.
 */
bool api_host_allowed(const char *allowed, const char *host);

/* Constant-time (in the length of @want) comparison of a presented token. */
bool api_token_equal(const char *want, size_t want_len, const char *got, size_t got_len);

/* Cursor (opaque to clients) <-> last address of the previous page. */
int api_cursor_encode(const char *address, char **ret);
int api_cursor_decode(const char *cursor, char **ret_address);
/* Whether @s (length @len) looks like a device address: BLE MAC or udp:host:port. */
bool api_address_valid(const char *s, size_t len);

/* The enrollment CSV (handlers-devices-csv.c). */
#define API_CSV_MAX_ERRORS 20
#define API_CSV_MAX_ROWS 10000

struct api_enroll_row {
	int line;
	char address[40]; /* normalized */
	char board[64], group[64], label[64];
	bool has_passkey;
	uint32_t passkey;
};

struct api_csv_result {
	struct api_enroll_row *rows;
	size_t n, cap;
	char *errors[API_CSV_MAX_ERRORS]; /* "line N: why", the first ones */
	size_t n_errors;
	size_t total_errors;
	int n_columns;
	bool bad_header;
};
/*
 * Parses an enrollment CSV. 0 with every row, -EINVAL with one error per bad line (the
 * first API_CSV_MAX_ERRORS kept, all counted), -ENOMEM. @res is always released with
 * api_csv_result_done() (it wipes the passkeys).
 */
int api_enroll_csv_parse(const char *text, size_t len, struct api_csv_result *res);
void api_csv_result_done(struct api_csv_result *res);

/* Handlers (handlers-*.c, metrics.c). */
void api_handle_health(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp);
void api_handle_devices(struct fgw_api *api, const struct api_request *req,
			struct api_response *resp);
void api_handle_device(struct fgw_api *api, const char *address, struct api_response *resp);
void api_handle_releases(struct fgw_api *api, struct api_response *resp);
void api_handle_rollout(struct fgw_api *api, struct api_response *resp);
void api_handle_pause(struct fgw_api *api, const struct api_request *req,
		      struct api_response *resp);
void api_handle_resume(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp);
void api_handle_retry(struct fgw_api *api, const char *address, const struct api_request *req,
		      struct api_response *resp);
void api_handle_metrics(struct fgw_api *api, struct api_response *resp);
/* handlers-adapters.c: GET /v1/adapters. */
void api_handle_adapters(struct fgw_api *api, struct api_response *resp);
/* handlers-devices.c: enrollment. */
void api_handle_enroll(struct fgw_api *api, const char *address, const struct api_request *req,
		       struct api_response *resp);
void api_handle_import(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp);
void api_handle_forget(struct fgw_api *api, const char *address, const struct api_request *req,
		       struct api_response *resp);
/* events.c: GET /v1/events. */
void api_handle_events(struct fgw_api *api, const struct api_request *req,
		       struct api_response *resp);
/* page.c: the status page at / and its compiled-in files. */
void api_handle_page(struct fgw_api *api, struct api_response *resp);
void api_handle_page_file(enum api_route route, struct api_response *resp);

/*
 * HTML output (html.c): a growing buffer with one failure flag, like the Prometheus writer.
 * api_html_text() escapes markup and makes control, C1 and bidi-override characters and
 * invalid UTF-8 visible (U+2400 pictures, U+FFFD) so device text can neither inject markup
 * nor disguise itself.
 */
struct api_html {
	char *buf;
	size_t len, cap;
	bool failed;
};
void api_html_raw(struct api_html *h, const char *s);
void api_html_printf(struct api_html *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void api_html_text(struct api_html *h, const char *s);
/* Compiled-in files (generated from lib/api/page/ at build time). */
extern const unsigned char fgw_page_js[], fgw_page_css[], fgw_page_icon[];
extern const size_t fgw_page_js_len, fgw_page_css_len, fgw_page_icon_len;
