/* The generic half of the transport interface: dispatch to the implementation's ops. */
#include <errno.h>

#include "transport-impl.h"
#include "util.h"

FGW_EXPORT int fgw_transport_open(struct fgw_transport *t, fgw_transport_state_cb_t state_cb,
				  fgw_transport_rx_cb_t rx_cb, void *user_data)
{
	if (!t || !state_cb || !rx_cb)
		return -EINVAL;
	t->state_cb = state_cb;
	t->rx_cb = rx_cb;
	t->user_data = user_data;
	return t->ops->open(t);
}

FGW_EXPORT int fgw_transport_send(struct fgw_transport *t, struct fgw_buf *packet)
{
	if (!t || !packet || fgw_buf_len(packet) == 0)
		return -EINVAL;
	if (fgw_buf_len(packet) > t->ops->max_packet(t))
		return -EMSGSIZE;
	return t->ops->send(t, packet);
}

FGW_EXPORT void fgw_transport_close(struct fgw_transport *t)
{
	if (t)
		t->ops->close(t);
}

FGW_EXPORT struct fgw_transport *fgw_transport_free(struct fgw_transport *t)
{
	if (t)
		t->ops->free(t);
	return NULL;
}

FGW_EXPORT size_t fgw_transport_mtu(struct fgw_transport *t)
{
	return t->ops->mtu(t);
}

FGW_EXPORT size_t fgw_transport_max_packet(struct fgw_transport *t)
{
	return t->ops->max_packet(t);
}

FGW_EXPORT const char *fgw_transport_kind(struct fgw_transport *t)
{
	return t->ops->kind;
}

FGW_EXPORT const char *fgw_transport_peer(struct fgw_transport *t)
{
	return t->peer;
}

FGW_EXPORT void fgw_transport_report_state(struct fgw_transport *t, int err)
{
	if (t->state_cb)
		t->state_cb(t, err, t->user_data);
}

FGW_EXPORT void fgw_transport_report_rx(struct fgw_transport *t, const uint8_t *data, size_t len)
{
	if (t->rx_cb)
		t->rx_cb(t, data, len, t->user_data);
}
