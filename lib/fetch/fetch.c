/*
 * libcurl multi on libuv: curl tells us which sockets to watch (socket callback) and when to
 * wake it (timer callback); uv_poll and uv_timer do the waiting and hand control back with
 * curl_multi_socket_action(). Finished transfers are collected after each action, outside
 * any curl callback, so user callbacks may start, cancel or free anything.
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fetch.h"

#define DEFAULT_CONNECT_TIMEOUT_S 30
#define ETAG_MAX 256

enum req_kind {
	REQ_GET,
	REQ_DOWNLOAD,
};

struct sock_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
	struct fgw_fetch *f;
	struct sock_ctx *prev, *next;
};

struct fgw_fetch_req {
	struct fgw_fetch *f;
	enum req_kind kind;
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	fgw_fetch_cb_t cb;
	void *user_data;
	fgw_destroy_cb_t destroy;
	char errbuf[CURL_ERROR_SIZE];
	int werr;     /* local write failure (-errno) */
	bool too_big; /* the cap stopped the transfer */
	bool range_ignored;
	bool restarted; /* a fresh download after a refused resume was already tried */
	/* REQ_GET */
	uint8_t *buf;
	size_t len, alloc, max;
	/* REQ_DOWNLOAD */
	int fd;
	uint64_t size, offset, resumed_from;
	bool first_write;
	struct fgw_fetch_req *prev, *next;
};

struct fgw_fetch {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	char *ca_file, *client_cert, *client_key;
	struct fgw_fetch_options opts;
	struct fgw_fetch_req *reqs;
	struct sock_ctx *socks;
	unsigned n_reqs;
	unsigned n_handles; /* uv handles not yet closed: the timer and each poll */
	unsigned dispatching;
	bool free_pending;
	bool freeing;
};

static void fetch_maybe_release(struct fgw_fetch *f)
{
	if (f->freeing && f->n_handles == 0) {
		free(f->ca_file);
		free(f->client_cert);
		free(f->client_key);
		free(f);
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct fgw_fetch *f = h->data;

	if (h->type == UV_POLL)
		free(container_of((uv_poll_t *) h, struct sock_ctx, poll));
	f->n_handles--;
	fetch_maybe_release(f);
}

static void sock_close(struct sock_ctx *s)
{
	struct fgw_fetch *f = s->f;

	if (s->prev)
		s->prev->next = s->next;
	else
		f->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *) &s->poll, on_handle_closed);
}

static void check_done(struct fgw_fetch *f);

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct sock_ctx *s = container_of(h, struct sock_ctx, poll);
	struct fgw_fetch *f = s->f;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	(void) curl_multi_socket_action(f->multi, s->fd, flags, &running);
	check_done(f);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct fgw_fetch *f = userp;
	struct sock_ctx *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			(void) curl_multi_assign(f->multi, fd, NULL);
			sock_close(s);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		if (uv_poll_init_socket(f->loop, &s->poll, fd) < 0) {
			free(s);
			return -1;
		}
		s->fd = fd;
		s->f = f;
		s->poll.data = f;
		s->next = f->socks;
		if (f->socks)
			f->socks->prev = s;
		f->socks = s;
		f->n_handles++;
		(void) curl_multi_assign(f->multi, fd, s);
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	return uv_poll_start(&s->poll, events, on_poll) < 0 ? -1 : 0;
}

static void on_timer(uv_timer_t *t)
{
	struct fgw_fetch *f = t->data;
	int running;

	(void) curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(f);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct fgw_fetch *f = userp;

	/* 0 means "as soon as possible": the next loop iteration, never from inside curl. */
	if (timeout_ms < 0)
		uv_timer_stop(&f->timer);
	else
		uv_timer_start(&f->timer, on_timer, (uint64_t) timeout_ms, 0);
	return 0;
}

static int curl_to_errno(CURLcode c, long status)
{
	switch (c) {
	case CURLE_OK:
		return 0;
	case CURLE_HTTP_RETURNED_ERROR:
		if (status == 404 || status == 410)
			return -ENOENT;
		if (status == 401 || status == 403)
			return -EACCES;
		return -EPROTO;
	case CURLE_FILE_COULDNT_READ_FILE:
		return -ENOENT;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
		return -EPIPE;
	case CURLE_RECV_ERROR:
		return -ECONNRESET;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_PEER_FAILED_VERIFICATION:
		return -EKEYREJECTED;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
		return -EPROTO;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTONOSUPPORT;
	case CURLE_URL_MALFORMAT:
		return -EINVAL;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_TOO_MANY_REDIRECTS:
		return -ELOOP;
	default:
		return -EIO;
	}
}

static void req_unlink(struct fgw_fetch_req *r)
{
	struct fgw_fetch *f = r->f;

	if (r->prev)
		r->prev->next = r->next;
	else
		f->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	f->n_reqs--;
}

