/*
 * upload: moves one MCUboot image into a device's secondary slot over SMP, as fast as the link
 * and the device's buffers allow (protocol-notes §4.3, §7.5). Chunks fill the largest packet the
 * device and the transport take; after the first chunk (sent alone: it also carries
 * len/sha/image, opens or resumes the device's session and may wait for a slot erase) a window
 * of chunks is in flight with predicted offsets. The window is adaptive: Zephyr shares one pool
 * of buf_count buffers between requests, reassembly and answers, and drops (BLE) or refuses with
 * rc 2 what finds none, so the engine starts at one request in flight, widens by one after each
 * window's worth of answers without loss, up to buf_count - 1, and halves at once on a lost
 * chunk, a timeout or rc 2. The device's reported `off` is the truth: a gap shows a lost chunk,
 * which is sent again as soon as that answer arrives; a final chunk with nothing after it is
 * sent again once its answer is overdue by the measured round trip, not the full timeout. The
 * same engine runs in fotagwd and fotagw-smp. Runs on the loop, never blocks it; the image bytes
 * and their SHA-256 are the caller's (hash them off the loop).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "smp-client.h"

struct fgw_upload;

/* Largest window the engine keeps (requests in flight). */
#define FGW_UPLOAD_MAX_WINDOW 32

struct fgw_upload_image {
	const uint8_t *data; /* borrowed until the done callback */
	size_t len;
	uint8_t sha256[FGW_SMP_SHA_SIZE]; /* SHA-256 of the whole file: the upload's `sha` */
	uint32_t image;			  /* 0 app core, 1 net core */
	bool upgrade;			  /* send SMP's `upgrade` flag (no downgrade) */
};

struct fgw_upload_opts {
	uint32_t buf_size;  /* mcumgr params buf_size; 0 = unknown: the transport MTU */
	uint32_t buf_count; /* mcumgr params buf_count; 0 = unknown: window 1 */
	/* Chunks in flight at most: 0 = adaptive from 1 up to buf_count - 1 (and window_cap);
	 * N = start at N and keep it while nothing is lost. Either way never above buf_count - 1
	 * (fgw_upload_window_limit(), stats.window_clamped) and narrowed on loss or rc 2. */
	unsigned window;
	unsigned window_cap;
	unsigned align;		   /* chunk lengths (but the last) are multiples of this */
	unsigned first_timeout_ms; /* first chunk: the device may erase the slot first */
	/* Nothing has answered on this link yet (no params, no echo): the first chunk waits only
	 * chunk_timeout_ms, max_timeouts times, until the device answers something; an absent
	 * device is then reported in about chunk_timeout_ms x max_timeouts, not the erase wait. */
	bool device_silent;
	unsigned chunk_timeout_ms;
	unsigned last_timeout_ms; /* last chunk: the device may hash the whole image */
	unsigned max_failures;	  /* the device refusing the same offset, or rc 2 at window 1,
				     this often in a row: give up */
	unsigned max_timeouts;	  /* timeouts in a row without progress: give up */
	unsigned busy_retry_ms;	  /* wait after rc 10 (EBUSY) */
};

/* Defaults: window cap 8, align 4, timeouts 40 s / 5 s / 20 s, 5 failures, 5 timeouts. */
void fgw_upload_opts_init(struct fgw_upload_opts *o);
/*
 * Largest window the engine will use with @o: an explicit window (or the cap) clamped to
 * buf_count - 1 when buf_count is known (one buffer must stay free for the answer), at least 1.
 * A caller can compare it with o->window to tell the user about the clamp before starting.
 */
unsigned fgw_upload_window_limit(const struct fgw_upload_opts *o);

