/*
 * fotactl ops commands: what the gateway is doing (devices, device, rollout, releases) and
 * the three actions (pause, resume, retry), over fotagwd's REST API. Tables for people,
 * --json for scripts (the API's own JSON, pages of a listing merged into one document).
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops-client.h"
#include "util.h"

const char fotactl_ops_usage[] =
    "devices [--state S[,S...]] [--group G] [--release R] [--limit N]\n"
    "                               devices in address order, all pages\n"
    "devices enroll ADDR [--passkey-file F] [--board B] [--group G] [--label L]\n"
    "                               enrol a device: it may get firmware (needs the token)\n"
    "devices import FILE.csv        enrol every device of FILE (header line; columns\n"
    "                               address,passkey,board,group,label): all or none\n"
    "devices forget ADDR            forget a device: registry row, jobs, its passkey\n"
    "device ADDR                    one device: images, job, recent events\n"
    "rollout                        the current rollout: counts, failure rate, failures\n"
    "releases                       releases the gateway knows\n"
    "pause [--reason TEXT]          halt the current rollout (needs the token)\n"
    "resume                         resume it (needs the token)\n"
    "retry ADDR                     schedule a device's job again now (needs the token)\n";

enum {
	OPT_STATE = OPS_OPT_NEXT,
	OPT_GROUP,
	OPT_RELEASE,
	OPT_LIMIT,
	OPT_REASON,
};

static int bad_usage(const char *cmd)
{
	fprintf(stderr, "Usage: fotactl %s (fotactl %.*s --help)\n", cmd, (int) strcspn(cmd, " "),
		cmd);
	return FOTACTL_EXIT_USAGE;
}

/* An operand the command does not take, or a missing one: say which. */
static int bad_operands(const char *cmd, int argc, char **argv, int want)
{
	if (argc - optind > want)
		fprintf(stderr, "fotactl: unexpected argument '%s'\n", argv[optind + want]);
	else
		fprintf(stderr, "fotactl: missing argument\n");
	return bad_usage(cmd);
}

static void print_json(const cJSON *j)
{
	char *s = cJSON_Print(j);
	char *safe = s ? ops_json_terminal_safe(s) : NULL;

	if (safe)
		puts(safe);
	free(safe);
	free(s);
}

/* ---- devices ---- */

static const char *job_progress(const cJSON *job, char *buf, size_t size)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
	double off = ops_num(job, "offset", -1);

	if (cJSON_IsObject(p) && ops_num(p, "total", 0) > 0)
		snprintf(buf, size, "img %s %.1f%%", ops_int(p, "image", (char[24]){0}, 24),
			 ops_num(p, "percent", 0));
	else if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(job, "image")) && off >= 0)
		snprintf(buf, size, "img %s @%.0f KiB", ops_int(job, "image", (char[24]){0}, 24),
			 off / 1024);
	else
		snprintf(buf, size, "-");
	return buf;
}

static void device_row(struct ops_table *t, const cJSON *d)
{
	const cJSON *job = cJSON_GetObjectItemCaseSensitive(d, "job");
	char att[24], prog[64];
	const char *cells[] = {
	    ops_str(d, "address"),
	    ops_str(d, "name"),
	    ops_str(d, "group"),
	    ops_str(d, "state"),
	    cJSON_IsObject(job) ? ops_str(job, "release") : "-",
	    cJSON_IsObject(job) ? job_progress(job, prog, sizeof(prog)) : "-",
	    cJSON_IsObject(job) ? ops_int(job, "attempts", att, sizeof(att)) : "-",
	    cJSON_IsObject(job) ? ops_str(job, "reason") : "-",
	};

	ops_table_add(t, cells);
}

/* What `devices` lists: the API's filters, and how many rows at most. */
struct devices_query {
	const char *state, *group, *release;
	int64_t limit;
};

/* A listing being gathered page by page: rows into @t for people, or into @list for --json. */
struct devices_listing {
	struct ops_table *t;
	cJSON *all, *list;
	cJSON *page; /* the last page fetched: it says whether there is a current release */
	char *cursor;
	int64_t shown;
};

