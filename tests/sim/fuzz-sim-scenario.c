/* libFuzzer: scenario files (INI via inih) and the per-device key vocabulary. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sim_scenario *s = NULL;
	struct sim_dev_config c;
	char *text = malloc(size + 1);
	int line = 0;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (sim_scenario_parse_string(text, &s, &line) == 0) {
		for (unsigned i = 0; i < 4; i++) {
			sim_dev_config_defaults(&c);
			/* every entry was validated when parsed: applying cannot fail */
			if (sim_scenario_apply(s, i, &c) < 0)
				__builtin_trap();
			/* the airtime model takes whatever the keys allow */
			const char *why;
			if (sim_link_check(&c.link, &why) == 0 &&
			    (sim_link_ceiling(&c.link) <= 0 ||
			     sim_link_ceiling(&c.link) > sim_link_radio_ceiling(&c.link) + 1e-6))
				__builtin_trap();
		}
		sim_scenario_free(s);
	}
	free(text);
	return 0;
}
