/* Any bytes as a config file: must be accepted or refused with diagnostics, never crash. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

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
		/* what logs show of the manifest URL: no query, never longer than the URL */
		char shown[FGW_URL_LOG_MAX];
		fgw_url_redact(cfg.release_manifest_url, shown, sizeof(shown));
		if (strchr(shown, '?') || strchr(shown, '#') ||
		    strlen(shown) > strlen(cfg.release_manifest_url) ||
		    fgw_url_has_userinfo(shown))
			abort();
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
