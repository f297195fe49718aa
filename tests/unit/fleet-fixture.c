#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include <cbor.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "fleet-fixture.h"

#define IMG_LEN (6 * 1024 + 123)
#define BUF_SIZE 1024

/* ---- the fake device: SMP answers ---- */

static void answer(struct fdev *d, const uint8_t *req, cbor_item_t *map)
{
	unsigned char *buf = NULL;
	size_t size = 0, n = cbor_serialize_alloc(map, &buf, &size);
	uint8_t pkt[8 + 1024];

	assert_true(n > 0 && n <= 1024);
	/* Header: op+1 (the answer), the request's version, flags, length, group, seq, id. */
	pkt[0] = (uint8_t) ((req[0] & 0x18) | ((req[0] & 7) + 1));
	pkt[1] = 0;
	pkt[2] = (uint8_t) (n >> 8);
	pkt[3] = (uint8_t) n;
	memcpy(pkt + 4, req + 4, 4);
	memcpy(pkt + 8, buf, n);
	free(buf);
	cbor_decref(&map);
	peer_deliver(d->peer, pkt, 8 + n, 0, 1);
}

static void put(cbor_item_t *m, const char *k, cbor_item_t *v)
{
	cbor_map_add(
	    m, (struct cbor_pair){.key = cbor_move(cbor_build_string(k)), .value = cbor_move(v)});
}

static void answer_rc(struct fdev *d, const uint8_t *req, unsigned rc)
{
	cbor_item_t *m = cbor_new_indefinite_map();

	put(m, "rc", cbor_build_uint8((uint8_t) rc));
	answer(d, req, m);
}

static cbor_item_t *get(cbor_item_t *map, const char *key)
{
	struct cbor_pair *p = cbor_map_handle(map);

	for (size_t i = 0; i < cbor_map_size(map); i++)
		if (cbor_isa_string(p[i].key) && cbor_string_length(p[i].key) == strlen(key) &&
		    memcmp(cbor_string_handle(p[i].key), key, strlen(key)) == 0)
			return p[i].value;
	return NULL;
}

static void answer_image_state(struct fdev *d, const uint8_t *req)
{
	cbor_item_t *m = cbor_new_indefinite_map(), *list = cbor_new_indefinite_array();

	for (int s = 0; s < 2; s++) {
		const struct fdev_slot *sl = &d->s[s];
		cbor_item_t *e;
		if (!sl->present)
			continue;
		e = cbor_new_indefinite_map();
		put(e, "image", cbor_build_uint8(0));
		put(e, "slot", cbor_build_uint8((uint8_t) s));
		put(e, "version", cbor_build_string(sl->version));
		put(e, "hash", cbor_build_bytestring(sl->hash, 32));
		put(e, "bootable", cbor_build_bool(true));
		put(e, "pending", cbor_build_bool(sl->pending));
		put(e, "confirmed", cbor_build_bool(sl->confirmed));
		put(e, "active", cbor_build_bool(sl->active));
		put(e, "permanent", cbor_build_bool(sl->permanent));
		(void) cbor_array_push(list, cbor_move(e));
	}
	put(m, "images", list);
	answer(d, req, m);
}

