/*
 * The releases table as the pipeline sees it: what to fetch or re-check (pending, and at start
 * verified), and what a newly accepted manifest adds or changes. A row read back goes through
 * the same validating parser as the manifest: what the store says is checked like anything
 * else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "release-private.h"

/*
 * A stored release back into a struct fgw_manifest_release, through the same validating
 * parser the manifest went through: what the store says is checked like anything else.
 */
static int release_from_row(const struct fgw_store_release *row, struct fgw_manifest_release **ret)
{
	cJSON *root = cJSON_CreateObject(), *rels, *rel, *bundle, *targets, *groups, *policy;
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;
	char *text = NULL;
	int r = -ENOMEM;

	if (!root)
		return -ENOMEM;
	if (!cJSON_AddNumberToObject(root, "schema", FGW_MANIFEST_SCHEMA) ||
	    !cJSON_AddNumberToObject(root, "sequence", (double) FGW_MAX(row->sequence, 1)) ||
	    !cJSON_AddStringToObject(root, "expires", "9999-12-31T23:59:59Z") ||
	    !(rels = cJSON_AddArrayToObject(root, "releases")) || !(rel = cJSON_CreateObject()))
		goto out;
	cJSON_AddItemToArray(rels, rel);
	if (!cJSON_AddStringToObject(rel, "id", row->id ? row->id : "") ||
	    !cJSON_AddStringToObject(rel, "version", row->version ? row->version : "") ||
	    !(bundle = cJSON_AddObjectToObject(rel, "bundle")) ||
	    !cJSON_AddStringToObject(bundle, "url", row->bundle_url ? row->bundle_url : "") ||
	    !cJSON_AddStringToObject(bundle, "sha256",
				     row->bundle_sha256 ? row->bundle_sha256 : "") ||
	    !cJSON_AddNumberToObject(bundle, "size", (double) row->bundle_size) ||
	    !(targets = cJSON_AddObjectToObject(rel, "targets")) ||
	    !cJSON_AddStringToObject(targets, "board", row->board ? row->board : ""))
		goto out;
	if (row->groups_json) {
		groups = cJSON_Parse(row->groups_json);
		if (groups)
			cJSON_AddItemToObject(targets, "groups", groups);
	}
	policy = row->policy_json ? cJSON_Parse(row->policy_json) : NULL;
	if (policy)
		cJSON_AddItemToObject(rel, "policy", policy);
	text = cJSON_PrintUnformatted(root);
	if (!text)
		goto out;
	r = fgw_manifest_parse(text, strlen(text), &m, &why);
	if (r == 0)
		r = m->n_releases == 1 ? fgw_manifest_release_dup(&m->releases[0], ret) : -EBADMSG;
out:
	fgw_manifest_free(m);
	free(text);
	cJSON_Delete(root);
	return r;
}

struct load_ctx {
	struct fgw_release_source *s;
	bool include_verified;
};

static int load_row(const struct fgw_store_release *row, void *user_data)
{
	struct load_ctx *c = user_data;
	struct fgw_release_source *s = c->s;
	bool verified = row->state && strcmp(row->state, "verified") == 0;
	bool pending = row->state && strcmp(row->state, "pending") == 0;
	struct item *it;
	int r;

	if (!(pending || (verified && c->include_verified)) || !row->id || rsrc_queued(s, row->id))
		return 0;
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	r = release_from_row(row, &it->rel);
	if (r < 0) {
		fgw_log_errno(LOG_WARNING, r, "Stored release '%s' does not read back, ignoring",
			      row->id);
		free(it);
		return 0;
	}
	it->sequence = row->sequence;
	it->restore = verified;
	rsrc_enqueue(s, it);
	return 0;
}

/* Queues every pending release (and at start every verified one), oldest sequence first. */
void rsrc_queue_from_store(struct fgw_release_source *s, bool include_verified)
{
	struct load_ctx c = {s, include_verified};
	struct item *newest_first, *it;
	int r;

	/* releases_foreach is newest first; collect, then reverse onto the queue */
	struct item *saved_q = s->queue, *saved_t = s->queue_tail;
	s->queue = s->queue_tail = NULL;
	r = fgw_store_releases_foreach(s->store, load_row, &c);
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "Failed to read releases from the store: %s",
			      fgw_store_errmsg(s->store));
	newest_first = s->queue;
	s->queue = saved_q;
	s->queue_tail = saved_t;
	{
		struct item *rev = NULL;
		while (newest_first) {
			it = newest_first;
			newest_first = it->next;
			it->next = rev;
			rev = it;
		}
		while (rev) {
			it = rev;
			rev = it->next;
			rsrc_enqueue(s, it);
		}
	}
}

struct same_ctx {
	const struct fgw_manifest_release *rel;
	bool same;
};

