/*
 * SMP server of a simulated device: os and img group handlers, v1 and v2 errors, responses
 * (decoding is in smpcodec.c), written after Zephyr's mcumgr (smp.c, os_mgmt.c, img_mgmt.c,
 * img_mgmt_state.c) and the behaviour recorded in protocol-notes §1–§4 and §9. Replies use
 * indefinite-length maps as zcbor does unless --canonical.
 */
#include <cbor.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

enum {
	MGMT_ERR_EOK = 0,
	MGMT_ERR_EUNKNOWN = 1,
	MGMT_ERR_ENOMEM = 2,
	MGMT_ERR_EINVAL = 3,
	MGMT_ERR_ENOENT = 5,
	MGMT_ERR_EBADSTATE = 6,
	MGMT_ERR_EMSGSIZE = 7,
	MGMT_ERR_ENOTSUP = 8,
	MGMT_ERR_ECORRUPT = 9,
	MGMT_ERR_EBUSY = 10,
	MGMT_ERR_UNSUPPORTED_TOO_NEW = 13,
};

enum { GRP_OS = 0, GRP_IMG = 1, GRP_SIM = 64 };

enum {
	OS_ERR_INVALID_FORMAT = 2,
	OS_ERR_QUERY_YIELDS_NO_ANSWER = 3,
};

enum {
	IMG_ERR_UNKNOWN = 1,
	IMG_ERR_HASH_NOT_FOUND = 8,
	IMG_ERR_NO_FREE_SLOT = 9,
	IMG_ERR_FLASH_OPEN_FAILED = 10,
	IMG_ERR_FLASH_WRITE_FAILED = 12,
	IMG_ERR_INVALID_SLOT = 14,
	IMG_ERR_INVALID_OFFSET = 20,
	IMG_ERR_INVALID_LENGTH = 21,
	IMG_ERR_INVALID_IMAGE_HEADER = 22,
	IMG_ERR_INVALID_IMAGE_HEADER_MAGIC = 23,
	IMG_ERR_INVALID_HASH = 24,
	IMG_ERR_CURRENT_VERSION_IS_NEWER = 27,
	IMG_ERR_IMAGE_ALREADY_PENDING = 28,
	IMG_ERR_INVALID_IMAGE_TOO_LARGE = 30,
	IMG_ERR_INVALID_IMAGE_DATA_OVERRUN = 31,
	IMG_ERR_IMAGE_CONFIRMATION_DENIED = 32,
	IMG_ERR_IMAGE_SETTING_TEST_TO_ACTIVE_DENIED = 33,
};

static cbor_item_t *req_key(const struct smp_req *r, const char *k)
{
	for (size_t i = 0; i < r->n_keys; i++)
		if (!strcmp(r->keys[i].name, k))
			return r->keys[i].value;
	return NULL;
}

/* Each getter: 1 found, 0 absent, -EINVAL wrong type (the handler answers EINVAL). */
static int req_uint(const struct smp_req *r, const char *k, uint64_t *v)
{
	cbor_item_t *it = req_key(r, k);
	if (!it)
		return 0;
	if (!cbor_isa_uint(it))
		return -EINVAL;
	*v = cbor_get_int(it);
	return 1;
}

static int req_bool(const struct smp_req *r, const char *k, bool *v)
{
	cbor_item_t *it = req_key(r, k);
	if (!it)
		return 0;
	if (!cbor_isa_float_ctrl(it) || !cbor_is_bool(it))
		return -EINVAL;
	*v = cbor_get_bool(it);
	return 1;
}

static int req_bstr(const struct smp_req *r, const char *k, const uint8_t **v, size_t *n)
{
	cbor_item_t *it = req_key(r, k);
	if (!it)
		return 0;
	if (!cbor_isa_bytestring(it) || !cbor_bytestring_is_definite(it))
		return -EINVAL;
	*v = cbor_bytestring_handle(it);
	*n = cbor_bytestring_length(it);
	if (!*v)
		*v = (const uint8_t *) "";
	return 1;
}

