/*
 * Reassembly of SMP packets from transport frames (protocol-notes §1.5): a BLE response may
 * span several notifications (each at most ATT_MTU-3 bytes), a datagram or a buffered stream may
 * carry several packets back to back. The header's Data Length says where a packet ends.
 *
 * Whole packets inside the current frame are handed out in place, without a copy; only a
 * packet that straddles frames is gathered in our buffer, which is max_packet bytes and never
 * grows: the cap is set at birth (style.md §5).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smp-private.h"

struct fgw_smp_reasm {
	size_t max_packet;
	uint8_t *buf; /* a packet gathered across frames */
	size_t have;  /* bytes in buf */
	const uint8_t *frame;
	size_t frame_len, frame_pos;
};

FGW_EXPORT int fgw_smp_reasm_new(size_t max_packet, struct fgw_smp_reasm **ret)
{
	struct fgw_smp_reasm *r;

	if (max_packet < FGW_SMP_HDR_SIZE)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->buf = malloc(max_packet);
	if (!r->buf) {
		free(r);
		return -ENOMEM;
	}
	r->max_packet = max_packet;
	*ret = r;
	return 0;
}

FGW_EXPORT struct fgw_smp_reasm *fgw_smp_reasm_free(struct fgw_smp_reasm *r)
{
	if (r) {
		free(r->buf);
		free(r);
	}
	return NULL;
}

FGW_EXPORT void fgw_smp_reasm_reset(struct fgw_smp_reasm *r)
{
	r->have = 0;
	r->frame = NULL;
	r->frame_len = r->frame_pos = 0;
}

FGW_EXPORT void fgw_smp_reasm_feed(struct fgw_smp_reasm *r, const uint8_t *frame, size_t len)
{
	r->frame = frame;
	r->frame_len = frame ? len : 0;
	r->frame_pos = 0;
}

/* Fails the rest of the frame and any partial packet. */
static int reasm_fail(struct fgw_smp_reasm *r, int err)
{
	fgw_smp_reasm_reset(r);
	return err;
}

/* Checks a header and returns the whole packet's size, or a negative errno. */
static int packet_size(const struct fgw_smp_reasm *r, const uint8_t *hdr, size_t *ret)
{
	struct fgw_smp_hdr h;
	int e;

	e = fgw_smp_hdr_decode(hdr, FGW_SMP_HDR_SIZE, &h);
	if (e < 0)
		return e;
	if (FGW_SMP_HDR_SIZE + (size_t) h.len > r->max_packet)
		return -EMSGSIZE;
	*ret = FGW_SMP_HDR_SIZE + (size_t) h.len;
	return 0;
}

FGW_EXPORT int fgw_smp_reasm_next(struct fgw_smp_reasm *r, struct fgw_smp_hdr *ret_hdr,
				  const uint8_t **ret_payload)
{
	const uint8_t *in = r->frame ? r->frame + r->frame_pos : NULL;
	size_t avail = r->frame_len - r->frame_pos, need;
	int e;

	if (r->have > 0) {
		/* Complete the header first, then the packet it announces. */
		if (r->have < FGW_SMP_HDR_SIZE) {
			size_t n = FGW_MIN(avail, FGW_SMP_HDR_SIZE - r->have);

			if (n)
				memcpy(r->buf + r->have, in, n);
			r->have += n, r->frame_pos += n, in += n, avail -= n;
			if (r->have < FGW_SMP_HDR_SIZE)
				return 0;
		}
		e = packet_size(r, r->buf, &need);
		if (e < 0)
			return reasm_fail(r, e);
		{
			size_t n = FGW_MIN(avail, need - r->have);

			if (n)
				memcpy(r->buf + r->have, in, n);
			r->have += n, r->frame_pos += n;
		}
		if (r->have < need)
			return 0;
		r->have = 0;
		(void) fgw_smp_hdr_decode(r->buf, FGW_SMP_HDR_SIZE, ret_hdr);
		*ret_payload = r->buf + FGW_SMP_HDR_SIZE;
		return 1;
	}
	if (avail == 0)
		return 0;
	if (avail >= FGW_SMP_HDR_SIZE) {
		e = packet_size(r, in, &need);
		if (e < 0)
			return reasm_fail(r, e);
		if (avail >= need) {
			/* Whole packet inside this frame: hand it out in place. */
			(void) fgw_smp_hdr_decode(in, FGW_SMP_HDR_SIZE, ret_hdr);
			*ret_payload = in + FGW_SMP_HDR_SIZE;
			r->frame_pos += need;
			return 1;
		}
	}
	/* The frame ends inside a packet: keep its start for the next frame. */
	memcpy(r->buf, in, avail);
	r->have = avail;
	r->frame_pos += avail;
	return 0;
}
