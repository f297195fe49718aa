/*
 * libmicrohttpd on the libuv loop. MHD runs in "external select" mode with epoll: its one
 * epoll fd (listen socket and every connection inside) sits in a uv_poll, its next timeout
 * in a uv_timer, and MHD_run() does the non-blocking work after either fires. No MHD
 * thread exists, so handlers run on the loop thread and may touch the store directly.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api-private.h"
#include "util.h"

/* A chunked body past the cap is read and dropped up to here, then the connection is cut. */
#define API_MAX_DISCARD (1024 * 1024)

/* Per request: the body as it arrives and the route decided from the headers. */
struct request_ctx {
	enum api_route route;
	char *body;
	size_t len;
	size_t discarded;
	bool too_big;
	char peer[INET6_ADDRSTRLEN + 8];
};

static void api_reschedule(struct fgw_api *api);

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	/* MHD reports client mistakes (bad request lines, resets) here: debug, not warnings. */
	if (fgw_log_get_level() < LOG_DEBUG)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	fgw_debug("api: mhd: %s", msg);
}

static const char *mhd_arg(void *ctx, const char *key)
{
	return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, key);
}

static void peer_name(struct MHD_Connection *conn, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(buf, size, "?");
	if (!sa)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, buf, size);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, buf, size);
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct api_response *resp)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		api_response_done(resp);
		return MHD_NO;
	}
	resp->body = NULL; /* MHD owns it now */
	(void) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				       resp->content_type ? resp->content_type
							  : "application/json");
	(void) MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	(void) MHD_add_response_header(r, MHD_HTTP_HEADER_X_CONTENT_TYPE_OPTIONS, "nosniff");
	if (resp->csp) {
		(void) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY,
					       resp->csp);
		(void) MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	}
	if (resp->allow)
		(void) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp->allow);
	if (resp->status == 401)
		(void) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					       "Bearer realm=\"fotagw\"");
	ret = MHD_queue_response(conn, resp->status, r);
	MHD_destroy_response(r);
	api_response_done(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct fgw_api *api = cls;
	struct request_ctx *ctx = *con_cls;
	struct api_response resp = {0};
	struct api_request req = {
	    .method = method,
	    .path = url,
	    .arg = mhd_arg,
	    .arg_ctx = conn,
	    .authorization =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
	    .host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
	};

	if (!ctx) {
		/* First call: request line and headers are in; decide what can be decided. */
		const char *cl;
		int64_t clen;

		ctx = calloc(1, sizeof(*ctx));
		if (!ctx)
			return MHD_NO;
		*con_cls = ctx;
		peer_name(conn, ctx->peer, sizeof(ctx->peer));
		req.peer = ctx->peer;
		if (MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL) >
		    API_MAX_HEADERS) {
			api_error(&resp, 431, "headers_too_large", "more than %d header fields",
				  API_MAX_HEADERS);
			goto reply;
		}
		if (api_request_head(api, &req, &ctx->route, &resp) < 0)
			goto reply;
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && (fgw_parse_int64(cl, 0, INT64_MAX, &clen) < 0 || clen > API_MAX_BODY)) {
			api->stats.rejected_oversize++;
			api_error(&resp, 413, "payload_too_large",
				  "request body larger than %d bytes", API_MAX_BODY);
			goto reply;
		}
		return MHD_YES;
	}
	req.peer = ctx->peer;
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (ctx->too_big || ctx->len + n > API_MAX_BODY) {
			/* Chunked (no Content-Length): only now is the size known. */
			ctx->too_big = true;
			ctx->discarded += n;
			return ctx->discarded > API_MAX_DISCARD ? MHD_NO : MHD_YES;
		}
		if (!ctx->body) {
			ctx->body = malloc(API_MAX_BODY);
			if (!ctx->body)
				return MHD_NO;
		}
		memcpy(ctx->body + ctx->len, upload_data, n);
		ctx->len += n;
		return MHD_YES;
	}
	if (ctx->too_big) {
		api->stats.rejected_oversize++;
		api_error(&resp, 413, "payload_too_large", "request body larger than %d bytes",
			  API_MAX_BODY);
		goto reply;
	}
	req.body = ctx->body;
	req.body_len = ctx->len;
	api_request_run(api, ctx->route, &req, &resp);
reply:
	api_count(api, &resp);
	return send_response(conn, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request_ctx *ctx = *con_cls;

	if (!ctx)
		return;
	free(ctx->body);
	free(ctx);
	*con_cls = NULL;
}

static void api_run(struct fgw_api *api)
{
	if (MHD_run(api->mhd) != MHD_YES)
		fgw_debug("api: MHD_run reported an error, ignoring");
	api_reschedule(api);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	api_run(p->data);
}

