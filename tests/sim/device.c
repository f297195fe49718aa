/*
 * One simulated nRF5340: slots on disk, MCUboot trailer flags, boot-time swap/overwrite with image
 * validation, the request pipeline through the link model (buffers, one SMP work queue, flash
 * time) and the faults.
 *
 * Time: every request carries model times (arrival of its first and last fragment, end of
 * processing, arrival of the response) computed by link.c; libuv timers make them happen in real
 * time, so a client measures what the model says.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

enum req_stage {
	RQ_UDP_ARRIVE, /* first fragment reaches the device: needs a buffer */
	RQ_UDP_READY,  /* last fragment arrived: into the work queue */
	RQ_BLE_FRAG,   /* one ATT write reaches the device: reassembly step */
	RQ_QUEUED,     /* waiting for the SMP work queue */
	RQ_PROCESSING, /* being handled; holds its buffer until processing ends */
	RQ_RSP_SEND,   /* response on the air, arrives at the client at the timer (its buffer
			  is accounted on the request) */
};

enum life_action { LIFE_NONE, LIFE_RESET, LIFE_BOOT_DONE, LIFE_WATCHDOG, LIFE_RETURN };

static const char *const dev_state_names[_SIM_DEV_STATE_MAX] = {
    [SIM_DEV_UP] = "up",     [SIM_DEV_BOOTING] = "booting",
    [SIM_DEV_HUNG] = "hung", [SIM_DEV_AWAY] = "out-of-range",
    [SIM_DEV_DEAD] = "dead",
};

const char *sim_dev_state_to_string(enum sim_dev_state s)
{
	return s < _SIM_DEV_STATE_MAX ? dev_state_names[s] : "?";
}

/* Marks the timers of requests, so that shutdown can close them all with uv_walk(). */
static char req_tag;

/* Timer delay to model time @at_us. Computed against the loop's own clock (both are
 * CLOCK_MONOTONIC) so that the due time is absolute: events scheduled in model order fire in
 * that order, whatever iteration scheduled them. */
static uint64_t delay_ms(uv_loop_t *loop, uint64_t at_us)
{
	uint64_t due = (at_us + 999) / 1000, now = uv_now(loop);
	return due > now ? due - now : 0;
}

static void do_reset(struct sim_device *d, const char *why);

double sim_device_rand(struct sim_device *d)
{
	/* xorshift64*: deterministic per device and --seed */
	d->rng ^= d->rng >> 12;
	d->rng ^= d->rng << 25;
	d->rng ^= d->rng >> 27;
	return (double) ((d->rng * 0x2545f4914f6cdd1dull) >> 11) / (double) (1ull << 53);
}

void sim_device_slot_path(const struct sim_device *d, unsigned slot, char *out, size_t n)
{
	snprintf(out, n, "%s/slot%u.bin", d->dir, slot);
}

enum sim_swap_type sim_device_swap_type(const struct sim_device *d, unsigned image)
{
	const struct sim_trailer *t = &d->tr[image];

	/* bootutil's swap table, first match wins */
	if (t->sec_magic && !t->sec_ok)
		return SIM_SWAP_TEST;
	if (t->sec_magic && t->sec_ok)
		return SIM_SWAP_PERM;
	if (t->pri_magic && !t->pri_ok && t->pri_copy_done)
		return SIM_SWAP_REVERT;
	return SIM_SWAP_NONE;
}

unsigned sim_device_images(const struct sim_device *d)
{
	/* img_mgmt loops over CONFIG_MCUMGR_GRP_IMG_UPDATABLE_IMAGE_NUMBER images; with one, an
	 * upload picks the free one of slots 0 and 1 whatever image number it names
	 * (img_mgmt_get_unused_slot_area_id() in zephyr_img_mgmt.c) */
	return d->cfg.single_image ? 1 : SIM_IMAGES;
}

void sim_device_adv_addr(const struct sim_device *d, uint64_t now_us, char out[18])
{
	uint64_t epoch, h;

	if (d->cfg.rpa_rotate_s <= 0) {
		snprintf(out, 18, "%s", d->addr);
		return;
	}
	epoch = now_us / (uint64_t) (d->cfg.rpa_rotate_s * 1e6);
	/* prand and hash of a real RPA come from the IRK; any mix of (device, epoch) will do as
	 * long as the two top bits are 01 (resolvable private) */
	h = (epoch + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t) d->index + 1) * 0xbf58476d1ce4e5b9ull;
	h ^= h >> 31;
	snprintf(out, 18, "%02X:%02X:%02X:%02X:%02X:%02X", (unsigned) (0x40 | ((h >> 40) & 0x3f)),
		 (unsigned) ((h >> 32) & 0xff), (unsigned) ((h >> 24) & 0xff),
		 (unsigned) ((h >> 16) & 0xff), (unsigned) ((h >> 8) & 0xff),
		 (unsigned) (h & 0xff));
}

