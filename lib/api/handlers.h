/*
 * For the /v1 handler files (handlers-*.c, events.c, images.c): the streaming JSON writer
 * every answer is written with, the store-error reply, and the store reads several handlers
 * start from. Private to lib/api.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "store.h"

struct api_jw;

/* Counts and logs a failed store query and answers 503 (busy) or 500. */
void api_reply_store_error(struct fgw_api *api, struct api_response *resp, int r);
/* A read that failed (@r < 0) while writing @w: drops the partial body and answers as
 * api_reply_store_error(), except -ENOMEM, which the router answers 500 for the missing body. */
void api_reply_read_error(struct fgw_api *api, struct api_jw *w, struct api_response *resp, int r);
/* Ends a {..., "key": [ ... answer whose list was read with result @r: closes the list and the
 * object and answers 200, or answers as api_reply_read_error() when @r < 0. */
void api_reply_list(struct fgw_api *api, struct api_jw *w, struct api_response *resp, int r);

/* The current release, copied out of its callback. */
struct release_ref {
	char *id;
	char *version;
	char *policy_json;
	int64_t sequence;
};
void api_release_ref_done(struct release_ref *r);
/* 0 with @ref filled or left empty (no current release), or -errno. */
int api_current_release(struct fgw_api *api, struct release_ref *ref);

/* fgw_store_rollout_get() callbacks: the halted flag into a bool, or the whole halt_info. */
struct halt_info {
	bool halted;
	char *by, *reason;
};
int api_copy_halted(const struct fgw_store_rollout *ro, void *user_data);
int api_copy_halt_info(const struct fgw_store_rollout *ro, void *user_data);

/*
 * Streaming JSON (json-writer.c): values appended straight into the body, for the big reads.
 * The output equals cJSON_PrintUnformatted() of the same values. Keys must be the handlers'
 * own literals (they are written without escaping); values are escaped. One failure flag:
 * after running out of memory every call does nothing and api_jw_reply() answers 500.
 */
struct api_jw {
	char *buf;
	size_t len, cap;
	bool more; /* the innermost object or array has a value already: the next needs a comma */
	bool failed;
};
/* Opens an object ('{') or array ('[') as @key of the object being written (NULL: in an array). */
void api_jw_open(struct api_jw *w, const char *key, char bracket);
void api_jw_close(struct api_jw *w, char bracket);
void api_jw_str(struct api_jw *w, const char *key, const char *v); /* NULL: null */
void api_jw_int(struct api_jw *w, const char *key, int64_t v);	   /* FGW_STORE_NULL: null */
void api_jw_num(struct api_jw *w, const char *key, double v);	   /* not finite: null */
void api_jw_bool(struct api_jw *w, const char *key, bool v);
void api_jw_null(struct api_jw *w, const char *key);
/* Stored JSON text (written by the gateway itself) as the value: re-printed compact, or null
 * when absent or broken. */
void api_jw_json_text(struct api_jw *w, const char *key, const char *text);
/* Hands the body to @resp as a JSON @status answer (500 if it failed) and resets @w. */
void api_jw_reply(struct api_jw *w, struct api_response *resp, unsigned status);
void api_jw_done(struct api_jw *w);
/* events.c: one event as an object, with its device's address for the fleet-wide list. */
void api_jw_event(struct api_jw *w, const struct fgw_store_event *e, bool with_address);
/* images.c: "images" of @release_id into the release object being written, when the fleet
 * knows them. */
void api_release_images_json(struct fgw_api *api, struct api_jw *w, const char *release_id);
