/*
 * `fotactl watch`: a live view of the rollout for a technician on site. Every interval it
 * asks the gateway for the rollout summary and the devices in an active state, and redraws
 * one screen: counts per state, one progress bar per active device (image, percent, KiB/s,
 * ETA), and the failures with their reasons. Live progress comes from the gateway when the
 * fleet reports it; otherwise the view shows the persisted upload offset and measures the
 * rate itself from how that offset moves between frames (no percent or ETA is guessed).
 * The live view fetches with libcurl's multi interface while it polls the keyboard, so `q`
 * quits at once even while the gateway is slow to answer.
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ops-client.h"
#include "util.h"

const char fotactl_watch_usage[] =
    "watch [--interval MS] [--once]  live view of the rollout (q or Ctrl-C quits)\n";

#define ACTIVE_STATES                                                                              \
	"connecting,probing,uploading,marking,resetting,rebooting,verifying,confirming"
#define PATH_ROLLOUT "/v1/rollout"
#define PATH_DEVICES "/v1/devices?limit=1000&state=" ACTIVE_STATES

/* What one frame shows: the two answers, or why there are none. */
struct fetched {
	int r; /* < 0: the gateway could not be reached (err says why) */
	long st1, st2;
	cJSON *ro, *devs;
	char err[512];
};

/* Offsets seen in the previous frame, to measure a rate when the gateway gives none. */
struct seen {
	char address[72];
	double offset;
	int64_t image;
	uint64_t at_ms;
	double rate; /* bytes/s, < 0 unknown */
};

struct view {
	struct ops_conn *conn;
	struct seen *seen;
	size_t n_seen;
	char *frame;
	size_t len, cap;
	int cols, rows, line;
	bool ansi; /* a terminal: lines end in "clear to end of line" */
};

static volatile sig_atomic_t stop_requested, resized;

static void on_signal(int sig)
{
	if (sig == SIGWINCH)
		resized = 1;
	else
		stop_requested = 1;
}