static int devices_parse_args(int argc, char **argv, struct ops_opts *o, struct devices_query *q)
{
	static const struct option opts[] = {
	    OPS_COMMON_OPTS,
	    {"state", required_argument, NULL, OPT_STATE},
	    {"group", required_argument, NULL, OPT_GROUP},
	    {"release", required_argument, NULL, OPT_RELEASE},
	    {"limit", required_argument, NULL, OPT_LIMIT},
	    {},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ops_common_opt(c, o))
			continue;
		switch (c) {
		case OPT_STATE:
			q->state = optarg;
			break;
		case OPT_GROUP:
			q->group = optarg;
			break;
		case OPT_RELEASE:
			q->release = optarg;
			break;
		case OPT_LIMIT:
			if (fgw_parse_int64(optarg, 1, INT64_MAX, &q->limit) < 0) {
				fprintf(stderr, "fotactl: bad --limit '%s' (1 or more)\n", optarg);
				return bad_usage("devices");
			}
			break;
		default:
			return bad_usage("devices");
		}
	}
	if (optind != argc)
		return bad_operands("devices", argc, argv, 0);
	return 0;
}

/* The next page's request path, or NULL without memory. */
static char *devices_page_path(struct ops_conn *conn, const struct devices_query *q,
			       const char *cursor, int64_t want)
{
	_cleanup_free_ char *qs = NULL, *qg = NULL, *qr = NULL, *qc = NULL;
	char *path;

	qs = q->state ? ops_escape(conn, q->state) : NULL;
	qg = q->group ? ops_escape(conn, q->group) : NULL;
	qr = q->release ? ops_escape(conn, q->release) : NULL;
	qc = cursor ? ops_escape(conn, cursor) : NULL;
	if (asprintf(&path, "/v1/devices?limit=%lld%s%s%s%s%s%s%s%s", (long long) want,
		     qs ? "&state=" : "", qs ? qs : "", qg ? "&group=" : "", qg ? qg : "",
		     qr ? "&release=" : "", qr ? qr : "", qc ? "&cursor=" : "", qc ? qc : "") < 0)
		return NULL;
	return path;
}

/* Follows the cursor to the end (or to --limit): people want the whole list. */
static int devices_fetch_all(struct ops_conn *conn, const struct devices_query *q,
			     struct devices_listing *l)
{
	do {
		_cleanup_free_ char *path = NULL;
		const cJSON *d, *next;
		int64_t want = FGW_MIN(q->limit - l->shown, (int64_t) 1000);

		path = devices_page_path(conn, q, l->cursor, want);
		if (!path)
			return -ENOMEM;
		cJSON_Delete(l->page);
		l->page = ops_get(conn, path);
		if (!l->page)
			return -EIO;
		cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(l->page, "devices"))
		{
			if (l->shown >= q->limit)
				break;
			if (l->t)
				device_row(l->t, d);
			else
				cJSON_AddItemToArray(l->list, cJSON_Duplicate(d, true));
			l->shown++;
		}
		next = cJSON_GetObjectItemCaseSensitive(l->page, "next_cursor");
		free(l->cursor);
		l->cursor = cJSON_IsString(next) ? strdup(next->valuestring) : NULL;
	} while (l->cursor && l->shown < q->limit);
	return 0;
}

static void devices_print(struct devices_listing *l)
{
	if (l->t) {
		ops_table_print(l->t, stdout);
		printf("%lld device%s%s%s\n", (long long) l->shown, l->shown == 1 ? "" : "s",
		       l->cursor ? " (more: raise --limit)" : "",
		       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(l->page, "release"))
			   ? ""
			   : " (no current release)");
	} else {
		cJSON_AddItemToObject(
		    l->all, "release",
		    cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(l->page, "release"), true));
		print_json(l->all);
	}
}

int fotactl_devices(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const char *const headers[] = {"ADDRESS", "NAME",     "GROUP", "STATE",
					      "RELEASE", "PROGRESS", "TRIES", "REASON"};
	struct devices_query q = {.limit = INT64_MAX};
	struct devices_listing l = {0};
	struct ops_opts o = {0};
	struct ops_conn conn;
	int r;

	if (fotactl_devices_is_change(argc, argv))
		return fotactl_devices_change(ctx, argc, argv);
	r = devices_parse_args(argc, argv, &o, &q);
	if (r)
		return r;
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		return r;
	l.all = cJSON_CreateObject();
	l.list = cJSON_AddArrayToObject(l.all, "devices");
	if (!conn.json)
		l.t = ops_table_new(ARRAY_SIZE(headers), headers);
	r = devices_fetch_all(&conn, &q, &l) < 0 ? FOTACTL_EXIT_FAILED : 0;
	if (r == 0)
		devices_print(&l);
	free(l.cursor);
	cJSON_Delete(l.page);
	cJSON_Delete(l.all);
	ops_table_free(l.t);
	ops_conn_close(&conn);
	return r;
}

