#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "smp.h"

uint8_t *golden_load(const char *name, size_t *ret_len)
{
	char path[512], line[1024];
	uint8_t *buf = malloc(65536);
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/smp/%s.hex", FGW_TEST_DATA, name);
	f = fopen(path, "re");
	if (!f || !buf) {
		fprintf(stderr, "cannot open golden file %s\n", path);
		abort();
	}
	while (fgets(line, sizeof(line), f)) {
		char *p = line;

		if (line[0] == '#')
			continue;
		while (*p) {
			unsigned v;

			while (*p && isspace((unsigned char) *p))
				p++;
			if (!*p)
				break;
			if (sscanf(p, "%2x", &v) != 1 || n >= 65536) {
				fprintf(stderr, "bad golden file %s\n", path);
				abort();
			}
			buf[n++] = (uint8_t) v;
			p += 2;
		}
	}
	fclose(f);
	*ret_len = n;
	return buf;
}

const uint8_t *golden_payload(const uint8_t *frame, size_t len, size_t *ret_len)
{
	struct fgw_smp_hdr h;

	if (fgw_smp_hdr_decode(frame, len, &h) < 0 || (size_t) h.len + FGW_SMP_HDR_SIZE != len) {
		fprintf(stderr, "golden frame of %zu bytes: bad SMP header\n", len);
		abort();
	}
	*ret_len = h.len;
	return frame + FGW_SMP_HDR_SIZE;
}
