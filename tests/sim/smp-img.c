/*
 * The image group (1) of the simulated SMP server, after Zephyr's img_mgmt.c,
 * img_mgmt_state.c and zephyr_img_mgmt.c: state read/write, upload, erase, slot info.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smp-int.h"

/* Whether mcumgr on the app core can open absolute slot @slot at all. */
static bool slot_openable(struct sim_device *d, unsigned slot, bool log)
{
	bool ok = true;

	if (slot == 2 && !d->cfg.net_slot0_visible)
		ok = false; /* RAM-emulated mcuboot_primary_1: no driver on the app core */
	if (slot == 3 && d->cfg.faults.net_unreadable)
		ok = false;
	if (!ok && log)
		fgw_notice("%s: <err> mcumgr_img_grp: Failed to open flash area ID %u: -2", d->name,
			   slot);
	return ok;
}

static int slot_info(struct sim_device *d, unsigned slot, struct sim_img_info *info)
{
	char path[600];
	int fd, r;

	if (!slot_openable(d, slot, true))
		return -ENOENT;
	sim_device_slot_path(d, slot, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	r = sim_img_read_info(fd, info);
	close(fd);
	return r;
}

enum next_type { NEXT_NORMAL, NEXT_TEST, NEXT_REVERT };

static unsigned next_boot_slot(struct sim_device *d, unsigned image, enum next_type *type)
{
	unsigned active = 2 * image, other = active + 1;

	switch (sim_device_swap_type(d, image)) {
	case SIM_SWAP_NONE:
		*type = NEXT_NORMAL;
		return active;
	case SIM_SWAP_PERM:
		*type = NEXT_NORMAL;
		return other;
	case SIM_SWAP_REVERT:
		*type = NEXT_REVERT;
		return other;
	case SIM_SWAP_TEST:
		*type = NEXT_TEST;
		return other;
	}
	*type = NEXT_NORMAL;
	return active;
}

static bool slot_in_use(struct sim_device *d, unsigned slot)
{
	unsigned image = slot / 2, active = 2 * image;
	enum next_type type;
	unsigned nbs = next_boot_slot(d, image, &type);

	if (slot == nbs && type == NEXT_REVERT)
		return true;
	if (((slot == nbs && type == NEXT_TEST) || (active != nbs && type == NEXT_NORMAL)) &&
	    !d->cfg.allow_erase_pending)
		return true;
	return slot == active;
}

static bool encode_slot(struct sim_device *d, cbor_item_t *arr, unsigned slot, bool active,
			bool pending, bool confirmed, bool permanent)
{
	struct sim_img_info info;
	char ver[32];
	cbor_item_t *m;

	if (slot_info(d, slot, &info) < 0)
		return true; /* unreadable or empty slots are skipped silently */
	sim_version_format(&info.ver, ver, sizeof(ver));
	m = smp_new_map();
	return smp_put(m, "image", smp_mk_uint(slot / 2)) &&
	       smp_put(m, "slot", smp_mk_uint(slot % 2)) &&
	       smp_put(m, "version", cbor_build_string(ver)) &&
	       smp_put(m, "hash", cbor_build_bytestring(info.hash, SIM_HASH_LEN)) &&
	       smp_put(m, "bootable", cbor_build_bool(!(info.flags & SIM_IMAGE_F_NON_BOOTABLE))) &&
	       smp_put(m, "pending", cbor_build_bool(pending)) &&
	       smp_put(m, "confirmed", cbor_build_bool(confirmed)) &&
	       smp_put(m, "active", cbor_build_bool(active)) &&
	       smp_put(m, "permanent", cbor_build_bool(permanent)) && smp_append(arr, m);
}

int img_state_read(struct ctx *c)
{
	struct sim_device *d = c->dev;
	cbor_item_t *arr = cbor_new_indefinite_array();
	bool ok = arr != NULL;

	for (unsigned i = 0; ok && i < sim_device_images(d); i++) {
		enum next_type type;
		unsigned nbs = next_boot_slot(d, i, &type), a = 2 * i, o = a + 1;
		bool a_conf = type != NEXT_REVERT;
		bool o_pend = false, o_conf = false, o_perm = false;

		if (nbs != a) {
			o_pend = type == NEXT_NORMAL || type == NEXT_TEST;
			o_perm = type == NEXT_NORMAL;
			o_conf = type == NEXT_REVERT;
		}
		ok = encode_slot(d, arr, a, true, false, a_conf, false) &&
		     encode_slot(d, arr, o, false, o_pend, o_conf, o_perm);
	}
	if (!ok) {
		if (arr)
			cbor_decref(&arr);
		return MGMT_ERR_ENOMEM;
	}
	return smp_put(c->rsp, "images", arr) && smp_put(c->rsp, "splitStatus", smp_mk_uint(0))
		   ? 0
		   : MGMT_ERR_ENOMEM;
}

static int find_by_hash(struct sim_device *d, const uint8_t *hash)
{
	for (unsigned s = 0; s < 2 * sim_device_images(d); s++) {
		struct sim_img_info info;
		if (slot_info(d, s, &info) == 0 && !memcmp(info.hash, hash, SIM_HASH_LEN))
			return (int) s;
	}
	return -1;
}

/* img_mgmt_set_next_boot_slot() + MCUboot boot_set_next() on the trailer model. */
static int set_next_boot_slot(struct sim_device *d, unsigned slot, bool confirm)
{
	unsigned image = slot / 2, active = 2 * image;
	enum next_type type;
	unsigned nbs = next_boot_slot(d, image, &type);
	struct sim_trailer *t = &d->tr[image];

	/* ALLOW_CONFIRM_NON_ACTIVE_IMAGE_SECONDARY=y: the net core secondary may be confirmed. */
	if (confirm && image != 0 && slot == active)
		return IMG_ERR_IMAGE_CONFIRMATION_DENIED;
	if (!confirm && slot == active)
		return IMG_ERR_IMAGE_SETTING_TEST_TO_ACTIVE_DENIED;
	if (type == NEXT_TEST) {
		if (!confirm && slot == nbs)
			return 0;
		return IMG_ERR_IMAGE_ALREADY_PENDING;
	}
	if (type == NEXT_NORMAL) {
		if (confirm && slot == nbs)
			return 0;
		if ((slot == active && active != nbs) ||
		    (!confirm && slot != active && slot == nbs))
			return IMG_ERR_IMAGE_ALREADY_PENDING;
	}
	if (type == NEXT_REVERT) {
		if (confirm && slot == nbs)
			return 0;
		if (!confirm)
			return IMG_ERR_IMAGE_ALREADY_PENDING;
	}
	if (!slot_openable(d, slot, true))
		return IMG_ERR_FLASH_OPEN_FAILED;
	if (slot == active) {
		/* confirm the running image: write image_ok if the trailer has magic */
		if (t->pri_magic && !t->pri_ok)
			t->pri_ok = true;
	} else if (!t->sec_magic) {
		t->sec_magic = true;
		t->sec_ok = confirm;
		d->mark_seq[image] = ++d->seq_counter;
	}
	return sim_device_save(d) < 0 ? IMG_ERR_FLASH_WRITE_FAILED : 0;
}

int img_state_write(struct ctx *c)
{
	const uint8_t *hash = NULL;
	size_t hash_len = 0;
	bool confirm = false;
	int slot, r1, r2;

	r1 = smp_bstr(c->req, "hash", &hash, &hash_len);
	r2 = smp_bool(c->req, "confirm", &confirm);
	if (r1 < 0 || r2 < 0)
		return MGMT_ERR_EINVAL;
	if (hash_len == 0) {
		if (!confirm) {
			c->grp_rc = IMG_ERR_INVALID_HASH;
			return 0;
		}
		slot = 0;
	} else if (hash_len != SIM_HASH_LEN) {
		c->grp_rc = IMG_ERR_INVALID_HASH;
		return 0;
	} else {
		slot = find_by_hash(c->dev, hash);
		if (slot < 0) {
			c->grp_rc = IMG_ERR_HASH_NOT_FOUND;
			return 0;
		}
	}
	c->grp_rc = set_next_boot_slot(c->dev, (unsigned) slot, confirm);
	if (c->grp_rc)
		return 0;
	return img_state_read(c);
}

static void upload_end(struct sim_device *d)
{
	if (d->up.fd >= 0)
		close(d->up.fd);
	d->up.fd = -1;
	d->up.active = false;
}

static uint32_t max_image_size(const struct sim_device *d, unsigned image)
{
	/* The last sector holds the MCUboot trailer (and swap-move needs it as scratch). */
	return d->cfg.slot_size[image] - d->cfg.link.sector;
}

static int write_chunk(struct ctx *c, const uint8_t *data, size_t n)
{
	struct sim_device *d = c->dev;
	size_t done = 0;

	while (done < n) {
		ssize_t w = pwrite(d->up.fd, data + done, n - done, (off_t) (d->up.off + done));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			fgw_log_errno(LOG_ERR, -errno, "%s: slot write failed", d->name);
			upload_end(d);
			c->grp_rc = IMG_ERR_FLASH_WRITE_FAILED;
			return -EIO;
		}
		done += (size_t) w;
	}
	d->up.off += n;
	c->res->cost_us += (uint64_t) ((double) n * d->cfg.link.write_us);
	return 0;
}

