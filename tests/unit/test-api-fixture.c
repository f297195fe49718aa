/*
 * The REST API tests' fixture (test-api-fixture.h): a scripted provider, a seeded store, and
 * in-process requests.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test-api-fixture.h"
#include "store-tmp.h"
#include "test-api-seed.h"
#include "util.h"

/* ---- a scripted provider ---- */

static size_t fake_adapters(void *ud, struct fgw_api_adapter *ret, size_t max)
{
	const struct fgw_api_adapter a[] = {
	    {.name = "hci0",
	     .state = "on",
	     .links = 3,
	     .ready = 2,
	     .upload_limit = 3,
	     .goodput_bps = 87500,
	     .ceiling_bps = 175000,
	     .busy = 4},
	    {.name = "hci1", .state = "off", .ceiling_bps = 175000, .refused = 1},
	};

	for (size_t i = 0; i < ARRAY_SIZE(a) && i < max; i++)
		ret[i] = a[i];
	return ARRAY_SIZE(a);
}

static int fake_health(void *ud, struct fgw_api_health *ret)
{
	struct fake *f = ud;

	if (f->health_r < 0)
		return f->health_r;
	*ret = (struct fgw_api_health){
	    .version = "9.9.9", .uptime_ms = 1500, .adapter_state = "powered"};
	return 0;
}

static int fake_pause(void *ud, const char *reason)
{
	struct fake *f = ud;

	f->pauses++;
	snprintf(f->last_reason, sizeof(f->last_reason), "%s", reason ? reason : "(null)");
	return f->pause_r;
}

static int fake_resume(void *ud)
{
	struct fake *f = ud;

	f->resumes++;
	return f->resume_r;
}

static int fake_retry(void *ud, const char *address)
{
	struct fake *f = ud;

	f->retries++;
	snprintf(f->last_retry, sizeof(f->last_retry), "%s", address);
	return f->retry_r;
}

static int fake_progress(void *ud, const char *address, struct fgw_api_progress *ret)
{
	if (strcmp(address, "AA:00:00:00:00:0A") != 0)
		return -ENOENT;
	*ret = (struct fgw_api_progress){
	    .image = 0, .bytes = 4096, .total = 8192, .rate_bps = 1024, .eta_s = 4};
	return 0;
}

static void fake_metrics(void *ud, struct fgw_prom *w)
{
	static const double bounds[] = {10, 60};
	static const uint64_t counts[] = {1, 2, 3};

	fgw_prom_family(w, "fotagw_upload_bytes_total", "counter", "Bytes acknowledged.");
	fgw_prom_sample(w, "fotagw_upload_bytes_total", NULL, 123456);
	fgw_prom_histogram(w, "fotagw_job_duration_seconds", "Job durations.", bounds, counts, 2,
			   400.5);
}

/* ---- fixture: a seeded store and an API object without a socket ---- */

static int open_store(struct fixture *f, bool seeded)
{
	return tmp_store_open("fgw-test-api", f->dir, f->path, seeded ? api_seed_sql : NULL, &f->s);
}

static void init_api(struct fixture *f, bool with_provider)
{
	f->api = (struct fgw_api){.store = f->s, .token = TOKEN, .token_len = strlen(TOKEN)};
	if (with_provider)
		f->api.prov = (struct fgw_api_provider){
		    .user_data = &f->fake,
		    .health = fake_health,
		    .adapters = fake_adapters,
		    .pause = fake_pause,
		    .resume = fake_resume,
		    .retry = fake_retry,
		    .progress = fake_progress,
		    .metrics = fake_metrics,
		};
}

static int setup_common(void **state, bool seeded, bool provider)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->param = *state;
	if (open_store(f, seeded) < 0)
		return -1;
	init_api(f, provider);
	*state = f;
	return 0;
}

int setup(void **state)
{
	return setup_common(state, true, true);
}

int setup_bare(void **state)
{
	return setup_common(state, true, false);
}

int setup_empty(void **state)
{
	return setup_common(state, false, true);
}

int teardown(void **state)
{
	struct fixture *f = *state;

	tmp_store_remove(f->s, f->dir);
	free(f);
	return 0;
}

const char *query_arg(void *ctx, const char *key)
{
	/* Several arguments are looked up per request: rotate through a few buffers. */
	static char values[8][256];
	static unsigned next;
	char *value = values[next++ % 8];
	const char *q = ctx;
	size_t klen = strlen(key);

	while (q && *q) {
		const char *end = strchr(q, '&');
		size_t len = end ? (size_t) (end - q) : strlen(q);
		if (len > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
			snprintf(value, sizeof(values[0]), "%.*s", (int) (len - klen - 1),
				 q + klen + 1);
			return value;
		}
		q = end ? end + 1 : NULL;
	}
	return NULL;
}

void request(struct fixture *f, const char *method, const char *path, const char *query,
	     const char *auth, const char *body, struct api_response *resp)
{
	struct api_request req = {
	    .method = method,
	    .path = path,
	    .arg = query_arg,
	    .arg_ctx = (void *) query,
	    .authorization = auth,
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	    .peer = "test",
	};

	fgw_api__handle(&f->api, &req, resp);
	assert_non_null(resp->body);
	assert_int_equal(resp->len, strlen(resp->body));
}

cJSON *get_json(struct fixture *f, const char *method, const char *path, const char *query,
		const char *auth, const char *body, unsigned status)
{
	struct api_response resp;
	cJSON *j;

	request(f, method, path, query, auth, body, &resp);
	if (resp.status != status)
		fail_msg("%s %s: status %u, want %u: %s", method, path, resp.status, status,
			 resp.body);
	assert_string_equal(resp.content_type, "application/json");
	j = cJSON_Parse(resp.body);
	assert_non_null(j);
	api_response_done(&resp);
	return j;
}

const cJSON *at(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v)
		fail_msg("missing field '%s'", key);
	return v;
}

double num(const cJSON *o, const char *key)
{
	const cJSON *v = at(o, key);

	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = at(o, key);

	assert_true(cJSON_IsString(v));
	return v->valuestring;
}
