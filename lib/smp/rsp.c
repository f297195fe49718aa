/*
 * Every answer's common fields (rc, err, rsn) and an upload answer's off/match, read in one
 * pass over the payload without building libcbor items: this runs once per chunk, and
 * cbor_load() would allocate a tree for a map of two entries. The rules are cbor_load()'s
 * (RFC 8949 §3 well-formedness, definite or indefinite lengths, exactly one map filling the
 * payload), plus a nesting limit; the first of a repeated key counts.
 */
#include <errno.h>
#include <string.h>

#include "smp-private.h"

/* Deeper than any answer a device has reason to send: refused, not recursed into. */
#define MAX_DEPTH 32
#define BREAK 0xff

struct rd {
	const uint8_t *p;
	size_t left;
};

struct head {
	unsigned major;
	uint64_t arg;
	bool indefinite;
};

static int rd_head(struct rd *r, struct head *h)
{
	unsigned ai, n;
	uint64_t v = 0;

	if (r->left == 0)
		return -EBADMSG;
	/* libcbor 0.8, which reads every other answer, refuses one-byte tags 6..20 and simple
	 * values other than false/true/null/undefined: so do we, one rule for all answers. */
	if ((r->p[0] >= 0xc6 && r->p[0] <= 0xd4) || (r->p[0] >= 0xe0 && r->p[0] <= 0xf3) ||
	    r->p[0] == 0xf8)
		return -EBADMSG;
	h->major = r->p[0] >> 5;
	ai = r->p[0] & 0x1f;
	r->p++, r->left--;
	h->indefinite = false;
	if (ai < 24) {
		h->arg = ai;
		return 0;
	}
	if (ai == 31) {
		/* Only strings, arrays and maps have an indefinite form; a break is no item. */
		if (h->major < 2 || h->major > 5)
			return -EBADMSG;
		h->indefinite = true;
		return 0;
	}
	if (ai > 27)
		return -EBADMSG;
	n = 1u << (ai - 24);
	if (r->left < n)
		return -EBADMSG;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n, r->left -= n;
	h->arg = v;
	return 0;
}

/* At a break: consume it. For the item loops of indefinite containers. */
static bool rd_break(struct rd *r)
{
	if (r->left > 0 && r->p[0] == BREAK) {
		r->p++, r->left--;
		return true;
	}
	return false;
}

static int rd_bytes(struct rd *r, uint64_t n, const uint8_t **ret)
{
	if (n > r->left)
		return -EBADMSG;
	*ret = r->p;
	r->p += n, r->left -= (size_t) n;
	return 0;
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i++], lo = 0x80, hi = 0xbf;
		unsigned more;

		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			more = 1;
		else if (c >= 0xe0 && c <= 0xef)
			more = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		else if (c >= 0xf0 && c <= 0xf4)
			more = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		else
			return false;
		if (n - i < more)
			return false;
		for (unsigned k = 0; k < more; k++, lo = 0x80, hi = 0xbf)
			if (s[i + k] < lo || s[i + k] > hi)
				return false;
		i += more;
	}
	return true;
}

/*
 * A string's pieces, definite or chunked: @fn gets each. Chunks must be definite strings of
 * the same kind; text must be UTF-8 (libcbor refused an answer with a broken text anywhere).
 */
static int rd_string(struct rd *r, const struct head *h,
		     void (*fn)(const uint8_t *, size_t, void *), void *ctx)
{
	const uint8_t *b;
	struct head c;
	int e;

	if (!h->indefinite) {
		e = rd_bytes(r, h->arg, &b);
		if (e == 0 && h->major == 3 && !utf8_valid(b, (size_t) h->arg))
			e = -EBADMSG;
		if (e == 0 && fn)
			fn(b, (size_t) h->arg, ctx);
		return e;
	}
	while (!rd_break(r)) {
		e = rd_head(r, &c);
		if (e < 0)
			return e;
		if (c.major != h->major || c.indefinite)
			return -EBADMSG;
		e = rd_bytes(r, c.arg, &b);
		if (e == 0 && h->major == 3 && !utf8_valid(b, (size_t) c.arg))
			e = -EBADMSG;
		if (e < 0)
			return e;
		if (fn)
			fn(b, (size_t) c.arg, ctx);
	}
	return 0;
}

