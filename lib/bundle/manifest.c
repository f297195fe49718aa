/* The signed release manifest: parsing with every field validated, signature, freshness. */
#define _GNU_SOURCE /* asprintf, memmem, strndup */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bundle-private.h"
#include "util.h"

static const char *const reason_names[_FGW_REJECT_REASON_MAX] = {
    [FGW_REJECT_NONE] = "none",
    [FGW_REJECT_MALFORMED_MANIFEST] = "malformed-manifest",
    [FGW_REJECT_BAD_SIGNATURE] = "bad-signature",
    [FGW_REJECT_UNKNOWN_KEY] = "unknown-key",
    [FGW_REJECT_ROLLBACK] = "rollback",
    [FGW_REJECT_EXPIRED] = "expired",
    [FGW_REJECT_ID_REUSED] = "id-reused",
    [FGW_REJECT_OVERSIZE] = "oversize",
    [FGW_REJECT_SIZE_MISMATCH] = "size-mismatch",
    [FGW_REJECT_SHA_MISMATCH] = "sha-mismatch",
    [FGW_REJECT_BAD_ZIP] = "bad-zip",
    [FGW_REJECT_ZIP_PATH] = "zip-path",
    [FGW_REJECT_ZIP_LIMIT] = "zip-limit",
    [FGW_REJECT_BAD_NCS_MANIFEST] = "bad-ncs-manifest",
    [FGW_REJECT_MISSING_IMAGE] = "missing-image",
    [FGW_REJECT_BAD_MAGIC] = "bad-mcuboot-magic",
    [FGW_REJECT_BAD_HEADER] = "bad-mcuboot-header",
    [FGW_REJECT_BAD_TLV] = "bad-tlv",
    [FGW_REJECT_HASH_MISMATCH] = "hash-mismatch",
    [FGW_REJECT_BAD_IMAGE_SIGNATURE] = "bad-image-signature",
    [FGW_REJECT_VERSION_MISMATCH] = "version-mismatch",
    [FGW_REJECT_BOARD_MISMATCH] = "board-mismatch",
    [FGW_REJECT_WRONG_CHANNEL] = "wrong-channel",
    [FGW_REJECT_IO] = "io-error",
};

FGW_EXPORT const char *fgw_reject_reason_to_string(enum fgw_reject_reason r)
{
	return FGW_ENUM_NAME(reason_names, r);
}

static const char *const mode_names[_FGW_ROLLOUT_MODE_MAX] = {
    [FGW_ROLLOUT_MODE_TEST_CONFIRM] = "test-confirm",
    [FGW_ROLLOUT_MODE_CONFIRM] = "confirm",
};

static enum fgw_rollout_mode rollout_mode_from_string(const char *s)
{
	int v = FGW_ENUM_VALUE(mode_names, s);

	return v < 0 ? _FGW_ROLLOUT_MODE_INVALID : (enum fgw_rollout_mode) v;
}

/* ---- versions ---- */

static int parse_uint(const char **p, uint64_t max, uint64_t *ret)
{
	const char *s = *p;
	uint64_t v = 0;
	int n = 0;

	while (isdigit((unsigned char) *s)) {
		if (++n > 10)
			return -ERANGE;
		v = v * 10 + (uint64_t) (*s - '0');
		s++;
	}
	if (n == 0)
		return -EINVAL;
	if (v > max)
		return -ERANGE;
	*p = s;
	*ret = v;
	return 0;
}

FGW_EXPORT int fgw_image_version_parse(const char *s, struct fgw_image_version *ret)
{
	static const uint64_t max[3] = {UINT8_MAX, UINT8_MAX, UINT16_MAX};
	uint64_t part[4] = {0};
	int r;

	if (!s)
		return -EINVAL;
	for (int i = 0; i < 3; i++) {
		r = parse_uint(&s, max[i], &part[i]);
		if (r < 0)
			return r;
		if (*s != '.')
			break;
		if (i == 2)
			return -EINVAL;
		s++;
	}
	if (*s == '+') {
		s++;
		r = parse_uint(&s, UINT32_MAX, &part[3]);
		if (r < 0)
			return r;
	}
	if (*s != '\0')
		return -EINVAL;
	*ret = (struct fgw_image_version){(uint8_t) part[0], (uint8_t) part[1], (uint16_t) part[2],
					  (uint32_t) part[3]};
	return 0;
}

