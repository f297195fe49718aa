/*
 * Any bytes as a release manifest, and as its signature file: refused with a reason or parsed
 * into something that satisfies every documented limit; never a crash or a leak.
 */
#include <stdlib.h>
#include <string.h>

#include "bundle.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static struct fgw_key *key;

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static const char json[] = "{\"schema\":1}";
	struct fgw_manifest *m = NULL;
	struct fgw_reject why;
	int r;

	if (!key && fgw_key_generate(FGW_KEY_TYPE_ED25519, &key) < 0)
		abort();

	r = fgw_manifest_parse(data, size, &m, &why);
	if (r == 0) {
		if (m->schema != FGW_MANIFEST_SCHEMA || m->sequence < 1 ||
		    m->n_releases > FGW_MANIFEST_MAX_RELEASES)
			abort();
		for (size_t i = 0; i < m->n_releases; i++) {
			const struct fgw_manifest_release *rel = &m->releases[i];
			if (!rel->id || !rel->bundle_url || !rel->board || !rel->policy_json ||
			    rel->bundle_size == 0 || rel->bundle_size > FGW_BUNDLE_MAX_SIZE ||
			    strlen(rel->bundle_sha256_hex) != 64 ||
			    rel->n_groups > FGW_MANIFEST_MAX_GROUPS)
				abort();
		}
		(void) fgw_manifest_check(m, 5, 1700000000, &why);
		fgw_manifest_free(m);
	} else if (why.reason != FGW_REJECT_MALFORMED_MANIFEST || !why.detail) {
		abort(); /* refused without a reason */
	}

	/* the same bytes as a signature file over a fixed manifest */
	r = fgw_manifest_verify_signature(json, sizeof(json) - 1, data, size, &key, 1, NULL, &why);
	if (r == 0)
		abort(); /* random bytes do not forge an Ed25519 signature */
	if (why.reason != FGW_REJECT_BAD_SIGNATURE && why.reason != FGW_REJECT_UNKNOWN_KEY)
		abort();
	return 0;
}
