/*
 * Any bytes as an MCUboot image: the parser either refuses them with a reason or returns a
 * layout inside the buffer, and verification then never reads outside it.
 */
#include <stdlib.h>
#include <string.h>

#include "bundle.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static struct fgw_key *keys[2];

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct fgw_mcuboot_image img;
	enum fgw_sig_status sig;
	struct fgw_reject why;
	uint8_t *copy;
	int r;

	if (!keys[0] && (fgw_key_generate(FGW_KEY_TYPE_ED25519, &keys[0]) < 0 ||
			 fgw_key_generate(FGW_KEY_TYPE_ECDSA_P256, &keys[1]) < 0))
		abort();
	/* an exact-size heap copy, so ASan sees any read past the end */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	r = fgw_mcuboot_parse(copy, size, &img, &why);
	if (r < 0) {
		if (!why.detail || why.reason == FGW_REJECT_NONE)
			abort();
		free(copy);
		return 0;
	}
	if (img.tlv_end > size || img.hashed_size > img.tlv_end ||
	    img.hashed_size != img.hdr_size + img.img_size + img.protect_tlv_size ||
	    img.hdr_size < FGW_MCUBOOT_HEADER_MIN)
		abort();
	(void) fgw_mcuboot_verify(copy, size, &img, NULL, &sig, &why);
	for (size_t i = 0; i < 2; i++) {
		r = fgw_mcuboot_verify(copy, size, &img, keys[i], &sig, &why);
		if (r == 0 && sig != FGW_SIG_STATUS_VALID)
			abort();
	}
	free(copy);
	return 0;
}
