/*
 * Fuzzes the passkey file parser: anything accepted must be exactly six digits (with white
 * space around), and the value must be what those digits say.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>

#include "bluez.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t v = 0, want = 0;
	size_t digits = 0;

	if (fgw_bluez_passkey_parse((const char *) data, size, &v) < 0)
		return 0;
	for (size_t i = 0; i < size; i++) {
		if (isdigit(data[i])) {
			want = want * 10 + (uint32_t) (data[i] - '0');
			digits++;
		} else if (!isspace(data[i])) {
			abort();
		}
	}
	if (digits != 6 || v != want || v > 999999)
		abort();
	return 0;
}