FGW_EXPORT char *fgw_image_version_format(const struct fgw_image_version *v, char *buf)
{
	snprintf(buf, FGW_IMAGE_VERSION_STRLEN, "%u.%u.%u+%u", v->major, v->minor, v->revision,
		 v->build);
	return buf;
}

FGW_EXPORT int fgw_image_version_compare(const struct fgw_image_version *a,
					 const struct fgw_image_version *b)
{
	uint64_t ka = (uint64_t) a->major << 56 | (uint64_t) a->minor << 48 |
		      (uint64_t) a->revision << 32 | a->build;
	uint64_t kb = (uint64_t) b->major << 56 | (uint64_t) b->minor << 48 |
		      (uint64_t) b->revision << 32 | b->build;
	return ka < kb ? -1 : ka > kb;
}

/* ---- RFC 3339 ---- */

static int digits(const char **p, int n, int *ret)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char) (*p)[i]))
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*ret = v;
	return 0;
}

static int expect_char(const char **p, const char *set)
{
	if (!**p || !strchr(set, **p))
		return -EINVAL;
	(*p)++;
	return 0;
}

FGW_EXPORT int fgw_rfc3339_parse(const char *s, int64_t *ret)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	struct tm tm = {0};
	time_t t;

	if (!s || digits(&s, 4, &y) < 0 || expect_char(&s, "-") < 0 || digits(&s, 2, &mo) < 0 ||
	    expect_char(&s, "-") < 0 || digits(&s, 2, &d) < 0 || expect_char(&s, "Tt") < 0 ||
	    digits(&s, 2, &h) < 0 || expect_char(&s, ":") < 0 || digits(&s, 2, &mi) < 0 ||
	    expect_char(&s, ":") < 0 || digits(&s, 2, &sec) < 0)
		return -EINVAL;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char) *s))
			return -EINVAL;
		for (int n = 0; isdigit((unsigned char) *s); n++, s++)
			if (n >= 9)
				return -EINVAL;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s == '+' ? 1 : -1;
		s++;
		if (digits(&s, 2, &oh) < 0 || expect_char(&s, ":") < 0 || digits(&s, 2, &om) < 0)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*s)
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60 ||
	    oh > 23 || om > 59)
		return -EINVAL;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second is as good as the second before */
	t = timegm(&tm);
	*ret = (int64_t) t - sign * (oh * 3600 + om * 60);
	return 0;
}

/* ---- parsing ---- */

#define MALFORMED(detail) reject(why, -EBADMSG, FGW_REJECT_MALFORMED_MANIFEST, -1, detail)

static bool charset_ok(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char) s[i]) && !strchr(extra, s[i]))
			return false;
	return true;
}

static bool url_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > FGW_MANIFEST_MAX_URL)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
			return false;
	return true;
}

/* Two members of one object with the same name: which one a reader takes is ambiguous. */
static bool has_duplicate_keys(const cJSON *node, int depth)
{
	size_t n = 0;

	if (depth > 16)
		return true; /* no manifest is that deep; treat as malformed */
	for (const cJSON *c = node ? node->child : NULL; c; c = c->next) {
		/* bounds the quadratic scan below; no manifest object has that many members */
		if (cJSON_IsObject(node) && ++n > 256)
			return true;
		if (cJSON_IsObject(node))
			for (const cJSON *d = c->next; d; d = d->next)
				if (c->string && d->string && strcmp(c->string, d->string) == 0)
					return true;
		if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && has_duplicate_keys(c, depth + 1))
			return true;
	}
	return false;
}

static int get_int(const cJSON *obj, const char *name, int64_t min, int64_t max, bool required,
		   int64_t def, int64_t *ret)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	double v;

	if (!it) {
		if (required)
			return -ENOENT;
		*ret = def;
		return 0;
	}
	if (!cJSON_IsNumber(it))
		return -EINVAL;
	v = it->valuedouble;
	if (!isfinite(v) || v != floor(v) || v < (double) min || v > (double) max)
		return -ERANGE;
	*ret = (int64_t) v;
	return 0;
}

