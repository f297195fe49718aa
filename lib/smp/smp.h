/*
 * smp: the Simple Management Protocol (mcumgr) as a client speaks it, in two layers: this
 * header is the codec, smp-client.h the client.
 *
 * The codec (target fgw_smp_codec) is pure: bytes in, structs out, no loop and no I/O. It
 * encodes and decodes the 8-byte header (SMP v1 and v2), builds the CBOR request bodies of the
 * OS group (echo, reset, mcumgr params, os/app info, bootloader info) and the image group
 * (state read/write, erase, slot info), writes an upload request whole into the caller's
 * packet buffer (the image bytes copied once, from the image into the packet), reads every
 * answer's status and an upload answer's offset in one pass, decodes other responses into
 * structs, names device errors of both forms (v1 `rc`, v2 `err {group, rc}`) and reassembles
 * packets that a transport delivered split over several frames or packed several to a frame.
 *
 * The client (target fgw_smp, smp-client.h) puts the codec on a transport and a libuv loop:
 * sequence numbers, a table of requests in flight, one timer per request, the SMP version in
 * use.
 *
 * What the device answered (rc, err, rsn) is data in struct fgw_smp_status; only our own or
 * the link's failures are negative errno values.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define FGW_SMP_HDR_SIZE 8
#define FGW_SMP_SHA_SIZE 32
/* Zephyr's default SMP UDP port. */
#define FGW_SMP_UDP_PORT 1337

enum fgw_smp_op {
	FGW_SMP_OP_READ = 0,
	FGW_SMP_OP_READ_RSP = 1,
	FGW_SMP_OP_WRITE = 2,
	FGW_SMP_OP_WRITE_RSP = 3,
};

enum fgw_smp_version {
	FGW_SMP_V1 = 0, /* "original" protocol: errors only as rc */
	FGW_SMP_V2 = 1, /* errors of groups as err {group, rc} */
};

enum fgw_smp_group {
	FGW_SMP_GROUP_OS = 0,
	FGW_SMP_GROUP_IMAGE = 1,
	FGW_SMP_GROUP_STAT = 2,
	FGW_SMP_GROUP_SETTINGS = 3,
	FGW_SMP_GROUP_FS = 8,
	FGW_SMP_GROUP_SHELL = 9,
	FGW_SMP_GROUP_ENUM = 10,
	FGW_SMP_GROUP_ZBASIC = 63,
};

enum fgw_smp_os_cmd {
	FGW_SMP_OS_ECHO = 0,
	FGW_SMP_OS_RESET = 5,
	FGW_SMP_OS_PARAMS = 6,
	FGW_SMP_OS_INFO = 7,
	FGW_SMP_OS_BOOTLOADER_INFO = 8,
};

enum fgw_smp_img_cmd {
	FGW_SMP_IMG_STATE = 0,
	FGW_SMP_IMG_UPLOAD = 1,
	FGW_SMP_IMG_ERASE = 5,
	FGW_SMP_IMG_SLOT_INFO = 6,
};

/* mcumgr_err_t: the v1 `rc` (and SMP-level errors in v2). */
enum fgw_smp_rc {
	FGW_SMP_RC_EOK = 0,
	FGW_SMP_RC_EUNKNOWN = 1,
	FGW_SMP_RC_ENOMEM = 2,
	FGW_SMP_RC_EINVAL = 3,
	FGW_SMP_RC_ETIMEOUT = 4,
	FGW_SMP_RC_ENOENT = 5,
	FGW_SMP_RC_EBADSTATE = 6,
	FGW_SMP_RC_EMSGSIZE = 7,
	FGW_SMP_RC_ENOTSUP = 8,
	FGW_SMP_RC_ECORRUPT = 9,
	FGW_SMP_RC_EBUSY = 10,
	FGW_SMP_RC_EACCESSDENIED = 11,
	FGW_SMP_RC_UNSUPPORTED_TOO_OLD = 12,
	FGW_SMP_RC_UNSUPPORTED_TOO_NEW = 13,
	FGW_SMP_RC_EPERUSER = 256,
};

/* A few image-group (group 1) v2 codes the upload engine and tools act on. */
enum fgw_smp_img_err {
	FGW_SMP_IMG_ERR_NO_FREE_SLOT = 9,
	FGW_SMP_IMG_ERR_IMAGE_ALREADY_PENDING = 28,
};

