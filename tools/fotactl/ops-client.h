/*
 * The ops side of fotactl: a small blocking REST client for fotagwd (libcurl easy; blocking
 * is fine in a CLI), where to find the gateway (--url, else [api] listen/port of the
 * gateway's config), the bearer token (--token, --token-file, else [api] token_file), and
 * aligned tables for people.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "fotactl.h"

#define FOTACTL_DEFAULT_CONFIG "/etc/fotagw/fotagw.conf"

/* Where and how to talk to fotagwd, resolved from the options and the gateway's config. */
struct ops_conn {
	char *url;	  /* "http://127.0.0.1:8370", no trailing slash */
	char *token;	  /* NULL: none known */
	char *token_file; /* where the token came from, for messages */
	int token_err;	  /* why the token file could not be read, 0 if it could */
	bool json;
	const char *content_type; /* of request bodies; NULL: application/json */
	void *curl;		  /* CURL *, reused across requests (keep-alive) */
};

/* The options every ops command takes after its name (besides the global ones). */
struct ops_opts {
	const char *url, *token_file, *config;
	bool json;
};

/*
 * Their getopt_long ids and table entries (with -h/--help): a command numbers its own
 * options from OPS_OPT_NEXT and puts OPS_COMMON_OPTS first in its table. ops_common_opt()
 * stores @c in @o when it is one of them and says whether it was.
 */
enum {
	OPS_OPT_URL = 0x100,
	OPS_OPT_TOKEN_FILE,
	OPS_OPT_CONFIG,
	OPS_OPT_JSON,
	OPS_OPT_NEXT,
};
#define OPS_COMMON_OPTS                                                                            \
	{"url", required_argument, NULL, OPS_OPT_URL},                                             \
	    {"token-file", required_argument, NULL, OPS_OPT_TOKEN_FILE},                           \
	    {"config", required_argument, NULL, OPS_OPT_CONFIG},                                   \
	    {"json", no_argument, NULL, OPS_OPT_JSON},                                             \
	{                                                                                          \
		"help", no_argument, NULL, 'h'                                                     \
	}
bool ops_common_opt(int c, struct ops_opts *o);

/*
 * Resolves the connection: explicit options first, then the global ones in @ctx, then the
 * gateway config (@o->config, else FOTACTL_DEFAULT_CONFIG if it exists), then the built-in
 * defaults. Returns 0 or an exit code (usage or failure) after printing why.
 */
int ops_conn_open(const struct fotactl_ctx *ctx, const struct ops_opts *o, struct ops_conn *ret);
void ops_conn_close(struct ops_conn *c);

/*
 * One request. 0 with the HTTP status and the parsed JSON body (NULL if not JSON), or -errno
 * when the gateway could not be reached (message printed to @err unless NULL). @body may be
 * NULL. POSTs and DELETEs carry the token when one is known.
 */
int ops_request(struct ops_conn *c, const char *method, const char *path, const char *body,
		long *ret_status, cJSON **ret_json, char *err, size_t err_size);

/* A response body as it arrives (NUL-terminated), at most 32 MiB. */
struct ops_body {
	char *data;
	size_t len;
};
void ops_body_clear(struct ops_body *b);
/*
 * Resets the curl easy handle @curl and sets it up for @url the way every request of fotactl
 * goes: timeouts (3 s to connect, 15 s in all), HTTP(S) only, no signals, the body into @b
 * (cleared first). ops_request() and the live view of watch.c (curl multi) both use it.
 */
void ops_curl_setup(void *curl, const char *url, struct ops_body *b);

/*
 * A change the gateway must authorize (@what names it in messages): without a token says
 * why there is none (no token file given, or why it could not be read) and sends nothing.
 * 0 and the answer's JSON in *@ret (the caller's to delete) for a 2xx status; otherwise
 * prints the gateway's errors and message and returns FOTACTL_EXIT_FAILED.
 */
int ops_change(struct ops_conn *c, const char *method, const char *path, const char *body,
	       const char *what, cJSON **ret);

/*
 * GET @path expecting 200 and JSON; on anything else prints the gateway's error message
 * and returns NULL.
 */
cJSON *ops_get(struct ops_conn *c, const char *path);

/*
 * Escapes, in place, every string value and key of @j for a terminal (fgw_escape_text):
 * what the gateway relays comes from devices and the network. 0 or -ENOMEM. ops_request
 * does this by itself unless the connection is in --json mode.
 */
int ops_sanitize_tree(cJSON *j);

/*
 * A copy of printed JSON that is safe on a terminal and still the same JSON: DEL and the C1
 * controls become \u escapes, bytes that are not UTF-8 become \ufffd. malloc'd, or NULL.
 */
char *ops_json_terminal_safe(const char *json);

/* Percent-encodes @s for a path segment or query value; malloc'd. */
char *ops_escape(struct ops_conn *c, const char *s);
/* "/v1/devices/<@addr percent-encoded><@suffix>"; malloc'd, NULL when out of memory. */
char *ops_device_path(struct ops_conn *c, const char *addr, const char *suffix);

/* Aligned text tables: add cells row by row, then print. Cells are copied. */
struct ops_table;
struct ops_table *ops_table_new(size_t n_cols, const char *const *headers);
void ops_table_add(struct ops_table *t, const char *const *cells);
void ops_table_print(struct ops_table *t, FILE *out);
void ops_table_free(struct ops_table *t);

/* Field helpers for printing; never NULL ("-" for missing/null). */
const char *ops_str(const cJSON *o, const char *key);
/* Integer field as text, "-" for missing/null. @buf of at least 24 bytes. */
const char *ops_int(const cJSON *o, const char *key, char *buf, size_t size);
double ops_num(const cJSON *o, const char *key, double dflt);
/* Unix ms to "YYYY-MM-DD HH:MM:SS" local time, "-" for null. */
const char *ops_time(const cJSON *o, const char *key, char *buf, size_t size);

/* Commands (ops.c, watch.c). */
int fotactl_devices(const struct fotactl_ctx *ctx, int argc, char **argv);
int fotactl_device(const struct fotactl_ctx *ctx, int argc, char **argv);
int fotactl_rollout(const struct fotactl_ctx *ctx, int argc, char **argv);
int fotactl_releases(const struct fotactl_ctx *ctx, int argc, char **argv);
int fotactl_pause(const struct fotactl_ctx *ctx, int argc, char **argv);
int fotactl_resume(const struct fotactl_ctx *ctx, int argc, char **argv);
int fotactl_retry(const struct fotactl_ctx *ctx, int argc, char **argv);
int fotactl_watch(const struct fotactl_ctx *ctx, int argc, char **argv);
extern const char fotactl_ops_usage[];
extern const char fotactl_watch_usage[];