/* ---- one device ---- */

static void flags_text(const cJSON *flags, char *buf, size_t size)
{
	static const char *const names[] = {"active", "confirmed", "pending", "permanent",
					    "bootable"};
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(flags, names[i])))
			n += (size_t) snprintf(buf + n, n < size ? size - n : 0, "%s%s",
					       n ? "," : "", names[i]);
	if (!buf[0])
		snprintf(buf, size, "-");
}

static void print_device(const cJSON *d)
{
	const cJSON *job = cJSON_GetObjectItemCaseSensitive(d, "job"), *it;
	char b1[64], b2[64], prog[64];
	struct ops_table *t;

	printf("Address:     %s\n", ops_str(d, "address"));
	printf("Name:        %s\n", ops_str(d, "name"));
	printf("Transport:   %s\n", ops_str(d, "transport"));
	printf("Board:       %s\n", ops_str(d, "board"));
	printf("Group:       %s\n", ops_str(d, "group"));
	printf("RSSI:        %s\n", ops_int(d, "rssi", b1, sizeof(b1)));
	printf("Last seen:   %s\n", ops_time(d, "last_seen", b2, sizeof(b2)));
	printf("State:       %s\n", ops_str(d, "state"));
	if (cJSON_IsObject(job)) {
		printf("Job:         #%s for release %s, %s\n", ops_int(job, "id", b1, sizeof(b1)),
		       ops_str(job, "release"), ops_str(job, "state"));
		printf("  Progress:  %s\n", job_progress(job, prog, sizeof(prog)));
		printf("  Attempts:  %s\n", ops_int(job, "attempts", b1, sizeof(b1)));
		printf("  Next try:  %s\n", ops_time(job, "next_attempt_at", b2, sizeof(b2)));
		printf("  Reason:    %s\n", ops_str(job, "reason"));
		printf("  Canary:    %s\n",
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(job, "canary")) ? "yes"
										     : "no");
		printf("  Results:   app %s, net %s\n", ops_str(job, "app_result"),
		       ops_str(job, "net_result"));
		printf("  Started:   %s\n", ops_time(job, "started_at", b2, sizeof(b2)));
		printf("  Finished:  %s\n", ops_time(job, "finished_at", b2, sizeof(b2)));
	} else {
		printf("Job:         none for the current release\n");
	}

	printf("\nImages:\n");
	t = ops_table_new(5, (const char *const[]){"IMAGE", "SLOT", "VERSION", "FLAGS", "HASH"});
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "images"))
	{
		char img[24], slot[24], flags[64];
		flags_text(cJSON_GetObjectItemCaseSensitive(it, "flags"), flags, sizeof(flags));
		ops_table_add(t, (const char *const[]){ops_int(it, "image", img, sizeof(img)),
						       ops_int(it, "slot", slot, sizeof(slot)),
						       ops_str(it, "version"), flags,
						       ops_str(it, "hash")});
	}
	ops_table_print(t, stdout);
	ops_table_free(t);

	printf("\nRecent events:\n");
	t = ops_table_new(5, (const char *const[]){"TIME", "KIND", "FROM", "TO", "DETAIL"});
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "events"))
	{
		char at[64];
		ops_table_add(t, (const char *const[]){ops_time(it, "at", at, sizeof(at)),
						       ops_str(it, "kind"), ops_str(it, "from"),
						       ops_str(it, "to"), ops_str(it, "detail")});
	}
	ops_table_print(t, stdout);
	ops_table_free(t);
}

