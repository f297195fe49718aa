/*
 * fgw-ble-it: the driver of the BLE integration tests (until fotagw-smp has `ble:` and `scan`).
 *
 *   fgw-ble-it scan [--seconds N] [--all]
 *   fgw-ble-it upload [--no-acquire] [--max-connections N] [--retries N] FILE PEER...
 *
 * PEER is ble:AA:BB:CC:DD:EE:FF or udp:HOST:PORT. The bus is DBUS_SYSTEM_BUS_ADDRESS (or the
 * system bus). Uploads to all peers run at once; a link lost mid-upload is reported
 * ("event: link-lost ...") and the upload is resumed from the device's offset after the link
 * comes back (up to --retries times). One JSON line per peer on stdout, then a summary line.
 * Progress goes to stderr as it crosses each tenth ("event: progress, peer: ..., percent: N"),
 * so that a test can act mid-upload on a condition rather than after a guessed time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "bluez.h"
#include "smp.h"
#include "transport-ble.h"
#include "transport.h"
#include "upload.h"
#include "util.h"

struct peer {
	struct app *app;
	const char *spec;
	struct fgw_transport *t;
	struct fgw_smp_client *c;
	struct fgw_upload *u;
	uv_timer_t retry;
	unsigned reconnects;
	uint64_t offset;
	uint64_t resumed_from;
	int err;
	bool done;
	bool reconnecting; /* a loss was handled; its other report (client or upload) is ignored */
	bool acquired;
	unsigned mtu;
	unsigned tenths; /* of the image reported done on stderr */
	char hash[2 * FGW_SMP_SHA_SIZE + 1];
};

struct app {
	uv_loop_t *loop;
	struct fgw_bluez *b;
	uv_timer_t sample;
	unsigned max_active;
	struct fgw_upload_image img;
	struct peer *peers;
	unsigned n_peers, n_done;
	unsigned retries;
	bool all;
};

static void peer_open(struct peer *p);

static void peer_finish(struct peer *p, int err)
{
	struct app *a = p->app;

	p->done = true;
	p->err = err;
	printf("{\"peer\": \"%s\", \"err\": %d, \"error\": \"%s\", \"offset\": %llu, "
	       "\"resumed_from\": %llu, \"reconnects\": %u, \"acquired\": %s, \"mtu\": %u, "
	       "\"hash\": \"%s\"}\n",
	       p->spec, err, err ? strerror(-err) : "", (unsigned long long) p->offset,
	       (unsigned long long) p->resumed_from, p->reconnects, p->acquired ? "true" : "false",
	       p->mtu, p->hash);
	fflush(stdout);
	p->u = fgw_upload_free(p->u);
	p->c = fgw_smp_client_free(p->c);
	if (++a->n_done == a->n_peers)
		uv_stop(a->loop);
}

static bool transient(int err)
{
	return err == -ECONNRESET || err == -ENETDOWN || err == -ENOTCONN || err == -ETIMEDOUT ||
	       err == -EAGAIN || err == -EINPROGRESS;
}

static void on_retry(uv_timer_t *t)
{
	struct peer *p = t->data;

	p->reconnecting = false;
	peer_open(p);
}

static void peer_lost(struct peer *p, int err)
{
	const char *why = p->t ? fgw_transport_ble_last_error(p->t) : "";

	if (p->reconnecting || p->done)
		return;
	fprintf(stderr, "event: link-lost, peer: %s, err: %s, reason: '%s'\n", p->spec,
		strerror(-err), why);
	if (!transient(err) || p->reconnects >= p->app->retries) {
		peer_finish(p, err);
		return;
	}
	p->reconnects++;
	p->reconnecting = true;
	p->u = fgw_upload_free(p->u);
	fgw_smp_client_close(p->c);
	uv_timer_start(&p->retry, on_retry, 500, 0);
}

static void on_state_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct peer *p = user_data;
	struct fgw_smp_img_state st;
	const struct fgw_smp_img_slot *s;

	if (err == 0 && fgw_smp_status_ok(&rsp->status) &&
	    fgw_smp_img_state_decode(rsp->payload, rsp->len, &st) == 0 &&
	    (s = fgw_smp_img_state_find(&st, 0, 1)) && s->has_hash)
		fgw_hex_encode(s->hash, sizeof(s->hash), p->hash);
	peer_finish(p, err);
}

