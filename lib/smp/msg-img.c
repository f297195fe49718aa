/* Image group (1) requests and responses: state, upload, erase, slot info (§4). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smp-private.h"

FGW_EXPORT int fgw_smp_req_img_state(struct fgw_smp_req *ret)
{
	_cleanup_cbor_ cbor_item_t *map = cbor_new_definite_map(0);

	if (!map)
		return -ENOMEM;
	return smp_req_finish(map, FGW_SMP_OP_READ, FGW_SMP_GROUP_IMAGE, FGW_SMP_IMG_STATE, ret);
}

FGW_EXPORT int fgw_smp_req_img_state_write(const uint8_t *hash, bool confirm,
					   struct fgw_smp_req *ret)
{
	_cleanup_cbor_ cbor_item_t *map = NULL;

	/* A test needs a hash; confirm without one confirms the running image. */
	if (!hash && !confirm)
		return -EINVAL;
	map = cbor_new_definite_map(hash ? 2 : 1);
	if (!map)
		return -ENOMEM;
	/* Zephyr decodes hash as a 32-byte byte string (its doc says text). */
	if (hash && !smp_cbor_put(map, "hash", cbor_build_bytestring(hash, FGW_SMP_SHA_SIZE)))
		return -ENOMEM;
	if (!smp_cbor_put(map, "confirm", cbor_build_bool(confirm)))
		return -ENOMEM;
	return smp_req_finish(map, FGW_SMP_OP_WRITE, FGW_SMP_GROUP_IMAGE, FGW_SMP_IMG_STATE, ret);
}

FGW_EXPORT int fgw_smp_req_img_erase(int slot, struct fgw_smp_req *ret)
{
	_cleanup_cbor_ cbor_item_t *map = cbor_new_definite_map(slot >= 0 ? 1 : 0);

	if (!map)
		return -ENOMEM;
	if (slot >= 0 && !smp_cbor_put(map, "slot", smp_cbor_uint((uint64_t) slot)))
		return -ENOMEM;
	return smp_req_finish(map, FGW_SMP_OP_WRITE, FGW_SMP_GROUP_IMAGE, FGW_SMP_IMG_ERASE, ret);
}

FGW_EXPORT int fgw_smp_req_img_slot_info(struct fgw_smp_req *ret)
{
	_cleanup_cbor_ cbor_item_t *map = cbor_new_definite_map(0);

	if (!map)
		return -ENOMEM;
	return smp_req_finish(map, FGW_SMP_OP_READ, FGW_SMP_GROUP_IMAGE, FGW_SMP_IMG_SLOT_INFO,
			      ret);
}

/* ---- upload ---- */

static bool chunk_is_first(const struct fgw_smp_upload_chunk *c)
{
	return c->off == 0;
}

/* Appends a definite text string @key (its head, then its bytes); 0 if it does not fit. */
static size_t put_key(const char *key, uint8_t *buf, size_t size)
{
	size_t n = strlen(key), h = cbor_encode_string_start(n, buf, size);

	if (h == 0 || size - h < n)
		return 0;
	memcpy(buf + h, key, n);
	return h + n;
}

/* Each writer returns the bytes it wrote, 0 when out of room: stop there. */
#define PUT(o, size, expr)                                                                         \
	do {                                                                                       \
		size_t n_ = (expr);                                                                \
		if (n_ == 0)                                                                       \
			return -EMSGSIZE;                                                          \
		(o) += n_;                                                                         \
	} while (0)

/* The map up to the data byte string's head, into @buf from the body's first byte. */
static int upload_prefix(const struct fgw_smp_upload_chunk *c, uint8_t *buf, size_t size,
			 size_t *ret_len)
{
	bool first = chunk_is_first(c);
	size_t n = 2, o = 0;

	if (first)
		n += 1 + (c->sha ? 1 : 0) + (c->image > 0 ? 1 : 0) + (c->upgrade ? 1 : 0);
	PUT(o, size, cbor_encode_map_start(n, buf + o, size - o));
	/* Zephyr's default image is 0: like Nordic's libraries, send "image" only when > 0. */
	if (first && c->image > 0) {
		PUT(o, size, put_key("image", buf + o, size - o));
		PUT(o, size, cbor_encode_uint(c->image, buf + o, size - o));
	}
	if (first) {
		PUT(o, size, put_key("len", buf + o, size - o));
		PUT(o, size, cbor_encode_uint(c->total, buf + o, size - o));
	}
	PUT(o, size, put_key("off", buf + o, size - o));
	PUT(o, size, cbor_encode_uint(c->off, buf + o, size - o));
	if (first && c->sha) {
		PUT(o, size, put_key("sha", buf + o, size - o));
		PUT(o, size, cbor_encode_bytestring_start(FGW_SMP_SHA_SIZE, buf + o, size - o));
		if (size - o < FGW_SMP_SHA_SIZE)
			return -EMSGSIZE;
		memcpy(buf + o, c->sha, FGW_SMP_SHA_SIZE);
		o += FGW_SMP_SHA_SIZE;
	}
	if (first && c->upgrade) {
		PUT(o, size, put_key("upgrade", buf + o, size - o));
		PUT(o, size, cbor_encode_bool(true, buf + o, size - o));
	}
	PUT(o, size, put_key("data", buf + o, size - o));
	PUT(o, size, cbor_encode_bytestring_start(c->data_len, buf + o, size - o));
	*ret_len = o;
	return 0;
}