int fotactl_device(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {OPS_COMMON_OPTS, {}};
	_cleanup_free_ char *path = NULL;
	struct ops_opts o = {0};
	struct ops_conn conn;
	cJSON *d;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		if (!ops_common_opt(c, &o))
			return bad_usage("device ADDR");
	if (optind + 1 != argc)
		return bad_operands("device ADDR", argc, argv, 1);
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		return r;
	path = ops_device_path(&conn, argv[optind], "");
	if (!path) {
		ops_conn_close(&conn);
		return FOTACTL_EXIT_FAILED;
	}
	d = ops_get(&conn, path);
	if (d) {
		if (conn.json)
			print_json(d);
		else
			print_device(d);
	}
	cJSON_Delete(d);
	ops_conn_close(&conn);
	return d ? 0 : FOTACTL_EXIT_FAILED;
}

/* ---- rollout ---- */

static void print_rollout(const cJSON *ro)
{
	const cJSON *rel = cJSON_GetObjectItemCaseSensitive(ro, "release");
	const cJSON *canary = cJSON_GetObjectItemCaseSensitive(ro, "canary");
	const cJSON *counts = cJSON_GetObjectItemCaseSensitive(ro, "counts"), *it;
	double rate = ops_num(ro, "failure_rate", -1), max = ops_num(ro, "max_failure_rate", -1);
	char b1[24], b2[24], b3[24];
	struct ops_table *t;

	if (cJSON_IsObject(rel))
		printf("Release:       %s (%s)\n", ops_str(rel, "id"), ops_str(rel, "version"));
	else
		printf("Release:       none verified yet\n");
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ro, "halted")))
		printf("Halted:        YES, by %s: %s\n", ops_str(ro, "halted_by"),
		       ops_str(ro, "halted_reason"));
	else
		printf("Halted:        no\n");
	printf("Devices:       %s, %s in progress\n", ops_int(ro, "total_devices", b1, sizeof(b1)),
	       ops_int(ro, "in_progress", b2, sizeof(b2)));
	if (rate >= 0 && max >= 0)
		printf("Failure rate:  %.1f%% (halts above %.1f%%)\n", 100 * rate, 100 * max);
	else if (rate >= 0)
		printf("Failure rate:  %.1f%%\n", 100 * rate);
	printf("Canary:        %s (%s done, %s failed of %s)\n", ops_str(canary, "status"),
	       ops_int(canary, "done", b1, sizeof(b1)), ops_int(canary, "failed", b2, sizeof(b2)),
	       ops_int(canary, "total", b3, sizeof(b3)));

	printf("\n");
	t = ops_table_new(2, (const char *const[]){"STATE", "DEVICES"});
	cJSON_ArrayForEach(it, counts)
	{
		char n[24];
		if (cJSON_IsNumber(it) && it->valuedouble > 0)
			ops_table_add(
			    t, (const char *const[]){it->string,
						     ops_int(counts, it->string, n, sizeof(n))});
	}
	ops_table_print(t, stdout);
	ops_table_free(t);

	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ro, "failure_reasons")) > 0) {
		printf("\nFailures by reason:\n");
		t = ops_table_new(2, (const char *const[]){"REASON", "DEVICES"});
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(ro, "failure_reasons"))
		{
			char n[24];
			ops_table_add(t, (const char *const[]){ops_str(it, "reason"),
							       ops_int(it, "count", n, sizeof(n))});
		}
		ops_table_print(t, stdout);
		ops_table_free(t);
		printf("\nRecent failures:\n");
		t = ops_table_new(
		    5, (const char *const[]){"TIME", "ADDRESS", "STATE", "TRIES", "REASON"});
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(ro, "failures"))
		{
			char at[64], n[24];
			ops_table_add(
			    t, (const char *const[]){ops_time(it, "at", at, sizeof(at)),
						     ops_str(it, "address"), ops_str(it, "state"),
						     ops_int(it, "attempts", n, sizeof(n)),
						     ops_str(it, "reason")});
		}
		ops_table_print(t, stdout);
		ops_table_free(t);
	}
}