/* ---------------------------------------------------------------------------------------- */
/* Header */

struct fgw_smp_hdr {
	uint8_t op;	 /* enum fgw_smp_op */
	uint8_t version; /* enum fgw_smp_version (0..3 on the wire) */
	uint8_t flags;
	uint16_t len; /* payload bytes after the header */
	uint16_t group;
	uint8_t seq;
	uint8_t id;
};

/* Writes the 8 header bytes. -EINVAL if op > 7 or version > 3. */
int fgw_smp_hdr_encode(const struct fgw_smp_hdr *h, uint8_t out[FGW_SMP_HDR_SIZE]);
/* Reads a header. -EBADMSG if @len < 8 or the reserved bits are set. */
int fgw_smp_hdr_decode(const uint8_t *buf, size_t len, struct fgw_smp_hdr *ret);
const char *fgw_smp_op_to_string(int op);
const char *fgw_smp_group_to_string(int group);

/* ---------------------------------------------------------------------------------------- */
/* Device errors */

struct fgw_smp_status {
	int64_t rc;	    /* v1 `rc`; 0 when absent */
	bool has_rc;	    /* `rc` was present (0 with legacy-rc firmware) */
	bool has_err;	    /* v2 `err` map present */
	uint16_t err_group; /* v2 err.group */
	uint16_t err_rc;    /* v2 err.rc, the group's own enum */
	char rsn[64];	    /* optional `rsn` (verbose error responses), "" if none */
};

/* True when the response is a success (no rc/err, or both zero). */
bool fgw_smp_status_ok(const struct fgw_smp_status *st);
/* v1 rc names ("EBUSY"); "UNKNOWN_RC" for others. */
const char *fgw_smp_rc_to_string(int64_t rc);
/* v2 group error names ("NO_FREE_SLOT") for groups 0, 1 and 63; "UNKNOWN_RC" for others. */
const char *fgw_smp_group_rc_to_string(uint16_t group, uint16_t rc);
/*
 * One line for people: "ok", "rc 10 EBUSY (device busy, retry later)",
 * "image error 9 NO_FREE_SLOT (no free slot ...): rsn". Returns @buf.
 */
const char *fgw_smp_status_format(const struct fgw_smp_status *st, char *buf, size_t size);
/* The device said "busy, try again" (v1 rc 10). */
bool fgw_smp_status_is_busy(const struct fgw_smp_status *st);

/* ---------------------------------------------------------------------------------------- */
/* Requests: a CBOR body plus where it goes. The client adds the header (seq, version). */

struct fgw_smp_req {
	uint8_t op; /* FGW_SMP_OP_READ or FGW_SMP_OP_WRITE */
	uint16_t group;
	uint8_t id;
	uint8_t *payload; /* owned CBOR map */
	size_t len;
};

void fgw_smp_req_done(struct fgw_smp_req *r);
/*
 * Writes header + payload into @buf of @size (for a transport); @ret_len gets its size.
 * -EMSGSIZE if it does not fit.
 */
int fgw_smp_req_pack(const struct fgw_smp_req *r, uint8_t version, uint8_t seq, uint8_t *buf,
		     size_t size, size_t *ret_len);
/* Rewrites the version and seq of a packed packet's header in place. */
void fgw_smp_hdr_stamp(uint8_t *pkt, uint8_t version, uint8_t seq);

/* os echo {"d": text} */
int fgw_smp_req_echo(const char *text, struct fgw_smp_req *ret);
/* os reset {} or {"force": true} */
int fgw_smp_req_reset(bool force, struct fgw_smp_req *ret);
/* os mcumgr params {} (READ) */
int fgw_smp_req_params(struct fgw_smp_req *ret);
/* os info {"format": fmt} (READ); NULL fmt sends {} (device default "s"). */
int fgw_smp_req_os_info(const char *format, struct fgw_smp_req *ret);
/* bootloader info {} or {"query": query} (READ), e.g. query "mode". */
int fgw_smp_req_bootloader_info(const char *query, struct fgw_smp_req *ret);
/* image state read {} (READ) */
int fgw_smp_req_img_state(struct fgw_smp_req *ret);
/* image state write {"hash": h, "confirm": b}; NULL hash only with confirm (running image). */
int fgw_smp_req_img_state_write(const uint8_t *hash, bool confirm, struct fgw_smp_req *ret);
/* image erase {} or {"slot": n}; slot < 0 = the device's default slot. */
int fgw_smp_req_img_erase(int slot, struct fgw_smp_req *ret);
/* image slot info {} (READ) */
int fgw_smp_req_img_slot_info(struct fgw_smp_req *ret);

