/*
 * upload, private: the engine's state, shared by upload.c (the chunk pipeline) and window.c (the
 * adaptive window). Not for other parts.
 */
#pragma once

#include "upload.h"
#include "util.h"

/* Only the engine's own log lines name these; callers see fgw_upload_is_running(). */
enum fgw_upload_state {
	FGW_UPLOAD_STATE_IDLE,	    /* not started, or finished */
	FGW_UPLOAD_STATE_PROBING,   /* first chunk (off 0) alone in flight: opens or resumes */
	FGW_UPLOAD_STATE_STREAMING, /* a window of chunks in flight at predicted offsets */
	FGW_UPLOAD_STATE_RESYNC,    /* the device's off differs: draining what is in flight */
	FGW_UPLOAD_STATE_BACKOFF,   /* the device said busy, or the send queue was full: timer */
	_FGW_UPLOAD_STATE_MAX,
	_FGW_UPLOAD_STATE_INVALID = -EINVAL,
};

struct chunk {
	struct fgw_upload *u;
	bool used;
	uint64_t off;
	size_t len;
	uint64_t req_id;
	uint64_t sent_order; /* responses come back in this order (the device works in order) */
	uint64_t sent_ms;
	bool resent; /* these bytes went out before */
};

struct fgw_upload {
	uv_loop_t *loop;
	struct fgw_smp_client *client;
	uv_timer_t timer; /* back-off */
	uv_timer_t tail;  /* the final chunk's answer is overdue: send it again */
	enum fgw_upload_state state;
	struct fgw_upload_image img;
	struct fgw_upload_opts opts;
	fgw_upload_progress_cb_t progress_cb;
	fgw_upload_done_cb_t done_cb;
	void *user_data;

	struct chunk chunks[FGW_UPLOAD_MAX_WINDOW];
	unsigned inflight;
	uint64_t next_order;
	uint64_t next_off;   /* the next chunk to send */
	uint64_t sent_end;   /* highest byte ever sent, for counting retransmissions */
	uint64_t acked;	     /* the device's last word on its offset */
	uint64_t best;	     /* highest acked this run: progress */
	uint64_t resync_off; /* offset of the last resync, to spot a device stuck on it */
	unsigned same_off_failures;
	unsigned timeouts_in_row;
	bool busy;
	bool reprobe; /* after timeouts, continue with a first chunk (resume probe) */
	bool has_match, match;
	bool probed;   /* the first answer of this run came in */
	bool answered; /* the device answered anything this run */
	bool drain;    /* in resync: wait until nothing is in flight (busy, timeout, refusal) */
	unsigned backoff_ms; /* then wait this long before going on */
	uint64_t started_ms;
	size_t packet;
	/* the adaptive window (see upload.h) */
	unsigned window;      /* chunks in flight at most, now */
	unsigned limit;	      /* never above: fgw_upload_window_limit() */
	unsigned ceiling;     /* a window that lost is not tried again for a while */
	unsigned clean;	      /* answers without loss since the window last changed */
	unsigned probe_after; /* clean answers at the ceiling before trying one more */
	unsigned nomem_in_row;
	uint64_t stale_before; /* chunks sent before this order predate the last loss */
	bool tail_resent;
	bool restart_unsure; /* off 0 for a resent final chunk: the next probe's answer tells */
	double srtt_ms;	     /* smoothed send-to-answer time of chunks; 0: no sample yet */
	struct fgw_upload_stats stats;

	unsigned refs;
	unsigned closing;
	bool freed;
};

/* window.c: the adaptive window (upload.h). */
void upload_window_init(struct fgw_upload *u, const struct fgw_upload_opts *o);
/* Chunks sent before the last loss are answered with what the device knew then: not news. */
bool upload_is_stale(struct fgw_upload *u, const struct chunk *k);
/* Halve at once (loss, timeout, rc 2); @why for the debug log. */
void upload_narrow(struct fgw_upload *u, const char *why);
/* An answer in order, without loss. */
void upload_widen(struct fgw_upload *u);
/* A send-to-answer time for the overdue-final-chunk timer. */
void upload_rtt_sample(struct fgw_upload *u, const struct chunk *k);