/* Appends one screen line, cut to the terminal width, clearing what was there before. */
static void line(struct view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void line(struct view *v, const char *fmt, ...)
{
	char buf[1024];
	size_t n, need;
	va_list ap;

	if (v->line >= v->rows)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n = strlen(buf);
	if (v->cols > 0 && n > (size_t) v->cols)
		n = (size_t) v->cols;
	need = v->len + n + 8;
	if (need > v->cap) {
		char *p = realloc(v->frame, need * 2);
		if (!p)
			return;
		v->frame = p;
		v->cap = need * 2;
	}
	memcpy(v->frame + v->len, buf, n);
	v->len += n;
	if (v->ansi) {
		memcpy(v->frame + v->len, "\033[K", 3);
		v->len += 3;
	}
	v->frame[v->len++] = '\n';
	v->line++;
}

static void bar(char *buf, size_t width, double fraction)
{
	size_t fill = fraction < 0 ? 0 : (size_t) lround(FGW_MIN(fraction, 1.0) * (double) width);

	for (size_t i = 0; i < width; i++)
		buf[i] = i < fill ? '#' : '.';
	buf[width] = '\0';
}

static void eta_text(double seconds, char *buf, size_t size)
{
	long s = lround(seconds);

	if (seconds < 0 || !isfinite(seconds))
		snprintf(buf, size, "-");
	else if (s >= 3600)
		snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

static struct seen *seen_find(struct view *v, const char *address)
{
	for (size_t i = 0; i < v->n_seen; i++)
		if (strcmp(v->seen[i].address, address) == 0)
			return &v->seen[i];
	return NULL;
}

static void device_line(struct view *v, const cJSON *d, struct seen *now, uint64_t now_ms)
{
	const cJSON *job = cJSON_GetObjectItemCaseSensitive(d, "job");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
	const char *addr = ops_str(d, "address"), *state = ops_str(d, "state");
	double offset = ops_num(job, "offset", -1), rate = -1, fraction = -1, eta = -1;
	int64_t image = (int64_t) ops_num(job, "image", -1);
	char b[64], eta_s[24], amount[48], img[24], rate_s[24];
	struct seen *prev = seen_find(v, addr);

	if (cJSON_IsObject(p)) {
		double bytes = ops_num(p, "bytes", 0), total = ops_num(p, "total", 0);
		image = (int64_t) ops_num(p, "image", (double) image);
		rate = ops_num(p, "rate_bps", -1);
		eta = ops_num(p, "eta_s", -1);
		fraction = total > 0 ? bytes / total : -1;
		snprintf(amount, sizeof(amount), "%5.1f%%", fraction >= 0 ? 100 * fraction : 0.0);
		offset = bytes;
	} else {
		/* No live progress: the persisted offset, and a rate measured here. */
		if (prev && prev->image == image && offset >= prev->offset &&
		    now_ms > prev->at_ms) {
			rate = offset > prev->offset ? (offset - prev->offset) * 1000.0 /
							   (double) (now_ms - prev->at_ms)
						     : prev->rate;
		}
		snprintf(amount, sizeof(amount), "%7.0f KiB", offset >= 0 ? offset / 1024 : 0.0);
	}
	*now = (struct seen){.offset = offset, .image = image, .at_ms = now_ms, .rate = rate};
	snprintf(now->address, sizeof(now->address), "%s", addr);
	/* Keep the last rate while the offset did not move (persisted offsets come in steps). */
	if (prev && now->rate < 0 && prev->image == image && offset == prev->offset)
		now->rate = prev->rate;
	rate = now->rate;

	eta_text(eta, eta_s, sizeof(eta_s));
	/* Without a total there is no fraction to draw: a blank bar, not an empty one. */
	if (fraction >= 0)
		bar(b, 24, fraction);
	else
		snprintf(b, sizeof(b), "%24s", "");
	if (image >= 0)
		snprintf(img, sizeof(img), "img%lld", (long long) image);
	else
		snprintf(img, sizeof(img), "-");
	if (rate >= 0)
		snprintf(rate_s, sizeof(rate_s), "%8.1f", rate / 1024);
	else
		snprintf(rate_s, sizeof(rate_s), "%8s", "-");
	if (strcmp(state, "uploading") == 0)
		line(v, "%-20s %-10s %-5s [%s] %s %s KiB/s  ETA %s", addr, state, img, b, amount,
		     rate_s, eta_s);
	else
		line(v, "%-20s %s", addr, state);
}

/* The release, canary and count lines of a frame. */
static void summary(struct view *v, const cJSON *ro)
{
	const cJSON *rel = cJSON_GetObjectItemCaseSensitive(ro, "release");
	const cJSON *canary = cJSON_GetObjectItemCaseSensitive(ro, "canary"), *counts, *it;
	char b1[24], b2[24];

	if (cJSON_IsObject(rel)) {
		char max[48] = "";
		if (ops_num(ro, "max_failure_rate", -1) >= 0)
			snprintf(max, sizeof(max), " (halts above %.1f%%)",
				 100 * ops_num(ro, "max_failure_rate", 0));
		line(v, "Release %s (%s)%s   devices %s   in progress %s   failure rate %.1f%%%s",
		     ops_str(rel, "id"), ops_str(rel, "version"),
		     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ro, "halted")) ? "   HALTED"
										  : "",
		     ops_int(ro, "total_devices", b1, sizeof(b1)),
		     ops_int(ro, "in_progress", b2, sizeof(b2)),
		     100 * ops_num(ro, "failure_rate", 0), max);
	} else {
		line(v, "No verified release yet   devices %s",
		     ops_int(ro, "total_devices", b1, sizeof(b1)));
	}
	line(v, "Canary: %s", ops_str(canary, "status"));
	{
		char buf[1024];
		size_t n = 0;
		counts = cJSON_GetObjectItemCaseSensitive(ro, "counts");
		buf[0] = '\0';
		cJSON_ArrayForEach(it, counts) if (cJSON_IsNumber(it) && it->valuedouble > 0 &&
						   n < sizeof(buf)) n +=
		    (size_t) snprintf(buf + n, sizeof(buf) - n, "%s %.0f   ", it->string,
				      it->valuedouble);
		line(v, "%s", buf[0] ? buf : "no devices");
	}
}