/* The fields of one upload request; image is already 0 on a single-image device. */
struct upload_req {
	const uint8_t *data, *sha;
	size_t data_len, sha_len;
	uint64_t image, len, off;
	bool upgrade, has_len, has_off;
};

static int upload_parse(struct ctx *c, struct upload_req *u)
{
	int has_off, has_len, r[6];

	r[0] = smp_uint(c->req, "image", &u->image);
	if (sim_device_images(c->dev) == 1)
		u->image = 0;
	r[1] = smp_bstr(c->req, "data", &u->data, &u->data_len);
	r[2] = has_len = smp_uint(c->req, "len", &u->len);
	r[3] = has_off = smp_uint(c->req, "off", &u->off);
	r[4] = smp_bstr(c->req, "sha", &u->sha, &u->sha_len);
	r[5] = smp_bool(c->req, "upgrade", &u->upgrade);
	for (int i = 0; i < 6; i++)
		if (r[i] < 0)
			return MGMT_ERR_EINVAL;
	u->has_len = has_len;
	u->has_off = has_off;
	return 0;
}

/* What the first chunk must carry, checked before anything of the device is touched. */
static int upload_header_rc(const struct upload_req *u)
{
	const uint8_t *h = u->data;

	if (u->data_len < SIM_IMAGE_HDR_LEN)
		return IMG_ERR_INVALID_IMAGE_HEADER;
	if (!u->has_len)
		return IMG_ERR_INVALID_LENGTH;
	if (((uint32_t) h[0] | (uint32_t) h[1] << 8 | (uint32_t) h[2] << 16 |
	     (uint32_t) h[3] << 24) != SIM_IMAGE_MAGIC)
		return IMG_ERR_INVALID_IMAGE_HEADER_MAGIC;
	if (u->sha_len > SIM_HASH_LEN)
		return IMG_ERR_INVALID_HASH;
	return 0;
}