/*
 * One upload chunk. When off == 0 it is a first chunk and also carries len, sha and (when
 * image > 0) image; later chunks carry only off and data. Map order: image, len, off, sha, data.
 */
struct fgw_smp_upload_chunk {
	uint32_t image;
	uint64_t total; /* "len": whole file size, sent with off == 0 */
	uint64_t off;
	const uint8_t *sha; /* FGW_SMP_SHA_SIZE bytes, sent with off == 0; NULL = none */
	const uint8_t *data;
	size_t data_len;
	bool upgrade; /* "upgrade": true with off == 0: the device refuses a version not above
		       * the running one (Zephyr compares with the running app image) */
};
/*
 * Writes one whole upload request into @buf of @size, with no intermediate copy: the 8-byte
 * header (version and seq 0: the client stamps its own, fgw_smp_hdr_stamp()), the CBOR map up
 * to the head of the data byte string, written with libcbor's encoding functions, then the
 * @c->data bytes themselves, the only copy of the image on the way from the mapped file to
 * the link. 0 with *@ret_len the packet's length; -EMSGSIZE if it does not fit @size or a
 * 16-bit length, -EINVAL for data_len without data.
 */
int fgw_smp_upload_encode(const struct fgw_smp_upload_chunk *c, uint8_t *buf, size_t size,
			  size_t *ret_len);
/*
 * Bytes of header + CBOR an upload request with @c's fields takes besides the data itself,
 * for a chunk of @data_len bytes (the byte string's length prefix grows with it).
 */
size_t fgw_smp_upload_overhead(const struct fgw_smp_upload_chunk *c, size_t data_len);
/*
 * The largest data length whose whole upload packet (header included) fits @max_packet, for a
 * chunk at @c->off (other fields of @c as they will be sent; data/data_len ignored). 0 if not
 * even one byte fits.
 */
size_t fgw_smp_upload_max_data(const struct fgw_smp_upload_chunk *c, size_t max_packet);

/* ---------------------------------------------------------------------------------------- */
/* Response bodies. Decoders ignore rc/err (see fgw_smp_rsp_decode) and unknown keys;
 * they fail with -EBADMSG on malformed CBOR or wrong types, -ENODATA on a missing mandatory
 * field, -E2BIG beyond the fixed limits below. @ret is written only on success. */

struct fgw_smp_params {
	uint32_t buf_size; /* largest SMP packet incl. header the device takes */
	uint32_t buf_count;
};
int fgw_smp_params_decode(const uint8_t *payload, size_t len, struct fgw_smp_params *ret);

/* Echo {"r": text} and os info {"output": text}: *ret is a new NUL-terminated string. */
int fgw_smp_echo_decode(const uint8_t *payload, size_t len, char **ret);
int fgw_smp_os_info_decode(const uint8_t *payload, size_t len, char **ret);

/* enum mcuboot_mode as bootloader info reports it */
enum fgw_mcuboot_mode {
	FGW_MCUBOOT_MODE_UNKNOWN = -1,
	FGW_MCUBOOT_MODE_SINGLE_APP = 0,
	FGW_MCUBOOT_MODE_SWAP_USING_SCRATCH = 1,
	FGW_MCUBOOT_MODE_OVERWRITE_ONLY = 2,
	FGW_MCUBOOT_MODE_SWAP_WITHOUT_SCRATCH = 3,
	FGW_MCUBOOT_MODE_DIRECT_XIP = 4,
	FGW_MCUBOOT_MODE_DIRECT_XIP_WITH_REVERT = 5,
	FGW_MCUBOOT_MODE_RAM_LOAD = 6,
	FGW_MCUBOOT_MODE_FIRMWARE_LOADER = 7,
	FGW_MCUBOOT_MODE_SINGLE_SLOT_RAM_LOAD = 8,
	FGW_MCUBOOT_MODE_SWAP_USING_OFFSET = 9,
};
const char *fgw_mcuboot_mode_to_string(int mode);

struct fgw_smp_bootloader_info {
	char bootloader[32]; /* "MCUboot" for {}; "" when absent */
	bool has_mode;
	int mode; /* enum fgw_mcuboot_mode */
	bool no_downgrade;
};
int fgw_smp_bootloader_info_decode(const uint8_t *payload, size_t len,
				   struct fgw_smp_bootloader_info *ret);