static int req_tstr(const struct smp_req *r, const char *k, const char **v, size_t *n)
{
	cbor_item_t *it = req_key(r, k);
	if (!it)
		return 0;
	if (!cbor_isa_string(it) || !cbor_string_is_definite(it))
		return -EINVAL;
	*v = (const char *) cbor_string_handle(it);
	*n = cbor_string_length(it);
	if (!*v)
		*v = "";
	return 1;
}

/* ---- response building -------------------------------------------------------------------------
 */

struct ctx {
	struct sim_device *dev;
	const struct smp_req *req;
	cbor_item_t *rsp;
	int grp_rc; /* group error (v2 "err") if non-zero */
	struct smp_result *res;
};

static cbor_item_t *mk_uint(uint64_t v)
{
	if (v <= 0xff)
		return cbor_build_uint8((uint8_t) v);
	if (v <= 0xffff)
		return cbor_build_uint16((uint16_t) v);
	if (v <= 0xffffffffu)
		return cbor_build_uint32((uint32_t) v);
	return cbor_build_uint64(v);
}

static bool put(cbor_item_t *map, const char *k, cbor_item_t *v)
{
	cbor_item_t *key;
	bool ok;

	if (!map || !v)
		goto fail;
	key = cbor_build_string(k);
	if (!key)
		goto fail;
	ok = cbor_map_add(map, (struct cbor_pair){.key = key, .value = v});
	cbor_decref(&key);
	cbor_decref(&v);
	return ok;
fail:
	if (v)
		cbor_decref(&v);
	return false;
}

static bool append(cbor_item_t *arr, cbor_item_t *v)
{
	bool ok;

	if (!arr || !v) {
		if (v)
			cbor_decref(&v);
		return false;
	}
	ok = cbor_array_push(arr, v);
	cbor_decref(&v);
	return ok;
}

/* Serializes with definite lengths (zcbor canonical mode). */
static size_t ser_canonical(const cbor_item_t *it, uint8_t *out, size_t n)
{
	size_t w = 0, k;

	if (cbor_isa_map(it)) {
		struct cbor_pair *p = cbor_map_handle(it);
		size_t cnt = cbor_map_size(it);
		k = cbor_encode_map_start(cnt, out, n);
		if (!k)
			return 0;
		w += k;
		for (size_t i = 0; i < cnt; i++) {
			k = ser_canonical(p[i].key, out + w, n - w);
			if (!k)
				return 0;
			w += k;
			k = ser_canonical(p[i].value, out + w, n - w);
			if (!k)
				return 0;
			w += k;
		}
		return w;
	}
	if (cbor_isa_array(it)) {
		cbor_item_t **a = cbor_array_handle(it);
		size_t cnt = cbor_array_size(it);
		k = cbor_encode_array_start(cnt, out, n);
		if (!k)
			return 0;
		w += k;
		for (size_t i = 0; i < cnt; i++) {
			k = ser_canonical(a[i], out + w, n - w);
			if (!k)
				return 0;
			w += k;
		}
		return w;
	}
	return cbor_serialize(it, out, n);
}

static cbor_item_t *new_map(void)
{
	return cbor_new_indefinite_map();
}

/* ---- os group ----------------------------------------------------------------------------------
 */

static int os_echo(struct ctx *c)
{
	const char *d;
	size_t n;
	int r = req_tstr(c->req, "d", &d, &n);

	if (r <= 0)
		return MGMT_ERR_EINVAL;
	return put(c->rsp, "r", cbor_build_stringn(d, n)) ? 0 : MGMT_ERR_ENOMEM;
}

static int os_reset(struct ctx *c)
{
	bool force = false;
	uint64_t mode = 0;

	/* Decode failures of the optional arguments are ignored, as in os_mgmt.c. */
	(void) req_bool(c->req, "force", &force);
	(void) req_uint(c->req, "boot_mode", &mode);
	c->res->reset = true;
	return 0;
}

