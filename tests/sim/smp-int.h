/*
 * Private to the simulated SMP server (smp.c: framing, os group, errors; smp-img.c: the image
 * group): mcumgr error numbers, the handler context and the CBOR helpers both use.
 */
#pragma once

#include <cbor.h>

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

struct ctx {
	struct sim_device *dev;
	const struct smp_req *req;
	cbor_item_t *rsp;
	int grp_rc; /* group error (v2 "err") if non-zero */
	struct smp_result *res;
};

/* Request keys (NULL / -ENOENT when absent, MGMT_ERR_EINVAL for a wrong type). */
cbor_item_t *smp_key(const struct smp_req *r, const char *k);
int smp_uint(const struct smp_req *r, const char *k, uint64_t *v);
int smp_bool(const struct smp_req *r, const char *k, bool *v);
int smp_bstr(const struct smp_req *r, const char *k, const uint8_t **v, size_t *n);
int smp_tstr(const struct smp_req *r, const char *k, const char **v, size_t *n);
/* Response building: false on allocation failure (the value is consumed either way). */
cbor_item_t *smp_mk_uint(uint64_t v);
bool smp_put(cbor_item_t *map, const char *k, cbor_item_t *v);
bool smp_append(cbor_item_t *arr, cbor_item_t *v);
cbor_item_t *smp_new_map(void);

/* Image group handlers (smp-img.c). */
int img_state_read(struct ctx *c);
int img_state_write(struct ctx *c);
int img_upload(struct ctx *c);
int img_erase(struct ctx *c);
int img_slot_info(struct ctx *c);
