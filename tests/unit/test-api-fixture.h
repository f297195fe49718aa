/*
 * The fixture of the REST API unit tests (test-api.c, test-api-server.c): a scripted provider,
 * a seeded SQLite store in a temp dir, an API object without a socket, and requests to it.
 */
#pragma once

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "api-private.h"
#include "store.h"

#define TOKEN "0123456789abcdef-test-token"

/* What the provider answers and what it was asked. */
struct fake {
	int health_r, pause_r, resume_r, retry_r;
	int pauses, resumes, retries;
	char last_reason[64];
	char last_retry[64];
};

struct fixture {
	char dir[64];
	char path[128];
	struct fgw_store *s;
	struct fgw_api api;
	struct fake fake;
	const void *param;
};

/* Fixture setups: seeded with a provider; without a provider; an empty store. */
int setup(void **state);
int setup_bare(void **state);
int setup_empty(void **state);
int teardown(void **state);

/* Query strings in tests are plain "k=v&k=v" without escapes; @ctx is the string. */
const char *query_arg(void *ctx, const char *key);
/* Runs @method @path through the router in-process; @resp always holds an answer. */
void request(struct fixture *f, const char *method, const char *path, const char *query,
	     const char *auth, const char *body, struct api_response *resp);
/* Sends and parses a JSON answer; fails the test if the status differs. */
cJSON *get_json(struct fixture *f, const char *method, const char *path, const char *query,
		const char *auth, const char *body, unsigned status);
/* Field @key of @o, failing the test if it is missing (or not a number / string). */
const cJSON *at(const cJSON *o, const char *key);
double num(const cJSON *o, const char *key);
const char *str(const cJSON *o, const char *key);

/* A test with its setup and a parameter, named after both. */
#define T(fn, s, param)                                                                            \
	{                                                                                          \
#fn " " #param, fn, s, teardown, (void *) (param)                                  \
	}