/* Image upload (group 1, id 1), as Zephyr's img_mgmt takes it. */
static void on_upload(struct fdev *d, const uint8_t *req, cbor_item_t *q)
{
	cbor_item_t *off = get(q, "off"), *data = get(q, "data"), *len = get(q, "len");
	cbor_item_t *m;
	uint64_t o;

	d->chunks++;
	if (d->drop_at_chunk && (int) d->chunks == d->drop_at_chunk) {
		d->drop_at_chunk = 0;
		peer_drop_link(d->peer, -ECONNRESET, 0);
		return;
	}
	if (d->mute_from_chunk && (int) d->chunks >= d->mute_from_chunk)
		return;
	if (d->upload_rc) {
		answer_rc(d, req, (unsigned) d->upload_rc);
		return;
	}
	assert_non_null(off);
	assert_non_null(data);
	o = cbor_get_int(off);
	if (o == 0) {
		assert_non_null(len);
		assert_true(cbor_get_int(len) <= sizeof(d->data));
		if (d->len != cbor_get_int(len) || d->off == d->len) {
			d->len = cbor_get_int(len);
			d->off = 0;
			d->s[1] = (struct fdev_slot){0};
		}
	}
	if (o == d->off) {
		assert_true(d->off + cbor_bytestring_length(data) <= d->len);
		memcpy(d->data + d->off, cbor_bytestring_handle(data),
		       cbor_bytestring_length(data));
		d->off += cbor_bytestring_length(data);
	}
	if (d->off == d->len && !d->s[1].present) {
		/* The image is whole: image state lists it in slot 1. The fake's "TLV hash" is
		 * the SHA-256 of what it received, so a corrupted upload could never match. */
		unsigned n = 32;
		d->s[1] = (struct fdev_slot){.present = true};
		assert_int_equal(EVP_Digest(d->data, d->len, d->s[1].hash, &n, EVP_sha256(), NULL),
				 1);
		snprintf(d->s[1].version, sizeof(d->s[1].version), "%s",
			 memcmp(d->s[1].hash, d->fx->rel.image[0].hash, 32) == 0
			     ? d->fx->rel.image[0].version
			     : d->fx->rel2.image[0].version);
		if (d->check_fails) {
			/* Img_mgmt lists the hash from the TLV, not one it computed. */
			d->check_fails--;
			d->s[1].corrupt = true;
			memcpy(d->s[1].hash, d->fx->rel.image[0].hash, 32);
			snprintf(d->s[1].version, sizeof(d->s[1].version), "%s",
				 d->fx->rel.image[0].version);
		}
	}
	m = cbor_new_indefinite_map();
	put(m, "off", cbor_build_uint32((uint32_t) d->off));
	if (d->off == d->len && d->s[1].present && o + cbor_bytestring_length(data) == d->len)
		put(m, "match", cbor_build_bool(!d->s[1].corrupt));
	answer(d, req, m);
}

/* What MCUboot does at boot with what the reset left (protocol-notes §3). */
static void boot(struct fdev *d)
{
	struct fdev_slot old = d->s[0], upd = d->s[1];

	switch (d->on_boot) {
	case FDEV_BOOT_SWAP:
		if (!upd.present || !upd.pending)
			break;
		d->s[0] = upd;
		d->s[0].active = true;
		d->s[0].pending = false;
		d->s[0].confirmed = upd.permanent;
		d->s[0].permanent = false;
		d->s[1] = old;
		d->s[1].active = false;
		break;
	case FDEV_BOOT_REVERT:
		d->s[1].pending = false;
		break;
	case FDEV_BOOT_REJECT:
		d->s[1] = (struct fdev_slot){0};
		break;
	case FDEV_BOOT_NOTHING:
	case FDEV_BOOT_NEVER_BACK:
		break;
	}
}

static void on_state_write(struct fdev *d, const uint8_t *req, cbor_item_t *q)
{
	cbor_item_t *hash = get(q, "hash"), *confirm = get(q, "confirm");
	bool c = confirm && cbor_get_bool(confirm);

	d->state_writes++;
	if (d->mark_rc) {
		answer_rc(d, req, (unsigned) d->mark_rc);
		return;
	}
	if (!hash) { /* confirm the running image */
		d->s[0].confirmed = true;
	} else {
		assert_int_equal(cbor_bytestring_length(hash), 32);
		if (!d->s[1].present || memcmp(cbor_bytestring_handle(hash), d->s[1].hash, 32)) {
			answer_rc(d, req, 3 /* EINVAL */);
			return;
		}
		d->s[1].pending = true;
		d->s[1].permanent = c;
		if (d->s[1].corrupt)
			d->corrupt_marks++;
	}
	answer_image_state(d, req);
}

