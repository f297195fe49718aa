/*
 * Any request as the router sees it (method, path, query, Authorization, body) against a
 * seeded store and a scripted provider: the answer must be a well-formed response with a
 * known status, JSON (with an "error" for 4xx/5xx), Prometheus text, the status page (whole,
 * no raw control character) or one of its files, and never a crash.
 * Input: "METHOD\nPATH[?QUERY]\nAUTH\nBODY"; AUTH "T" stands for the right bearer token so
 * bodies reach the parser.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "../unit/test-api-seed.h"
#include "api-private.h"
#include "store.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define TOKEN "fuzz-token-0123456789"

static struct fgw_store *store;
static char dir[64];

static int ok_pause(void *ud, const char *reason)
{
	return reason && strlen(reason) > 256 ? (abort(), 0) : 0;
}

static int ok_resume(void *ud)
{
	return -EALREADY;
}

static int ok_retry(void *ud, const char *address)
{
	return api_address_valid(address, strlen(address)) ? -EBUSY : (abort(), 0);
}

static int some_progress(void *ud, const char *address, struct fgw_api_progress *ret)
{
	*ret = (struct fgw_api_progress){.bytes = 1, .total = 3, .rate_bps = 1, .eta_s = -1};
	return 0;
}

static void cleanup(void)
{
	char cmd[96];

	fgw_store_free(store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void) !system(cmd);
}

static void init(void)
{
	char path[96];
	sqlite3 *db;

	fgw_log_set_level(LOG_ERR - 1); /* quiet: the unauthorized notices would flood */
	snprintf(dir, sizeof(dir), "/tmp/fgw-fuzz-rest-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/t.db", dir);
	if (fgw_store_open(path, 1000, &store) < 0 || fgw_store_migrate(store, NULL, 0) < 0)
		abort();
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, api_seed_sql, NULL, NULL, NULL) != SQLITE_OK)
		abort();
	sqlite3_close(db);
	atexit(cleanup);
}

/* The fuzzer's own query splitter (MHD does this in the daemon). */
static const char *arg(void *ctx, const char *key)
{
	static char values[8][256];
	static unsigned next;
	char *value = values[next++ % 8];
	const char *q = ctx;
	size_t klen = strlen(key);

	while (q && *q) {
		const char *end = strchr(q, '&');
		size_t len = end ? (size_t) (end - q) : strlen(q);
		if (len > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
			snprintf(value, 256, "%.*s", (int) (len - klen - 1), q + klen + 1);
			return value;
		}
		q = end ? end + 1 : NULL;
	}
	return NULL;
}

/* Next line of @p (up to @end), NUL-terminated in place; NULL when input runs out. */
static char *take_line(char **p, char *end)
{
	char *s = *p, *nl;

	if (s >= end)
		return NULL;
	nl = memchr(s, '\n', (size_t) (end - s));
	if (!nl)
		nl = end;
	*nl = '\0';
	*p = nl + 1;
	return s;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct fgw_api api = {
	    .token = TOKEN,
	    .token_len = strlen(TOKEN),
	    .prov = {.pause = ok_pause,
		     .resume = ok_resume,
		     .retry = ok_retry,
		     .progress = some_progress},
	};
	struct api_response resp;
	struct api_request req = {.arg = arg, .peer = "fuzz"};
	char *buf, *p, *end, *method, *path, *auth, *q;
	cJSON *j;

	if (!store)
		init();
	api.store = store;
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	p = buf;
	end = buf + size;
	method = take_line(&p, end);
	path = take_line(&p, end);
	auth = take_line(&p, end);
	if (!method || !path || !auth) {
		free(buf);
		return 0;
	}
	q = strchr(path, '?');
	if (q)
		*q++ = '\0';
	req.method = method;
	req.path = path;
	req.arg_ctx = q;
	req.authorization = strcmp(auth, "T") == 0 ? "Bearer " TOKEN : *auth ? auth : NULL;
	if (p < end) {
		req.body = p;
		req.body_len = (size_t) (end - p);
	}
	fgw_api__handle(&api, &req, &resp);

	if (!resp.body || resp.len != strlen(resp.body) || resp.status < 200 || resp.status > 599)
		abort();
	if (strcmp(resp.content_type, "application/json") == 0) {
		j = cJSON_Parse(resp.body);
		if (!j)
			abort();
		if (resp.status >= 400 && !cJSON_IsString(cJSON_GetObjectItem(j, "error")))
			abort();
		cJSON_Delete(j);
	} else if (strcmp(resp.content_type, "text/html; charset=utf-8") == 0) {
		/* The status page: whole, and no raw control character from any stored text. */
		if (resp.status != 200 || strncmp(resp.body, "<!DOCTYPE html>", 15) != 0 ||
		    !strstr(resp.body, "</html>\n") || !resp.csp)
			abort();
		for (const char *c = resp.body; *c; c++)
			if ((unsigned char) *c < 0x20 && *c != '\n')
				abort();
	} else if (strncmp(resp.content_type, "text/javascript", 15) == 0 ||
		   strncmp(resp.content_type, "text/css", 8) == 0 ||
		   strcmp(resp.content_type, "image/svg+xml") == 0) {
		if (resp.status != 200 || !resp.csp)
			abort();
	} else if (resp.status != 200 || strncmp(resp.body, "# HELP", 6) != 0) {
		abort();
	}
	if (resp.status == 405 && !resp.allow)
		abort();
	api_response_done(&resp);
	free(buf);
	return 0;
}