/* Whether the secondary slot can take this image at all. */
static int upload_slot_rc(struct sim_device *d, const struct upload_req *u)
{
	const uint8_t *h = u->data;
	struct sim_img_info run;

	if (u->image >= SIM_IMAGES)
		return IMG_ERR_NO_FREE_SLOT;
	if (slot_in_use(d, 2 * (unsigned) u->image + 1))
		return IMG_ERR_NO_FREE_SLOT;
	if (!slot_openable(d, 2 * (unsigned) u->image + 1, true))
		return IMG_ERR_FLASH_OPEN_FAILED;
	if (u->len > max_image_size(d, (unsigned) u->image))
		return IMG_ERR_INVALID_IMAGE_TOO_LARGE;
	if (u->upgrade) {
		/* MCUboot fakes the net core primary as 0.0.0: only the app is compared. */
		struct sim_version nv = {h[20], h[21], (uint16_t) (h[22] | h[23] << 8),
					 (uint32_t) h[24] | (uint32_t) h[25] << 8 |
					     (uint32_t) h[26] << 16 | (uint32_t) h[27] << 24};
		if (u->image == 0 && slot_info(d, 0, &run) == 0 &&
		    sim_version_cmp(&nv, &run.ver, false) <= 0)
			return IMG_ERR_CURRENT_VERSION_IS_NEWER;
	}
	return 0;
}

