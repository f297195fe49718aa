/*
 * release: the release pipeline on the loop, from the signed manifest to the images the fleet
 * uploads. It polls the manifest (ETag kept in the store), checks signature, sequence, channel
 * and expiry (and re-checks the expiry of the manifest in force after every poll), downloads each
 * new release's bundle into the cache through lib/fetch (resuming interrupted downloads), and
 * verifies it once, in the libuv thread pool: the file is read once, and the same bytes are hashed
 * (size, SHA-256), parsed (NCS zip, every MCUboot image with the configured key, version and board)
 * and extracted. Each image goes into a sealed memfd (no write, grow, shrink or further seals),
 * hashed while it is written, so what the fleet maps is exactly what was verified, whatever happens
 * to the cache afterwards. Only the bytes up to the end of an image's TLV area are extracted:
 * trailing bytes are not signed and are never uploaded.
 *
 * The verified bundle is stored as <cache_dir>/<sha256>.zip atomically, the outcome recorded
 * in the releases table and the cache pruned to its budget. Every refusal is logged once as
 * "event: release-rejected" / "event: manifest-rejected" with its reason, and recorded; the
 * releases verified before stay in force. Each newly verified release is announced through a
 * callback, and so is each verified release found intact in the cache at start (re-verified
 * and re-extracted the same way).
 *
 * Cache layout (docs/manifest.md): <sha256>.zip verified bundles, <sha256>.part downloads in
 * progress; pruning removes every "<sha256>.*" file of a bundle.
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

struct fgw_release_source_options {
	const char *manifest_url; /* http(s):// or file://; required */
	unsigned poll_interval_s; /* 0: 300 */
	const char *const
	    *trusted_keys; /* Ed25519 public key PEM files; 1..FGW_MANIFEST_MAX_KEYS */
	size_t n_trusted_keys;
	const char *mcuboot_key;	/* PEM; NULL: image signatures not checked */
	const char *cache_dir;		/* required; created if missing */
	uint64_t cache_budget_bytes;	/* 0: keep every bundle */
	struct fgw_fetch_options fetch; /* TLS files, timeouts */
	/*
	 * The clock is not trusted before this (Unix s; 0: the build date): until the clock
	 * passes it, no manifest is judged expired, neither when accepted nor in force.
	 */
	int64_t clock_floor_s;
	const char *channel; /* the manifest's signed `channel` must equal it; NULL: "" */
};

/* What one manifest poll came to; fgw_release_status counts them. */
enum fgw_poll_result {
	FGW_POLL_RESULT_ACCEPTED,     /* a new manifest was accepted */
	FGW_POLL_RESULT_UNCHANGED,    /* the manifest in force, served again */
	FGW_POLL_RESULT_NOT_MODIFIED, /* 304 */
	FGW_POLL_RESULT_REJECTED,     /* refused (signature, rollback, expired, channel, ...) */
	FGW_POLL_RESULT_ERROR,	      /* not fetched (network, HTTP, store) */
	_FGW_POLL_RESULT_MAX,
	_FGW_POLL_RESULT_INVALID = -EINVAL,
};
/* "accepted", "unchanged", "not-modified", "rejected", "error" */
const char *fgw_poll_result_to_string(enum fgw_poll_result r);

/*
 * Freshness of the manifest in force, judged again at the end of every poll (including a 304
 * and "unchanged"): a replayed or frozen manifest is noticed when its `expires` passes.
 */
enum fgw_manifest_freshness {
	FGW_MANIFEST_FRESHNESS_UNKNOWN,		/* no manifest seen since start */
	FGW_MANIFEST_FRESHNESS_FRESH,		/* `expires` is in the future */
	FGW_MANIFEST_FRESHNESS_EXPIRED,		/* `expires` has passed */
	FGW_MANIFEST_FRESHNESS_CLOCK_UNTRUSTED, /* the clock is before the floor: not judged */
	_FGW_MANIFEST_FRESHNESS_MAX,
	_FGW_MANIFEST_FRESHNESS_INVALID = -EINVAL,
};
/* "unknown", "fresh", "expired", "clock-untrusted" */
const char *fgw_manifest_freshness_to_string(enum fgw_manifest_freshness f);

struct fgw_release_status {
	enum fgw_release_source_state state;
	enum fgw_manifest_freshness freshness;
	int64_t sequence; /* of the manifest in force, 0 if none seen since start */
	int64_t expires;  /* its `expires` (Unix s), 0 if none */
	uint64_t polls[_FGW_POLL_RESULT_MAX];
};

/*
 * One image of a verified release, as the fleet uploads it. @fd is a memfd sealed against
 * writes, growth, shrinking and further seals, and @data maps it read-only: nothing, not even
 * this process, can change these bytes any more. Both stay valid for the duration of the
 * callback; a holder that needs them longer maps @fd itself (the mapping keeps the memfd).
 */
struct fgw_release_image {
	int index;	     /* MCUboot image number: 0 app core, 1 net core */
	int fd;		     /* the sealed memfd */
	const uint8_t *data; /* @size bytes, read-only */
	size_t size;	     /* up to the end of the TLV area: what is uploaded */
	size_t trailing;     /* bytes after the TLV area in the bundle, dropped */
	uint8_t sha256[32];  /* SHA-256 of the @size bytes, computed as they were written */
	uint8_t hash[32];    /* the SHA256 TLV: what image state reports */
	struct fgw_image_version version;
};

/* A verified release. Everything is borrowed for the duration of the callback. */
struct fgw_release_info {
	const struct fgw_manifest_release *release; /* bundle_url resolved to an absolute URL */
	int64_t sequence;			    /* of the manifest that listed it */
	const char *bundle_path;		    /* <cache_dir>/<sha256>.zip */
	const struct fgw_release_image *images;	    /* sorted by index; images[0] is index 0 */
	size_t n_images;
	bool restored; /* found intact in the cache at start */
};

typedef void (*fgw_release_verified_cb_t)(const struct fgw_release_info *info, void *user_data);
/* End of one poll cycle: @result as stored in manifest_state.last_result. */
typedef void (*fgw_release_cycle_cb_t)(const char *result, void *user_data);

/*
 * Loads the keys and checks the options: -EINVAL (no URL, no trusted key or more than
 * FGW_MANIFEST_MAX_KEYS, no cache dir), or the error of the key file that failed, logged with
 * its path. Nothing starts yet. @store is borrowed and must outlive the source.
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
void fgw_release_source_get_status(struct fgw_release_source *s, struct fgw_release_status *ret);
