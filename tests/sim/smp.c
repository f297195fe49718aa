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

#include "smp-int.h"

cbor_item_t *smp_key(const struct smp_req *r, const char *k)
{
	for (size_t i = 0; i < r->n_keys; i++)
		if (!strcmp(r->keys[i].name, k))
			return r->keys[i].value;
	return NULL;
}

/* Each getter: 1 found, 0 absent, -EINVAL wrong type (the handler answers EINVAL). */
int smp_uint(const struct smp_req *r, const char *k, uint64_t *v)
{
	cbor_item_t *it = smp_key(r, k);
	if (!it)
		return 0;
	if (!cbor_isa_uint(it))
		return -EINVAL;
	*v = cbor_get_int(it);
	return 1;
}

int smp_bool(const struct smp_req *r, const char *k, bool *v)
{
	cbor_item_t *it = smp_key(r, k);
	if (!it)
		return 0;
	if (!cbor_isa_float_ctrl(it) || !cbor_is_bool(it))
		return -EINVAL;
	*v = cbor_get_bool(it);
	return 1;
}

int smp_bstr(const struct smp_req *r, const char *k, const uint8_t **v, size_t *n)
{
	cbor_item_t *it = smp_key(r, k);
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

int smp_tstr(const struct smp_req *r, const char *k, const char **v, size_t *n)
{
	cbor_item_t *it = smp_key(r, k);
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

cbor_item_t *smp_mk_uint(uint64_t v)
{
	if (v <= 0xff)
		return cbor_build_uint8((uint8_t) v);
	if (v <= 0xffff)
		return cbor_build_uint16((uint16_t) v);
	if (v <= 0xffffffffu)
		return cbor_build_uint32((uint32_t) v);
	return cbor_build_uint64(v);
}

bool smp_put(cbor_item_t *map, const char *k, cbor_item_t *v)
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

bool smp_append(cbor_item_t *arr, cbor_item_t *v)
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

cbor_item_t *smp_new_map(void)
{
	return cbor_new_indefinite_map();
}

/* ---- os group ----------------------------------------------------------------------------------
 */

static int os_echo(struct ctx *c)
{
	const char *d;
	size_t n;
	int r = smp_tstr(c->req, "d", &d, &n);

	if (r <= 0)
		return MGMT_ERR_EINVAL;
	return smp_put(c->rsp, "r", cbor_build_stringn(d, n)) ? 0 : MGMT_ERR_ENOMEM;
}

static int os_reset(struct ctx *c)
{
	bool force = false;
	uint64_t mode = 0;

	/* Decode failures of the optional arguments are ignored, as in os_mgmt.c. */
	(void) smp_bool(c->req, "force", &force);
	(void) smp_uint(c->req, "boot_mode", &mode);
	c->res->reset = true;
	return 0;
}

static int os_params(struct ctx *c)
{
	return smp_put(c->rsp, "buf_size", smp_mk_uint(c->dev->cfg.buf_size)) &&
		       smp_put(c->rsp, "buf_count", smp_mk_uint(c->dev->cfg.buf_count))
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
	int r = smp_tstr(c->req, "format", &fmt, &n);

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
	return smp_put(c->rsp, "output", cbor_build_string(out)) ? 0 : MGMT_ERR_ENOMEM;
}

static int os_bootloader(struct ctx *c)
{
	const char *q;
	size_t n;
	int r = smp_tstr(c->req, "query", &q, &n);

	if (!c->dev->cfg.bootloader_info)
		return MGMT_ERR_ENOTSUP; /* command not built in: as for any unknown command */
	if (r < 0)
		return MGMT_ERR_EINVAL;
	if (r == 0)
		return smp_put(c->rsp, "bootloader", cbor_build_string("MCUboot"))
			   ? 0
			   : MGMT_ERR_ENOMEM;
	if (n == 4 && !memcmp(q, "mode", 4)) {
		/* MCUboot enum mcuboot_mode: 2 overwrite-only, 3 swap without scratch (move). */
		int mode = c->dev->cfg.mode == SIM_MODE_OVERWRITE ? 2 : 3;
		if (!smp_put(c->rsp, "mode", smp_mk_uint((uint64_t) mode)))
			return MGMT_ERR_ENOMEM;
		if (c->dev->cfg.no_downgrade && c->dev->cfg.mode == SIM_MODE_OVERWRITE &&
		    !smp_put(c->rsp, "no-downgrade", cbor_build_bool(true)))
			return MGMT_ERR_ENOMEM;
		return 0;
	}
	c->grp_rc = OS_ERR_QUERY_YIELDS_NO_ANSWER;
	return 0;
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
	return smp_put(c->rsp, "app", cbor_build_string(app)) &&
		       smp_put(c->rsp, "net", cbor_build_string(net))
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
	return smp_put(m, "rsn", cbor_build_stringn(d->cfg.rsn, strlen(d->cfg.rsn)));
}

static void emit_rc(struct sim_device *d, const struct smp_hdr *req, int rc, smp_emit_cb_t emit,
		    void *user_data)
{
	cbor_item_t *m = smp_new_map();

	if (m && smp_put(m, "rc", smp_mk_uint((uint64_t) rc)) && put_rsn(d, m))
		emit_rsp(d, req, m, emit, user_data);
	if (m)
		cbor_decref(&m);
}

/* Fault lose_final_chunk: the request that would complete the open upload, as if it had found
 * no buffer on its way in. */
static bool lose_final(struct sim_device *d, const struct smp_req *req)
{
	cbor_item_t *off = smp_key(req, "off"), *data = smp_key(req, "data");

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
	c.rsp = smp_new_map();
	if (!c.rsp) {
		emit_rc(d, &req.hdr, MGMT_ERR_ENOMEM, emit, user_data);
		goto out;
	}
	rc = (req.hdr.op == SMP_OP_READ ? h->read : h->write)(&c);
	if (rc) {
		emit_rc(d, &req.hdr, rc, emit, user_data);
	} else if (c.grp_rc) {
		cbor_item_t *m = smp_new_map(), *e = smp_new_map();
		if (req.hdr.ver == 0) {
			smp_put(m, "rc",
				smp_mk_uint((uint64_t) v1_translate(req.hdr.group, c.grp_rc)));
			cbor_decref(&e);
		} else {
			smp_put(e, "group", smp_mk_uint(req.hdr.group));
			smp_put(e, "rc", smp_mk_uint((uint64_t) c.grp_rc));
			smp_put(m, "err", e);
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