static const char *get_string(const cJSON *obj, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int dup_to(char **dst, const char *s)
{
	*dst = strdup(s);
	return *dst ? 0 : -ENOMEM;
}

static int parse_policy(const cJSON *p, struct fgw_release_policy *ret, char **ret_json,
			struct fgw_reject *why)
{
	struct fgw_release_policy pol = {.canary_percent = 10,
					 .max_failure_rate = 0.2,
					 .max_concurrent = 4,
					 .allow_downgrade = true};
	const cJSON *rate, *down;
	cJSON *out;
	int64_t v;

	if (!cJSON_IsObject(p))
		return MALFORMED("release policy missing or not an object");
	pol.mode = rollout_mode_from_string(get_string(p, "mode"));
	if (pol.mode < 0)
		return MALFORMED("policy.mode must be \"test-confirm\" or \"confirm\"");
	if (get_int(p, "canary_percent", 0, 100, false, 10, &v) < 0)
		return MALFORMED("policy.canary_percent must be an integer 0..100");
	pol.canary_percent = (int) v;
	if (get_int(p, "max_concurrent", 1, 1000, false, 4, &v) < 0)
		return MALFORMED("policy.max_concurrent must be an integer 1..1000");
	pol.max_concurrent = (int) v;
	down = cJSON_GetObjectItemCaseSensitive(p, "allow_downgrade");
	if (down) {
		if (!cJSON_IsBool(down))
			return MALFORMED("policy.allow_downgrade must be true or false");
		pol.allow_downgrade = cJSON_IsTrue(down);
	}
	rate = cJSON_GetObjectItemCaseSensitive(p, "max_failure_rate");
	if (rate) {
		if (!cJSON_IsNumber(rate) || !isfinite(rate->valuedouble) ||
		    rate->valuedouble < 0 || rate->valuedouble > 1)
			return MALFORMED("policy.max_failure_rate must be a number 0..1");
		pol.max_failure_rate = rate->valuedouble;
	}
	out = cJSON_CreateObject();
	if (!out || !cJSON_AddStringToObject(out, "mode", mode_names[pol.mode]) ||
	    !cJSON_AddNumberToObject(out, "canary_percent", pol.canary_percent) ||
	    !cJSON_AddNumberToObject(out, "max_failure_rate", pol.max_failure_rate) ||
	    !cJSON_AddNumberToObject(out, "max_concurrent", pol.max_concurrent) ||
	    !cJSON_AddBoolToObject(out, "allow_downgrade", pol.allow_downgrade)) {
		cJSON_Delete(out);
		return -ENOMEM;
	}
	*ret_json = cJSON_PrintUnformatted(out);
	cJSON_Delete(out);
	if (!*ret_json)
		return -ENOMEM;
	*ret = pol;
	return 0;
}

static int parse_targets(const cJSON *t, struct fgw_manifest_release *rel, struct fgw_reject *why)
{
	const cJSON *groups, *g;
	const char *board;
	size_t n;
	int r;

	if (!cJSON_IsObject(t))
		return MALFORMED("release targets missing or not an object");
	board = get_string(t, "board");
	if (!board || !charset_ok(board, 64, "._/-"))
		return MALFORMED("targets.board must be 1..64 of [A-Za-z0-9._/-]");
	r = dup_to(&rel->board, board);
	if (r < 0)
		return r;
	groups = cJSON_GetObjectItemCaseSensitive(t, "groups");
	if (!groups || cJSON_IsNull(groups))
		return 0;
	if (!cJSON_IsArray(groups))
		return MALFORMED("targets.groups must be an array of strings");
	n = (size_t) cJSON_GetArraySize(groups);
	if (n > FGW_MANIFEST_MAX_GROUPS)
		return MALFORMED("targets.groups has more than 32 entries");
	if (n == 0)
		return 0;
	rel->groups = calloc(n, sizeof(char *));
	if (!rel->groups)
		return -ENOMEM;
	cJSON_ArrayForEach(g, groups)
	{
		if (!cJSON_IsString(g) || !charset_ok(g->valuestring, FGW_MANIFEST_MAX_ID, "._-"))
			return MALFORMED("a target group must be 1..64 of [A-Za-z0-9._-]");
		for (size_t i = 0; i < rel->n_groups; i++)
			if (strcmp(rel->groups[i], g->valuestring) == 0)
				return MALFORMED("targets.groups lists a group twice");
		r = dup_to(&rel->groups[rel->n_groups], g->valuestring);
		if (r < 0)
			return r;
		rel->n_groups++;
	}
	rel->groups_json = cJSON_PrintUnformatted(groups);
	return rel->groups_json ? 0 : -ENOMEM;
}

static int parse_release(const cJSON *o, struct fgw_manifest_release *rel, struct fgw_reject *why)
{
	const cJSON *bundle;
	const char *s;
	int64_t size;
	int r;

	if (!cJSON_IsObject(o))
		return MALFORMED("a release is not an object");
	s = get_string(o, "id");
	if (!s || !charset_ok(s, FGW_MANIFEST_MAX_ID, "._-"))
		return MALFORMED("release id must be 1..64 of [A-Za-z0-9._-]");
	r = dup_to(&rel->id, s);
	if (r < 0)
		return r;
	s = get_string(o, "version");
	if (!s || fgw_image_version_parse(s, &rel->image_version) < 0)
		return MALFORMED("release version must be an MCUboot version like 1.2.3+4");
	r = dup_to(&rel->version, s);
	if (r < 0)
		return r;

	bundle = cJSON_GetObjectItemCaseSensitive(o, "bundle");
	if (!cJSON_IsObject(bundle))
		return MALFORMED("release bundle missing or not an object");
	s = get_string(bundle, "url");
	if (!s || !url_ok(s))
		return MALFORMED("bundle.url must be 1..2048 printable ASCII characters");
	r = dup_to(&rel->bundle_url, s);
	if (r < 0)
		return r;
	s = get_string(bundle, "sha256");
	if (!s || fgw_hex_decode(s, rel->bundle_sha256, 32) < 0)
		return MALFORMED("bundle.sha256 must be 64 hex digits");
	fgw_hex_encode(rel->bundle_sha256, 32, rel->bundle_sha256_hex);
	if (get_int(bundle, "size", 1, (int64_t) FGW_BUNDLE_MAX_SIZE, true, 0, &size) < 0)
		return MALFORMED("bundle.size must be an integer 1..268435456");
	rel->bundle_size = (uint64_t) size;

	r = parse_targets(cJSON_GetObjectItemCaseSensitive(o, "targets"), rel, why);
	if (r < 0)
		return r;
	return parse_policy(cJSON_GetObjectItemCaseSensitive(o, "policy"), &rel->policy,
			    &rel->policy_json, why);
}

static void release_done(struct fgw_manifest_release *rel)
{
	free(rel->id);
	free(rel->version);
	free(rel->bundle_url);
	free(rel->board);
	for (size_t i = 0; i < rel->n_groups; i++)
		free(rel->groups[i]);
	free(rel->groups);
	free(rel->groups_json);
	free(rel->policy_json);
}

FGW_EXPORT struct fgw_manifest_release *fgw_manifest_release_free(struct fgw_manifest_release *r)
{
	if (r) {
		release_done(r);
		free(r);
	}
	return NULL;
}

static int dup_opt(char **dst, const char *s)
{
	return s ? dup_to(dst, s) : 0;
}

FGW_EXPORT int fgw_manifest_release_dup(const struct fgw_manifest_release *src,
					struct fgw_manifest_release **ret)
{
	struct fgw_manifest_release *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	*r = *src;
	r->id = r->version = r->bundle_url = r->board = r->groups_json = r->policy_json = NULL;
	r->groups = NULL;
	r->n_groups = 0;
	if (dup_opt(&r->id, src->id) < 0 || dup_opt(&r->version, src->version) < 0 ||
	    dup_opt(&r->bundle_url, src->bundle_url) < 0 || dup_opt(&r->board, src->board) < 0 ||
	    dup_opt(&r->groups_json, src->groups_json) < 0 ||
	    dup_opt(&r->policy_json, src->policy_json) < 0)
		goto oom;
	if (src->n_groups > 0) {
		r->groups = calloc(src->n_groups, sizeof(char *));
		if (!r->groups)
			goto oom;
		for (; r->n_groups < src->n_groups; r->n_groups++)
			if (dup_to(&r->groups[r->n_groups], src->groups[r->n_groups]) < 0)
				goto oom;
	}
	*ret = r;
	return 0;
oom:
	fgw_manifest_release_free(r);
	return -ENOMEM;
}

FGW_EXPORT struct fgw_manifest *fgw_manifest_free(struct fgw_manifest *m)
{
	if (m) {
		for (size_t i = 0; i < m->n_releases; i++)
			release_done(&m->releases[i]);
		free(m->releases);
		free(m->channel);
		free(m);
	}
	return NULL;
}

static bool channel_valid(const char *c)
{
	size_t n = strlen(c);

	if (n == 0 || n > FGW_MANIFEST_MAX_CHANNEL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= 'A' && c[i] <= 'Z') ||
		      (c[i] >= '0' && c[i] <= '9') || c[i] == '.' || c[i] == '_' || c[i] == '-'))
			return false;
	return true;
}