static void on_done(struct fgw_upload *u, int err, const struct fgw_upload_result *res,
		    void *user_data)
{
	struct peer *p = user_data;
	struct fgw_upload_stats stats;
	struct fgw_smp_req req;

	fgw_upload_get_stats(u, &stats);
	p->offset = res ? res->off : p->offset;
	if (err) {
		peer_lost(p, err);
		return;
	}
	if (p->reconnects)
		p->resumed_from = stats.start_off;
	if (fgw_smp_req_img_state(&req) < 0 ||
	    fgw_smp_client_request(p->c, &req, 5000, on_state_rsp, p, NULL, NULL) < 0)
		peer_finish(p, -EIO);
	fgw_smp_req_done(&req);
}

static void on_progress(struct fgw_upload *u, uint64_t bytes, uint64_t total, double rate,
			void *user_data)
{
	struct peer *p = user_data;
	unsigned tenths = total ? (unsigned) (bytes * 10 / total) : 10;

	if (tenths <= p->tenths)
		return;
	p->tenths = tenths;
	fprintf(stderr, "event: progress, peer: %s, percent: %u\n", p->spec, tenths * 10);
}

static void on_client_state(struct fgw_smp_client *c, int err, void *user_data)
{
	struct peer *p = user_data;
	struct fgw_upload_opts o;
	int r;

	if (err) {
		if (!p->u || !fgw_upload_is_running(p->u))
			peer_lost(p, err);
		return; /* a running upload reports the loss itself */
	}
	p->acquired = fgw_transport_ble_acquired(p->t);
	p->mtu = fgw_transport_ble_att_mtu(p->t);
	fgw_upload_opts_init(&o);
	r = fgw_upload_new(p->app->loop, p->c, &p->u);
	if (r >= 0)
		r = fgw_upload_start(p->u, &p->app->img, p->offset, &o, on_progress, on_done, p);
	if (r < 0)
		peer_finish(p, r);
}

static void peer_open(struct peer *p)
{
	int r = fgw_smp_client_open(p->c, on_client_state, p);

	if (r < 0)
		peer_finish(p, r);
}

static int peer_new(struct app *a, struct peer *p, const char *spec)
{
	int r;

	p->app = a;
	p->spec = spec;
	if (strncmp(spec, "ble:", 4) == 0) {
		r = fgw_transport_ble_new(a->b, spec + 4, &p->t);
	} else if (strncmp(spec, "udp:", 4) == 0) {
		char host[64];
		const char *colon = strrchr(spec + 4, ':');
		if (!colon || (size_t) (colon - spec - 4) >= sizeof(host))
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int) (colon - spec - 4), spec + 4);
		r = fgw_transport_udp_new(a->loop, host, (uint16_t) atoi(colon + 1), &p->t);
	} else {
		return -EINVAL;
	}
	if (r < 0)
		return r;
	r = fgw_smp_client_new(a->loop, p->t, &p->c);
	if (r < 0)
		return r;
	uv_timer_init(a->loop, &p->retry);
	p->retry.data = p;
	peer_open(p);
	return 0;
}

static void on_sample(uv_timer_t *t)
{
	struct app *a = t->data;
	unsigned n = a->b ? fgw_bluez_active_links(a->b) : 0;

	if (n > a->max_active)
		a->max_active = n;
}

static void on_scan_stop(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void print_device(struct fgw_bluez *b, enum fgw_bluez_device_event ev,
			 const struct fgw_bluez_device_info *info, void *user_data)
{
	struct app *a = user_data;

	if (!info->smp_service && !a->all)
		return;
	printf("{\"addr\": \"%s\", \"name\": \"%s\", \"rssi\": %d, \"smp\": %s}\n", info->addr,
	       info->name ? info->name : "", info->has_rssi ? info->rssi : 0,
	       info->smp_service ? "true" : "false");
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > (64 << 20)) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	buf = malloc((size_t) st.st_size);
	while (buf && got < (size_t) st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t) st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t) n;
	}
	close(fd);
	if (!buf || got != (size_t) st.st_size) {
		free(buf);
		return -EIO;
	}
	*ret = buf;
	*ret_len = got;
	return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Lists what the adapter hears in @seconds. Returns the exit status. */
static int cmd_scan(struct app *a, struct fgw_bluez_options *bo, unsigned seconds)
{
	int r;

	bo->filter_service = !a->all;
	r = fgw_bluez_new(a->loop, bo, &a->b);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to reach bluetoothd") ? 1 : 1;
	uv_timer_init(a->loop, &a->sample);
	a->sample.data = a;
	uv_timer_start(&a->sample, on_scan_stop, seconds * 1000u, 0);
	uv_run(a->loop, UV_RUN_DEFAULT);
	fgw_bluez_foreach_device(a->b, print_device, a);
	if (fgw_bluez_adapter_state(a->b) != FGW_BLUEZ_ADAPTER_STATE_ON) {
		fgw_error("adapter not available: %s", fgw_bluez_last_error(a->b));
		return 1;
	}
	return 0;
}