/* The slot may already hold exactly these bytes: nothing to upload. */
static bool slot_holds(const char *path, uint64_t len, const uint8_t *sha)
{
	uint8_t have[SIM_HASH_LEN];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	bool same = fd >= 0 && fstat(fd, &st) == 0 && (uint64_t) st.st_size >= len &&
		    sim_sha256_fd(fd, len, have) == 0 && !memcmp(have, sha, SIM_HASH_LEN);

	if (fd >= 0)
		close(fd);
	return same;
}

/* New session. Without progressive erase the first chunk erases len bytes plus the trailer
 * sector synchronously: that is why the first reply is slow. Erasing drops the old image and
 * its trailer. The file is replaced, never rewritten in place (slot files may be hard links
 * shared between devices). */
static int upload_open(struct ctx *c, const struct upload_req *u, const char *path)
{
	struct sim_device *d = c->dev;

	(void) unlink(path);
	d->up.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (d->up.fd < 0) {
		fgw_log_errno(LOG_ERR, -errno, "%s: cannot open '%s'", d->name, path);
		return IMG_ERR_FLASH_OPEN_FAILED;
	}
	d->tr[u->image].sec_magic = d->tr[u->image].sec_ok = false;
	(void) sim_device_save(d);
	c->res->cost_us += (uint64_t) sim_flash_erase_us(&d->cfg.link, u->len) +
			   (uint64_t) (d->cfg.link.erase_ms * 1000.0);
	d->up.active = true;
	d->up.image = (unsigned) u->image;
	d->up.len = u->len;
	d->up.off = 0;
	d->up.sha_len = u->sha_len;
	memcpy(d->up.sha, u->sha ? u->sha : (const uint8_t *) "", u->sha_len);
	return 0;
}

/* The chunk at offset 0: a resume, a match, a refusal (*done set: the reply is complete) or a
 * new session that the chunk is then written to. */
static int upload_first(struct ctx *c, const struct upload_req *u, bool *done)
{
	struct sim_device *d = c->dev;
	char path[600];
	int rc = upload_header_rc(u);

	*done = true;
	if (rc) {
		c->grp_rc = rc;
		return 0;
	}
	/* Same sha as the upload in progress: resume where the device is. */
	if (d->up.active && u->sha_len > 0 && u->sha_len == d->up.sha_len &&
	    !memcmp(u->sha, d->up.sha, u->sha_len) && u->image == d->up.image &&
	    u->len == d->up.len)
		return smp_put(c->rsp, "off", smp_mk_uint(d->up.off)) ? 0 : MGMT_ERR_ENOMEM;
	upload_end(d);
	rc = upload_slot_rc(d, u);
	if (rc) {
		c->grp_rc = rc;
		return 0;
	}
	sim_device_slot_path(d, 2 * (unsigned) u->image + 1, path, sizeof(path));
	if (d->cfg.image_check && u->sha_len == SIM_HASH_LEN && slot_holds(path, u->len, u->sha))
		return smp_put(c->rsp, "off", smp_mk_uint(u->len)) &&
			       smp_put(c->rsp, "match", cbor_build_bool(true))
			   ? 0
			   : MGMT_ERR_ENOMEM;
	if (u->data_len > u->len) {
		c->grp_rc = IMG_ERR_INVALID_IMAGE_DATA_OVERRUN;
		return 0;
	}
	rc = upload_open(c, u, path);
	if (rc) {
		c->grp_rc = rc;
		return 0;
	}
	*done = false;
	return 0;
}

/* The last chunk: the session ends, with the hash check's verdict when the device makes one. */
static int upload_complete(struct ctx *c)
{
	struct sim_device *d = c->dev;
	bool check = d->cfg.image_check && d->up.sha_len == SIM_HASH_LEN;
	bool match = false;
	uint64_t end = d->up.off;

	if (check) {
		uint8_t have[SIM_HASH_LEN];
		match = sim_sha256_fd(d->up.fd, d->up.len, have) == 0 &&
			!memcmp(have, d->up.sha, SIM_HASH_LEN);
	}
	upload_end(d);
	fgw_debug("%s: upload of image %u complete (%llu bytes)", d->name, d->up.image,
		  (unsigned long long) end);
	if (!smp_put(c->rsp, "off", smp_mk_uint(end)))
		return MGMT_ERR_ENOMEM;
	if (check && !smp_put(c->rsp, "match", cbor_build_bool(match)))
		return MGMT_ERR_ENOMEM;
	return 0;
}

