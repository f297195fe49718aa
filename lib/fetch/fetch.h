/*
 * fetch: HTTP(S) and file:// transfers on the libuv loop, through libcurl's multi interface
 * driven by socket and timer callbacks (no curl_multi_perform loop, no threads). Two kinds:
 * small GETs into memory with a conditional If-None-Match (the manifest and its signature),
 * and downloads to a file with a hard cap at the declared size that resume with a Range
 * request from what a previous, interrupted download left in the file. Only this part
 * includes <curl/curl.h>; lib/release builds the release pipeline on top of it.
 *
 * Callbacks follow the project contract: a function that returns < 0 never calls back; one
 * that returns 0 calls back exactly once, never before it has returned; cancelling or freeing
 * calls back with -ECANCELED, then the destroy function.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "util.h"

struct fgw_fetch;
struct fgw_fetch_req;

struct fgw_fetch_options {
	const char *ca_file;	 /* PEM CA bundle; NULL: the system store */
	const char *client_cert; /* PEM client certificate for mutual TLS; NULL: none */
	const char *client_key;	 /* its key; NULL: in client_cert */
	int connect_timeout_s;	 /* 0: 30 */
	int timeout_s;		 /* whole transfer; 0: no limit */
	int low_speed_limit;	 /* bytes/s; slower than this for low_speed_time_s aborts. 0: off */
	int low_speed_time_s;
};

struct fgw_fetch_result {
	long status;	   /* HTTP status; 0 for file:// or when no response came */
	const char *url;   /* effective URL (after redirects) */
	const char *error; /* libcurl's message when err < 0 and it had one, else "" */
	/* fgw_fetch_get() */
	const uint8_t *body; /* NUL-terminated beyond @len; NULL on 304 and errors */
	size_t len;
	const char *etag;  /* ETag of the response, NULL if none (or unusable) */
	bool not_modified; /* 304: the resource still matches the ETag sent */
	/* fgw_fetch_download() */
	uint64_t size;	       /* bytes now in the file */
	uint64_t resumed_from; /* bytes kept from an earlier attempt (0: started afresh) */
};

/*
 * err: 0, or -ENOENT (404/410, missing file), -EACCES (401/403), -EPROTO (other HTTP error,
 * TLS failure), -EKEYREJECTED (server certificate not trusted), -EFBIG (more than the cap),
 * -ENODATA (download ended cleanly short of the declared size), -ETIMEDOUT (total or
 * low-speed timeout), -ECONNREFUSED, -EHOSTUNREACH, -EPIPE/-ECONNRESET (connection cut),
 * -EIO (local file), -ECANCELED. @res is valid during the call only.
 */
typedef void (*fgw_fetch_cb_t)(int err, const struct fgw_fetch_result *res, void *user_data);

int fgw_fetch_new(uv_loop_t *loop, const struct fgw_fetch_options *opts, struct fgw_fetch **ret);
/* Cancels every transfer (-ECANCELED), then releases the handles asynchronously. NULL ok. */
struct fgw_fetch *fgw_fetch_free(struct fgw_fetch *f);

/*
 * GETs @url into memory, at most @max_size bytes (-EFBIG beyond). With @etag (may be NULL)
 * sends If-None-Match; a 304 answer is err 0 with not_modified. *@ret_req (may be NULL) is
 * valid until the callback has run.
 */
int fgw_fetch_get(struct fgw_fetch *f, const char *url, const char *etag, size_t max_size,
		  fgw_fetch_cb_t cb, void *user_data, fgw_destroy_cb_t destroy,
		  struct fgw_fetch_req **ret_req);

/*
 * Downloads @url into @path, which ends up holding exactly @size bytes on success. If @path
 * already holds fewer bytes (an interrupted attempt) only the rest is asked for (Range); a
 * server that ignores the range, or answers 416, gets a fresh download. More than @size bytes
 * aborts the transfer (-EFBIG). The file is kept on failure so the next attempt can resume;
 * it is not fsync()ed.
 */
int fgw_fetch_download(struct fgw_fetch *f, const char *url, const char *path, uint64_t size,
		       fgw_fetch_cb_t cb, void *user_data, fgw_destroy_cb_t destroy,
		       struct fgw_fetch_req **ret_req);

/* Stops a transfer: its callback runs now with -ECANCELED. */
void fgw_fetch_cancel(struct fgw_fetch_req *req);

/* Number of transfers in progress. */
unsigned fgw_fetch_active(struct fgw_fetch *f);

/*
 * Resolves @ref against @base as a browser would ("b.zip", "../x/b.zip", "/b.zip" or an
 * absolute URL). Only http, https and file results are accepted (-EPROTONOSUPPORT); under an
 * https @base only https (-EPERM: no downgrade). -EINVAL for something that is not a URL.
 * *@ret is malloc()ed. Requests to https URLs follow redirects to https only.
 */
int fgw_fetch_resolve_url(const char *base, const char *ref, char **ret);
