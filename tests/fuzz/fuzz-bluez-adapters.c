/*
 * Fuzzes the [ble] adapters parser: anything accepted becomes "all" or comma separated names
 * of letters and digits, never longer than the input, with no name twice; parsing the result
 * again gives the result.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bluez.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[1025], out[1025], again[1025];

	if (size >= sizeof(text))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (fgw_bluez_adapters_parse(text, out, sizeof(out)) < 0)
		return 0;
	if (strlen(out) > strlen(text))
		abort();
	for (const char *p = out; *p; p++)
		if (!(*p == ',' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9')))
			abort();
	if (out[0] == ',' || strstr(out, ",,") || (*out && out[strlen(out) - 1] == ','))
		abort();
	if (fgw_bluez_adapters_parse(out, again, sizeof(again)) < 0 || strcmp(out, again) != 0)
		abort();
	return 0;
}