/* One frame from what was fetched: lay out, the text is owned by @v. */
static void render(struct view *v, const struct fetched *fx)
{
	char when[32], b1[24];
	const cJSON *ro = fx->ro, *devs = fx->devs;
	const cJSON *it;
	long st1 = fx->st1, st2 = fx->st2;
	struct seen *next_seen = NULL;
	size_t n_next = 0, n_active = 0, shown = 0;
	uint64_t now_ms = fgw_now_ms();
	time_t t = time(NULL);
	struct tm tm;
	int r = fx->r;

	v->len = 0;
	v->line = 0;
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	line(v, "fotagw watch  %s  %s  (q quits)", v->conn->url, when);

	if (r < 0 || st1 != 200 || st2 != 200 || !ro || !devs) {
		line(v, "%s", "");
		if (r < 0)
			line(v, "gateway unreachable: %s", fx->err);
		else
			line(v, "gateway answered HTTP %ld/%ld: %s", st1, st2,
			     ops_str(st1 != 200 ? ro : devs, "message"));
		goto out;
	}

	summary(v, ro);
	line(v, "%s", "");

	n_active = (size_t) cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(devs, "devices"));
	next_seen = calloc(n_active ? n_active : 1, sizeof(*next_seen));
	line(v, "Active devices: %zu", n_active);
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(devs, "devices"))
	{
		/* Leave room for the failures below when the screen is short. */
		if (next_seen && v->line < v->rows - 8) {
			device_line(v, it, &next_seen[n_next++], now_ms);
			shown++;
		} else if (next_seen) {
			/* Not drawn, but its offset is remembered for the rate next time. */
			struct seen *s = &next_seen[n_next++];
			const cJSON *job = cJSON_GetObjectItemCaseSensitive(it, "job");
			snprintf(s->address, sizeof(s->address), "%s", ops_str(it, "address"));
			s->offset = ops_num(job, "offset", -1);
			s->image = (int64_t) ops_num(job, "image", -1);
			s->at_ms = now_ms;
			s->rate = -1;
		}
	}
	if (shown < n_active)
		line(v, "... and %zu more", n_active - shown);
	free(v->seen);
	v->seen = next_seen;
	v->n_seen = n_next;

	line(v, "%s", "");
	{
		char buf[1024];
		size_t n = 0;
		buf[0] = '\0';
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(
					   ro, "failure_reasons")) if (n < sizeof(buf)) n +=
		    (size_t) snprintf(buf + n, sizeof(buf) - n, "%s: %s   ", ops_str(it, "reason"),
				      ops_int(it, "count", b1, sizeof(b1)));
		line(v, "Failures: %s", buf[0] ? buf : "none");
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(ro, "failures"))
	    line(v, "  %-20s %-9s %s", ops_str(it, "address"), ops_str(it, "state"),
		 ops_str(it, "reason"));
out:
	return;
}

static void fetched_clear(struct fetched *fx)
{
	cJSON_Delete(fx->ro);
	cJSON_Delete(fx->devs);
	*fx = (struct fetched){0};
}

/* --once and pipes: nothing to quit, so plain blocking requests. */
static void fetch_blocking(struct ops_conn *c, struct fetched *fx)
{
	fx->r =
	    ops_request(c, "GET", PATH_ROLLOUT, NULL, &fx->st1, &fx->ro, fx->err, sizeof(fx->err));
	if (fx->r >= 0)
		fx->r = ops_request(c, "GET", PATH_DEVICES, NULL, &fx->st2, &fx->devs, fx->err,
				    sizeof(fx->err));
}

/* ---- the live view's requests: both in flight at once, driven from the key loop ---- */

struct req {
	CURL *h;
	char *url;
	struct ops_body body;
	bool running;
	CURLcode rc;
};

struct http {
	CURLM *m;
	struct req q[2]; /* rollout, devices */
	unsigned running;
};

