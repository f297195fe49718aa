/*
 * Application groups (64 and up): the firmware defines them. fotagw uses one, optionally,
 * to read the net core's running version, which standard SMP cannot report on an nRF5340.
 */
#include <errno.h>

#include "smp-private.h"

FGW_EXPORT int fgw_smp_req_custom_read(uint16_t group, uint8_t id, struct fgw_smp_req *ret)
{
	_cleanup_cbor_ cbor_item_t *map = cbor_new_definite_map(0);

	if (!map)
		return -ENOMEM;
	return smp_req_finish(map, FGW_SMP_OP_READ, group, id, ret);
}

FGW_EXPORT int fgw_smp_text_field_decode(const uint8_t *payload, size_t len, const char *key,
					 char **ret)
{
	_cleanup_cbor_ cbor_item_t *root = NULL;
	cbor_item_t *v;
	int r;

	r = smp_cbor_load_field(payload, len, key, &root, &v);
	if (r < 0)
		return r;
	return smp_cbor_dup_text(v, ret);
}