static void req_free(struct fgw_fetch_req *r)
{
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	free(r->url);
	free(r);
}

/* Calls back once, then destroys: the request is gone when this returns. */
static void req_complete(struct fgw_fetch_req *r, int err, struct fgw_fetch_result *res)
{
	fgw_fetch_cb_t cb = r->cb;
	fgw_destroy_cb_t destroy = r->destroy;
	void *ud = r->user_data;

	req_unlink(r);
	if (cb)
		cb(err, res, ud);
	if (destroy)
		destroy(ud);
	req_free(r);
}

static const char *usable_etag(CURL *easy)
{
	struct curl_header *h = NULL;

	if (curl_easy_header(easy, "ETag", 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
		return NULL;
	/* It goes back in a request header and into the database: no control bytes. */
	if (strlen(h->value) == 0 || strlen(h->value) > ETAG_MAX)
		return NULL;
	for (const char *p = h->value; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			return NULL;
	return h->value;
}

static bool download_restart(struct fgw_fetch_req *r)
{
	if (r->restarted)
		return false;
	/* The resume was refused: start again from byte 0, once. */
	r->restarted = true;
	if (ftruncate(r->fd, 0) < 0)
		return false;
	r->offset = 0;
	r->resumed_from = 0;
	r->first_write = true;
	r->range_ignored = false;
	r->errbuf[0] = '\0';
	(void) curl_easy_setopt(r->easy, CURLOPT_RANGE, NULL);
	return curl_multi_add_handle(r->f->multi, r->easy) == CURLM_OK;
}

static void req_finish(struct fgw_fetch_req *r, CURLcode code)
{
	struct fgw_fetch_result res = {0};
	long status = 0;
	char *eff = NULL;
	int err;

	(void) curl_multi_remove_handle(r->f->multi, r->easy);
	(void) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	(void) curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff);
	/* an error page larger than the cap must still read as the HTTP error it is */
	if (status >= 400 && code == CURLE_FILESIZE_EXCEEDED)
		code = CURLE_HTTP_RETURNED_ERROR;
	err = curl_to_errno(code, status);
	if (code == CURLE_WRITE_ERROR) {
		if (r->too_big)
			err = -EFBIG;
		else if (r->werr)
			err = r->werr;
	}
	if (r->kind == REQ_DOWNLOAD && r->resumed_from > 0 &&
	    ((code == CURLE_HTTP_RETURNED_ERROR && status == 416) ||
	     code == CURLE_BAD_DOWNLOAD_RESUME || code == CURLE_RANGE_ERROR) &&
	    download_restart(r))
		return;

	res.status = status;
	res.url = eff ? eff : r->url;
	res.error = err < 0 ? r->errbuf : "";
	if (r->kind == REQ_GET) {
		if (err == 0 && status == 304) {
			res.not_modified = true;
		} else if (err == 0) {
			if (!r->buf) {
				r->buf = malloc(1);
				if (!r->buf)
					err = -ENOMEM;
			}
			if (r->buf)
				r->buf[r->len] = '\0';
			res.body = r->buf;
			res.len = r->len;
		}
		if (err == 0)
			res.etag = usable_etag(r->easy);
	} else {
		res.size = r->offset;
		res.resumed_from = r->resumed_from;
		if (err == 0 && r->offset != r->size)
			err = -ENODATA;
	}
	req_complete(r, err, &res);
}

static void fetch_release_now(struct fgw_fetch *f);

static void check_done(struct fgw_fetch *f)
{
	CURLMsg *msg;
	int queued;

	f->dispatching++;
	while (!f->free_pending && (msg = curl_multi_info_read(f->multi, &queued))) {
		struct fgw_fetch_req *r = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		(void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
		if (r)
			req_finish(r, msg->data.result);
	}
	f->dispatching--;
	if (f->dispatching == 0 && f->free_pending)
		fetch_release_now(f);
}

static size_t on_get_data(char *data, size_t size, size_t nmemb, void *userp)
{
	struct fgw_fetch_req *r = userp;
	size_t n = size * nmemb;

	if (n > r->max - r->len) {
		r->too_big = true;
		return 0;
	}
	if (r->len + n + 1 > r->alloc) {
		size_t want = FGW_MAX(r->alloc * 2, r->len + n + 1);
		uint8_t *nb = realloc(r->buf, FGW_MIN(want, r->max + 1));
		if (!nb) {
			r->werr = -ENOMEM;
			return 0;
		}
		r->buf = nb;
		r->alloc = FGW_MIN(want, r->max + 1);
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	return n;
}

static size_t on_download_data(char *data, size_t size, size_t nmemb, void *userp)
{
	struct fgw_fetch_req *r = userp;
	size_t n = size * nmemb, done = 0;

	if (r->first_write) {
		long status = 0;

		r->first_write = false;
		(void) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		/* 200 to a Range request: the whole file is coming, drop what we had. */
		if (r->resumed_from > 0 && status == 200) {
			if (ftruncate(r->fd, 0) < 0) {
				r->werr = -errno;
				return 0;
			}
			r->range_ignored = true;
			r->offset = 0;
			r->resumed_from = 0;
		}
	}
	if (n > r->size - r->offset) {
		r->too_big = true;
		return 0;
	}
	while (done < n) {
		ssize_t w = pwrite(r->fd, data + done, n - done, (off_t) (r->offset + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			r->werr = -errno;
			return 0;
		}
		done += (size_t) w;
	}
	r->offset += n;
	return n;
}

static int req_new(struct fgw_fetch *f, enum req_kind kind, const char *url, fgw_fetch_cb_t cb,
		   void *user_data, fgw_destroy_cb_t destroy, struct fgw_fetch_req **ret)
{
	struct fgw_fetch_req *r;
	CURL *e;

	if (f->freeing || f->free_pending)
		return -ESHUTDOWN;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->f = f;
	r->kind = kind;
	r->fd = -1;
	r->cb = cb;
	r->user_data = user_data;
	r->destroy = destroy;
	r->url = strdup(url);
	r->easy = e = curl_easy_init();
	if (!r->url || !e) {
		req_free(r);
		return -ENOMEM;
	}
	/* what started over TLS stays on TLS: no redirect from https down to http */
	if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR,
			     strncasecmp(url, "https:", 6) == 0 ? "https" : "http,https") !=
		CURLE_OK) {
		req_free(r);
		return -EINVAL;
	}
	(void) curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	(void) curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	(void) curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	(void) curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
	(void) curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	(void) curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	(void) curl_easy_setopt(e, CURLOPT_USERAGENT, "fotagw/1");
	(void) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT,
				(long) (f->opts.connect_timeout_s > 0 ? f->opts.connect_timeout_s
								      : DEFAULT_CONNECT_TIMEOUT_S));
	if (f->opts.timeout_s > 0)
		(void) curl_easy_setopt(e, CURLOPT_TIMEOUT, (long) f->opts.timeout_s);
	if (f->opts.low_speed_limit > 0 && f->opts.low_speed_time_s > 0) {
		(void) curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long) f->opts.low_speed_limit);
		(void) curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long) f->opts.low_speed_time_s);
	}
	if (f->ca_file)
		(void) curl_easy_setopt(e, CURLOPT_CAINFO, f->ca_file);
	if (f->client_cert)
		(void) curl_easy_setopt(e, CURLOPT_SSLCERT, f->client_cert);
	if (f->client_key)
		(void) curl_easy_setopt(e, CURLOPT_SSLKEY, f->client_key);
	*ret = r;
	return 0;
}

