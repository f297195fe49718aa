/* Any bytes as a dfu_application.zip: refused with a reason or opened with sane images. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct fgw_bundle *b = NULL;
	struct fgw_reject why;
	int r;

	r = fgw_bundle_open_buffer(data, size, NULL, &b, &why);
	if (r < 0) {
		if (b || (r != -ENOMEM && (why.reason == FGW_REJECT_NONE || !why.detail)))
			abort();
		return 0;
	}
	if (b->n_images == 0 || b->n_images > FGW_BUNDLE_MAX_IMAGES || !fgw_bundle_find_image(b, 0))
		abort();
	for (size_t i = 0; i < b->n_images; i++)
		if (b->images[i].img.tlv_end > b->images[i].len || !b->images[i].file)
			abort();
	fgw_bundle_free(b);
	return 0;
}