FGW_EXPORT int fgw_smp_upload_encode(const struct fgw_smp_upload_chunk *c, uint8_t *buf,
				     size_t size, size_t *ret_len)
{
	struct fgw_smp_hdr h = {
	    .op = FGW_SMP_OP_WRITE, .group = FGW_SMP_GROUP_IMAGE, .id = FGW_SMP_IMG_UPLOAD};
	size_t body;
	int r;

	if (!c || !buf || !ret_len || (!c->data && c->data_len))
		return -EINVAL;
	if (size < FGW_SMP_HDR_SIZE)
		return -EMSGSIZE;
	r = upload_prefix(c, buf + FGW_SMP_HDR_SIZE, size - FGW_SMP_HDR_SIZE, &body);
	if (r < 0)
		return r;
	if (size - FGW_SMP_HDR_SIZE - body < c->data_len || body + c->data_len > UINT16_MAX)
		return -EMSGSIZE;
	if (c->data_len)
		memcpy(buf + FGW_SMP_HDR_SIZE + body, c->data, c->data_len);
	h.len = (uint16_t) (body + c->data_len);
	r = fgw_smp_hdr_encode(&h, buf);
	if (r < 0)
		return r;
	*ret_len = FGW_SMP_HDR_SIZE + body + c->data_len;
	return 0;
}

/* Bytes of a CBOR head (major type + argument) for argument @v. */
static size_t head_size(uint64_t v)
{
	if (v <= 23)
		return 1;
	if (v <= UINT8_MAX)
		return 2;
	if (v <= UINT16_MAX)
		return 3;
	if (v <= UINT32_MAX)
		return 5;
	return 9;
}

/* A text key of length n: head + bytes. */
#define KEY(s) (head_size(sizeof(s) - 1) + sizeof(s) - 1)

static size_t fixed_overhead(const struct fgw_smp_upload_chunk *c)
{
	size_t n = 2, sz;

	if (chunk_is_first(c))
		n += 1 + (c->sha ? 1 : 0) + (c->image > 0 ? 1 : 0) + (c->upgrade ? 1 : 0);
	sz = FGW_SMP_HDR_SIZE + head_size(n);
	sz += KEY("off") + head_size(c->off);
	sz += KEY("data");
	if (chunk_is_first(c)) {
		sz += KEY("len") + head_size(c->total);
		if (c->sha)
			sz += KEY("sha") + head_size(FGW_SMP_SHA_SIZE) + FGW_SMP_SHA_SIZE;
		if (c->image > 0)
			sz += KEY("image") + head_size(c->image);
		if (c->upgrade)
			sz += KEY("upgrade") + 1; /* true is one byte */
	}
	return sz;
}

FGW_EXPORT size_t fgw_smp_upload_overhead(const struct fgw_smp_upload_chunk *c, size_t data_len)
{
	return fixed_overhead(c) + head_size(data_len);
}

FGW_EXPORT size_t fgw_smp_upload_max_data(const struct fgw_smp_upload_chunk *c, size_t max_packet)
{
	size_t fixed = fixed_overhead(c), best = 0;
	static const size_t heads[] = {1, 2, 3, 5};

	/* Try each size of the byte string's length prefix; the largest consistent wins. */
	for (size_t i = 0; i < ARRAY_SIZE(heads); i++) {
		size_t d;

		if (max_packet < fixed + heads[i])
			break;
		d = max_packet - fixed - heads[i];
		if (head_size(d) > heads[i]) {
			/* Too long for this prefix: the largest length this prefix can carry. */
			d = heads[i] == 1   ? 23
			    : heads[i] == 2 ? UINT8_MAX
			    : heads[i] == 3 ? UINT16_MAX
					    : UINT32_MAX;
		}
		if (d > best)
			best = d;
	}
	return best;
}

/* ---- responses ---- */

static int get_flag(const cbor_item_t *m, const char *key, bool *ret)
{
	cbor_item_t *v = smp_cbor_get(m, key);

	/* FRUGAL_LIST firmware omits false flags. */
	if (!v) {
		*ret = false;
		return 0;
	}
	return smp_cbor_get_bool(v, ret);
}

