/*
 * The upload engine's test fixture: a fake device behind the scripted peer. It follows Zephyr's
 * img_mgmt upload rules (protocol-notes §4.3): session with sha/len on off 0, resume on the
 * same sha, {off: expected} for gaps and repeats, {off: 0} without a session. It reads every
 * request with the tests' own strict reader (upload-req.h), not the codec. Faults are injected
 * per upload request index k: lost request, lost answer, busy, device error, reboot (session
 * lost), link loss, silence, split answers, delays, v1 headers; and a buffer pool: more than
 * `cap` requests in flight are dropped (Zephyr over BLE) or answered rc 2.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer-transport.h"
#include "smp.h"
#include "upload.h"

#define NONE (-1)

struct fault {
	int drop_req, drop_rsp, busy, err_rc, reboot, disconnect, silence_from, ahead;
	unsigned err_group;
	unsigned busy_rc;     /* 10 EBUSY, or 2 ENOMEM (Zephyr: no buffer for the answer) */
	size_t split;	      /* answers in frames of this size */
	unsigned delay_ms;    /* each answer after this long */
	unsigned first_delay; /* the answer to a new session's first chunk (erase) */
	int first_delay_from; /* ... from this request index on */
	bool v1;	      /* answer with v1 headers (pre-v2 firmware) */
	bool image_check;     /* add match on the last answer */
	bool corrupt;	      /* flip a stored byte: match false */
	unsigned cap;	      /* requests in flight the device has buffers for; 0: any */
	bool cap_nomem;	      /* over cap: answer rc 2 instead of dropping */
	bool always_nomem;    /* every request: rc 2 */
};

struct dev {
	struct peer *peer;
	uv_loop_t *loop;
	uint64_t buf_until[64]; /* cap: each accepted request holds a buffer until its answer */
	struct fault f;
	unsigned k; /* upload requests seen */
	size_t buf_size;
	uint8_t *slot;
	size_t slot_size;
	bool session;
	uint64_t len, expected;
	uint8_t sha[32];
	struct fgw_smp_client *c;
	unsigned max_outstanding; /* requests in flight seen by the device, this one included */
	unsigned too_big, misaligned, first_chunks, over_cap;
	bool over_cap_now;
	bool slow_next; /* the next answer opens a session: it waits for the "erase" */
	uint64_t bytes_written;
};

struct fx {
	uv_loop_t loop;
	struct peer *peer;
	struct fgw_smp_client *c;
	struct fgw_upload *u;
	struct dev dev;
	uint8_t *img;
	size_t img_len;
	uint8_t sha[32];
	int done_err;
	unsigned done_calls, progress_calls;
	uint64_t last_progress;
	struct fgw_upload_result res;
	bool free_in_done, cancel_in_progress;
	int fail_sends_in_progress; /* past half way, every send fails with this */
};

void fx_sha256(const uint8_t *d, size_t n, uint8_t out[32]);
void on_done(struct fgw_upload *u, int err, const struct fgw_upload_result *res, void *user_data);
void on_state(struct fgw_smp_client *c, int err, void *user_data);
struct fx *fx_new(size_t img_len, size_t mtu, size_t max_packet, size_t buf_size);
void fx_free(struct fx *f);
struct fgw_upload_opts quick_opts(uint32_t buf_size, uint32_t buf_count);
int run_upload(struct fx *f, uint64_t offset, const struct fgw_upload_opts *o);
void assert_device_has_image(struct fx *f);
