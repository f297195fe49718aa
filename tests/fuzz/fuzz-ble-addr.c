/*
 * Any bytes as a BLE address (config, API path, store row, BlueZ property): accepted exactly
 * when they are "XX:XX:XX:XX:XX:XX" in hex of either case, and then normalised to upper case,
 * idempotently; everything else is -EINVAL and leaves the output alone.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int upper_hex(int c)
{
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 'A';
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') ? c : -1;
}

/* The rule written the other way round: every position on its own. */
static bool valid(const char *s)
{
	if (strlen(s) != FGW_BLE_ADDR_STRLEN - 1)
		return false;
	for (int i = 0; i < FGW_BLE_ADDR_STRLEN - 1; i++)
		if (i % 3 == 2 ? s[i] != ':' : upper_hex((unsigned char) s[i]) < 0)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char *s = malloc(size + 1), out[FGW_BLE_ADDR_STRLEN], again[FGW_BLE_ADDR_STRLEN];
	int r;

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	memset(out, 'x', sizeof(out));
	r = fgw_ble_addr_parse(s, out);
	if ((r == 0) != valid(s) || (r < 0 && r != -EINVAL))
		abort();
	if (r < 0) {
		for (size_t i = 0; i < sizeof(out); i++)
			if (out[i] != 'x')
				abort();
	} else {
		for (int i = 0; i < FGW_BLE_ADDR_STRLEN - 1; i++)
			if (out[i] != (i % 3 == 2 ? ':' : upper_hex((unsigned char) s[i])))
				abort();
		if (out[FGW_BLE_ADDR_STRLEN - 1] != '\0' || fgw_ble_addr_parse(out, again) != 0 ||
		    memcmp(out, again, sizeof(out)) != 0)
			abort();
	}
	free(s);
	return 0;
}
