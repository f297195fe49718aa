/*
 * A JSON writer that appends straight into the response buffer: no tree to build, print and
 * free. Its output is byte for byte what cJSON_PrintUnformatted() gives for the same values
 * (clients and tests compare answers), but a device page costs a fraction of the work, which
 * is what keeps big reads from holding the loop while uploads wait.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "handlers.h"
#include "util.h"

/* The biggest answer is a page of API_MAX_LIMIT devices (about 0.5 MB); this stops a runaway. */
#define JW_MAX_BYTES (32u * 1024 * 1024)

static bool jw_reserve(struct api_jw *w, size_t n)
{
	if (!w->failed && !fgw_buf_grow(&w->buf, &w->cap, w->len + n + 1, JW_MAX_BYTES))
		w->failed = true;
	return !w->failed;
}

static void jw_append(struct api_jw *w, const char *s, size_t n)
{
	if (!jw_reserve(w, n))
		return;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

/* Escapes like cJSON: the six short escapes, other C0 controls as \u00xx, all else as is. */
static void jw_string(struct api_jw *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(s);
	char *o;

	/* worst case: every byte becomes \u00xx */
	if (!jw_reserve(w, 6 * n + 2))
		return;
	o = w->buf + w->len;
	*o++ = '"';
	for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
		unsigned char c = *p;

		if (c >= 32 && c != '"' && c != '\\') {
			*o++ = (char) c;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"':
		case '\\':
			*o++ = (char) c;
			break;
		case '\b':
			*o++ = 'b';
			break;
		case '\f':
			*o++ = 'f';
			break;
		case '\n':
			*o++ = 'n';
			break;
		case '\r':
			*o++ = 'r';
			break;
		case '\t':
			*o++ = 't';
			break;
		default:
			memcpy(o, "u00", 3);
			o[3] = hex[c >> 4];
			o[4] = hex[c & 15];
			o += 5;
			break;
		}
	}
	*o++ = '"';
	*o = '\0';
	w->len = (size_t) (o - w->buf);
}

/* The comma before a value and its key; every value goes through here first. */
static void jw_key(struct api_jw *w, const char *key)
{
	if (w->more)
		jw_append(w, ",", 1);
	w->more = true;
	if (key) {
		/* Keys are the handlers' own literals: nothing to escape, so copied as they are. */
		size_t n = strlen(key);

		if (!jw_reserve(w, n + 3))
			return;
		w->buf[w->len++] = '"';
		memcpy(w->buf + w->len, key, n);
		w->len += n;
		memcpy(w->buf + w->len, "\":", 3); /* with the NUL */
		w->len += 2;
	}
}

void api_jw_open(struct api_jw *w, const char *key, char bracket)
{
	jw_key(w, key);
	jw_append(w, &bracket, 1);
	w->more = false;
}

void api_jw_close(struct api_jw *w, char bracket)
{
	jw_append(w, &bracket, 1);
	w->more = true;
}

void api_jw_str(struct api_jw *w, const char *key, const char *v)
{
	jw_key(w, key);
	if (v)
		jw_string(w, v);
	else
		jw_append(w, "null", 4);
}

void api_jw_int(struct api_jw *w, const char *key, int64_t v)
{
	char text[24], *p = text + sizeof(text);
	uint64_t u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;

	jw_key(w, key);
	if (v == FGW_STORE_NULL) {
		jw_append(w, "null", 4);
		return;
	}
	/* by hand: snprintf was a fifth of a device page's cost */
	do {
		*--p = (char) ('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	jw_append(w, p, (size_t) (text + sizeof(text) - p));
}

void api_jw_num(struct api_jw *w, const char *key, double v)
{
	char text[32];
	double back;
	int n;

	jw_key(w, key);
	if (!isfinite(v)) {
		jw_append(w, "null", 4);
		return;
	}
	/* cJSON's rule (1.7.15): 15 significant digits, or 17 if 15 do not read back as @v */
	n = snprintf(text, sizeof(text), "%1.15g", v);
	back = strtod(text, NULL);
	if (fabs(back - v) > fmax(fabs(back), fabs(v)) * DBL_EPSILON)
		n = snprintf(text, sizeof(text), "%1.17g", v);
	jw_append(w, text, (size_t) n);
}

void api_jw_bool(struct api_jw *w, const char *key, bool v)
{
	jw_key(w, key);
	jw_append(w, v ? "true" : "false", v ? 4 : 5);
}

void api_jw_null(struct api_jw *w, const char *key)
{
	jw_key(w, key);
	jw_append(w, "null", 4);
}

void api_jw_json_text(struct api_jw *w, const char *key, const char *text)
{
	cJSON *v = text ? cJSON_Parse(text) : NULL;
	char *compact = v ? cJSON_PrintUnformatted(v) : NULL;

	jw_key(w, key);
	if (compact)
		jw_append(w, compact, strlen(compact));
	else if (v)
		w->failed = true; /* parsed, but no memory to print it */
	else
		jw_append(w, "null", 4);
	cJSON_Delete(v);
	free(compact);
}

void api_jw_reply(struct api_jw *w, struct api_response *resp, unsigned status)
{
	if (w->failed || !w->buf) {
		free(w->buf);
		*w = (struct api_jw){0};
		api_error(resp, 500, "internal", "out of memory");
		return;
	}
	*resp = (struct api_response){
	    .status = status,
	    .body = w->buf,
	    .len = w->len,
	    .content_type = "application/json",
	};
	*w = (struct api_jw){0};
}

void api_jw_done(struct api_jw *w)
{
	free(w->buf);
	*w = (struct api_jw){0};
}
