/*
 * Test harness for the release tier: drives lib/fetch and the release source against a real
 * server and prints one JSON line per outcome for test_release_http.py to check.
 *
 *   release-tool get URL [--etag E] [--max N]
 *   release-tool download URL PATH SIZE [--timeout S] [--low-speed-limit B] [--low-speed-time S]
 *   release-tool source CONFIG [--cycles N]
 *
 * "source" reads the [store] and [release] sections of a fotagwd config file, the way the
 * daemon does, and runs N poll cycles (the first one after start).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "config.h"
#include "fetch.h"
#include "release.h"
#include "store.h"
#include "util.h"

static const char *errname(int err)
{
	static char buf[16];

	switch (-err) {
	case 0:
		return "OK";
	case ENOENT:
		return "ENOENT";
	case EFBIG:
		return "EFBIG";
	case ENODATA:
		return "ENODATA";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case EPIPE:
		return "EPIPE";
	case ECONNRESET:
		return "ECONNRESET";
	case EPROTO:
		return "EPROTO";
	case EACCES:
		return "EACCES";
	case EIO:
		return "EIO";
	}
	snprintf(buf, sizeof(buf), "E%d", -err);
	return buf;
}

/* JSON string contents: quotes, backslashes and control bytes escaped. */
static const char *js(const char *s)
{
	static char buf[4][512];
	static int n;
	char *out = buf[n++ % 4];
	size_t o = 0;

	for (; s && *s && o + 7 < sizeof(buf[0]); s++) {
		if (*s == '"' || *s == '\\') {
			out[o++] = '\\';
			out[o++] = *s;
		} else if ((unsigned char) *s < 0x20) {
			o += (size_t) snprintf(out + o, 7, "\\u%04x", (unsigned char) *s);
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
	return out;
}

struct run {
	bool done;
	uint64_t start;
};

static void on_get(int err, const struct fgw_fetch_result *res, void *user_data)
{
	struct run *run = user_data;

	printf("{\"err\": \"%s\", \"status\": %ld, \"etag\": \"%s\", \"not_modified\": %s, "
	       "\"len\": %zu, \"error\": \"%s\"}\n",
	       errname(err), res ? res->status : 0L, js(res ? res->etag : NULL),
	       res && res->not_modified ? "true" : "false", res ? res->len : 0,
	       js(res ? res->error : NULL));
	run->done = true;
}

static void on_download(int err, const struct fgw_fetch_result *res, void *user_data)
{
	struct run *run = user_data;

	printf("{\"err\": \"%s\", \"status\": %ld, \"size\": %" PRIu64
	       ", \"resumed_from\": %" PRIu64 ", \"error\": \"%s\"}\n",
	       errname(err), res ? res->status : 0L, res ? res->size : 0,
	       res ? res->resumed_from : 0, js(res ? res->error : NULL));
	run->done = true;
}

static int cmd_fetch(int argc, char **argv, bool download)
{
	static const struct option opts[] = {
	    {"etag", required_argument, NULL, 'e'},
	    {"max", required_argument, NULL, 'm'},
	    {"timeout", required_argument, NULL, 't'},
	    {"low-speed-limit", required_argument, NULL, 'l'},
	    {"low-speed-time", required_argument, NULL, 'L'},
	    {"ca", required_argument, NULL, 'c'},
	    {},
	};
	struct fgw_fetch_options o = {0};
	const char *etag = NULL;
	size_t max = 1 << 20;
	struct fgw_fetch *f;
	struct run run = {0};
	uv_loop_t loop;
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'e':
			etag = optarg;
			break;
		case 'm':
			max = strtoull(optarg, NULL, 10);
			break;
		case 't':
			o.timeout_s = atoi(optarg);
			break;
		case 'l':
			o.low_speed_limit = atoi(optarg);
			break;
		case 'L':
			o.low_speed_time_s = atoi(optarg);
			break;
		case 'c':
			o.ca_file = optarg;
			break;
		default:
			return 2;
		}
	}
	if (argc - optind != (download ? 3 : 1))
		return 2;
	uv_loop_init(&loop);
	r = fgw_fetch_new(&loop, &o, &f);
	if (r < 0)
		return 1;
	if (download)
		r = fgw_fetch_download(f, argv[optind], argv[optind + 1],
				       strtoull(argv[optind + 2], NULL, 10), on_download, &run,
				       NULL, NULL);
	else
		r = fgw_fetch_get(f, argv[optind], etag, max, on_get, &run, NULL, NULL);
	if (r < 0) {
		printf("{\"err\": \"%s\", \"start\": true}\n", errname(r));
	} else {
		while (!run.done)
			uv_run(&loop, UV_RUN_ONCE);
	}
	fflush(stdout);
	fgw_fetch_free(f);
	uv_run(&loop, UV_RUN_DEFAULT);
	return uv_loop_close(&loop) == 0 ? 0 : 3;
}