static int rd_skip(struct rd *r, unsigned depth);

/* The items of an array (@per == 1) or map (@per == 2) whose head is @h. */
static int rd_skip_items(struct rd *r, const struct head *h, unsigned per, unsigned depth)
{
	int e;

	if (h->indefinite) {
		while (!rd_break(r))
			for (unsigned k = 0; k < per; k++)
				if ((e = rd_skip(r, depth + 1)) < 0)
					return e;
		return 0;
	}
	/* Each item takes a byte at least: a count the payload cannot hold is a lie. */
	if (h->arg > r->left)
		return -EBADMSG;
	for (uint64_t i = 0; i < h->arg * per; i++)
		if ((e = rd_skip(r, depth + 1)) < 0)
			return e;
	return 0;
}

/* One whole item, checked for well-formedness and passed over. */
static int rd_skip(struct rd *r, unsigned depth)
{
	struct head h;
	int e;

	if (depth > MAX_DEPTH)
		return -EBADMSG;
	if (r->left > 0 && r->p[0] == BREAK)
		return -EBADMSG; /* a break outside an indefinite container */
	e = rd_head(r, &h);
	if (e < 0)
		return e;
	switch (h.major) {
	case 2:
	case 3:
		return rd_string(r, &h, NULL, NULL);
	case 4:
		return rd_skip_items(r, &h, 1, depth);
	case 5:
		return rd_skip_items(r, &h, 2, depth);
	case 6:
		return rd_skip(r, depth + 1); /* a tag's item */
	default:
		return 0; /* integers, simple values, floats: the head was all */
	}
}

/* ---- typed values ---- */

static int rd_uint(struct rd *r, uint64_t max, uint64_t *ret)
{
	struct head h;
	int e = rd_head(r, &h);

	if (e < 0)
		return e;
	if (h.major != 0 || h.arg > max)
		return -EBADMSG;
	*ret = h.arg;
	return 0;
}

static int rd_int(struct rd *r, int64_t *ret)
{
	struct head h;
	int e = rd_head(r, &h);

	if (e < 0)
		return e;
	if ((h.major != 0 && h.major != 1) || h.arg > INT64_MAX)
		return -EBADMSG;
	*ret = h.major == 0 ? (int64_t) h.arg : -1 - (int64_t) h.arg;
	return 0;
}

static int rd_bool(struct rd *r, bool *ret)
{
	if (r->left == 0 || (r->p[0] != 0xf4 && r->p[0] != 0xf5))
		return -EBADMSG;
	*ret = r->p[0] == 0xf5;
	r->p++, r->left--;
	return 0;
}

struct text {
	char *buf;
	size_t size, len;
	bool over;
};

static void text_piece(const uint8_t *b, size_t n, void *ctx)
{
	struct text *t = ctx;

	if (t->over || n > t->size - 1 - t->len) {
		t->over = true;
		return;
	}
	memcpy(t->buf + t->len, b, n);
	t->len += n;
}

/*
 * rsn: a reason too long for @size keeps its start when it came in one piece; a chunked one
 * too long is dropped whole (as smp_cbor_get_text() and the tree decoder had it).
 */
static int rd_rsn(struct rd *r, char *buf, size_t size)
{
	struct text t = {.buf = buf, .size = size};
	struct head h;
	int e = rd_head(r, &h);

	if (e < 0)
		return e;
	if (h.major != 3)
		return -EBADMSG;
	e = rd_string(r, &h, text_piece, &t);
	if (e < 0)
		return e;
	if (t.over && !h.indefinite) {
		memcpy(buf, r->p - h.arg, size - 1); /* the one piece ends where we are */
		t.len = size - 1;
	} else if (t.over) {
		t.len = 0;
	}
	buf[t.len] = '\0';
	return 0;
}

/* ---- maps ---- */

