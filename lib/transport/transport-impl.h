/*
 * For transport implementations only: the object layout behind the opaque handle. Each
 * implementation embeds struct fgw_transport first in its own struct and fills the ops.
 */
#pragma once

#include "transport.h"

struct fgw_transport_ops {
	const char *kind;
	int (*open)(struct fgw_transport *t);
	int (*send)(struct fgw_transport *t, struct fgw_buf *packet);
	void (*close)(struct fgw_transport *t);
	void (*free)(struct fgw_transport *t); /* asynchronous release of the implementation */
	size_t (*mtu)(struct fgw_transport *t);
	size_t (*max_packet)(struct fgw_transport *t);
};

struct fgw_transport {
	const struct fgw_transport_ops *ops;
	char peer[64];
	fgw_transport_state_cb_t state_cb;
	fgw_transport_rx_cb_t rx_cb;
	void *user_data;
};

/* For implementations: deliver events to the user (safe if the user frees @t inside). */
void fgw_transport_report_state(struct fgw_transport *t, int err);
void fgw_transport_report_rx(struct fgw_transport *t, const uint8_t *data, size_t len);