static int same_row(const struct fgw_store_release *row, void *user_data)
{
	struct same_ctx *c = user_data;

	c->same = row->bundle_sha256 &&
		  strcmp(row->bundle_sha256, c->rel->bundle_sha256_hex) == 0 &&
		  (uint64_t) row->bundle_size == c->rel->bundle_size;
	return 0;
}

struct row_state {
	char state[16];
	char sha[65];
	int64_t size;
};

static int read_row_state(const struct fgw_store_release *row, void *user_data)
{
	struct row_state *rs = user_data;

	snprintf(rs->state, sizeof(rs->state), "%s", row->state ? row->state : "");
	snprintf(rs->sha, sizeof(rs->sha), "%s", row->bundle_sha256 ? row->bundle_sha256 : "");
	rs->size = row->bundle_size;
	return 0;
}

/* Same sequence as the one accepted: fine only if it lists exactly the known releases. */
bool rsrc_manifest_unchanged(struct fgw_release_source *s, const struct fgw_manifest *m)
{
	for (size_t i = 0; i < m->n_releases; i++) {
		struct same_ctx c = {&m->releases[i], false};
		if (fgw_store_release_get(s->store, m->releases[i].id, same_row, &c) < 0 || !c.same)
			return false;
	}
	return true;
}

void rsrc_accept_release(struct fgw_release_source *s, const struct fgw_manifest *m,
			 struct fgw_manifest_release *rel)
{
	struct row_state rs = {0};
	char *url = NULL, shown[FGW_URL_LOG_MAX];
	int r;

	r = fgw_fetch_resolve_url(s->manifest_url, rel->bundle_url, &url);
	if (r == 0 && fgw_url_has_userinfo(url)) {
		r = -EACCES; /* it would be stored, and served by GET /v1/releases */
		free(TAKE_PTR(url));
	}
	if (r < 0) {
		fgw_warning("event: release-rejected, release: %s, reason: %s, detail: bundle.url "
			    "'%s' %s",
			    rel->id, fgw_reject_reason_to_string(FGW_REJECT_MALFORMED_MANIFEST),
			    fgw_url_redact(rel->bundle_url, shown, sizeof(shown)),
			    r == -EPERM	   ? "is not https under an https manifest"
			    : r == -EACCES ? "carries credentials (user:password@)"
					   : "does not resolve to an http, https or file URL");
		return;
	}
	free(rel->bundle_url);
	rel->bundle_url = url;

	struct fgw_store_release row = {
	    .id = rel->id,
	    .sequence = m->sequence,
	    .version = rel->version,
	    .board = rel->board,
	    .groups_json = rel->groups_json,
	    .policy_json = rel->policy_json,
	    .bundle_url = rel->bundle_url,
	    .bundle_sha256 = rel->bundle_sha256_hex,
	    .bundle_size = (int64_t) rel->bundle_size,
	};
	r = fgw_store_release_get(s->store, rel->id, read_row_state, &rs);
	if (r == -ENOENT) {
		r = fgw_store_release_insert(s->store, &row, fgw_wall_ms());
		if (r < 0)
			fgw_log_errno(LOG_ERR, r, "Failed to record release '%s': %s", rel->id,
				      fgw_store_errmsg(s->store));
		else
			fgw_notice("event: release-new, release: %s, version: %s, size: %" PRIu64
				   ", bundle: %s",
				   rel->id, rel->version, rel->bundle_size, rel->bundle_sha256_hex);
		return;
	}
	if (r < 0) {
		fgw_log_errno(LOG_ERR, r, "Failed to read release '%s': %s", rel->id,
			      fgw_store_errmsg(s->store));
		return;
	}
	if (strcmp(rs.sha, rel->bundle_sha256_hex) != 0 || (uint64_t) rs.size != rel->bundle_size) {
		/* an id names one bundle forever; the release known under it stays as it is */
		fgw_warning("event: release-rejected, release: %s, reason: %s, detail: the id is "
			    "known with bundle %.16s..., the manifest now says %.16s...",
			    rel->id, fgw_reject_reason_to_string(FGW_REJECT_ID_REUSED), rs.sha,
			    rel->bundle_sha256_hex);
		(void) fgw_store_event_add(s->store, NULL, 0, "release",
					   "manifest reuses a release id for another bundle",
					   fgw_wall_ms());
		return;
	}
	r = fgw_store_release_update(s->store, &row, fgw_wall_ms());
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "Failed to update release '%s'", rel->id);
	/* listed again by a newer manifest: a rejected one gets another chance, a superseded
	 * one comes back (re-checked from the cache) */
	if (strcmp(rs.state, "rejected") == 0 || strcmp(rs.state, "superseded") == 0)
		(void) fgw_store_release_set_state(s->store, rel->id, "pending",
						   "listed again by a newer manifest", NULL,
						   fgw_wall_ms());
}