static int simple_get(const struct fotactl_ctx *ctx, int argc, char **argv, const char *cmd,
		      const char *path, void (*print)(const cJSON *))
{
	static const struct option opts[] = {OPS_COMMON_OPTS, {}};
	struct ops_opts o = {0};
	struct ops_conn conn;
	cJSON *j;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		if (!ops_common_opt(c, &o))
			return bad_usage(cmd);
	if (optind != argc)
		return bad_operands(cmd, argc, argv, 0);
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		return r;
	j = ops_get(&conn, path);
	if (j) {
		if (conn.json)
			print_json(j);
		else
			print(j);
	}
	cJSON_Delete(j);
	ops_conn_close(&conn);
	return j ? 0 : FOTACTL_EXIT_FAILED;
}

int fotactl_rollout(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return simple_get(ctx, argc, argv, "rollout", "/v1/rollout", print_rollout);
}

static void print_releases(const cJSON *j)
{
	struct ops_table *t =
	    ops_table_new(7, (const char *const[]){"ID", "VERSION", "SEQ", "STATE", "CURRENT",
						   "SIZE", "CREATED"});
	const cJSON *it;

	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "releases"))
	{
		const cJSON *bundle = cJSON_GetObjectItemCaseSensitive(it, "bundle");
		char seq[24], size[24], at[64];
		ops_table_add(
		    t, (const char *const[]){
			   ops_str(it, "id"), ops_str(it, "version"),
			   ops_int(it, "sequence", seq, sizeof(seq)), ops_str(it, "state"),
			   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "current")) ? "*" : "",
			   ops_int(bundle, "size", size, sizeof(size)),
			   ops_time(it, "created_at", at, sizeof(at))});
	}
	ops_table_print(t, stdout);
	ops_table_free(t);
}

int fotactl_releases(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	return simple_get(ctx, argc, argv, "releases", "/v1/releases", print_releases);
}

/* ---- actions ---- */

static int post(struct ops_conn *conn, const char *path, const char *body, const char *what)
{
	cJSON *j;
	int r;

	r = ops_change(conn, "POST", path, body, what, &j);
	if (r)
		return r;
	if (conn->json)
		print_json(j);
	else if (cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, "changed"))
		printf("rollout %s%s\n",
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "halted")) ? "halted"
										   : "running",
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "changed"))
			   ? ""
			   : " (it already was)");
	else
		printf("%s: done\n", what);
	cJSON_Delete(j);
	return 0;
}

int fotactl_pause(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	    OPS_COMMON_OPTS, {"reason", required_argument, NULL, OPT_REASON}, {}};
	const char *reason = NULL;
	struct ops_opts o = {0};
	struct ops_conn conn;
	char *body = NULL;
	cJSON *b;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (ops_common_opt(c, &o))
			continue;
		if (c != OPT_REASON)
			return bad_usage("pause [--reason TEXT]");
		reason = optarg;
	}
	if (optind != argc)
		return bad_operands("pause [--reason TEXT]", argc, argv, 0);
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		return r;
	if (reason) {
		b = cJSON_CreateObject();
		if (b && cJSON_AddStringToObject(b, "reason", reason))
			body = cJSON_PrintUnformatted(b);
		cJSON_Delete(b);
		if (!body) {
			ops_conn_close(&conn);
			return FOTACTL_EXIT_FAILED;
		}
	}
	r = post(&conn, "/v1/rollout/pause", body, "pause");
	free(body);
	ops_conn_close(&conn);
	return r;
}

int fotactl_resume(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {OPS_COMMON_OPTS, {}};
	struct ops_opts o = {0};
	struct ops_conn conn;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		if (!ops_common_opt(c, &o))
			return bad_usage("resume");
	if (optind != argc)
		return bad_operands("resume", argc, argv, 0);
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		return r;
	r = post(&conn, "/v1/rollout/resume", NULL, "resume");
	ops_conn_close(&conn);
	return r;
}

int fotactl_retry(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {OPS_COMMON_OPTS, {}};
	_cleanup_free_ char *path = NULL;
	struct ops_opts o = {0};
	struct ops_conn conn;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		if (!ops_common_opt(c, &o))
			return bad_usage("retry ADDR");
	if (optind + 1 != argc)
		return bad_operands("retry ADDR", argc, argv, 1);
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		return r;
	path = ops_device_path(&conn, argv[optind], "/retry");
	if (!path) {
		ops_conn_close(&conn);
		return FOTACTL_EXIT_FAILED;
	}
	r = post(&conn, path, NULL, "retry");
	ops_conn_close(&conn);
	return r;
}