static int parse_channel(const cJSON *root, struct fgw_manifest *m, struct fgw_reject *why)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "channel");

	if (!it)
		return 0;
	if (!cJSON_IsString(it) || !channel_valid(it->valuestring))
		return MALFORMED("channel must be 1..64 of A-Z a-z 0-9 . _ -");
	return dup_to(&m->channel, it->valuestring);
}

static int parse_root(const cJSON *root, struct fgw_manifest *m, struct fgw_reject *why)
{
	const cJSON *releases, *it;
	const char *expires;
	int64_t v;
	size_t n;
	int r;

	if (!cJSON_IsObject(root))
		return MALFORMED("the manifest is not a JSON object");
	if (has_duplicate_keys(root, 0))
		return MALFORMED(
		    "an object has the same member twice, too many members, or nesting too deep");
	if (get_int(root, "schema", 0, INT32_MAX, true, 0, &v) < 0)
		return MALFORMED("schema missing or not an integer");
	if (v != FGW_MANIFEST_SCHEMA)
		return MALFORMED("unsupported schema (this gateway reads schema 1)");
	m->schema = (int) v;
	if (get_int(root, "sequence", 1, FGW_MANIFEST_MAX_SEQUENCE, true, 0, &m->sequence) < 0)
		return MALFORMED("sequence must be an integer 1..2^53");
	expires = get_string(root, "expires");
	if (!expires || fgw_rfc3339_parse(expires, &m->expires) < 0)
		return MALFORMED("expires must be an RFC 3339 date-time");
	r = parse_channel(root, m, why);
	if (r < 0)
		return r;
	releases = cJSON_GetObjectItemCaseSensitive(root, "releases");
	if (!cJSON_IsArray(releases))
		return MALFORMED("releases missing or not an array");
	n = (size_t) cJSON_GetArraySize(releases);
	if (n > FGW_MANIFEST_MAX_RELEASES)
		return MALFORMED("more than 32 releases");
	if (n > 0) {
		m->releases = calloc(n, sizeof(*m->releases));
		if (!m->releases)
			return -ENOMEM;
	}
	cJSON_ArrayForEach(it, releases)
	{
		r = parse_release(it, &m->releases[m->n_releases++], why);
		if (r < 0)
			return r;
		for (size_t i = 0; i + 1 < m->n_releases; i++)
			if (strcmp(m->releases[i].id, m->releases[m->n_releases - 1].id) == 0)
				return MALFORMED("two releases have the same id");
	}
	return 0;
}

