/*
 * The uploading state of a job: erase a slot that holds another pending image, then each
 * image the plan needs, net core first, through the upload engine; progress is persisted in
 * batches (progress_flush_ms), not per chunk. After each upload the device's image list must
 * show the image's hash in that image's secondary slot: a device that ignores the image number
 * stores the net core image as image 0, and marking it would update the wrong core.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fleet-private.h"
#include "upload.h"

static void persist_progress(struct fleet_job *job, bool force)
{
	struct job_conn *c = job->conn;
	uint64_t now = fleet_now(job->fleet);
	int r;

	if (!force && now - c->last_flush_ms < job->fleet->o.progress_flush_ms)
		return;
	c->last_flush_ms = now;
	r = fgw_store_job_set_progress(job->fleet->store, job->id, c->image, (int64_t) c->offset,
				       fleet_wall(job->fleet));
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r, "Failed to record upload progress of '%s', ignoring",
			      job->address);
}

/*
 * Kept in the store too: after a restart a slot that failed the device's check must still be
 * erased, not marked on the strength of its hash field.
 */
static void set_distrust(struct fleet_job *job, unsigned mask)
{
	int r;

	if (mask == job->distrust_slot)
		return;
	job->distrust_slot = mask;
	r = fgw_store_job_set_distrust(job->fleet->store, job->id, mask, fleet_wall(job->fleet));
	if (r < 0)
		fgw_log_errno(LOG_WARNING, r,
			      "Failed to record that '%s' must erase its slot; it will in this run",
			      job->address);
}

static void on_progress(struct fgw_upload *u, uint64_t bytes, uint64_t total, double rate,
			void *user_data)
{
	struct fleet_job *job = user_data;
	struct job_conn *c = job->conn;

	if (!c)
		return;
	if (bytes > c->offset) {
		struct fleet_radio *r = fleet_radio_of_job(job->fleet, job);

		job->fleet->stats.bytes_uploaded += bytes - c->offset;
		/* what the device acknowledged: the radio's goodput */
		if (r)
			fleet_radio_add_bytes(r, bytes - c->offset, fleet_now(job->fleet));
	}
	c->offset = bytes;
	c->total = total;
	c->rate_bps = rate;
	persist_progress(job, false);
}

static void check_slots(struct fleet_job *job);

static void on_done(struct fgw_upload *u, int err, const struct fgw_upload_result *res,
		    void *user_data)
{
	struct fleet_job *job = user_data;
	struct job_conn *c = job->conn;
	char what[352], st[160];

	if (err == -ECANCELED || !c)
		return;
	job->fleet->stats.upload_ms += fleet_now(job->fleet) - c->upload_started_ms;
	if (res && res->off > c->offset)
		c->offset = res->off;
	persist_progress(job, true);
	if (err == 0) {
		fgw_info("fleet: '%s' image %d uploaded (%llu bytes)", job->address, c->image,
			 (unsigned long long) c->total);
		check_slots(job);
		return;
	}
	switch (err) {
	case -EREMOTEIO:
		fgw_smp_status_format(&res->status, st, sizeof(st));
		snprintf(what, sizeof(what), "upload of image %d refused: %s", c->image, st);
		/* Busy and out-of-memory pass; anything else the device will say again. */
		job_on_failure(job, err,
			       fgw_smp_status_is_busy(&res->status) ||
				   res->status.rc == FGW_SMP_RC_ENOMEM,
			       what);
		return;
	case -EILSEQ:
		snprintf(what, sizeof(what), "upload of image %d: device's image check failed",
			 c->image);
		set_distrust(job, job->distrust_slot | 1u << c->image);
		break;
	case -ENOMEM:
		/* The engine halved its window down to 1 and the device still had no buffer: its
		 * pool is shared with its other transports. Worth another try later. */
		snprintf(what, sizeof(what),
			 "upload of image %d at %llu/%llu: device out of SMP buffers (rc 2 ENOMEM) "
			 "even at window 1",
			 c->image, (unsigned long long) c->offset, (unsigned long long) c->total);
		break;
	default:
		snprintf(what, sizeof(what), "upload of image %d at %llu/%llu: %s", c->image,
			 (unsigned long long) c->offset, (unsigned long long) c->total,
			 strerror(-err));
		break;
	}
	job_on_failure(job, err, true, what);
}