bool sim_device_hears(const struct sim_device *d, unsigned k)
{
	return k < SIM_MAX_ADAPTERS &&
	       (d->cfg.adapters_mask == 0 || (d->cfg.adapters_mask & (1u << k)));
}

int sim_device_rssi(const struct sim_device *d, unsigned k)
{
	if (d->cfg.adapters_mask && k < SIM_MAX_ADAPTERS && (d->cfg.adapters_mask & (1u << k)))
		return d->cfg.adapter_rssi[k];
	return d->cfg.rssi;
}

bool sim_device_reachable(const struct sim_device *d)
{
	return d->state == SIM_DEV_UP && sim_now_us() >= d->blackout_until_us;
}

/* ---- persistence ------------------------------------------------------------------------------
 */

int sim_device_save(struct sim_device *d)
{
	char path[600], tmp[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/state", d->dir);
	snprintf(tmp, sizeof(tmp), "%s/state.tmp", d->dir);
	f = fopen(tmp, "we");
	if (!f)
		return fgw_log_errno(LOG_ERR, -errno, "%s: cannot write '%s'", d->name, tmp);
	fprintf(f, "fotagw-sim-state 1\n");
	for (unsigned i = 0; i < SIM_IMAGES; i++) {
		const struct sim_trailer *t = &d->tr[i];
		fprintf(f, "trailer %u %d %d %d %d %d %llu\n", i, t->pri_magic, t->pri_ok,
			t->pri_copy_done, t->sec_magic, t->sec_ok,
			(unsigned long long) d->mark_seq[i]);
	}
	fprintf(f, "seq %llu\nboots %llu\n", (unsigned long long) d->seq_counter,
		(unsigned long long) d->boots);
	if (fflush(f) != 0 || ferror(f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	if (rename(tmp, path) < 0)
		return fgw_log_errno(LOG_ERR, -errno, "%s: cannot rename '%s'", d->name, tmp);
	return 0;
}

static int device_load(struct sim_device *d)
{
	char path[600], line[256];
	FILE *f;
	bool header = false;

	snprintf(path, sizeof(path), "%s/state", d->dir);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned i;
		int a, b, c, e, g;
		unsigned long long s;

		if (!strcmp(line, "fotagw-sim-state 1\n"))
			header = true;
		else if (sscanf(line, "trailer %u %d %d %d %d %d %llu", &i, &a, &b, &c, &e, &g,
				&s) == 7 &&
			 i < SIM_IMAGES) {
			d->tr[i] = (struct sim_trailer){a, b, c, e, g};
			d->mark_seq[i] = s;
		} else if (sscanf(line, "seq %llu", &s) == 1)
			d->seq_counter = s;
		else if (sscanf(line, "boots %llu", &s) == 1)
			d->boots = s;
	}
	fclose(f);
	return header ? 0 : -EBADMSG;
}

/* Starting images are generated once per (image, version, size) and hard-linked into each
 * device directory: slot files are never written in place, so sharing them is safe. */
static int starting_image(struct sim_device *d, unsigned image, const char *version, char *slot)
{
	struct sim *sim = d->sim;
	struct sim_version v;
	char shared[600];
	int r;

	r = sim_version_parse(version, &v);
	if (r < 0)
		return r;
	snprintf(shared, sizeof(shared), "%s/images/img%u-%s-%u%s.bin", sim->opt.state_dir, image,
		 version, d->cfg.body_size[image], sim->key ? "-signed" : "");
	if (access(shared, R_OK) != 0) {
		uint64_t seed = ((uint64_t) image << 56) ^ ((uint64_t) v.major << 40) ^
				((uint64_t) v.minor << 32) ^ ((uint64_t) v.rev << 16) ^ v.build;
		r = sim_img_generate(shared, &v, d->cfg.body_size[image], seed, sim->key);
		if (r < 0)
			return fgw_log_errno(LOG_ERR, r, "cannot generate '%s'", shared);
	}
	(void) unlink(slot);
	if (link(shared, slot) == 0)
		return 0;
	/* different filesystem: copy */
	int in = open(shared, O_RDONLY | O_CLOEXEC), out;
	char buf[65536];
	ssize_t n;

	if (in < 0)
		return -errno;
	out = open(slot, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		close(in);
		return -errno;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t) n) != n) {
			n = -1;
			break;
		}
	close(in);
	close(out);
	return n < 0 ? -EIO : 0;
}

/* ---- boot: what MCUboot does at reset -------------------------------------------------------- */

static int open_slot(struct sim_device *d, unsigned slot)
{
	char path[600];

	sim_device_slot_path(d, slot, path, sizeof(path));
	return open(path, O_RDONLY | O_CLOEXEC);
}

static uint64_t slot_len(struct sim_device *d, unsigned slot)
{
	char path[600];
	struct stat st;

	sim_device_slot_path(d, slot, path, sizeof(path));
	return stat(path, &st) == 0 ? (uint64_t) st.st_size : 0;
}

