/*
 * One simulated nRF5340: slots on disk, MCUboot trailer flags, boot-time swap/overwrite with image
 * validation, state on disk, resets, link loss and the faults. The request pipeline is in
 * pipeline.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

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

uint64_t sim_delay_ms(uv_loop_t *loop, uint64_t at_us)
{
	uint64_t due = (at_us + 999) / 1000, now = uv_now(loop);
	return due > now ? due - now : 0;
}

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

/* ---- faults, resets, link loss -----------------------------------------------------------------
 */

static void drop_pending(struct sim_device *d)
{
	struct sim_req *r = d->queue_head;

	while (r) {
		struct sim_req *n = r->next;
		r->next = NULL;
		sim_req_free(r);
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

void sim_device_reset_now(struct sim_device *d, const char *why)
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
		sim_device_reset_now(d, "reset");
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
			sim_device_reset_now(d, "watchdog");
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
