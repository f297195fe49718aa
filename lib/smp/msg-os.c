/* OS group (0) requests and responses: echo, reset, params, os info, bootloader info (§3). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smp-private.h"

static int req_simple(uint8_t op, uint16_t group, uint8_t id, const char *key, const char *text,
		      struct fgw_smp_req *ret)
{
	_cleanup_cbor_ cbor_item_t *map = cbor_new_definite_map(text ? 1 : 0);

	if (!map)
		return -ENOMEM;
	if (text && !smp_cbor_put(map, key, cbor_build_string(text)))
		return -ENOMEM;
	return smp_req_finish(map, op, group, id, ret);
}

FGW_EXPORT int fgw_smp_req_echo(const char *text, struct fgw_smp_req *ret)
{
	if (!text)
		return -EINVAL;
	return req_simple(FGW_SMP_OP_WRITE, FGW_SMP_GROUP_OS, FGW_SMP_OS_ECHO, "d", text, ret);
}

FGW_EXPORT int fgw_smp_req_reset(bool force, struct fgw_smp_req *ret)
{
	_cleanup_cbor_ cbor_item_t *map = cbor_new_definite_map(force ? 1 : 0);

	if (!map)
		return -ENOMEM;
	/* Zephyr decodes force as a bool (the doc says int); send it only when asked to. */
	if (force && !smp_cbor_put(map, "force", cbor_build_bool(true)))
		return -ENOMEM;
	return smp_req_finish(map, FGW_SMP_OP_WRITE, FGW_SMP_GROUP_OS, FGW_SMP_OS_RESET, ret);
}

FGW_EXPORT int fgw_smp_req_params(struct fgw_smp_req *ret)
{
	return req_simple(FGW_SMP_OP_READ, FGW_SMP_GROUP_OS, FGW_SMP_OS_PARAMS, NULL, NULL, ret);
}

FGW_EXPORT int fgw_smp_req_os_info(const char *format, struct fgw_smp_req *ret)
{
	return req_simple(FGW_SMP_OP_READ, FGW_SMP_GROUP_OS, FGW_SMP_OS_INFO, "format", format,
			  ret);
}

FGW_EXPORT int fgw_smp_req_bootloader_info(const char *query, struct fgw_smp_req *ret)
{
	return req_simple(FGW_SMP_OP_READ, FGW_SMP_GROUP_OS, FGW_SMP_OS_BOOTLOADER_INFO, "query",
			  query, ret);
}

FGW_EXPORT int fgw_smp_params_decode(const uint8_t *payload, size_t len, struct fgw_smp_params *ret)
{
	_cleanup_cbor_ cbor_item_t *root = NULL;
	cbor_item_t *s, *c;
	uint64_t size, count;
	int r;

	r = smp_cbor_load_map(payload, len, &root);
	if (r < 0)
		return r;
	s = smp_cbor_get(root, "buf_size");
	c = smp_cbor_get(root, "buf_count");
	if (!s || !c)
		return -ENODATA;
	r = smp_cbor_get_uint(s, UINT32_MAX, &size);
	if (r < 0)
		return r;
	r = smp_cbor_get_uint(c, UINT32_MAX, &count);
	if (r < 0)
		return r;
	*ret = (struct fgw_smp_params){.buf_size = (uint32_t) size, .buf_count = (uint32_t) count};
	return 0;
}

FGW_EXPORT int fgw_smp_echo_decode(const uint8_t *payload, size_t len, char **ret)
{
	return fgw_smp_text_field_decode(payload, len, "r", ret);
}

FGW_EXPORT int fgw_smp_os_info_decode(const uint8_t *payload, size_t len, char **ret)
{
	return fgw_smp_text_field_decode(payload, len, "output", ret);
}

FGW_EXPORT const char *fgw_mcuboot_mode_to_string(int mode)
{
	static const char *const names[] = {
	    "single-app",
	    "swap-using-scratch",
	    "overwrite-only",
	    "swap-without-scratch",
	    "direct-xip",
	    "direct-xip-with-revert",
	    "ram-load",
	    "firmware-loader",
	    "single-slot-ram-load",
	    "swap-using-offset",
	};

	if (mode < 0 || mode >= (int) ARRAY_SIZE(names))
		return "unknown";
	return names[mode];
}

FGW_EXPORT int fgw_smp_bootloader_info_decode(const uint8_t *payload, size_t len,
					      struct fgw_smp_bootloader_info *ret)
{
	_cleanup_cbor_ cbor_item_t *root = NULL;
	struct fgw_smp_bootloader_info bi = {.mode = FGW_MCUBOOT_MODE_UNKNOWN};
	cbor_item_t *v;
	int64_t mode;
	int r;

	r = smp_cbor_load_map(payload, len, &root);
	if (r < 0)
		return r;
	v = smp_cbor_get(root, "bootloader");
	if (v) {
		r = smp_cbor_get_text(v, bi.bootloader, sizeof(bi.bootloader));
		if (r < 0)
			return r;
	}
	v = smp_cbor_get(root, "mode");
	if (v) {
		r = smp_cbor_get_int(v, &mode);
		if (r < 0)
			return r;
		if (mode < INT32_MIN || mode > INT32_MAX)
			return -EBADMSG;
		bi.has_mode = true;
		bi.mode = (int) mode;
	}
	v = smp_cbor_get(root, "no-downgrade");
	if (v) {
		r = smp_cbor_get_bool(v, &bi.no_downgrade);
		if (r < 0)
			return r;
	}
	if (!bi.bootloader[0] && !bi.has_mode)
		return -ENODATA;
	*ret = bi;
	return 0;
}