int img_upload(struct ctx *c)
{
	struct sim_device *d = c->dev;
	struct upload_req u = {0};
	bool done = false;
	int r = upload_parse(c, &u);

	if (r)
		return r;
	if (!u.has_off) {
		c->grp_rc = IMG_ERR_INVALID_OFFSET;
		return 0;
	}
	if (u.off == 0) {
		r = upload_first(c, &u, &done);
		if (done)
			return r;
	} else {
		if (!d->up.active)
			return smp_put(c->rsp, "off", smp_mk_uint(0)) ? 0 : MGMT_ERR_ENOMEM;
		if (u.off != d->up.off)
			return smp_put(c->rsp, "off", smp_mk_uint(d->up.off)) ? 0 : MGMT_ERR_ENOMEM;
		if (u.off + u.data_len > d->up.len) {
			c->grp_rc = IMG_ERR_INVALID_IMAGE_DATA_OVERRUN;
			return 0;
		}
	}

	if (write_chunk(c, u.data, u.data_len) < 0)
		return 0;
	/* Once per upload, a quarter in: what a test waits for to act mid-upload. */
	if (d->up.off >= d->up.len / 4 && d->up.off - u.data_len < d->up.len / 4)
		fgw_notice("event: upload-quarter, device: %s, image: %u, off: %llu, len: %llu",
			   d->name, d->up.image, (unsigned long long) d->up.off,
			   (unsigned long long) d->up.len);
	if (d->up.off == d->up.len)
		return upload_complete(c);
	return smp_put(c->rsp, "off", smp_mk_uint(d->up.off)) ? 0 : MGMT_ERR_ENOMEM;
}

int img_erase(struct ctx *c)
{
	struct sim_device *d = c->dev;
	uint64_t slot = 1;
	char path[600];

	if (smp_uint(c->req, "slot", &slot) < 0)
		return MGMT_ERR_EINVAL;
	if (slot >= 2 * sim_device_images(d)) {
		c->grp_rc = IMG_ERR_INVALID_SLOT;
		return 0;
	}
	if (slot_in_use(d, (unsigned) slot)) {
		c->grp_rc = IMG_ERR_NO_FREE_SLOT;
		return 0;
	}
	if (!slot_openable(d, (unsigned) slot, true)) {
		c->grp_rc = IMG_ERR_FLASH_OPEN_FAILED;
		return 0;
	}
	upload_end(d);
	sim_device_slot_path(d, (unsigned) slot, path, sizeof(path));
	(void) unlink(path);
	d->tr[slot / 2].sec_magic = d->tr[slot / 2].sec_ok = false;
	(void) sim_device_save(d);
	c->res->cost_us += (uint64_t) sim_flash_erase_us(&d->cfg.link, d->cfg.slot_size[slot / 2]);
	return 0;
}

int img_slot_info(struct ctx *c)
{
	struct sim_device *d = c->dev;
	cbor_item_t *imgs = cbor_new_indefinite_array();
	bool ok = imgs != NULL;

	for (unsigned i = 0; ok && i < sim_device_images(d); i++) {
		cbor_item_t *m = smp_new_map(), *slots = cbor_new_indefinite_array();
		for (unsigned s = 0; ok && s < 2; s++) {
			cbor_item_t *sm = smp_new_map();
			ok = smp_put(sm, "slot", smp_mk_uint(s)) &&
			     smp_put(sm, "size", smp_mk_uint(d->cfg.slot_size[i])) &&
			     smp_append(slots, sm);
		}
		/* smp_put() and smp_append() consume their value, also when they fail */
		ok = ok && smp_put(m, "image", smp_mk_uint(i)) && smp_put(m, "slots", slots) &&
		     smp_put(m, "max_image_size", smp_mk_uint(max_image_size(d, i))) &&
		     smp_append(imgs, m);
	}
	if (!ok) {
		if (imgs)
			cbor_decref(&imgs);
		return MGMT_ERR_ENOMEM;
	}
	return smp_put(c->rsp, "images", imgs) ? 0 : MGMT_ERR_ENOMEM;
}