/* Checks the secondary of @image as MCUboot would before installing it. */
static bool secondary_ok(struct sim_device *d, unsigned image)
{
	struct sim_img_info sec, pri;
	const char *why = NULL;
	int fd = open_slot(d, 2 * image + 1), r;
	bool ok;

	if (fd < 0) {
		why = "empty slot";
		ok = false;
	} else {
		r = sim_img_validate(fd, d->sim->key, &why);
		ok = r == 0;
		if (ok && d->cfg.faults.bad_boot) {
			why = "fault: bad_boot";
			ok = false;
		}
		if (ok && image == 0 && d->cfg.mode == SIM_MODE_OVERWRITE && d->cfg.no_downgrade) {
			int pfd = open_slot(d, 0);
			if (pfd >= 0 && sim_img_read_info(pfd, &pri) == 0 &&
			    sim_img_read_info(fd, &sec) == 0 &&
			    sim_version_cmp(&sec.ver, &pri.ver, false) < 0) {
				why = "downgrade prevented";
				ok = false;
			}
			if (pfd >= 0)
				close(pfd);
		}
		close(fd);
	}
	if (!ok)
		fgw_notice("event: boot-reject, device: %s, image: %u, reason: '%s'", d->name,
			   image, why);
	return ok;
}

static void erase_secondary(struct sim_device *d, unsigned image)
{
	char path[600];

	sim_device_slot_path(d, 2 * image + 1, path, sizeof(path));
	(void) unlink(path);
	d->tr[image].sec_magic = d->tr[image].sec_ok = false;
}

static int swap_slots(struct sim_device *d, unsigned image)
{
	char a[600], b[600], t[600];

	sim_device_slot_path(d, 2 * image, a, sizeof(a));
	sim_device_slot_path(d, 2 * image + 1, b, sizeof(b));
	snprintf(t, sizeof(t), "%s/swap.tmp", d->dir);
	if (rename(a, t) < 0 || rename(b, a) < 0 || rename(t, b) < 0)
		return -errno;
	return 0;
}

static double copy_us(struct sim_device *d, uint64_t bytes)
{
	return sim_flash_erase_us(&d->cfg.link, bytes) + (double) bytes * d->cfg.link.write_us;
}

/* Applies the pending actions of both images; returns the boot time in microseconds. */
static double mcuboot_run(struct sim_device *d, bool *ret_test_boot)
{
	double t = d->cfg.link.boot_ms * 1000.0;
	enum sim_swap_type st0 = sim_device_swap_type(d, 0), st1 = sim_device_swap_type(d, 1);
	bool net_pending = st1 == SIM_SWAP_TEST || st1 == SIM_SWAP_PERM;
	bool app_pending = st0 == SIM_SWAP_TEST || st0 == SIM_SWAP_PERM;

	*ret_test_boot = false;
	/* Image 0, the application core. */
	if (app_pending) {
		if (!secondary_ok(d, 0)) {
			erase_secondary(d, 0);
		} else if (d->cfg.mode == SIM_MODE_OVERWRITE) {
			char a[600], b[600];
			uint64_t n = slot_len(d, 1);

			sim_device_slot_path(d, 0, a, sizeof(a));
			sim_device_slot_path(d, 1, b, sizeof(b));
			if (rename(b, a) < 0)
				fgw_log_errno(LOG_ERR, -errno, "%s: overwrite failed", d->name);
			/* the copy leaves no trailer in the primary; the secondary is wiped */
			d->tr[0] = (struct sim_trailer){};
			t += copy_us(d, n);
			fgw_notice("event: boot-install, device: %s, image: 0, mode: overwrite",
				   d->name);
		} else {
			uint64_t n = FGW_MAX(slot_len(d, 0), slot_len(d, 1));

			if (swap_slots(d, 0) < 0)
				fgw_log_errno(LOG_ERR, -errno, "%s: swap failed", d->name);
			d->tr[0] = (struct sim_trailer){.pri_magic = true,
							.pri_ok = st0 == SIM_SWAP_PERM,
							.pri_copy_done = true};
			*ret_test_boot = st0 == SIM_SWAP_TEST;
			/* swap-move: every sector moved up once, then swapped: ~2 copies */
			t += 2 * copy_us(d, n);
			fgw_notice(
			    "event: boot-install, device: %s, image: 0, mode: swap, type: %s",
			    d->name, st0 == SIM_SWAP_TEST ? "test" : "permanent");
		}
	} else if (st0 == SIM_SWAP_REVERT) {
		uint64_t n = FGW_MAX(slot_len(d, 0), slot_len(d, 1));

		if (swap_slots(d, 0) < 0)
			fgw_log_errno(LOG_ERR, -errno, "%s: revert failed", d->name);
		d->tr[0] =
		    (struct sim_trailer){.pri_magic = true, .pri_ok = true, .pri_copy_done = true};
		t += 2 * copy_us(d, n);
		fgw_notice("event: boot-revert, device: %s, image: 0", d->name);
	}

	/* Image 1, the network core: copied from the app core's secondary through RAM and PCD into
	 * network core flash, whatever the app's mode (it cannot be swapped back). */
	if (net_pending) {
		if (d->cfg.ncs_order_bug && app_pending && d->mark_seq[0] < d->mark_seq[1] &&
		    d->mark_seq[0] != 0) {
			/* NCSDK-34106: app core marked before the net core: update skipped. */
			fgw_notice("event: boot-skip, device: %s, image: 1, reason: 'app image "
				   "activated before net core image (NCSDK-34106)'",
				   d->name);
		} else if (!secondary_ok(d, 1)) {
			erase_secondary(d, 1);
		} else {
			char a[600], b[600];
			uint64_t n = slot_len(d, 3);

			sim_device_slot_path(d, 2, a, sizeof(a));
			sim_device_slot_path(d, 3, b, sizeof(b));
			if (rename(b, a) < 0)
				fgw_log_errno(LOG_ERR, -errno, "%s: net core copy failed", d->name);
			d->tr[1] = (struct sim_trailer){};
			/* into RAM, then b0n erases and writes net core flash */
			t += (double) n * d->cfg.link.write_us + copy_us(d, n);
			fgw_notice("event: boot-install, device: %s, image: 1", d->name);
		}
	}
	return t;
}