static int req_start(struct fgw_fetch_req *r, struct fgw_fetch_req **ret_req)
{
	struct fgw_fetch *f = r->f;

	if (curl_multi_add_handle(f->multi, r->easy) != CURLM_OK) {
		req_free(r);
		return -ENOMEM;
	}
	r->next = f->reqs;
	if (f->reqs)
		f->reqs->prev = r;
	f->reqs = r;
	f->n_reqs++;
	if (ret_req)
		*ret_req = r;
	return 0;
}

FGW_EXPORT int fgw_fetch_get(struct fgw_fetch *f, const char *url, const char *etag,
			     size_t max_size, fgw_fetch_cb_t cb, void *user_data,
			     fgw_destroy_cb_t destroy, struct fgw_fetch_req **ret_req)
{
	struct fgw_fetch_req *r;
	int rc;

	rc = req_new(f, REQ_GET, url, cb, user_data, destroy, &r);
	if (rc < 0)
		return rc;
	r->max = max_size;
	(void) curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_get_data);
	(void) curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	(void) curl_easy_setopt(r->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) max_size);
	(void) curl_easy_setopt(r->easy, CURLOPT_ACCEPT_ENCODING, ""); /* manifests compress */
	if (etag) {
		char *h;
		for (const char *p = etag; *p; p++)
			if ((unsigned char) *p < 0x20) {
				req_free(r);
				return -EINVAL;
			}
		if (asprintf(&h, "If-None-Match: %s", etag) < 0) {
			req_free(r);
			return -ENOMEM;
		}
		r->headers = curl_slist_append(NULL, h);
		free(h);
		if (!r->headers) {
			req_free(r);
			return -ENOMEM;
		}
		(void) curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	}
	return req_start(r, ret_req);
}

