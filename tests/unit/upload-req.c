/* The tests' strict reader of upload requests (upload-req.h), written from RFC 8949 §3. */
#include <string.h>

#include "upload-req.h"

struct rd {
	const uint8_t *p;
	size_t left;
};

/* One head: major type and argument; the argument at its shortest form or -1. */
static int head(struct rd *r, unsigned *major, uint64_t *arg)
{
	unsigned ai, n;
	uint64_t v = 0;

	if (r->left < 1)
		return -1;
	*major = r->p[0] >> 5;
	ai = r->p[0] & 0x1f;
	r->p++, r->left--;
	if (ai < 24) {
		*arg = ai;
		return 0;
	}
	if (ai > 27)
		return -1; /* indefinite or reserved: not what an SMP encoder writes */
	n = 1u << (ai - 24);
	if (r->left < n)
		return -1;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n, r->left -= n;
	/* shortest form: each width only for values the narrower one cannot hold */
	if ((n == 1 && v < 24) || (n == 2 && v <= 0xff) || (n == 4 && v <= 0xffff) ||
	    (n == 8 && v <= 0xffffffffu))
		return -1;
	*arg = v;
	return 0;
}

static int uint_of(struct rd *r, uint64_t *ret)
{
	unsigned m;

	return head(r, &m, ret) == 0 && m == 0 ? 0 : -1;
}

static int bytes_of(struct rd *r, const uint8_t **ret, size_t *ret_len)
{
	unsigned m;
	uint64_t n;

	if (head(r, &m, &n) < 0 || m != 2 || n > r->left)
		return -1;
	*ret = r->p;
	*ret_len = (size_t) n;
	r->p += n, r->left -= n;
	return 0;
}

static int value(struct rd *r, char key, struct upload_req *q)
{
	const uint8_t *b;
	uint64_t u;
	size_t n;

	switch (key) {
	case 'i':
		if (uint_of(r, &u) < 0 || u > UINT32_MAX)
			return -1;
		q->image = (uint32_t) u, q->has_image = true;
		return 0;
	case 'l':
		q->has_len = true;
		return uint_of(r, &q->len);
	case 'o':
		q->has_off = true;
		return uint_of(r, &q->off);
	case 's':
		if (bytes_of(r, &b, &n) < 0 || n > sizeof(q->sha))
			return -1;
		memcpy(q->sha, b, n);
		q->sha_len = n, q->has_sha = true;
		return 0;
	case 'u':
		if (r->left < 1 || (r->p[0] != 0xf4 && r->p[0] != 0xf5))
			return -1;
		q->upgrade = r->p[0] == 0xf5, q->has_upgrade = true;
		r->p++, r->left--;
		return 0;
	case 'd':
		q->has_data = true;
		return bytes_of(r, &q->data, &q->data_len);
	}
	return -1;
}

int upload_req_decode(const uint8_t *payload, size_t len, struct upload_req *ret)
{
	static const struct {
		const char *name;
		char key;
	} keys[] = {{"image", 'i'}, {"len", 'l'},     {"off", 'o'},
		    {"sha", 's'},   {"upgrade", 'u'}, {"data", 'd'}};
	struct rd r = {payload, len};
	struct upload_req q = {0};
	unsigned m;
	uint64_t pairs, n;

	if (head(&r, &m, &pairs) < 0 || m != 5 || pairs > 6)
		return -1;
	for (uint64_t i = 0; i < pairs; i++) {
		char key = 0;

		if (head(&r, &m, &n) < 0 || m != 3 || n > r.left)
			return -1;
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (strlen(keys[k].name) == n && !memcmp(keys[k].name, r.p, n))
				key = keys[k].key;
		if (!key || strchr(q.order, key))
			return -1;
		q.order[strlen(q.order)] = key;
		r.p += n, r.left -= n;
		if (value(&r, key, &q) < 0)
			return -1;
	}
	if (r.left != 0)
		return -1;
	*ret = q;
	return 0;
}
