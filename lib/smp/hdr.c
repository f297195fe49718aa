/* The 8-byte SMP header (protocol-notes §1.1): big-endian, version in bits 4..3 of byte 0. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smp-private.h"

FGW_EXPORT int fgw_smp_hdr_encode(const struct fgw_smp_hdr *h, uint8_t out[FGW_SMP_HDR_SIZE])
{
	if (h->op > 7 || h->version > 3)
		return -EINVAL;
	out[0] = (uint8_t) ((h->version << 3) | h->op);
	out[1] = h->flags;
	out[2] = (uint8_t) (h->len >> 8);
	out[3] = (uint8_t) h->len;
	out[4] = (uint8_t) (h->group >> 8);
	out[5] = (uint8_t) h->group;
	out[6] = h->seq;
	out[7] = h->id;
	return 0;
}

FGW_EXPORT int fgw_smp_hdr_decode(const uint8_t *buf, size_t len, struct fgw_smp_hdr *ret)
{
	if (!buf || len < FGW_SMP_HDR_SIZE)
		return -EBADMSG;
	/* Res (bits 7..5) must be zero: anything else is not an SMP header we can trust. */
	if (buf[0] & 0xe0)
		return -EBADMSG;
	*ret = (struct fgw_smp_hdr){
	    .op = buf[0] & 0x07,
	    .version = (buf[0] >> 3) & 0x03,
	    .flags = buf[1],
	    .len = (uint16_t) ((buf[2] << 8) | buf[3]),
	    .group = (uint16_t) ((buf[4] << 8) | buf[5]),
	    .seq = buf[6],
	    .id = buf[7],
	};
	return 0;
}

FGW_EXPORT const char *fgw_smp_op_to_string(int op)
{
	static const char *const names[] = {"read", "read-rsp", "write", "write-rsp"};

	if (op < 0 || op >= (int) ARRAY_SIZE(names))
		return "invalid";
	return names[op];
}

FGW_EXPORT const char *fgw_smp_group_to_string(int group)
{
	switch (group) {
	case FGW_SMP_GROUP_OS:
		return "os";
	case FGW_SMP_GROUP_IMAGE:
		return "image";
	case FGW_SMP_GROUP_STAT:
		return "stat";
	case FGW_SMP_GROUP_SETTINGS:
		return "settings";
	case FGW_SMP_GROUP_FS:
		return "fs";
	case FGW_SMP_GROUP_SHELL:
		return "shell";
	case FGW_SMP_GROUP_ENUM:
		return "enum";
	case FGW_SMP_GROUP_ZBASIC:
		return "zephyr-basic";
	}
	return group >= 64 ? "user" : "unknown";
}

FGW_EXPORT void fgw_smp_req_done(struct fgw_smp_req *r)
{
	if (!r)
		return;
	free(r->payload);
	r->payload = NULL;
	r->len = 0;
}

FGW_EXPORT int fgw_smp_req_pack(const struct fgw_smp_req *r, uint8_t version, uint8_t seq,
				uint8_t *buf, size_t size, size_t *ret_len)
{
	struct fgw_smp_hdr h = {
	    .op = r->op, .version = version, .group = r->group, .seq = seq, .id = r->id};
	int ret;

	if (r->len > UINT16_MAX || size < FGW_SMP_HDR_SIZE || size - FGW_SMP_HDR_SIZE < r->len)
		return -EMSGSIZE;
	h.len = (uint16_t) r->len;
	ret = fgw_smp_hdr_encode(&h, buf);
	if (ret < 0)
		return ret;
	if (r->len)
		memcpy(buf + FGW_SMP_HDR_SIZE, r->payload, r->len);
	*ret_len = FGW_SMP_HDR_SIZE + r->len;
	return 0;
}

FGW_EXPORT void fgw_smp_hdr_stamp(uint8_t *pkt, uint8_t version, uint8_t seq)
{
	pkt[0] = (uint8_t) ((pkt[0] & 0x07) | ((version & 0x03) << 3));
	pkt[6] = seq;
}