static void on_erase_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct fleet_job *job = user_data;
	char st[160], what[256];

	if (err == -ECANCELED || !job->conn)
		return;
	if (err < 0) {
		snprintf(what, sizeof(what), "erase: %s", strerror(-err));
		job_on_failure(job, err, true, what);
		return;
	}
	if (!fgw_smp_status_ok(&rsp->status)) {
		fgw_smp_status_format(&rsp->status, st, sizeof(st));
		snprintf(what, sizeof(what), "erase of a foreign pending image refused: %s", st);
		job_on_failure(job, -EREMOTEIO, fgw_smp_status_is_busy(&rsp->status), what);
		return;
	}
	job->conn->erased |= 1u << job->conn->image;
	job_upload_next(job);
}

static int start_image(struct fleet_job *job, int i)
{
	struct fgw_fleet *f = job->fleet;
	struct job_conn *c = job->conn;
	const struct fgw_fleet_image *img = &job->rel->r.image[i];
	struct fgw_upload_image ui = {
	    .data = job->rel->map[i],
	    .len = job->rel->map_len[i],
	    .image = (uint32_t) i,
	    /* Zephyr compares any upload with the running app image's version: net core
	     * images (often versioned apart) would be refused, so the flag goes with image 0 */
	    .upgrade = job->rel->r.no_downgrade && i == 0,
	};
	struct fgw_upload_opts o;
	int r;

	memcpy(ui.sha256, img->file_sha, sizeof(ui.sha256));
	fgw_upload_opts_init(&o);
	if (c->has_params) {
		o.buf_size = c->params.buf_size;
		o.buf_count = c->params.buf_count;
	}
	o.window = f->o.upload_window;
	if (f->o.first_chunk_timeout_ms)
		o.first_timeout_ms = (unsigned) f->o.first_chunk_timeout_ms;
	if (f->o.chunk_timeout_ms)
		o.chunk_timeout_ms = (unsigned) f->o.chunk_timeout_ms;
	if (!c->upload) {
		r = fgw_upload_new(f->loop, c->smp, &c->upload);
		if (r < 0)
			return r;
	}
	c->image = i;
	c->offset = 0;
	c->total = ui.len;
	c->upload_started_ms = fleet_now(job->fleet);
	if (o.window > fgw_upload_window_limit(&o))
		fgw_info("fleet: '%s': [upload] window %u clamped to %u (the device has %" PRIu32
			 " SMP buffers)",
			 job->address, o.window, fgw_upload_window_limit(&o), o.buf_count);
	/* Offset 0: the engine's first chunk asks the device where its session is. */
	return fgw_upload_start(c->upload, &ui, 0, &o, on_progress, on_done, job);
}

/* Where the device lists @hash: 0 and ret_image, ret_slot set; or -ENOENT. */
static int locate(const struct fgw_smp_img_state *st, const uint8_t *hash, uint32_t *ret_image,
		  uint32_t *ret_slot)
{
	for (size_t k = 0; k < st->n_slots; k++) {
		const struct fgw_smp_img_slot *e = &st->slots[k];

		if (e->has_hash && !memcmp(e->hash, hash, sizeof(e->hash))) {
			*ret_image = e->image;
			*ret_slot = e->slot;
			return 0;
		}
	}
	return -ENOENT;
}

/* A mismatch for image @i, said for people; NULL if the image is where it belongs. */
static const char *misplaced(struct fleet_job *job, const struct fgw_smp_img_state *st, int i,
			     char *buf, size_t n)
{
	uint32_t image, slot;

	if (locate(st, job->rel->r.image[i].hash, &image, &slot) < 0) {
		snprintf(buf, n, "image %d uploaded, but the device does not list its hash", i);
		return buf;
	}
	if (image == (uint32_t) i && slot == 1)
		return NULL;
	snprintf(buf, n,
		 "image %d uploaded, but the device lists it as image %" PRIu32 " slot %" PRIu32
		 " (it ignores the image number: single-image firmware?)%s",
		 i, image, slot, i == 1 ? "; the net core would not be updated" : "");
	return buf;
}