static int os_params(struct ctx *c)
{
	return put(c->rsp, "buf_size", mk_uint(c->dev->cfg.buf_size)) &&
		       put(c->rsp, "buf_count", mk_uint(c->dev->cfg.buf_count))
		   ? 0
		   : MGMT_ERR_ENOMEM;
}

static int os_info(struct ctx *c)
{
	static const char order[] = "snrvbmpio";
	const char *fmt = "s";
	size_t n = 1;
	char out[256] = "";
	bool want[sizeof(order)] = {};
	int r = req_tstr(c->req, "format", &fmt, &n);

	if (r < 0)
		return MGMT_ERR_EINVAL;
	for (size_t i = 0; i < n; i++) {
		const char *p = fmt[i] == 'a' ? NULL : memchr(order, fmt[i], sizeof(order) - 1);
		if (fmt[i] == 'a') {
			for (size_t j = 0; j < sizeof(order) - 1; j++)
				want[j] = true;
			continue;
		}
		if (!p) {
			c->grp_rc = OS_ERR_INVALID_FORMAT;
			return 0;
		}
		want[p - order] = true;
	}
	for (size_t j = 0; j < sizeof(order) - 1; j++) {
		const char *v = "";
		if (!want[j])
			continue;
		switch (order[j]) {
		case 's':
			v = "Zephyr";
			break;
		case 'n':
			v = c->dev->adv_name;
			break;
		case 'r':
			v = "3.5.99";
			break;
		case 'v':
			v = "v3.5.99-ncs1";
			break;
		case 'b':
			v = "Jan  1 2025 00:00:00";
			break;
		case 'm':
			v = "arm";
			break;
		case 'p':
			v = "cortex-m33";
			break;
		case 'i':
			v = "nrf5340dk/nrf5340/cpuapp";
			break;
		case 'o':
			v = "Zephyr";
			break;
		}
		if (out[0])
			strncat(out, " ", sizeof(out) - strlen(out) - 1);
		strncat(out, v, sizeof(out) - strlen(out) - 1);
	}
	return put(c->rsp, "output", cbor_build_string(out)) ? 0 : MGMT_ERR_ENOMEM;
}

static int os_bootloader(struct ctx *c)
{
	const char *q;
	size_t n;
	int r = req_tstr(c->req, "query", &q, &n);

	if (!c->dev->cfg.bootloader_info)
		return MGMT_ERR_ENOTSUP; /* command not built in: as for any unknown command */
	if (r < 0)
		return MGMT_ERR_EINVAL;
	if (r == 0)
		return put(c->rsp, "bootloader", cbor_build_string("MCUboot")) ? 0
									       : MGMT_ERR_ENOMEM;
	if (n == 4 && !memcmp(q, "mode", 4)) {
		/* MCUboot enum mcuboot_mode: 2 overwrite-only, 3 swap without scratch (move). */
		int mode = c->dev->cfg.mode == SIM_MODE_OVERWRITE ? 2 : 3;
		if (!put(c->rsp, "mode", mk_uint((uint64_t) mode)))
			return MGMT_ERR_ENOMEM;
		if (c->dev->cfg.no_downgrade && c->dev->cfg.mode == SIM_MODE_OVERWRITE &&
		    !put(c->rsp, "no-downgrade", cbor_build_bool(true)))
			return MGMT_ERR_ENOMEM;
		return 0;
	}
	c->grp_rc = OS_ERR_QUERY_YIELDS_NO_ANSWER;
	return 0;
}

/* ---- img group ---------------------------------------------------------------------------------
 */

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
	m = new_map();
	return put(m, "image", mk_uint(slot / 2)) && put(m, "slot", mk_uint(slot % 2)) &&
	       put(m, "version", cbor_build_string(ver)) &&
	       put(m, "hash", cbor_build_bytestring(info.hash, SIM_HASH_LEN)) &&
	       put(m, "bootable", cbor_build_bool(!(info.flags & SIM_IMAGE_F_NON_BOOTABLE))) &&
	       put(m, "pending", cbor_build_bool(pending)) &&
	       put(m, "confirmed", cbor_build_bool(confirmed)) &&
	       put(m, "active", cbor_build_bool(active)) &&
	       put(m, "permanent", cbor_build_bool(permanent)) && append(arr, m);
}

