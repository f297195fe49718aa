/*
 * The harness of lib/bluez's unit tests (test-bluez*.c): a bluez on the scripted fake
 * bluetoothd of bluez-fake.h, the adapter and device events it reported, and links with what
 * their callbacks saw.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "bluez-fake.h"
#include "bluez.h"
#include "loop-harness.h"

struct ctx {
	uv_loop_t loop;
	uv_timer_t tick;
	struct fake_bluez fake;
	struct fgw_bluez_options opts;
	struct fgw_bluez *b;
	enum fgw_bluez_adapter_state astate;
	unsigned n_adapter_events;
	int adapter_errs[16];
	unsigned n_adapter_errs;
	unsigned found, updated, lost, renamed;
	struct fgw_bluez_device_info info; /* the last event's (a rename's is kept) */
	unsigned ready_counter;
	const void *param; /* the case of a table-driven test */
};

struct lctx {
	struct ctx *c;
	struct fgw_bluez_link *l;
	unsigned n_cb;
	int err;
	bool ready;
	bool free_on_ready;
	unsigned order; /* when it became ready, 1-based */
	uint8_t rx[4096];
	size_t rx_len;
	unsigned n_rx;
};

/* cmocka setup/teardown: one adapter (hci0), powered, generous timeouts; the test changes
 * c->fake and c->opts before start(). */
int setup(void **state);
int teardown(void **state);
/* Starts the fake (as configured by the test beforehand) and a bluez on it, with watches. */
void start(struct ctx *c);

#define WAIT_FOR(c, cond) TEST_WAIT_FOR(&(c)->loop, cond)

/* Conditions for WAIT_FOR(). */
bool adapter_on(void *ctx); /* ON and discovering */
bool link_done(void *lctx); /* its state callback ran */
bool saw_adapter_err(struct ctx *c, int err);
/* Whether @addr is known with RSSI @rssi. */
bool has_rssi(struct ctx *c, const char *addr, int rssi);

/* fgw_bluez_connect() with the harness's callbacks into @x; none before it returned. */
void link_connect(struct ctx *c, struct lctx *x, const char *addr);
void on_link_state(struct fgw_bluez_link *l, int err, void *ud);
void on_link_rx(struct fgw_bluez_link *l, const uint8_t *data, size_t len, void *ud);
/* The same, then until the state callback ran. */
void link_connect_wait(struct ctx *c, struct lctx *x, const char *addr);
/* The bytes as one packet object (the caller's reference dropped here). */
int link_send(struct fgw_bluez_link *l, const uint8_t *data, size_t len);
/* A fake device "dev" at C0:00:00:00:00:01, started, and a ready link to it (n_cb reset). */
void ready_link(struct ctx *c, struct lctx *x, struct fake_dev **ret);