static void dev_handler(struct peer *p, const uint8_t *pkt, size_t len, void *ud)
{
	struct fdev *d = ud;
	struct cbor_load_result res;
	cbor_item_t *q;
	unsigned op = pkt[0] & 7, group = (unsigned) (pkt[4] << 8 | pkt[5]), id = pkt[7];

	assert_true(len >= 8);
	if (d->silent || p != d->peer)
		return;
	q = cbor_load(pkt + 8, len - 8, &res);
	assert_non_null(q);
	if (group == 0 && id == 6) { /* MCUmgr params */
		cbor_item_t *m = cbor_new_indefinite_map();
		put(m, "buf_size", cbor_build_uint16(BUF_SIZE));
		put(m, "buf_count", cbor_build_uint8(4));
		answer(d, pkt, m);
	} else if (group == 0 && id == 8) { /* bootloader info */
		cbor_item_t *m = cbor_new_indefinite_map();
		if (d->mode < 0) {
			answer_rc(d, pkt, 8 /* ENOTSUP */);
		} else {
			put(m, "mode", cbor_build_uint8((uint8_t) d->mode));
			answer(d, pkt, m);
			m = NULL;
		}
		if (m)
			cbor_decref(&m);
	} else if (group == 0 && id == 7 && d->board) { /* os info: only "i" is asked */
		cbor_item_t *m = cbor_new_indefinite_map();
		put(m, "output", cbor_build_string(d->board));
		answer(d, pkt, m);
	} else if (group == 0 && id == 5) { /* reset */
		d->resets++;
		if (get(q, "force"))
			d->forced_resets++;
		if (d->busy_resets && !get(q, "force")) {
			d->busy_resets--;
			answer_rc(d, pkt, 10 /* EBUSY */);
		} else {
			fx_advance(d->fx, d->reset_answer_late_ms);
			answer(d, pkt, cbor_new_indefinite_map());
			/* It goes down after answering: the link drops, the new image boots. */
			peer_drop_link(d->peer, -ECONNRESET, 5);
			d->down = true;
			boot(d);
		}
	} else if (group == 1 && id == 0 && op == 0) {
		if (d->busy_image_state) {
			d->busy_image_state--;
			answer_rc(d, pkt, 10);
		} else {
			answer_image_state(d, pkt);
		}
	} else if (group == 1 && id == 0) {
		on_state_write(d, pkt, q);
	} else if (group == 1 && id == 1) {
		on_upload(d, pkt, q);
	} else if (group == 1 && id == 5) {
		d->erases++;
		d->s[1] = (struct fdev_slot){0};
		answer(d, pkt, cbor_new_indefinite_map());
	} else {
		answer_rc(d, pkt, 8);
	}
	cbor_decref(&q);
}

static int transport_new(void *ud, const char *address, struct fgw_transport **ret)
{
	struct fx *x = ud;
	struct fdev *d = NULL;

	if (x->transport_err)
		return x->transport_err;
	for (size_t i = 0; i < x->n_dev; i++)
		if (strcmp(x->dev[i].address, address) == 0)
			d = &x->dev[i];
	assert_non_null(d);
	if (d->down)
		return -EHOSTDOWN;
	assert_int_equal(peer_new(&x->loop, 247, 4096, &d->peer), 0);
	peer_set_handler(d->peer, dev_handler, d);
	d->links++;
	*ret = peer_transport(d->peer);
	return 0;
}

/* ---- clocks and the loop ---- */

static uint64_t test_now(void *ud)
{
	return fgw_now_ms() + ((struct fx *) ud)->skew_ms;
}

static int64_t test_wall(void *ud)
{
	return fgw_wall_ms() + (int64_t) ((struct fx *) ud)->skew_ms;
}

void fx_advance(struct fx *x, uint64_t ms)
{
	x->skew_ms += ms;
}

static void on_poll(uv_timer_t *t)
{
	(void) t; /* wakes uv_run so conditions are checked at least this often */
}

void fx_settle(struct fx *x)
{
	for (int i = 0; i < 50; i++)
		uv_run(&x->loop, UV_RUN_NOWAIT);
}

struct state_ctx {
	const char *address, *release;
	char state[16], reason[256];
};

static int find_job(const struct fgw_store_job_rec *j, void *ud)
{
	struct state_ctx *c = ud;

	if (strcmp(j->address, c->address) == 0) {
		snprintf(c->state, sizeof(c->state), "%s", j->state);
		snprintf(c->reason, sizeof(c->reason), "%s", j->reason);
	}
	return 0;
}

const char *fx_job_state(struct fx *x, const char *address, const char *release)
{
	static char buf[16];
	struct state_ctx c = {.address = address, .release = release};

	assert_true(fgw_store_jobs_foreach(x->store, release, false, find_job, &c) >= 0);
	snprintf(buf, sizeof(buf), "%s", c.state);
	return buf;
}

