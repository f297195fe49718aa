/*
 * The enrollment CSV of POST /v1/devices/import (and so of `fotactl devices import`): a header
 * line naming the columns (address, passkey, board, group, label; address required, any
 * order), then one device per line. Quoted fields ("a, b", "" for a quote) are understood;
 * a quote cannot span lines. Every bad line gets one error with its line number, and none of
 * the file is taken then. No message repeats a field's value: a passkey never travels back,
 * and nothing a file holds reaches a terminal unescaped.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-private.h"
#include "util.h"

enum col { COL_ADDRESS, COL_PASSKEY, COL_BOARD, COL_GROUP, COL_LABEL, _COL_MAX };

static const char *const col_names[_COL_MAX] = {"address", "passkey", "board", "group", "label"};

#define MAX_FIELDS 16
#define FIELD_MAX 64 /* bytes with the NUL, as the store keeps them */

struct line_fields {
	char f[MAX_FIELDS][FIELD_MAX];
	size_t n;
	bool too_long[MAX_FIELDS];
};

static int add_error(struct api_csv_result *res, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int add_error(struct api_csv_result *res, int line, const char *fmt, ...)
{
	char msg[160];
	int n;
	va_list ap;

	res->total_errors++;
	if (res->n_errors >= API_CSV_MAX_ERRORS)
		return 0;
	n = snprintf(msg, sizeof(msg), "line %d: ", line);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t) n, fmt, ap);
	va_end(ap);
	res->errors[res->n_errors] = strdup(msg);
	if (!res->errors[res->n_errors])
		return -ENOMEM;
	res->n_errors++;
	return 0;
}

static void trim(char *s)
{
	size_t len = strlen(s), i = 0;

	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		s[--len] = '\0';
	while (s[i] == ' ' || s[i] == '\t')
		i++;
	if (i > 0)
		memmove(s, s + i, len - i + 1);
}

/* Splits one line (without its end) into fields; a message on a malformed line. */
static const char *split(const char *p, const char *end, struct line_fields *lf)
{
	*lf = (struct line_fields){0};
	for (;;) {
		char *out = lf->f[lf->n];
		size_t len = 0;
		bool quoted = false;

		if (lf->n == MAX_FIELDS)
			return "too many fields";
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p < end && *p == '"') {
			quoted = true;
			for (p++;; p++) {
				if (p == end)
					return "a quoted field is not closed on its line";
				if (*p == '"') {
					if (p + 1 < end && p[1] == '"')
						p++;
					else
						break;
				}
				if (len + 1 < FIELD_MAX)
					out[len++] = *p;
				else
					lf->too_long[lf->n] = true;
			}
			p++;
			while (p < end && (*p == ' ' || *p == '\t'))
				p++;
			if (p < end && *p != ',')
				return "text after a quoted field";
		} else {
			for (; p < end && *p != ','; p++) {
				if (*p == '"')
					return "a quote inside an unquoted field";
				if (len + 1 < FIELD_MAX)
					out[len++] = *p;
				else
					lf->too_long[lf->n] = true;
			}
		}
		out[len] = '\0';
		if (!quoted)
			trim(out);
		lf->n++;
		if (p == end)
			return NULL;
		p++; /* the comma */
	}
}

static int parse_header(const struct line_fields *lf, int map[_COL_MAX], char *why, size_t size)
{
	for (int c = 0; c < _COL_MAX; c++)
		map[c] = -1;
	for (size_t i = 0; i < lf->n; i++) {
		int c = 0;
		while (c < _COL_MAX && strcasecmp(lf->f[i], col_names[c]) != 0)
			c++;
		if (c == _COL_MAX) {
			snprintf(why, size,
				 "column %zu of the header is not one of address, passkey, board, "
				 "group, label",
				 i + 1);
			return -EINVAL;
		}
		if (map[c] >= 0) {
			snprintf(why, size, "column '%s' named twice in the header", col_names[c]);
			return -EINVAL;
		}
		map[c] = (int) i;
	}
	if (map[COL_ADDRESS] < 0) {
		snprintf(why, size, "the header has no 'address' column");
		return -EINVAL;
	}
	return 0;
}

static int parse_passkey(const char *s, uint32_t *ret)
{
	uint32_t v = 0;

	if (strlen(s) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (!isdigit((unsigned char) s[i]))
			return -EINVAL;
		v = v * 10 + (uint32_t) (s[i] - '0');
	}
	*ret = v;
	return 0;
}

/* The row's fields into @row; a message for the first problem. */
static const char *parse_row(const struct line_fields *lf, const int map[_COL_MAX],
			     struct api_enroll_row *row)
{
	char *text[_COL_MAX] = {NULL, NULL, row->board, row->group, row->label};

