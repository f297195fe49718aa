/* Any bytes as a config file: must be accepted or refused with diagnostics, never crash. */
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void quiet(const char *file, int line, const char *section, const char *key,
		  const char *message, void *user_data)
{
	(*(int *) user_data)++;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct fgw_config cfg = {0}, next = {0};
	char *text = malloc(size + 1);
	int n = 0;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (fgw_config_load_string(text, "fuzz", &cfg, quiet, &n) == 0) {
		/* A config that loads must reload onto itself without changes. */
		if (fgw_config_load_string(text, "fuzz", &next, quiet, &n) == 0) {
			if (fgw_config_apply_reload(&cfg, &next, quiet, &n) != 0)
				abort();
			fgw_config_done(&next);
		}
		fgw_config_done(&cfg);
	} else if (n == 0) {
		abort(); /* refused without saying why */
	}
	free(text);
	return 0;
}