const char *fx_job_reason(struct fx *x, const char *address, char *buf, size_t size)
{
	struct state_ctx c = {.address = address};

	assert_true(fgw_store_jobs_foreach(x->store, x->rel.id, false, find_job, &c) >= 0);
	snprintf(buf, size, "%s", c.reason);
	return buf;
}

bool fx_wait_state(struct fx *x, const char *address, const char *state, unsigned max_ms)
{
	uint64_t end = fgw_now_ms() + max_ms;

	while (strcmp(fx_job_state(x, address, x->rel.id), state) != 0) {
		if (fgw_now_ms() > end)
			return false;
		uv_run(&x->loop, UV_RUN_ONCE);
	}
	return true;
}

struct hist_ctx {
	char (*to)[16];
	size_t n, cap;
};

static int add_event(const struct fgw_store_event *e, void *ud)
{
	struct hist_ctx *h = ud;

	if (strcmp(e->kind, "job-state") == 0 && h->n < h->cap)
		snprintf(h->to[h->n++], 16, "%s", e->to_state ? e->to_state : "?");
	return 0;
}

const char *fx_history(struct fx *x, const char *address, char *buf, size_t size)
{
	char to[64][16];
	struct hist_ctx h = {to, 0, 64};
	size_t o = 0;

	assert_true(fgw_store_device_events_foreach(x->store, address, 64, add_event, &h) >= 0);
	buf[0] = '\0';
	for (size_t i = h.n; i-- > 0 && o < size;) /* newest first: reverse */
		o += (size_t) snprintf(buf + o, size - o, "%s%s", o ? ">" : "", to[i]);
	return buf;
}

size_t fx_jobs_in_memory(struct fx *x)
{
	size_t n = 0;

	for (struct fleet_job *j = x->fleet->jobs; j; j = j->next)
		n += !fgw_job_state_is_terminal(j->state);
	return n;
}

/* ---- set-up ---- */

struct fdev *fx_device(struct fx *x, const char *address)
{
	struct fdev *d = &x->dev[x->n_dev++];

	assert_true(x->n_dev <= ARRAY_SIZE(x->dev));
	*d = (struct fdev){.fx = x, .mode = FGW_MCUBOOT_MODE_SWAP_WITHOUT_SCRATCH};
	snprintf(d->address, sizeof(d->address), "%s", address);
	d->s[0] = (struct fdev_slot){.present = true, .active = true, .confirmed = true};
	memset(d->s[0].hash, 0x11, 32);
	snprintf(d->s[0].version, sizeof(d->s[0].version), "1.0.0");
	return d;
}

void fx_seen(struct fx *x, struct fdev *d)
{
	int rssi = -50;

	fgw_fleet_device_seen(x->fleet, d->address, "ble", "dev", &rssi);
}

void fx_assert_history(struct fx *x, struct fdev *d, const char *want)
{
	char buf[512];

	assert_string_equal(fx_history(x, d->address, buf, sizeof(buf)), want);
}

void fx_assert_reason_has(struct fx *x, struct fdev *d, const char *part)
{
	char buf[256];

	fx_job_reason(x, d->address, buf, sizeof(buf));
	if (!strstr(buf, part))
		fail_msg("reason '%s' lacks '%s'", buf, part);
}