struct fgw_upload_stats {
	uint64_t total;		  /* image size */
	uint64_t start_off;	  /* where the device let us continue after the first chunk */
	uint64_t acked;		  /* the device's last reported offset */
	uint64_t bytes_sent;	  /* data bytes sent, retransmissions included */
	uint64_t chunks;	  /* upload requests sent */
	uint64_t retransmissions; /* chunks re-sending bytes sent before */
	uint64_t timeouts;
	uint64_t lost;		    /* chunks whose answer never came but a later one did */
	uint64_t resyncs;	    /* times the device's off differed from the prediction */
	uint64_t restarts;	    /* device fell back to offset 0 (lost its session) */
	uint64_t busy;		    /* rc 10 (busy) answers: retried after busy_retry_ms */
	uint64_t nomem;		    /* rc 2 (device out of SMP buffers) answers: window halved */
	uint64_t narrowed;	    /* times the window was halved (loss, timeout, rc 2) */
	uint64_t early_retransmits; /* final chunk sent again before its timeout */
	uint64_t elapsed_ms;
	uint64_t first_ms;     /* until the first chunk was answered (slot erase, session) */
	size_t packet_size;    /* largest request packet */
	size_t chunk_size;     /* data bytes of a full middle chunk */
	unsigned window;       /* largest window used */
	unsigned window_final; /* window at the end */
	unsigned window_limit; /* fgw_upload_window_limit() */
	bool window_clamped;   /* an explicit window above buf_count - 1 was lowered */
};

struct fgw_upload_result {
	uint64_t off;	/* the device's last reported offset (resume from here) */
	bool has_match; /* the device checked the whole image */
	bool match;
	struct fgw_smp_status status; /* the device error when err == -EREMOTEIO */
};

/* After each acknowledged chunk: @bytes of @total on the device, @rate in bytes/s. */
typedef void (*fgw_upload_progress_cb_t)(struct fgw_upload *u, uint64_t bytes, uint64_t total,
					 double rate, void *user_data);
/*
 * Once per start: err 0 when the device holds the whole image; -EREMOTEIO: the device
 * answered an error (@res->status); -EILSEQ: the device's image check failed (match false);
 * -ENOMEM: the device kept answering rc 2 (out of SMP buffers) at window 1 (@res->status);
 * -ETIMEDOUT: no progress; -EPROTO: the device kept refusing the same offset or answered
 * nonsense; -ECONNREFUSED: nothing listens (UDP) and nothing ever answered; -ECANCELED; link
 * errors (-ENOTCONN, -ECONNRESET) as the client reported them.
 * May free the upload.
 */
typedef void (*fgw_upload_done_cb_t)(struct fgw_upload *u, int err,
				     const struct fgw_upload_result *res, void *user_data);

int fgw_upload_new(uv_loop_t *loop, struct fgw_smp_client *c, struct fgw_upload **ret);
/* Cancels a running upload (done(-ECANCELED)) and frees. NULL ok. */
struct fgw_upload *fgw_upload_free(struct fgw_upload *u);

/**
 * fgw_upload_start() - send @img to the device
 * @offset: where a previous attempt got to (0 for a fresh start). The engine always opens with
 *          a first chunk carrying the same sha: a device that still holds the session answers
 *          with its offset and nothing is rewritten, one that lost it starts over; @offset only
 *          tells progress and stats where the caller believed it was.
 * Return: 0 if started (@done_cb follows exactly once, never before this returned); -EBUSY if
 * running, -ENOTCONN if the client is closed, -EINVAL for bad arguments, -EMSGSIZE if the
 * packet size leaves no room for a first chunk. On error no callback runs.
 */
int fgw_upload_start(struct fgw_upload *u, const struct fgw_upload_image *img, uint64_t offset,
		     const struct fgw_upload_opts *opts, fgw_upload_progress_cb_t progress_cb,
		     fgw_upload_done_cb_t done_cb, void *user_data);
/* Stops a running upload: done(-ECANCELED) before this returns. No-op when idle. */
void fgw_upload_cancel(struct fgw_upload *u);
bool fgw_upload_is_running(struct fgw_upload *u);
void fgw_upload_get_stats(struct fgw_upload *u, struct fgw_upload_stats *ret);
