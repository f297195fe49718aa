/*
 * Device errors: v1 `rc` (mcumgr_err_t) and v2 `err {group, rc}` with the group's own codes,
 * their names and messages (protocol-notes §1.3, §3.7, §4.7).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "smp-private.h"

struct err_entry {
	const char *name;
	const char *msg;
};

static const struct err_entry rc_table[] = {
    [0] = {"EOK", "success"},
    [1] = {"EUNKNOWN", "unknown error"},
    [2] = {"ENOMEM", "out of memory"},
    [3] = {"EINVAL", "invalid argument"},
    [4] = {"ETIMEOUT", "operation timed out"},
    [5] = {"ENOENT", "no such entry"},
    [6] = {"EBADSTATE", "current state forbids the command"},
    [7] = {"EMSGSIZE", "response too large for the SMP buffer"},
    [8] = {"ENOTSUP", "command not supported"},
    [9] = {"ECORRUPT", "corrupt request"},
    [10] = {"EBUSY", "device busy, retry later"},
    [11] = {"EACCESSDENIED", "access denied"},
    [12] = {"UNSUPPORTED_TOO_OLD", "SMP version too old for the device"},
    [13] = {"UNSUPPORTED_TOO_NEW", "SMP version too new for the device"},
};

static const struct err_entry os_table[] = {
    [0] = {"OK", "success"},
    [1] = {"UNKNOWN", "unknown error"},
    [2] = {"INVALID_FORMAT", "invalid format string"},
    [3] = {"QUERY_YIELDS_NO_ANSWER", "query has no answer"},
    [4] = {"RTC_NOT_SET", "RTC not set"},
    [5] = {"RTC_COMMAND_FAILED", "RTC command failed"},
    [6] = {"QUERY_RESPONSE_VALUE_NOT_VALID", "query response value not valid"},
};

static const struct err_entry img_table[] = {
    [0] = {"OK", "success"},
    [1] = {"UNKNOWN", "unknown error"},
    [2] = {"FLASH_CONFIG_QUERY_FAIL", "flash configuration query failed"},
    [3] = {"NO_IMAGE", "no image in the slot"},
    [4] = {"NO_TLVS", "image has no TLVs"},
    [5] = {"INVALID_TLV", "invalid TLV"},
    [6] = {"TLV_MULTIPLE_HASHES_FOUND", "several hash TLVs"},
    [7] = {"TLV_INVALID_SIZE", "TLV of invalid size"},
    [8] = {"HASH_NOT_FOUND", "no image with this hash"},
    [9] = {"NO_FREE_SLOT", "no free slot (a slot is pending or in use: reset or confirm first)"},
    [10] = {"FLASH_OPEN_FAILED", "flash open failed"},
    [11] = {"FLASH_READ_FAILED", "flash read failed"},
    [12] = {"FLASH_WRITE_FAILED", "flash write failed"},
    [13] = {"FLASH_ERASE_FAILED", "flash erase failed"},
    [14] = {"INVALID_SLOT", "invalid slot"},
    [15] = {"NO_FREE_MEMORY", "out of memory"},
    [16] = {"FLASH_CONTEXT_ALREADY_SET", "flash context already set"},
    [17] = {"FLASH_CONTEXT_NOT_SET", "flash context not set"},
    [18] = {"FLASH_AREA_DEVICE_NULL", "flash area device missing"},
    [19] = {"INVALID_PAGE_OFFSET", "invalid page offset"},
    [20] = {"INVALID_OFFSET", "offset missing or invalid"},
    [21] = {"INVALID_LENGTH", "length missing or invalid"},
    [22] = {"INVALID_IMAGE_HEADER", "first chunk shorter than the image header"},
    [23] = {"INVALID_IMAGE_HEADER_MAGIC", "not an MCUboot image (bad header magic)"},
    [24] = {"INVALID_HASH", "invalid hash"},
    [25] = {"INVALID_FLASH_ADDRESS", "image built for another slot address"},
    [26] = {"VERSION_GET_FAILED", "cannot read the running version"},
    [27] = {"CURRENT_VERSION_IS_NEWER", "running version is newer (downgrade refused)"},
    [28] = {"IMAGE_ALREADY_PENDING", "another image is already pending"},
    [29] = {"INVALID_IMAGE_VECTOR_TABLE", "invalid image vector table"},
    [30] = {"INVALID_IMAGE_TOO_LARGE", "image too large for the slot"},
    [31] = {"INVALID_IMAGE_DATA_OVERRUN", "data beyond the announced length"},
    [32] = {"IMAGE_CONFIRMATION_DENIED", "confirmation denied"},
    [33] = {"IMAGE_SETTING_TEST_TO_ACTIVE_DENIED", "cannot test the active image"},
    [34] = {"ACTIVE_SLOT_NOT_KNOWN", "active slot not known"},
};

static const struct err_entry zbasic_table[] = {
    [0] = {"OK", "success"},
    [1] = {"UNKNOWN", "unknown error"},
    [2] = {"FLASH_OPEN_FAILED", "flash open failed"},
    [3] = {"FLASH_CONFIG_QUERY_FAIL", "flash configuration query failed"},
    [4] = {"FLASH_ERASE_FAILED", "flash erase failed"},
};

static const struct err_entry rc_peruser = {"EPERUSER", "application-defined error"};
static const struct err_entry rc_unknown = {"UNKNOWN_RC", "unknown error code"};

static const struct err_entry *rc_entry(int64_t rc)
{
	if (rc >= 0 && rc < (int64_t) ARRAY_SIZE(rc_table))
		return &rc_table[rc];
	return rc >= FGW_SMP_RC_EPERUSER ? &rc_peruser : &rc_unknown;
}

/* Groups without a table here (shell, fs, ...) and codes past a table's end: UNKNOWN_RC. */
static const struct err_entry *group_entry(uint16_t group, uint16_t rc)
{
	const struct err_entry *t;
	size_t n;

	switch (group) {
	case FGW_SMP_GROUP_OS:
		t = os_table, n = ARRAY_SIZE(os_table);
		break;
	case FGW_SMP_GROUP_IMAGE:
		t = img_table, n = ARRAY_SIZE(img_table);
		break;
	case FGW_SMP_GROUP_ZBASIC:
		t = zbasic_table, n = ARRAY_SIZE(zbasic_table);
		break;
	default:
		return &rc_unknown;
	}
	return rc < n ? &t[rc] : &rc_unknown;
}