static int http_init(struct http *h, const struct ops_conn *c)
{
	static const char *const paths[] = {PATH_ROLLOUT, PATH_DEVICES};

	h->m = curl_multi_init();
	if (!h->m)
		return -ENOMEM;
	for (int i = 0; i < 2; i++) {
		h->q[i].h = curl_easy_init();
		if (!h->q[i].h || asprintf(&h->q[i].url, "%s%s", c->url, paths[i]) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void http_done(struct http *h)
{
	for (int i = 0; i < 2; i++) {
		if (h->q[i].running)
			curl_multi_remove_handle(h->m, h->q[i].h);
		curl_easy_cleanup(h->q[i].h);
		free(h->q[i].url);
		ops_body_clear(&h->q[i].body);
	}
	curl_multi_cleanup(h->m);
}

static void http_start(struct http *h)
{
	for (int i = 0; i < 2; i++) {
		struct req *q = &h->q[i];
		CURL *e = q->h;

		ops_curl_setup(e, q->url, &q->body);
		q->running = curl_multi_add_handle(h->m, e) == CURLM_OK;
		q->rc = q->running ? CURLE_OK : CURLE_OUT_OF_MEMORY;
		h->running += q->running;
	}
}

/* Moves the requests on; true when both have ended (then @fx holds the frame's data). */
static bool http_step(struct http *h, struct fetched *fx)
{
	CURLMsg *msg;
	int still, left;

	curl_multi_perform(h->m, &still);
	while ((msg = curl_multi_info_read(h->m, &left)))
		for (int i = 0; msg->msg == CURLMSG_DONE && i < 2; i++)
			if (h->q[i].h == msg->easy_handle && h->q[i].running) {
				h->q[i].rc = msg->data.result;
				h->q[i].running = false;
				h->running--;
				curl_multi_remove_handle(h->m, msg->easy_handle);
			}
	if (h->running)
		return false;
	*fx = (struct fetched){0};
	for (int i = 0; i < 2; i++) {
		struct req *q = &h->q[i];
		if (q->rc != CURLE_OK) {
			fx->r = -EIO;
			snprintf(fx->err, sizeof(fx->err), "%s", curl_easy_strerror(q->rc));
			continue;
		}
		curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, i ? &fx->st2 : &fx->st1);
		if (q->body.data) {
			cJSON **j = i ? &fx->devs : &fx->ro;
			*j = cJSON_ParseWithLength(q->body.data, q->body.len);
			/* Device and network text, bound for the terminal: escaped, as ops_request
			 * does for the blocking path. Without memory for that, nothing is shown. */
			if (*j && ops_sanitize_tree(*j) < 0) {
				cJSON_Delete(*j);
				*j = NULL;
			}
		}
	}
	return true;
}

static void screen_size(struct view *v, bool tty)
{
	struct winsize ws;

	v->cols = 0;
	v->rows = 1000;
	if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) {
		v->cols = ws.ws_col;
		v->rows = ws.ws_row - 1; /* the last line stays free: no scrolling */
	}
}

static void draw(struct view *v, const struct fetched *fx)
{
	screen_size(v, true);
	render(v, fx);
	fputs("\033[H", stdout);
	fwrite(v->frame, 1, v->len, stdout);
	fputs("\033[J", stdout);
	fflush(stdout);
}

/*
 * The live view: a frame every @interval ms. The keyboard is polled together with the
 * requests' sockets, so `q` ends the view at once, also while an answer is still awaited.
 */
static int live(struct view *v, int64_t interval, bool raw_in)
{
	struct http h = {0};
	struct fetched fx = {0}, got;
	bool have = false, fetching = false;
	uint64_t next = 0;
	int r = http_init(&h, v->conn);

	while (r == 0 && !stop_requested) {
		struct curl_waitfd kb = {.fd = STDIN_FILENO, .events = CURL_WAIT_POLLIN};
		uint64_t now = fgw_now_ms();
		int timeout = 200; /* signals (resize, Ctrl-C) are looked at this often */
		char ch;

		if (!fetching && now >= next) {
			http_start(&h);
			fetching = true;
			next = now + (uint64_t) interval;
		}
		if (fetching && http_step(&h, &got)) {
			fetching = false;
			fetched_clear(&fx);
			fx = got;
			have = true;
			draw(v, &fx);
		}
		if (resized) {
			resized = 0;
			if (have)
				draw(v, &fx);
		}
		if (!fetching)
			timeout = (int) FGW_MIN((uint64_t) timeout, next > now ? next - now : 0);
		if (curl_multi_poll(h.m, raw_in ? &kb : NULL, raw_in ? 1 : 0, timeout, NULL) !=
		    CURLM_OK)
			r = -EIO;
		if ((kb.revents & CURL_WAIT_POLLIN) && read(STDIN_FILENO, &ch, 1) == 1 &&
		    (ch == 'q' || ch == 'Q'))
			stop_requested = 1;
	}
	fetched_clear(&fx);
	http_done(&h);
	return r;
}

/* Options into @o, @interval and @once; FOTACTL_EXIT_USAGE (usage printed) on a mistake. */
static int watch_parse_args(int argc, char **argv, struct ops_opts *o, int64_t *interval,
			    bool *once)
{
	enum { OPT_URL = 0x100, OPT_TOKEN_FILE, OPT_CONFIG, OPT_INTERVAL, OPT_ONCE };
	static const struct option opts[] = {
	    {"url", required_argument, NULL, OPT_URL},
	    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
	    {"config", required_argument, NULL, OPT_CONFIG},
	    {"interval", required_argument, NULL, OPT_INTERVAL},
	    {"once", no_argument, NULL, OPT_ONCE},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_URL:
			o->url = optarg;
			break;
		case OPT_TOKEN_FILE:
			o->token_file = optarg;
			break;
		case OPT_CONFIG:
			o->config = optarg;
			break;
		case OPT_INTERVAL:
			if (fgw_parse_int64(optarg, 100, 3600000, interval) < 0)
				goto usage;
			break;
		case OPT_ONCE:
			*once = true;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc)
		goto usage;
	return 0;
usage:
	fprintf(stderr, "Usage: fotactl %s", fotactl_watch_usage);
	return FOTACTL_EXIT_USAGE;
}

/* One plain frame, no escape sequences: for --once and for output that is not a terminal. */
static void watch_once(struct view *v, bool tty)
{
	struct fetched fx = {0};

	screen_size(v, tty);
	v->ansi = false;
	fetch_blocking(v->conn, &fx);
	render(v, &fx);
	fetched_clear(&fx);
	fwrite(v->frame, 1, v->len, stdout);
}

/* The live view on the terminal, which is given back as it was found, whatever live() says. */
static int watch_terminal(struct view *v, int64_t interval)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct termios saved, raw;
	bool raw_in = false;
	int r;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGWINCH, &sa, NULL);
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t) (ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		raw_in = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	}
	/* Alternate screen, cursor hidden: the shell's screen comes back as it was. */
	fputs("\033[?1049h\033[?25l", stdout);
	v->ansi = true;
	r = live(v, interval, raw_in);
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (raw_in)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	return r;
}

int fotactl_watch(const struct fotactl_ctx *ctx, int argc, char **argv)
{
	struct ops_opts o = {0};
	struct ops_conn conn;
	struct view v = {.conn = &conn};
	bool once = false, tty = isatty(STDOUT_FILENO);
	int64_t interval = 1000;
	int r;

	r = watch_parse_args(argc, argv, &o, &interval, &once);
	if (r)
		return r;
	r = ops_conn_open(ctx, &o, &conn);
	if (r)
		return r;
	if (once || !tty)
		watch_once(&v, tty);
	else
		r = watch_terminal(&v, interval);
	free(v.frame);
	free(v.seen);
	ops_conn_close(&conn);
	if (r < 0)
		fprintf(stderr, "fotactl: watch: %s\n", strerror(-r));
	return r < 0 ? 1 : 0;
}