FGW_EXPORT int fgw_manifest_parse(const void *json, size_t len, struct fgw_manifest **ret,
				  struct fgw_reject *why)
{
	const char *end = NULL;
	struct fgw_manifest *m;
	cJSON *root;
	int r;

	reject_clear(why);
	if (len > FGW_MANIFEST_MAX_BYTES)
		return MALFORMED("larger than 256 KiB");
	/* A NUL would cut strings short behind cJSON's back. */
	if (memchr(json, '\0', len))
		return MALFORMED("contains a NUL byte");
	root = cJSON_ParseWithLengthOpts(json, len, &end, false);
	if (!root)
		return MALFORMED("not valid JSON");
	for (const char *p = end; p && p < (const char *) json + len; p++)
		if (!isspace((unsigned char) *p)) {
			cJSON_Delete(root);
			return MALFORMED("text after the JSON value");
		}
	m = calloc(1, sizeof(*m));
	if (!m) {
		cJSON_Delete(root);
		return -ENOMEM;
	}
	r = parse_root(root, m, why);
	cJSON_Delete(root);
	if (r < 0) {
		fgw_manifest_free(m);
		return r;
	}
	*ret = m;
	return 0;
}

/* ---- signature ---- */

#define SIG_MAX_LINES 8

FGW_EXPORT int fgw_manifest_verify_signature(const void *json, size_t len, const void *sig,
					     size_t sig_len, struct fgw_key *const *keys,
					     size_t n_keys, const struct fgw_key **ret_key,
					     struct fgw_reject *why)
{
	const char *p = sig, *end = (const char *) sig + sig_len;
	bool any_unnamed = false, any_trusted_id = false;
	unsigned lines = 0;