static bool primary_bootable(struct sim_device *d)
{
	struct sim_img_info info;
	uint8_t h[SIM_HASH_LEN];
	int fd = open_slot(d, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = sim_img_read_info(fd, &info) == 0 &&
	     sim_sha256_fd(fd, (uint64_t) info.hdr_size + info.img_size + info.prot_size, h) == 0 &&
	     !memcmp(h, info.hash, SIM_HASH_LEN);
	close(fd);
	return ok;
}

/* ---- request pipeline --------------------------------------------------------------------------
 */

static void req_closed(uv_handle_t *h)
{
	struct sim_req *r = container_of((uv_timer_t *) h, struct sim_req, timer);
	free(r->data);
	free(r);
}

static void req_free(struct sim_req *r)
{
	uv_close((uv_handle_t *) &r->timer, req_closed);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	if (h->data == &req_tag && !uv_is_closing(h))
		uv_close(h, req_closed);
}

void sim_device_close_requests(uv_loop_t *loop)
{
	uv_walk(loop, walk_close, NULL);
}

static void req_timer_cb(uv_timer_t *t);

static struct sim_req *req_new(struct sim_device *d, enum sim_src_kind src, const uint8_t *buf,
			       size_t len)
{
	struct sim_req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	if (len) {
		r->data = malloc(len);
		if (!r->data) {
			free(r);
			return NULL;
		}
		memcpy(r->data, buf, len);
	}
	r->len = len;
	r->dev = d;
	r->src = src;
	r->gen = d->gen;
	uv_timer_init(d->sim->loop, &r->timer);
	r->timer.data = &req_tag;
	return r;
}

static void req_at(struct sim_req *r, int stage, uint64_t at_us)
{
	r->stage = stage;
	uv_timer_start(&r->timer, req_timer_cb, delay_ms(r->dev->sim->loop, at_us), 0);
}

/*
 * The SMP buffer pool (Zephyr's pkt_pool of CONFIG_MCUMGR_TRANSPORT_NETBUF_COUNT net_bufs,
 * transport/src/smp.c), shared by everything SMP on the device: a request holds one from its
 * first fragment (BLE reassembly) or its datagram (UDP) until smp_process_request_packet() has
 * sent its answer; the answer holds one from smp_alloc_rsp(), before the handler runs, until the
 * transport has sent it. docs/simulator.md "Buffers" has the whole model and its sources.
 */
static void buf_release(struct sim_req *r)
{
	struct sim_device *d = r->dev;

	if (r->gen == d->gen)
		d->bufs_used -= FGW_MIN(r->bufs, d->bufs_used);
	r->bufs = 0;
}

static bool buf_take(struct sim_device *d, struct sim_req *r)
{
	if (d->bufs_used >= d->cfg.buf_count)
		return false;
	d->bufs_used++;
	r->bufs++;
	return true;
}

static void worker_kick(struct sim_device *d);

static void queue_push(struct sim_device *d, struct sim_req *r)
{
	r->stage = RQ_QUEUED;
	r->next = NULL;
	if (d->queue_tail)
		d->queue_tail->next = r;
	else
		d->queue_head = r;
	d->queue_tail = r;
	worker_kick(d);
}

/* Responses are built while the request is handled, at the start of processing; they are
 * handed to the transport when processing ends, which is known only after the handler ran. */
#define MAX_RSP_PER_REQ 8
struct emit_ctx {
	struct sim_req *req;
	struct sim_req *rsp[MAX_RSP_PER_REQ];
	unsigned n;
	unsigned reserved; /* response buffers taken by on_alloc, not yet used */
};

/* smp_alloc_rsp(): the response buffer is taken before the request is handled. */
static bool on_alloc(struct sim_device *d, void *user_data)
{
	struct emit_ctx *e = user_data;

	if (d->bufs_used >= d->cfg.buf_count)
		return false;
	d->bufs_used++;
	e->reserved++;
	return true;
}

/* A response's buffer is accounted on its request: both are freed together (see send_rsps). */
static void on_emit(struct sim_device *d, const uint8_t *rsp, size_t len, void *user_data)
{
	struct emit_ctx *e = user_data;
	struct sim_req *r;

	if (e->n == MAX_RSP_PER_REQ)
		return;
	if (e->reserved > 0) {
		e->reserved--;
		e->req->bufs++;
	} else if (e->req->bufs == 0 && !buf_take(d, e->req)) {
		/* (smp_on_err() without a response buffer answers in the request's own one.) */
		fgw_debug("%s: no free SMP buffer for a response, dropped", d->name);
		return;
	}
	r = req_new(d, e->req->src, rsp, len);
	if (!r)
		return;
	r->peer = e->req->peer;
	e->rsp[e->n++] = r;
}

/*
 * Hands the responses of one request to the transport when processing ends at @end; returns
 * when the work queue is free again, which is also when the request's and the responses'
 * buffers go back to the pool.
 *
 * UDP (smp_udp.c smp_udp4_tx): sendto() and the buffer is freed at once.
 * BLE (smp_bt.c smp_bt_tx_pkt): the work queue sends the response itself, one notification of
 * MTU - 3 bytes at a time, each time waiting (k_sem_take) until bt_gatt_notify_cb()'s callback
 * says it was sent; only then are the response and, back in smp_process_request_packet(), the
 * request freed and the next request taken. The callback comes with the controller's Number of
 * Completed Packets, after the central's acknowledgement in the next connection event; the
 * central's next write can ride in that same event, and the host may take it (and need a buffer
 * for it) before the completion frees one: the model frees them 1 ms after that event's arrivals.
 */
static uint64_t send_rsps(struct sim_device *d, struct emit_ctx *e, uint64_t end)
{
	const struct sim_link_params *lp = &d->cfg.link;
	uint64_t extra = (uint64_t) (d->cfg.faults.rsp_delay_ms * 1000.0), t = end;
	bool ble = e->req->src == SIM_SRC_BLE;

	for (unsigned i = 0; i < e->n; i++) {
		struct sim_req *r = e->rsp[i];
		uint64_t first, last = t;

		if (!ble) {
			sim_link_packet(&d->link, lp, SIM_DOWN, end, r->len, &first, &last);
			req_at(r, RQ_RSP_SEND, last + extra);
			continue;
		}
		for (size_t off = 0, frag = lp->mtu - 3; off < r->len; off += frag) {
			last = sim_link_pdu(&d->link, lp, SIM_DOWN, t, FGW_MIN(frag, r->len - off));
			t = last + (uint64_t) (lp->interval_ms * 1000.0) + 1000;
		}
		req_at(r, RQ_RSP_SEND, last + extra);
	}
	return t;
}

static void process_next(struct sim_device *d)
{
	struct sim_req *r = d->queue_head;
	struct smp_result res;
	struct emit_ctx e = {.req = r};
	uint64_t now = sim_now_us(), start, end;
	uint32_t gen = d->gen;

	d->queue_head = r->next;
	if (!d->queue_head)
		d->queue_tail = NULL;
	r->next = NULL;
	r->stage = RQ_PROCESSING;
	if (r->gen != d->gen || d->state != SIM_DEV_UP) {
		req_free(r);
		return;
	}
	start = FGW_MAX(now, d->busy_until_us);
	smp_handle(d, r->data, r->len, on_alloc, on_emit, &e, &res);
	/* os_mgmt reboots CONFIG_MCUMGR_GRP_OS_RESET_MS (250) after its answer; with
	 * reset_no_answer the reboot wins the race: the answers, scheduled below with the old
	 * generation, are dropped (on BLE the link drops right after the request) */
	if (res.reset && gen == d->gen && d->cfg.reset_no_answer)
		do_reset(d, "reset (before its answer went out)");
	/* buffers taken for responses that were never built (no answer) go back; after a link
	 * drop (new generation) the count was reset already */
	if (gen == d->gen && d->bufs_used >= e.reserved)
		d->bufs_used -= e.reserved;
	end = start + (uint64_t) d->cfg.link.proc_us + res.cost_us;
	d->busy_until_us = send_rsps(d, &e, end);
	/* the request (and its responses' buffers) are freed when the work queue is done */
	req_at(r, RQ_PROCESSING, d->busy_until_us);
	if (res.reset && gen == d->gen)
		sim_device_reset_later(d, 250.0 + (double) (end - now) / 1000.0);
}

static void worker_cb(uv_timer_t *t)
{
	struct sim_device *d = container_of(t, struct sim_device, worker);
	uint64_t now = sim_now_us();

	d->worker_armed = false;
	if (!d->queue_head)
		return;
	if (d->busy_until_us > now + 500) {
		d->worker_armed = true;
		uv_timer_start(&d->worker, worker_cb, delay_ms(d->sim->loop, d->busy_until_us), 0);
		return;
	}
	process_next(d);
	if (d->queue_head)
		worker_kick(d);
}

static void worker_kick(struct sim_device *d)
{
	if (d->worker_armed)
		return;
	d->worker_armed = true;
	uv_timer_start(&d->worker, worker_cb, delay_ms(d->sim->loop, d->busy_until_us), 0);
}

static void deliver(struct sim_req *r)
{
	struct sim_device *d = r->dev;

	if (d->cfg.faults.drop_notify_prob > 0 &&
	    sim_device_rand(d) < d->cfg.faults.drop_notify_prob) {
		fgw_debug("%s: fault: response dropped", d->name);
		return;
	}
	if (r->src == SIM_SRC_UDP)
		sim_udp_send(d, (const struct sockaddr *) &r->peer, r->data, r->len);
	else if (d->sim->periph && !sim_periph_notify(d->sim->periph, d, r->data, r->len))
		fgw_debug("%s: notifications disabled, response lost", d->name);
	else if (d->sim->bluez && !sim_bluez_notify(d->sim->bluez, d, r->data, r->len))
		fgw_debug("%s: notifications disabled, response lost", d->name);
}

static void ble_reassemble(struct sim_device *d, const uint8_t *buf, size_t len, uint64_t t);

static void req_timer_cb(uv_timer_t *t)
{
	struct sim_req *r = container_of(t, struct sim_req, timer);
	struct sim_device *d = r->dev;

	if (r->gen != d->gen || d->state != SIM_DEV_UP) {
		req_free(r);
		return;
	}
	switch ((enum req_stage) r->stage) {
	case RQ_UDP_ARRIVE:
		if (!buf_take(d, r)) {
			fgw_debug("%s: no free SMP buffer, request dropped", d->name);
			req_free(r);
			return;
		}
		req_at(r, RQ_UDP_READY, r->t_last);
		return;
	case RQ_UDP_READY:
		uv_timer_stop(&r->timer);
		queue_push(d, r);
		return;
	case RQ_BLE_FRAG:
		ble_reassemble(d, r->data, r->len, r->t_first);
		req_free(r);
		return;
	case RQ_RSP_SEND:
		deliver(r);
		req_free(r);
		return;
	case RQ_PROCESSING:
		buf_release(r);
		req_free(r);
		return;
	case RQ_QUEUED:
		return;
	}
}

void sim_device_rx_udp(struct sim_device *d, const uint8_t *buf, size_t len,
		       const struct sockaddr *peer)
{
	struct sim_req *r;
	uint64_t now = sim_now_us();

	if (!sim_device_reachable(d))
		return;
	/* The same size limit as BLE reassembly: a packet larger than the SMP buffer is lost. */
	if (len > d->cfg.buf_size || len < SMP_HDR_LEN)
		return;
	r = req_new(d, SIM_SRC_UDP, buf, len);
	if (!r)
		return;
	memcpy(&r->peer, peer,
	       peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					   : sizeof(struct sockaddr_in));
	sim_link_packet(&d->link, &d->cfg.link, SIM_UP, now, len, &r->t_first, &r->t_last);
	req_at(r, RQ_UDP_ARRIVE, r->t_first);
}

void sim_device_rx_ble_write(struct sim_device *d, const uint8_t *buf, size_t len)
{
	struct sim_req *r;
	uint64_t now = sim_now_us();

	if (d->state != SIM_DEV_UP)
		return;
	r = req_new(d, SIM_SRC_BLE, buf, len);
	if (!r)
		return;
	r->t_first = r->t_last = sim_link_pdu(&d->link, &d->cfg.link, SIM_UP, now, len);
	req_at(r, RQ_BLE_FRAG, r->t_first);
}

void sim_device_rx_reset(struct sim_device *d)
{
	if (d->rx_buf) {
		free(d->rx_buf);
		d->rx_buf = NULL;
		if (d->bufs_used > 0)
			d->bufs_used--; /* smp_reassembly_drop() */
	}
	d->rx_len = d->rx_expected = 0;
}

/* smp_reassembly.c: one context per transport, first fragment must hold the whole header,
 * total must fit the buffer, a fragment carrying more than expected drops the packet. */
static void ble_reassemble(struct sim_device *d, const uint8_t *buf, size_t len, uint64_t t)
{
	if (!d->rx_buf) {
		struct smp_hdr h;
		size_t total;

		if (smp_hdr_decode(buf, len, &h) < 0) {
			fgw_debug("%s: fragment without a full header, dropped", d->name);
			return;
		}
		total = SMP_HDR_LEN + h.len;
		if (total > d->cfg.buf_size) {
			fgw_debug("%s: packet of %zu bytes exceeds buf_size, dropped", d->name,
				  total);
			return;
		}
		if (d->bufs_used >= d->cfg.buf_count) {
			fgw_debug("%s: no free SMP buffer, fragment dropped", d->name);
			return;
		}
		d->rx_buf = malloc(total);
		if (!d->rx_buf)
			return;
		d->bufs_used++;
		d->rx_expected = total;
		d->rx_len = 0;
		d->rx_t_first = t;
	}
	if (len > d->rx_expected - d->rx_len) {
		fgw_debug("%s: fragment overruns the packet, dropped", d->name);
		sim_device_rx_reset(d);
		return;
	}
	memcpy(d->rx_buf + d->rx_len, buf, len);
	d->rx_len += len;
	if (d->rx_len < d->rx_expected)
		return;
	/* complete: the reassembly buffer becomes the request (and keeps its SMP buffer) */
	struct sim_req *r = req_new(d, SIM_SRC_BLE, NULL, 0);
	if (!r) {
		sim_device_rx_reset(d);
		return;
	}
	r->data = d->rx_buf;
	r->len = d->rx_len;
	r->bufs = 1;
	r->t_first = d->rx_t_first;
	r->t_last = t;
	d->rx_buf = NULL;
	d->rx_len = d->rx_expected = 0;
	queue_push(d, r);
}

/* ---- faults, resets, link loss -----------------------------------------------------------------
 */

static void drop_pending(struct sim_device *d)
{
	struct sim_req *r = d->queue_head;

	while (r) {
		struct sim_req *n = r->next;
		r->next = NULL;
		req_free(r);
		r = n;
	}
	d->queue_head = d->queue_tail = NULL;
	free(d->rx_buf);
	d->rx_buf = NULL;
	d->rx_len = d->rx_expected = 0;
	d->bufs_used = 0;
	d->gen++; /* requests and responses in flight are now stale */
}

void sim_device_link_lost(struct sim_device *d, const char *why)
{
	fgw_notice("event: link-lost, device: %s, reason: '%s'", d->name, why);
	drop_pending(d);
	if (d->sim->bluez)
		sim_bluez_device_link_lost(d->sim->bluez, d);
	if (d->sim->periph)
		sim_periph_device_link_lost(d->sim->periph, d);
	/* SMP over UDP has no link: the device stays silent for a while instead. */
	d->blackout_until_us = sim_now_us() + 1000000;
}

static void life_cb(uv_timer_t *t);

static void life_at(struct sim_device *d, int action, double ms)
{
	d->life_action = action;
	uv_timer_start(&d->life, life_cb, ms < 0 ? 0 : (uint64_t) (ms + 0.999), 0);
}

void sim_device_reset_later(struct sim_device *d, double ms)
{
	life_at(d, LIFE_RESET, ms);
}

void sim_device_go_away(struct sim_device *d, double ms)
{
	fgw_notice("event: out-of-range, device: %s, for_ms: %.0f", d->name, ms);
	d->state = SIM_DEV_AWAY;
	sim_device_link_lost(d, "out of range");
	if (ms > 0)
		life_at(d, LIFE_RETURN, ms);
	else
		uv_timer_stop(&d->life);
}

static void come_up(struct sim_device *d)
{
	d->state = SIM_DEV_UP;
	sim_link_reset(&d->link, sim_now_us());
	d->busy_until_us = 0;
	d->blackout_until_us = 0;
	fgw_notice("event: device-up, device: %s, boots: %llu", d->name,
		   (unsigned long long) d->boots);
	if (d->sim->bluez)
		sim_bluez_device_advertising(d->sim->bluez, d);
	if (d->sim->periph)
		sim_periph_device_advertising(d->sim->periph, d);
}

static void do_reset(struct sim_device *d, const char *why)
{
	bool test_boot;
	double us;

	fgw_notice("event: reset, device: %s, reason: '%s'", d->name, why);
	if (d->up.fd >= 0)
		close(d->up.fd);
	d->up = (struct sim_upload){.fd = -1}; /* the upload session lives in RAM */
	if (d->state == SIM_DEV_UP || d->state == SIM_DEV_HUNG)
		sim_device_link_lost(d, "device reset");
	else
		drop_pending(d);
	d->state = SIM_DEV_BOOTING;
	d->boots++;
	us = mcuboot_run(d, &test_boot);
	(void) sim_device_save(d);
	if (!primary_bootable(d)) {
		fgw_notice("event: boot-failed, device: %s, reason: 'no bootable image'", d->name);
		d->state = SIM_DEV_DEAD;
		return;
	}
	if (test_boot && d->cfg.faults.no_confirm) {
		/* The tested image crashes before anyone can confirm it; the watchdog resets
		 * the device and MCUboot reverts. */
		life_at(d, LIFE_WATCHDOG, us / 1000.0);
		return;
	}
	life_at(d, LIFE_BOOT_DONE, us / 1000.0);
}

static void life_cb(uv_timer_t *t)
{
	struct sim_device *d = container_of(t, struct sim_device, life);
	int action = d->life_action;

	d->life_action = LIFE_NONE;
	switch (action) {
	case LIFE_RESET:
		do_reset(d, "reset");
		break;
	case LIFE_BOOT_DONE:
		come_up(d);
		break;
	case LIFE_WATCHDOG:
		if (d->state == SIM_DEV_BOOTING) {
			d->state = SIM_DEV_HUNG;
			fgw_notice("event: hung, device: %s, watchdog_ms: %.0f", d->name,
				   d->cfg.faults.watchdog_ms);
			life_at(d, LIFE_WATCHDOG, d->cfg.faults.watchdog_ms);
		} else {
			do_reset(d, "watchdog");
		}
		break;
	case LIFE_RETURN:
		if (d->state == SIM_DEV_AWAY)
			come_up(d);
		break;
	}
}

int sim_device_fault_on_request(struct sim_device *d, bool is_upload)
{
	struct sim_faults *f = &d->cfg.faults;
	int64_t k = -1;

	if (is_upload)
		k = (int64_t) d->chunks++;
	if (k >= 0 && k == f->out_of_range_at_chunk && !d->fired_away) {
		d->fired_away = true;
		sim_device_go_away(d, f->out_of_range_ms);
		return -1;
	}
	if (k >= 0 && k == f->reboot_at_chunk && !d->fired_reboot) {
		d->fired_reboot = true;
		sim_device_reset_later(d, 0);
		return -1;
	}
	if ((k >= 0 && k == f->disconnect_at_chunk && !d->fired_disconnect) ||
	    (f->disconnect_prob > 0 && sim_device_rand(d) < f->disconnect_prob)) {
		if (k == f->disconnect_at_chunk)
			d->fired_disconnect = true;
		sim_device_link_lost(d, "fault: disconnect");
		return -1;
	}
	if (is_upload && f->error != SIM_ERR_NONE &&
	    ((k == f->error_at_chunk && !d->fired_error) ||
	     (f->error_prob > 0 && sim_device_rand(d) < f->error_prob))) {
		if (k == f->error_at_chunk)
			d->fired_error = true;
		return f->error == SIM_ERR_BUSY ? 10 : 2;
	}
	return 0;
}

/* ---- lifetime ----------------------------------------------------------------------------------
 */

int sim_device_init(struct sim *sim, struct sim_device *d, unsigned index,
		    const struct sim_dev_config *cfg)
{
	char path[600];
	int r;

	memset(d, 0, sizeof(*d));
	d->sim = sim;
	d->index = index;
	d->cfg = *cfg;
	d->up.fd = -1;
	d->rng = (sim->opt.seed + 1) * 0x9e3779b97f4a7c15ull + index * 0xbf58476d1ce4e5b9ull + 1;
	snprintf(d->addr, sizeof(d->addr), "C0:FF:EE:00:%02X:%02X", (index >> 8) & 0xff,
		 index & 0xff);
	snprintf(d->name, sizeof(d->name), "fotagw-sim-%04u", index);
	snprintf(d->adv_name, sizeof(d->adv_name), "%s", cfg->name[0] ? cfg->name : d->name);
	snprintf(d->dir, sizeof(d->dir), "%s/dev-%04u", sim->opt.state_dir, index);
	uv_timer_init(sim->loop, &d->worker);
	uv_timer_init(sim->loop, &d->life);

	if (mkdir(d->dir, 0755) < 0 && errno != EEXIST)
		return fgw_log_errno(LOG_ERR, -errno, "cannot create '%s'", d->dir);
	r = device_load(d);
	if (r == -ENOENT) {
		/* First start: flash the starting images, as a factory would. */
		sim_device_slot_path(d, 0, path, sizeof(path));
		r = starting_image(d, 0, cfg->app_version, path);
		if (r < 0)
			return r;
		sim_device_slot_path(d, 2, path, sizeof(path));
		r = starting_image(d, 1, cfg->net_version, path);
		if (r < 0)
			return r;
		r = sim_device_save(d);
		if (r < 0)
			return r;
	} else if (r < 0) {
		return fgw_log_errno(LOG_ERR, r, "%s: bad state file in '%s'", d->name, d->dir);
	}
	d->boots++;
	if (!primary_bootable(d)) {
		fgw_notice("event: boot-failed, device: %s, reason: 'no bootable image'", d->name);
		d->state = SIM_DEV_DEAD;
		return 0;
	}
	d->state = SIM_DEV_UP;
	sim_link_reset(&d->link, sim_now_us());
	if (cfg->faults.out_of_range) {
		d->state = SIM_DEV_AWAY;
		if (cfg->faults.out_of_range_ms > 0)
			life_at(d, LIFE_RETURN, cfg->faults.out_of_range_ms);
	}
	return 0;
}

void sim_device_close(struct sim_device *d)
{
	drop_pending(d);
	if (d->up.fd >= 0)
		close(d->up.fd);
	d->up.fd = -1;
	(void) sim_device_save(d);
	uv_close((uv_handle_t *) &d->worker, NULL);
	uv_close((uv_handle_t *) &d->life, NULL);
	if (d->udp_on)
		uv_close((uv_handle_t *) &d->udp, NULL);
}
