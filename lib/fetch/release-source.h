/*
 * release-source: the release pipeline on the loop. It polls the signed manifest (ETag kept in
 * the store), checks signature, sequence and expiry, downloads each new release's bundle into
 * the cache (resuming interrupted downloads), verifies it in the libuv thread pool (size,
 * SHA-256, NCS zip, every MCUboot image with the configured key, version and board), stores
 * it as <cache_dir>/<sha256>.zip atomically, records the outcome in the releases table and
 * prunes the cache to its budget. Every refusal is logged once as
 * "event: release-rejected" / "event: manifest-rejected" with its reason, and recorded; the
 * releases verified before stay in force. Each newly verified release is announced through a
 * callback, and so is each verified release found intact in the cache at start.
 *
 * Cache layout (docs/manifest.md): <sha256>.zip verified bundles, <sha256>.part downloads in
 * progress; pruning removes every "<sha256>.*" file of a bundle, so files derived from a
 * bundle (e.g. extracted images) belong in the cache under that prefix.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "bundle.h"
#include "fetch.h"

struct fgw_store;
struct fgw_release_source;

enum fgw_release_source_state {
	FGW_RELEASE_SOURCE_STATE_IDLE,	       /* waiting for the next poll */
	FGW_RELEASE_SOURCE_STATE_RESTORING,    /* re-checking cached releases after a start */
	FGW_RELEASE_SOURCE_STATE_POLLING,      /* GET manifest.json (If-None-Match) */
	FGW_RELEASE_SOURCE_STATE_FETCHING_SIG, /* GET manifest.json.sig */
	FGW_RELEASE_SOURCE_STATE_CHECKING,     /* signature and fields, in the thread pool */
	FGW_RELEASE_SOURCE_STATE_DOWNLOADING,  /* one release's bundle */
	FGW_RELEASE_SOURCE_STATE_VERIFYING,    /* that bundle, in the thread pool */
	FGW_RELEASE_SOURCE_STATE_PRUNING,      /* cache budget, in the thread pool */
	_FGW_RELEASE_SOURCE_STATE_MAX,
	_FGW_RELEASE_SOURCE_STATE_INVALID = -EINVAL,
};
const char *fgw_release_source_state_to_string(enum fgw_release_source_state s);

struct fgw_release_source_options {
	const char *manifest_url;	 /* http(s):// or file://; required */
	unsigned poll_interval_s;	 /* 0: 300 */
	const char *const *trusted_keys; /* Ed25519 public key PEM files; at least one */
	size_t n_trusted_keys;
	const char *mcuboot_key;	/* PEM; NULL: image signatures not checked */
	const char *cache_dir;		/* required; created if missing */
	uint64_t cache_budget_bytes;	/* 0: keep every bundle */
	struct fgw_fetch_options fetch; /* TLS files, timeouts */
};

/* A verified release. Everything is borrowed for the duration of the callback. */
struct fgw_release_info {
	const struct fgw_manifest_release *release; /* bundle_url resolved to an absolute URL */
	int64_t sequence;			    /* of the manifest that listed it */
	const char *bundle_path;		    /* <cache_dir>/<sha256>.zip */
	const struct fgw_bundle *bundle;	    /* its images, parsed and verified */
	bool restored;				    /* found intact in the cache at start */
};

typedef void (*fgw_release_verified_cb_t)(const struct fgw_release_info *info, void *user_data);
/* End of one poll cycle: @result as stored in manifest_state.last_result. */
typedef void (*fgw_release_cycle_cb_t)(const char *result, void *user_data);

/*
 * Loads the keys and checks the options: -EINVAL (no URL, no trusted key, no cache dir),
 * or the error of the key file that failed, logged with its path. Nothing starts yet.
 * @store is borrowed and must outlive the source.
 */
int fgw_release_source_new(uv_loop_t *loop, struct fgw_store *store,
			   const struct fgw_release_source_options *opts,
			   struct fgw_release_source **ret);
/* Stops transfers and timers; work in the thread pool finishes first, then it is freed. */
struct fgw_release_source *fgw_release_source_free(struct fgw_release_source *s);

/* Called for each verified release; may be NULL. Set before start. */
void fgw_release_source_set_verified_cb(struct fgw_release_source *s, fgw_release_verified_cb_t cb,
					void *user_data);
void fgw_release_source_set_cycle_cb(struct fgw_release_source *s, fgw_release_cycle_cb_t cb,
				     void *user_data);

/*
 * Re-checks the verified releases found in the cache (announcing each), resumes pending
 * downloads, then polls now and every poll_interval_s.
 */
int fgw_release_source_start(struct fgw_release_source *s);
/* Polls now, or right after the cycle in progress. */
void fgw_release_source_poll_now(struct fgw_release_source *s);

enum fgw_release_source_state fgw_release_source_get_state(struct fgw_release_source *s);
/* The MCUboot key images are verified with (borrowed), NULL if none is configured. */
const struct fgw_key *fgw_release_source_mcuboot_key(struct fgw_release_source *s);
