/*
 * The fixture of lib/release's unit tests (test-release*.c): a real loop, SQLite file and cache
 * directory, the "server" a file:// directory, keys, bundles built and signed on the spot, a
 * release source on all of it, and what its callbacks and the database say.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "bundle.h"
#include "release.h"
#include "store.h"

struct fix {
	char dir[64], srv[96], cache[96], db[96];
	char key_a[128], pub_a[128], key_b[128], boot[128], boot_pub[128], boot2[128];
	struct fgw_key *a, *b, *m, *m2;
	uv_loop_t loop;
	struct fgw_store *store;
	struct fgw_release_source *src;
	uint64_t budget;
	int64_t clock_floor;
	const char *channel;	      /* the gateway's */
	const char *manifest_channel; /* what publish() signs, NULL: none */
	const void *param;	      /* the test's initial state (a refusal case) */
	/* what the callbacks saw */
	int cycles;
	char result[160];
	int n_verified;
	char verified[8][64];
	bool restored[8];
	/* the app image as built, and what the last callback handed over for it */
	uint8_t *app;
	size_t app_len;
	int app_fd; /* a dup of the sealed memfd, kept like the fleet's mapping keeps it */
	size_t app_size, app_trailing;
	uint8_t app_sha[32];
	char r1_sha[65]; /* publish_r1()'s bundle */
};

/* cmocka setup/teardown; a refusal case comes in as the initial state (f->param). */
int setup(void **state);
int teardown(void **state);

void write_all(const char *path, const void *data, size_t len);
void source_start(struct fix *f);
/* Frees the source and lets the loop finish with it (a restart is the next run_cycle()). */
void source_stop(struct fix *f);
/* Starts the source, or polls now, and runs the loop until the cycle's result is in (bounded). */
void run_cycle(struct fix *f);
/* Lets the loop run for @ms between polls: the condition waited for is the wall clock's. */
void pace(struct fix *f, uint64_t ms);
struct fgw_release_status status_of(struct fix *f);

enum corrupt {
	C_NONE,
	C_MAGIC,
	C_TLV_LEN,
	C_HASH,
	C_OTHER_KEY,
	C_MISSING_NET,
	C_DOTDOT,
	C_TRUNCATE,
	C_TRAILING, /* unsigned bytes after the app image's TLV area */
};

/* Writes srv/<name> and returns its sha256 hex and size. */
void make_bundle(struct fix *f, const char *name, const char *version, enum corrupt c,
		 char sha_hex[65], uint64_t *size);

struct rel {
	const char *id, *version, *url, *sha;
	uint64_t size;
	const char *board;
};

/* Signs and writes srv/manifest.json(.sig) listing @rels, `expires` @expires_in s from now. */
void publish(struct fix *f, int64_t seq, int64_t expires_in, const struct rel *rels, size_t n,
	     const struct fgw_key *key, bool tamper);
/* R1, the good release every case starts from: srv/r1.zip built (its sha in f->r1_sha), and
 * its manifest entry; publish_r1() publishes it alone, sequence 5. */
struct rel make_r1(struct fix *f);
void publish_r1(struct fix *f);

/* The database, read as the operator would. */
void query_text(struct fix *f, const char *sql, char *out, size_t size);
void release_state(struct fix *f, const char *id, char *state, char *reason);
bool cache_has(struct fix *f, const char *sha, const char *ext);