void fx_refuse_state(struct fx *x, const char *state)
{
	char sql[256];
	sqlite3 *db;

	snprintf(sql, sizeof(sql),
		 "CREATE TRIGGER refuse_%s BEFORE UPDATE OF state ON jobs WHEN NEW.state = '%s' "
		 "BEGIN SELECT RAISE(ABORT, 'disk says no'); END",
		 state, state);
	assert_int_equal(sqlite3_open(x->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

void fx_wait_store_failed(struct fx *x)
{
	for (int i = 0; i < 20 && !x->fleet->store_failed; i++)
		uv_run(&x->loop, UV_RUN_ONCE);
	assert_true(x->fleet->store_failed);
}

void fx_come_back(struct fx *x, struct fdev *d)
{
	assert_state(x, d, "rebooting");
	fx_advance(x, 1100); /* past the guard against sightings of the device going down */
	d->down = false;
	fx_seen(x, d);
}

void fx_start(struct fx *x, bool with_release)
{
	assert_int_equal(fgw_fleet_new(&x->loop, x->store, &x->o, &x->fleet), 0);
	fleet_set_clock(x->fleet, test_now, test_wall, x);
	assert_int_equal(fgw_fleet_start(x->fleet, with_release ? &x->rel : NULL), 0);
}

void fx_stop(struct fx *x)
{
	x->fleet = fgw_fleet_free(x->fleet);
	fx_settle(x);
}

void fx_image(struct fx *x, const char *name, size_t len, unsigned seed,
	      struct fgw_fleet_image *img)
{
	uint8_t *data = malloc(len);
	unsigned n = 32;
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_true(x->n_image_fd < ARRAY_SIZE(x->image_fd));
	x->image_fd[x->n_image_fd++] = fd;
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t) (i * 7 + seed);
	*img = (struct fgw_fleet_image){.present = true, .size = len, .fd = fd};
	assert_int_equal(write(fd, data, len), (ssize_t) len);
	assert_int_equal(
	    fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL), 0);
	assert_int_equal(EVP_Digest(data, len, img->file_sha, &n, EVP_sha256(), NULL), 1);
	memcpy(img->hash, img->file_sha, 32); /* what the fake device reports, see on_upload */
	free(data);
}

int fx_setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));
	sqlite3 *db;

	snprintf(x->dir, sizeof(x->dir), "/tmp/fgw-test-fleet-XXXXXX");
	if (!x || !mkdtemp(x->dir))
		return -1;
	snprintf(x->db, sizeof(x->db), "%s/fleet.db", x->dir);
	if (fgw_store_open(x->db, 1000, &x->store) < 0 || fgw_store_migrate(x->store, NULL, 0) < 0)
		return -1;
	if (sqlite3_open(x->db, &db) != SQLITE_OK ||
	    sqlite3_exec(db,
			 "INSERT INTO releases (id, sequence, version, bundle_url, bundle_sha256, "
			 "bundle_size, state, created_at) VALUES "
			 "('r1', 1, '2.0.0', 'b.zip', 'aa', 10, 'verified', 1), "
			 "('r2', 2, '3.0.0', 'b2.zip', 'bb', 10, 'verified', 2)",
			 NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	sqlite3_close(db);
	uv_loop_init(&x->loop);
	uv_timer_init(&x->loop, &x->poll);
	uv_timer_start(&x->poll, on_poll, 10, 10);

	snprintf(x->rel.id, sizeof(x->rel.id), "r1");
	snprintf(x->rel.version, sizeof(x->rel.version), "2.0.0");
	x->rel.max_failure_rate = 1.0;
	fx_image(x, "app.bin", IMG_LEN, 3, &x->rel.image[0]);
	snprintf(x->rel.image[0].version, sizeof(x->rel.image[0].version), "2.0.0");

	x->o = (struct fgw_fleet_options){
	    .max_connections = 2,
	    .retry_limit = 2,
	    .backoff_base_ms = 10,
	    .backoff_max_ms = 20,
	    .reboot_timeout_ms = 60000,
	    .progress_flush_ms = 0,
	    /* Far above what a fake device takes, also under valgrind on a loaded host. */
	    .request_timeout_ms = 3000,
	    .chunk_timeout_ms = 3000,
	    .first_chunk_timeout_ms = 3000,
	    .transport_new = transport_new,
	    .transport_user_data = x,
	    /* these tests are about updating; test-fleet-enroll.c is about enrollment */
	    .enrollment_open = true,
	    .max_unenrolled = 1000,
	    .unenrolled_ttl_ms = 86400000,
	};
	*state = x;
	return 0;
}

int fx_teardown(void **state)
{
	struct fx *x = *state;
	char cmd[128];

	if (x->fleet)
		fx_stop(x);
	uv_close((uv_handle_t *) &x->poll, NULL);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&x->loop), 0);
	fgw_store_free(x->store);
	for (size_t i = 0; i < x->n_image_fd; i++)
		close(x->image_fd[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
	if (system(cmd) != 0)
		return -1;
	free(x);
	return 0;
}