/* Uploads FILE (@argv[0]) to every PEER after it at once. Returns the exit status; the image
 * read is left in *@ret_data for the caller to free. */
static int cmd_upload(struct app *a, struct fgw_bluez_options *bo, int argc, char **argv,
		      uint8_t **ret_data)
{
	bool need_ble = false;
	int r, rc = 0;

	r = read_file(argv[0], ret_data, &a->img.len);
	if (r < 0)
		return fgw_log_errno(LOG_ERR, r, "Failed to read '%s'", argv[0]) ? 1 : 1;
	a->img.data = *ret_data;
	SHA256(*ret_data, a->img.len, a->img.sha256);
	for (int i = 1; i < argc; i++)
		need_ble |= strncmp(argv[i], "ble:", 4) == 0;
	if (need_ble) {
		bo->scan = false; /* links scan while they search */
		r = fgw_bluez_new(a->loop, bo, &a->b);
		if (r < 0)
			return fgw_log_errno(LOG_ERR, r, "Failed to reach the bus") ? 1 : 1;
	}
	a->n_peers = (unsigned) (argc - 1);
	a->peers = calloc(a->n_peers, sizeof(*a->peers));
	uv_timer_init(a->loop, &a->sample);
	a->sample.data = a;
	uv_timer_start(&a->sample, on_sample, 20, 20);
	for (unsigned i = 0; i < a->n_peers; i++) {
		r = peer_new(a, &a->peers[i], argv[1 + i]);
		if (r < 0) {
			fgw_log_errno(LOG_ERR, r, "Bad peer '%s'", argv[1 + i]);
			return 2;
		}
	}
	uv_run(a->loop, UV_RUN_DEFAULT);
	for (unsigned i = 0; i < a->n_peers; i++)
		rc |= a->peers[i].err != 0;
	printf("{\"summary\": true, \"peers\": %u, \"failed\": %d, \"max_active\": %u}\n",
	       a->n_peers, rc, a->max_active);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"seconds", required_argument, NULL, 's'},
	    {"all", no_argument, NULL, 'a'},
	    {"no-acquire", no_argument, NULL, 'n'},
	    {"max-connections", required_argument, NULL, 'm'},
	    {"retries", required_argument, NULL, 'r'},
	    {"debug", no_argument, NULL, 'd'},
	    {},
	};
	struct fgw_bluez_options bo;
	struct app a = {.loop = uv_default_loop(), .retries = 5};
	unsigned seconds = 5;
	uint8_t *data = NULL;
	const char *cmd;
	int c, rc;

	fgw_bluez_options_init(&bo);
	fgw_log_set_level(LOG_NOTICE);
	while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
		switch (c) {
		case 's':
			seconds = (unsigned) atoi(optarg);
			break;
		case 'a':
			a.all = true;
			break;
		case 'n':
			bo.acquire = false;
			break;
		case 'm':
			bo.max_connections = (unsigned) atoi(optarg);
			break;
		case 'r':
			a.retries = (unsigned) atoi(optarg);
			break;
		case 'd':
			fgw_log_set_level(LOG_DEBUG);
			break;
		default:
			return 2;
		}
	}
	if (optind >= argc)
		goto usage;
	cmd = argv[optind++];
	if (strcmp(cmd, "scan") == 0)
		rc = cmd_scan(&a, &bo, seconds);
	else if (strcmp(cmd, "upload") == 0 && argc - optind >= 2)
		rc = cmd_upload(&a, &bo, argc - optind, argv + optind, &data);
	else
		goto usage;
	for (unsigned i = 0; i < a.n_peers && a.peers; i++) {
		a.peers[i].u = fgw_upload_free(a.peers[i].u);
		a.peers[i].c = fgw_smp_client_free(a.peers[i].c);
		a.peers[i].t = fgw_transport_free(a.peers[i].t);
	}
	a.b = fgw_bluez_free(a.b);
	uv_walk(a.loop, close_walk, NULL);
	uv_run(a.loop, UV_RUN_DEFAULT);
	free(a.peers);
	free(data);
	return rc;
usage:
	fprintf(stderr, "usage: fgw-ble-it scan [--seconds N] [--all]\n"
			"       fgw-ble-it upload [--no-acquire] [--max-connections N] "
			"[--retries N] FILE PEER...\n");
	return 2;
}