static void on_timer(uv_timer_t *t)
{
	api_run(t->data);
}

/* MHD knows when it next needs to run without I/O (timeouts, data already buffered). */
static void api_reschedule(struct fgw_api *api)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (MHD_get_timeout(api->mhd, &ms) == MHD_YES)
		uv_timer_start(&api->timer, on_timer, (uint64_t) ms, 0);
	else
		uv_timer_stop(&api->timer);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct fgw_api *api = h->data;

	if (--api->n_handles > 0)
		return;
	free(api->token);
	free(api->allowed_hosts);
	free(api);
}

FGW_EXPORT struct fgw_api *fgw_api_free(struct fgw_api *api)
{
	if (!api)
		return NULL;
	/* Stop polling the epoll fd before MHD closes it (libuv must never poll a closed fd). */
	if (api->poll_open)
		uv_close((uv_handle_t *) &api->poll, on_handle_closed);
	if (api->timer_open)
		uv_close((uv_handle_t *) &api->timer, on_handle_closed);
	if (api->mhd)
		MHD_stop_daemon(api->mhd);
	api->mhd = NULL;
	if (api->n_handles == 0) {
		free(api->token);
		free(api->allowed_hosts);
		free(api);
	}
	return NULL;
}

FGW_EXPORT uint16_t fgw_api_port(struct fgw_api *api)
{
	return api->port;
}

static int parse_listen(const char *listen, uint16_t port, struct sockaddr_storage *ret,
			bool *ret_v6)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *) ret;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;

	memset(ret, 0, sizeof(*ret));
	if (inet_pton(AF_INET, listen, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*ret_v6 = false;
		return 0;
	}
	if (inet_pton(AF_INET6, listen, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*ret_v6 = true;
		return 0;
	}
	return -EINVAL;
}

/* MHD says only "failed"; a plain bind() with the same address tells why. */
static int probe_bind_error(const struct sockaddr_storage *sa, bool v6)
{
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1, r = -EIO;

	if (fd < 0)
		return -errno;
	(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *) sa,
		 v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) < 0)
		r = -errno;
	close(fd);
	return r;
}

FGW_EXPORT int fgw_api_new(uv_loop_t *loop, struct fgw_store *store,
			   const struct fgw_api_options *opts,
			   const struct fgw_api_provider *provider, struct fgw_api **ret)
{
	struct sockaddr_storage sa;
	const union MHD_DaemonInfo *info;
	struct fgw_api *api;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	bool v6;
	int fd, r;

	if (parse_listen(opts->listen ? opts->listen : "127.0.0.1", opts->port, &sa, &v6) < 0)
		return -EINVAL;
	if (opts->token && (strlen(opts->token) == 0 || strlen(opts->token) > 4096))
		return -EINVAL;
	if (v6)
		flags |= MHD_USE_IPv6;

	api = calloc(1, sizeof(*api));
	if (!api)
		return -ENOMEM;
	api->loop = loop;
	api->store = store;
	if (provider)
		api->prov = *provider;
	if (opts->token) {
		api->token = strdup(opts->token);
		if (!api->token) {
			free(api);
			return -ENOMEM;
		}
		api->token_len = strlen(api->token);
	}
	if (opts->allowed_hosts && !(api->allowed_hosts = strdup(opts->allowed_hosts))) {
		free(api->token);
		free(api);
		return -ENOMEM;
	}

	api->mhd = MHD_start_daemon(
	    flags, opts->port, NULL, NULL, on_request, api, MHD_OPTION_SOCK_ADDR, &sa,
	    MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned) (opts->max_connections ? opts->max_connections : 32),
	    MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned) (opts->connection_timeout_s ? opts->connection_timeout_s : 15),
	    /* Request line + headers must fit here; the body is copied out as it comes. */
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 32 * 1024, MHD_OPTION_NOTIFY_COMPLETED,
	    on_completed, api, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api, MHD_OPTION_END);
	if (!api->mhd) {
		r = probe_bind_error(&sa, v6);
		fgw_api_free(api);
		return r;
	}
	info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	fd = info ? info->epoll_fd : -1;
	info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
	api->port = info ? info->port : opts->port;
	if (fd < 0) {
		fgw_api_free(api);
		return -EIO;
	}

	uv_timer_init(loop, &api->timer);
	api->timer.data = api;
	api->timer_open = true;
	api->n_handles++;
	r = uv_poll_init(loop, &api->poll, fd);
	if (r < 0) {
		fgw_api_free(api);
		return r;
	}
	api->poll.data = api;
	api->poll_open = true;
	api->n_handles++;
	r = uv_poll_start(&api->poll, UV_READABLE, on_poll);
	if (r < 0) {
		fgw_api_free(api);
		return r;
	}
	api_reschedule(api);
	*ret = api;
	return 0;
}
