/* Reference-counted byte buffers (util.h): the one copy of a packet, shared instead of copied. */
#include <errno.h>

#include "util.h"

struct fgw_buf {
	unsigned refs;
	size_t len, cap;
	uint8_t data[];
};

FGW_EXPORT struct fgw_buf *fgw_buf_new(size_t capacity)
{
	struct fgw_buf *b;

	if (capacity > SIZE_MAX - sizeof(*b))
		return NULL;
	b = malloc(sizeof(*b) + capacity);
	if (!b)
		return NULL;
	b->refs = 1;
	b->len = 0;
	b->cap = capacity;
	return b;
}

FGW_EXPORT struct fgw_buf *fgw_buf_ref(struct fgw_buf *b)
{
	if (b)
		b->refs++;
	return b;
}

FGW_EXPORT struct fgw_buf *fgw_buf_unref(struct fgw_buf *b)
{
	if (b && --b->refs == 0)
		free(b);
	return NULL;
}

FGW_EXPORT uint8_t *fgw_buf_data(struct fgw_buf *b)
{
	return b->data;
}

FGW_EXPORT size_t fgw_buf_len(const struct fgw_buf *b)
{
	return b->len;
}

FGW_EXPORT size_t fgw_buf_capacity(const struct fgw_buf *b)
{
	return b->cap;
}

FGW_EXPORT int fgw_buf_set_len(struct fgw_buf *b, size_t len)
{
	if (len > b->cap)
		return -EMSGSIZE;
	b->len = len;
	return 0;
}

FGW_EXPORT bool fgw_buf_shared(const struct fgw_buf *b)
{
	return b->refs > 1;
}