	for (int c = 0; c < _COL_MAX; c++)
		if (map[c] >= 0 && lf->too_long[map[c]])
			return c == COL_PASSKEY ? "passkey must be six digits"
						: "a field is longer than 63 bytes";
	if (fgw_address_normalize(lf->f[map[COL_ADDRESS]], row->address) < 0)
		return "address is neither a BLE address (AA:BB:CC:DD:EE:FF) nor udp:HOST:PORT";
	if (map[COL_PASSKEY] >= 0 && lf->f[map[COL_PASSKEY]][0]) {
		if (parse_passkey(lf->f[map[COL_PASSKEY]], &row->passkey) < 0)
			return "passkey must be six digits";
		row->has_passkey = true;
	}
	for (int c = COL_BOARD; c < _COL_MAX; c++) {
		const char *v = map[c] >= 0 ? lf->f[map[c]] : "";
		if (!fgw_text_is_clean(v, strlen(v)))
			return c == COL_BOARD	? "board has control or non-UTF-8 characters"
			       : c == COL_GROUP ? "group has control or non-UTF-8 characters"
						: "label has control or non-UTF-8 characters";
		snprintf(text[c], FIELD_MAX, "%s", v);
	}
	return NULL;
}

static int add_row(struct api_csv_result *res, const struct api_enroll_row *row)
{
	if (res->n == res->cap) {
		size_t cap = res->cap ? res->cap * 2 : 64;
		struct api_enroll_row *r = realloc(res->rows, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		res->rows = r;
		res->cap = cap;
	}
	res->rows[res->n++] = *row;
	return 0;
}

static int duplicate_of(const struct api_csv_result *res, const char *address)
{
	for (size_t i = 0; i < res->n; i++)
		if (strcmp(res->rows[i].address, address) == 0)
			return res->rows[i].line;
	return 0;
}

static int one_line(struct api_csv_result *res, int lineno, const char *p, const char *end,
		    int map[_COL_MAX], bool *have_header)
{
	struct line_fields lf;
	struct api_enroll_row row = {.line = lineno};
	const char *why;
	char hwhy[128];
	int dup;

	why = split(p, end, &lf);
	if (why && !*have_header)
		*have_header = res->bad_header = true;
	if (why)
		return add_error(res, lineno, "%s", why);
	if (!*have_header) {
		*have_header = true;
		if (parse_header(&lf, map, hwhy, sizeof(hwhy)) < 0) {
			res->bad_header = true;
			return add_error(res, lineno, "%s", hwhy);
		}
		return 0;
	}
	if (res->bad_header)
		return 0;
	if (lf.n != (size_t) res->n_columns)
		return add_error(res, lineno, "%zu fields, the header has %d", lf.n,
				 res->n_columns);
	why = parse_row(&lf, map, &row);
	if (why)
		return add_error(res, lineno, "%s", why);
	dup = duplicate_of(res, row.address);
	if (dup)
		return add_error(res, lineno, "the same address as line %d", dup);
	if (res->n >= API_CSV_MAX_ROWS)
		return add_error(res, lineno, "more than %d devices in one file", API_CSV_MAX_ROWS);
	return add_row(res, &row);
}

static bool blank(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t')
			return false;
	return true;
}

int api_enroll_csv_parse(const char *text, size_t len, struct api_csv_result *res)
{
	const char *p = text, *end = text + len;
	int map[_COL_MAX], lineno = 0, r = 0;
	bool have_header = false;

	*res = (struct api_csv_result){0};
	while (p < end && r >= 0) {
		const char *nl = memchr(p, '\n', (size_t) (end - p));
		const char *eol = nl ? nl : end;

		lineno++;
		if (eol > p && eol[-1] == '\r')
			eol--;
		if (eol > p && memchr(p, 0, (size_t) (eol - p)))
			r = add_error(res, lineno, "a NUL byte");
		else if (!blank(p, eol))
			r = one_line(res, lineno, p, eol, map, &have_header);
		if (have_header && res->n_columns == 0 && !res->bad_header) {
			res->n_columns = 0;
			for (int c = 0; c < _COL_MAX; c++)
				res->n_columns += map[c] >= 0;
		}
		p = nl ? nl + 1 : end;
	}
	if (r >= 0 && !have_header)
		r = add_error(res, 1, "empty file: a header line (address,passkey,...) is needed");
	if (r >= 0 && res->total_errors == 0 && res->n == 0)
		r = add_error(res, lineno, "no device after the header");
	if (r < 0) {
		api_csv_result_done(res);
		return r;
	}
	return res->total_errors ? -EINVAL : 0;
}

void api_csv_result_done(struct api_csv_result *res)
{
	for (size_t i = 0; i < res->n_errors; i++)
		free(res->errors[i]);
	free(res->rows);
	explicit_bzero(res, sizeof(*res));
}