static int img_state_read(struct ctx *c)
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
	return put(c->rsp, "images", arr) && put(c->rsp, "splitStatus", mk_uint(0))
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

static int img_state_write(struct ctx *c)
{
	const uint8_t *hash = NULL;
	size_t hash_len = 0;
	bool confirm = false;
	int slot, r1, r2;

	r1 = req_bstr(c->req, "hash", &hash, &hash_len);
	r2 = req_bool(c->req, "confirm", &confirm);
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

static int img_upload(struct ctx *c)
{
	struct sim_device *d = c->dev;
	const uint8_t *data = NULL, *sha = NULL;
	size_t data_len = 0, sha_len = 0;
	uint64_t image = 0, len = 0, off = 0;
	bool upgrade = false;
	int has_off, has_len, r[6];
	char path[600];

	r[0] = req_uint(c->req, "image", &image);
	if (sim_device_images(d) == 1)
		image = 0;
	r[1] = req_bstr(c->req, "data", &data, &data_len);
	r[2] = has_len = req_uint(c->req, "len", &len);
	r[3] = has_off = req_uint(c->req, "off", &off);
	r[4] = req_bstr(c->req, "sha", &sha, &sha_len);
	r[5] = req_bool(c->req, "upgrade", &upgrade);
	for (int i = 0; i < 6; i++)
		if (r[i] < 0)
			return MGMT_ERR_EINVAL;
	if (!has_off) {
		c->grp_rc = IMG_ERR_INVALID_OFFSET;
		return 0;
	}

	if (off == 0) {
		struct sim_img_info run;
		const uint8_t *h = data;

		if (data_len < SIM_IMAGE_HDR_LEN) {
			c->grp_rc = IMG_ERR_INVALID_IMAGE_HEADER;
			return 0;
		}
		if (!has_len) {
			c->grp_rc = IMG_ERR_INVALID_LENGTH;
			return 0;
		}
		if (((uint32_t) h[0] | (uint32_t) h[1] << 8 | (uint32_t) h[2] << 16 |
		     (uint32_t) h[3] << 24) != SIM_IMAGE_MAGIC) {
			c->grp_rc = IMG_ERR_INVALID_IMAGE_HEADER_MAGIC;
			return 0;
		}
		if (sha_len > SIM_HASH_LEN) {
			c->grp_rc = IMG_ERR_INVALID_HASH;
			return 0;
		}
		/* Same sha as the upload in progress: resume where the device is. */
		if (d->up.active && sha_len > 0 && sha_len == d->up.sha_len &&
		    !memcmp(sha, d->up.sha, sha_len) && image == d->up.image && len == d->up.len)
			return put(c->rsp, "off", mk_uint(d->up.off)) ? 0 : MGMT_ERR_ENOMEM;
		upload_end(d);
		if (image >= SIM_IMAGES) {
			c->grp_rc = IMG_ERR_NO_FREE_SLOT;
			return 0;
		}
		if (slot_in_use(d, 2 * (unsigned) image + 1)) {
			c->grp_rc = IMG_ERR_NO_FREE_SLOT;
			return 0;
		}
		if (!slot_openable(d, 2 * (unsigned) image + 1, true)) {
			c->grp_rc = IMG_ERR_FLASH_OPEN_FAILED;
			return 0;
		}
		if (len > max_image_size(d, (unsigned) image)) {
			c->grp_rc = IMG_ERR_INVALID_IMAGE_TOO_LARGE;
			return 0;
		}
		if (upgrade) {
			/* MCUboot fakes the net core primary as 0.0.0: only the app is compared. */
			struct sim_version nv = {h[20], h[21], (uint16_t) (h[22] | h[23] << 8),
						 (uint32_t) h[24] | (uint32_t) h[25] << 8 |
						     (uint32_t) h[26] << 16 |
						     (uint32_t) h[27] << 24};
			if (image == 0 && slot_info(d, 0, &run) == 0 &&
			    sim_version_cmp(&nv, &run.ver, false) <= 0) {
				c->grp_rc = IMG_ERR_CURRENT_VERSION_IS_NEWER;
				return 0;
			}
		}
		sim_device_slot_path(d, 2 * (unsigned) image + 1, path, sizeof(path));
		if (d->cfg.image_check && sha_len == SIM_HASH_LEN) {
			/* The slot may already hold exactly these bytes: nothing to upload. */
			uint8_t have[SIM_HASH_LEN];
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			struct stat st;
			bool same =
			    fd >= 0 && fstat(fd, &st) == 0 && (uint64_t) st.st_size >= len &&
			    sim_sha256_fd(fd, len, have) == 0 && !memcmp(have, sha, SIM_HASH_LEN);
			if (fd >= 0)
				close(fd);
			if (same)
				return put(c->rsp, "off", mk_uint(len)) &&
					       put(c->rsp, "match", cbor_build_bool(true))
					   ? 0
					   : MGMT_ERR_ENOMEM;
		}
		if (data_len > len) {
			c->grp_rc = IMG_ERR_INVALID_IMAGE_DATA_OVERRUN;
			return 0;
		}
		/* New session. Without progressive erase the first chunk erases len bytes plus the
		 * trailer sector synchronously: that is why the first reply is slow. Erasing drops
		 * the old image and its trailer. The file is replaced, never rewritten in place
		 * (slot files may be hard links shared between devices). */
		(void) unlink(path);
		d->up.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (d->up.fd < 0) {
			fgw_log_errno(LOG_ERR, -errno, "%s: cannot open '%s'", d->name, path);
			c->grp_rc = IMG_ERR_FLASH_OPEN_FAILED;
			return 0;
		}
		d->tr[image].sec_magic = d->tr[image].sec_ok = false;
		(void) sim_device_save(d);
		c->res->cost_us += (uint64_t) sim_flash_erase_us(&d->cfg.link, len) +
				   (uint64_t) (d->cfg.link.erase_ms * 1000.0);
		d->up.active = true;
		d->up.image = (unsigned) image;
		d->up.len = len;
		d->up.off = 0;
		d->up.sha_len = sha_len;
		memcpy(d->up.sha, sha ? sha : (const uint8_t *) "", sha_len);
	} else {
		if (!d->up.active)
			return put(c->rsp, "off", mk_uint(0)) ? 0 : MGMT_ERR_ENOMEM;
		if (off != d->up.off)
			return put(c->rsp, "off", mk_uint(d->up.off)) ? 0 : MGMT_ERR_ENOMEM;
		if (off + data_len > d->up.len) {
			c->grp_rc = IMG_ERR_INVALID_IMAGE_DATA_OVERRUN;
			return 0;
		}
	}

	if (write_chunk(c, data, data_len) < 0)
		return 0;
	if (d->up.off == d->up.len) {
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
		if (!put(c->rsp, "off", mk_uint(end)))
			return MGMT_ERR_ENOMEM;
		if (check && !put(c->rsp, "match", cbor_build_bool(match)))
			return MGMT_ERR_ENOMEM;
		return 0;
	}
	return put(c->rsp, "off", mk_uint(d->up.off)) ? 0 : MGMT_ERR_ENOMEM;
}

static int img_erase(struct ctx *c)
{
	struct sim_device *d = c->dev;
	uint64_t slot = 1;
	char path[600];

	if (req_uint(c->req, "slot", &slot) < 0)
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

static int img_slot_info(struct ctx *c)
{
	struct sim_device *d = c->dev;
	cbor_item_t *imgs = cbor_new_indefinite_array();
	bool ok = imgs != NULL;

	for (unsigned i = 0; ok && i < sim_device_images(d); i++) {
		cbor_item_t *m = new_map(), *slots = cbor_new_indefinite_array();
		for (unsigned s = 0; ok && s < 2; s++) {
			cbor_item_t *sm = new_map();
			ok = put(sm, "slot", mk_uint(s)) &&
			     put(sm, "size", mk_uint(d->cfg.slot_size[i])) && append(slots, sm);
		}
		/* put() and append() consume their value, also when they fail */
		ok = ok && put(m, "image", mk_uint(i)) && put(m, "slots", slots) &&
		     put(m, "max_image_size", mk_uint(max_image_size(d, i))) && append(imgs, m);
	}
	if (!ok) {
		if (imgs)
			cbor_decref(&imgs);
		return MGMT_ERR_ENOMEM;
	}
	return put(c->rsp, "images", imgs) ? 0 : MGMT_ERR_ENOMEM;
}

/* fotagw-sim's own group: what a firmware-provided version probe would report (the net core
 * version cannot be read over img_mgmt on a real nRF5340, protocol-notes §6.4). */
static int sim_versions(struct ctx *c)
{
	struct sim_img_info info;
	char app[32] = "", net[32] = "";
	char path[600];
	int fd;

	sim_device_slot_path(c->dev, 0, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && sim_img_read_info(fd, &info) == 0)
		sim_version_format(&info.ver, app, sizeof(app));
	if (fd >= 0)
		close(fd);
	sim_device_slot_path(c->dev, 2, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && sim_img_read_info(fd, &info) == 0)
		sim_version_format(&info.ver, net, sizeof(net));
	if (fd >= 0)
		close(fd);
	return put(c->rsp, "app", cbor_build_string(app)) &&
		       put(c->rsp, "net", cbor_build_string(net))
		   ? 0
		   : MGMT_ERR_ENOMEM;
}

struct handler {
	uint16_t group;
	uint8_t id;
	int (*read)(struct ctx *c);
	int (*write)(struct ctx *c);
};

static const struct handler handlers[] = {
    {GRP_OS, 0, os_echo, os_echo},     {GRP_OS, 5, NULL, os_reset},
    {GRP_OS, 6, os_params, NULL},      {GRP_OS, 7, os_info, NULL},
    {GRP_OS, 8, os_bootloader, NULL},  {GRP_IMG, 0, img_state_read, img_state_write},
    {GRP_IMG, 1, NULL, img_upload},    {GRP_IMG, 5, NULL, img_erase},
    {GRP_IMG, 6, img_slot_info, NULL}, {GRP_SIM, 0, sim_versions, NULL},
};

/* v1 clients get group errors translated to mcumgr_err_t (os_mgmt/img_mgmt translate_error). */
static int v1_translate(uint16_t group, int rc)
{
	if (group == GRP_OS) {
		switch (rc) {
		case OS_ERR_INVALID_FORMAT:
			return MGMT_ERR_EINVAL;
		case OS_ERR_QUERY_YIELDS_NO_ANSWER:
		case 4:
			return MGMT_ERR_ENOENT;
		default:
			return MGMT_ERR_EUNKNOWN;
		}
	}
	switch (rc) {
	case 3:
	case 4:
		return MGMT_ERR_ENOENT;
	case IMG_ERR_NO_FREE_SLOT:
	case IMG_ERR_CURRENT_VERSION_IS_NEWER:
	case IMG_ERR_IMAGE_ALREADY_PENDING:
		return MGMT_ERR_EBADSTATE;
	case 15:
		return MGMT_ERR_ENOMEM;
	case IMG_ERR_INVALID_SLOT:
	case 19:
	case IMG_ERR_INVALID_OFFSET:
	case IMG_ERR_INVALID_LENGTH:
	case IMG_ERR_INVALID_IMAGE_HEADER:
	case IMG_ERR_INVALID_HASH:
	case 25:
		return MGMT_ERR_EINVAL;
	default:
		return MGMT_ERR_EUNKNOWN;
	}
}

static void emit_rsp(struct sim_device *d, const struct smp_hdr *req, cbor_item_t *map,
		     smp_emit_cb_t emit, void *user_data)
{
	uint8_t *out = NULL;
	size_t cap = 0, n;
	struct smp_hdr h = *req;
	bool canonical = d->sim->opt.canonical;

	h.op = (uint8_t) (req->op | 1);
	h.ver = req->ver > 1 ? 1 : req->ver;
	h.flags = 0;
	if (canonical) {
		cap = 65536;
		out = malloc(cap);
		n = out ? ser_canonical(map, out, cap) : 0;
	} else {
		n = cbor_serialize_alloc(map, &out, &cap);
	}
	if (!n || n + SMP_HDR_LEN > d->cfg.buf_size) {
		/* The response does not fit the device's SMP buffer. */
		uint8_t small[SMP_HDR_LEN + 8];
		static const uint8_t emsgsize[] = {0xbf, 0x62, 'r', 'c', MGMT_ERR_EMSGSIZE, 0xff};
		static const uint8_t emsgsize_c[] = {0xa1, 0x62, 'r', 'c', MGMT_ERR_EMSGSIZE};
		const uint8_t *p = canonical ? emsgsize_c : emsgsize;
		size_t pl = canonical ? sizeof(emsgsize_c) : sizeof(emsgsize);
		free(out);
		h.len = (uint16_t) pl;
		smp_hdr_encode(&h, small);
		memcpy(small + SMP_HDR_LEN, p, pl);
		emit(d, small, SMP_HDR_LEN + pl, user_data);
		return;
	}
	uint8_t *pkt = malloc(SMP_HDR_LEN + n);
	if (!pkt) {
		free(out);
		return;
	}
	h.len = (uint16_t) n;
	smp_hdr_encode(&h, pkt);
	memcpy(pkt + SMP_HDR_LEN, out, n);
	free(out);
	emit(d, pkt, SMP_HDR_LEN + n, user_data);
	free(pkt);
}

/* Zephyr's verbose error answers (CONFIG_MCUMGR_SMP_VERBOSE_ERR_RESPONSE): "rsn" next to the
 * error, as the scenario gave it, bytes unchecked. */
static bool put_rsn(const struct sim_device *d, cbor_item_t *m)
{
	if (!d->cfg.rsn[0])
		return true;
	return put(m, "rsn", cbor_build_stringn(d->cfg.rsn, strlen(d->cfg.rsn)));
}

static void emit_rc(struct sim_device *d, const struct smp_hdr *req, int rc, smp_emit_cb_t emit,
		    void *user_data)
{
	cbor_item_t *m = new_map();

	if (m && put(m, "rc", mk_uint((uint64_t) rc)) && put_rsn(d, m))
		emit_rsp(d, req, m, emit, user_data);
	if (m)
		cbor_decref(&m);
}

/* Fault lose_final_chunk: the request that would complete the open upload, as if it had found
 * no buffer on its way in. */
static bool lose_final(struct sim_device *d, const struct smp_req *req)
{
	cbor_item_t *off = req_key(req, "off"), *data = req_key(req, "data");

	if (!d->cfg.faults.lose_final_chunk || d->fired_lose_final || !d->up.active || !off ||
	    !data || !cbor_isa_uint(off) || !cbor_isa_bytestring(data) ||
	    !cbor_bytestring_is_definite(data) || cbor_get_int(off) != d->up.off ||
	    d->up.off + cbor_bytestring_length(data) != d->up.len)
		return false;
	d->fired_lose_final = true;
	fgw_notice("event: fault, device: %s, what: final chunk lost", d->name);
	return true;
}

/* Returns false when the rest of the packet must not be processed (no response buffer). */
static bool handle_one(struct sim_device *d, const uint8_t *buf, size_t len, smp_alloc_cb_t alloc,
		       smp_emit_cb_t emit, void *user_data, struct smp_result *res)
{
	struct smp_req req;
	struct ctx c = {.dev = d, .req = &req, .res = res};
	const struct handler *h = NULL;
	bool go_on = true;
	int rc, fault;

	if (smp_req_decode(buf, len, &req) < 0)
		return true;
	if (req.hdr.group == GRP_IMG && req.hdr.id == 1)
		res->was_upload = true;
	fault = sim_device_fault_on_request(d, res->was_upload);
	if (fault < 0 || (res->was_upload && lose_final(d, &req)))
		goto out; /* link dropped, device gone, request lost: no answer */
	/* Zephyr's smp_process_request_packet() takes the response buffer before it handles a read
	 * or write; without one the request is not handled at all, and smp_on_err() answers
	 * MGMT_ERR_ENOMEM in the request's own buffer, abandoning the rest of the packet. */
	if ((req.hdr.op == SMP_OP_READ || req.hdr.op == SMP_OP_WRITE) && alloc &&
	    !alloc(d, user_data)) {
		fgw_debug("%s: no free SMP buffer for the response: rc 2, request not handled",
			  d->name);
		emit_rc(d, &req.hdr, MGMT_ERR_ENOMEM, emit, user_data);
		go_on = false;
		goto out;
	}
	if (fault > 0) {
		emit_rc(d, &req.hdr, fault, emit, user_data);
		goto out;
	}
	if (req.hdr.ver > 1) {
		emit_rc(d, &req.hdr, MGMT_ERR_UNSUPPORTED_TOO_NEW, emit, user_data);
		goto out;
	}
	if (req.hdr.op != SMP_OP_READ && req.hdr.op != SMP_OP_WRITE) {
		emit_rc(d, &req.hdr, MGMT_ERR_ENOTSUP, emit, user_data);
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(handlers); i++)
		if (handlers[i].group == req.hdr.group && handlers[i].id == req.hdr.id)
			h = &handlers[i];
	if (!h || !(req.hdr.op == SMP_OP_READ ? h->read : h->write)) {
		emit_rc(d, &req.hdr, MGMT_ERR_ENOTSUP, emit, user_data);
		goto out;
	}
	if (req.err) {
		emit_rc(d, &req.hdr, req.err, emit, user_data);
		goto out;
	}
	c.rsp = new_map();
	if (!c.rsp) {
		emit_rc(d, &req.hdr, MGMT_ERR_ENOMEM, emit, user_data);
		goto out;
	}
	rc = (req.hdr.op == SMP_OP_READ ? h->read : h->write)(&c);
	if (rc) {
		emit_rc(d, &req.hdr, rc, emit, user_data);
	} else if (c.grp_rc) {
		cbor_item_t *m = new_map(), *e = new_map();
		if (req.hdr.ver == 0) {
			put(m, "rc", mk_uint((uint64_t) v1_translate(req.hdr.group, c.grp_rc)));
			cbor_decref(&e);
		} else {
			put(e, "group", mk_uint(req.hdr.group));
			put(e, "rc", mk_uint((uint64_t) c.grp_rc));
			put(m, "err", e);
		}
		put_rsn(d, m);
		emit_rsp(d, &req.hdr, m, emit, user_data);
		cbor_decref(&m);
		res->reset = false;
	} else {
		emit_rsp(d, &req.hdr, c.rsp, emit, user_data);
	}
	cbor_decref(&c.rsp);
out:
	smp_req_done(&req);
	return go_on;
}

void smp_handle(struct sim_device *d, const uint8_t *buf, size_t len, smp_alloc_cb_t alloc,
		smp_emit_cb_t emit, void *user_data, struct smp_result *res)
{
	size_t off = 0;

	memset(res, 0, sizeof(*res));
	/* Several packets may sit back to back in one buffer (UDP); each gets its answer. */
	while (len - off >= SMP_HDR_LEN) {
		struct smp_hdr h;
		size_t plen;

		(void) smp_hdr_decode(buf + off, len - off, &h);
		plen = SMP_HDR_LEN + h.len;
		if (plen > len - off) {
			/* Header promises more than arrived: MGMT_ERR_ECORRUPT. */
			emit_rc(d, &h, MGMT_ERR_ECORRUPT, emit, user_data);
			return;
		}
		if (!handle_one(d, buf + off, plen, alloc, emit, user_data, res))
			return;
		off += plen;
		if (d->state != SIM_DEV_UP)
			return;
	}
}