static int img_slot_from_map(const cbor_item_t *m, struct fgw_smp_img_slot *s)
{
	static const char *const flags[] = {"bootable", "pending", "confirmed", "active",
					    "permanent"};
	bool *dst[] = {&s->bootable, &s->pending, &s->confirmed, &s->active, &s->permanent};
	cbor_item_t *v;
	uint64_t u;
	size_t n;
	int r;

	if (!cbor_isa_map(m))
		return -EBADMSG;
	if ((v = smp_cbor_get(m, "image"))) {
		r = smp_cbor_get_uint(v, UINT32_MAX, &u);
		if (r < 0)
			return r;
		s->image = (uint32_t) u;
	}
	v = smp_cbor_get(m, "slot");
	if (!v)
		return -ENODATA;
	r = smp_cbor_get_uint(v, UINT32_MAX, &u);
	if (r < 0)
		return r;
	s->slot = (uint32_t) u;
	if ((v = smp_cbor_get(m, "version"))) {
		r = smp_cbor_get_text(v, s->version, sizeof(s->version));
		if (r == -E2BIG)
			r = -EBADMSG;
		if (r < 0)
			return r;
	}
	if ((v = smp_cbor_get(m, "hash"))) {
		r = smp_cbor_get_bytes(v, s->hash, sizeof(s->hash), &n);
		if (r == -E2BIG || (r == 0 && n != FGW_SMP_SHA_SIZE))
			r = -EBADMSG;
		if (r < 0)
			return r;
		s->has_hash = true;
	}
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
		r = get_flag(m, flags[i], dst[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

FGW_EXPORT int fgw_smp_img_state_decode(const uint8_t *payload, size_t len,
					struct fgw_smp_img_state *ret)
{
	_cleanup_cbor_ cbor_item_t *root = NULL;
	_cleanup_free_ struct fgw_smp_img_state *st = NULL;
	cbor_item_t *images, *v;
	size_t n;
	int r;

	r = smp_cbor_load_array(payload, len, "images", FGW_SMP_MAX_IMG_SLOTS, &root, &images);
	if (r < 0)
		return r;
	n = cbor_array_size(images);
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		cbor_item_t *m = cbor_array_handle(images)[i];

		r = img_slot_from_map(m, &st->slots[i]);
		if (r < 0)
			return r;
	}
	st->n_slots = n;
	if ((v = smp_cbor_get(root, "splitStatus"))) {
		r = smp_cbor_get_int(v, &st->split_status);
		if (r < 0)
			return r;
		st->has_split_status = true;
	}
	*ret = *st;
	return 0;
}

FGW_EXPORT const struct fgw_smp_img_slot *fgw_smp_img_state_find(const struct fgw_smp_img_state *st,
								 uint32_t image, uint32_t slot)
{
	for (size_t i = 0; i < st->n_slots; i++)
		if (st->slots[i].image == image && st->slots[i].slot == slot)
			return &st->slots[i];
	return NULL;
}

FGW_EXPORT int fgw_smp_slot_info_decode(const uint8_t *payload, size_t len,
					struct fgw_smp_slot_info *ret)
{
	_cleanup_cbor_ cbor_item_t *root = NULL;
	struct fgw_smp_slot_info si = {0};
	cbor_item_t *images, *v;
	uint64_t u;
	int r;

	r = smp_cbor_load_array(payload, len, "images", FGW_SMP_MAX_SLOT_INFO_IMAGES, &root,
				&images);
	if (r < 0)
		return r;
	si.n_images = cbor_array_size(images);
	for (size_t i = 0; i < si.n_images; i++) {
		cbor_item_t *m = cbor_array_handle(images)[i], *slots;

		if (!cbor_isa_map(m))
			return -EBADMSG;
		if (!(v = smp_cbor_get(m, "image")))
			return -ENODATA;
		r = smp_cbor_get_uint(v, UINT32_MAX, &u);
		if (r < 0)
			return r;
		si.images[i].image = (uint32_t) u;
		if ((v = smp_cbor_get(m, "max_image_size"))) {
			r = smp_cbor_get_uint(v, UINT64_MAX, &si.images[i].max_image_size);
			if (r < 0)
				return r;
			si.images[i].has_max_image_size = true;
		}
		slots = smp_cbor_get(m, "slots");
		if (!slots)
			return -ENODATA;
		if (!cbor_isa_array(slots))
			return -EBADMSG;
		if (cbor_array_size(slots) > FGW_SMP_MAX_SLOT_INFO_SLOTS)
			return -E2BIG;
		si.images[i].n_slots = cbor_array_size(slots);
		for (size_t j = 0; j < si.images[i].n_slots; j++) {
			cbor_item_t *s = cbor_array_handle(slots)[j];

			if (!cbor_isa_map(s))
				return -EBADMSG;
			if (!(v = smp_cbor_get(s, "slot")))
				return -ENODATA;
			r = smp_cbor_get_uint(v, UINT32_MAX, &u);
			if (r < 0)
				return r;
			si.images[i].slots[j].slot = (uint32_t) u;
			if (!(v = smp_cbor_get(s, "size")))
				return -ENODATA;
			r = smp_cbor_get_uint(v, UINT64_MAX, &si.images[i].slots[j].size);
			if (r < 0)
				return r;
			if ((v = smp_cbor_get(s, "upload_image_id"))) {
				r = smp_cbor_get_uint(v, UINT32_MAX, &u);
				if (r < 0)
					return r;
				si.images[i].slots[j].upload_image_id = (uint32_t) u;
				si.images[i].slots[j].has_upload_image_id = true;
			}
		}
	}
	*ret = si;
	return 0;
}