static void check_rsp(struct fleet_job *job, int err, const struct fgw_smp_rsp *rsp)
{
	struct job_conn *c = job->conn;
	struct fgw_smp_img_state st;
	char buf[224], what[288];

	if (err == -ECANCELED || !c || job->state != FGW_JOB_STATE_UPLOADING)
		return;
	if (err < 0) {
		snprintf(what, sizeof(what), "image list after upload: %s", strerror(-err));
		job_on_failure(job, err, true, what);
		return;
	}
	if (!fgw_smp_status_ok(&rsp->status)) {
		fgw_smp_status_format(&rsp->status, buf, sizeof(buf));
		snprintf(what, sizeof(what), "image list after upload: device answered %s", buf);
		job_on_failure(job, -EREMOTEIO, fgw_smp_status_is_busy(&rsp->status), what);
		return;
	}
	if (fgw_smp_img_state_decode(rsp->payload, rsp->len, &st) < 0) {
		job_on_failure(job, -EBADMSG, true, "image list after upload: unreadable answer");
		return;
	}
	if (misplaced(job, &st, c->image, buf, sizeof(buf))) {
		/* The device will store it the same way next time: not worth a retry. */
		job_on_failure(job, -EILSEQ, false, buf);
		return;
	}
	c->uploaded |= 1u << c->image;
	set_distrust(job, job->distrust_slot & ~(1u << c->image));
	job_upload_next(job);
}

/* A cleared distrust bit and the move to marking: one batch, one commit. */
static void on_check_rsp(int err, const struct fgw_smp_rsp *rsp, void *user_data)
{
	struct fleet_job *job = user_data;
	struct fgw_fleet *f = job->fleet;
	bool batch = fgw_store_batch_begin(f->store) == 0;

	check_rsp(job, err, rsp);
	if (batch)
		fleet_batch_end(f);
}

/* Asks for the image list after image c->image was uploaded, before anything else is sent:
 * the next upload could overwrite a misplaced image and hide the fault. */
static void check_slots(struct fleet_job *job)
{
	struct fgw_smp_req req = {0};
	uint64_t t = job->fleet->o.request_timeout_ms ? job->fleet->o.request_timeout_ms : 5000;
	int r = fgw_smp_req_img_state(&req);

	if (r >= 0)
		r = fgw_smp_client_request(job->conn->smp, &req, (unsigned) t, on_check_rsp, job,
					   NULL, NULL);
	fgw_smp_req_done(&req);
	if (r < 0)
		job_on_failure(job, r, true, "image list after upload");
}

void job_upload_next(struct fleet_job *job)
{
	static const int order[] = {1, 0};
	struct job_conn *c = job->conn;
	char what[128];

	for (size_t k = 0; k < ARRAY_SIZE(order); k++) {
		int i = order[k], r;

		if (c->plan.action[i] != FGW_FLEET_IMAGE_UPLOAD || (c->uploaded & (1u << i)))
			continue;
		if (c->plan.erase_first[i] && !(c->erased & (1u << i))) {
			struct fgw_smp_req req = {0};
			c->image = i;
			/* Absolute slot number: image i's secondary slot is 2i+1. */
			r = fgw_smp_req_img_erase(2 * i + 1, &req);
			if (r >= 0)
				r = fgw_smp_client_request(c->smp, &req, 60000, on_erase_rsp, job,
							   NULL, NULL);
			fgw_smp_req_done(&req);
			if (r < 0)
				job_on_failure(job, r, true, "erase request");
			return;
		}
		r = start_image(job, i);
		if (r < 0) {
			snprintf(what, sizeof(what), "cannot start upload of image %d: %s", i,
				 strerror(-r));
			job_on_failure(job, r, r != -EMSGSIZE && r != -EINVAL, what);
		}
		return;
	}
	(void) job_enter_state(job, FGW_JOB_STATE_MARKING, NULL, NULL);
}

void job_upload_cancel(struct fleet_job *job)
{
	struct job_conn *c = job->conn;

	if (c && c->upload)
		c->upload = fgw_upload_free(c->upload);
}