FGW_EXPORT int fgw_fetch_download(struct fgw_fetch *f, const char *url, const char *path,
				  uint64_t size, fgw_fetch_cb_t cb, void *user_data,
				  fgw_destroy_cb_t destroy, struct fgw_fetch_req **ret_req)
{
	struct fgw_fetch_req *r;
	struct stat st;
	char range[48];
	int rc;

	if (size == 0)
		return -EINVAL;
	rc = req_new(f, REQ_DOWNLOAD, url, cb, user_data, destroy, &r);
	if (rc < 0)
		return rc;
	r->size = size;
	r->first_write = true;
	r->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (r->fd < 0 || fstat(r->fd, &st) < 0) {
		rc = -errno;
		req_free(r);
		return rc;
	}
	if ((uint64_t) st.st_size >= size) {
		/* Complete or overlong leftovers are not a prefix worth trusting: start over. */
		if (ftruncate(r->fd, 0) < 0) {
			rc = -errno;
			req_free(r);
			return rc;
		}
	} else if (st.st_size > 0) {
		r->resumed_from = r->offset = (uint64_t) st.st_size;
		snprintf(range, sizeof(range), "%llu-", (unsigned long long) r->offset);
		(void) curl_easy_setopt(r->easy, CURLOPT_RANGE, range);
	}
	(void) curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_download_data);
	(void) curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	/* refuses a declared Content-Length beyond the cap before any byte arrives */
	(void) curl_easy_setopt(r->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) size);
	return req_start(r, ret_req);
}

FGW_EXPORT void fgw_fetch_cancel(struct fgw_fetch_req *r)
{
	struct fgw_fetch_result res = {.url = r->url, .error = "cancelled"};

	(void) curl_multi_remove_handle(r->f->multi, r->easy);
	res.resumed_from = r->resumed_from;
	res.size = r->offset;
	req_complete(r, -ECANCELED, &res);
}

FGW_EXPORT unsigned fgw_fetch_active(struct fgw_fetch *f)
{
	return f->n_reqs;
}

FGW_EXPORT int fgw_fetch_new(uv_loop_t *loop, const struct fgw_fetch_options *opts,
			     struct fgw_fetch **ret)
{
	struct fgw_fetch *f;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -EIO;
	f = calloc(1, sizeof(*f));
	if (!f)
		goto oom;
	f->loop = loop;
	if (opts) {
		f->opts = *opts;
		if ((opts->ca_file && !(f->ca_file = strdup(opts->ca_file))) ||
		    (opts->client_cert && !(f->client_cert = strdup(opts->client_cert))) ||
		    (opts->client_key && !(f->client_key = strdup(opts->client_key))))
			goto oom;
	}
	f->opts.ca_file = f->opts.client_cert = f->opts.client_key = NULL;
	f->multi = curl_multi_init();
	if (!f->multi)
		goto oom;
	uv_timer_init(loop, &f->timer);
	f->timer.data = f;
	f->n_handles = 1;
	(void) curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	(void) curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	(void) curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	(void) curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	*ret = f;
	return 0;
oom:
	if (f) {
		free(f->ca_file);
		free(f->client_cert);
		free(f->client_key);
		free(f);
	}
	curl_global_cleanup();
	return -ENOMEM;
}

static void fetch_release_now(struct fgw_fetch *f)
{
	f->free_pending = false;
	f->freeing = true;
	while (f->reqs)
		fgw_fetch_cancel(f->reqs);
	/* may report sockets of cached connections through socket_cb (CURL_POLL_REMOVE) */
	curl_multi_cleanup(f->multi);
	f->multi = NULL;
	while (f->socks)
		sock_close(f->socks);
	uv_timer_stop(&f->timer);
	uv_close((uv_handle_t *) &f->timer, on_handle_closed);
	curl_global_cleanup();
}

FGW_EXPORT struct fgw_fetch *fgw_fetch_free(struct fgw_fetch *f)
{
	if (!f || f->freeing || f->free_pending)
		return NULL;
	if (f->dispatching > 0) {
		/* inside a completion callback: finish the dispatch loop first */
		f->free_pending = true;
		return NULL;
	}
	fetch_release_now(f);
	return NULL;
}

FGW_EXPORT int fgw_fetch_resolve_url(const char *base, const char *ref, char **ret)
{
	CURLU *u = curl_url();
	char *out = NULL, *scheme = NULL;
	int r = -EINVAL;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
		goto out;
	/* setting a relative URL on a handle that holds one resolves it against that one */
	if (curl_url_set(u, CURLUPART_URL, ref, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
		goto out;
	if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0 &&
	    strcmp(scheme, "file") != 0) {
		r = -EPROTONOSUPPORT;
		goto out;
	}
	if (strncasecmp(base, "https:", 6) == 0 && strcmp(scheme, "https") != 0) {
		r = -EPERM; /* a bundle under an https manifest is fetched over https too */
		goto out;
	}
	*ret = strdup(out);
	r = *ret ? 0 : -ENOMEM;
out:
	curl_free(out);
	curl_free(scheme);
	curl_url_cleanup(u);
	return r;
}