FGW_EXPORT const char *fgw_smp_rc_to_string(int64_t rc)
{
	return rc_entry(rc)->name;
}

FGW_EXPORT const char *fgw_smp_group_rc_to_string(uint16_t group, uint16_t rc)
{
	return group_entry(group, rc)->name;
}

FGW_EXPORT bool fgw_smp_status_ok(const struct fgw_smp_status *st)
{
	return st->rc == 0 && (!st->has_err || st->err_rc == 0);
}

FGW_EXPORT bool fgw_smp_status_is_busy(const struct fgw_smp_status *st)
{
	return st->rc == FGW_SMP_RC_EBUSY;
}

FGW_EXPORT const char *fgw_smp_status_format(const struct fgw_smp_status *st, char *buf,
					     size_t size)
{
	int n = 0;

	if (size == 0)
		return buf;
	buf[0] = '\0';
	if (fgw_smp_status_ok(st)) {
		snprintf(buf, size, "ok");
		return buf;
	}
	if (st->has_err && st->err_rc != 0)
		n = snprintf(buf, size, "%s error %u %s (%s)",
			     fgw_smp_group_to_string(st->err_group), st->err_rc,
			     group_entry(st->err_group, st->err_rc)->name,
			     group_entry(st->err_group, st->err_rc)->msg);
	else
		n = snprintf(buf, size, "rc %" PRId64 " %s (%s)", st->rc, rc_entry(st->rc)->name,
			     rc_entry(st->rc)->msg);
	if (st->rsn[0] && n >= 0 && (size_t) n < size)
		snprintf(buf + n, size - (size_t) n, ": '%s'", st->rsn);
	return buf;
}
