/* The ble transport: transport.h's interface over an fgw_bluez_link. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bluez.h"
#include "transport-ble.h"
#include "transport-impl.h"
#include "util.h"

struct ble_transport {
	struct fgw_transport t; /* first: the generic half casts to it */
	struct fgw_bluez *b;	/* borrowed */
	char addr[18];
	struct fgw_bluez_link *link; /* NULL when closed */
	unsigned mtu;		     /* of the current or last link */
	bool acquired;
	int security; /* enum fgw_bluez_security for each new link */
	char error[256];
};

static const struct fgw_transport_ops ble_ops;

static struct ble_transport *to_ble(struct fgw_transport *t)
{
	return container_of(t, struct ble_transport, t);
}

static void on_link_state(struct fgw_bluez_link *l, int err, void *user_data)
{
	struct ble_transport *bt = user_data;

	if (err == 0) {
		bt->mtu = fgw_bluez_link_mtu(l);
		bt->acquired = fgw_bluez_link_acquired(l);
		bt->error[0] = '\0';
	} else {
		snprintf(bt->error, sizeof(bt->error), "%s", fgw_bluez_link_error(l));
		/* A failed link is dead: let it go now, so send() says -ENOTCONN and open()
		 * may start over, also from inside the callback below. */
		bt->link = fgw_bluez_link_free(bt->link);
	}
	/* The user may free the transport here: nothing touches @bt afterwards. */
	fgw_transport_report_state(&bt->t, err);
}

static void on_link_rx(struct fgw_bluez_link *l, const uint8_t *data, size_t len, void *user_data)
{
	struct ble_transport *bt = user_data;

	fgw_transport_report_rx(&bt->t, data, len);
}

static int ble_open(struct fgw_transport *t)
{
	struct ble_transport *bt = to_ble(t);

	int r;

	if (bt->link)
		return -EALREADY;
	r = fgw_bluez_connect(bt->b, bt->addr, on_link_state, on_link_rx, bt, &bt->link);
	if (r == 0) /* no callback runs before the loop does */
		fgw_bluez_link_set_security(bt->link, (enum fgw_bluez_security) bt->security);
	return r;
}

static int ble_send(struct fgw_transport *t, struct fgw_buf *packet)
{
	struct ble_transport *bt = to_ble(t);

	if (!bt->link)
		return -ENOTCONN;
	return fgw_bluez_link_send(bt->link, packet);
}

static void ble_close(struct fgw_transport *t)
{
	struct ble_transport *bt = to_ble(t);

	bt->link = fgw_bluez_link_free(bt->link);
}

static void ble_free(struct fgw_transport *t)
{
	struct ble_transport *bt = to_ble(t);

	/* The link owns the only loop handles and releases them itself. */
	bt->link = fgw_bluez_link_free(bt->link);
	free(bt);
}

static size_t ble_mtu(struct fgw_transport *t)
{
	struct ble_transport *bt = to_ble(t);

	if (bt->link && fgw_bluez_link_state(bt->link) == FGW_BLUEZ_LINK_STATE_READY)
		return fgw_bluez_link_write_size(bt->link);
	return FGW_MIN((size_t) bt->mtu - 3, (size_t) FGW_BLUEZ_MAX_WRITE);
}

static size_t ble_max_packet(struct fgw_transport *t)
{
	return FGW_TRANSPORT_BLE_MAX_PACKET;
}

static const struct fgw_transport_ops ble_ops = {
    .kind = "ble",
    .open = ble_open,
    .send = ble_send,
    .close = ble_close,
    .free = ble_free,
    .mtu = ble_mtu,
    .max_packet = ble_max_packet,
};

FGW_EXPORT int fgw_transport_ble_new(struct fgw_bluez *b, const char *addr,
				     struct fgw_transport **ret)
{
	struct ble_transport *bt;

	char norm[FGW_BLE_ADDR_STRLEN];

	if (!b || !ret || fgw_ble_addr_parse(addr, norm) < 0)
		return -EINVAL;
	bt = calloc(1, sizeof(*bt));
	if (!bt)
		return -ENOMEM;
	bt->t.ops = &ble_ops;
	bt->b = b;
	memcpy(bt->addr, norm, sizeof(norm));
	bt->mtu = 23;
	snprintf(bt->t.peer, sizeof(bt->t.peer), "ble:%s", bt->addr);
	*ret = &bt->t;
	return 0;
}

FGW_EXPORT const char *fgw_transport_ble_last_error(struct fgw_transport *t)
{
	return t && t->ops == &ble_ops ? to_ble(t)->error : "";
}

FGW_EXPORT unsigned fgw_transport_ble_att_mtu(struct fgw_transport *t)
{
	struct ble_transport *bt = t && t->ops == &ble_ops ? to_ble(t) : NULL;

	if (!bt || !bt->link || fgw_bluez_link_state(bt->link) != FGW_BLUEZ_LINK_STATE_READY)
		return 23;
	return fgw_bluez_link_mtu(bt->link);
}

FGW_EXPORT bool fgw_transport_ble_acquired(struct fgw_transport *t)
{
	struct ble_transport *bt = t && t->ops == &ble_ops ? to_ble(t) : NULL;

	return bt && bt->link && fgw_bluez_link_state(bt->link) == FGW_BLUEZ_LINK_STATE_READY &&
	       fgw_bluez_link_acquired(bt->link);
}

FGW_EXPORT void fgw_transport_ble_set_security(struct fgw_transport *t, int security)
{
	if (t && t->ops == &ble_ops)
		to_ble(t)->security = security;
}
