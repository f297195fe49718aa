/*
 * Any bytes as device text: the escaped form must be the same whether written whole or
 * counted, hold no byte a terminal or journald acts on, and round-trip to the input.
 */
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int hexval(char c)
{
	return c <= '9' ? c - '0' : c - 'a' + 10;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	size_t need = fgw_escape_text(NULL, 0, (const char *) data, size);
	char *out = malloc(need + 1), *back = malloc(size + 1);
	size_t n = 0;

	if (!out || !back)
		abort();
	if (fgw_escape_text(out, need + 1, (const char *) data, size) != need ||
	    strlen(out) != need)
		abort();
	for (size_t i = 0; i < need; i++) {
		unsigned char c = (unsigned char) out[i];
		if (c < 0x20 || c == 0x7f)
			abort();
		if (c == '\\') {
			if (out[i + 1] == '\\')
				back[n++] = '\\', i++;
			else if (out[i + 1] == 'x')
				back[n++] = (char) (hexval(out[i + 2]) << 4 | hexval(out[i + 3])),
				i += 3;
			else
				abort();
		} else {
			back[n++] = (char) c;
		}
	}
	if (n != size || memcmp(back, data, size) != 0)
		abort();
	/* Whatever the buffer, the output is a prefix of the whole escape and NUL-terminated. */
	char small[17];
	size_t cut = size % sizeof(small) + 1;
	fgw_escape_text(small, cut, (const char *) data, size);
	if (strlen(small) >= cut || strncmp(small, out, strlen(small)) != 0)
		abort();
	free(out);
	free(back);
	return 0;
}