#define FGW_SMP_MAX_IMG_SLOTS 16
struct fgw_smp_img_slot {
	uint32_t image; /* 0 when the device omits it (single image) */
	uint32_t slot;
	char version[48];
	bool has_hash;
	uint8_t hash[FGW_SMP_SHA_SIZE]; /* MCUboot SHA256 TLV, not the file's SHA-256 */
	bool bootable, pending, confirmed, active, permanent;
};
struct fgw_smp_img_state {
	size_t n_slots;
	struct fgw_smp_img_slot slots[FGW_SMP_MAX_IMG_SLOTS];
	bool has_split_status;
	int64_t split_status;
};
int fgw_smp_img_state_decode(const uint8_t *payload, size_t len, struct fgw_smp_img_state *ret);
/* Borrowed pointer to the entry for @image/@slot, or NULL. */
const struct fgw_smp_img_slot *fgw_smp_img_state_find(const struct fgw_smp_img_state *st,
						      uint32_t image, uint32_t slot);

struct fgw_smp_upload_rsp {
	bool has_off;
	uint64_t off; /* next offset the device expects */
	bool has_match;
	bool match; /* final chunk with image check on */
};
/*
 * Reads an answer once for everything the client and the upload engine act on: rc/err/rsn
 * into @st and, for an image upload answer, off/match into @up (either may be NULL; unknown
 * keys are ignored, the first of a repeated key counts). -EBADMSG if the payload is not one
 * CBOR map or a known key has the wrong type; nothing is written then.
 */
int fgw_smp_rsp_decode(const uint8_t *payload, size_t len, struct fgw_smp_status *st,
		       struct fgw_smp_upload_rsp *up);

#define FGW_SMP_MAX_SLOT_INFO_IMAGES 4
#define FGW_SMP_MAX_SLOT_INFO_SLOTS 2
struct fgw_smp_slot_info {
	size_t n_images;
	struct {
		uint32_t image;
		size_t n_slots;
		struct {
			uint32_t slot;
			uint64_t size;
			bool has_upload_image_id;
			uint32_t upload_image_id;
		} slots[FGW_SMP_MAX_SLOT_INFO_SLOTS];
		bool has_max_image_size;
		uint64_t max_image_size;
	} images[FGW_SMP_MAX_SLOT_INFO_IMAGES];
};
int fgw_smp_slot_info_decode(const uint8_t *payload, size_t len, struct fgw_smp_slot_info *ret);

/*
 * Application groups (64+), defined by the firmware. A READ request with an empty map, and a
 * text field of the answer (e.g. "version" from the group the firmware reports its net core
 * version on). -ENODATA if @key is absent.
 */
int fgw_smp_req_custom_read(uint16_t group, uint8_t id, struct fgw_smp_req *ret);
int fgw_smp_text_field_decode(const uint8_t *payload, size_t len, const char *key, char **ret);

/* ---------------------------------------------------------------------------------------- */
/* Reassembly: transport frames in, whole SMP packets out. */

struct fgw_smp_reasm;

/* @max_packet caps header + payload of one packet (the device's buf_size or a bit more). */
int fgw_smp_reasm_new(size_t max_packet, struct fgw_smp_reasm **ret);
struct fgw_smp_reasm *fgw_smp_reasm_free(struct fgw_smp_reasm *r);
/* Drops a partial packet (after a disconnect or a protocol error). */
void fgw_smp_reasm_reset(struct fgw_smp_reasm *r);
/*
 * Hands one frame in. The frame is borrowed until fgw_smp_reasm_next() returned 0 or an error;
 * do not call feed() again before that.
 */
void fgw_smp_reasm_feed(struct fgw_smp_reasm *r, const uint8_t *frame, size_t len);
/*
 * Next whole packet: 1 with @ret_hdr and @ret_payload set (borrowed until the next call), 0 when
 * the fed bytes are used up (a partial packet is kept for the next frame). -EMSGSIZE if a header
 * announces a packet larger than max_packet, -EBADMSG if a header does not parse: the rest of
 * the frame and any partial packet are dropped; the next frame starts afresh.
 */
int fgw_smp_reasm_next(struct fgw_smp_reasm *r, struct fgw_smp_hdr *ret_hdr,
		       const uint8_t **ret_payload);