/* A map key: the index of @names it spells (a definite text string), or -1 (skipped). */
static int rd_key(struct rd *r, const char *const *names, int n, unsigned depth, int *ret)
{
	struct head h;
	const uint8_t *b = NULL;
	int e;

	*ret = -1;
	if (r->left == 0 || (r->p[0] >> 5) != 3 || (r->p[0] & 0x1f) == 31)
		return rd_skip(r, depth);
	e = rd_head(r, &h);
	if (e == 0)
		e = rd_bytes(r, h.arg, &b);
	if (e == 0 && !utf8_valid(b, (size_t) h.arg))
		e = -EBADMSG;
	if (e < 0)
		return e;
	for (int i = 0; i < n; i++)
		if (strlen(names[i]) == h.arg && memcmp(names[i], b, (size_t) h.arg) == 0)
			*ret = i;
	return 0;
}

/* A map's head; -EBADMSG if the item is no map. */
static int rd_map(struct rd *r, struct head *h)
{
	int e = rd_head(r, h);

	if (e < 0)
		return e;
	if (h->major != 5)
		return -EBADMSG;
	if (!h->indefinite && h->arg > r->left / 2)
		return -EBADMSG;
	return 0;
}

/* Next pair of map @h: true while there is one; @i counts them. */
static bool rd_more(struct rd *r, const struct head *h, uint64_t *i)
{
	if (h->indefinite)
		return !rd_break(r);
	return (*i)++ < h->arg;
}

/* err {group, rc}: both present, both 16-bit. */
static int rd_err(struct rd *r, unsigned depth, struct fgw_smp_status *st)
{
	static const char *const names[] = {"group", "rc"};
	bool seen[2] = {false, false};
	struct head h;
	uint64_t i = 0, v;
	int e, k;

	if ((e = rd_map(r, &h)) < 0)
		return e;
	while (rd_more(r, &h, &i)) {
		if ((e = rd_key(r, names, 2, depth + 1, &k)) < 0)
			return e;
		if (k < 0 || seen[k]) {
			if ((e = rd_skip(r, depth + 1)) < 0)
				return e;
			continue;
		}
		if ((e = rd_uint(r, UINT16_MAX, &v)) < 0)
			return e;
		seen[k] = true;
		if (k == 0)
			st->err_group = (uint16_t) v;
		else
			st->err_rc = (uint16_t) v;
	}
	if (!seen[0] || !seen[1])
		return -EBADMSG;
	st->has_err = true;
	return 0;
}

enum { K_RC, K_ERR, K_RSN, K_OFF, K_MATCH, K_N };

static int rd_field(struct rd *r, int k, struct fgw_smp_status *st, struct fgw_smp_upload_rsp *up)
{
	switch (k) {
	case K_RC:
		st->has_rc = true;
		return rd_int(r, &st->rc);
	case K_ERR:
		return rd_err(r, 1, st);
	case K_RSN:
		return rd_rsn(r, st->rsn, sizeof(st->rsn));
	case K_OFF:
		up->has_off = true;
		return rd_uint(r, UINT64_MAX, &up->off);
	case K_MATCH:
		up->has_match = true;
		return rd_bool(r, &up->match);
	}
	return -EBADMSG;
}

FGW_EXPORT int fgw_smp_rsp_decode(const uint8_t *payload, size_t len, struct fgw_smp_status *st,
				  struct fgw_smp_upload_rsp *up)
{
	static const char *const names[K_N] = {"rc", "err", "rsn", "off", "match"};
	struct fgw_smp_status s = {0};
	struct fgw_smp_upload_rsp u = {0};
	bool seen[K_N] = {false};
	struct rd r = {payload, len};
	struct head h;
	uint64_t i = 0;
	int e, k;

	if (!payload || len == 0)
		return -EBADMSG;
	if ((e = rd_map(&r, &h)) < 0)
		return e;
	while (rd_more(&r, &h, &i)) {
		if ((e = rd_key(&r, names, up ? K_N : K_OFF, 1, &k)) < 0)
			return e;
		if (k < 0 || seen[k])
			e = rd_skip(&r, 1);
		else
			e = rd_field(&r, k, &s, &u);
		if (e < 0)
			return e;
		if (k >= 0)
			seen[k] = true;
	}
	/* The payload is exactly one map: trailing bytes mean a framing error upstream. */
	if (r.left != 0)
		return -EBADMSG;
	if (st)
		*st = s;
	if (up)
		*up = u;
	return 0;
}
