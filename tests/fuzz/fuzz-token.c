/*
 * The bearer token rule (fgw_token_parse) against the rule written the other way round: the
 * input is a token followed by nothing but white space, or it is refused and nothing is kept.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static bool visible(unsigned char c)
{
	return c >= '!' && c <= '~';
}

/* Length of the token @data holds, 0 when it holds none. */
static size_t expected(const unsigned char *data, size_t size)
{
	size_t n = 0;

	while (n < size && visible(data[n]))
		n++;
	for (size_t i = n; i < size; i++)
		if (!strchr(" \t\r\n", data[i]) || data[i] == '\0')
			return 0;
	return n >= FGW_TOKEN_MIN && n <= FGW_TOKEN_MAX ? n : 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char *tok = NULL;
	size_t want = expected(data, size);
	int r = fgw_token_parse((const char *) data, size, &tok);

	if (r == -ENOMEM)
		return 0;
	if ((r == 0) != (want > 0) || (r < 0 && (r != -EINVAL || tok)))
		abort();
	if (r == 0 && (strlen(tok) != want || memcmp(tok, data, want) != 0))
		abort();
	free(tok);
	return 0;
}
