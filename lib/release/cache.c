/*
 * The cache directory: bundle paths, and pruning to the budget in the thread pool (what is in
 * force or pending is never removed; downloads nobody waits for are).
 */
#define _GNU_SOURCE /* asprintf */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "release-private.h"

char *rsrc_cache_path(struct fgw_release_source *s, const char *sha_hex, const char *ext)
{
	char *p;

	return asprintf(&p, "%s/%s%s", s->cache_dir, sha_hex, ext) < 0 ? NULL : p;
}

/* Removes every "<sha>.*" file: the bundle, its download and anything derived from it. */
static void remove_bundle_files(const char *dir, const char *sha_hex)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, sha_hex, 64) == 0 && de->d_name[64] == '.')
			(void) unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

struct group {
	char sha[65];
	uint64_t bytes;
	time_t newest;
	bool keep;
};

static bool is_hex64_prefix(const char *name)
{
	for (int i = 0; i < 64; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return name[64] == '.';
}

static void do_prune(uv_work_t *req)
{
	struct work *w = container_of(req, struct work, req);
	struct fgw_release_source *s = w->s;
	struct group *groups = NULL;
	size_t n = 0, alloc = 0;
	uint64_t total = 0;
	struct dirent *de;
	DIR *d;

	d = opendir(s->cache_dir);
	if (!d) {
		w->err = -errno;
		return;
	}
	while ((de = readdir(d))) {
		struct stat st;
		struct group *g = NULL;

		if (strlen(de->d_name) < 65 || !is_hex64_prefix(de->d_name) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		for (size_t i = 0; i < n; i++)
			if (strncmp(groups[i].sha, de->d_name, 64) == 0)
				g = &groups[i];
		if (!g) {
			if (n == alloc) {
				struct group *ng =
				    realloc(groups, (alloc ? alloc * 2 : 16) * sizeof(*ng));
				if (!ng) {
					w->err = -ENOMEM;
					break;
				}
				groups = ng;
				alloc = alloc ? alloc * 2 : 16;
			}
			g = &groups[n++];
			memset(g, 0, sizeof(*g));
			memcpy(g->sha, de->d_name, 64);
			for (size_t k = 0; k < w->n_keep; k++)
				if (strcmp(w->keep[k], g->sha) == 0)
					g->keep = true;
		}
		/* a download nobody waits for any more is garbage, whatever the budget */
		if (!g->keep && strstr(de->d_name + 64, ".part")) {
			if (unlinkat(dirfd(d), de->d_name, 0) == 0)
				w->n_removed++;
			continue;
		}
		g->bytes += (uint64_t) st.st_blocks * 512;
		if (st.st_mtime > g->newest)
			g->newest = st.st_mtime;
		total += (uint64_t) st.st_blocks * 512;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++)
		if (groups[i].keep)
			w->bytes_protected += groups[i].bytes;
	/* over budget: drop the bundles not in force, least recently written first */
	while (s->budget > 0 && total > s->budget) {
		struct group *oldest = NULL;
		for (size_t i = 0; i < n; i++)
			if (!groups[i].keep && groups[i].bytes > 0 &&
			    (!oldest || groups[i].newest < oldest->newest))
				oldest = &groups[i];
		if (!oldest)
			break;
		remove_bundle_files(s->cache_dir, oldest->sha);
		total -= oldest->bytes;
		oldest->bytes = 0;
		w->n_removed++;
	}
	w->bytes_kept = total;
	free(groups);
}

static int collect_keep(const struct fgw_store_release *row, void *user_data)
{
	struct work *w = user_data;

	if (!row->bundle_sha256 || strlen(row->bundle_sha256) != 64 || !row->state ||
	    (strcmp(row->state, "verified") != 0 && strcmp(row->state, "pending") != 0))
		return 0;
	char(*nk)[65] = realloc(w->keep, (w->n_keep + 1) * sizeof(*nk));
	if (!nk)
		return -ENOMEM;
	w->keep = nk;
	memcpy(w->keep[w->n_keep++], row->bundle_sha256, 65);
	return 0;
}

void rsrc_prune_begin(struct fgw_release_source *s)
{
	struct work *w = calloc(1, sizeof(*w));
	int r;

	rsrc_enter_state(s, FGW_RELEASE_SOURCE_STATE_PRUNING);
	if (!w) {
		rsrc_cycle_end(s);
		return;
	}
	w->kind = WORK_PRUNE;
	r = fgw_store_releases_foreach(s->store, collect_keep, w);
	if (r < 0) {
		/* without knowing what is in force, deleting anything would be a guess */
		fgw_log_errno(LOG_WARNING, r, "Failed to list releases, not pruning the cache");
		rsrc_work_free(w);
		rsrc_cycle_end(s);
		return;
	}
	r = rsrc_work_queue(s, w, do_prune);
	if (r < 0) {
		rsrc_work_free(w);
		rsrc_cycle_end(s);
	}
}

void rsrc_prune_done(struct fgw_release_source *s, struct work *w)
{
	if (w->err < 0)
		fgw_log_errno(LOG_WARNING, w->err, "Failed to prune the cache '%s'", s->cache_dir);
	else if (w->n_removed > 0)
		fgw_info("cache: removed %u file set(s), %" PRIu64 " bytes in use", w->n_removed,
			 w->bytes_kept);
	if (s->budget > 0 && w->bytes_protected > s->budget)
		fgw_warning("cache: releases in force take %" PRIu64 " bytes, over the budget of "
			    "%" PRIu64 "; keeping them",
			    w->bytes_protected, s->budget);
	rsrc_cycle_end(s);
}