	reject_clear(why);
	if (sig_len > FGW_MANIFEST_SIG_MAX_BYTES)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_SIGNATURE, -1,
			      "signature file larger than 4 KiB");
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t) (end - p));
		const char *le = eol ? eol : end, *b64, *b64_end, *id = NULL, *id_end = NULL;
		uint8_t raw[64];
		size_t raw_len;

		/* "BASE64 [KEYID]", surrounding blanks and a CR ignored */
		while (p < le && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		b64 = p;
		while (p < le && !isspace((unsigned char) *p))
			p++;
		b64_end = p;
		while (p < le && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		if (p < le) {
			id = p;
			while (p < le && !isspace((unsigned char) *p))
				p++;
			id_end = p;
			while (p < le && (*p == ' ' || *p == '\t' || *p == '\r'))
				p++;
			if (p < le)
				return reject(why, -EBADMSG, FGW_REJECT_BAD_SIGNATURE, -1,
					      "signature line has more than two fields");
		}
		p = eol ? eol + 1 : end;
		if (b64 == b64_end)
			continue; /* blank line */
		if (++lines > SIG_MAX_LINES)
			return reject(why, -EBADMSG, FGW_REJECT_BAD_SIGNATURE, -1,
				      "more than 8 signature lines");
		if (base64_decode(b64, (size_t) (b64_end - b64), raw, sizeof(raw), &raw_len) < 0 ||
		    raw_len != 64)
			return reject(why, -EBADMSG, FGW_REJECT_BAD_SIGNATURE, -1,
				      "signature is not base64 of 64 bytes");
		if (!id)
			any_unnamed = true;
		for (size_t k = 0; k < n_keys; k++) {
			const char *kid = fgw_key_id(keys[k]);
			if (fgw_key_get_type(keys[k]) != FGW_KEY_TYPE_ED25519)
				continue;
			if (id && (strlen(kid) != (size_t) (id_end - id) ||
				   memcmp(kid, id, (size_t) (id_end - id)) != 0))
				continue;
			if (id)
				any_trusted_id = true;
			EVP_MD_CTX *ctx = EVP_MD_CTX_new();
			int ok =
			    ctx &&
			    EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key_pkey(keys[k])) == 1 &&
			    EVP_DigestVerify(ctx, raw, 64, json, len) == 1;
			EVP_MD_CTX_free(ctx);
			if (ok) {
				if (ret_key)
					*ret_key = keys[k];
				return 0;
			}
		}
	}
	if (lines == 0)
		return reject(why, -EBADMSG, FGW_REJECT_BAD_SIGNATURE, -1,
			      "signature file is empty");
	if (!any_unnamed && !any_trusted_id)
		return reject(why, -ENOKEY, FGW_REJECT_UNKNOWN_KEY, -1,
			      "signed only by keys that are not in trusted_keys");
	return reject(why, -EBADMSG, FGW_REJECT_BAD_SIGNATURE, -1,
		      "no trusted key verifies the signature");
}

FGW_EXPORT int fgw_manifest_sign(const void *json, size_t len, const struct fgw_key *key,
				 char **ret)
{
	_cleanup_free_ char *b64 = NULL;
	EVP_MD_CTX *ctx;
	uint8_t sig[64];
	size_t sig_len = sizeof(sig);
	char *out;
	int r, ok;

	if (fgw_key_get_type(key) != FGW_KEY_TYPE_ED25519 || !fgw_key_has_private(key))
		return -EINVAL;
	ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key_pkey(key)) == 1 &&
	     EVP_DigestSign(ctx, sig, &sig_len, json, len) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok || sig_len != 64)
		return -EIO;
	r = base64_encode(sig, sig_len, &b64);
	if (r < 0)
		return r;
	if (asprintf(&out, "%s %s\n", b64, fgw_key_id(key)) < 0)
		return -ENOMEM;
	*ret = out;
	return 0;
}

FGW_EXPORT int fgw_manifest_check(const struct fgw_manifest *m, int64_t stored_sequence,
				  int64_t now_s, struct fgw_reject *why)
{
	reject_clear(why);
	if (m->sequence <= stored_sequence)
		return reject(why, -ESTALE, FGW_REJECT_ROLLBACK, -1,
			      "sequence is not above the last accepted one");
	if (m->expires <= now_s)
		return reject(why, -ETIME, FGW_REJECT_EXPIRED, -1, "expires is in the past");
	return 0;
}

FGW_EXPORT int fgw_manifest_check_channel(const struct fgw_manifest *m, const char *channel,
					  struct fgw_reject *why)
{
	const char *have = m->channel ? m->channel : "";

	reject_clear(why);
	if (strcmp(have, channel ? channel : "") != 0)
		return reject(why, -EPERM, FGW_REJECT_WRONG_CHANNEL, -1,
			      *have ? "the manifest is for another channel"
				    : "the manifest names no channel, the gateway has one");
	return 0;
}