struct source_run {
	int cycles;
	struct fgw_release_source *src;
};

static void on_verified(const struct fgw_release_info *info, void *user_data)
{
	printf("{\"event\": \"verified\", \"id\": \"%s\", \"version\": \"%s\", \"restored\": %s, "
	       "\"images\": %zu, \"path\": \"%s\"}\n",
	       info->release->id, info->release->version, info->restored ? "true" : "false",
	       info->n_images, info->bundle_path);
	fflush(stdout);
}

static void on_cycle(const char *result, void *user_data)
{
	struct source_run *sr = user_data;

	printf("{\"event\": \"cycle\", \"result\": \"%s\"}\n", result);
	fflush(stdout);
	sr->cycles++;
}

static void on_diag(const char *file, int line, const char *section, const char *key,
		    const char *message, void *user_data)
{
	fprintf(stderr, "%s:%d: %s\n", file ? file : "", line, message);
}

static int cmd_source(int argc, char **argv)
{
	struct fgw_config cfg = {0};
	struct fgw_store *store = NULL;
	struct fgw_release_source *src = NULL;
	struct source_run sr = {0};
	const char *keys[FGW_MANIFEST_MAX_KEYS];
	size_t n_keys = 0;
	char *saveptr = NULL, *tok, *key_list;
	int want = 1, r;
	uv_loop_t loop;

	if (argc < 2)
		return 2;
	if (argc == 4 && strcmp(argv[2], "--cycles") == 0)
		want = atoi(argv[3]);
	r = fgw_config_load_file(argv[1], &cfg, on_diag, NULL);
	if (r < 0)
		return 2;
	fgw_log_set_level(cfg.log_level);
	r = fgw_store_open(cfg.db_path, cfg.busy_timeout_ms, &store);
	if (r == 0)
		r = fgw_store_migrate(store, NULL, 0);
	if (r < 0) {
		fgw_log_errno(LOG_ERR, r, "store");
		return 1;
	}
	key_list = strdup(cfg.release_trusted_keys);
	for (tok = strtok_r(key_list, " \t", &saveptr); tok && n_keys < FGW_MANIFEST_MAX_KEYS;
	     tok = strtok_r(NULL, " \t", &saveptr))
		keys[n_keys++] = tok;
	struct fgw_release_source_options o = {
	    .manifest_url = cfg.release_manifest_url,
	    .poll_interval_s = (unsigned) cfg.release_poll_interval_s,
	    .trusted_keys = keys,
	    .n_trusted_keys = n_keys,
	    .mcuboot_key = *cfg.release_mcuboot_key ? cfg.release_mcuboot_key : NULL,
	    .cache_dir = cfg.release_cache_dir,
	    .cache_budget_bytes = (uint64_t) cfg.release_cache_budget_mib * 1024 * 1024,
	    .channel = cfg.release_channel,
	    .fetch =
		{
		    .ca_file = *cfg.release_ca_file ? cfg.release_ca_file : NULL,
		    .client_cert = *cfg.release_client_cert ? cfg.release_client_cert : NULL,
		    .client_key = *cfg.release_client_key ? cfg.release_client_key : NULL,
		    .timeout_s = cfg.release_download_timeout_s,
		    .low_speed_limit = cfg.release_low_speed_limit_bytes,
		    .low_speed_time_s = cfg.release_low_speed_time_s,
		},
	};
	uv_loop_init(&loop);
	r = fgw_release_source_new(&loop, store, &o, &src);
	if (r < 0) {
		fgw_log_errno(LOG_ERR, r, "release source");
		return 1;
	}
	fgw_release_source_set_verified_cb(src, on_verified, &sr);
	fgw_release_source_set_cycle_cb(src, on_cycle, &sr);
	fgw_release_source_start(src);
	while (sr.cycles < want) {
		int before = sr.cycles;
		while (sr.cycles == before)
			uv_run(&loop, UV_RUN_ONCE);
		if (sr.cycles < want)
			fgw_release_source_poll_now(src);
	}
	fgw_release_source_free(src);
	uv_run(&loop, UV_RUN_DEFAULT);
	r = uv_loop_close(&loop);
	fgw_store_free(store);
	free(key_list);
	fgw_config_done(&cfg);
	return r == 0 ? 0 : 3;
}

int main(int argc, char **argv)
{
	fgw_log_set_level(LOG_INFO);
	if (argc < 2)
		return 2;
	if (strcmp(argv[1], "get") == 0)
		return cmd_fetch(argc - 1, argv + 1, false);
	if (strcmp(argv[1], "download") == 0)
		return cmd_fetch(argc - 1, argv + 1, true);
	if (strcmp(argv[1], "source") == 0)
		return cmd_source(argc - 1, argv + 1);
	return 2;
}
