#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "config.h"
#include "ops-client.h"
#include "util.h"

/* Answers of the API are small; a listing of 1,000 devices is a few hundred KiB. */
#define MAX_RESPONSE (32u * 1024 * 1024)

static void quiet_diag(const char *file, int line, const char *section, const char *key,
		       const char *message, void *user_data)
{
	if (user_data)
		fprintf(stderr, "fotactl: %s:%d: %s\n", file ? file : "config", line, message);
}

static char *url_from_config(const struct fgw_config *cfg)
{
	char *url = NULL;
	const char *host = cfg->api_listen && *cfg->api_listen ? cfg->api_listen : "127.0.0.1";
	bool v6 = strchr(host, ':') != NULL;

	/* A wildcard listen address is reached on loopback from the gateway itself. */
	if (strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	if (asprintf(&url, "http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", cfg->api_port) <
	    0)
		return NULL;
	return url;
}

int ops_conn_open(const struct fotactl_ctx *ctx, const struct ops_opts *o, struct ops_conn *ret)
{
	struct fgw_config cfg = {0};
	const char *explicit_config = o->config ? o->config : ctx->config;
	const char *config = explicit_config ? explicit_config : FOTACTL_DEFAULT_CONFIG;
	const char *url = o->url ? o->url : ctx->url;
	const char *token_file = o->token_file ? o->token_file : ctx->token_file;
	bool have_cfg = false;
	int r;

	*ret = (struct ops_conn){.json = o->json || ctx->json};
	/* The gateway's own config knows where its API listens and where its token is. */
	if (explicit_config || access(config, F_OK) == 0) {
		r = fgw_config_load_file(config, &cfg, quiet_diag,
					 explicit_config ? (void *) 1 : NULL);
		if (r < 0 && explicit_config) {
			fprintf(stderr, "fotactl: cannot use config '%s'\n", config);
			return FOTACTL_EXIT_USAGE;
		}
		have_cfg = r == 0;
	}
	if (url) {
		ret->url = strdup(url);
	} else if (have_cfg) {
		ret->url = url_from_config(&cfg);
	} else {
		ret->url = strdup("http://127.0.0.1:8370");
	}
	if (!token_file && !ctx->token && have_cfg && cfg.api_token_file && *cfg.api_token_file)
		token_file = cfg.api_token_file;
	if (ctx->token) {
		ret->token = strdup(ctx->token);
	} else if (token_file) {
		ret->token_file = strdup(token_file);
		ret->token_err = fgw_token_read(token_file, &ret->token);
	}
	fgw_config_done(&cfg);
	if (!ret->url || (token_file && !ret->token_file)) {
		ops_conn_close(ret);
		return FOTACTL_EXIT_FAILED;
	}
	while (strlen(ret->url) > 0 && ret->url[strlen(ret->url) - 1] == '/')
		ret->url[strlen(ret->url) - 1] = '\0';
	ret->curl = curl_easy_init();
	if (!ret->curl) {
		ops_conn_close(ret);
		return FOTACTL_EXIT_FAILED;
	}
	return 0;
}

void ops_conn_close(struct ops_conn *c)
{
	if (c->curl)
		curl_easy_cleanup(c->curl);
	if (c->token)
		explicit_bzero(c->token, strlen(c->token));
	free(c->token);
	free(c->token_file);
	free(c->url);
	*c = (struct ops_conn){0};
}

static size_t on_data(char *ptr, size_t size, size_t n, void *user_data)
{
	struct ops_body *b = user_data;
	size_t add = size * n;
	char *p;

	if (b->len + add > MAX_RESPONSE)
		return 0; /* curl reports a write error */
	p = realloc(b->data, b->len + add + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, ptr, add);
	b->data = p;
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

void ops_body_clear(struct ops_body *b)
{
	free(b->data);
	*b = (struct ops_body){0};
}

void ops_curl_setup(void *curl, const char *url, struct ops_body *b)
{
	CURL *h = curl;

	ops_body_clear(b);
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
}

int ops_request(struct ops_conn *c, const char *method, const char *path, const char *body,
		long *ret_status, cJSON **ret_json, char *err, size_t err_size)
{
	_cleanup_free_ char *url = NULL, *auth = NULL;
	struct curl_slist *hdrs = NULL;
	struct ops_body b = {0};
	CURLcode rc;
	CURL *h = c->curl;

	if (asprintf(&url, "%s%s", c->url, path) < 0)
		return -ENOMEM;
	ops_curl_setup(h, url, &b);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (strcmp(method, "POST") == 0 || strcmp(method, "DELETE") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
		if (strcmp(method, "DELETE") == 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
		hdrs = curl_slist_append(hdrs,
					 c->content_type && strcmp(c->content_type, "text/csv") == 0
					     ? "Content-Type: text/csv"
					     : "Content-Type: application/json");
		if (c->token) {
			if (asprintf(&auth, "Authorization: Bearer %s", c->token) < 0) {
				curl_slist_free_all(hdrs);
				return -ENOMEM;
			}
			hdrs = curl_slist_append(hdrs, auth);
		}
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(h);
	curl_slist_free_all(hdrs);
	if (auth)
		explicit_bzero(auth, strlen(auth));
	if (rc != CURLE_OK) {
		if (err)
			snprintf(err, err_size, "cannot reach fotagwd at %s: %s", c->url,
				 curl_easy_strerror(rc));
		free(b.data);
		return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_status);
	*ret_json = b.data ? cJSON_ParseWithLength(b.data, b.len) : NULL;
	free(b.data);
	/* For people, every text the gateway relays (device names, reasons, versions) is
	 * escaped before it can reach the terminal; --json output is made safe when printed,
	 * and an error's message goes to the terminal in both modes. */
	if ((!c->json || *ret_status < 200 || *ret_status > 299) && *ret_json &&
	    ops_sanitize_tree(*ret_json) < 0) {
		cJSON_Delete(*ret_json);
		*ret_json = NULL;
		return -ENOMEM;
	}
	return 0;
}

int ops_sanitize_tree(cJSON *j)
{
	for (cJSON *it = j; it; it = it->next) {
		if (cJSON_IsString(it) && it->valuestring &&
		    !fgw_text_is_clean(it->valuestring, strlen(it->valuestring))) {
			char *e = fgw_escape_dup(it->valuestring);

			if (!e)
				return -ENOMEM;
			free(it->valuestring);
			it->valuestring = e;
		}
		/* Keys are text from the wire too (a map of reasons, say). */
		if (it->string && !(it->type & cJSON_StringIsConst) &&
		    !fgw_text_is_clean(it->string, strlen(it->string))) {
			char *e = fgw_escape_dup(it->string);

			if (!e)
				return -ENOMEM;
			free(it->string);
			it->string = e;
		}
		if (it->child && ops_sanitize_tree(it->child) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Length of the UTF-8 sequence a lead byte announces (1 for ASCII and stray bytes). */
static size_t utf8_seq_len(unsigned char c)
{
	return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

char *ops_json_terminal_safe(const char *json)
{
	size_t len = strlen(json), n = 0;
	/* Worst case every byte becomes a six-byte \uXXXX escape. */
	char *out = malloc(len * 6 + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char) json[i];
		size_t sl = utf8_seq_len(c);

		if (c < 0x80 && c != 0x7f) {
			out[n++] = (char) c;
			i++;
		} else if (sl > 1 && i + sl <= len && fgw_text_is_clean(json + i, sl)) {
			memcpy(out + n, json + i, sl);
			n += sl;
			i += sl;
		} else if (c == 0x7f ||
			   (c == 0xc2 && i + 1 < len && (unsigned char) json[i + 1] >= 0x80 &&
			    (unsigned char) json[i + 1] <= 0x9f)) {
			/* DEL and the C1 controls: the same code point, as a JSON escape. */
			unsigned cp = c == 0x7f ? 0x7f : (unsigned char) json[i + 1];
			n += (size_t) sprintf(out + n, "\\u%04x", cp);
			i += c == 0x7f ? 1 : 2;
		} else {
			/* Not UTF-8 at all (JSON must be): the replacement character. */
			n += (size_t) sprintf(out + n, "\\ufffd");
			i++;
		}
	}
	out[n] = '\0';
	return out;
}

bool ops_common_opt(int c, struct ops_opts *o)
{
	switch (c) {
	case OPS_OPT_URL:
		o->url = optarg;
		return true;
	case OPS_OPT_TOKEN_FILE:
		o->token_file = optarg;
		return true;
	case OPS_OPT_CONFIG:
		o->config = optarg;
		return true;
	case OPS_OPT_JSON:
		o->json = true;
		return true;
	}
	return false;
}

static void say_no_token(const struct ops_conn *c, const char *what)
{
	if (!c->token_file) {
		fprintf(stderr,
			"fotactl: %s needs the API token: give --token-file FILE (or set "
			"[api] token_file in the gateway config)\n",
			what);
		return;
	}
	fprintf(stderr, "fotactl: cannot read token file '%s': %s\n", c->token_file,
		c->token_err == -EINVAL ? "not a token (16 to 4096 visible ASCII characters)"
		: c->token_err == -EPERM
		    ? "others can read it (a token must be secret: chmod o-rwx it)"
		    : strerror(-c->token_err));
}

int ops_change(struct ops_conn *c, const char *method, const char *path, const char *body,
	       const char *what, cJSON **ret)
{
	char err[512];
	long status = 0;
	cJSON *j = NULL, *errors;
	const cJSON *e;

	*ret = NULL;
	if (!c->token) {
		say_no_token(c, what);
		return FOTACTL_EXIT_FAILED;
	}
	if (ops_request(c, method, path, body, &status, &j, err, sizeof(err)) < 0) {
		fprintf(stderr, "fotactl: %s\n", err);
		return FOTACTL_EXIT_FAILED;
	}
	if (status >= 200 && status <= 299) {
		*ret = j;
		return 0;
	}
	/* the gateway's messages: already escaped for the terminal by ops_request */
	errors = cJSON_GetObjectItemCaseSensitive(j, "errors");
	if (cJSON_IsArray(errors))
		cJSON_ArrayForEach(e, errors)
		{
			if (cJSON_IsString(e))
				fprintf(stderr, "fotactl: %s\n", e->valuestring);
		}
	fprintf(stderr, "fotactl: %s refused: HTTP %ld: %s\n", what, status, ops_str(j, "message"));
	cJSON_Delete(j);
	return FOTACTL_EXIT_FAILED;
}

cJSON *ops_get(struct ops_conn *c, const char *path)
{
	char err[512];
	long status = 0;
	cJSON *j = NULL;

	if (ops_request(c, "GET", path, NULL, &status, &j, err, sizeof(err)) < 0) {
		fprintf(stderr, "fotactl: %s\n", err);
		return NULL;
	}
	if (status != 200 || !j) {
		fprintf(stderr, "fotactl: GET %s: HTTP %ld: %s\n", path, status,
			ops_str(j, "message"));
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

char *ops_escape(struct ops_conn *c, const char *s)
{
	char *e = curl_easy_escape(c->curl, s, 0);
	char *r = e ? strdup(e) : NULL;

	curl_free(e);
	return r;
}

char *ops_device_path(struct ops_conn *c, const char *addr, const char *suffix)
{
	_cleanup_free_ char *e = ops_escape(c, addr);
	char *path;

	if (!e || asprintf(&path, "/v1/devices/%s%s", e, suffix) < 0)
		return NULL;
	return path;
}

/* ---- tables ---- */

struct ops_table {
	size_t n_cols, n_rows;
	char **cells; /* n_rows * n_cols, row 0 = headers */
};

struct ops_table *ops_table_new(size_t n_cols, const char *const *headers)
{
	struct ops_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->n_cols = n_cols;
	ops_table_add(t, headers);
	return t;
}

void ops_table_add(struct ops_table *t, const char *const *cells)
{
	char **p;

	if (!t)
		return;
	p = realloc(t->cells, (t->n_rows + 1) * t->n_cols * sizeof(char *));
	if (!p)
		return;
	t->cells = p;
	for (size_t i = 0; i < t->n_cols; i++)
		p[t->n_rows * t->n_cols + i] = strdup(cells[i] ? cells[i] : "-");
	t->n_rows++;
}

void ops_table_print(struct ops_table *t, FILE *out)
{
	size_t w[32] = {0};

	if (!t || t->n_cols > ARRAY_SIZE(w))
		return;
	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t i = 0; i < t->n_cols; i++) {
			const char *s = t->cells[r * t->n_cols + i];
			w[i] = FGW_MAX(w[i], s ? strlen(s) : 1);
		}
	for (size_t r = 0; r < t->n_rows; r++) {
		for (size_t i = 0; i < t->n_cols; i++) {
			const char *s = t->cells[r * t->n_cols + i];
			/* The last column is not padded: no trailing blanks. */
			if (i + 1 == t->n_cols)
				fprintf(out, "%s", s ? s : "?");
			else
				fprintf(out, "%-*s  ", (int) w[i], s ? s : "?");
		}
		fputc('\n', out);
	}
}

void ops_table_free(struct ops_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

/* ---- fields ---- */

const char *ops_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : "-";
}

const char *ops_int(const cJSON *o, const char *key, char *buf, size_t size)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(v))
		return "-";
	snprintf(buf, size, "%.0f", v->valuedouble);
	return buf;
}

double ops_num(const cJSON *o, const char *key, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

const char *ops_time(const cJSON *o, const char *key, char *buf, size_t size)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	time_t t;
	struct tm tm;

	if (!cJSON_IsNumber(v))
		return "-";
	t = (time_t) (v->valuedouble / 1000.0);
	if (!localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		return "-";
	return buf;
}
